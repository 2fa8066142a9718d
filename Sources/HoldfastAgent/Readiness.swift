import Dispatch
import Synchronization

/// Waiting for a non-blocking descriptor without blocking a thread of the cooperative pool:
/// a Dispatch read/write source resumes the task, a timer gives up. Dispatch stays at this edge.
enum Readiness {
    enum Direction { case read, write }

    /// Waits until `descriptor` is ready for `direction`, the timeout passes, or the task is
    /// cancelled. Returns true only when it is ready.
    static func wait(_ descriptor: Int32, for direction: Direction, timeout: Duration) async -> Bool {
        let waiter = Waiter()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                waiter.start(descriptor, direction, timeout, continuation)
            }
        } onCancel: {
            waiter.finish(false)
        }
    }

    /// One wait: every field is touched only on `queue`, or under `state`.
    private final class Waiter: @unchecked Sendable {
        private let queue = DispatchQueue(label: "holdfast.readiness")
        private let state = Mutex<(done: Bool, continuation: CheckedContinuation<Bool, Never>?)>((false, nil))
        private var source: (any DispatchSourceProtocol)?
        private var timer: (any DispatchSourceTimer)?

        func start(_ descriptor: Int32, _ direction: Direction, _ timeout: Duration, _ continuation: CheckedContinuation<Bool, Never>) {
            let alreadyDone = state.withLock { state -> Bool in
                if state.done { return true }
                state.continuation = continuation
                return false
            }
            if alreadyDone {
                continuation.resume(returning: false)
                return
            }
            queue.async { [self] in
                let source: any DispatchSourceProtocol = switch direction {
                case .read: DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
                case .write: DispatchSource.makeWriteSource(fileDescriptor: descriptor, queue: queue)
                }
                source.setEventHandler { [self] in finish(true) }
                let timer = DispatchSource.makeTimerSource(queue: queue)
                let (seconds, attoseconds) = timeout.components
                timer.schedule(deadline: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)))
                timer.setEventHandler { [self] in finish(false) }
                self.source = source
                self.timer = timer
                source.resume()
                timer.resume()
                // A cancellation may have arrived before the sources existed.
                if state.withLock({ $0.done }) { cancelSources() }
            }
        }

        func finish(_ ready: Bool) {
            let continuation = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                if state.done { return nil }
                state.done = true
                defer { state.continuation = nil }
                return state.continuation
            }
            continuation?.resume(returning: ready)
            queue.async { [self] in cancelSources() }
        }

        private func cancelSources() {
            source?.cancel()
            timer?.cancel()
            source = nil
            timer = nil
        }
    }
}
