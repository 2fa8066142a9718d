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

/// What the admin sees of a device: facts, status now, last contact, failing checks, policy.
enum DeviceSummary {
    static let staleOption = OptionSpec("stale-after", value: "DURATION", help: "when a device counts as stale (default 15m, as serve)")

    static func row(_ device: EnrolledDevice, _ storage: any BrokerStorage, staleAfter: Int64, now: Int64) throws -> [String: JSONValue] {
        var row: [String: JSONValue] = ["id": .string(device.id), "enrolled_at": .int(device.enrolledAt)]
        if let facts = try? JSONDecoder().decode(JSONValue.self, from: Data(device.facts.utf8)) {
            row["facts"] = facts
            if let host = facts["hostname"] { row["hostname"] = host }
        }
        if let removed = device.removedAt { row["removed_at"] = .int(removed) }
        if let seen = device.lastSeen { row["last_seen"] = .int(seen) }
        if let version = device.policyVersion { row["policy_version"] = .int(version) }
        if let beat = device.heartbeatAt { row["heartbeat_at"] = .int(beat) }
        if let text = device.heartbeat, let health = try? JSONValue.parse(text.utf8) {
            row["heartbeat"] = health
            // Services the agent says are not running: what an admin looks at first.
            if case .object(let services)? = health["services"] {
                let down = services.filter { $0.value.stringValue != "running" }.map { "\($0.key):\($0.value.stringValue ?? "?")" }.sorted()
                if !down.isEmpty { row["services_down"] = .array(down.map(JSONValue.string)) }
            }
        }
        if let status = device.policyStatus { row["policy_status"] = .string(status) }
        var status = device.removedAt != nil ? "removed" : "not-attested"
        if let attestation = try storage.latestAttestation(device: device.id) {
            row["attested_at"] = .int(attestation.at)
            row["decision"] = .string(attestation.decision)
            if let user = attestation.user { row["user"] = .string(user) }
            if let report = try? JSONDecoder().decode(JSONValue.self, from: Data(attestation.report.utf8)), case .array(let checks)? = report["checks"] {
                row["failing"] = .array(checks.filter { $0["status"]?.stringValue == "fail" }.compactMap { $0["id"] })
            }
            if device.removedAt == nil {
                status = now - attestation.at > staleAfter ? "stale" : attestation.decision
            }
        }
        row["status"] = .string(status)
        row["events"] = .int(Int64(try storage.eventCount(device: device.id, kind: nil)))
        return row
    }
}

/// `holdfast-broker devices [--json]`: every device, its status, last contact and policy version.
struct Devices: Subcommand {
    static let path = ["devices"]
    static let summary = "list enrolled devices: hostname, status, last seen, failing checks, policy version"
    static let options = [BrokerState.stateOption, DeviceSummary.staleOption, OptionSpec("json", help: "one JSON array")]

    let arguments: ParsedArguments
    let staleAfter: Int64

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        staleAfter = try arguments.duration("stale-after") ?? 900
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let rows = try storage.devices().map { JSONValue.object(try DeviceSummary.row($0, storage, staleAfter: staleAfter, now: BrokerState.now)) }
        if arguments.flag("json") {
            try BrokerState.printJSON(JSONValue.array(rows), context)
            return .success
        }
        if rows.isEmpty { context.line("no devices enrolled") }
        for row in rows {
            let when = { (key: String) in row[key]?.intValue.map { Date(timeIntervalSince1970: Double($0)).formatted(.iso8601) } ?? "never" }
            let host = row["hostname"]?.stringValue ?? "?"
            var failing = ""
            if case .array(let ids)? = row["failing"], !ids.isEmpty { failing = "  failing " + ids.compactMap(\.stringValue).joined(separator: ",") }
            if case .array(let down)? = row["services_down"] { failing += "  down " + down.compactMap(\.stringValue).map(Printable.escape).joined(separator: ",") }
            context.line("\(row["id"]?.stringValue ?? "")  \(Printable.escape(host))  \(row["status"]?.stringValue ?? "?")  seen \(when("last_seen"))  attested \(when("attested_at"))  policy \(row["policy_version"]?.intValue.map { "v\($0)" } ?? "-")\(failing)")
        }
        return .success
    }
}

/// `holdfast-broker device ID [--json]`: one device in full.
struct DeviceShow: Subcommand {
    static let path = ["device"]
    static let summary = "show one device: facts, status, last contact, failing checks, policy, recent trail"
    static let positionals = "ID"
    static let options = [BrokerState.stateOption, DeviceSummary.staleOption, OptionSpec("json", help: "print JSON")]

    let id: String
    let arguments: ParsedArguments
    let staleAfter: Int64

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1 else { throw UsageError("say the device ID (holdfast-broker devices lists them)") }
        id = arguments.positionals[0]
        staleAfter = try arguments.duration("stale-after") ?? 900
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        guard let device = try storage.device(id: id) else { throw CommandFailure("no device \(Printable.escape(id))", exitCode: .failure) }
        var row = try DeviceSummary.row(device, storage, staleAfter: staleAfter, now: BrokerState.now)
        let trail = try storage.logEntries(device: id, limit: 10).reversed().map { entry -> JSONValue in
            .object(["time": .int(entry.time), "kind": .string(entry.kind), "detail": .string(entry.detail)])
        }
        row["trail"] = .array(Array(trail))
        let lockdown = try LockdownSummary.view(device, storage)
        row["lockdown"] = lockdown
        if arguments.flag("json") {
            try BrokerState.printJSON(JSONValue.object(row), context)
            return .success
        }
        let when = { (key: String) in row[key]?.intValue.map { Date(timeIntervalSince1970: Double($0)).formatted(.iso8601) } ?? "never" }
        context.line("device      \(id) (\(Printable.escape(row["hostname"]?.stringValue ?? "?")))")
        context.line("status      \(row["status"]?.stringValue ?? "?")")
        context.line("enrolled    \(when("enrolled_at"))\(row["removed_at"] != nil ? ", removed \(when("removed_at"))" : "")")
        context.line("last seen   \(when("last_seen")), attested \(when("attested_at"))")
        if case .array(let ids)? = row["failing"] { context.line("failing     \(ids.isEmpty ? "none" : ids.compactMap(\.stringValue).joined(separator: ", "))") }
        context.line("policy      \(row["policy_version"]?.intValue.map { "v\($0)" } ?? "-") \(Printable.escape(row["policy_status"]?.stringValue ?? ""))")
        context.line("events      \(row["events"]?.intValue ?? 0) uploaded")
        if let health = row["heartbeat"] {
            var parts: [String] = []
            if let version = health["agent_version"]?.stringValue { parts.append("agent \(Printable.escape(version))") }
            if let uptime = health["uptime_s"]?.intValue { parts.append("up \(uptime) s") }
            if let pending = health["pending_events"]?.intValue { parts.append("\(pending) event(s) not yet uploaded") }
            context.line("heartbeat   \(when("heartbeat_at"))" + (parts.isEmpty ? "" : " (\(parts.joined(separator: ", ")))"))
            if case .object(let services)? = health["services"], !services.isEmpty {
                context.line("services    " + services.keys.sorted().map { "\(Printable.escape($0)) \(Printable.escape(services[$0]?.stringValue ?? "?"))" }.joined(separator: ", "))
            }
        } else {
            context.line("heartbeat   never")
        }
        let lockdownLines = LockdownSummary.lines(lockdown)
        context.line("lockdown    " + (lockdownLines.isEmpty ? "none requested, none reported" : "per scope: the last command, what the agent made of it, what is in force"))
        for line in lockdownLines { context.line(line) }
        for entry in trail {
            let time = entry["time"]?.intValue.map { Date(timeIntervalSince1970: Double($0)).formatted(.iso8601) } ?? ""
            context.line("  \(time)  \(entry["kind"]?.stringValue ?? "")  \(Printable.escape(entry["detail"]?.stringValue ?? ""))")
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
        for entry in try storage.logEntries(device: arguments.value("device"), limit: limit).reversed() {
            if arguments.flag("json") {
                let object: JSONValue = .object(["id": .int(entry.id), "time": .int(entry.time), "device": .string(entry.device), "kind": .string(entry.kind), "detail": .string(entry.detail)])
                try BrokerState.printJSON(object, context)
            } else {
                context.line("\(Date(timeIntervalSince1970: Double(entry.time)).formatted(.iso8601))  \(entry.device.isEmpty ? "-" : entry.device)  \(entry.kind)  \(Printable.escape(entry.detail))")
            }
        }
        return .success
    }
}

/// `holdfast-broker events [--device ID] [--kind KIND] [--limit N] [--json]`: what devices uploaded.
struct Events: Subcommand {
    static let path = ["events"]
    static let summary = "list the events devices uploaded, newest first (deduplicated by their uuid)"
    static let options = [
        BrokerState.stateOption, OptionSpec("device", value: "ID", help: "one device only"), OptionSpec("kind", value: "KIND", help: "one event kind only"),
        OptionSpec("limit", value: "N", help: "newest N (default 50)"), OptionSpec("count", help: "print only how many (with --device)"),
        OptionSpec("json", help: "one event JSON object per line, as the device sent it"),
    ]

    let arguments: ParsedArguments
    let limit: Int

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        guard let limit = arguments.value("limit").map({ Int($0) }) ?? 50, (1...1_000_000).contains(limit) else { throw UsageError("--limit is 1…1000000") }
        if arguments.flag("count"), arguments.value("device") == nil { throw UsageError("--count needs --device") }
        self.limit = limit
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        if arguments.flag("count"), let device = arguments.value("device") {
            context.line("\(try storage.eventCount(device: device, kind: arguments.value("kind")))")
            return .success
        }
        for event in try storage.events(device: arguments.value("device"), kind: arguments.value("kind"), limit: limit).reversed() {
            if arguments.flag("json") {
                context.line(event.body)
            } else {
                let when = Date(timeIntervalSince1970: Double(event.timeMilliseconds) / 1_000).formatted(.iso8601)
                let message = (try? JSONDecoder().decode(JSONValue.self, from: Data(event.body.utf8)))?["message"]?.stringValue ?? ""
                context.line("\(when)  \(event.device)  \(event.kind)  \(Printable.escape(message))")
            }
        }
        return .success
    }
}

/// `holdfast-broker alerts [--all] [--limit N] [--json]`: open alerts, highest risk first.
struct Alerts: Subcommand {
    static let path = ["alerts"]
    static let summary = "list open alerts from every device, deduplicated, highest risk first (docs/alerts.md)"
    static let options = [
        BrokerState.stateOption, OptionSpec("all", help: "acknowledged ones too"), OptionSpec("limit", value: "N", help: "at most N (default 50)"),
        OptionSpec("json", help: "one JSON array"),
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
        let alerts = try storage.alerts(includeClosed: arguments.flag("all"), limit: limit)
        if arguments.flag("json") {
            let rows: [JSONValue] = alerts.map { alert in
                var row: [String: JSONValue] = [
                    "id": .int(alert.id), "device": .string(alert.device), "user": .string(alert.user), "kind": .string(alert.kind),
                    "first_seen_ms": .int(alert.firstSeen), "last_seen_ms": .int(alert.lastSeen), "count": .int(alert.count), "severity_id": .int(alert.severity),
                    "score": .int(alert.score), "summary": .string(alert.summary), "event_uuid": .string(alert.eventUUID), "status": .string(alert.status),
                ]
                if let by = alert.acknowledgedBy { row["acknowledged_by"] = .string(by) }
                if let at = alert.acknowledgedAt { row["acknowledged_at"] = .int(at) }
                if let note = alert.note { row["note"] = .string(note) }
                return .object(row)
            }
            try BrokerState.printJSON(JSONValue.array(rows), context)
            return .success
        }
        if alerts.isEmpty { context.line(arguments.flag("all") ? "no alerts" : "no open alerts") }
        for alert in alerts {
            let last = Date(timeIntervalSince1970: Double(alert.lastSeen) / 1_000).formatted(.iso8601)
            let closed = alert.status == "open" ? "" : "  [acknowledged by \(alert.acknowledgedBy ?? "?")]"
            context.line("#\(alert.id)  risk \(alert.score)  \(alert.device)  \(Printable.escape(alert.user))  \(alert.kind) ×\(alert.count)  last \(last)  \(Printable.escape(alert.summary))\(closed)")
        }
        return .success
    }
}

/// `holdfast-broker ack ID --note TEXT` (admin): closes an alert with the admin's name.
struct Ack: Subcommand {
    static let path = ["ack"]
    static let summary = "close an open alert with your name and a note (admin)"
    static let positionals = "ID"
    static let options = [BrokerState.stateOption, OptionSpec("note", value: "TEXT", help: "why it is closed (required)")]

    let id: Int64
    let note: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1, let id = Int64(arguments.positionals[0].hasPrefix("#") ? String(arguments.positionals[0].dropFirst()) : arguments.positionals[0]) else {
            throw UsageError("say the alert ID (holdfast-broker alerts lists them)")
        }
        note = try arguments.required("note")
        guard !note.isEmpty, note.utf8.count <= 1_000 else { throw UsageError("--note is 1 to 1000 characters") }
        self.id = id
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        guard try storage.acknowledgeAlert(id: id, admin: admin, note: note, at: BrokerState.now) else {
            throw CommandFailure("no open alert #\(id)", exitCode: .failure)
        }
        try storage.recordAdminAction(admin: admin, verb: "ack", detail: "alert=\(id) note=\(note)", at: BrokerState.now)
        context.line("alert #\(id) acknowledged by \(admin)")
        return .success
    }
}
