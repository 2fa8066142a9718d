import FoundationEssentials
import Synchronization

/// A token bucket per key: `burst` events at once, refilled at `perSecond`. What is refused is
/// counted, so the next admitted record can say how many were suppressed — nothing vanishes
/// without a trace, and no one can flood the journal or the log.
public final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Date
        var suppressed: Int
    }

    private let buckets = Mutex<[String: Bucket]>([:])
    private let burst: Double
    private let perSecond: Double
    private let clock: any TimeSource
    private let maximumKeys: Int

    public init(burst: Int, perSecond: Double, clock: any TimeSource = SystemTimeSource(), maximumKeys: Int = 10_000) {
        self.burst = Double(burst)
        self.perSecond = perSecond
        self.clock = clock
        self.maximumKeys = maximumKeys
    }

    /// Whether an event for `key` may pass now. When it may, `suppressed` is how many were refused
    /// for that key since the last one that passed.
    public func admit(_ key: String) -> (allowed: Bool, suppressed: Int) {
        let now = clock.now()
        return buckets.withLock { buckets in
            if buckets[key] == nil, buckets.count >= maximumKeys {
                // Forget buckets that are full again by now (refilled since they were last
                // used) and owe no report: they hold nothing worth keeping.
                buckets = buckets.filter { entry in
                    let refilled = entry.value.tokens + max(0, now.timeIntervalSince(entry.value.updated)) * perSecond
                    return entry.value.suppressed > 0 || refilled < burst
                }
            }
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now, suppressed: 0)
            bucket.tokens = min(burst, bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * perSecond)
            bucket.updated = now
            defer { buckets[key] = bucket }
            guard bucket.tokens >= 1 else {
                bucket.suppressed += 1
                return (false, 0)
            }
            bucket.tokens -= 1
            let suppressed = bucket.suppressed
            bucket.suppressed = 0
            return (true, suppressed)
        }
    }

    /// Every key with refusals not yet reported, and how many; their counts start again at 0.
    /// For a periodic summary, so refusals at the end of a burst are reported too.
    public func takeSuppressed() -> [(key: String, suppressed: Int)] {
        buckets.withLock { buckets in
            var taken: [(key: String, suppressed: Int)] = []
            for (key, bucket) in buckets where bucket.suppressed > 0 {
                taken.append((key, bucket.suppressed))
                buckets[key]?.suppressed = 0
            }
            return taken.sorted { $0.key < $1.key }
        }
    }
}
