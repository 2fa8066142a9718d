import Foundation
public import HoldfastCore

/// FileWatch over historical audit logs (`holdfast audit replay`, docs/filewatch.md "Replay"): the
/// live path's classifier and detector, removable media by prefixes only (there is no mount table
/// for last month), the events' own timestamps as the clock. Pure: the same events and policy give
/// the same lines.
public struct Replay {
    /// One user's totals.
    public struct UserSummary: Sendable, Equatable {
        public var events = 0
        public var filesWritten = 0
        public var alerts = 0
        public var blocks = 0
        public var userName: String?
    }

    public private(set) var detector: FileWatchDetector
    let classifier: FileActivityClassifier
    let since: Int64?
    let until: Int64?
    public private(set) var users: [UInt32: UserSummary] = [:]
    public private(set) var events = 0
    public private(set) var skipped = 0
    private var latest: Int64 = .min

    public init(policy: FileWatchPolicy, roots: [String] = AuditRuleSet.defaultRoots, baseline: BaselineSnapshot? = nil, since: Int64? = nil, until: Int64? = nil) {
        detector = FileWatchDetector(policy: policy, baseline: baseline)
        classifier = FileActivityClassifier(roots: roots, media: RemovablePrefixes(policy.removablePrefixes))
        self.since = since
        self.until = until
    }

    /// One assembled event in; the lines it decides, in order.
    ///
    /// Events before `since` are learned from but not reported (a replay of last week that starts
    /// with last month's history); events from `until` on are left out.
    public mutating func feed(_ event: AuditEvent) -> [JSONValue] {
        let time = event.time
        if let until, time >= until { return [] }
        let reported = since.map { time >= $0 } ?? true
        if reported { events += 1 }
        let summary = AuditEventSummary(event)
        guard let activity = classifier.classify(summary), activity.operation != .mount else { return [] }
        latest = max(latest, time)
        guard reported else {
            _ = detector.observe(activity)
            return []
        }
        var user = users[activity.auid] ?? UserSummary()
        user.events += 1
        if activity.operation == .create || activity.operation == .writeOpen || activity.operation == .truncate { user.filesWritten += 1 }
        if let name = activity.userName { user.userName = name }
        users[activity.auid] = user
        var lines: [JSONValue] = []
        for output in detector.observe(activity) { if let text = line(output) { lines.append(text) } }
        return lines
    }

    /// The end of the input: bursts still open end an hour after the last event.
    public mutating func finish() -> [JSONValue] {
        guard latest != .min else { return [] }
        var lines: [JSONValue] = []
        for output in detector.tick(now: latest + 3_600_000) { if let text = line(output) { lines.append(text) } }
        return lines
    }

    private mutating func line(_ output: DetectorOutput) -> JSONValue? {
        switch output {
        case .decision(let decision):
            if decision.threshold.action == .block { users[decision.auid]?.blocks += 1 } else { users[decision.auid]?.alerts += 1 }
            return Self.decisionLine(decision)
        case .burstEnded(let summary):
            return .object([
                "type": "burst_ended", "time": .string(Self.iso(summary.ended)), "auid": .int(Int64(summary.auid)),
                "user": summary.userName.map(JSONValue.string) ?? .null, "threshold": .string(summary.threshold.id),
                "metric": .string(summary.threshold.metric.rawValue), "action": .string(summary.threshold.action.rawValue),
                "count": .int(Int64(summary.count)), "peak": .int(Int64(summary.peak)), "alerts": .int(Int64(summary.alerts)),
                "started": .string(Self.iso(summary.started)),
            ])
        case .blockHeld:
            // Live, it re-checks the lockdown; a replay changes nothing, so there is nothing to say.
            return nil
        }
    }

    static func decisionLine(_ decision: FileDecision) -> JSONValue {
        .object([
            "type": "decision", "time": .string(iso(decision.time)), "auid": .int(Int64(decision.auid)),
            "user": decision.userName.map(JSONValue.string) ?? .null, "action": .string(decision.threshold.action.rawValue),
            "threshold": .string(decision.threshold.id), "metric": .string(decision.threshold.metric.rawValue),
            "observed": .int(Int64(decision.observed)), "baseline": decision.baseline.map(JSONValue.double) ?? .null,
            "limit": .int(Int64(decision.limit)), "basis": .string(decision.basis),
            "sample_paths": .array(decision.samplePaths.map(JSONValue.string)),
            "exe": decision.exe.map(JSONValue.string) ?? .null, "pid": decision.pid.map(JSONValue.int) ?? .null,
            "folded_since_last": .int(Int64(decision.folded)),
        ])
    }

    /// The summary line: per user (by auid) and totals.
    public var summaryLine: JSONValue {
        var perUser: [String: JSONValue] = [:]
        var totals = UserSummary()
        for (auid, user) in users {
            perUser[String(auid)] = .object([
                "user": user.userName.map(JSONValue.string) ?? .null, "events": .int(Int64(user.events)),
                "files_written": .int(Int64(user.filesWritten)), "alerts": .int(Int64(user.alerts)), "blocks": .int(Int64(user.blocks)),
            ])
            totals.events += user.events
            totals.filesWritten += user.filesWritten
            totals.alerts += user.alerts
            totals.blocks += user.blocks
        }
        return .object([
            "type": "summary", "audit_events": .int(Int64(events)), "users": .object(perUser),
            "totals": .object([
                "events": .int(Int64(totals.events)), "files_written": .int(Int64(totals.filesWritten)),
                "alerts": .int(Int64(totals.alerts)), "blocks": .int(Int64(totals.blocks)),
            ]),
        ])
    }

    /// ISO 8601 in UTC with milliseconds: the same text on every machine.
    static func iso(_ milliseconds: Int64) -> String {
        Date(timeIntervalSince1970: Double(milliseconds) / 1_000).formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// One line of text for a JSON line (the default output).
    public static func text(_ line: JSONValue) -> String {
        func string(_ key: String) -> String { line[key]?.stringValue ?? "" }
        func number(_ key: String) -> String {
            switch line[key] {
            case .int(let value)?: String(value)
            case .double(let value)?: value == value.rounded() ? String(Int64(value)) : String(value)
            default: "-"
            }
        }
        let who = "auid " + number("auid") + (line["user"]?.stringValue.map { " (\(Printable.escape($0)))" } ?? "")
        switch string("type") {
        case "decision":
            var text = "\(string("time")) \(string("action").uppercased()) \(who) \(string("metric")) \(number("observed")) (baseline \(number("baseline")), limit \(number("limit")) \(string("basis")), rule \(string("threshold")))"
            if let exe = line["exe"]?.stringValue { text += " exe \(Printable.escape(exe))" }
            if case .array(let paths)? = line["sample_paths"], let last = paths.last?.stringValue { text += " e.g. \(Printable.escape(last))" }
            return text
        case "burst_ended":
            return "\(string("time")) burst ended: \(who) \(string("metric")) rule \(string("threshold")): \(number("count")) past the limit, peak \(number("peak"))"
        default:
            return line["totals"].map { "totals: events \(number2($0, "events")), files written \(number2($0, "files_written")), alerts \(number2($0, "alerts")), blocks \(number2($0, "blocks"))" } ?? ""
        }
    }

    static func number2(_ value: JSONValue, _ key: String) -> String { value[key]?.intValue.map(String.init) ?? "-" }
}
