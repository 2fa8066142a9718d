import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
#if canImport(Glibc)
import Glibc
#endif

/// The broker's state directory and the admin a command acts as.
enum BrokerState {
    static let stateOption = OptionSpec("state-dir", value: "DIR", help: "the broker's state (default /var/lib/holdfast-broker; `admin add` and `serve` create it 0700)")
    static let tokenHelp = "admin verbs read the caller's admin token from $HOLDFAST_ADMIN_TOKEN"

    /// Opens the broker's state. Only `admin add` (the bootstrap) and `serve` create it: any
    /// other verb pointed at a directory without a broker says so instead of making an empty one.
    static func open(_ arguments: ParsedArguments, create: Bool = false) throws -> SQLiteBrokerStorage {
        let directory = arguments.value("state-dir") ?? "/var/lib/holdfast-broker"
        if !create, !SmallFile.exists(directory + "/broker.sqlite") {
            throw CommandFailure("no broker state in \(directory) (say --state-dir DIR: where `admin add` and `serve` keep broker.sqlite)", exitCode: .unavailable)
        }
        do {
            return try SQLiteBrokerStorage(directory: directory)
        } catch {
            throw CommandFailure("cannot open the broker state in \(directory): \(error)", exitCode: .unavailable)
        }
    }

    /// The admin named by $HOLDFAST_ADMIN_TOKEN, or a refusal (exit 77).
    static func admin(_ storage: any BrokerStorage, _ context: CommandContext) throws -> String {
        guard let token = context.environment["HOLDFAST_ADMIN_TOKEN"], !token.isEmpty else {
            throw CommandFailure("this verb needs an admin: set HOLDFAST_ADMIN_TOKEN to the token `admin add` printed", exitCode: .noPermission)
        }
        guard let name = try storage.admin(tokenHash: SHA256.hash(Array(token.utf8))) else {
            throw CommandFailure("HOLDFAST_ADMIN_TOKEN is not the token of an admin of this broker (its state is another --state-dir?)", exitCode: .noPermission)
        }
        return name
    }

    static var now: Int64 { Int64(Date().timeIntervalSince1970) }

    /// One compact JSON line (sorted keys), as every `--json` of the broker prints.
    static func printJSON(_ value: JSONValue, _ context: CommandContext) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        context.line(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// The broker's signing key from `--dir`; a missing one names the option to pass.
    static func signingKey(_ directory: String, file: String = "signing.key") throws -> SigningKey {
        let path = directory + "/" + file
        guard SmallFile.exists(path) else {
            // Something needed is not there (69), not malformed input (65).
            throw CommandFailure("no \(path) (say --dir DIR: where `holdfast-broker init` wrote signing.key)", exitCode: .unavailable)
        }
        do {
            return try SigningKey.load(from: path)
        } catch {
            throw CommandFailure("\(path): \(error)", exitCode: .dataError)
        }
    }
}

/// `holdfast-broker admin add NAME`: a named admin and its token (printed once, stored hashed).
/// The first admin is the bootstrap (whoever can open the state directory: root); every later one
/// is added by an existing admin.
struct AdminAdd: Subcommand {
    static let path = ["admin", "add"]
    static let summary = "add a named admin and print its token once (the first needs none; later ones: \(BrokerState.tokenHelp))"
    static let positionals = "NAME"
    static let options = [BrokerState.stateOption]

    let name: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1 else { throw UsageError("say the admin's NAME") }
        name = arguments.positionals[0]
        guard !name.isEmpty, name.utf8.count <= 64, name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.@".unicodeScalars.contains($0)) }) else {
            throw UsageError("an admin name is up to 64 letters, digits, '-', '_', '.' or '@'")
        }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments, create: true)
        let token = "hfa_" + (try SecureRandom.token(bytes: 32))
        let hash = SHA256.hash(Array(token.utf8))
        let by: String
        // The bootstrap is one conditional insert: of racing first admins, one wins.
        if try storage.adminCount() == 0, try storage.bootstrapAdmin(name: name, tokenHash: hash, at: BrokerState.now) {
            by = "(bootstrap)"
        } else {
            by = try BrokerState.admin(storage, context)
            guard try storage.addAdmin(name: name, tokenHash: hash, at: BrokerState.now) else {
                throw CommandFailure("an admin named \(name) exists", exitCode: .failure)
            }
            try storage.recordAdminAction(admin: by, verb: "admin add", detail: "name=\(name)", at: BrokerState.now)
        }
        context.error("admin \(name) added by \(by); the token below is shown once (stored hashed): keep it where only \(name) reads it")
        context.line(token)
        return .success
    }
}

/// `holdfast-broker token create --url URL [--expires 24h] [--label TEXT] [--dir DIR]` (admin):
/// a one-time enrollment token carrying the broker URL, the CA fingerprint and the signing key's
/// thumbprint, so the agent can pin both before it trusts anything the broker says.
struct TokenCreate: Subcommand {
    static let path = ["token", "create"]
    static let summary = "print a one-time enrollment token (admin; \(BrokerState.tokenHelp))"
    static let options = [
        BrokerState.stateOption,
        OptionSpec("url", value: "URL", help: "the broker's URL agents enroll with, https://NAME:PORT (required)"),
        OptionSpec("expires", value: "DURATION", help: "how long the token may be used (default 24h, at most 30d)"),
        OptionSpec("label", value: "TEXT", help: "what it is for (recorded)"),
        OptionSpec("dir", value: "DIR", help: "where init wrote ca.pem and signing.key (default /etc/holdfast-broker)"),
    ]

    let url: String
    let expires: Int64
    let label: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        url = try arguments.required("url")
        try Self.checkURL(url)
        let seconds = try arguments.duration("expires") ?? 86_400
        guard seconds <= 30 * 86_400 else { throw UsageError("--expires is at most 30d") }
        expires = seconds
        label = arguments.value("label") ?? ""
        guard label.utf8.count <= 128, label.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }), !label.contains("=") else {
            throw UsageError("--label is up to 128 printable characters, without '='")
        }
        try arguments.noPositionals()
        self.arguments = arguments
    }

    /// https with a host, no user part, no white space; plain http only to a loopback host.
    static func checkURL(_ url: String) throws(UsageError) {
        guard !url.contains(where: { $0.isWhitespace || $0.isNewline }), let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
              let host = parsed.host(percentEncoded: false), !host.isEmpty, parsed.user == nil, parsed.password == nil else {
            throw UsageError("--url must be a URL with a host, https://NAME[:PORT] (no user part)")
        }
        let loopback = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host.lowercased())
        guard scheme == "https" || (scheme == "http" && loopback) else {
            throw UsageError("--url must be https:// (plain http only on loopback)")
        }
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        let directory = arguments.value("dir") ?? "/etc/holdfast-broker"
        // What agents will pin must not be replaceable by anyone else: the directory private,
        // the certificate ours and not writable by others.
        do {
            try SecureFile.checkPrivateDirectory(directory)
        } catch let error where error.code == .notFound {
            throw CommandFailure("\(directory) does not exist (say --dir DIR: where `holdfast-broker init` wrote ca.pem and signing.key)", exitCode: .dataError)
        } catch {
            throw CommandFailure("\(error)", exitCode: .noPermission)
        }
        var info = stat()
        guard lstat(directory + "/ca.pem", &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(), info.st_mode & 0o022 == 0 else {
            throw CommandFailure("\(directory)/ca.pem must be a regular file owned by uid \(geteuid()) and writable by nobody else", exitCode: .noPermission)
        }
        let caPEM = try InputFile.read(directory + "/ca.pem", context: context, limit: 1 << 20)
        let signing = try BrokerState.signingKey(directory)
        // Agents will check the server certificate against the URL's host: say now if it cannot match.
        if URL(string: url)?.scheme?.lowercased() == "https", let host = URL(string: url)?.host(percentEncoded: false), let server = SmallFile.read(directory + "/server.pem", limit: 1 << 20),
           !CertificateFingerprint.matches(server, host: host) {
            throw CommandFailure("\(directory)/server.pem is not valid for \(host): agents would refuse the broker (use the --hostname given to init, or a certificate for \(host))", exitCode: .dataError)
        }
        let fingerprint = "sha256:" + Hex.encode(try CertificateFingerprint.sha256(of: caPEM))
        let secret = try SecureRandom.token(bytes: 32)
        let id = try SecureRandom.token(bytes: 9)
        let now = BrokerState.now
        try storage.addEnrollmentToken(id: id, tokenHash: SHA256.hash(Array(secret.utf8)), label: label, expires: now + expires, createdBy: admin, at: now)
        try storage.recordAdminAction(admin: admin, verb: "token create", detail: "id=\(id) label=\(label) expires=\(now + expires)", at: now)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body: JSONValue = .object(["url": .string(url), "ca": .string(fingerprint), "key": .string(signing.publicKey.thumbprint), "secret": .string(secret)])
        context.line("hft1." + Base64URL.encode(Array(try encoder.encode(body))))
        context.error("token \(id) for \(label.isEmpty ? "(no label)" : label), single use, expires \(Date(timeIntervalSince1970: Double(now + expires)).formatted(.iso8601)); created by \(admin)")
        return .success
    }
}
