import FoundationEssentials
public import HoldfastCore

/// The broker's compliance policy: which posture checks (by their stable ids) matter, and how
/// much. Each check is staged: `report` (recorded only), `warn` (the verdict says so, access
/// stays), `block` (access refused), optionally after a grace period that starts when the device
/// first fails the check. A check that could not tell (`unknown`), or that an older agent does
/// not report, counts as failing unless the rule says `"unknown": "allow"` — fail closed.
///
/// ```json
/// {"version": 3, "max_report_age": "10m",
///  "checks": {"disk-encryption": {"mode": "block", "grace": "72h"}, "firewall": "warn",
///             "screen-lock": {"mode": "block", "unknown": "allow"}}}
/// ```
public struct CompliancePolicy: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable, CaseIterable {
        case report, warn, block
    }

    public struct Rule: Sendable, Equatable {
        public var id: String
        public var mode: Mode
        /// Seconds a failing check is tolerated before `block` applies.
        public var grace: Int64?
        /// Whether `unknown` (or a check missing from the report) passes this rule.
        public var allowUnknown: Bool

        public init(id: String, mode: Mode, grace: Int64?, allowUnknown: Bool) {
            self.id = id
            self.mode = mode
            self.grace = grace
            self.allowUnknown = allowUnknown
        }
    }

    public var version: Int64?
    /// Rules in id order.
    public var rules: [Rule]
    /// A report older than this (seconds, by its `iat`) is not evidence of now.
    public var maximumReportAge: Int64

    public static let defaultMaximumReportAge: Int64 = 600

    public init(version: Int64? = nil, rules: [Rule], maximumReportAge: Int64 = defaultMaximumReportAge) {
        self.version = version
        self.rules = rules.sorted { $0.id < $1.id }
        self.maximumReportAge = maximumReportAge
    }

    /// Parses a policy document; anything unknown or malformed is refused with the reason.
    public static func parse(_ bytes: [UInt8]) throws(ComplianceError) -> CompliancePolicy {
        let document: JSONValue
        do {
            document = try JSONValue.parse(bytes)
        } catch {
            if let key = error.duplicateName { throw ComplianceError("the key \"\(key)\" appears twice") }
            // The admin's own document, read as it always was when the strict reader refuses it:
            // Foundation's JSONDecoder also takes a byte-order mark and trailing commas, and a
            // policy stored before the strict reader must not turn unreadable (every device
            // denied) on an upgrade. Duplicate names stay refused either way.
            guard JSONDuplicateKeys.first(in: bytes) == nil, let lenient = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else {
                throw ComplianceError("not a JSON object")
            }
            document = lenient
        }
        guard case .object(let top) = document else { throw ComplianceError("not a JSON object") }
        for key in top.keys where !["version", "max_report_age", "checks"].contains(key) {
            throw ComplianceError("unknown key \"\(key)\" (known: version, max_report_age, checks)")
        }
        var version: Int64?
        if let value = top["version"] {
            guard let number = value.intValue, number >= 0 else { throw ComplianceError("version must be a whole number ≥ 0") }
            version = number
        }
        var age = defaultMaximumReportAge
        if let value = top["max_report_age"] {
            guard let text = value.stringValue, let seconds = DurationText.seconds(text), seconds >= 10, seconds <= 86_400 else {
                throw ComplianceError("max_report_age must be a duration from 10s to 24h (e.g. \"10m\")")
            }
            age = seconds
        }
        guard case .object(let checks)? = top["checks"], !checks.isEmpty else {
            throw ComplianceError("checks must name at least one posture check id")
        }
        var rules: [Rule] = []
        for (id, value) in checks {
            guard isCheckID(id) else { throw ComplianceError("\"\(id)\" is not a check id (lower-case letters, digits and '-')") }
            switch value {
            case .string(let text):
                guard let mode = Mode(rawValue: text) else { throw ComplianceError("\(id): mode must be report, warn or block") }
                rules.append(Rule(id: id, mode: mode, grace: nil, allowUnknown: false))
            case .object(let members):
                for key in members.keys where !["mode", "grace", "unknown"].contains(key) {
                    throw ComplianceError("\(id): unknown key \"\(key)\" (known: mode, grace, unknown)")
                }
                guard let text = members["mode"]?.stringValue, let mode = Mode(rawValue: text) else {
                    throw ComplianceError("\(id): mode must be report, warn or block")
                }
                var grace: Int64?
                if let value = members["grace"] {
                    guard mode == .block else { throw ComplianceError("\(id): grace applies to mode block only") }
                    guard let text = value.stringValue, let seconds = DurationText.seconds(text), seconds > 0, seconds <= 90 * 86_400 else {
                        throw ComplianceError("\(id): grace must be a duration up to 90d (e.g. \"72h\")")
                    }
                    grace = seconds
                }
                var allowUnknown = false
                if let value = members["unknown"] {
                    guard let text = value.stringValue, ["allow", "fail"].contains(text) else { throw ComplianceError("\(id): unknown must be allow or fail") }
                    allowUnknown = text == "allow"
                }
                rules.append(Rule(id: id, mode: mode, grace: grace, allowUnknown: allowUnknown))
            default:
                throw ComplianceError("\(id): a mode (\"block\") or an object ({\"mode\": \"block\", \"grace\": \"72h\"})")
            }
        }
        return CompliancePolicy(version: version, rules: rules, maximumReportAge: age)
    }

    static func isCheckID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }
}

/// A refused compliance policy or posture report.
public struct ComplianceError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The checks of a verified posture report, as the broker reads them.
public struct PostureEvidence: Sendable, Equatable {
    public struct Check: Sendable, Equatable {
        public var status: String
        public var remediation: String

        public init(status: String, remediation: String) {
            self.status = status
            self.remediation = remediation
        }
    }

    /// Seconds since 1970 (the report's `iat`).
    public var issuedAt: Int64
    public var checks: [String: Check]

    public init(issuedAt: Int64, checks: [String: Check]) {
        self.issuedAt = issuedAt
        self.checks = checks
    }

    /// Reads a report payload (docs/posture-checks.md "Report"); a `partial` report is refused:
    /// it speaks for some checks only.
    public static func parse(_ report: JSONValue) throws(ComplianceError) -> PostureEvidence {
        guard report["type"]?.stringValue == "holdfast.posture" else { throw ComplianceError("not a posture report (type holdfast.posture)") }
        if let partial = report["partial"] {
            guard let flag = partial.boolValue else { throw ComplianceError("partial must be true or false") }
            guard !flag else { throw ComplianceError("a partial report (--only) is not evidence of the device's posture") }
        }
        guard let issuedAt = report["iat"]?.intValue else { throw ComplianceError("the report has no iat") }
        guard case .array(let items)? = report["checks"] else { throw ComplianceError("the report has no checks") }
        var checks: [String: Check] = [:]
        for item in items {
            guard let id = item["id"]?.stringValue, let status = item["status"]?.stringValue, ["pass", "fail", "unknown"].contains(status) else {
                throw ComplianceError("a check without an id or a status pass/fail/unknown")
            }
            guard checks[id] == nil else { throw ComplianceError("the check \(id) appears twice") }
            checks[id] = Check(status: status, remediation: item["remediation"]?.stringValue ?? "")
        }
        return PostureEvidence(issuedAt: issuedAt, checks: checks)
    }
}

/// What the broker concludes from one report under one policy.
public struct ComplianceVerdict: Sendable, Equatable {
    public enum Decision: String, Sendable, Equatable {
        case compliant, noncompliant
    }

    /// A check that did not pass, as the device and its user may see it: the id, what was
    /// reported, and the agent's remediation. Never the policy's modes or grace periods.
    public struct Finding: Sendable, Equatable {
        public var id: String
        /// `fail`, `unknown`, or `missing` (the agent did not report it).
        public var status: String
        public var remediation: String
        /// For a failure inside its grace period: when access will stop (seconds since 1970).
        public var until: Int64?
    }

    public var decision: Decision
    public var blocking: [Finding]
    public var warnings: [Finding]
    /// Failing `block` checks still inside their grace period.
    public var graced: [Finding]
    /// Failing `report` checks: recorded, not shown as a warning.
    public var reported: [Finding]
    /// When each failing check was first seen failing (to keep for the next evaluation).
    public var firstFailures: [String: Int64]

    /// The one line a denied user sees: which checks, and what to do.
    public var denial: String? {
        guard decision == .noncompliant else { return nil }
        return "access denied until these checks pass: " + blocking.map { $0.remediation.isEmpty ? "\($0.id) (\($0.status))" : "\($0.id) (\($0.status)): \($0.remediation)" }.joined(separator: "; ")
    }
}

extension CompliancePolicy {
    /// Evaluates a verified report at `now`. `firstFailures` is what the previous evaluation
    /// returned for this device (grace periods run from the first failure, not from each report).
    public func evaluate(_ evidence: PostureEvidence, now: Int64, firstFailures: [String: Int64] = [:]) -> ComplianceVerdict {
        var verdict = ComplianceVerdict(decision: .compliant, blocking: [], warnings: [], graced: [], reported: [], firstFailures: [:])
        // Saturating: a hostile `iat` must not trap the broker.
        let (difference, overflow) = now.subtractingReportingOverflow(evidence.issuedAt)
        let age = overflow ? (evidence.issuedAt < 0 ? Int64.max : Int64.min) : difference
        if age > maximumReportAge || age < -120 {
            verdict.blocking.append(.init(id: "report-age", status: age < 0 ? "from the future" : "stale", remediation: "the posture report is \(age < 0 ? "dated in the future" : "\(age) s old"); the agent must attest again", until: nil))
        }
        for rule in rules {
            let check = evidence.checks[rule.id]
            let status = check?.status ?? "missing"
            // `allow` covers a check that could not tell; one the report does not carry at all
            // (a misspelt id, an older agent) always fails, so a typo cannot pass silently.
            let failing = status == "fail" || status == "missing" || (status == "unknown" && !rule.allowUnknown)
            guard failing else { continue }
            let finding = ComplianceVerdict.Finding(id: rule.id, status: status, remediation: check?.remediation ?? "update the agent: it does not report this check", until: nil)
            // A stored first failure from the future (a clock step, a corrupt record) counts from now.
            let since = min(firstFailures[rule.id] ?? now, now)
            verdict.firstFailures[rule.id] = since
            switch rule.mode {
            case .report:
                verdict.reported.append(finding)
            case .warn:
                verdict.warnings.append(finding)
            case .block:
                if let grace = rule.grace, case let (end, overflow) = since.addingReportingOverflow(grace), !overflow, now < end {
                    var graced = finding
                    graced.until = end
                    verdict.graced.append(graced)
                } else {
                    verdict.blocking.append(finding)
                }
            }
        }
        if !verdict.blocking.isEmpty { verdict.decision = .noncompliant }
        return verdict
    }
}
