import Foundation
import HoldfastTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A real holdfastd enforcing USB over a umockdev bus: its own configuration, policy, state and
/// control socket in a temporary directory; started under the harness's preload library.
final class EnforcingAgent {
    let bus: USBTestbed
    let directory = TemporaryDirectory()
    private(set) var pid: Int32?
    var config: String { directory.file("agent.conf") }
    var policy: String { directory.file("policy.json") }
    var socket: String { directory.file("run/control.sock") }
    var state: String { directory.file("state") }
    var log: String { directory.file("holdfastd.log") }
    let holdfast = Products.path("holdfast")

    /// `rescan` is long by default: a test that passes then proves the event path did the work.
    /// `extra`: more sections for agent.conf (a broker's, `TestBroker.agentSection`).
    /// `usb: false`: an agent on the same machine that leaves the bus alone (`[usb] enabled = no`).
    init(bus: USBTestbed, policy: String = "{}", rescan: String = "1h", extra: String = "", usb: Bool = true) throws {
        self.bus = bus
        chmod(directory.path, 0o755)
        try write("[agent]\nstate_dir = \(state)\ncontrol_socket = \(socket)\npolicy = \(self.policy)\nlog_level = debug\n[usb]\nenabled = \(usb ? "yes" : "no")\nrescan_interval = \(rescan)\nmarks_dir = \(directory.file("run"))\n[print]\nenabled = no\n[filewatch]\nenabled = no\n\(extra)\n", to: config)
        try setPolicy(policy)
    }

    deinit {
        if let pid {
            try? bus.signal(pid, SIGKILL)
            _ = try? bus.wait(pid, timeout: 10)
        }
    }

    func setPolicy(_ text: String) throws { try write(text, to: policy) }

    private func write(_ text: String, to path: String) throws {
        try text.writeReplacing(toFile: path)
        chmod(path, 0o644)
    }

    /// Starts holdfastd and waits for READY (sent once every present device is decided).
    func start() throws {
        let notify = NotifyListener(path: directory.file("notify-\(UInt32.random(in: 0 ... .max)).sock"))
        pid = try bus.spawn([Products.path("holdfastd"), "--config", config], environment: ["NOTIFY_SOCKET": notify.path], log: log)
        guard notify.waitFor("READY=1", timeout: 30).found else {
            throw USBTestbed.Failure(message: "holdfastd did not become ready: \(logText)")
        }
    }

    /// Enrolls it with `broker` (retried until the broker listens: it may start in the harness's
    /// namespace just now); its device id.
    func enroll(_ broker: TestBroker) async throws -> String {
        let token = try broker.token()
        var enrolled = try cli(["enroll", "--token", token, "--json"])
        for _ in 0..<100 where enrolled.status != 0 && enrolled.stderr.contains("connect") {
            try await Task.sleep(for: .milliseconds(200))
            enrolled = try cli(["enroll", "--token", token, "--json"])
        }
        guard enrolled.status == 0,
              let device = (try? JSONSerialization.jsonObject(with: Data(enrolled.stdout.utf8)) as? [String: Any])?["device_id"] as? String else {
            throw USBTestbed.Failure(message: "enroll failed: \(enrolled.stderr)")
        }
        return device
    }

    /// Stops it (SIGTERM: clean; SIGKILL: a crash) and waits for the exit.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM) throws -> Int? {
        guard let pid else { return nil }
        try bus.signal(pid, signal)
        let status = try bus.wait(pid, timeout: 10)
        self.pid = nil
        return status
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Runs the CLI against this agent's socket, as root or as another user.
    func cli(_ arguments: [String], as user: String? = nil) throws -> ProcessResult {
        let command = [holdfast, "--socket", socket] + arguments
        if let user { return try runProcess("/usr/sbin/runuser", ["-u", user, "--"] + command) }
        return try runProcess(holdfast, Array(command.dropFirst()))
    }

    /// `holdfast usb devices --json`, devices by bus path.
    func devices() throws -> (report: [String: Any], byPath: [String: [String: Any]]) {
        let result = try cli(["usb", "devices", "--json"])
        guard result.status == 0, let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw USBTestbed.Failure(message: "usb devices failed: \(result.stderr)")
        }
        var byPath: [String: [String: Any]] = [:]
        for device in report["devices"] as? [[String: Any]] ?? [] {
            if let path = device["path"] as? String { byPath[path] = device }
        }
        return (report, byPath)
    }

    /// Journaled events of one kind, oldest first (the journal is read as `holdfast journal` does).
    func events(_ kind: String) throws -> [[String: Any]] {
        let result = try runProcess(holdfast, ["journal", "tail", "--state-dir", state, "--lines", "10000", "--json"])
        return result.stdout.split(separator: "\n").compactMap { line in
            guard let event = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                (event["holdfast"] as? [String: Any])?["kind"] as? String == kind
            else { return nil }
            return event
        }
    }

    /// Waits (up to ~30 s) for an event of `kind` matching `where`.
    func waitForEvent(_ kind: String, where matches: ([String: Any]) -> Bool = { _ in true }) throws -> [String: Any]? {
        var found: [String: Any]?
        _ = try bus.waitUntil {
            found = try events(kind).first(where: matches)
            return found != nil
        }
        return found
    }
}

/// The details object of an event.
func details(_ event: [String: Any]?) -> [String: Any] {
    (event?["holdfast"] as? [String: Any])?["details"] as? [String: Any] ?? [:]
}
