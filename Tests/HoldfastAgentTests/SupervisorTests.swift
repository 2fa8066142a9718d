import Foundation
import HoldfastAgent
import HoldfastCore
import Synchronization
import Testing

/// A service that fails its first `failures` runs, then runs until cancelled.
final class FlakyService: Service {
    let name: String
    private let remainingFailures: Mutex<Int>
    private let runs = Mutex(0)

    init(name: String, failures: Int) {
        self.name = name
        remainingFailures = Mutex(failures)
    }

    var runCount: Int { runs.withLock { $0 } }

    func run() async throws {
        runs.withLock { $0 += 1 }
        let fail = remainingFailures.withLock { remaining -> Bool in
            guard remaining > 0 else { return false }
            remaining -= 1
            return true
        }
        if fail { throw ServiceFailure(message: "simulated failure") }
        while !Task.isCancelled { try await Task.sleep(for: .milliseconds(10)) }
    }
}

struct ServiceFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A service that ignores cancellation for a while (without blocking a thread), to test the
/// stop deadline.
struct StubbornService: Service {
    let name = "stubborn"
    func run() async throws {
        let end = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < end { try? await Task.sleep(for: .milliseconds(50)) }
    }
}

func eventually(_ timeout: Duration = .seconds(30), _ condition: () async -> Bool) async -> Bool {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return false
}

@Suite struct SupervisorTests {
    let fastBackoff = Backoff(initial: .milliseconds(20), maximum: .milliseconds(100), resetAfter: .seconds(60))

    @Test func restartsAFailingServiceWithBackoffWhileOthersKeepRunning() async throws {
        let memory = MemoryLogHandler()
        let supervisor = Supervisor(logger: Logger(level: .debug, handler: memory), backoff: fastBackoff)
        let flaky = FlakyService(name: "flaky", failures: 3)
        let steady = FlakyService(name: "steady", failures: 0)
        await supervisor.start(flaky)
        await supervisor.start(steady)
        let recovered = await eventually {
            await supervisor.snapshot().first { $0.name == "flaky" }.map { $0.state == .running && $0.restarts == 3 } ?? false
        }
        #expect(recovered)
        let snapshot = await supervisor.snapshot()
        #expect(snapshot.map(\.name) == ["flaky", "steady"])
        #expect(snapshot[0].lastError == "simulated failure")
        #expect(snapshot[1].state == .running)
        #expect(snapshot[1].restarts == 0)
        #expect(steady.runCount == 1)
        #expect(flaky.runCount == 4)
        #expect(memory.records.filter { $0.message == "service failed; restarting after backoff" }.count == 3)
        #expect(await supervisor.shutdown(deadline: .seconds(2)).isEmpty)
        #expect(await supervisor.snapshot().allSatisfy { $0.state == .stopped })
    }

    @Test func doublesTheBackoffUpToTheMaximum() {
        let backoff = Backoff(initial: .seconds(1), maximum: .seconds(60))
        #expect((1...8).map { backoff.delay(attempt: $0) } == [1, 2, 4, 8, 16, 32, 60, 60].map { Duration.seconds($0) })
    }

    @Test func reportsServicesThatMissTheStopDeadline() async {
        let supervisor = Supervisor(logger: Logger(handler: MemoryLogHandler()), backoff: fastBackoff)
        await supervisor.start(StubbornService())
        try? await Task.sleep(for: .milliseconds(50))
        let started = ContinuousClock.now
        let late = await supervisor.shutdown(deadline: .milliseconds(200))
        #expect(late == ["stubborn"])
        // The deadline holds: shutdown returns at it, not when the service finally ends (90 s).
        // The bound is loose: on a 2-core box, synchronous tests in other suites can hold both
        // cooperative threads for many seconds, and the deadline's timer needs one.
        #expect(ContinuousClock.now - started < .seconds(80))
    }
}
