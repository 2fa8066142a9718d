import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// POSIX signals as an async sequence. The default action of each signal is ignored first, so
/// delivery only reaches the Dispatch source (signal(7): a handled signal is not also fatal).
enum SignalStream {
    /// `immediate` runs on the signal queue as each signal arrives, before any async code sees it:
    /// whatever it arms works even when every cooperative thread is stuck.
    static func make(_ signals: [Int32], immediate: @escaping @Sendable (Int32) -> Void = { _ in }) -> AsyncStream<Int32> {
        AsyncStream { continuation in
            let queue = DispatchQueue(label: "holdfast.signals")
            let sources = signals.map { number -> any DispatchSourceSignal in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler {
                    immediate(number)
                    continuation.yield(number)
                }
                source.resume()
                return source
            }
            let holder = SourceHolder(sources)
            continuation.onTermination = { _ in holder.cancel() }
        }
    }

    private final class SourceHolder: @unchecked Sendable {
        private let sources: [any DispatchSourceSignal]
        init(_ sources: [any DispatchSourceSignal]) { self.sources = sources }
        func cancel() { sources.forEach { $0.cancel() } }
    }
}
