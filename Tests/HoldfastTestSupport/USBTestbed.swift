import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A fake USB bus for integration tests: `Tests/Harness/usb_testbed.py` under umockdev's wrapper,
/// driven line by line over pipes. It emulates what the kernel does that umockdev does not
/// (interfaces appearing with the hub's default authorization, deauthorization removing them,
/// drivers binding only after `drivers_probe`), and starts programs under umockdev's preload
/// library so they see this bus. The harness and everything it started stop with this value.
public final class USBTestbed {
    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        public init(message: String) { self.message = message }
        public var description: String { message }
    }

    /// One sysfs node as the harness sees it.
    public struct Node: Equatable {
        /// A USB interface (`1-2:1.0`) rather than a device.
        public let isInterface: Bool
        public let authorized: String?
        public let bound: Bool
        /// The bound driver's name (the harness's emulation of the kernel's match).
        public let driver: String?
        public let interfaceAuthorizedDefault: String?
    }

    public static let wrapper = "/usr/bin/umockdev-wrapper"
    public static let python = "/usr/bin/python3"

    /// Whether this machine can run the harness (umockdev, python3-gi).
    public static var available: Bool {
        FileManager.default.isExecutableFile(atPath: wrapper) && FileManager.default.isExecutableFile(atPath: python)
    }

    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffered: [UInt8] = []
    /// The testbed's root directory (its `sys/` mirrors `/sys`).
    public private(set) var root = ""

    public init() throws {
        // A harness that dies must fail the test, not kill it with SIGPIPE on the next command.
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
        // Its own network namespace: there the harness may lengthen umockdev's uevent queue
        // (net.unix.max_dgram_qlen is per namespace); Unix sockets on paths work across it.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        process.arguments = ["--net", Self.wrapper, Self.python, Products.packageRoot() + "/Tests/Harness/usb_testbed.py"]
        var environment = ProcessInfo.processInfo.environment
        environment["HOLDFAST_HARNESS_NETNS"] = "1"
        process.environment = environment
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        let hello = try readAnswer(timeout: 60)
        guard hello["ready"] as? Bool == true, let root = hello["root"] as? String else {
            throw Failure(message: "the USB harness did not start: \(hello)")
        }
        self.root = root
    }

    deinit {
        // End of input stops the harness — unless a process started elsewhere inherited the pipe
        // and holds it open; then SIGKILL (its children die with it: PR_SET_PDEATHSIG). Never an
        // unbounded wait: a deinit that hangs holds a test thread for good.
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            let killed = Date().addingTimeInterval(10)
            while process.isRunning, Date() < killed { usleep(10_000) }
        }
    }

    /// Sends one command and returns its answer; a refusal throws with the harness's reason.
    @discardableResult
    public func call(_ command: [String: Any], timeout: Double = 60) throws -> [String: Any] {
        var line = try JSONSerialization.data(withJSONObject: command)
        line.append(UInt8(ascii: "\n"))
        try input.fileHandleForWriting.write(contentsOf: line)
        let answer = try readAnswer(timeout: timeout)
        guard answer["ok"] as? Bool == true else {
            throw Failure(message: "harness refused \(command["op"] ?? "?"): \(answer["error"] ?? answer)")
        }
        return answer
    }

    private func readAnswer(timeout: Double) throws -> [String: Any] {
        let descriptor = output.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Data(buffered[..<newline])
                buffered.removeSubrange(...newline)
                guard let object = try JSONSerialization.jsonObject(with: line) as? [String: Any] else {
                    throw Failure(message: "the harness answered something that is not a JSON object")
                }
                return object
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw Failure(message: "the USB harness did not answer within \(timeout) s") }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(min(remaining, 1) * 1000)) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw Failure(message: "the USB harness exited") }
            buffered += chunk[0..<count]
        }
    }

    // MARK: The bus

    /// Plugs in the devices of a umockdev description (parents first); returns their sysfs paths.
    @discardableResult
    public func add(_ description: String) throws -> [String] {
        try call(["op": "add", "text": description])["paths"] as? [String] ?? []
    }

    /// Unplugs a device and everything below it.
    public func remove(_ path: String) throws { try call(["op": "remove", "path": path]) }

    /// An attribute's value now (nil when the node or attribute does not exist).
    public func attribute(_ path: String, _ name: String) throws -> String? {
        try call(["op": "attr", "path": path, "name": name])["value"] as? String
    }

    /// Writes an attribute as someone other than the agent would (the emulated kernel reacts).
    public func set(_ path: String, _ name: String, _ value: String) throws {
        try call(["op": "set", "path": path, "name": name, "value": value])
    }

    /// Every node, the interfaces probed, and every value each `authorized` file took.
    public func state() throws -> (nodes: [String: Node], probes: [String], history: [(path: String, value: String)]) {
        let answer = try call(["op": "state"])
        var nodes: [String: Node] = [:]
        for (path, value) in answer["nodes"] as? [String: [String: Any]] ?? [:] {
            nodes[path] = Node(
                isInterface: value["interface"] as? Bool ?? false, authorized: value["authorized"] as? String, bound: value["bound"] as? Bool ?? false,
                driver: value["driver"] as? String,
                interfaceAuthorizedDefault: value["interface_authorized_default"] as? String
            )
        }
        let history = (answer["history"] as? [[String]] ?? []).compactMap { pair in pair.count == 2 ? (pair[0], pair[1]) : nil }
        return (nodes, answer["probes"] as? [String] ?? [], history)
    }

    /// Runs the real udev rules engine (`udevadm test`) with only the rules in `rules` on one node.
    @discardableResult
    public func udev(_ path: String, rules: String, action: String = "add") throws -> [String] {
        try call(["op": "udev", "path": path, "rules": rules, "action": action])["writes"] as? [String] ?? []
    }

    /// Lets the harness follow writes for a while.
    public func settle(_ seconds: Double = 0.1) throws { try call(["op": "sleep", "seconds": seconds]) }

    // MARK: Programs under the preload

    /// Starts a program that sees this bus; its output goes to `log`.
    public func spawn(_ argv: [String], environment: [String: String] = [:], log: String) throws -> Int32 {
        guard let pid = try call(["op": "spawn", "argv": argv, "env": environment, "log": log])["pid"] as? Int else {
            throw Failure(message: "the harness did not say which pid it started")
        }
        return Int32(pid)
    }

    public func signal(_ pid: Int32, _ number: Int32 = 15) throws {
        try call(["op": "signal", "pid": Int(pid), "signal": Int(number)])
    }

    /// Waits for a started program to exit; its status, or nil on timeout.
    public func wait(_ pid: Int32, timeout: Double = 10) throws -> Int? {
        try call(["op": "wait", "pid": Int(pid), "timeout": timeout], timeout: timeout + 30)["status"] as? Int
    }

    /// Polls `condition` (with the harness following writes) until it holds or ~30 s pass.
    public func waitUntil(timeout: Double = 30, _ condition: () throws -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            try settle(0.02)
        }
        return try condition()
    }
}
