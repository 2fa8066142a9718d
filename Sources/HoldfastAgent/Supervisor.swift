public import FoundationEssentials
public import HoldfastCore
import Synchronization

/// A long-running part of the agent. `run` returns only when cancelled; a throw (or an early
/// return) is a failure the supervisor logs and restarts with backoff.
public protocol Service: Sendable {
    /// Short name shown in `holdfast status` and logs, e.g. `control`.
    var name: String { get }
    func run() async throws
}

/// How long to wait before restarting a failed service.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration
    /// A service that ran at least this long before failing starts again at `initial`.
    public var resetAfter: Duration

    public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(60), resetAfter: Duration = .seconds(60)) {
        self.initial = initial
        self.maximum = maximum
        self.resetAfter = resetAfter
    }

    /// The delay before restart number `attempt` (1-based): initial × 2^(attempt−1), capped.
    public func delay(attempt: Int) -> Duration {
        var delay = initial
        for _ in 1..<max(1, attempt) {
            delay *= 2
            if delay >= maximum { return maximum }
        }
        return min(delay, maximum)
    }
}

/// What a service is doing now.
public enum ServiceState: Sendable, Equatable {
    case starting
    case running
    /// Failed; restarts when the backoff ends.
    case backingOff(until: Date)
    case stopped

    public var name: String {
        switch self {
        case .starting: "starting"
        case .running: "running"
        case .backingOff: "backing-off"
        case .stopped: "stopped"
        }
    }
}

/// One service's row in `holdfast status`.
public struct ServiceStatus: Sendable, Equatable {
    public let name: String
    public let state: ServiceState
    public let restarts: Int
    public let lastError: String?
}

/// Runs services, restarts the ones that fail with exponential backoff, and stops them all on
/// shutdown. A failing service never takes the others down.
public actor Supervisor {
    private struct Entry {
        let service: any Service
        var state: ServiceState = .starting
        var restarts = 0
        var lastError: String?
        var task: Task<Void, Never>?
    }

    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    private let logger: Logger
    private let backoff: Backoff
    private let clock: any TimeSource

    public init(logger: Logger, backoff: Backoff = Backoff(), clock: any TimeSource = SystemTimeSource()) {
        self.logger = logger.with("component", "supervisor")
        self.backoff = backoff
        self.clock = clock
    }

    /// Starts `service` under supervision. Names must be unique.
    public func start(_ service: any Service) {
        precondition(entries[service.name] == nil, "service \(service.name) started twice")
        order.append(service.name)
        entries[service.name] = Entry(service: service)
        entries[service.name]?.task = Task { await self.supervise(service) }
    }

    /// Every service's state, in start order.
    public func snapshot() -> [ServiceStatus] {
        order.compactMap { name in
            entries[name].map { ServiceStatus(name: name, state: $0.state, restarts: $0.restarts, lastError: $0.lastError) }
        }
    }

    /// Cancels every service and waits for them, at most `deadline`: returns then even if some
    /// have not stopped (a task group would wait for all of them), naming those.
    @discardableResult
    public func shutdown(deadline: Duration) async -> [String] {
        let tasks = order.compactMap { entries[$0]?.task }
        for task in tasks { task.cancel() }
        let gate = OnceGate()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            gate.set(continuation)
            Task.detached {
                for task in tasks { await task.value }
                gate.open()
            }
            Task.detached {
                try? await Task.sleep(for: deadline)
                gate.open()
            }
        }
        let late = order.filter { entries[$0]?.state != .stopped }
        for name in late { logger.warning("service did not stop in time", ("service", name)) }
        return late
    }

    private func supervise(_ service: any Service) async {
        let log = logger.with("service", service.name)
        var consecutiveFailures = 0
        while !Task.isCancelled {
            setState(service.name, .running)
            let started = ContinuousClock.now
            var failure: String
            do {
                try await service.run()
                if Task.isCancelled { break }
                failure = "returned unexpectedly"
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled { break }
                failure = "\(error)"
            }
            let ranFor = ContinuousClock.now - started
            consecutiveFailures = ranFor >= backoff.resetAfter ? 1 : consecutiveFailures + 1
            let delay = backoff.delay(attempt: consecutiveFailures)
            let (seconds, attoseconds) = delay.components
            let until = clock.now() + Double(seconds) + Double(attoseconds) / 1e18
            recordFailure(service.name, failure, until: until)
            log.error("service failed; restarting after backoff", ("error", failure), ("backoff.seconds", "\(seconds)"))
            do {
                try await Task.sleep(for: delay)
            } catch {
                break
            }
        }
        setState(service.name, .stopped)
    }

    private func setState(_ name: String, _ state: ServiceState) {
        entries[name]?.state = state
    }

    private func recordFailure(_ name: String, _ error: String, until: Date) {
        entries[name]?.state = .backingOff(until: until)
        entries[name]?.restarts += 1
        entries[name]?.lastError = error
    }
}

/// Resumes one continuation once, whichever of several events comes first.
final class OnceGate: Sendable {
    private let state = Mutex<(opened: Bool, continuation: CheckedContinuation<Void, Never>?)>((false, nil))

    func set(_ continuation: CheckedContinuation<Void, Never>) {
        let openAlready = state.withLock { state -> Bool in
            if state.opened { return true }
            state.continuation = continuation
            return false
        }
        if openAlready { continuation.resume() }
    }

    func open() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.opened { return nil }
            state.opened = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }
}
