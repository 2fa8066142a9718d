import FoundationEssentials
import HoldfastBroker
import HoldfastCommandLine
import HoldfastCore
import HoldfastStore

/// `holdfast-broker requests`, `approve`, `deny`, `revoke`: users' requests for just-in-time
/// exceptions and the approver's decisions (docs/exceptions.md).
enum RequestView {
    static func json(_ request: StoredRequest, now: Int64) -> JSONValue {
        var row: [String: JSONValue] = [
            "number": .int(request.number), "device": .string(request.device), "request": .string(request.request), "kind": .string(request.kind),
            "user": .string(request.user), "uid": .int(request.uid), "seconds": .int(request.seconds), "reason": .string(request.reason),
            "created": .int(request.created), "received_at": .int(request.receivedAt), "status": .string(shownStatus(request, now: now)),
        ]
        row["match"] = (try? JSONValue.parse(Array(request.match.utf8))) ?? .string(request.match)
        if let summary = request.summary { row["summary"] = .string(summary) }
        if let label = request.label { row["label"] = .string(label) }
        if let at = request.decidedAt { row["decided_at"] = .int(at) }
        if let by = request.decidedBy { row["decided_by"] = .string(by) }
        if let note = request.note { row["note"] = .string(note) }
        if let until = request.until { row["until"] = .int(until) }
        if let seq = request.commandSequence { row["command_seq"] = .int(seq) }
        if let seq = request.revokeSequence { row["revoke_seq"] = .int(seq) }
        if let at = request.revokedAt { row["revoked_at"] = .int(at) }
        if let by = request.revokedBy { row["revoked_by"] = .string(by) }
        if let note = request.revokeNote { row["revoke_note"] = .string(note) }
        if let status = request.commandStatus {
            var agent: [String: JSONValue] = ["status": .string(status)]
            if let detail = request.commandDetail { agent["detail"] = .string(detail) }
            if let at = request.commandStatusAt { agent["at"] = .int(at) }
            row["agent"] = .object(agent)
        }
        return .object(row)
    }

    /// `not-applied` for an approval the device refused, `expired` for one past its end.
    static func shownStatus(_ request: StoredRequest, now: Int64) -> String {
        if request.status == "approved", request.commandStatus == "refused" { return "not-applied" }
        if request.status == "approved", let until = request.until, until <= now { return "expired" }
        return request.status
    }

    static func time(_ seconds: Int64) -> String { Date(timeIntervalSince1970: Double(seconds)).formatted(.iso8601) }

    static func lines(_ request: StoredRequest, now: Int64) -> [String] {
        var state = shownStatus(request, now: now).uppercased()
        switch state {
        case "APPROVED": state += " until \(time(request.until ?? 0)) by \(request.decidedBy ?? "?")"
        case "EXPIRED": state += " at \(time(request.until ?? 0)) (approved by \(request.decidedBy ?? "?"))"
        case "DENIED": state += " by \(request.decidedBy ?? "?")"
        case "NOT-APPLIED": state = "APPROVED by \(request.decidedBy ?? "?") but NOT APPLIED on the device"
        case "REVOKED": state += " by \(request.revokedBy ?? "?") (approved by \(request.decidedBy ?? "?"))"
        default: break
        }
        if let note = request.revokeNote ?? request.note { state += ": \(Printable.escape(note))" }
        if let status = request.commandStatus {
            state += status == "queued" ? "; not yet at the device" : "; the device \(status) it" + (request.commandDetail.map { " (\(Printable.escape($0)))" } ?? "")
        }
        return [
            "#\(request.number)  \(request.device)  \(Printable.escape(request.user)) (uid \(request.uid))  \(request.summary ?? request.kind)  for \(DurationText.text(request.seconds))  asked \(time(request.created))",
            "    \(state)",
            "    reason: \(Printable.escape(request.reason))",
        ] + (request.label.map { ["    the device saw: \(Printable.escape($0))"] } ?? [])
    }

    static func number(_ arguments: ParsedArguments) throws(UsageError) -> Int64 {
        guard arguments.positionals.count == 1 else { throw UsageError("say the request number (holdfast-broker requests lists them)") }
        let text = arguments.positionals[0].hasPrefix("#") ? String(arguments.positionals[0].dropFirst()) : arguments.positionals[0]
        guard let number = Int64(text), number >= 1 else { throw UsageError("\(Printable.escape(arguments.positionals[0])) is not a request number") }
        return number
    }

    static func note(_ arguments: ParsedArguments, required: Bool) throws(UsageError) -> String? {
        guard let note = arguments.value("note")?.trimmingSpaces else {
            if required { throw UsageError("say --note: why, in words the requester and the trail will read") }
            return nil
        }
        guard RemoteCommand.isWords(note, maximumBytes: RemoteCommand.maximumReasonBytes) else {
            throw UsageError("--note is 1 to \(RemoteCommand.maximumReasonBytes) bytes without control characters")
        }
        return note
    }

    static func decide(_ arguments: ParsedArguments, _ context: CommandContext, _ number: Int64, _ decision: Broker.RequestDecision, note: String) throws -> ExitCode {
        let key = try BrokerState.signingKey(arguments.value("dir") ?? "/etc/holdfast-broker")
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        let decided: StoredRequest
        do {
            decided = try Broker.decideRequest(storage: storage, key: key, number: number, decision: decision, note: note, admin: admin, at: BrokerState.now)
        } catch let error as ComplianceError {
            throw CommandFailure(error.message, exitCode: .failure)
        }
        if arguments.flag("json") {
            try BrokerState.printJSON(json(decided, now: BrokerState.now), context)
        } else {
            let what = decided.summary ?? decided.kind
            switch decision {
            case .approve:
                context.line("request #\(number) approved: \(what) for \(Printable.escape(decided.user)) on \(decided.device) until \(time(decided.until ?? 0)); the device applies it at its next poll if that comes before then (holdfast-broker requests --all shows whether it did)")
            case .deny:
                context.line("request #\(number) denied; \(Printable.escape(decided.user)) sees it in 'holdfast requests'")
            case .revoke:
                context.line("request #\(number)'s exception revoked; the agent ends it when its poll returns")
            }
        }
        return .success
    }
}

struct RequestsList: Subcommand {
    static let path = ["requests"]
    static let summary = "list users' exception requests waiting for a decision and approvals a device did not apply (--all: every one), newest first"
    static let options = [
        BrokerState.stateOption, OptionSpec("all", help: "decided ones too"), OptionSpec("device", value: "ID", help: "only this device's"),
        OptionSpec("limit", value: "N", help: "at most N (default 100)"), OptionSpec("json", help: "one JSON array"),
    ]

    let arguments: ParsedArguments
    let limit: Int

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        guard let limit = arguments.value("limit").map({ Int($0) }) ?? 100, (1...100_000).contains(limit) else { throw UsageError("--limit is 1…100000") }
        if let device = arguments.value("device"), !RemoteCommand.isDeviceID(device) { throw UsageError("\(Printable.escape(device)) is not a device id") }
        self.limit = limit
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let now = BrokerState.now
        // Waiting ones, and approvals the device did not apply (the approver must hear of those).
        let rows = arguments.flag("all")
            ? try storage.requests(statuses: nil, device: arguments.value("device"), limit: limit)
            : try storage.requestsNeedingAttention(device: arguments.value("device"), limit: limit)
        if arguments.flag("json") {
            try BrokerState.printJSON(JSONValue.array(rows.map { RequestView.json($0, now: now) }), context)
            return .success
        }
        if rows.isEmpty { context.line(arguments.flag("all") ? "no requests" : "no requests waiting") }
        for row in rows { for line in RequestView.lines(row, now: now) { context.line(line) } }
        return .success
    }
}

struct Approve: Subcommand {
    static let path = ["approve"]
    static let summary = "approve a request: a signed exception with an absolute end goes to its device (admin)"
    static let positionals = "NUMBER"
    static let options = [
        BrokerState.stateOption,
        OptionSpec("dir", value: "DIR", help: "where signing.key is (default /etc/holdfast-broker)"),
        OptionSpec("for", value: "DURATION", help: "from now (default: what was asked; at most 30d)"),
        OptionSpec("note", value: "TEXT", help: "your words to the requester and the trail (default \"approved\")"),
        OptionSpec("json", help: "print the request as decided, as JSON"),
    ]

    let arguments: ParsedArguments
    let number: Int64
    let seconds: Int64?
    let note: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        number = try RequestView.number(arguments)
        seconds = try arguments.duration("for")
        if let seconds, seconds > AccessRequestSubmission.maximumSeconds { throw UsageError("--for is at most 30d") }
        note = try RequestView.note(arguments, required: false) ?? "approved"
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        try RequestView.decide(arguments, context, number, .approve(seconds: seconds), note: note)
    }
}

/// What `deny` and `revoke` differ in: the rest is one command (a number and a required note).
protocol NotedDecision {
    static var path: [String] { get }
    static var summary: String { get }
    static var decision: Broker.RequestDecision { get }
}

enum DenyDecision: NotedDecision {
    static let path = ["deny"]
    static let summary = "deny a request, with a note the requester reads (admin)"
    static let decision = Broker.RequestDecision.deny
}

enum RevokeDecision: NotedDecision {
    static let path = ["revoke"]
    static let summary = "end an approved exception before its time (admin)"
    static let decision = Broker.RequestDecision.revoke
}

/// `holdfast-broker deny N --note …` and `revoke N --note …`.
struct NotedDecisionCommand<Kind: NotedDecision>: Subcommand {
    static var path: [String] { Kind.path }
    static var summary: String { Kind.summary }
    static var positionals: String { "NUMBER" }
    static var options: [OptionSpec] {
        [
            BrokerState.stateOption, OptionSpec("dir", value: "DIR", help: "where signing.key is (default /etc/holdfast-broker)"),
            OptionSpec("note", value: "TEXT", help: "why (required)"), OptionSpec("json", help: "print the request as decided, as JSON"),
        ]
    }

    let arguments: ParsedArguments
    let number: Int64
    let note: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        number = try RequestView.number(arguments)
        note = try RequestView.note(arguments, required: true) ?? ""
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        try RequestView.decide(arguments, context, number, Kind.decision, note: note)
    }
}
