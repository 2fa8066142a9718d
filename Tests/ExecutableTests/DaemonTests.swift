import Foundation
import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

/// holdfastd as systemd and people run it: a real process, its control socket, signals, notify.
@Suite(.serialized) struct DaemonTests {
    let daemon = Products.path("holdfastd")
    let holdfast = Products.path("holdfast")

    /// A temporary installation: config, policy, state and socket under one 0755 directory, so an
    /// unprivileged user (`nobody`) can reach the socket as on a real machine.
    final class Installation {
        let directory = TemporaryDirectory()
        var config: String { directory.file("agent.conf") }
        var policy: String { directory.file("policy.json") }
        var socket: String { directory.file("run/control.sock") }
        var state: String { directory.file("state") }

        init(policy: String? = #"{"version":7,"usb":{}}"#) throws {
            chmod(directory.path, 0o755)
            try writeConfig()
            if let policy { try write(policy, to: self.policy) }
        }

        func writeConfig(extra: String = "") throws {
            // USB enforcement stays off: these tests run on the real /sys of whatever machine runs
            // them (DeviceGuard's own tests run it over a umockdev bus).
            try write("# test agent\n[usb]\nenabled = no\n[print]\nenabled = no\n[filewatch]\nenabled = no\n[agent]\nstate_dir = \(state)\ncontrol_socket = \(socket)\npolicy = \(policy)\n\(extra)", to: config)
        }

        func write(_ text: String, to path: String) throws {
            try text.writeReplacing(toFile: path)
            chmod(path, 0o644)
        }
    }

    /// A running holdfastd with a stand-in notify socket; stopped by the test or at release.
    final class RunningDaemon {
        let process = Process()
        let notify: NotifyListener
        let stderr = Pipe()

        init(_ installation: Installation, binary: String, watchdogMicroseconds: Int? = nil) throws {
            notify = NotifyListener(path: installation.directory.file("notify.sock"))
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["--config", installation.config]
            var environment = ["NOTIFY_SOCKET": notify.path, "PATH": "/usr/bin:/bin"]
            if let watchdogMicroseconds { environment["WATCHDOG_USEC"] = String(watchdogMicroseconds) }
            process.environment = environment
            process.standardError = stderr
            try process.run()
        }

        deinit {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }

        /// Sends SIGTERM and returns (exit status, seconds it took to exit).
        func stop() -> (Int32, Double) {
            let started = Date()
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            return (process.terminationStatus, Date().timeIntervalSince(started))
        }

        var log: String { String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
    }

    func json(_ text: String) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    @Test func checkConfigNamesTheLineOfAnUnknownKey() throws {
        let installation = try Installation()
        try installation.write("[agent]\nstat_dir = /var/lib/holdfast\n", to: installation.config)
        let result = try runProcess(daemon, ["--check-config", installation.config])
        #expect(result.status == 1)
        #expect(result.stderr == "\(installation.config):2: unknown key 'stat_dir' in [agent]\n")
    }

    @Test func checkConfigAcceptsAGoodFileAndRefusesAWritableOne() throws {
        let installation = try Installation()
        let good = try runProcess(daemon, ["--check-config", installation.config])
        #expect(good.status == 0)
        chmod(installation.config, 0o666)
        let writable = try runProcess(daemon, ["--check-config", installation.config])
        #expect(writable.status == 1)
        #expect(writable.stderr.contains("lets group or others write it"))
    }

    @Test func checkConfigAlsoChecksThePolicyItNames() throws {
        let installation = try Installation()
        let good = try runProcess(daemon, ["--check-config", installation.config])
        #expect(good.stdout == "\(installation.config): ok\n\(installation.policy): ok\n")
        try installation.write(#"{"usb": {"mode": "block-everything"}}"#, to: installation.policy)
        let bad = try runProcess(daemon, ["--check-config", installation.config])
        #expect(bad.status == 1)
        #expect(bad.stderr == "\(installation.policy): usb.mode: must be \"enforce\" or \"audit-only\"\n")
        unlink(installation.policy)
        let missing = try runProcess(daemon, ["--check-config", installation.config])
        #expect(missing.status == 0)
        #expect(missing.stdout.contains("no policy file; the last good or the built-in policy applies"))
    }

    @Test func servesStatusToEveryoneAndReloadToRootOnly() throws {
        let installation = try Installation()
        let running = try RunningDaemon(installation, binary: daemon, watchdogMicroseconds: 200_000)
        #expect(running.notify.waitFor("READY=1").found)

        let asRoot = try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"])
        #expect(asRoot.status == 0)
        let status = json(asRoot.stdout)
        #expect(status?["version"] as? String == HoldfastVersion.current)
        #expect((status?["policy"] as? [String: Any])?["source"] as? String == "file")
        #expect((status?["policy"] as? [String: Any])?["version"] as? Int == 7)
        #expect(((status?["services"] as? [[String: Any]])?.first)?["state"] as? String == "running")

        let asNobody = try runProcess("/usr/sbin/runuser", ["-u", "nobody", "--", holdfast, "--socket", installation.socket, "status", "--json"])
        #expect(asNobody.status == 0, "\(asNobody.stderr)")
        #expect(json(asNobody.stdout)?["version"] as? String == HoldfastVersion.current)

        let reloadAsNobody = try runProcess("/usr/sbin/runuser", ["-u", "nobody", "--", holdfast, "--socket", installation.socket, "reload"])
        #expect(reloadAsNobody.status == 77)
        #expect(reloadAsNobody.stderr.contains("permission denied"))

        let reloadAsRoot = try runProcess(holdfast, ["--socket", installation.socket, "reload"])
        #expect(reloadAsRoot.status == 0)

        // The watchdog is pinged at half its interval.
        #expect(running.notify.waitFor("WATCHDOG=1").found)

        let (code, seconds) = running.stop()
        #expect(code == 0)
        #expect(seconds < 2)
        #expect(!FileManager.default.fileExists(atPath: installation.socket))

        // The refusal was journaled with the caller's uid.
        let tail = try runProcess(holdfast, ["journal", "tail", "--state-dir", installation.state, "--json", "--lines", "50"])
        let events = tail.stdout.split(separator: "\n").compactMap { json(String($0)) }
        let kinds = events.compactMap { ($0["holdfast"] as? [String: Any])?["kind"] as? String }
        #expect(kinds.first == "agent.start")
        #expect(kinds.last == "agent.stop")
        let denied = events.first { ($0["holdfast"] as? [String: Any])?["kind"] as? String == "control.denied" }
        #expect((denied?["actor"] as? [String: Any]).flatMap { $0["user"] as? [String: Any] }?["uid"] as? String == "65534")
        #expect(kinds.contains("agent.reload"))
    }

    @Test func aBadReloadKeepsTheOldConfigurationAndPolicy() throws {
        let installation = try Installation()
        let running = try RunningDaemon(installation, binary: daemon)
        #expect(running.notify.waitFor("READY=1").found)
        let before = json(try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"]).stdout)
        let digest = (before?["policy"] as? [String: Any])?["sha256"] as? String

        try installation.write(#"{"usb": "allow everything"}"#, to: installation.policy)
        try installation.writeConfig(extra: "log_levle = debug\n")
        kill(running.process.processIdentifier, SIGHUP)
        #expect(running.notify.waitFor("STATUS=reload refused; previous configuration in force").found)

        let after = json(try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"]).stdout)
        #expect((after?["policy"] as? [String: Any])?["sha256"] as? String == digest)
        #expect((after?["last_reload"] as? [String: Any])?["ok"] as? Bool == false)
        #expect(running.process.isRunning)

        let (code, _) = running.stop()
        #expect(code == 0)
        let tail = try runProcess(holdfast, ["journal", "tail", "--state-dir", installation.state, "--lines", "50"])
        #expect(tail.stdout.contains("policy.refused"))
        #expect(tail.stdout.contains("agent.reload_failed"))
        #expect(running.log.contains("configuration refused on reload"))
    }

    @Test func startsWithTheLastGoodPolicyWhenTheFileIsBad() throws {
        let installation = try Installation()
        do {
            let first = try RunningDaemon(installation, binary: daemon)
            #expect(first.notify.waitFor("READY=1").found)
            #expect(first.stop().0 == 0)
        }
        try installation.write("{not json", to: installation.policy)
        let second = try RunningDaemon(installation, binary: daemon)
        #expect(second.notify.waitFor("READY=1").found)
        let status = json(try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"]).stdout)
        #expect((status?["policy"] as? [String: Any])?["source"] as? String == "last-good")
        #expect((status?["policy"] as? [String: Any])?["version"] as? Int == 7)
        #expect(second.stop().0 == 0)
    }

    @Test func refusesAPolicyWithABadUSBRule() throws {
        let installation = try Installation(policy: #"{"usb":{"rules":[{"id":"x","match":{"vendor":"zz"},"action":"allow"}]}}"#)
        let running = try RunningDaemon(installation, binary: daemon)
        #expect(running.notify.waitFor("READY=1").found)
        let status = json(try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"]).stdout)
        #expect((status?["policy"] as? [String: Any])?["source"] as? String == "built-in")
        #expect(running.stop().0 == 0)
        let tail = try runProcess(holdfast, ["journal", "tail", "--state-dir", installation.state])
        #expect(tail.stdout.contains("vendor must be 4 hex digits"))
    }

    @Test func startsWithTheBuiltInPolicyWhenThereIsNone() throws {
        let installation = try Installation(policy: nil)
        let running = try RunningDaemon(installation, binary: daemon)
        #expect(running.notify.waitFor("READY=1").found)
        let status = json(try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"]).stdout)
        #expect((status?["policy"] as? [String: Any])?["source"] as? String == "built-in")
        #expect(running.stop().0 == 0)
    }

    @Test func refusesToStartOnABadConfiguration() throws {
        let installation = try Installation()
        try installation.write("[agent]\nlog_level = loud\n", to: installation.config)
        let result = try runProcess(daemon, ["--config", installation.config])
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(installation.config):2: log_level must be one of"))
    }

    @Test func refusesASecondDaemonOnTheSameStateOrSocket() throws {
        let installation = try Installation()
        let running = try RunningDaemon(installation, binary: daemon)
        #expect(running.notify.waitFor("READY=1").found)
        let sameState = try runProcess(daemon, ["--config", installation.config])
        #expect(sameState.status == 1)
        #expect(sameState.stderr.contains("held by another holdfastd (pid \(running.process.processIdentifier))"))

        // Another state directory, the same socket.
        let other = installation.directory.file("other.conf")
        try installation.write("[agent]\nstate_dir = \(installation.directory.file("state2"))\ncontrol_socket = \(installation.socket)\npolicy = \(installation.policy)\n", to: other)
        let sameSocket = try runProcess(daemon, ["--config", other])
        #expect(sameSocket.status == 1)
        #expect(sameSocket.stderr.contains("already listening"))
        #expect(try runProcess(holdfast, ["--socket", installation.socket, "status"]).status == 0)
        #expect(running.stop().0 == 0)
    }

    @Test func aFIFOInPlaceOfTheConfigOrPolicyNeverHangs() throws {
        let installation = try Installation()
        let fifo = installation.directory.file("fifo.conf")
        mkfifo(fifo, 0o644)
        let check = try runProcess(daemon, ["--check-config", fifo])
        #expect(check.status == 1)
        #expect(check.stderr.contains("is not a regular file"))

        unlink(installation.policy)
        mkfifo(installation.policy, 0o644)
        let running = try RunningDaemon(installation, binary: daemon)
        #expect(running.notify.waitFor("READY=1").found)
        let status = json(try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"]).stdout)
        #expect((status?["policy"] as? [String: Any])?["source"] as? String == "built-in")
        kill(running.process.processIdentifier, SIGHUP)
        #expect(running.notify.waitFor("STATUS=reload refused; previous configuration in force").found)
        let (code, seconds) = running.stop()
        #expect(code == 0)
        #expect(seconds < 2)
    }

    @Test func aFloodOfRefusalsCannotFlushTheJournal() throws {
        let installation = try Installation()
        let running = try RunningDaemon(installation, binary: daemon)
        #expect(running.notify.waitFor("READY=1").found)
        let script = """
            import json, socket, sys
            for _ in range(300):
                s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
                s.sendall(b'{"version":1,"verb":"reload"}\\n'); s.recv(4096); s.close()
            """
        let flood = try runProcess("/usr/sbin/runuser", ["-u", "nobody", "--", "/usr/bin/python3", "-c", script, installation.socket])
        #expect(flood.status == 0, "\(flood.stderr)")
        let status = json(try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"]).stdout)
        let notJournaled = (status?["control"] as? [String: Any])?["denials_not_journaled"] as? Int ?? 0
        #expect(notJournaled >= 250)
        #expect(running.stop().0 == 0)
        let tail = try runProcess(holdfast, ["journal", "tail", "--state-dir", installation.state, "--lines", "1000"])
        let denials = tail.stdout.split(separator: "\n").filter { $0.contains("control.denied") }.count
        #expect(denials >= 1)
        #expect(denials <= 25)
    }

    @Test func reportsSettingsThatWaitForARestart() throws {
        let installation = try Installation()
        let running = try RunningDaemon(installation, binary: daemon)
        #expect(running.notify.waitFor("READY=1").found)
        try installation.writeConfig(extra: "[journal]\nmax_size = 64M\n")
        #expect(try runProcess(holdfast, ["--socket", installation.socket, "reload"]).status == 0)
        let status = json(try runProcess(holdfast, ["--socket", installation.socket, "status", "--json"]).stdout)
        #expect((status?["pending_restart"] as? [String: Any])?["journal.max_size"] as? String == String(64 << 20))
        #expect(((status?["journal"] as? [String: Any])?["max_bytes"] as? Int) == 256 << 20)
        #expect(running.stop().0 == 0)
    }

    @Test func theCLISaysWhenTheDaemonIsNotRunning() throws {
        let installation = try Installation()
        let result = try runProcess(holdfast, ["--socket", installation.socket, "status"])
        #expect(result.status == 69)
        #expect(result.stderr.contains("holdfastd is not reachable"))
    }
}

extension DaemonTests {
    /// holdfastd signs the posture report with its device key (created 0600 on first start) over
    /// the caller's nonce; the report's `kid` is the key's thumbprint and the key file verifies it.
    @Test func theDaemonSignsAPostureReportWithTheDeviceKey() throws {
        let installation = try Installation()
        let running = try RunningDaemon(installation, binary: daemon)
        #expect(running.notify.waitFor("READY=1").found)
        let result = try runProcess(holdfast, ["--socket", installation.socket, "posture", "--json"])
        #expect(result.status == 0 || result.status == 1, "\(result.stderr)")
        let report = try #require(json(result.stdout))
        let jws = try #require(report["jws"] as? String)
        #expect(fileMode(installation.state + "/device.key") == 0o600)
        let checks = try #require(report["checks"] as? [[String: Any]])
        #expect(checks.count >= 15)
        // The lockdown check has the agent's facts here (nothing is locked).
        #expect(checks.first { $0["id"] as? String == "lockdown-consistent" }?["status"] as? String == "pass")
        // FileWatch is off in this installation, and the report says so.
        #expect(checks.first { $0["id"] as? String == "audit-rules" }?["evidence"] as? String == "FileWatch is off ([filewatch] enabled = no): no file rules are expected or checked")
        let publicKey = installation.directory.file("device.pub")
        let derived = try runProcess("/usr/bin/openssl", ["pkey", "-in", installation.state + "/device.key", "-pubout", "-out", publicKey])
        #expect(derived.status == 0, "\(derived.stderr)")
        let verified = try runProcess(holdfast, ["verify", "--public-key", publicKey, "--typ", "holdfast-posture+jws", jws])
        #expect(verified.status == 0, "\(verified.stdout) \(verified.stderr)")
        // Unprivileged users get a local, unsigned run, never the device key's signature.
        let asNobody = try runProcess("/usr/sbin/runuser", ["-u", "nobody", "--", holdfast, "--socket", installation.socket, "posture", "--json"])
        #expect(json(asNobody.stdout)?["jws"] == nil)
        #expect((json(asNobody.stdout)?["source"] as? String)?.hasPrefix("local") == true)
        _ = running.stop()
    }
}
