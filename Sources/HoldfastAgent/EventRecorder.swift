import Dispatch
public import HoldfastCore
public import HoldfastStore
import Synchronization

/// Journals events off the decision path: enforcement writes first, the journal's fsync after.
///
/// Events queue in memory and a serial queue appends them in batches (one transaction, one fsync
/// for everything that arrived meanwhile). Nothing is dropped without a trace: a batch that fails
/// is retried event by event, and an event that still cannot be written is logged whole at error.
/// `flush()` waits until everything recorded so far is in the journal (shutdown, tests).
public final class EventRecorder: Sendable {
    private let journal: Journal
    private let logger: Logger
    private let queue = DispatchQueue(label: "holdfast.events")
    private let pending = Mutex<[Event]>([])
    private let observers = Mutex<[@Sendable (Event) -> Void]>([])

    public init(journal: Journal, logger: Logger) {
        self.journal = journal
        self.logger = logger
    }

    /// Calls `observer` with every event recorded from now on (posture re-runs on relevant ones).
    /// It runs on the recording thread: it must only hand the event on.
    public func observe(_ observer: @escaping @Sendable (Event) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    /// Queues an event; returns at once.
    public func record(_ event: Event) {
        for observer in observers.withLock({ $0 }) { observer(event) }
        let first = pending.withLock { pending in
            pending.append(event)
            return pending.count == 1
        }
        if first { queue.async { self.write() } }
    }

    /// Returns once every event recorded before the call is journaled (or logged as lost).
    public func flush() {
        queue.sync { write() }
    }

    private func write() {
        let batch = pending.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !batch.isEmpty else { return }
        do {
            try journal.append(contentsOf: batch)
        } catch {
            // One bad event must not take the batch with it.
            for event in batch {
                do {
                    try journal.append(event)
                } catch {
                    logger.error(
                        "could not journal an event", ("event.kind", event.kind), ("error", "\(error)"), ("event.message", event.message)
                    )
                }
            }
        }
    }
}
