/// What a check concluded. `unknown` means it could not read what it needs: it is never
/// reported as `fail` (the top complaint about compliance agents is "not encrypted" from a check
/// that simply could not look).
public enum CheckStatus: String, Sendable, Equatable, Codable, CaseIterable {
    case pass
    case fail
    case unknown
}

/// How far a result can be trusted: `attested` where the kernel or firmware reports the fact
/// (device-mapper tables, the audit status, the netfilter ruleset, efivars), `self-reported` where
/// it is read from configuration files a local administrator could edit.
public enum EvidenceStrength: String, Sendable, Equatable, Codable {
    case attested
    case selfReported = "self-reported"
}

/// One check's answer: stable `id` (what the broker's compliance policy names), the status, the
/// short facts it saw, their strength, and what to do about a failure.
public struct CheckResult: Sendable, Equatable, Codable {
    public var id: String
    public var status: CheckStatus
    public var strength: EvidenceStrength
    public var evidence: String
    public var remediation: String
    /// Set by the daemon's hysteresis when a single transient `unknown` was held at the previous
    /// status; the evidence then still says what was seen this time.
    public var held: Bool?

    public init(id: String, status: CheckStatus, strength: EvidenceStrength, evidence: String, remediation: String = "") {
        self.id = id
        self.status = status
        self.strength = strength
        self.evidence = evidence
        self.remediation = status == .pass ? "" : remediation
    }
}

/// A posture check: a small function from what the machine shows (`PostureContext`) to a result.
public struct PostureCheck: Sendable {
    public let id: String
    /// One line for docs and `--help`: what it proves.
    public let title: String
    public let run: @Sendable (PostureContext) -> CheckResult

    public init(_ id: String, _ title: String, run: @escaping @Sendable (PostureContext) -> CheckResult) {
        self.id = id
        self.title = title
        self.run = run
    }
}

/// Builders that keep each check's code about facts, not about filling in structs.
extension PostureCheck {
    /// A result for this check.
    static func result(_ id: String, _ status: CheckStatus, _ strength: EvidenceStrength, _ evidence: String, fix: String = "") -> CheckResult {
        CheckResult(id: id, status: status, strength: strength, evidence: evidence, remediation: fix)
    }
}
