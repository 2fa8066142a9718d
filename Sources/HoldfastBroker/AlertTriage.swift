import FoundationEssentials
public import HoldfastCore
public import HoldfastStore
#if canImport(Glibc)
import Glibc
#endif

/// Alert triage (docs/alerts.md): which uploaded events are alerts, and their risk score.
///
/// An event is an alert when it is a Detection Finding (OCSF 2004: FileWatch's alerts and
/// blocks) or is High or above. The score (0–100) adds, and is documented term by term:
/// - severity: 12 per OCSF severity step (Medium 36, High 48, Critical 60);
/// - distance from baseline: FileWatch's `ratio` (observed ÷ baseline): 5 × log2(ratio), at most 20;
/// - what was touched: +10 for removable media, +10 when the agent blocked (a lockdown);
/// - the device's posture at the time: +10 when its latest verdict was non-compliant, +5 when stale;
/// Repeats of the same device, user and kind within the window fold into one alert with a count.
public enum AlertTriage {
    /// Same device, user and kind within this many seconds: one alert.
    public static let window: Int64 = 3_600

    public enum Posture: Sendable { case compliant, noncompliant, stale, unknown }

    /// The candidate an event makes, or nil when it is not an alert.
    public static func candidate(_ event: StoredEvent, body: JSONValue, posture: Posture, receivedMilliseconds: Int64 = Int64.max) -> AlertCandidate? {
        let classUID = body["class_uid"]?.intValue ?? 0
        // OCSF severities are 0…6; 99 is "Other", not worse than Fatal.
        let severity = (0...6).contains(event.severity) ? event.severity : 0
        guard classUID == 2004 || severity >= 4 else { return nil }
        let user = String((body["actor"]?["user"]?["name"]?.stringValue ?? body["actor"]?["user"]?["uid"]?.stringValue ?? "-").prefix(64))
        // Folding uses the broker's clock, not the device's: an event dated far ahead must not
        // hold an alert open (and swallow later ones) forever.
        let time = min(event.timeMilliseconds, receivedMilliseconds)
        return AlertCandidate(
            device: event.device, user: user, kind: event.kind, time: time, severity: severity,
            score: score(severity: severity, details: body["holdfast"]?["details"], posture: posture),
            summary: String((body["message"]?.stringValue ?? event.kind).prefix(300)), eventUUID: event.uuid)
    }

    /// The documented risk score, 0–100.
    public static func score(severity: Int64, details: JSONValue?, posture: Posture) -> Int64 {
        var total = Double(min(max(severity, 0), 6)) * 12
        if let ratio = details?["ratio"]?.doubleValue ?? details?["ratio"]?.intValue.map(Double.init), ratio.isFinite, ratio > 1 {
            total += min(20, 5 * log2(ratio))
        }
        let metric = details?["metric"]?.stringValue ?? ""
        if metric.contains("removable") || details?["target"]?.stringValue == "removable" { total += 10 }
        if details?["action"]?.stringValue == "block" { total += 10 }
        switch posture {
        case .noncompliant: total += 10
        case .stale: total += 5
        case .compliant, .unknown: break
        }
        return Int64(min(100, max(0, total.rounded())))
    }
}

extension JSONValue {
    /// A JSON number as a Double (integers too).
    var doubleValue: Double? {
        if case .double(let value) = self { return value }
        if case .int(let value) = self { return Double(value) }
        return nil
    }
}
