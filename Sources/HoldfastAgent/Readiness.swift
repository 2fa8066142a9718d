import Dispatch
import Synchronization

/// Waiting for a non-blocking descriptor without blocking a thread of the cooperative pool:
/// a Dispatch read/write source resumes the task, a timer gives up. Dispatch stays at this edge.
enum Readiness {
    enum Direction { case read, write }

    /// One serial queue for every wait's sources: creating a queue per wait costs more than the
    /// wait itself on a busy control socket.
    private static let queue = DispatchQueue(label: "holdfast.readiness")

    /// Waits until `descriptor` is ready for `direction`, the timeout passes, or the task is
    /// cancelled. Returns true only when it is ready. When it returns, the Dispatch source is fully
    /// cancelled, so the caller may close the descriptor (libdispatch requires that order: a
    /// descriptor closed before its source's cancel handler ran can confuse the next one to
    /// receive the same number).
    static func wait(_ descriptor: Int32, for direction: Direction, timeout: Duration) async -> Bool {
        let waiter = Waiter()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                queue.async { waiter.start(descriptor, direction, timeout, continuation) }
            }
        } onCancel: {
            queue.async { waiter.decide(false) }
        }
    }

    /// One wait. Every member is touched only on `queue`.
    private final class Waiter: @unchecked Sendable {
        private var continuation: CheckedContinuation<Bool, Never>?
        private var source: (any DispatchSourceProtocol)?
        private var timer: (any DispatchSourceTimer)?
        private var decision: Bool?

        func start(_ descriptor: Int32, _ direction: Direction, _ timeout: Duration, _ continuation: CheckedContinuation<Bool, Never>) {
            // Cancelled before it started: no source was made, answer at once.
            if let decision {
                continuation.resume(returning: decision)
                return
            }
            self.continuation = continuation
            let source: any DispatchSourceProtocol = switch direction {
            case .read: DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
            case .write: DispatchSource.makeWriteSource(fileDescriptor: descriptor, queue: queue)
            }
            source.setEventHandler { [self] in decide(true) }
            // Resume only once the source is really gone.
            source.setCancelHandler { [self] in
                let result = decision ?? false
                self.continuation?.resume(returning: result)
                self.continuation = nil
                self.source = nil
            }
            let timer = DispatchSource.makeTimerSource(queue: queue)
            let (seconds, attoseconds) = timeout.components
            timer.schedule(deadline: .now() + .nanoseconds(Int(max(0, seconds)) * 1_000_000_000 + Int(max(0, attoseconds) / 1_000_000_000)))
            timer.setEventHandler { [self] in decide(false) }
            self.source = source
            self.timer = timer
            source.resume()
            timer.resume()
        }

        func decide(_ ready: Bool) {
            guard decision == nil else { return }
            decision = ready
            timer?.cancel()
            timer = nil
            source?.cancel()  // its cancel handler resumes the waiting task
        }
    }
}
