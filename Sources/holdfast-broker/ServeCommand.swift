import FoundationEssentials
import HoldfastBroker
import HoldfastCommandLine
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
#if canImport(Glibc)
import Glibc
#endif

/// `holdfast-broker serve`: the HTTPS API agents and gateways talk to, until SIGTERM or SIGINT.
struct Serve: Subcommand {
    static let path = ["serve"]
    static let summary = "serve enrollment, attestation, grants, the agents' policy and lockdown commands over HTTPS"
    static let options = [
        OptionSpec("url", value: "URL", help: "the URL agents and gateways reach this broker at; the grants' issuer (required)"),
        OptionSpec("listen", value: "ADDR:PORT", help: "numeric address and port to listen on (default 0.0.0.0:8443; port 0 picks one)"),
        OptionSpec("dir", value: "DIR", help: "where init wrote ca.pem, server.pem, server.key and signing.key (default /etc/holdfast-broker)"),
        OptionSpec("cert", value: "FILE", help: "bring your own server certificate chain (PEM) instead of DIR/server.pem"),
        OptionSpec("key", value: "FILE", help: "its private key (PEM), instead of DIR/server.key"),
        OptionSpec("ca", value: "FILE", help: "the CA certificate agents pin (served at /v1/ca.pem), instead of DIR/ca.pem"),
        BrokerState.stateOption,
        OptionSpec("insecure-http", help: "plain HTTP, refused unless --listen is a loopback address"),
        OptionSpec("grant-lifetime", value: "DURATION", help: "how long an access grant is valid (default 10m, at most 1h)"),
        OptionSpec("stale-after", value: "DURATION", help: "a device that has not attested for this long is stale: access refused (default 15m)"),
        OptionSpec("threads", value: "N", help: "libmicrohttpd threads, each with its own epoll set (default: the CPU count)"),
        OptionSpec("max-connections", value: "N", help: "connections held at once (default 10000; the open-file limit is raised to fit)"),
        OptionSpec("max-per-peer", value: "N", help: "connections one address may hold (default 512; agents behind one NAT share an address)"),
        OptionSpec("port-file", value: "FILE", help: "write the bound port here once listening (for scripts using port 0)"),
    ]

    let arguments: ParsedArguments
    let url: String
    let listen: String
    let insecure: Bool
    let grantLifetime: Int64
    let staleAfter: Int64
    let threads: Int
    let maximumConnections: Int
    let maximumPerPeer: Int

    init(_ arguments: ParsedArguments) throws(UsageError) {
        url = try arguments.required("url")
        try TokenCreate.checkURL(url)
        listen = arguments.value("listen") ?? "0.0.0.0:8443"
        insecure = arguments.flag("insecure-http")
        if insecure, !HTTPServer.isLoopback(listen) {
            throw UsageError("--insecure-http is refused on \(listen): plain HTTP only on a loopback address (127.0.0.1, ::1)")
        }
        if !insecure, url.lowercased().hasPrefix("http:") { throw UsageError("--url is http:// but the broker serves HTTPS; say --insecure-http (loopback only)") }
        grantLifetime = try arguments.duration("grant-lifetime") ?? 600
        guard grantLifetime <= 3_600 else { throw UsageError("--grant-lifetime is at most 1h: grants are meant to be short-lived") }
        staleAfter = try arguments.duration("stale-after") ?? 900
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        guard let threadCount = arguments.value("threads").map({ Int($0) }) ?? max(1, cpus), (1...64).contains(threadCount) else {
            throw UsageError("--threads is 1…64")
        }
        threads = threadCount
        guard let connections = arguments.value("max-connections").map({ Int($0) }) ?? 10_000, (16...1_000_000).contains(connections) else {
            throw UsageError("--max-connections is 16…1000000")
        }
        maximumConnections = connections
        guard let perPeer = arguments.value("max-per-peer").map({ Int($0) }) ?? 512, (1...connections).contains(perPeer) else {
            throw UsageError("--max-per-peer is 1…--max-connections")
        }
        maximumPerPeer = perPeer
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let directory = arguments.value("dir") ?? "/etc/holdfast-broker"
        let signing = try BrokerState.signingKey(directory)
        let caPath = arguments.value("ca") ?? directory + "/ca.pem"
        let caPEM = String(decoding: try InputFile.read(caPath, context: context, limit: 1 << 20), as: UTF8.self)
        var certificate: String?
        var key: String?
        if !insecure {
            certificate = String(decoding: try InputFile.read(arguments.value("cert") ?? directory + "/server.pem", context: context, limit: 1 << 20), as: UTF8.self)
            let keyPath = arguments.value("key") ?? directory + "/server.key"
            var info = stat()
            guard stat(keyPath, &info) == 0, info.st_mode & 0o077 == 0 else {
                throw CommandFailure("\(keyPath) must exist and be readable by its owner only (mode 0600)", exitCode: .noPermission)
            }
            key = String(decoding: try InputFile.read(keyPath, context: context, limit: 1 << 20), as: UTF8.self)
        }
        let keys = try Self.loadKeys(directory: directory, current: signing)
        let storage = try BrokerState.open(arguments, create: true)
        Self.raiseOpenFileLimit(to: maximumConnections + 256, context)
        let logger = Logger(level: LogLevel(name: context.environment["HOLDFAST_LOG_LEVEL"] ?? "info") ?? .info)
        let broker = Broker(
            storage: storage, keys: keys, settings: BrokerSettings(issuer: url, grantLifetime: grantLifetime, staleAfter: staleAfter), caPEM: caPEM, logger: logger)
        if (try? storage.latestDocument(kind: .compliancePolicy)) == nil {
            logger.warning("no compliance policy is set: every attested device counts as compliant until `holdfast-broker policy set FILE`")
        }
        // Block the stop signals before any thread starts, then wait for one of them.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
        let server = HTTPServer(
            // No body anywhere but the routes that take one (Broker.bodyLimits).
            .init(listen: listen, certificatePEM: certificate, keyPEM: key, threads: threads, connectionLimit: maximumConnections, perPeerLimit: maximumPerPeer,
                  idleTimeout: 15, maximumBody: 0, bodyLimits: Broker.bodyLimits),
            early: { broker.early(method: $0, path: $1, headers: $2) }, handler: { broker.handle($0) })
        do {
            try server.start()
        } catch {
            throw CommandFailure(error.message, exitCode: .unavailable)
        }
        let bound = listen.hasSuffix(":0") ? String(listen.dropLast(2)) + ":\(server.port)" : listen
        if let portFile = arguments.value("port-file") {
            try SecureFile.write(Array("\(server.port)\n".utf8), to: portFile, mode: 0o644)
        }
        logger.notice(
            "holdfast-broker listening", ("listen", bound), ("scheme", insecure ? "http" : "https"), ("url", url), ("signing_key", signing.publicKey.thumbprint),
            ("threads", "\(threads)"))
        var received: Int32 = 0
        sigwait(&stopSignals, &received)
        logger.notice("stopping", ("signal", received == SIGTERM ? "SIGTERM" : "SIGINT"))
        server.stop()
        return .success
    }

    /// The current key plus, during a rotation, the previous one and its announcement.
    static func loadKeys(directory: String, current: SigningKey) throws -> BrokerKeys {
        var keys = BrokerKeys(current: current)
        let previousPath = directory + "/signing.previous.key"
        if SmallFile.exists(previousPath) {
            do {
                keys.previous = [try SigningKey.load(from: previousPath).publicKey]
            } catch {
                throw CommandFailure("\(previousPath): \(error)", exitCode: .dataError)
            }
        }
        let announcementPath = directory + "/rotation.jws"
        if SmallFile.exists(announcementPath), let bytes = SmallFile.read(announcementPath, limit: 1 << 16) {
            keys.announcements = [trimmedLine(String(decoding: bytes, as: UTF8.self))]
        }
        return keys
    }

    static func trimmedLine(_ text: String) -> String { String(text.filter { !$0.isWhitespace }) }

    /// Each held connection is a descriptor: raise the soft limit toward the hard one.
    static func raiseOpenFileLimit(to wanted: Int, _ context: CommandContext) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let target = min(rlim_t(wanted), limit.rlim_max)
        if limit.rlim_cur < target {
            limit.rlim_cur = target
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        if target < rlim_t(wanted) {
            context.error("holdfast-broker: the open-file limit is \(limit.rlim_max); fewer than \(wanted - 256) connections fit (raise LimitNOFILE)")
        }
    }
}
