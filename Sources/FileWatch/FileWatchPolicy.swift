import Foundation
public import HoldfastCore

/// Why a `filewatch` policy section was refused.
public struct FileWatchPolicyError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What FileWatch counts per user and hour (docs/filewatch.md).
public enum FileMetric: String, Sendable, Codable, CaseIterable, Comparable {
    /// Distinct files created, opened for writing or truncated.
    case filesWritten = "files_written"
    /// The same, on removable media only.
    case removableFilesWritten = "removable_files_written"
    /// Distinct directories those files are in.
    case directoriesTouched = "directories_touched"
    case deletes
    case renames

    public static func < (lhs: FileMetric, rhs: FileMetric) -> Bool {
        allCases.firstIndex(of: lhs) ?? 0 < allCases.firstIndex(of: rhs) ?? 0
    }
}

/// What a crossed threshold does.
public enum ThresholdAction: String, Sendable, Codable {
    /// An event with the score and the evidence.
    case alert
    /// The alert, and the lockdown scopes of `block_scopes`.
    case block
}

/// One threshold: fires when the last hour's count reaches `absolute`, or — once the user's
/// baseline has warmed up — `relative` × the baseline for this hour of the week, and at least
/// `minimum`.
public struct FileThreshold: Sendable, Equatable {
    public var id: String
    public var metric: FileMetric
    public var relative: Double?
    public var minimum: Int
    public var absolute: Int?
    public var action: ThresholdAction

    public init(id: String, metric: FileMetric, relative: Double? = nil, minimum: Int = 100, absolute: Int? = nil, action: ThresholdAction) {
        self.id = id
        self.metric = metric
        self.relative = relative
        self.minimum = minimum
        self.absolute = absolute
        self.action = action
    }
}

/// The `filewatch` section of the policy.
public struct FileWatchPolicy: Sendable, Equatable {
    /// The time zone hour-of-week is counted in (the desk's, not the server's).
    public var timeZone: String = "UTC"
    /// How long a user's history must be before relative thresholds apply.
    public var warmUpSeconds: Int64 = 7 * 86_400
    /// How many weeks an hour-of-week slot remembers (its baseline is their median).
    public var memoryWeeks: Int = 6
    /// Offline rule for removable media (live, the mount table decides first).
    public var removablePrefixes: [String] = RemovablePrefixes.defaults
    /// Within this interval, a threshold that keeps being crossed by one user is one alert with a
    /// count; the next alert after it says how many were folded in.
    public var alertIntervalSeconds: Int64 = 3_600
    /// What `block` locks down.
    public var blockScopes: [String] = ["usb", "print"]
    public var thresholds: [FileThreshold] = Self.defaultThresholds

    /// Alerts only: a policy turns `block` on. Every one has an absolute side, so the warm-up
    /// (when only absolute limits apply) is not a free week.
    public static let defaultThresholds: [FileThreshold] = [
        FileThreshold(id: "bulk-write", metric: .filesWritten, relative: 10, minimum: 500, absolute: 5_000, action: .alert),
        FileThreshold(id: "removable-write", metric: .removableFilesWritten, minimum: 1, absolute: 1, action: .alert),
        FileThreshold(id: "many-directories", metric: .directoriesTouched, relative: 10, minimum: 100, absolute: 2_000, action: .alert),
        FileThreshold(id: "bulk-delete", metric: .deletes, relative: 10, minimum: 500, absolute: 5_000, action: .alert),
        FileThreshold(id: "bulk-rename", metric: .renames, relative: 10, minimum: 500, absolute: 5_000, action: .alert),
    ]

    /// What `block_scopes` may name: every lockdown scope (a bulk copy may isolate the machine or
    /// end the user's session as well as shut USB and printing).
    public static let scopes = LockdownScope.allCases.map(\.rawValue)

    public init() {}

    /// Parses the section; nil means the defaults.
    public init(section: JSONValue?) throws(FileWatchPolicyError) {
        guard let section else { return }
        guard case .object(let members) = section else { throw FileWatchPolicyError("filewatch must be an object") }
        let known = ["timezone", "warm_up", "memory_weeks", "removable_prefixes", "alert_interval", "block_scopes", "thresholds"]
        for key in members.keys.sorted() where !known.contains(key) {
            throw FileWatchPolicyError("filewatch: unknown member \"\(key)\" (known: \(known.joined(separator: ", ")))")
        }
        if let value = members["timezone"] {
            guard let name = value.stringValue, TimeZone(identifier: name) != nil else {
                throw FileWatchPolicyError("filewatch.timezone must be a time zone name such as \"Asia/Manila\" or \"UTC\"")
            }
            timeZone = name
        }
        if let value = members["warm_up"] {
            guard let text = value.stringValue, let seconds = DurationText.seconds(text), seconds <= 90 * 86_400 else {
                throw FileWatchPolicyError("filewatch.warm_up must be a duration up to 90d (e.g. \"7d\")")
            }
            warmUpSeconds = seconds
        }
        if let value = members["memory_weeks"] {
            guard let weeks = value.intValue, (1...52).contains(weeks) else { throw FileWatchPolicyError("filewatch.memory_weeks must be 1 to 52") }
            memoryWeeks = Int(weeks)
        }
        if let value = members["removable_prefixes"] {
            guard case .array(let items) = value else { throw FileWatchPolicyError("filewatch.removable_prefixes must be an array of absolute paths") }
            removablePrefixes = []
            for item in items {
                guard let path = item.stringValue, path.hasPrefix("/"), !path.contains("\0") else {
                    throw FileWatchPolicyError("filewatch.removable_prefixes must be an array of absolute paths")
                }
                removablePrefixes.append(path)
            }
        }
        if let value = members["alert_interval"] {
            guard let text = value.stringValue, let seconds = DurationText.seconds(text), seconds >= 60, seconds <= 86_400 else {
                throw FileWatchPolicyError("filewatch.alert_interval must be a duration from 1m to 1d")
            }
            alertIntervalSeconds = seconds
        }
        if let value = members["block_scopes"] {
            guard case .array(let items) = value, !items.isEmpty else {
                throw FileWatchPolicyError("filewatch.block_scopes must be a non-empty array of: \(Self.scopes.joined(separator: ", "))")
            }
            blockScopes = []
            for item in items {
                guard let scope = item.stringValue, Self.scopes.contains(scope) else {
                    throw FileWatchPolicyError("filewatch.block_scopes: unknown scope \(item.stringValue.map { "\"\($0)\"" } ?? "value") (known: \(Self.scopes.joined(separator: ", ")))")
                }
                if !blockScopes.contains(scope) { blockScopes.append(scope) }
            }
        }
        if let value = members["thresholds"] {
            guard case .array(let items) = value else { throw FileWatchPolicyError("filewatch.thresholds must be an array") }
            guard !items.isEmpty else {
                throw FileWatchPolicyError("filewatch.thresholds is empty, which would turn detection off; leave it out for the defaults")
            }
            thresholds = []
            for (index, item) in items.enumerated() {
                let threshold = try Self.threshold(item, index: index)
                if thresholds.contains(where: { $0.id == threshold.id }) {
                    throw FileWatchPolicyError("filewatch.thresholds[\(index)]: id \"\(threshold.id)\" is used twice")
                }
                thresholds.append(threshold)
            }
        }
    }

    static func threshold(_ value: JSONValue, index: Int) throws(FileWatchPolicyError) -> FileThreshold {
        let at = "filewatch.thresholds[\(index)]"
        guard case .object(let members) = value else { throw FileWatchPolicyError("\(at) must be an object") }
        let known = ["id", "metric", "relative", "minimum", "absolute", "action"]
        for key in members.keys.sorted() where !known.contains(key) {
            throw FileWatchPolicyError("\(at): unknown member \"\(key)\" (known: \(known.joined(separator: ", ")))")
        }
        guard let name = members["metric"]?.stringValue, let metric = FileMetric(rawValue: name) else {
            throw FileWatchPolicyError("\(at).metric must be one of \(FileMetric.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let actionName = members["action"]?.stringValue, let action = ThresholdAction(rawValue: actionName) else {
            throw FileWatchPolicyError("\(at).action must be alert or block")
        }
        var relative: Double?
        switch members["relative"] {
        case nil: break
        case .int(let number)?: relative = Double(number)
        case .double(let number)?: relative = number
        default: throw FileWatchPolicyError("\(at).relative must be a number (× baseline)")
        }
        if let relative, !(relative >= 1.5 && relative <= 10_000) {
            throw FileWatchPolicyError("\(at).relative must be from 1.5 to 10000 (× baseline)")
        }
        var absolute: Int?
        if let value = members["absolute"] {
            guard let number = value.intValue, number >= 1, number <= 100_000_000 else {
                throw FileWatchPolicyError("\(at).absolute must be a count from 1 to 100000000 per hour")
            }
            absolute = Int(number)
        }
        var minimum = 100
        if let value = members["minimum"] {
            guard let number = value.intValue, number >= 1, number <= 100_000_000 else {
                throw FileWatchPolicyError("\(at).minimum must be a count from 1 to 100000000")
            }
            minimum = Int(number)
        }
        guard relative != nil || absolute != nil else {
            throw FileWatchPolicyError("\(at) needs \"relative\" (× baseline), \"absolute\" (per hour), or both")
        }
        var id = "\(metric.rawValue)-\(action.rawValue)-\(index)"
        if let value = members["id"] {
            guard let text = value.stringValue, !text.isEmpty, text.utf8.count <= 64,
                text.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" || $0 == ".") })
            else { throw FileWatchPolicyError("\(at).id must be 1 to 64 letters, digits, '-', '_' or '.'") }
            id = text
        }
        return FileThreshold(id: id, metric: metric, relative: relative, minimum: minimum, absolute: absolute, action: action)
    }
}
