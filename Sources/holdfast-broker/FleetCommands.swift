import FoundationEssentials
import HoldfastBroker
import HoldfastCommandLine
import HoldfastCore
import HoldfastCrypto
import HoldfastStore

/// Shared by the verbs that store a new version of a document.
enum Versioned {
    /// Stores `make(version)` as the next version; of two admins racing, the loser retries on the
    /// version after the winner's.
    static func add(_ storage: any BrokerStorage, kind: DocumentKind, admin: String, make: (Int64) throws -> String) throws -> Int64 {
        for _ in 0..<5 {
            let version = ((try storage.latestDocument(kind: kind))?.version ?? 0) + 1
            let document = try make(version)
            if try storage.addDocument(VersionedDocument(kind: kind, version: version, document: document, setBy: admin, setAt: BrokerState.now)) {
                return version
            }
        }
        throw CommandFailure("another admin keeps setting the \(kind.rawValue) at the same time; try again", exitCode: .failure)
    }
}

/// `holdfast-broker policy set FILE` (admin): the compliance policy attestations are judged by.
struct PolicySet: Subcommand {
    static let path = ["policy", "set"]
    static let summary = "set the compliance policy (admin; takes effect for every device at once)"
    static let positionals = "FILE|-"
    static let options = [BrokerState.stateOption]

    let file: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1 else { throw UsageError("say the policy FILE (or - for standard input)") }
        file = arguments.positionals[0]
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let bytes = try InputFile.read(file, context: context, limit: 1 << 20)
        let policy: CompliancePolicy
        do {
            policy = try CompliancePolicy.parse(bytes)
        } catch {
            throw CommandFailure("\(file): \(error.message); the policy in force stays", exitCode: .dataError)
        }
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        let version = try Versioned.add(storage, kind: .compliancePolicy, admin: admin) { _ in String(decoding: bytes, as: UTF8.self) }
        try storage.recordAdminAction(admin: admin, verb: "policy set", detail: "version=\(version) sha256=\(SHA256.hex(bytes)) checks=\(policy.rules.map(\.id).joined(separator: ","))", at: BrokerState.now)
        context.line("compliance policy version \(version) in force (\(policy.rules.count) checks), set by \(admin)")
        return .success
    }
}

/// `holdfast-broker policy show [--json]`: the compliance policy in force.
struct PolicyShow: Subcommand {
    static let path = ["policy", "show"]
    static let summary = "print the compliance policy in force, its version and who set it"
    static let options = [BrokerState.stateOption, OptionSpec("json", help: "the document only, as stored")]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        guard let stored = try storage.latestDocument(kind: .compliancePolicy) else {
            context.error("no compliance policy is set: every attested device counts as compliant")
            return .failure
        }
        if !arguments.flag("json") {
            context.error("version \(stored.version), set by \(stored.setBy) at \(Date(timeIntervalSince1970: Double(stored.setAt)).formatted(.iso8601))")
        }
        context.out(stored.document.hasSuffix("\n") ? stored.document : stored.document + "\n")
        return .success
    }
}

/// `holdfast-broker agent-policy set FILE` (admin): the agents' policy (the policy.json format),
/// signed with the broker's key and versioned; agents long-poll for it.
struct AgentPolicySet: Subcommand {
    static let path = ["agent-policy", "set"]
    static let summary = "sign and publish the agents' policy (policy.json format; admin)"
    static let positionals = "FILE|-"
    static let options = [BrokerState.stateOption, OptionSpec("dir", value: "DIR", help: "where signing.key is (default /etc/holdfast-broker)")]

    let file: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1 else { throw UsageError("say the policy FILE (or - for standard input)") }
        file = arguments.positionals[0]
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let bytes = try InputFile.read(file, context: context, limit: 4 << 20)
        do {
            _ = try Policy.parse(bytes)
        } catch {
            throw CommandFailure("\(file): \(error.message); nothing was published", exitCode: .dataError)
        }
        let directory = arguments.value("dir") ?? "/etc/holdfast-broker"
        let key = try BrokerState.signingKey(directory)
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        let version = try Versioned.add(storage, kind: .agentPolicy, admin: admin) { version in
            try Broker.signAgentPolicy(bytes, version: version, at: BrokerState.now, key: key)
        }
        try storage.recordAdminAction(admin: admin, verb: "agent-policy set", detail: "version=\(version) sha256=\(SHA256.hex(bytes))", at: BrokerState.now)
        context.line("agent policy version \(version) published (sha256 \(SHA256.hex(bytes).prefix(16))), signed with \(key.publicKey.thumbprint), by \(admin)")
        return .success
    }
}

/// `holdfast-broker device remove ID` (admin): unenrolls; the device's key and grants stop working.
struct DeviceRemove: Subcommand {
    static let path = ["device", "remove"]
    static let summary = "unenroll a device: its key is refused and its grants stop being honoured (admin)"
    static let positionals = "ID"
    static let options = [BrokerState.stateOption]

    let id: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1 else { throw UsageError("say the device ID") }
        id = arguments.positionals[0]
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        guard try storage.removeDevice(id: id, at: BrokerState.now) else {
            throw CommandFailure("no enrolled device \(Printable.escape(id))", exitCode: .failure)
        }
        try storage.recordAdminAction(admin: admin, verb: "device remove", detail: "id=\(id)", at: BrokerState.now)
        try storage.log(BrokerLogEntry(time: BrokerState.now, device: id, kind: "unenroll", detail: "by \(admin)"))
        context.line("device \(id) unenrolled by \(admin)")
        return .success
    }
}

/// `holdfast-broker devices [--json]`: every device, its last attestation and policy version.
struct Devices: Subcommand {
    static let path = ["devices"]
    static let summary = "list enrolled devices: last attestation, decision, policy version"
    static let options = [BrokerState.stateOption, OptionSpec("json", help: "one JSON array")]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        var rows: [JSONValue] = []
        for device in try storage.devices() {
            var row: [String: JSONValue] = ["id": .string(device.id), "enrolled_at": .int(device.enrolledAt)]
            if let facts = try? JSONDecoder().decode(JSONValue.self, from: Data(device.facts.utf8)) { row["facts"] = facts }
            if let removed = device.removedAt { row["removed_at"] = .int(removed) }
            if let seen = device.lastSeen { row["last_seen"] = .int(seen) }
            if let version = device.policyVersion { row["policy_version"] = .int(version) }
            if let status = device.policyStatus { row["policy_status"] = .string(status) }
            if let attestation = try storage.latestAttestation(device: device.id) {
                row["attested_at"] = .int(attestation.at)
                row["decision"] = .string(attestation.decision)
            }
            rows.append(.object(row))
        }
        if arguments.flag("json") {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            context.line(String(decoding: try encoder.encode(JSONValue.array(rows)), as: UTF8.self))
            return .success
        }
        if rows.isEmpty { context.line("no devices enrolled") }
        for row in rows {
            let when = { (key: String) in row[key]?.intValue.map { Date(timeIntervalSince1970: Double($0)).formatted(.iso8601) } ?? "never" }
            let host = row["facts"]?["hostname"]?.stringValue ?? "?"
            let state = row["removed_at"] != nil ? "removed" : (row["decision"]?.stringValue ?? "not attested")
            context.line("\(row["id"]?.stringValue ?? "")  \(Printable.escape(host))  \(state)  attested \(when("attested_at"))  policy \(row["policy_version"]?.intValue.map { "v\($0)" } ?? "-")")
        }
        return .success
    }
}

/// `holdfast-broker log [--device ID] [--limit N] [--json]`: enrollments, attestations, refusals.
struct LogCommand: Subcommand {
    static let path = ["log"]
    static let summary = "show the broker's trail: enrollments, attestations and every refusal with its reason"
    static let options = [
        BrokerState.stateOption, OptionSpec("device", value: "ID", help: "one device only"), OptionSpec("limit", value: "N", help: "newest N (default 50)"),
        OptionSpec("json", help: "one JSON object per line"),
    ]

    let arguments: ParsedArguments
    let limit: Int

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        guard let limit = arguments.value("limit").map({ Int($0) }) ?? 50, (1...100_000).contains(limit) else { throw UsageError("--limit is 1…100000") }
        self.limit = limit
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for entry in try storage.logEntries(device: arguments.value("device"), limit: limit).reversed() {
            if arguments.flag("json") {
                let object: JSONValue = .object(["id": .int(entry.id), "time": .int(entry.time), "device": .string(entry.device), "kind": .string(entry.kind), "detail": .string(entry.detail)])
                context.line(String(decoding: try encoder.encode(object), as: UTF8.self))
            } else {
                context.line("\(Date(timeIntervalSince1970: Double(entry.time)).formatted(.iso8601))  \(entry.device.isEmpty ? "-" : entry.device)  \(entry.kind)  \(Printable.escape(entry.detail))")
            }
        }
        return .success
    }
}
