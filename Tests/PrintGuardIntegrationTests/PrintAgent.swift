import Foundation
import HoldfastCore
import HoldfastTestSupport
import PrintGuard
#if canImport(Glibc)
import Glibc
#endif

/// A real holdfastd with PrintGuard on, pointed at a private cupsd (`CupsTestbed`): its own
/// configuration, policy, state and control socket in a temporary directory.
final class PrintAgent {
    let directory = TemporaryDirectory()
    var config: String { directory.file("agent.conf") }
    var policy: String { directory.file("policy.json") }
    var socket: String { directory.file("run/control.sock") }
    var log: String { directory.file("holdfastd.log") }
    private(set) var cups: CupsTestbed?
    private var process: SpawnedProcess?

    static let users = ["hf-print-ann", "hf-print-bob"]
    static let group = "hf-print-desk"

    /// `extra`: more sections for agent.conf (a broker's, `TestBroker.agentSection`).
    init(policy: String, fileDevice: Bool = false, installGate: Bool = true, extra: String = "") throws {
        chmod(directory.path, 0o755)
        try FileManager.default.createDirectory(atPath: directory.file("run"), withIntermediateDirectories: true)
        chmod(directory.file("run"), 0o755)
        let cups = try CupsTestbed(controlSocket: socket, fileDevice: fileDevice, installGate: installGate)
        self.cups = cups
        try write("""
            [agent]
            state_dir = \(directory.file("state"))
            control_socket = \(socket)
            policy = \(self.policy)
            log_level = debug
            [usb]
            enabled = no
            [print]
            cups_server = \(cups.socket)
            cups_server_root = \(cups.serverRoot)
            [filewatch]
            enabled = no
            \(extra)

            """, to: config)
        try setPolicy(policy)
    }

    deinit {
        process?.signal(SIGKILL)
        process?.stop()
        cups?.stop()
    }

    var testbed: CupsTestbed {
        get throws {
            guard let cups else { throw CupsTestbed.Failure(message: "no testbed") }
            return cups
        }
    }

    func setPolicy(_ text: String) throws { try write(text, to: policy) }

    private func write(_ text: String, to path: String) throws {
        try text.writeReplacing(toFile: path)
        chmod(path, 0o644)
    }

    /// Starts holdfastd and waits for READY.
    func start() throws {
        let notify = NotifyListener(path: directory.file("notify-\(UInt32.random(in: 0 ... .max)).sock"))
        let process = try SpawnedProcess(
            [Products.path("holdfastd"), "--config", config],
            environment: ["NOTIFY_SOCKET": notify.path, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TZ": "UTC"], log: log
        )
        self.process = process
        guard notify.waitFor("READY=1", timeout: 30).found else {
            throw CupsTestbed.Failure(message: "holdfastd did not become ready: \(logText)")
        }
    }

    /// Stops it (SIGTERM: clean; SIGKILL: a crash) and waits.
    func stop(_ signal: Int32 = SIGTERM) {
        guard let process else { return }
        process.signal(signal)
        process.stop()
        self.process = nil
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// `holdfast ARGS --socket …` as root (or `user`).
    func holdfast(_ arguments: [String], as user: String? = nil) throws -> ProcessResult {
        let full = arguments + ["--socket", socket]
        let cups = try testbed
        if let user { return try cups.run(Products.path("holdfast"), full, as: user) }
        return try cups.run(Products.path("holdfast"), full)
    }

    /// The journal's events of `kind`, newest last, as JSON objects.
    func events(_ kind: String) throws -> [JSONValue] {
        let result = try runProcess(Products.path("holdfast"), ["journal", "tail", "--lines", "5000", "--json", "--state-dir", directory.file("state")])
        return result.stdout.split(separator: "\n").compactMap { line in
            try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8))
        }.filter { $0["holdfast"]?["kind"]?.stringValue == kind }
    }

    /// A job's state and messages, read from cupsd as root.
    func job(_ id: Int) throws -> (state: Int32, message: String) {
        try CupsClient(server: testbed.socket).job(Int32(id))
    }

    /// Polls `condition` every 50 ms for up to `timeout` seconds.
    func eventually(_ timeout: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if try condition() { return true }
            usleep(50_000)
        } while Date() < deadline
        return try condition()
    }

    /// Waits until the job is finished (completed, canceled or aborted) and returns its state.
    func finished(_ id: Int) throws -> (state: Int32, message: String) {
        var last = (state: Int32(0), message: "")
        _ = try eventually {
            last = try job(id)
            return last.state >= 7
        }
        return last
    }

    /// `finished`, waiting without holding a thread (for async tests).
    func finishedWaiting(_ id: Int) async throws -> (state: Int32, message: String) {
        var last = (state: Int32(0), message: "")
        _ = try await HoldfastTestSupport.eventually {
            last = try job(id)
            return last.state >= 7
        }
        return last
    }

    /// A PDF document with `pages` pages.
    func document(pages: Int, name: String = "doc.pdf") throws -> String {
        let path = directory.file(name)
        try write(simplePDF(pages: pages), to: path)
        return path
    }
}

/// CUPS job states (RFC 8011 §5.3.7).
enum JobState {
    static let held: Int32 = 4
    static let canceled: Int32 = 7
    static let completed: Int32 = 9
}
