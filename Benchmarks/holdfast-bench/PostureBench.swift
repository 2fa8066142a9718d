import Foundation
import Posture

/// Posture: a full run of every check on this machine, in holdfastd's path (in process, warm
/// patch cache) and as `holdfast posture` (a whole process, cache file), side by side with the
/// shell commands an admin would run for the same facts, timed in the same run.
enum PostureBench {
    /// The admin's equivalent: one command per fact the checks establish.
    static var shellCommands: [(String, [String])] {
        var commands: [(String, [String])] = [
            ("/usr/bin/cat", ["/etc/os-release"]), ("/usr/bin/uname", ["-r"]), ("/usr/bin/lsblk", ["-o", "NAME,TYPE,FSTYPE,MOUNTPOINT"]),
            ("/usr/bin/findmnt", ["-n", "/"]), ("/usr/bin/apt-get", ["-s", "upgrade"]), ("/usr/sbin/nft", ["list", "ruleset"]),
            ("/usr/bin/mokutil", ["--sb-state"]), ("/usr/sbin/aa-status", ["--enabled"]), ("/usr/sbin/auditctl", ["-s"]), ("/usr/sbin/auditctl", ["-l"]),
            ("/usr/bin/timedatectl", ["show"]), ("/usr/bin/awk", ["-F:", "$3 == 0 {print $1}", "/etc/passwd"]), ("/usr/bin/awk", ["-F:", "$2 == \"\" {print $1}", "/etc/shadow"]),
            ("/usr/sbin/sshd", ["-T"]), ("/usr/bin/gsettings", ["get", "org.gnome.desktop.session", "idle-delay"]), ("/usr/bin/dpkg", ["--verify", "holdfast"]),
            ("/usr/bin/stat", ["-c", "%a %U", "/etc/holdfast", "/var/lib/holdfast"]),
        ]
        commands = commands.filter { FileManager.default.isExecutableFile(atPath: $0.0) }
        return commands
    }

    /// Runs every command once; exit status ignored (a check that fails is still a measured answer).
    static func shellPass(_ commands: [(String, [String])]) throws {
        for (executable, arguments) in commands {
            _ = try spawnAndWait(executable, arguments)
        }
    }

    static func rows(holdfast: String) throws -> [Row] {
        let runs = 50
        let cache = PatchCache()
        let cold = measure(1) { _ in _ = PostureCatalog.run(PostureContext(tree: RootTree("/"), system: LiveSystem(), now: Date().timeIntervalSince1970, cache: PatchCache())) }
        let warm = measure(runs) { _ in _ = PostureCatalog.run(PostureContext(tree: RootTree("/"), system: LiveSystem(), now: Date().timeIntervalSince1970, cache: cache)) }
        let count = PostureCatalog.checks.count
        let commands = shellCommands
        // Alternate the CLI and the shell set run by run, so background load falls on both alike.
        let shellRuns = 10
        var cli = Measurement(operations: 0, seconds: 0, latencies: [])
        var shell = Measurement(operations: 0, seconds: 0, latencies: [])
        _ = try timeCommand(holdfast, ["posture", "--local", "--json"], runs: 1, allowFailure: true)
        for index in 0..<runs {
            cli.latencies += try timeCommand(holdfast, ["posture", "--local", "--json"], runs: 1, allowFailure: true).latencies
            if index < shellRuns { shell.latencies += try measure(1) { _ in try shellPass(commands) }.latencies }
        }
        let ms = { (seconds: Double) in String(format: "%.1f ms", seconds * 1_000) }
        let anchorName = "the \(commands.count) shell commands an admin runs for the same facts (\(commands.map { URL(fileURLWithPath: $0.0).lastPathComponent }.joined(separator: ", "))), \(shellRuns) runs"
        return [
            Row(
                name: "posture: all \(count) checks in holdfastd's path (in process, warm patch cache), \(runs) runs",
                holdfast: "p50 \(ms(warm.percentile(0.5))), p99 \(ms(warm.percentile(0.99))); cold first run \(ms(cold.latencies.first ?? 0))",
                anchorName: anchorName, anchor: "p50 \(ms(shell.percentile(0.5))), p99 \(ms(shell.percentile(0.99)))",
                ratio: String(format: "p99 %.3f× the anchor's", warm.percentile(0.99) / max(shell.percentile(0.99), 1e-9))),
            Row(
                name: "posture: `holdfast posture --local --json`, whole process, \(runs) runs",
                holdfast: "p50 \(ms(cli.percentile(0.5))), p99 \(ms(cli.percentile(0.99)))",
                anchorName: "the same shell commands", anchor: "p50 \(ms(shell.percentile(0.5))), p99 \(ms(shell.percentile(0.99)))",
                ratio: String(format: "p99 %.3f× the anchor's", cli.percentile(0.99) / max(shell.percentile(0.99), 1e-9))),
        ]
    }
}
