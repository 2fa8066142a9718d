import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore
import PrintGuard

/// `holdfast print status`: each CUPS queue, approved or not and why, cupsd's hardening, today's
/// quota use and the lockdown. Queues and hardening are read from CUPS through libcups (so
/// `CUPS_SERVER` points it at another server); quota and lockdown come from holdfastd.
struct PrintStatus: Subcommand {
    static let path = ["print", "status"]
    static let summary = "list print queues (approved or not, and why), cupsd hardening, today's quota use per user"
    static let options = [
        Daemon.socketOption,
        OptionSpec("policy", value: "FILE", help: "decide queues with this policy file (default: holdfastd's policy in force)"),
        OptionSpec("json", help: "print JSON: {queues: [...], hardening, quota, lockdown, cups_server, daemon}"),
    ]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        // holdfastd's view: policy in force, quota, lockdown. Unreachable is shown, not fatal.
        var daemonReport: JSONValue?
        var daemonError: String?
        do {
            daemonReport = try Daemon.call(Daemon.client(arguments, context), "print.status")
        } catch let failure as CommandFailure {
            daemonError = failure.message
        }
        let policy: PrintPolicy
        var policySource: String
        if let path = arguments.value("policy") {
            let bytes = try InputFile.read(path, context: context, limit: 4 << 20)
            do {
                policy = try PrintPolicy(section: try Policy.parse(bytes).sections["print"])
            } catch let error as PolicyError {
                throw CommandFailure("\(path): \(error.message)", exitCode: .dataError)
            } catch let error as PrintPolicyError {
                throw CommandFailure("\(path): \(error.message)", exitCode: .dataError)
            }
            policySource = path
        } else if let section = daemonReport?["policy"] {
            do {
                policy = try PrintPolicy(section: section == .null ? nil : section)
            } catch {
                throw CommandFailure("holdfastd's print policy does not parse here: \(error.message)", exitCode: .dataError)
            }
            policySource = "holdfastd's policy in force"
        } else {
            throw CommandFailure(
                "holdfastd did not give its print policy (\(daemonError ?? "no answer")); name a policy with --policy FILE to decide queues without it",
                exitCode: .unavailable
            )
        }

        let client = CupsClient()
        let queues: [PrintQueue]
        do {
            queues = try client.queues()
        } catch {
            throw CommandFailure("cannot list queues from cupsd at \(client.server): \(error.message)", exitCode: .unavailable)
        }
        var findings: [String]?
        var hardeningError: String?
        do {
            findings = CupsdHardening.findings(cupsdConf: try client.file("/admin/conf/cupsd.conf"))
        } catch {
            hardeningError = "cannot read cupsd.conf through cupsd (root only): \(error.message)"
        }

        let rows: [JSONValue] = queues.map { queue in
            let approval = policy.approval(for: queue)
            return .object([
                "name": .string(queue.name), "device_uri": .string(queue.realURI.uri), "gated": .bool(queue.realURI.gated),
                "approved": .bool(approval.approved), "reason": .string(approval.reason), "class": .bool(queue.isClass),
                "temporary": .bool(queue.isTemporary), "accepting_jobs": .bool(queue.isAcceptingJobs),
            ])
        }
        var hardening: [String: JSONValue] = [
            "hardened": findings.map { .bool($0.isEmpty) } ?? .null,
            "findings": .array((findings ?? []).map(JSONValue.string)),
        ]
        if let hardeningError { hardening["error"] = .string(hardeningError) }
        if let daemonHardening = daemonReport?["hardening"] { hardening["holdfastd"] = daemonHardening }
        let document: JSONValue = .object([
            "cups_server": .string(client.server),
            "policy": .string(policySource),
            "queues": .array(rows),
            "hardening": .object(hardening),
            "quota": daemonReport?["quota"] ?? .null,
            "lockdown": daemonReport?["lockdown"] ?? .null,
            "daemon": .object(["reachable": .bool(daemonReport != nil), "error": daemonError.map(JSONValue.string) ?? .null]),
        ])
        if arguments.flag("json") {
            context.line(try Daemon.json(document))
            return .success
        }
        context.line("cupsd: \(Printable.escape(client.server)) (\(queues.count) queue\(queues.count == 1 ? "" : "s")); policy: \(Printable.escape(policySource))")
        for row in rows {
            let approved = row["approved"]?.boolValue == true
            var line = "  \(Printable.escape(row["name"]?.stringValue ?? "?"))  \(approved ? "APPROVED" : "NOT APPROVED")"
            line += "  \(Printable.escape(row["device_uri"]?.stringValue ?? ""))"
            if approved { line += row["gated"]?.boolValue == true ? "  (gated)" : "  (not gated yet)" }
            context.line(line)
            context.line("      \(Printable.escape(row["reason"]?.stringValue ?? ""))")
        }
        if let findings {
            context.line(findings.isEmpty ? "hardening: hardened (gate-bypassing operations are @SYSTEM's only)" : "hardening: NOT HARDENED")
            for finding in findings { context.line("  \(Printable.escape(finding))") }
        } else {
            context.line("hardening: unknown (\(Printable.escape(hardeningError ?? "")))")
        }
        if let quota = daemonReport?["quota"] {
            let pages = quota["pages_per_day"]?.intValue.map { "\($0) pages" } ?? "unlimited pages"
            let jobs = quota["jobs_per_day"]?.intValue.map { "\($0) jobs" } ?? "unlimited jobs"
            context.line("quota (\(quota["day"]?.stringValue ?? "today")): \(pages), \(jobs) per user per day")
            if case .object(let users)? = quota["users"] {
                for (user, use) in users.sorted(by: { $0.key < $1.key }) {
                    context.line("  \(Printable.escape(user)): \(use["pages"]?.intValue ?? 0) pages, \(use["jobs"]?.intValue ?? 0) jobs")
                }
            }
            if case .array(let exceptions)? = quota["exceptions"], !exceptions.isEmpty {
                context.line("exceptions (approved pages beyond the quota, docs/exceptions.md):")
                for exception in exceptions {
                    let field = { (name: String) in Printable.escape(exception[name]?.stringValue ?? "?") }
                    context.line("  #\(exception["number"]?.intValue ?? 0)  \(field("user")) on \(field("queue")): \(exception["used"]?.intValue ?? 0) of \(exception["pages"]?.intValue ?? 0) pages used, until \(field("until")), by \(field("granted_by"))")
                }
            }
        } else {
            context.line("quota: unknown (holdfastd not reachable: \(Printable.escape(daemonError ?? "")))")
        }
        if let lockdown = daemonReport?["lockdown"], lockdown != .null {
            context.line("lockdown: ON since \(lockdown["since"]?.stringValue ?? "?") by \(Printable.escape(lockdown["by"]?.stringValue ?? "?")): \(Printable.escape(lockdown["reason"]?.stringValue ?? ""))")
        } else if daemonReport != nil {
            context.line("lockdown: off")
        }
        return .success
    }
}

/// `holdfast print lockdown on|off --reason "…"`: the print scope of a lockdown, by hand (root).
struct PrintLockdown: Subcommand {
    static let path = ["print", "lockdown"]
    static let summary = "turn the print lockdown on (cancel every job, refuse new ones) or off (root only)"
    static let positionals = "on|off"
    static let options = [Daemon.socketOption, OptionSpec("reason", value: "TEXT", help: "why (required with on; journaled)")]

    let arguments: ParsedArguments
    let on: Bool

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1, ["on", "off"].contains(arguments.positionals[0]) else { throw UsageError("say on or off") }
        on = arguments.positionals[0] == "on"
        if on { _ = try arguments.required("reason") }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        var request: [String: JSONValue] = ["on": .bool(on)]
        if let reason = arguments.value("reason") { request["reason"] = .string(reason) }
        let result = try Daemon.call(Daemon.client(arguments, context), "print.lockdown", request)
        let cancelled = result["cancelled_jobs"].flatMap { value -> Int? in if case .array(let list) = value { list.count } else { nil } } ?? 0
        context.line(on ? "print lockdown on; \(cancelled) job(s) cancelled" : "print lockdown off")
        return .success
    }
}
