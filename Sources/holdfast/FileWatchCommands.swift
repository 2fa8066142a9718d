import Foundation
import HoldfastCommandLine
import HoldfastCore

/// `holdfast filewatch status [--json]`: the intake, counts, coverage, rules, alerts and blocks.
struct FileWatchStatus: Subcommand {
    static let path = ["filewatch", "status"]
    static let summary = "show FileWatch: intake, events seen, coverage, kernel rules, alerts and blocks"
    static let options = [Daemon.socketOption, OptionSpec("json", help: "print JSON (fields in docs/filewatch.md)")]

    let arguments: ParsedArguments
    init(_ arguments: ParsedArguments) throws(UsageError) { self.arguments = arguments }

    func run(_ context: CommandContext) throws -> ExitCode {
        let status = try Daemon.call(Daemon.client(arguments, context), "filewatch.status", [:])
        if arguments.flag("json") {
            context.line(try Daemon.json(status))
            return .success
        }
        let coverage = status["coverage"]
        context.line("intake: \(Printable.escape(status["intake_socket"]?.stringValue ?? "?")), \(status["forwarders"]?.intValue ?? 0) forwarder(s) connected")
        context.line("seen: \(status["records"]?.intValue ?? 0) records, \(status["events"]?.intValue ?? 0) events, \(status["activities"]?.intValue ?? 0) file activities, \(status["malformed"]?.intValue ?? 0) malformed")
        context.line("forwarder: received \(status["forwarder"]?["received"]?.intValue ?? 0), dropped \(status["forwarder"]?["dropped"]?.intValue ?? 0)")
        if case .object(let keys)? = status["events_by_key"], !keys.isEmpty {
            context.line("by rule key: " + keys.sorted { $0.key < $1.key }.map { "\(Printable.escape($0.key)) \($0.value.intValue ?? 0)" }.joined(separator: ", "))
        }
        if coverage?["complete"]?.boolValue == false {
            var reasons: [String] = []
            if case .object(let members)? = coverage?["reasons"] {
                for (reason, count) in members.sorted(by: { $0.key < $1.key }) { reasons.append("\(reason) \(count.intValue ?? 0)") }
            }
            context.line("coverage: INCOMPLETE since \(coverage?["incomplete_since"]?.stringValue ?? "?") (\(reasons.joined(separator: ", ")))")
        } else {
            context.line("coverage: complete")
        }
        if case .array(let spots)? = status["blind_spots"] {
            for spot in spots { context.line("blind spot: \(Printable.escape(spot.stringValue ?? ""))") }
        }
        let rules = status["rules"]
        if let checked = rules?["checked_at"]?.stringValue {
            context.line("kernel rules (\(rules?["mode"]?.stringValue ?? "?")): \(rules?["present"]?.intValue ?? 0) present, \(rules?["missing"]?.intValue ?? 0) missing, \(rules?["added"]?.intValue ?? 0) re-added at \(checked)" + (rules?["error"]?.stringValue.map { "; error: \(Printable.escape($0))" } ?? ""))
        } else {
            context.line("kernel rules (\(rules?["mode"]?.stringValue ?? "?")): not checked")
        }
        context.line("users: \(status["users"]?.intValue ?? 0); alerts: \(status["alerts"]?.intValue ?? 0); blocks: \(status["blocks"]?.intValue ?? 0); time zone: \(status["time_zone"]?.stringValue ?? "?")")
        return .success
    }
}

/// `holdfast filewatch baseline export [FILE]` and `… import FILE` (root).
struct FileWatchBaseline: Subcommand {
    static let path = ["filewatch", "baseline"]
    static let summary = "export the learned per-user baselines (to FILE or stdout), or import an export (root only)"
    static let positionals = "export [FILE] | import FILE"
    static let options = [Daemon.socketOption]

    let arguments: ParsedArguments
    let verb: String
    let file: String?

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard let verb = arguments.positionals.first, ["export", "import"].contains(verb) else { throw UsageError("say export or import") }
        guard arguments.positionals.count <= 2 else { throw UsageError("one FILE at most") }
        file = arguments.positionals.count == 2 ? arguments.positionals[1] : nil
        if verb == "import", file == nil { throw UsageError("import needs the FILE an export wrote") }
        self.verb = verb
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let client = Daemon.client(arguments, context)
        if verb == "import", let file {
            // holdfastd reads the file itself (as root), so give it an absolute path.
            let absolute = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
            let result = try Daemon.call(client, "filewatch.import", ["path": .string(absolute)])
            context.line("imported the baseline of \(result["imported_users"]?.intValue ?? 0) user(s)")
            return .success
        }
        let result = try Daemon.call(client, "filewatch.export", [:])
        let text = try Daemon.json(result["baseline"] ?? .null)
        guard let file else {
            context.line(text)
            return .success
        }
        do {
            try SecureFile.write(Array((text + "\n").utf8), to: file)
        } catch {
            throw CommandFailure("cannot write \(file): \(error)", exitCode: .failure)
        }
        context.line("baseline written to \(file)")
        return .success
    }
}

/// `holdfast lockdown status [--json]`.
struct LockdownStatus: Subcommand {
    static let path = ["lockdown", "status"]
    static let summary = "show the lockdown scopes in force (usb, print, network, sessions), why, since when, by whom"
    static let options = [Daemon.socketOption, OptionSpec("json", help: "print JSON: {scopes: {usb: {...}, …}, locked: [...], last_command_seq, network: {brokers, resolvers, allowed, …}}")]

    let arguments: ParsedArguments
    init(_ arguments: ParsedArguments) throws(UsageError) { self.arguments = arguments }

    func run(_ context: CommandContext) throws -> ExitCode {
        let status = try Daemon.call(Daemon.client(arguments, context), "lockdown.status", [:])
        if arguments.flag("json") {
            context.line(try Daemon.json(status))
            return .success
        }
        LockdownStatus.print(status, context)
        return .success
    }

    static func print(_ status: JSONValue, _ context: CommandContext) {
        guard case .object(let scopes)? = status["scopes"] else { return }
        for (name, scope) in scopes.sorted(by: { $0.key < $1.key }) {
            guard scope["locked"]?.boolValue == true else {
                context.line("\(name): open")
                continue
            }
            context.line("\(name): LOCKED since \(scope["since"]?.stringValue ?? "?") by \(Printable.escape(scope["by"]?.stringValue ?? "?")) (\(scope["source"]?.stringValue ?? "?")): \(Printable.escape(scope["reason"]?.stringValue ?? ""))")
            if let until = scope["suspended_until"]?.stringValue { context.line("  lifted by a break-glass code until \(until)") }
            if let failure = scope["last_failure"]?.stringValue { context.line("  NOT IN EFFECT: \(Printable.escape(failure))") }
        }
    }
}

/// `holdfast lockdown on|release --scope usb,print --reason "…"` (root).
struct LockdownChange: Subcommand {
    static let path = ["lockdown"]
    static let summary = "lock down scopes (on) or lift them (release); root only, every change journaled (see also: holdfast lockdown status)"
    static let positionals = "on|release"
    static let options = [
        Daemon.socketOption, OptionSpec("scope", value: "SCOPES", help: "usb, print, network, sessions (comma-separated)"),
        OptionSpec("reason", value: "TEXT", help: "why (required; journaled)"),
    ]

    let arguments: ParsedArguments
    let engage: Bool

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1, ["on", "release"].contains(arguments.positionals[0]) else { throw UsageError("say on or release") }
        engage = arguments.positionals[0] == "on"
        let scopes = try arguments.required("scope")
        do {
            // A scope name this build does not know is a usage error (64), said before any call.
            _ = try LockdownScope.parseList(scopes)
        } catch {
            throw UsageError(error.description)
        }
        _ = try arguments.required("reason")
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let request: [String: JSONValue] = ["scopes": .string(arguments.value("scope") ?? ""), "reason": .string(arguments.value("reason") ?? "")]
        let result = try Daemon.call(Daemon.client(arguments, context), engage ? "lockdown.engage" : "lockdown.release", request)
        var changed: [String] = []
        if case .array(let names)? = result["changed"] { changed = names.compactMap(\.stringValue) }
        context.line(changed.isEmpty ? "nothing changed" : (engage ? "locked: " : "released: ") + changed.joined(separator: ", "))
        LockdownStatus.print(result, context)
        return .success
    }
}

/// `holdfast unlock CODE` (root): a break-glass code read over the phone lifts its scopes until
/// its window ends, offline (docs/lockdown.md, "Break-glass").
struct Unlock: Subcommand {
    static let path = ["unlock"]
    static let summary = "lift a lockdown with a break-glass code the security team reads you (any local user; works offline, once per code)"
    static let positionals = "CODE"
    static let options = [Daemon.socketOption, OptionSpec("json", help: "print the lockdown status after it as JSON")]

    let code: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count >= 1 else { throw UsageError("say the CODE (e.g. 7K3Q-9MXD-4HTR-2B)") }
        // Read aloud in groups: "7K3Q 9MXD 4HTR 2B" as four arguments is the same code.
        code = arguments.positionals.joined(separator: "")
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let result = try Daemon.call(Daemon.client(arguments, context), "lockdown.unlock", ["code": .string(code)])
        if arguments.flag("json") {
            context.line(try Daemon.json(result))
            return .success
        }
        var lifted: [String] = []
        if case .array(let names)? = result["lifted"] { lifted = names.compactMap(\.stringValue) }
        context.line("lifted \(lifted.joined(separator: ", ")) until \(result["until"]?.stringValue ?? "?"); locked again after that unless released")
        LockdownStatus.print(result, context)
        return .success
    }
}
