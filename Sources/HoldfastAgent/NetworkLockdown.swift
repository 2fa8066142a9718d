import Dispatch
import FoundationEssentials
import HoldfastCore
import HoldfastNetfilter
import Lockdown
#if canImport(Glibc)
import Glibc
#endif

/// The `network` scope (docs/lockdown.md): the `inet holdfast` table, built from the broker's
/// addresses (its URL's host, resolved when the table is built), the DNS resolvers and the
/// configured `allow` prefixes. While the scope is locked the controller asks again every
/// `LockdownController.reassertInterval`: a table someone deleted is put back (and said so), a
/// broker that moved to new addresses is followed.
actor NetworkLockdown: LockdownEnforcer {
    private let brokerURL: @Sendable () -> String?
    private let configuredResolvers: [NetworkAddress]
    private let allowed: [NetworkAddress]
    private let resolvConf: String
    private let logger: Logger
    private let record: @Sendable (Event) -> Void
    /// What this agent installed last (nil: no table of ours).
    private var installed: IsolationTable?
    /// What the table lacks (logged when it changes; the lockdown is in effect all the same).
    private var lastProblem: String?

    init(brokerURL: @escaping @Sendable () -> String?, resolvers: [NetworkAddress], allowed: [NetworkAddress], resolvConf: String = "/etc/resolv.conf", logger: Logger,
         record: @escaping @Sendable (Event) -> Void) {
        self.brokerURL = brokerURL
        configuredResolvers = resolvers
        self.allowed = allowed
        self.resolvConf = resolvConf
        self.logger = logger
        self.record = record
    }

    func enforceLockdown(_ entry: LockdownEntry?) async -> String? {
        guard entry != nil else {
            // Open: nothing to do unless a table is there (at every start of an open agent
            // nftables is only asked, never changed).
            guard IsolationTable.isInstalled() else {
                installed = nil
                return nil
            }
            switch IsolationTable.remove() {
            case .success:
                installed = nil
                return nil
            case .failure(let error):
                return "the network lockdown table could not be removed: \(error.message)"
            }
        }
        let (table, problem) = await wanted()
        if problem != lastProblem, let problem { logger.warning("network lockdown: \(problem)") }
        lastProblem = problem
        let present = IsolationTable.isInstalled()
        if let installed, !present {
            // Ours was there and is gone: someone deleted it (nft flush ruleset, a firewall
            // manager's reload). Put back at once, and said.
            record(Event(
                kind: "lockdown.tampered", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Lock", time: Date(), severity: .critical, status: .failure,
                message: "the network lockdown table inet holdfast was removed by something other than holdfastd; it is installed again",
                details: ["scope": "network", "brokers": .array(installed.broker.map { .string($0.description) })]))
        }
        if present, table == installed { return nil }
        switch table.install() {
        case .success:
            installed = table
            logger.notice("network lockdown table installed", ("brokers", table.broker.map(\.description).joined(separator: ",")),
                          ("resolvers", table.resolvers.map(\.description).joined(separator: ",")))
            return nil
        case .failure(let error):
            return "the network lockdown table could not be installed: \(error.message)"
        }
    }

    /// What `holdfast lockdown status` adds to the scope: the addresses allowed and what is missing.
    func detail() -> JSONValue {
        var object: [String: JSONValue] = [:]
        if let installed {
            object["brokers"] = .array(installed.broker.map { .string($0.description) })
            object["resolvers"] = .array(installed.resolvers.map { .string($0.description) })
            object["allowed"] = .array(installed.allowed.map { .string($0.description) })
        }
        if let lastProblem { object["warning"] = .string(lastProblem) }
        return .object(object)
    }

    /// The table as it should be now, and what is missing from it (still enforced: fail closed).
    private func wanted() async -> (IsolationTable, String?) {
        var problem: String?
        var brokers: [NetworkAddress] = []
        var port: UInt16 = 443
        if let url = brokerURL(), let parsed = URL(string: url), let host = parsed.host(percentEncoded: false) {
            port = parsed.port.flatMap { UInt16(exactly: $0) } ?? (parsed.scheme == "http" ? 80 : 443)
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            if let literal = NetworkAddress(bare) {
                brokers = [literal]
            } else {
                brokers = await Self.resolve(bare)
                // Resolution failed: keep the addresses that worked before rather than none.
                if brokers.isEmpty {
                    brokers = installed?.broker ?? []
                    problem = "the broker's name \(bare) does not resolve now; " + (brokers.isEmpty ? "the broker is not reachable through the lockdown" : "its last known addresses stay allowed")
                }
            }
        } else {
            problem = "not enrolled: the lockdown allows no broker"
        }
        let resolvers = configuredResolvers.isEmpty ? Self.nameservers(resolvConf) : configuredResolvers
        return (IsolationTable(broker: brokers, brokerPort: port, resolvers: resolvers, allowed: allowed), problem)
    }

    /// The nameservers of resolv.conf(5); behind systemd-resolved's stub (127.0.0.53) also the
    /// upstream servers it forwards to.
    static func nameservers(_ path: String) -> [NetworkAddress] {
        func read(_ path: String) -> [NetworkAddress] {
            guard let bytes = SmallFile.read(path, limit: 65_536) else { return [] }
            return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).compactMap { line in
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard words.count >= 2, words[0] == "nameserver" else { return nil }
                return NetworkAddress(String(words[1]))
            }
        }
        var servers = read(path)
        if servers.contains(where: { $0.address.hasPrefix("127.") }) { servers += read("/run/systemd/resolve/resolv.conf") }
        var seen: Set<NetworkAddress> = []
        return servers.filter { seen.insert($0).inserted }
    }

    /// getaddrinfo(3) off the cooperative threads (a resolver that times out must not stall the
    /// agent).
    static func resolve(_ host: String) async -> [NetworkAddress] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                var list: UnsafeMutablePointer<addrinfo>?
                guard getaddrinfo(host, nil, &hints, &list) == 0 else { return continuation.resume(returning: []) }
                defer { freeaddrinfo(list) }
                var found: [NetworkAddress] = []
                var cursor = list
                while let entry = cursor {
                    var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                    if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0,
                       let address = NetworkAddress(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)),
                       !found.contains(address) {
                        found.append(address)
                    }
                    cursor = entry.pointee.ai_next
                }
                continuation.resume(returning: found)
            }
        }
    }
}
