import Foundation

/// A threshold crossed: what, by whom, against what, with which evidence.
public struct FileDecision: Sendable, Equatable {
    public var threshold: FileThreshold
    public var auid: UInt32
    public var userName: String?
    /// Milliseconds since the epoch (the event's time).
    public var time: Int64
    /// The count over the last hour.
    public var observed: Int
    /// The baseline for this hour (nil while the user's history is shorter than the warm-up).
    public var baseline: Double?
    public var spread: Double?
    /// The count that was reached.
    public var limit: Int
    /// `absolute` or `relative`: which side of the threshold fired.
    public var basis: String
    /// Up to five files of the last hour, newest last.
    public var samplePaths: [String]
    public var exe: String?
    public var comm: String?
    public var pid: Int64?
    /// Crossings folded into this burst since the previous alert for it.
    public var folded: Int
    /// observed ÷ max(baseline, 1): how far from normal.
    public var ratio: Double? { baseline.map { Double(observed) / max($0, 1) } }
}

/// A burst is over: its count is the number of activities past the threshold while it lasted.
public struct BurstSummary: Sendable, Equatable {
    public var threshold: FileThreshold
    public var auid: UInt32
    public var userName: String?
    public var started: Int64
    public var ended: Int64
    public var count: Int
    public var peak: Int
    public var alerts: Int
}

/// What the detector says after an activity or a tick.
public enum DetectorOutput: Sendable, Equatable {
    case decision(FileDecision)
    case burstEnded(BurstSummary)
    /// A block threshold is still being crossed inside its alert interval (at most every 10 s
    /// of event time): whoever enforces blocks checks the lockdown is still in force, since an
    /// admin may have released it meanwhile.
    case blockHeld(FileDecision)
}

/// Counts each user's file activity over a sliding hour, learns each hour's count into the
/// user's baseline, and checks the policy's thresholds (docs/filewatch.md, "Baseline").
///
/// It runs on the events' own timestamps, never the wall clock: history replayed through it warms
/// it exactly as live traffic would, and the same input always gives the same decisions.
public struct FileWatchDetector: Sendable {
    public private(set) var policy: FileWatchPolicy
    private var local: LocalHour
    private var users: [UInt32: UserState] = [:]
    private var bursts: [BurstKey: Burst] = [:]
    /// When each (user, threshold) last alerted, and what was folded since: kept across bursts, so
    /// a pace that hovers at a threshold is one alert per interval, not one per dip.
    private var alerts: [BurstKey: AlertState] = [:]
    /// Distinct files remembered per user and metric within the hour; past it, every write counts
    /// (an over-count errs toward an alert, never toward silence).
    public static let maximumDistinct = 100_000

    struct BurstKey: Hashable, Sendable {
        let auid: UInt32
        let threshold: String
    }

    struct Burst: Sendable {
        var started: Int64
        var count: Int
        var peak: Int
        var alerts: Int
        var userName: String?
    }

    struct AlertState: Sendable {
        var lastEmitted: Int64
        var folded: Int
        var lastHeld: Int64?
    }

    /// A burst ends once the count is below 80% of its limit (hysteresis: a pace at the limit is
    /// one burst, not a burst per file).
    static func hasEnded(observed: Int, limit: Int) -> Bool { Double(observed) * 10 < Double(limit) * 8 }

    struct UserState: Sendable {
        var baseline: UserBaseline
        /// The local hour being counted (nil: not counting yet, e.g. just imported).
        var hour: Int64?
        var hourStart: Int64 = 0
        var hourCounts = [Int](repeating: 0, count: FileMetric.allCases.count)
        var windows: [SlidingWindow] = FileMetric.allCases.map { SlidingWindow(distinct: $0 != .deletes && $0 != .renames) }
        var samples = [[String]](repeating: [], count: FileMetric.allCases.count)
        var userName: String?
        var latest: Int64 = .min
        /// Each metric's expected count for `expectedHour` (the medians change only when an hour
        /// is folded).
        var expectedHour: Int64 = .min
        var expected: [(level: Double, spread: Double)] = []
    }

    public init(policy: FileWatchPolicy, baseline: BaselineSnapshot? = nil) {
        self.policy = policy
        local = LocalHour(timeZone: TimeZone(identifier: policy.timeZone) ?? TimeZone(secondsFromGMT: 0) ?? .current)
        if let baseline, baseline.timeZone == policy.timeZone {
            for (uid, user) in baseline.users {
                guard let auid = UInt32(uid) else { continue }
                users[auid] = UserState(baseline: user)
            }
        }
    }

    /// A new policy: thresholds change at once; a new time zone starts the baselines over (their
    /// slots are hours of the old zone's week).
    public mutating func update(policy newPolicy: FileWatchPolicy) {
        if newPolicy.timeZone != policy.timeZone {
            users = [:]
            bursts = [:]
            alerts = [:]
            local = LocalHour(timeZone: TimeZone(identifier: newPolicy.timeZone) ?? TimeZone(secondsFromGMT: 0) ?? .current)
        }
        policy = newPolicy
    }

    /// Replaces the learned state of the users in `snapshot` (the others keep theirs).
    public mutating func importBaseline(_ snapshot: BaselineSnapshot) throws(FileWatchPolicyError) {
        guard snapshot.timeZone == policy.timeZone else {
            throw FileWatchPolicyError("the baseline was learned in \(snapshot.timeZone); the policy counts hours in \(policy.timeZone)")
        }
        for (uid, user) in snapshot.users {
            guard let auid = UInt32(uid) else { continue }
            users[auid] = UserState(baseline: user)
        }
    }

    /// Everything learned, for export and for the journal's state.
    public var snapshot: BaselineSnapshot {
        BaselineSnapshot(timeZone: policy.timeZone, users: Dictionary(uniqueKeysWithValues: users.map { (String($0.key), $0.value.baseline) }))
    }

    public var userCount: Int { users.count }

    /// The baseline and the last hour's count for one user and metric (status, tests).
    public func current(_ auid: UInt32, _ metric: FileMetric) -> (observed: Int, baseline: UserBaseline?) {
        guard let user = users[auid] else { return (0, nil) }
        return (user.windows[Self.index(metric)].count, user.baseline)
    }

    static func index(_ metric: FileMetric) -> Int {
        switch metric {
        case .filesWritten: 0
        case .removableFilesWritten: 1
        case .directoriesTouched: 2
        case .deletes: 3
        case .renames: 4
        }
    }

    /// Counts one activity and checks the thresholds it can move.
    public mutating func observe(_ activity: FileActivity) -> [DetectorOutput] {
        var outputs: [DetectorOutput] = []
        let time = activity.time
        let (hour, start) = local.hourAndStart(milliseconds: time)
        var user = users[activity.auid] ?? UserState(baseline: UserBaseline(firstSeen: time, lastFoldedHour: hour - 1))
        users[activity.auid] = nil
        if let name = activity.userName { user.userName = name }
        advance(&user, to: hour, start: start, time: time)
        // The metrics this activity moved, one bit each (no allocation on the hot path).
        var touched: UInt8 = 0
        func count(_ metric: FileMetric, _ key: String, sample: String) {
            let index = Self.index(metric)
            let previous = user.windows[index].add(key, at: time)
            if previous.map({ $0 < user.hourStart }) ?? true { user.hourCounts[index] += 1 }
            if previous == nil || user.windows[index].distinct == false {
                // In place: a copy here would copy the array on every write.
                user.samples[index].removeAll { $0 == sample }
                user.samples[index].append(sample)
                if user.samples[index].count > 5 { user.samples[index].removeFirst(user.samples[index].count - 5) }
            }
            touched |= 1 << UInt8(index)
        }
        // A file is its device and inode when the record says them (names can be made to repeat:
        // the same relative name under many directory descriptors), else its path.
        let file = activity.fileIdentity ?? activity.path
        let directory = activity.directoryIdentity ?? activity.directory
        switch activity.operation {
        case .create, .writeOpen, .truncate:
            count(.filesWritten, file, sample: activity.path)
            if activity.target == .removable { count(.removableFilesWritten, file, sample: activity.path) }
            count(.directoriesTouched, directory, sample: activity.directory)
        case .rename:
            count(.renames, activity.path, sample: activity.path)
            if activity.target == .removable { count(.removableFilesWritten, file, sample: activity.path) }
            count(.directoriesTouched, directory, sample: activity.directory)
        case .delete:
            count(.deletes, activity.path, sample: activity.path)
        case .mount:
            break
        }
        let warmedUp = time - user.baseline.firstSeen >= policy.warmUpSeconds * 1_000
        for threshold in policy.thresholds where touched & (1 << UInt8(Self.index(threshold.metric))) != 0 {
            let index = Self.index(threshold.metric)
            let observed = user.windows[index].count
            if user.expectedHour != hour {
                user.expectedHour = hour
                user.expected = FileMetric.allCases.map { user.baseline.metric($0).expected(hour: hour) }
            }
            let expected = user.expected[index]
            let (limit, basis) = Self.limit(threshold, expected: warmedUp ? expected.level : nil)
            let key = BurstKey(auid: activity.auid, threshold: threshold.id)
            guard let limit, observed >= limit else {
                if let burst = bursts[key], limit.map({ Self.hasEnded(observed: observed, limit: $0) }) ?? true {
                    bursts[key] = nil
                    outputs.append(.burstEnded(summary(burst, threshold, key, ended: time)))
                }
                continue
            }
            var burst = bursts[key] ?? Burst(started: time, count: 0, peak: 0, alerts: 0, userName: user.userName)
            burst.count += 1
            burst.peak = max(burst.peak, observed)
            var alert = alerts[key]
            if alert == nil || time - (alert?.lastEmitted ?? 0) >= policy.alertIntervalSeconds * 1_000 || time < (alert?.lastEmitted ?? 0) {
                outputs.append(.decision(FileDecision(
                    threshold: threshold, auid: activity.auid, userName: user.userName, time: time, observed: observed,
                    baseline: warmedUp ? expected.level : nil, spread: warmedUp ? expected.spread : nil, limit: limit, basis: basis,
                    samplePaths: user.samples[index], exe: activity.exe, comm: activity.comm, pid: activity.pid, folded: alert?.folded ?? 0
                )))
                alert = AlertState(lastEmitted: time, folded: 0)
                burst.alerts += 1
            } else {
                alert?.folded += 1
                if threshold.action == .block, alert?.lastHeld.map({ time - $0 >= 10_000 || time < $0 }) ?? true {
                    alert?.lastHeld = time
                    outputs.append(.blockHeld(FileDecision(
                        threshold: threshold, auid: activity.auid, userName: user.userName, time: time, observed: observed,
                        baseline: warmedUp ? expected.level : nil, spread: warmedUp ? expected.spread : nil, limit: limit, basis: basis,
                        samplePaths: user.samples[index], exe: activity.exe, comm: activity.comm, pid: activity.pid, folded: alert?.folded ?? 0
                    )))
                }
            }
            alerts[key] = alert
            bursts[key] = burst
        }
        users[activity.auid] = user
        return outputs
    }

    /// The count that fires `threshold`, and which side gives it; nil when neither applies yet.
    static func limit(_ threshold: FileThreshold, expected: Double?) -> (Int?, String) {
        var best: (Int, String)?
        if let absolute = threshold.absolute { best = (absolute, "absolute") }
        if let relative = threshold.relative, let expected {
            let scaled = expected * relative
            let value = max(threshold.minimum, scaled >= Double(Int.max / 2) ? Int.max / 2 : Int(scaled.rounded(.up)))
            if best == nil || value < best?.0 ?? .max { best = (value, "relative") }
        }
        return (best?.0, best?.1 ?? "none")
    }

    /// The clock moved (events' time, or the wall clock when the stream is quiet): windows slide,
    /// finished hours are learned, and bursts whose count fell below their threshold end.
    public mutating func tick(now time: Int64) -> [DetectorOutput] {
        var outputs: [DetectorOutput] = []
        let (hour, start) = local.hourAndStart(milliseconds: time)
        for auid in users.keys.sorted() {
            guard var user = users[auid] else { continue }
            users[auid] = nil
            if user.hour != nil { advance(&user, to: hour, start: start, time: time) }
            users[auid] = user
        }
        for (key, burst) in bursts.sorted(by: { ($0.key.auid, $0.key.threshold) < ($1.key.auid, $1.key.threshold) }) {
            guard let threshold = policy.thresholds.first(where: { $0.id == key.threshold }), let user = users[key.auid] else {
                bursts[key] = nil
                continue
            }
            let warmedUp = time - user.baseline.firstSeen >= policy.warmUpSeconds * 1_000
            let expected = user.baseline.metric(threshold.metric).expected(hour: hour)
            let (limit, _) = Self.limit(threshold, expected: warmedUp ? expected.level : nil)
            if let limit, !Self.hasEnded(observed: user.windows[Self.index(threshold.metric)].count, limit: limit) { continue }
            bursts[key] = nil
            outputs.append(.burstEnded(summary(burst, threshold, key, ended: time)))
        }
        // What no longer holds back an alert is forgotten.
        let interval = policy.alertIntervalSeconds * 1_000
        alerts = alerts.filter { time - $0.value.lastEmitted < interval || bursts[$0.key] != nil }
        return outputs
    }

    private func summary(_ burst: Burst, _ threshold: FileThreshold, _ key: BurstKey, ended: Int64) -> BurstSummary {
        BurstSummary(
            threshold: threshold, auid: key.auid, userName: burst.userName, started: burst.started, ended: ended,
            count: burst.count, peak: burst.peak, alerts: burst.alerts
        )
    }

    /// Moves a user's counting to `hour`: the hours that ended are folded into the baseline (the
    /// silent ones as zeros), and the sliding windows drop what is older than an hour.
    private func advance(_ user: inout UserState, to hour: Int64, start: Int64, time: Int64) {
        if time > user.latest { user.latest = time }
        for index in user.windows.indices { user.windows[index].expire(through: user.latest - 3_600_000) }
        let current = user.hour ?? (user.baseline.lastFoldedHour + 1)
        guard hour > current || user.hour == nil else { return }
        let memory = policy.memoryWeeks
        if hour > current {
            if user.hour != nil {
                fold(&user, hour: current, counts: user.hourCounts)
            }
            // Hours nobody worked are zeros; past the longest memory they change nothing more.
            let silentFrom = user.hour == nil ? current : current + 1
            let cap = Int64(max(168 * memory, 24 * MetricBaseline.dayMemory))
            let first = max(silentFrom, hour - cap)
            if first < hour {
                let zeros = [Int](repeating: 0, count: FileMetric.allCases.count)
                for silent in first..<hour { fold(&user, hour: silent, counts: zeros) }
            }
            user.baseline.lastFoldedHour = hour - 1
        }
        user.hour = hour
        user.hourStart = start
        user.hourCounts = [Int](repeating: 0, count: FileMetric.allCases.count)
    }

    private func fold(_ user: inout UserState, hour: Int64, counts: [Int]) {
        user.expectedHour = .min
        for (index, metric) in FileMetric.allCases.enumerated() {
            // In place (the default subscript): no copy of the 192 slots per fold.
            user.baseline.metrics[metric.rawValue, default: MetricBaseline()].fold(counts[index], hour: hour, memoryWeeks: policy.memoryWeeks)
        }
        user.baseline.lastFoldedHour = hour
    }
}

extension FileWatchDetector.UserState {
    init(baseline: UserBaseline) {
        self.baseline = baseline
    }
}

/// Counts over the last hour, (now − 1 h, now]: distinct keys (files, directories) or every
/// occurrence. Keys are kept as 64-bit hashes (SipHash, seeded per process, so names cannot be
/// chosen to collide): a window costs the same whatever the length of the names. Memory is bounded
/// whatever the rate: a key seen again within a minute adds no entry (it may leave the window up
/// to a minute early), and occurrences in the same second share one entry.
struct SlidingWindow: Sendable {
    let distinct: Bool
    private var lastSeen: [Int: Int64] = [:]
    private var times: [Int64] = []
    /// The key hash of each entry; nil for counted occurrences (a plain count, or a distinct
    /// window that was full), which `counts` holds per entry.
    private var keys: [Int?] = []
    private var counts: [Int] = []
    private var head = 0
    private(set) var count = 0

    init(distinct: Bool) { self.distinct = distinct }

    /// Adds an occurrence; returns when the key was last seen within the window (nil: new).
    mutating func add(_ key: String, at time: Int64) -> Int64? {
        guard distinct else {
            addCounted(at: time)
            return nil
        }
        let hash = key.hashValue
        let previous = lastSeen[hash]
        if let previous {
            // Seen within the last minute: its entry stands (no growth under a rewrite loop).
            if time >= previous, time - previous < 60_000 { return previous }
        } else {
            count += 1
            if lastSeen.count >= FileWatchDetector.maximumDistinct {
                // Full: counted, not remembered (a second sighting counts again).
                count -= 1
                addCounted(at: time)
                return nil
            }
        }
        lastSeen[hash] = max(time, previous ?? .min)
        times.append(time)
        keys.append(hash)
        counts.append(1)
        return previous
    }

    private mutating func addCounted(at time: Int64) {
        count += 1
        if head < times.count, keys[keys.count - 1] == nil, times[times.count - 1] / 1_000 == time / 1_000 {
            counts[counts.count - 1] += 1
            return
        }
        times.append(time)
        keys.append(nil)
        counts.append(1)
    }

    /// Entries held (tests: memory is bounded by time, not by events).
    var entries: Int { times.count - head }

    mutating func expire(through cutoff: Int64) {
        while head < times.count, times[head] <= cutoff {
            if let key = keys[head] {
                // Only the key's latest entry leaves the count.
                if let seen = lastSeen[key], seen <= times[head] {
                    lastSeen[key] = nil
                    count -= 1
                }
            } else {
                count -= counts[head]
            }
            head += 1
        }
        if head > 4_096, head * 2 > times.count {
            times.removeFirst(head)
            keys.removeFirst(head)
            counts.removeFirst(head)
            head = 0
        }
    }
}
