import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore

/// Talking to holdfastd over its control socket.
enum Daemon {
    static let socketOption = OptionSpec(
        "socket", value: "PATH", help: "control socket (default $HOLDFAST_SOCKET, else /run/holdfast/control.sock)"
    )

    static func client(_ arguments: ParsedArguments, _ context: CommandContext, timeout: Int = 10) -> ControlClient {
        let path = arguments.value("socket") ?? context.environment["HOLDFAST_SOCKET"] ?? AgentConfiguration().controlSocket
        return ControlClient(socketPath: path, timeout: timeout)
    }

    /// Calls a verb; a refusal or an unreachable daemon becomes a one-line failure with its exit code.
    static func call(_ client: ControlClient, _ verb: String, _ arguments: [String: JSONValue] = [:]) throws -> JSONValue {
        let response: ControlResponse
        do {
            response = try client.call(verb, arguments)
        } catch {
            let code: ExitCode = error.code == .permissionDenied ? .noPermission : .unavailable
            throw CommandFailure(error.message, exitCode: code)
        }
        guard response.ok, let result = response.result else {
            let failure = response.error ?? .init(code: .failed, message: "holdfastd refused without a reason")
            throw CommandFailure(failure.message, exitCode: failure.code == .permissionDenied ? .noPermission : .failure)
        }
        return result
    }

    static func json(_ value: JSONValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// `holdfast status`: what the agent is doing.
struct Status: Subcommand {
    static let path = ["status"]
    static let summary = "show the agent: version, uptime, policy, enrollment, services, journal"
    static let options = [Daemon.socketOption, OptionSpec("json", help: "print JSON")]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.isEmpty else { throw UsageError("unexpected argument \(arguments.positionals[0])") }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let status = try Daemon.call(Daemon.client(arguments, context), "status")
        if arguments.flag("json") {
            context.line(try Daemon.json(status))
            return .success
        }
        let text = { (value: JSONValue?) -> String in
            switch value {
            case .string(let string)?: string
            case .int(let number)?: String(number)
            case .bool(let flag)?: String(flag)
            default: "-"
            }
        }
        context.line("holdfastd \(text(status["version"])), pid \(text(status["pid"])), up \(text(status["uptime_seconds"])) s (since \(text(status["started_at"])))")
        context.line("config      \(text(status["config"]?["path"])) (log level \(text(status["config"]?["log_level"])))")
        let policy = status["policy"]
        var policyLine = "policy      \(text(policy?["source"])) \(text(policy?["path"])), sha256 \(text(policy?["sha256"]).prefix(16))…"
        if let version = policy?["version"] { policyLine += ", version \(text(version))" }
        if let version = policy?["broker_version"] { policyLine += ", broker version \(text(version))" }
        context.line(policyLine)
        if let reload = status["last_reload"] {
            context.line("last reload \(text(reload["at"])): \(reload["ok"]?.boolValue == true ? "ok" : "REFUSED")")
            if case .array(let messages)? = reload["messages"] {
                for message in messages { context.line("            \(text(message))") }
            }
        }
        if case .object(let pending)? = status["pending_restart"] {
            for (key, value) in pending.sorted(by: { $0.key < $1.key }) {
                context.line("pending     \(key) = \(text(value)) (takes effect at the next start)")
            }
        }
        let enrollment = status["enrollment"]
        if enrollment?["state"]?.stringValue == "enrolled" {
            var line = "enrollment  \(text(enrollment?["device_id"])) at \(text(enrollment?["url"]))"
            if let decision = enrollment?["decision"] { line += ", \(text(decision)) at \(text(enrollment?["verdict_at"]))" }
            if case .array(let failing)? = enrollment?["failing"], !failing.isEmpty { line += " (failing \(failing.compactMap(\.stringValue).joined(separator: ", ")))" }
            if let error = enrollment?["last_error"] { line += "; last attempt failed: \(text(error))" }
            context.line(line)
            let heartbeat = enrollment?["heartbeat"]
            var beat = "heartbeat   \(heartbeat?["last_at"].map(text) ?? "none yet")"
            if let error = heartbeat?["last_error"] { beat += "; last failed at \(text(heartbeat?["last_error_at"])): \(text(error))" }
            context.line(beat)
        } else {
            context.line("enrollment  \(text(enrollment?["state"]))" + (enrollment?["last_error"].map { ": \(text($0))" } ?? ""))
        }
        if case .array(let services)? = status["services"] {
            for service in services {
                var line = "service     \(text(service["name"])): \(text(service["state"])), \(text(service["restarts"])) restarts"
                if let error = service["last_error"] { line += ", last error: \(text(error))" }
                context.line(line)
            }
        }
        if let usb = status["usb"] {
            if usb["enabled"]?.boolValue == false {
                context.line("usb         OFF ([usb] enabled = no)")
            } else {
                context.line("usb         \(text(usb["mode"])), devices \(text(usb["devices"])) (not fully allowed \(text(usb["blocked_now"]))), exceptions \(text(usb["exceptions"])), tamper \(text(usb["tamper"])), failures \(text(usb["failures"]))\(usb["ready"]?.boolValue == true ? "" : ", not ready")")
            }
        }
        if let print = status["print"] {
            if print["enabled"]?.boolValue == false {
                context.line("print       OFF ([print] enabled = no)")
            } else {
                let hardened = print["hardened"]?.boolValue == true ? "hardened" : "NOT HARDENED"
                let lockdown = print["locked_down"]?.boolValue == true ? ", LOCKED DOWN" : ""
                context.line("print       cupsd \(text(print["cups"])), queues \(text(print["queues"])) (unapproved \(text(print["unapproved"]))), \(hardened), jobs allowed \(text(print["jobs_allowed"])) denied \(text(print["jobs_denied"]))\(lockdown)")
            }
        }
        if let fileWatch = status["filewatch"] {
            if fileWatch["enabled"]?.boolValue == false {
                context.line("filewatch   OFF ([filewatch] enabled = no)")
            } else {
                let coverage = fileWatch["coverage"]?["complete"]?.boolValue == false ? "COVERAGE INCOMPLETE" : "coverage complete"
                let blind = (fileWatch["blind_spots"].flatMap { value -> Int? in if case .array(let items) = value { items.count } else { nil } } ?? 0)
                context.line("filewatch   forwarders \(text(fileWatch["forwarders"])), events \(text(fileWatch["events"])), activities \(text(fileWatch["activities"])), alerts \(text(fileWatch["alerts"])), blocks \(text(fileWatch["blocks"])), \(coverage)\(blind > 0 ? ", \(blind) blind spot(s)" : "")")
            }
        }
        if let posture = status["posture"] {
            if posture["enabled"]?.boolValue == false {
                context.line("posture     OFF ([posture] enabled = no)")
            } else if let overall = posture["status"]?.stringValue {
                let ids = { (key: String) -> [String] in if case .array(let items)? = posture[key] { items.compactMap(\.stringValue) } else { [] } }
                let failing = ids("fail"), unknown = ids("unknown")
                context.line("posture     \(overall) at \(text(posture["at"])): \(failing.count) failing\(failing.isEmpty ? "" : " (\(failing.joined(separator: ", ")))"), \(unknown.count) unknown (holdfast posture)")
            } else {
                context.line("posture     first run pending")
            }
        }
        if case .array(let locked)? = status["lockdown"]?["locked"], !locked.isEmpty {
            // The reason is the user's answer to "why can't I…": said here, not only in the details.
            let scopes = locked.compactMap(\.stringValue).map { name -> String in
                let scope = status["lockdown"]?["scopes"]?[name]
                var text = "\(name) (by \(Printable.escape(scope?["by"]?.stringValue ?? "?")): \(Printable.escape(scope?["reason"]?.stringValue ?? "")))"
                if let until = scope?["suspended_until"]?.stringValue {
                    text += " lifted by a break-glass code until \(until)"
                } else if scope?["last_failure"] != nil {
                    text += " NOT IN EFFECT"
                }
                return text
            }
            context.line("lockdown    LOCKED: \(scopes.joined(separator: "; ")) (holdfast lockdown status)")
        }
        if let requests = status["requests"], case .array(let inForce)? = requests["in_force"], !inForce.isEmpty || (requests["waiting"]?.intValue ?? 0) > 0 {
            let exceptions = inForce.map { "#\($0["number"]?.intValue ?? 0) \($0["kind"]?.stringValue ?? "?") until \($0["until"]?.stringValue ?? "?")" }
            context.line("exceptions  \(inForce.count) in force\(exceptions.isEmpty ? "" : " (" + exceptions.joined(separator: "; ") + ")"), \(requests["waiting"]?.intValue ?? 0) requests waiting (holdfast requests)")
        }
        if let lost = status["offboarded_lost"]?.stringValue {
            context.line("offboarded LIST LOST: \(Printable.escape(lost))")
        } else if case .array(let users)? = status["offboarded"], !users.isEmpty {
            let names = users.prefix(5).map { Printable.escape($0["user"]?.stringValue ?? "?") }.joined(separator: ", ")
            context.line("offboarded \(users.count) user\(users.count == 1 ? "" : "s") denied at login here (\(names)\(users.count > 5 ? ", …" : ""); docs/offboarding.md)")
        }
        let journal = status["journal"]
        context.line("journal     \(text(journal?["events"])) events, \(text(journal?["event_bytes"])) of \(text(journal?["max_bytes"])) bytes, \(text(journal?["pending_upload"])) not uploaded, \(text(journal?["lost_unuploaded"])) lost")
        return .success
    }
}

/// `holdfast reload`: re-read configuration and policy (admin).
struct Reload: Subcommand {
    static let path = ["reload"]
    static let summary = "make holdfastd re-read its configuration and policy (root only)"
    static let options = [Daemon.socketOption]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.isEmpty else { throw UsageError("unexpected argument \(arguments.positionals[0])") }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let result = try Daemon.call(Daemon.client(arguments, context), "reload")
        context.line("reloaded")
        if case .array(let messages)? = result["messages"] {
            for case .string(let message) in messages { context.line("  \(message)") }
        }
        return .success
    }
}
