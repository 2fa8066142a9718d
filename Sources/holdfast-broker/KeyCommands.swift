import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore
import HoldfastBroker
import HoldfastCrypto
import HoldfastStore
#if canImport(Glibc)
import Glibc
#endif

/// `holdfast-broker key generate`: a new Ed25519 signing key, written 0600.
struct KeyGenerate: Subcommand {
    static let path = ["key", "generate"]
    static let summary = "create an Ed25519 signing key (PKCS#8 PEM, mode 0600)"
    static let options = [
        OptionSpec("out", value: "FILE", help: "where to write the key (required)"),
        OptionSpec("force", help: "replace an existing key file"),
    ]

    let out: String
    let force: Bool

    init(_ arguments: ParsedArguments) throws(UsageError) {
        out = try arguments.required("out")
        force = arguments.flag("force")
        try arguments.noPositionals()
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        var info = stat()
        // lstat: a dangling symbolic link at the path counts as "exists" too.
        if !force, lstat(out, &info) == 0 {
            throw CommandFailure("\(out) exists; refusing to replace a key (use --force)")
        }
        if let slash = out.lastIndex(of: "/"), slash != out.startIndex {
            let directory = String(out[..<slash])
            if lstat(directory, &info) != 0 {
                try SecureFile.ensurePrivateDirectory(directory)
            } else if info.st_mode & 0o002 != 0 {
                throw CommandFailure("\(directory) is writable by everyone; put the key somewhere private")
            }
        }
        let key = try SigningKey.generate()
        try key.save(to: out)
        context.line("wrote \(out) (key id \(key.publicKey.thumbprint))")
        return .success
    }
}

/// `holdfast-broker key public`: the public half, as JWKS, JWK or PEM.
struct KeyPublic: Subcommand {
    static let path = ["key", "public"]
    static let summary = "print a signing key's public half (JWKS, JWK or PEM)"
    static let options = [
        OptionSpec("key", value: "FILE", help: "the private key file (required)"),
        OptionSpec("format", value: "FORMAT", help: "jwks (default), jwk or pem"),
    ]

    let key: String
    let format: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        key = try arguments.required("key")
        format = arguments.value("format") ?? "jwks"
        guard ["jwks", "jwk", "pem"].contains(format) else { throw UsageError("--format must be jwks, jwk or pem") }
        try arguments.noPositionals()
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let publicKey = try SigningKey.load(from: key).publicKey
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        switch format {
        case "pem":
            context.out(String(decoding: try publicKey.pem(), as: UTF8.self))
        case "jwk":
            context.line(String(decoding: try encoder.encode(publicKey.jwk), as: UTF8.self))
        default:
            context.line(String(decoding: try encoder.encode(JWKSet(keys: [publicKey.jwk])), as: UTF8.self))
        }
        return .success
    }
}

/// `holdfast-broker sign`: sign a document (JWS) or a claims set (JWT).
struct Sign: Subcommand {
    static let path = ["sign"]
    static let summary = "sign a document as a compact JWS (EdDSA), or a claims set as a JWT"
    static let positionals = "[FILE|-]"
    static let options = [
        OptionSpec("key", value: "FILE", help: "the private key file (required)"),
        OptionSpec("typ", value: "TYPE", help: "document type for the typ header"),
        OptionSpec("jwt", help: "the input is a JSON object of claims; add iat, exp, jti"),
        OptionSpec("iss", value: "ISSUER", help: "with --jwt: issuer"),
        OptionSpec("sub", value: "SUBJECT", help: "with --jwt: subject"),
        OptionSpec("aud", value: "AUDIENCE", help: "with --jwt: audience"),
        OptionSpec("expires", value: "DURATION", help: "with --jwt: lifetime, e.g. 10m (default 10m)"),
    ]

    let key: String
    let input: String
    let type: String?
    let jwt: Bool
    let issuer: String?
    let subject: String?
    let audience: String?
    let lifetime: Int64

    init(_ arguments: ParsedArguments) throws(UsageError) {
        key = try arguments.required("key")
        guard arguments.positionals.count <= 1 else { throw UsageError("one input at most") }
        input = arguments.positionals.first ?? "-"
        type = arguments.value("typ")
        jwt = arguments.flag("jwt")
        issuer = arguments.value("iss")
        subject = arguments.value("sub")
        audience = arguments.value("aud")
        lifetime = try arguments.duration("expires") ?? 600
        if !jwt, issuer != nil || subject != nil || audience != nil || arguments.value("expires") != nil {
            throw UsageError("--iss, --sub, --aud and --expires go with --jwt")
        }
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let signingKey = try SigningKey.load(from: key)
        let payload = try InputFile.read(input, context: context, limit: JWS.maximumSize / 2)
        guard jwt else {
            guard !payload.isEmpty else { throw CommandFailure("the input is empty; nothing to sign", exitCode: .dataError) }
            let header = JWSHeader(keyID: signingKey.publicKey.thumbprint, type: type)
            context.line(try JWS.sign(payload, with: signingKey, header: header))
            return .success
        }
        let other: [String: JSONValue]
        do {
            other = payload.isEmpty ? [:] : try JSONDecoder().decode([String: JSONValue].self, from: Data(payload))
        } catch {
            throw CommandFailure("the claims input is not a JSON object", exitCode: .dataError)
        }
        if let duplicate = JSONDuplicateKeys.first(in: payload) {
            throw CommandFailure("the claims name \"\(duplicate)\" twice", exitCode: .dataError)
        }
        let now = Date()
        var claims: JWTClaims
        do {
            claims = try JSONDecoder().decode(JWTClaims.self, from: try JSONEncoder().encode(other))
        } catch {
            throw CommandFailure("the claims are not a valid claims set (iss, sub, jti strings; aud a string or strings; dates numbers)", exitCode: .dataError)
        }
        claims.issuer = issuer ?? claims.issuer
        claims.subject = subject ?? claims.subject
        claims.audience = audience.map { [$0] } ?? claims.audience
        claims.issuedAt = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        claims.expiresAt = claims.issuedAt.map { $0 + Double(lifetime) }
        claims.id = try SecureRandom.token(bytes: 16)
        do {
            context.line(try JWT.sign(claims, with: signingKey, type: type ?? "JWT"))
        } catch {
            throw CommandFailure("cannot sign these claims: \(error.message)", exitCode: .dataError)
        }
        return .success
    }
}

/// `holdfast-broker fingerprint`: the SHA-256 fingerprint agents pin.
struct Fingerprint: Subcommand {
    static let path = ["fingerprint"]
    static let summary = "print the SHA-256 fingerprint of a certificate (PEM or DER), for pinning"
    static let positionals = "CERT"

    let certificate: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1 else { throw UsageError("give one certificate file") }
        certificate = arguments.positionals[0]
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let bytes = try InputFile.read(certificate, context: context)
        let fingerprint: [UInt8]
        do {
            fingerprint = try CertificateFingerprint.sha256(of: bytes)
        } catch {
            throw CommandFailure("\(certificate) is not a PEM or DER certificate", exitCode: .dataError)
        }
        context.line("sha256:\(Hex.encode(fingerprint))")
        return .success
    }
}

/// `holdfast-broker init --hostname NAME [--dir DIR] [--days N] [--force]`: the quick start — a
/// broker CA, a server certificate for NAME signed by it, and the broker's Ed25519 signing key.
struct Init: Subcommand {
    static let path = ["init"]
    static let summary = "create a broker CA, a server certificate for --hostname and the signing key (quick start)"
    static let options = [
        OptionSpec("hostname", value: "NAME", help: "the name (or IP address) agents and gateways use to reach the broker (required)"),
        OptionSpec("dir", value: "DIR", help: "where to write them (default /etc/holdfast-broker; created 0700)"),
        OptionSpec("days", value: "N", help: "validity of the server certificate (default 397; the CA gets ten times that)"),
        OptionSpec("force", help: "replace existing files"),
    ]

    let hostname: String
    let directory: String
    let days: Int
    let force: Bool

    init(_ arguments: ParsedArguments) throws(UsageError) {
        hostname = try arguments.required("hostname")
        directory = arguments.value("dir") ?? "/etc/holdfast-broker"
        guard let days = Int(arguments.value("days") ?? "397"), (1...3_650).contains(days) else { throw UsageError("--days takes 1 to 3650") }
        self.days = days
        force = arguments.flag("force")
        try arguments.noPositionals()
    }

    static let files = ["ca.pem", "ca.key", "server.pem", "server.key", "signing.key"]

    func run(_ context: CommandContext) throws -> ExitCode {
        // Created 0700, or an existing one that is ours, private and not a symlink: the CA that
        // tokens pin must not be replaceable by anyone else.
        do {
            try SecureFile.ensurePrivateDirectory(directory)
        } catch {
            throw CommandFailure("\(directory): \(error)", exitCode: .noPermission)
        }
        var info = stat()
        if !force, let existing = Self.files.first(where: { lstat(directory + "/" + $0, &info) == 0 }) {
            throw CommandFailure("\(directory)/\(existing) exists; refusing to replace it (--force replaces)")
        }
        do {
            let authority = try TLSIdentity.authority(commonName: "Holdfast broker CA", validDays: days * 10, constrainedTo: hostname)
            let server = try authority.issueServer(hostname: hostname, validDays: days)
            let signing = try SigningKey.generate()
            // Keys 0600 first, certificates 0644 (agents and gateways are given the CA).
            try SecureFile.write(try authority.keyPEM(), to: directory + "/ca.key", mode: 0o600)
            try SecureFile.write(try server.keyPEM(), to: directory + "/server.key", mode: 0o600)
            try signing.save(to: directory + "/signing.key")
            let caPEM = try authority.certificatePEM()
            try SecureFile.write(caPEM, to: directory + "/ca.pem", mode: 0o644)
            try SecureFile.write(try server.certificatePEM(), to: directory + "/server.pem", mode: 0o644)
            // The same form as `holdfast-broker fingerprint`, which agents pin.
            let fingerprint = "sha256:" + Hex.encode(try CertificateFingerprint.sha256(of: caPEM))
            context.line("wrote \(directory)/ca.pem, ca.key, server.pem (for \(hostname)), server.key and signing.key")
            context.line("CA fingerprint      \(fingerprint)")
            context.line("signing key         \(signing.publicKey.thumbprint)")
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure("\(error)")
        }
        return .success
    }
}

/// `holdfast-broker key rotate [--dir DIR]` (admin): a new signing key. The old one becomes
/// `signing.previous.key` (still published and accepted during the overlap) and signs an
/// announcement of the new one (`rotation.jws`), the only way a pinned agent accepts it.
/// `serve` reads the keys at start: restart it after rotating.
struct KeyRotate: Subcommand {
    static let path = ["key", "rotate"]
    static let summary = "rotate the broker's signing key; the old key announces the new one to pinned agents (admin)"
    static let options = [
        BrokerState.stateOption,
        OptionSpec("dir", value: "DIR", help: "where signing.key is (default /etc/holdfast-broker)"),
    ]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let directory = arguments.value("dir") ?? "/etc/holdfast-broker"
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        let old = try BrokerState.signingKey(directory)
        if SmallFile.exists(directory + "/signing.previous.key") {
            throw CommandFailure("a rotation is still in its overlap (\(directory)/signing.previous.key exists): `holdfast-broker key retire` once every agent has moved", exitCode: .failure)
        }
        let new = try SigningKey.generate()
        let announcement = try Broker.announceKey(new.publicKey, signedBy: old, at: BrokerState.now)
        // Order: the announcement and the previous key first, the new current key last, so a
        // crash in between leaves the old key current and nothing announced that is not saved.
        try old.save(to: directory + "/signing.previous.key")
        try new.save(to: directory + "/signing.next.key")
        try SecureFile.write(Array((announcement + "\n").utf8), to: directory + "/rotation.jws", mode: 0o644)
        guard rename(directory + "/signing.next.key", directory + "/signing.key") == 0 else {
            throw CommandFailure("cannot put the new key in place: \(String(cString: strerror(errno)))", exitCode: .failure)
        }
        try storage.recordAdminAction(admin: admin, verb: "key rotate", detail: "old=\(old.publicKey.thumbprint) new=\(new.publicKey.thumbprint)", at: BrokerState.now)
        context.line("signing key rotated: \(old.publicKey.thumbprint) -> \(new.publicKey.thumbprint); restart holdfast-broker serve; agents move over at their next contact")
        // The agents' policy in force is re-signed by the new key as the next version, so agents
        // enrolled after the old key retires can still verify it.
        if let latest = try storage.latestDocument(kind: .agentPolicy),
           let verified = try? JWS.verify(latest.document, key: old.publicKey),
           let payload = try? JSONDecoder().decode(JSONValue.self, from: Data(verified.payload)),
           let encoded = payload["document"]?.stringValue, let bytes = Base64URL.decode(encoded) {
            let version = try Versioned.add(storage, kind: .agentPolicy, admin: admin) { version in
                try Broker.signAgentPolicy(bytes, version: version, at: BrokerState.now, key: new)
            }
            try storage.recordAdminAction(admin: admin, verb: "agent-policy set", detail: "version=\(version) sha256=\(SHA256.hex(bytes)) (re-signed by key rotate)", at: BrokerState.now)
            context.line("agent policy version \(latest.version) re-signed with the new key as version \(version)")
        }
        return .success
    }
}

/// `holdfast-broker key retire [--dir DIR]` (admin): ends a rotation's overlap; the old key is
/// no longer published or accepted.
struct KeyRetire: Subcommand {
    static let path = ["key", "retire"]
    static let summary = "end a key rotation's overlap: the previous signing key is no longer published or accepted (admin)"
    static let options = [
        BrokerState.stateOption,
        OptionSpec("dir", value: "DIR", help: "where signing.key is (default /etc/holdfast-broker)"),
    ]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let directory = arguments.value("dir") ?? "/etc/holdfast-broker"
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        guard SmallFile.exists(directory + "/signing.previous.key") else { throw CommandFailure("no rotation in its overlap", exitCode: .failure) }
        let old = try? SigningKey.load(from: directory + "/signing.previous.key")
        unlink(directory + "/rotation.jws")
        unlink(directory + "/signing.previous.key")
        try storage.recordAdminAction(admin: admin, verb: "key retire", detail: "old=\(old?.publicKey.thumbprint ?? "?")", at: BrokerState.now)
        context.line("previous signing key retired; restart holdfast-broker serve")
        return .success
    }
}
