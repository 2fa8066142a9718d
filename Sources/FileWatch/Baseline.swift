public import Foundation

/// The recent counts of one hourly slot, newest last. The baseline is their median: one burst
/// never moves it (a burst must not become its own baseline), a job that recurs in most of the
/// remembered hours becomes normal, and what is older than the memory drops off (decay).
public struct SlotHistory: Sendable, Equatable, Codable {
    public var values: [UInt32] = []

    public init(_ values: [UInt32] = []) { self.values = values }

    public init(from decoder: any Decoder) throws {
        values = try decoder.singleValueContainer().decode([UInt32].self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(values)
    }

    /// Adds one hour's count, keeping the newest `keep`.
    public mutating func record(_ count: Int, keep: Int) {
        values.append(UInt32(clamping: count))
        if values.count > keep { values.removeFirst(values.count - keep) }
    }

    /// The median (the lower one for an even count, so two values give the smaller: one burst
    /// among two hours is not normal); 0 with no history.
    public var median: Double {
        guard !values.isEmpty else { return 0 }
        return Double(values.sorted()[(values.count - 1) / 2])
    }

    /// The median absolute deviation from the median: the spread a burst cannot inflate either.
    public var deviation: Double {
        guard !values.isEmpty else { return 0 }
        let center = median
        return SlotHistory(values.map { UInt32(abs(Double($0) - center)) }).median
    }
}

/// One user's learned normal for one metric: per hour of the week (168 slots, Monday 00:00 first,
/// in the policy's time zone; the last `memory_weeks` weeks) and per hour of the day (24 slots,
/// the last 14 days, which learn a nightly job within days rather than weeks).
public struct MetricBaseline: Sendable, Equatable, Codable {
    public static let dayMemory = 14
    public static let minimumWeekSamples = 3
    public var week: [SlotHistory] = Array(repeating: SlotHistory(), count: 168)
    public var day: [SlotHistory] = Array(repeating: SlotHistory(), count: 24)

    public init() {}

    /// Folds the count of one local hour (`hour`: hours since 1970-01-01 00:00 local time).
    public mutating func fold(_ count: Int, hour: Int64, memoryWeeks: Int) {
        week[LocalHour.hourOfWeek(hour)].record(count, keep: memoryWeeks)
        day[LocalHour.hourOfDay(hour)].record(count, keep: Self.dayMemory)
    }

    /// The count expected in `hour`: the higher of its week slot's and its day slot's medians, so
    /// what is normal at this hour on most days is normal today.
    public func expected(hour: Int64) -> (level: Double, spread: Double) {
        let week = week[LocalHour.hourOfWeek(hour)]
        let day = day[LocalHour.hourOfDay(hour)]
        // A week slot speaks once it holds three weeks: before that its median is one or two
        // hours, and one of them may be the burst itself.
        let weekLevel = week.values.count >= Self.minimumWeekSamples ? week.median : 0
        let dayLevel = day.median
        return weekLevel >= dayLevel ? (weekLevel, week.deviation) : (dayLevel, day.deviation)
    }
}

/// One user's baseline.
public struct UserBaseline: Sendable, Equatable, Codable {
    /// Milliseconds since the epoch of the first activity seen: warm-up counts from here.
    public var firstSeen: Int64
    /// The last local hour folded into the slots.
    public var lastFoldedHour: Int64
    public var metrics: [String: MetricBaseline] = [:]

    enum CodingKeys: String, CodingKey { case firstSeen = "first_seen", lastFoldedHour = "last_folded_hour", metrics }

    public init(firstSeen: Int64, lastFoldedHour: Int64) {
        self.firstSeen = firstSeen
        self.lastFoldedHour = lastFoldedHour
    }

    public func metric(_ metric: FileMetric) -> MetricBaseline { metrics[metric.rawValue] ?? MetricBaseline() }
}

/// What `holdfast filewatch baseline export` writes and `import` reads: every user's learned state.
public struct BaselineSnapshot: Sendable, Equatable, Codable {
    public static let currentFormat = 1
    public var format = Self.currentFormat
    /// The zone the slots are in; importing into another zone is refused (the slots would be shifted).
    public var timeZone: String
    /// By login uid, as text (JSON object keys).
    public var users: [String: UserBaseline]

    enum CodingKeys: String, CodingKey { case format, timeZone = "time_zone", users }

    public init(timeZone: String, users: [String: UserBaseline]) {
        self.timeZone = timeZone
        self.users = users
    }

    public static func decode(_ bytes: [UInt8]) throws(FileWatchPolicyError) -> BaselineSnapshot {
        let snapshot: BaselineSnapshot
        do {
            snapshot = try JSONDecoder().decode(BaselineSnapshot.self, from: Data(bytes))
        } catch {
            throw FileWatchPolicyError("not a baseline export: \(error)")
        }
        guard snapshot.format == currentFormat else { throw FileWatchPolicyError("baseline format \(snapshot.format); this build reads \(currentFormat)") }
        // 1970 to 2200: anything else is not a time a workstation saw (and would overflow later sums).
        let latest: Int64 = 7_258_118_400_000
        for (uid, user) in snapshot.users {
            guard UInt32(uid) != nil else { throw FileWatchPolicyError("baseline user \"\(uid)\" is not a login uid") }
            guard (0...latest).contains(user.firstSeen), (-1...(latest / 3_600_000)).contains(user.lastFoldedHour) else {
                throw FileWatchPolicyError("baseline for \(uid) has a first_seen or last_folded_hour outside 1970-2200")
            }
            for (name, metric) in user.metrics {
                guard FileMetric(rawValue: name) != nil else { throw FileWatchPolicyError("baseline metric \"\(name)\" is unknown") }
                guard metric.week.count == 168, metric.day.count == 24 else { throw FileWatchPolicyError("baseline for \(uid) \(name) needs 168 week and 24 day slots") }
                guard (metric.week + metric.day).allSatisfy({ $0.values.count <= 366 }) else {
                    throw FileWatchPolicyError("baseline for \(uid) \(name) remembers more hours than any policy keeps")
                }
            }
        }
        return snapshot
    }

    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? Array(encoder.encode(self))) ?? []
    }
}

/// Local hours: hours since 1970-01-01 00:00 in a time zone, and their place in the week.
public struct LocalHour: Sendable {
    public let timeZone: TimeZone
    /// The offset of the last quarter hour asked about (zones change offset on quarter-hour
    /// boundaries at the finest: Lord Howe's half-hour DST).
    private var cachedUTCHour: Int64 = .min
    private var cachedOffset: Int64 = 0

    public init(timeZone: TimeZone) { self.timeZone = timeZone }

    public mutating func hour(milliseconds: Int64) -> Int64 { hourAndStart(milliseconds: milliseconds).hour }

    /// The local hour of an instant and when (UTC milliseconds) that hour began.
    public mutating func hourAndStart(milliseconds: Int64) -> (hour: Int64, start: Int64) {
        let seconds = milliseconds.floorDivided(by: 1_000)
        let quarter = seconds.floorDivided(by: 900)
        if quarter != cachedUTCHour {
            cachedUTCHour = quarter
            cachedOffset = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(seconds))))
        }
        let local = seconds + cachedOffset
        let hour = local.floorDivided(by: 3_600)
        return (hour, (hour * 3_600 - cachedOffset) * 1_000)
    }

    /// Monday 00:00 is slot 0 (1970-01-01 was a Thursday).
    public static func hourOfWeek(_ hour: Int64) -> Int {
        let day = hour.floorDivided(by: 24)
        let weekday = (day + 3).floorModulo(7)
        return Int(weekday * 24 + hour.floorModulo(24))
    }

    public static func hourOfDay(_ hour: Int64) -> Int { Int(hour.floorModulo(24)) }
}

extension Int64 {
    func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }

    func floorModulo(_ divisor: Int64) -> Int64 {
        let remainder = self % divisor
        return remainder < 0 ? remainder + divisor : remainder
    }
}
