import Foundation
import HoldfastCommandLine
import HoldfastCore
import FileWatch
import Posture

/// `holdfast posture [--root DIR] [--json] [--local] [--only IDS]`: every device-health check with
/// its status, strength and evidence. From holdfastd (signed, with the agent's facts) when it
/// answers; else, or with `--local`/`--root`, run in this process.
struct PostureCommand: Subcommand {
    static let path = ["posture"]
    static let summary = "attest device health: every check's status, strength and evidence (docs/posture-checks.md)"
    static let options = [
        Daemon.socketOption,
        OptionSpec("root", value: "DIR", help: "check a directory laid out like a root filesystem instead of this machine (kernel probes answer unknown)"),
        OptionSpec("local", help: "run the checks in this process even when holdfastd is running (unsigned, without the agent's facts)"),
        OptionSpec("only", value: "IDS", help: "comma-separated check ids"),
        OptionSpec("json", help: "print the report as JSON (fields in docs/posture-checks.md)"),
    ]

    let arguments: ParsedArguments
    let only: Set<String>?

    init(_ arguments: ParsedArguments) throws(UsageError) {
        self.arguments = arguments
        if let list = arguments.value("only") {
            let ids = Set(list.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
            guard !ids.isEmpty else { throw UsageError("--only needs at least one check id") }
            let known = Set(PostureCatalog.checks.map(\.id))
            if let unknown = ids.subtracting(known).sorted().first { throw UsageError("no check named \(unknown) (known: \(known.sorted().joined(separator: ", ")))") }
            only = ids
        } else {
            only = nil
        }
        if let root = arguments.value("root"), root.isEmpty { throw UsageError("--root needs a directory") }
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        var report: JSONValue
        var signed: String?
        var why = "holdfastd not asked"
        var answer: JSONValue?
        if arguments.value("root") == nil, !arguments.flag("local") {
            do {
                answer = try Daemon.call(Daemon.client(arguments, context), "posture.report", only.map { ["only": .array($0.sorted().map(JSONValue.string))] } ?? [:])
            } catch let failure as CommandFailure {
                why = failure.exitCode == .noPermission ? "holdfastd signs for root only" : "holdfastd not reachable"
            }
        }
        if let answer {
            report = answer["posture"] ?? .null
            signed = answer["report"]?.stringValue
        } else {
            let root = arguments.value("root") ?? "/"
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CommandFailure("--root \(root) is not a directory", exitCode: .usage)
            }
            let tree = RootTree(root)
            let system: any PostureSystem = tree.isHost ? LiveSystem() : DetachedSystem()
            let started = ContinuousClock.now
            // As root on the machine itself, the pending-update answer is cached between runs.
            let cache = tree.isHost && geteuid() == 0 ? PatchCache(file: Self.cacheFile()) : PatchCache()
            let posture = PostureContext(tree: tree, system: system, settings: Self.settings(tree, context), now: Date().timeIntervalSince1970, cache: cache)
            var results = PostureCatalog.run(posture, only: only)
            // A tree's files are not what the running kernel reports: nothing in it is attested.
            if !tree.isHost { for index in results.indices { results[index].strength = .selfReported } }
            let elapsed = ContinuousClock.now - started
            let milliseconds = Double(elapsed.components.seconds) * 1_000 + Double(elapsed.components.attoseconds) / 1e15
            var local = PostureReport(device: "local", time: Date(), nonce: nil, checks: results, durationMilliseconds: milliseconds)
            local.partial = only != nil
            report = local.json
            if case .object(var object) = report {
                object["source"] = .string(tree.isHost ? "local (unsigned; \(why))" : "root \(root) (unsigned)")
                report = .object(object)
            }
        }
        if arguments.flag("json") {
            if let signed, case .object(var object) = report {
                object["jws"] = .string(signed)
                report = .object(object)
            }
            context.line(try Daemon.json(report))
        } else {
            Self.printTable(report, context)
        }
        return report["status"]?.stringValue == CheckStatus.fail.rawValue ? .failure : .success
    }

    /// The paths and rule set the checks compare with, from the tree's agent.conf when it has a
    /// readable one (`HOLDFAST_CONFIG` overrides the path on the machine itself).
    static func settings(_ tree: RootTree, _ context: CommandContext) -> PostureSettings {
        let path = (tree.isHost ? context.environment["HOLDFAST_CONFIG"] : nil) ?? AgentConfiguration.defaultPath
        var settings = PostureSettings(configurationFile: path)
        guard let configuration = try? AgentConfigurationParser.load(tree.hostPath(path), requireRootOwned: false) else { return settings }
        settings.stateDirectory = configuration.stateDirectory
        settings.cupsRoot = configuration.printCupsServerRoot
        settings.minimumVersions = configuration.postureSupported
        settings.maximumUpdateAge = Double(configuration.postureMaximumUpdateAge)
        settings.maximumIdleLock = Int(configuration.postureMaximumIdleLock)
        if configuration.fileWatchEnabled {
            settings.expectedAuditRules = try? AuditRuleSet(roots: configuration.fileWatchRoots, keyPrefix: configuration.fileWatchRuleKey)
        }
        return settings
    }

    static func milliseconds(_ value: JSONValue?) -> String {
        switch value {
        case .double(let number)?: String(format: "%.1f", number)
        case .int(let number)?: "\(number)"
        default: "?"
        }
    }

    /// /var/cache/holdfast/security-updates.json (0700 directory, 0600 file); nil when it cannot be made.
    static func cacheFile() -> String? {
        let directory = "/var/cache/holdfast"
        if mkdir(directory, 0o700) != 0, errno != EEXIST { return nil }
        return directory + "/security-updates.json"
    }

    static func printTable(_ report: JSONValue, _ context: CommandContext) {
        guard case .array(let checks)? = report["checks"] else { return }
        let rows = checks.map { check in
            [check["id"]?.stringValue ?? "?", (check["status"]?.stringValue ?? "?") + (check["held"]?.boolValue == true ? "*" : ""), check["strength"]?.stringValue ?? "?", Printable.escape(check["evidence"]?.stringValue ?? "")]
        }
        let header = ["CHECK", "STATUS", "STRENGTH", "EVIDENCE"]
        let widths = (0..<3).map { column in (rows.map { $0[column].count } + [header[column].count]).max() ?? 0 }
        for row in [header] + rows {
            context.line((0..<3).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") + "  " + row[3])
        }
        let summary = report["summary"]
        let source = report["source"]?.stringValue ?? "holdfastd (signed report, device \(report["device"]?.stringValue ?? "?"))"
        context.line("")
        if report["partial"]?.boolValue == true { context.line("partial run: only the checks named by --only; the status speaks for them, not for the device") }
        context.line("status \(report["status"]?.stringValue ?? "?"): \(summary?["pass"]?.intValue ?? 0) pass, \(summary?["fail"]?.intValue ?? 0) fail, \(summary?["unknown"]?.intValue ?? 0) unknown in \(Self.milliseconds(report["duration_ms"])) ms; from \(source)")
        if checks.contains(where: { $0["held"]?.boolValue == true }) { context.line("* held: unknown once, the previous status stands until it repeats") }
    }
}
