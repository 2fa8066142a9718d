import FoundationEssentials
import HoldfastBroker
import HoldfastCommandLine
import HoldfastCore
import HoldfastStore

/// `holdfast-broker offboard USER --reason …`, `reinstate USER --reason …` and `offboard-status
/// USER`: revoke a person everywhere, see where it took, undo it (docs/offboarding.md).
enum OffboardVerb {
    static let options = [
        BrokerState.stateOption,
        OptionSpec("dir", value: "DIR", help: "where signing.key is (default /etc/holdfast-broker)"),
        OptionSpec("reason", value: "TEXT", help: "why, in words the trail and the devices' journals keep (required, except with --resend)"),
        OptionSpec("resend", help: "send the latest word on USER again to the devices that have not applied it and have none on its way (refused, not sent)"),
        OptionSpec("json", help: "print the result as JSON"),
    ]

    static func user(_ arguments: ParsedArguments) throws(UsageError) -> String {
        guard arguments.positionals.count <= 1 else { throw UsageError("one USER at a time; unexpected argument '\(Printable.escape(arguments.positionals[1]))'") }
        guard arguments.positionals.count == 1 else { throw UsageError("say the USER: the login name the agents report") }
        let user = arguments.positionals[0]
        guard LoginName.isValid(user) else { throw UsageError("\(Printable.escape(user)) is not a login name") }
        return user
    }

    static func reason(_ arguments: ParsedArguments) throws(UsageError) -> String {
        guard let reason = arguments.value("reason")?.trimmingSpaces, RemoteCommand.isWords(reason, maximumBytes: RemoteCommand.maximumReasonBytes) else {
            throw UsageError("say --reason: 1 to \(RemoteCommand.maximumReasonBytes) bytes without control characters")
        }
        return reason
    }

    static func run(user: String, reason: String?, offboard: Bool, arguments: ParsedArguments, context: CommandContext) throws -> ExitCode {
        let key = try BrokerState.signingKey(arguments.value("dir") ?? "/etc/holdfast-broker")
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        let result: Broker.OffboardingResult
        do {
            if let reason {
                result = try Broker.setOffboarded(storage: storage, key: key, user: user, offboard: offboard, reason: reason, admin: admin, at: BrokerState.now)
            } else {
                result = try Broker.resend(storage: storage, key: key, user: user, offboard: offboard, admin: admin, at: BrokerState.now)
            }
        } catch let error as ComplianceError {
            throw CommandFailure(error.message, exitCode: .failure)
        }
        if arguments.flag("json") {
            try BrokerState.printJSON(.object([
                "user": .string(result.record.user), "action": .string(result.record.action), "at": .int(result.record.at), "by": .string(admin), "reason": .string(result.record.reason),
                "devices": .int(Int64(result.devices)), "resent": .bool(reason == nil),
            ]), context)
        } else if reason == nil {
            let user = result.record.user
            context.line("\(result.record.action) of \(Printable.escape(user)) sent again to \(result.devices) devices (holdfast-broker offboard-status \(Printable.escape(user)))")
        } else if offboard {
            let user = result.record.user
            context.line("\(Printable.escape(user)) offboarded by \(admin): grants carrying \(Printable.escape(user)) are refused now; the revocation is queued for \(result.devices) devices, each applies it when its poll returns (holdfast-broker offboard-status \(Printable.escape(user)))")
        } else {
            let user = result.record.user
            context.line("\(Printable.escape(user)) reinstated by \(admin): queued for \(result.devices) devices (holdfast-broker offboard-status \(Printable.escape(user)))")
        }
        return .success
    }
}

/// What `offboard` and `reinstate` differ in: the rest is one command.
protocol OffboardDirection {
    static var path: [String] { get }
    static var summary: String { get }
    static var offboard: Bool { get }
}

enum OffboardUser: OffboardDirection {
    static let path = ["offboard"]
    static let summary = "revoke a user everywhere: grants refused now, a signed revocation to every device (sessions end, login denied, exceptions revoked) (admin)"
    static let offboard = true
}

enum ReinstateUser: OffboardDirection {
    static let path = ["reinstate"]
    static let summary = "lift an offboarding: a signed reinstatement to every device (admin)"
    static let offboard = false
}

/// `holdfast-broker offboard USER --reason …` and `reinstate USER --reason …` (or `--resend`).
struct OffboardCommand<Direction: OffboardDirection>: Subcommand {
    static var path: [String] { Direction.path }
    static var summary: String { Direction.summary }
    static var positionals: String { "USER" }
    static var options: [OptionSpec] { OffboardVerb.options }

    let arguments: ParsedArguments
    let user: String
    /// Nil with --resend.
    let reason: String?

    init(_ arguments: ParsedArguments) throws(UsageError) {
        user = try OffboardVerb.user(arguments)
        if arguments.flag("resend") {
            guard arguments.value("reason") == nil else { throw UsageError("--resend sends the latest word again, with its reason; no --reason") }
            reason = nil
        } else {
            reason = try OffboardVerb.reason(arguments)
        }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        try OffboardVerb.run(user: user, reason: reason, offboard: Direction.offboard, arguments: arguments, context: context)
    }
}

struct OffboardStatus: Subcommand {
    static let path = ["offboard-status"]
    static let summary = "where a user's offboarding (or reinstatement) took: per device, applied when, refused why, or still pending"
    static let positionals = "USER"
    static let options = [BrokerState.stateOption, OptionSpec("json", help: "one JSON object")]

    let arguments: ParsedArguments
    let user: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        user = try OffboardVerb.user(arguments)
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let status: JSONValue
        do {
            status = try Broker.offboardingStatus(storage: storage, user: user)
        } catch let error as ComplianceError {
            throw CommandFailure(error.message, exitCode: .failure)
        }
        if arguments.flag("json") {
            try BrokerState.printJSON(status, context)
            return .success
        }
        func time(_ value: JSONValue?) -> String { value?.intValue.map { Date(timeIntervalSince1970: Double($0)).formatted(.iso8601) } ?? "?" }
        let state = status["state"]?.stringValue ?? "?"
        context.line("\(Printable.escape(status["user"]?.stringValue ?? user)): \(state.uppercased()) at \(time(status["since"])) by \(Printable.escape(status["by"]?.stringValue ?? "?")): \(Printable.escape(status["reason"]?.stringValue ?? ""))")
        var counts: [String] = []
        if case .object(let members)? = status["counts"] { counts = members.keys.sorted().map { "\(members[$0]?.intValue ?? 0) \($0)" } }
        context.line("devices: " + (counts.isEmpty ? "none enrolled" : counts.joined(separator: ", ")) + (status["last_applied_at"].map { "; last applied at \(time($0))" } ?? ""))
        if case .array(let rows)? = status["devices"] {
            for row in rows {
                let device = row["device"]?.stringValue ?? "?"
                let host = row["hostname"]?.stringValue.map { " (\(Printable.escape($0)))" } ?? ""
                var line = "  \(device)\(host)  "
                switch row["state"]?.stringValue ?? "?" {
                case "applied": line += "applied at \(time(row["acknowledged_at"]))"
                case "refused": line += "REFUSED at \(time(row["acknowledged_at"])): \(Printable.escape(row["detail"]?.stringValue ?? "")) (--resend sends it again)"
                case "pending": line += "PENDING since \(time(row["sent_at"]))" + (row["last_seen"].map { " (last seen \(time($0)))" } ?? " (never seen)")
                case "not-sent": line += "NOT SENT (enrolled while the broker could not queue it; offboard \(Printable.escape(user)) --resend sends it)"
                case "unenrolled": line += "unenrolled (no longer listens, no longer gets grants)"
                case "not-needed": line += "not needed (enrolled after the reinstatement)"
                case let other: line += other
                }
                if row["removed"]?.boolValue == true { line += " [unenrolled]" }
                context.line(line)
            }
        }
        return .success
    }
}

struct Review: Subcommand {
    static let path = ["review"]
    static let summary = "access review: every privilege beyond the default in force now, oldest first — who granted it, why, when it ends, when last used; unused ones flagged"
    static let options = [
        BrokerState.stateOption,
        OptionSpec("unused-after", value: "DURATION", help: "flag what events have not shown in use for this long (default 30d)"),
        OptionSpec("json", help: "one JSON object"),
    ]

    let arguments: ParsedArguments
    let unusedAfter: Int64

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        unusedAfter = try arguments.duration("unused-after") ?? 30 * 86_400
        guard unusedAfter > 0 else { throw UsageError("--unused-after is a duration from 1s") }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let review = try Broker.accessReview(storage: storage, now: BrokerState.now, unusedAfter: unusedAfter)
        if arguments.flag("json") {
            try BrokerState.printJSON(review, context)
            return .success
        }
        func time(_ value: JSONValue?) -> String { value?.intValue.map { Date(timeIntervalSince1970: Double($0)).formatted(.iso8601) } ?? "never" }
        guard case .array(let items)? = review["items"], !items.isEmpty else {
            context.line("nothing beyond the default is in force")
            return .success
        }
        let flagged = items.filter { $0["flag"] != nil }.count
        context.line("\(items.count) privilege\(items.count == 1 ? "" : "s") beyond the default, oldest first; \(flagged) not seen in use for \(DurationText.text(unusedAfter)) (flagged: remove them or say why they stay)")
        for item in items {
            let field = { (name: String) in Printable.escape(item[name]?.stringValue ?? "") }
            let flag = item["flag"]?.stringValue.map { "  [\($0.uppercased()): remove?]" } ?? ""
            let scope = item["device"] != nil ? " on \(field("device"))" : (item["policy_level"]?.boolValue == true ? " (policy v\(item["policy_version"]?.intValue ?? 0), every device)" : "")
            let user = item["user"] != nil ? " for \(field("user"))" : ""
            context.line("\(field("kind")) \(field("id"))\(scope)\(user): \(field("what"))\(flag)")
            let ends = item["expires"]?.intValue.map { "until \(time(.int($0)))" }
                ?? (item["policy_level"]?.boolValue == true ? "NO END (policy-level)" : "end UNKNOWN (the event's end does not read)")
            // Break-glass windows and the policy's allowance of local exceptions have no use to
            // show (the code's use is in `device ID`).
            let tracked = !["breakglass", "usb-local-exceptions"].contains(item["kind"]?.stringValue ?? "")
            context.line("    granted by \(field("granted_by")) at \(time(item["granted_at"])); \(ends)" + (tracked ? "; last used \(time(item["last_used"]))" : ""))
            if !field("reason").isEmpty { context.line("    why: \(field("reason"))") }
        }
        return .success
    }
}
