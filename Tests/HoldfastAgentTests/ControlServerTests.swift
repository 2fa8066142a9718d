import Foundation
import Glibc
@testable import HoldfastAgent
import HoldfastCore
import HoldfastTestSupport
import Synchronization
import Testing

/// A handler with one verb of each class, recording refusals.
final class RecordingHandler: ControlHandler {
    let refusals = Mutex<[String]>([])
    /// `slow` has begun (its connection holds a slot) / may end.
    let slowStarted = Mutex(false)
    let slowReleased = Mutex(false)

    func verbClass(_ verb: String) async -> VerbClass? {
        ["look": .read, "ask": .request, "change": .admin, "slow": .read][verb]
    }

    func handle(_ request: ControlRequest, from peer: PeerCredentials) async -> ControlResponse {
        if request.verb == "slow" {
            slowStarted.withLock { $0 = true }
            // Held until the test lets it go (at most 30 s): an order of events, not a timing.
            for _ in 0..<3_000 where !slowReleased.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(10)) }
        }
        return .success(.object(["verb": .string(request.verb), "uid": .int(Int64(peer.uid)), "pid": .int(Int64(peer.pid))]))
    }

    func denied(_ request: ControlRequest, from peer: PeerCredentials, reason: String) async {
        refusals.withLock { $0.append("\(request.verb) uid=\(peer.uid)") }
    }
}

/// Runs blocking work on a new thread and awaits its result.
func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

func offThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}

/// A task executor with a thread of its own. The in-process server under test runs on it, not on
/// the cooperative pool: on a 2-core box the pool has two threads, and synchronous tests in other
/// suites (USB, print, each waiting on a real daemon) can hold both for longer than any
/// reasonable timeout — the server then looked dead though it was only never scheduled.
final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    init() {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "control-server-test"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(unowned)
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    /// One for every server of the run: its thread lives as long as the test process.
    static let shared = ThreadExecutor()
}

/// Runs a control service on a temporary socket for the length of a test.
struct RunningServer {
    let directory = TemporaryDirectory()
    let handler = RecordingHandler()
    let path: String
    let task: Task<Void, any Error>

    init(maximumConnections: Int = 64, requestTimeout: Duration = .seconds(5)) throws {
        path = directory.file("control.sock")
        let listener = try ControlListener(path: path)
        let service = ControlService(
            listener: listener, handler: handler, logger: Logger(handler: MemoryLogHandler()),
            maximumConnections: maximumConnections, requestTimeout: requestTimeout
        )
        task = Task(executorPreference: ThreadExecutor.shared) { try await service.run() }
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    /// Calls a verb from a thread of its own: the client blocks, and a blocked cooperative thread
    /// (there are two on a 2-core machine) could starve the server under test.
    func call(_ verb: String) async throws -> ControlResponse {
        let path = path
        // 30 s: on a 2-core box, sync tests in other suites can hold the cooperative threads the
        // in-process server needs for a while (the server is not slow; the test rig is busy).
        return try await offThread { try ControlClient(socketPath: path, timeout: 30).call(verb) }
    }

    /// Sends raw bytes (from a thread of its own) and returns the raw answer.
    func raw(_ bytes: [UInt8]) async -> String {
        let path = path
        return await offThread { Self.rawExchange(path, bytes) }
    }

    static func rawExchange(_ path: String, _ bytes: [UInt8]) -> String {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        // 30 s, as `call`: the in-process server may wait for a cooperative thread on a busy box.
        var limit = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        _ = UnixAddress.withAddress(path) { connect(descriptor, $0, $1) }
        _ = bytes.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            answer += chunk[0..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }
}

@Suite(.serialized) struct ControlServerTests {
    @Test func answersWithThePeersKernelCredentials() async throws {
        let server = try RunningServer()
        let response = try await server.call("look")
        #expect(response.ok)
        #expect(response.result?["uid"] == .int(Int64(getuid())))
        #expect(response.result?["pid"] == .int(Int64(getpid())))
        #expect(fileMode(server.path) == 0o666)
        await server.stop()
    }

    @Test(arguments: [
        ("not JSON", "hello\n", "bad-request"),
        ("wrong version", #"{"version":99,"verb":"look"}"# + "\n", "unsupported-version"),
        ("unknown verb", #"{"version":1,"verb":"explode"}"# + "\n", "unknown-verb"),
        ("duplicate member", #"{"version":1,"verb":"look","verb":"change"}"# + "\n", "bad-request"),
        ("no newline before close", #"{"version":1,"verb":"look"}"#, "bad-request"),
    ])
    func refusesBadRequestsWithACode(_ name: String, _ request: String, _ code: String) async throws {
        let server = try RunningServer()
        let answer = await server.raw(Array(request.utf8))
        #expect(answer.contains(#""code":"\#(code)""#), "\(name): \(answer)")
        #expect(answer.contains(#""ok":false"#))
        await server.stop()
    }

    @Test func answersAnOversizedRequestInsteadOfResettingIt() async throws {
        let server = try RunningServer()
        let answer = await server.raw([UInt8](repeating: UInt8(ascii: "a"), count: ControlProtocol.maximumRequestBytes + 10))
        #expect(answer.contains(#""code":"bad-request""#))
        // Through the real client, with megabytes of arguments: the answer arrives, not EPIPE.
        let path = server.path
        let response = try await offThread {
            try ControlClient(socketPath: path).call("look", ["blob": .string(String(repeating: "x", count: 4 << 20))])
        }
        #expect(response.error?.code == .badRequest)
        await server.stop()
    }

    @Test func theClientRefusesAServerThatIsNotTheExpectedUser() async throws {
        let server = try RunningServer()
        let path = server.path
        let error = await #expect(throws: ControlClientError.self) {
            try await offThread { try ControlClient(socketPath: path, serverUID: 12_345).call("look") }
        }
        #expect(error?.code == .untrusted)
        await server.stop()
    }

    @Test func refusesASocketDirectoryOwnedBySomeoneElse() throws {
        let directory = TemporaryDirectory()
        let run = directory.file("run")
        mkdir(run, 0o755)
        chown(run, 65_534, 65_534)
        let error = #expect(throws: ControlServerError.self) { try ControlListener(path: run + "/control.sock") }
        #expect(error?.message.contains("owned by uid 65534") == true)
    }

    @Test func aSilentClientDoesNotBlockOthers() async throws {
        // The silent client is held for a minute; the other is answered meanwhile: its answer comes
        // while the silent connection is still open (an order of events, not a speed).
        let server = try RunningServer(requestTimeout: .seconds(60))
        // Connect and say nothing.
        let idle = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(idle) }
        _ = UnixAddress.withAddress(server.path) { connect(idle, $0, $1) }
        let response = try await server.call("look")
        #expect(response.ok)
        var held = pollfd(fd: idle, events: Int16(POLLIN), revents: 0)
        #expect(poll(&held, 1, 0) == 0, "the silent connection was closed before the other was answered")
        await server.stop()
    }

    @Test func saysBusyPastTheConnectionLimit() async throws {
        let server = try RunningServer(maximumConnections: 1)
        let path = server.path
        async let slow = offThread { try ControlClient(socketPath: path, timeout: 60).call("slow") }
        for _ in 0..<3_000 where !server.handler.slowStarted.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        let response = try await server.call("look")
        #expect(response.error?.code == .busy)
        server.handler.slowReleased.withLock { $0 = true }
        #expect(try await slow.ok)
        // The slot frees once the slow connection is closed on both sides.
        var freed = false
        for _ in 0..<300 where !freed {
            freed = (try? await server.call("look").ok) ?? false
            if !freed { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(freed)
        await server.stop()
    }

    @Test func refusesToReplaceARegularFileOrALiveSocket() async throws {
        let server = try RunningServer()
        let live = #expect(throws: ControlServerError.self) { try ControlListener(path: server.path) }
        #expect(live?.message.contains("already listening") == true)
        #expect(try await server.call("look").ok)  // and the first one still answers
        await server.stop()
        let directory = TemporaryDirectory()
        #expect((try? "".writeReplacing(toFile: directory.file("file"))) != nil)
        #expect(throws: ControlServerError.self) { try ControlListener(path: directory.file("file")) }
    }

    @Test func removesAStaleSocket() async throws {
        let directory = TemporaryDirectory()
        let path = directory.file("control.sock")
        do {
            _ = try ControlListener(path: path)  // closed at once (lock released), the file stays behind
        }
        #expect(fileMode(path) != 0)
        let listener = try ControlListener(path: path)
        #expect(listener.path == path)
    }
}

@Suite struct NotifierTests {
    @Test func speaksTheNotifyProtocol() throws {
        let directory = TemporaryDirectory()
        let listener = NotifyListener(path: directory.file("notify"))
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "4000000"]))
        #expect(notifier.watchdogInterval == .seconds(2))
        #expect(notifier.send("READY=1\nSTATUS=test"))
        #expect(listener.waitFor("READY=1").found)
    }

    @Test func ignoresAWatchdogMeantForAnotherProcess() throws {
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"]))
        #expect(notifier.watchdogInterval == nil)
        #expect(SystemdNotifier(environment: [:]) == nil)
    }
}

@Suite struct ConnectionSlotTests {
    @Test func oneUserCannotTakeEverySlotAndRootKeepsReservedOnes() {
        let slots = ConnectionSlots(limit: 10, perUserLimit: 4, reservedForRoot: 2)
        #expect((0..<4).allSatisfy { _ in slots.take(uid: 1000) })
        #expect(!slots.take(uid: 1000))  // per-user cap
        #expect((0..<4).allSatisfy { _ in slots.take(uid: 1001) })
        #expect(!slots.take(uid: 1002))  // 8 of 10 used: the last 2 are root's
        #expect(slots.take(uid: 0))
        #expect(slots.take(uid: 0))
        #expect(!slots.take(uid: 0))
        slots.release(uid: 1000)
        #expect(!slots.take(uid: 1002))  // still only root's slots free
        slots.release(uid: 0)
        slots.release(uid: 0)
        #expect(slots.take(uid: 1002))
    }
}
