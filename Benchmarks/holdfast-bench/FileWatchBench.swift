import Foundation
import HoldfastCore
import HoldfastTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The FileWatch row: CPU of the plugin and holdfastd while the kernel emits 1,000 file events a
/// second, beside auditd's own CPU over the same run (the anchor: auditd is what the workstation
/// runs anyway; Laurel's published figure is 21% of a core at 1,000 execs/s). Real kernel audit, a
/// private auditd with the Holdfast plugin, a release holdfastd with its rules under a bench key.
enum FileWatchBench {
    static let auditd = "/usr/sbin/auditd"
    static let auditctl = "/usr/sbin/auditctl"

    /// utime + stime of a process, in seconds (proc(5): fields 14 and 15, in clock ticks).
    static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the comm: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The children of `parent` (the plugin is auditd's).
    static func children(of parent: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return false }
            let fields = text[text.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == parent
        }
    }

    static func available() -> Bool {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: auditd),
            let status = try? runProcess(auditctl, ["-s"]), status.status == 0
        else { return false }
        return status.stdout.split(separator: "\n").contains { $0 == "pid 0" }
    }

    static func rows(seconds: Int, rate: Int) throws -> [Row] {
        guard available() else {
            print("note: skipping the FileWatch CPU row (needs root, auditd, kernel audit and no audit daemon running)")
            return []
        }
        let bin = Products.directory
        let directory = TemporaryDirectory()
        chmod(directory.path, 0o755)
        let root = "/" + directory.file("desk").split(separator: "/").joined(separator: "/")
        for name in ["desk", "run", "state", "log", "plugins.d"] {
            try FileManager.default.createDirectory(atPath: directory.file(name), withIntermediateDirectories: false)
        }
        let key = "holdfast-bench-\(getpid())"
        let socket = directory.file("run/control.sock")
        try PrivateAuditd.writeAgent(directory: directory.path, policy: "{}", roots: root, ruleKey: key)
        try PrivateAuditd.writePluginConf(to: directory.file("plugins.d/holdfast.conf"), plugin: bin + "/holdfast-audit-plugin", socket: directory.file("run/audit.sock"))
        try PrivateAuditd.writeConfiguration(directory: directory.path, logFile: directory.file("log/audit.log"), pluginDirectory: directory.file("plugins.d"), maxLogFileMiB: 512)

        let status = try runProcess(auditctl, ["-s"]).stdout
        let wasEnabled = status.split(separator: "\n").first { $0.hasPrefix("enabled ") }.map { String($0.dropFirst(8)) } ?? "0"
        _ = try runProcess(auditctl, ["-e", "1"])
        let agent = try SpawnedProcess([bin + "/holdfastd", "--config", directory.file("agent.conf")], environment: ["TZ": "UTC"], log: directory.file("holdfastd.log"))
        var daemon: SpawnedProcess?
        defer {
            daemon?.stop()
            agent.signal(SIGTERM)
            agent.stop()
            _ = try? runProcess(auditctl, ["-D", "-k", key + "-write"])
            _ = try? runProcess(auditctl, ["-D", "-k", key + "-mount"])
            _ = try? runProcess(auditctl, ["-e", wasEnabled])
        }
        func fileWatch() -> JSONValue? {
            guard let result = try? runProcess(bin + "/holdfast", ["filewatch", "status", "--json", "--socket", socket]), result.status == 0 else { return nil }
            return try? JSONDecoder().decode(JSONValue.self, from: Data(result.stdout.utf8))
        }
        func until(_ seconds: Double, _ condition: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if condition() { return true }
                usleep(100_000)
            }
            return condition()
        }
        guard until(30, { fileWatch()?["rules"]?["missing"]?.intValue == 0 && fileWatch()?["rules"]?["present"]?.intValue == 4 }) else {
            print("note: the FileWatch benchmark failed: holdfastd did not load its rules")
            return []
        }
        let auditDaemon = try SpawnedProcess([auditd, "-n", "-c", directory.path], environment: [:], log: directory.file("auditd.out"))
        daemon = auditDaemon
        guard until(30, { fileWatch()?["forwarders"]?.intValue == 1 }), let plugin = children(of: auditDaemon.pid).first else {
            print("note: the FileWatch benchmark failed: the plugin never connected")
            return []
        }
        print("note: FileWatch CPU, \(rate) file events/s for \(seconds) s through a private auditd…")
        // The load: a process with login uid 1001 creating `rate` files a second, 10 every 10 ms
        // on an absolute schedule (so a slow moment is caught up, not lost).
        let generator = """
            import os, sys, time
            open('/proc/self/loginuid', 'w').write('1001')
            root, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
            per_tick = max(1, rate // 100)
            start = time.monotonic()
            n = 0
            for tick in range(seconds * 100):
                for _ in range(per_tick):
                    os.close(os.open('%s/f%07d' % (root, n), os.O_CREAT | os.O_WRONLY, 0o600))
                    n += 1
                wait = start + (tick + 1) / 100 - time.monotonic()
                if wait > 0: time.sleep(wait)
            """
        let before = [agent.pid, plugin, auditDaemon.pid].map { cpuSeconds($0) ?? 0 }
        let started = Date()
        let load = try runProcess("/usr/bin/python3", ["-c", generator, root, String(rate), String(seconds)])
        let wall = Date().timeIntervalSince(started)
        let expected = Int64(rate / 100 * 100 * seconds)
        // Delivery finishes within a moment; the CPU window is the load's.
        let delivered = until(30) { fileWatch()?["events_by_key"]?[key + "-write"]?.intValue ?? 0 >= expected }
        let after = [agent.pid, plugin, auditDaemon.pid].map { cpuSeconds($0) ?? 0 }
        guard load.status == 0 else {
            print("note: the FileWatch load failed: \(load.stderr)")
            return []
        }
        let final = fileWatch()
        let seen = final?["events_by_key"]?[key + "-write"]?.intValue ?? 0
        let window = Date().timeIntervalSince(started)
        let percent = zip(after, before).map { ($0 - $1) / window * 100 }
        let (holdfastd, forwarder, auditdPercent) = (percent[0], percent[1], percent[2])
        let ours = holdfastd + forwarder
        let dropped = final?["forwarder"]?["dropped"]?.intValue ?? -1
        let complete = final?["coverage"]?["complete"]?.boolValue == true
        print("note: FileWatch run: \(seen) of \(expected) events seen in \(String(format: "%.1f", wall)) s of load (\(String(format: "%.1f", window)) s window); forwarder dropped \(dropped); coverage \(complete ? "complete" : "INCOMPLETE")\(delivered ? "" : "; NOT ALL DELIVERED")")
        guard delivered else {
            // A figure for a run that did not deliver would flatter: no row. (Another rule on the
            // same directory takes the events under its own key: auditctl -l.)
            print("note: the FileWatch benchmark failed: not every event reached holdfastd under its rule key")
            return []
        }
        return [
            Row(
                name: "FileWatch CPU at \(rate) file events/s (\(seconds) s, real kernel audit)",
                holdfast: String(format: "%.1f%% of a core (holdfastd %.1f%% + plugin %.1f%%)", ours, holdfastd, forwarder),
                anchorName: "auditd itself, same run (goal: Holdfast < 5%; Laurel publishes 21% at 1,000 execs/s)",
                anchor: String(format: "%.1f%% of a core", auditdPercent),
                ratio: String(format: "%.2f×", ours / max(auditdPercent, 0.01))
            ),
        ]
    }
}
