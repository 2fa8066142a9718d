import FoundationEssentials
import HoldfastBroker
import HoldfastCommandLine
import HoldfastCore
import HoldfastCrypto
import HoldfastStore

/// `holdfast-broker lockdown DEVICE --scope … --reason …` and `release` (admin): queue a signed
/// command the device's agent picks up by long poll (docs/lockdown.md, "Remote commands").
enum LockdownVerb {
    static let options = [
        BrokerState.stateOption,
        OptionSpec("dir", value: "DIR", help: "where signing.key is (default /etc/holdfast-broker)"),
        OptionSpec("scope", value: "LIST", help: "usb, print, network, sessions (comma-separated)"),
        OptionSpec("reason", value: "TEXT", help: "why, in words the user and the trail will show (required)"),
        OptionSpec("expires", value: "DURATION", help: "how long the agent may still apply it if it is away (default 7d, at most 30d)"),
        OptionSpec("json", help: "print the queued command as JSON"),
    ]

    struct Request {
        let device: String
        let scopes: [LockdownScope]
        let reason: String
        let lifetime: Int64
    }

    static func parse(_ arguments: ParsedArguments, action: RemoteCommand.Action) throws(UsageError) -> Request {
        guard arguments.positionals.count == 1 else { throw UsageError("say the device ID (holdfast-broker devices lists them)") }
        let device = arguments.positionals[0]
        guard RemoteCommand.isDeviceID(device) else { throw UsageError("\(Printable.escape(device)) is not a device id (hf- and 16 hex digits)") }
        let scopes: [LockdownScope]
        if let list = arguments.value("scope") {
            do {
                scopes = try LockdownScope.parseList(list)
            } catch {
                throw UsageError(error.description)
            }
            guard !scopes.isEmpty else { throw UsageError("--scope names at least one of \(LockdownScope.allCases.map(\.rawValue).joined(separator: ", "))") }
        } else if action == .release {
            scopes = LockdownScope.allCases
        } else {
            throw UsageError("say --scope: which of \(LockdownScope.allCases.map(\.rawValue).joined(separator: ", ")) to lock")
        }
        guard let reason = arguments.value("reason")?.trimmingSpaces, RemoteCommand.isWords(reason, maximumBytes: RemoteCommand.maximumReasonBytes) else {
            throw UsageError("say --reason: 1 to \(RemoteCommand.maximumReasonBytes) bytes without control characters (the user is shown it)")
        }
        let lifetime = try arguments.duration("expires") ?? 7 * 86_400
        guard lifetime <= RemoteCommand.maximumLifetime else { throw UsageError("--expires is at most 30d") }
        return Request(device: device, scopes: scopes, reason: reason, lifetime: lifetime)
    }

    static func run(_ request: Request, action: RemoteCommand.Action, arguments: ParsedArguments, context: CommandContext) throws -> ExitCode {
        let key = try BrokerState.signingKey(arguments.value("dir") ?? "/etc/holdfast-broker")
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        guard let device = try storage.device(id: request.device) else { throw CommandFailure("no device \(request.device)", exitCode: .failure) }
        guard device.removedAt == nil else { throw CommandFailure("device \(request.device) was unenrolled: it no longer listens", exitCode: .failure) }
        let queued = try Broker.queueCommand(
            storage: storage, key: key, device: request.device, action: action, scopes: request.scopes, reason: request.reason, admin: admin,
            lifetime: request.lifetime, at: BrokerState.now)
        let detail = "device=\(request.device) seq=\(queued.sequence) scopes=\(queued.scopes) expires=\(queued.expiresAt) reason=\(request.reason)"
        try storage.recordAdminAction(admin: admin, verb: action.rawValue, detail: detail, at: BrokerState.now)
        try storage.log(BrokerLogEntry(time: BrokerState.now, device: request.device, kind: "command.queued", detail: "seq \(queued.sequence) \(action.rawValue) \(queued.scopes) by \(admin): \(request.reason)"))
        if arguments.flag("json") {
            try BrokerState.printJSON(.object([
                "device": .string(queued.device), "seq": .int(queued.sequence), "action": .string(queued.action), "scopes": .array(request.scopes.map { .string($0.rawValue) }),
                "reason": .string(queued.reason), "admin": .string(admin), "issued_at": .int(queued.issuedAt), "expires_at": .int(queued.expiresAt),
            ]), context)
        } else {
            context.line("\(action.rawValue) of \(queued.scopes) queued for \(request.device) as command \(queued.sequence) by \(admin); the agent applies it when its poll returns (holdfast-broker device \(request.device) shows when)")
        }
        return .success
    }
}

struct LockdownCommand: Subcommand {
    static let path = ["lockdown"]
    static let summary = "lock a device's usb, print, network or sessions by a signed command (admin)"
    static let positionals = "DEVICE"
    static let options = LockdownVerb.options

    let request: LockdownVerb.Request
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        request = try LockdownVerb.parse(arguments, action: .lockdown)
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode { try LockdownVerb.run(request, action: .lockdown, arguments: arguments, context: context) }
}

struct ReleaseCommand: Subcommand {
    static let path = ["release"]
    static let summary = "lift a device's lockdown (every scope unless --scope) by a signed command (admin)"
    static let positionals = "DEVICE"
    static let options = LockdownVerb.options

    let request: LockdownVerb.Request
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        request = try LockdownVerb.parse(arguments, action: .release)
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode { try LockdownVerb.run(request, action: .release, arguments: arguments, context: context) }
}

/// `holdfast-broker breakglass DEVICE --for 1h [--scope …] --reason …` (admin): a one-time code
/// to read to the person at the device, which lifts those scopes there until the window ends,
/// without the broker (docs/lockdown.md, "Break-glass").
struct Breakglass: Subcommand {
    static let path = ["breakglass"]
    static let summary = "print a one-time break-glass code that lifts a device's lockdown offline for a window (admin)"
    static let positionals = "DEVICE"
    static let options = [
        BrokerState.stateOption,
        OptionSpec("for", value: "DURATION", help: "the window from now: 15m, 30m, 1h, 2h, 4h, 8h, 12h, 1d, 2d, 3d, 5d or 7d (required)"),
        OptionSpec("scope", value: "LIST", help: "the scopes it lifts (default all: usb, print, network, sessions)"),
        OptionSpec("reason", value: "TEXT", help: "why (required; in the trail)"),
        OptionSpec("json", help: "print {code, device, scopes, starts_at, ends_at, code_sha256}"),
    ]

    let device: String
    let duration: Int64
    let scopes: [LockdownScope]
    let reason: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1, RemoteCommand.isDeviceID(arguments.positionals[0]) else { throw UsageError("say the device ID (hf- and 16 hex digits)") }
        device = arguments.positionals[0]
        let choices = BreakGlassCode.durations.map { DurationText.text($0) }.joined(separator: ", ")
        guard let duration = try arguments.duration("for") else { throw UsageError("say --for, one of \(choices)") }
        guard BreakGlassCode.durations.contains(duration) else { throw UsageError("--for \(arguments.value("for") ?? "") is not one of \(choices)") }
        self.duration = duration
        do {
            scopes = try arguments.value("scope").map { list throws(LockdownScope.UnknownScope) in try LockdownScope.parseList(list) } ?? LockdownScope.allCases
        } catch {
            throw UsageError(error.description)
        }
        guard !scopes.isEmpty else { throw UsageError("--scope names at least one scope") }
        guard let reason = arguments.value("reason")?.trimmingSpaces, RemoteCommand.isWords(reason, maximumBytes: RemoteCommand.maximumReasonBytes) else {
            throw UsageError("say --reason: why the code is given (the trail keeps it)")
        }
        self.reason = reason
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let storage = try BrokerState.open(arguments)
        let admin = try BrokerState.admin(storage, context)
        guard let enrolled = try storage.device(id: device), enrolled.removedAt == nil else { throw CommandFailure("no enrolled device \(device)", exitCode: .failure) }
        guard let secret = try storage.breakglassSecret(device: device, orSet: nil) else {
            throw CommandFailure("\(device) has no break-glass secret yet (enrolled before break-glass): its agent fetches one at its next contact with this broker", exitCode: .unavailable)
        }
        let code = try BreakGlassCode.issue(secret: secret, device: device, scopes: scopes, duration: duration, at: BrokerState.now)
        let scopeList = code.scopes.map(\.rawValue).joined(separator: ",")
        try storage.recordBreakglassCode(IssuedBreakglassCode(
            device: device, codeSHA256: code.digest, scopes: scopeList, startsAt: code.startsAt, endsAt: code.endsAt, admin: admin, reason: reason))
        try storage.recordAdminAction(admin: admin, verb: "breakglass", detail: "device=\(device) scopes=\(scopeList) ends=\(code.endsAt) code_sha256=\(code.digest) reason=\(reason)", at: BrokerState.now)
        try storage.log(BrokerLogEntry(
            time: BrokerState.now, device: device, kind: "breakglass.issued",
            detail: "\(scopeList) until \(Date(timeIntervalSince1970: Double(code.endsAt)).formatted(.iso8601)) by \(admin): \(reason) (code sha256 \(code.digest.prefix(16)))"))
        if arguments.flag("json") {
            try BrokerState.printJSON(.object([
                "code": .string(code.text), "device": .string(device), "scopes": .array(code.scopes.map { .string($0.rawValue) }), "starts_at": .int(code.startsAt),
                "ends_at": .int(code.endsAt), "code_sha256": .string(code.digest),
            ]), context)
        } else {
            context.line(code.text)
            context.error("one-time break-glass code for \(device): lifts \(scopeList) until \(Date(timeIntervalSince1970: Double(code.endsAt)).formatted(.iso8601)); at the device, as root: holdfast unlock \(code.text)")
        }
        return .success
    }
}

/// What `device ID` shows of a lockdown: what the admins asked (the last command touching each
/// scope, and what the agent made of it) beside what the agent says it has in force.
enum LockdownSummary {
    static func view(_ device: EnrolledDevice, _ storage: any BrokerStorage) throws -> JSONValue {
        var requested: [String: JSONValue] = [:]
        for command in try storage.commands(device: device.id, after: 0, limit: 100_000) {
            for scope in command.scopes.split(separator: ",") {
                var entry: [String: JSONValue] = [
                    "state": .string(command.action == "lockdown" ? "locked" : "released"), "seq": .int(command.sequence), "by": .string(command.admin),
                    "at": .int(command.issuedAt), "reason": .string(command.reason), "status": .string(command.status),
                ]
                if let at = command.statusAt { entry["status_at"] = .int(at) }
                if let detail = command.detail, !detail.isEmpty { entry["detail"] = .string(detail) }
                requested[String(scope)] = .object(entry)
            }
        }
        var object: [String: JSONValue] = ["requested": .object(requested)]
        // Break-glass codes, and whether the device reported using each (its uploaded events).
        let used = Set(try storage.events(device: device.id, kind: "lockdown.breakglass_used", limit: 1_000).compactMap { event in
            (try? JSONValue.parse(event.body.utf8))?["holdfast"]?["details"]?["code_sha256"]?.stringValue
        })
        let codes = try storage.breakglassCodes(device: device.id, limit: 10).map { code -> JSONValue in
            .object([
                "scopes": .string(code.scopes), "starts_at": .int(code.startsAt), "ends_at": .int(code.endsAt), "by": .string(code.admin), "reason": .string(code.reason),
                "code_sha256": .string(code.codeSHA256), "used": .bool(used.contains(code.codeSHA256)),
            ])
        }
        if !codes.isEmpty { object["breakglass"] = .array(codes) }
        if let text = device.lockdownState, let state = try? JSONValue.parse(text.utf8) { object["applied"] = state }
        if let at = device.lockdownAt { object["applied_at"] = .int(at) }
        return .object(object)
    }

    static func lines(_ view: JSONValue) -> [String] {
        let when = { (value: JSONValue?) in value?.intValue.map { Date(timeIntervalSince1970: Double($0)).formatted(.iso8601) } ?? "?" }
        func names(_ value: JSONValue?) -> Set<String> {
            guard case .array(let items)? = value else { return [] }
            return Set(items.compactMap(\.stringValue))
        }
        var lines: [String] = []
        let locked = names(view["applied"]?["locked"])
        let enforced = names(view["applied"]?["enforced"])
        for scope in LockdownScope.allCases.map(\.rawValue) {
            let asked = view["requested"]?[scope]
            // What the agent says is in force: locked, lifted by a break-glass code until a time,
            // locked but not in effect (nothing enforces it there, or it failed), or open.
            var have = "open"
            if let until = view["applied"]?["suspended_until"]?[scope] {
                have = "lifted by a break-glass code until \(when(until))"
            } else if locked.contains(scope) {
                have = enforced.contains(scope) ? "locked" : "locked but not in effect"
            }
            guard let asked else {
                if have != "open" { lines.append("  \(scope.padding(8))  no command; in force: \(have)") }
                continue
            }
            var text = "  \(scope.padding(8))  \(asked["state"]?.stringValue == "locked" ? "lockdown" : "release") by command \(asked["seq"]?.intValue ?? 0) from \(Printable.escape(asked["by"]?.stringValue ?? "?")) at \(when(asked["at"])): \(Printable.escape(asked["reason"]?.stringValue ?? ""))"
            text += "; the agent: \(asked["status"]?.stringValue ?? "queued")"
            if asked["status_at"] != nil { text += " \(when(asked["status_at"]))" }
            if let detail = asked["detail"]?.stringValue { text += " (\(Printable.escape(detail)))" }
            text += "; in force: \(have)"
            lines.append(text)
        }
        if view["applied_at"] != nil, !lines.isEmpty { lines.append("  (the agent's last word on its lockdown: \(when(view["applied_at"])))") }
        if case .array(let codes)? = view["breakglass"] {
            for code in codes {
                lines.append("  break-glass \(code["scopes"]?.stringValue ?? "?") \(when(code["starts_at"]))–\(when(code["ends_at"])) by \(Printable.escape(code["by"]?.stringValue ?? "?")): \(Printable.escape(code["reason"]?.stringValue ?? "")); \(code["used"]?.boolValue == true ? "USED" : "not used (as far as the device reported)")")
            }
        }
        return lines
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
