import HoldfastBroker
import HoldfastCore
import Testing

@Suite struct CompliancePolicyTests {
    static let policy = """
        {"version": 3, "max_report_age": "10m", "checks": {
          "disk-encryption": {"mode": "block", "grace": "72h"}, "firewall": "warn", "screen-lock": {"mode": "block", "unknown": "allow"},
          "secure-boot": "report", "audit-enabled": "block"}}
        """

    static func evidence(_ statuses: [String: String], at time: Int64 = 1_800_000_000) -> PostureEvidence {
        PostureEvidence(issuedAt: time, checks: statuses.mapValues { PostureEvidence.Check(status: $0, remediation: "fix \($0)") })
    }

    @Test func parsesEveryForm() throws {
        let policy = try CompliancePolicy.parse(Array(Self.policy.utf8))
        #expect(policy.version == 3)
        #expect(policy.maximumReportAge == 600)
        #expect(policy.rules.map(\.id) == ["audit-enabled", "disk-encryption", "firewall", "screen-lock", "secure-boot"])
        #expect(policy.rules[1] == CompliancePolicy.Rule(id: "disk-encryption", mode: .block, grace: 259_200, allowUnknown: false))
        #expect(policy.rules[3].allowUnknown)
    }

    @Test(arguments: [
        (#"{"checks": {}}"#, "checks must name at least one posture check id"),
        (#"{"checks": {"Disk": "block"}}"#, "\"Disk\" is not a check id (lower-case letters, digits and '-')"),
        (#"{"checks": {"firewall": "deny"}}"#, "firewall: mode must be report, warn or block"),
        (#"{"checks": {"firewall": {"mode": "warn", "grace": "1h"}}}"#, "firewall: grace applies to mode block only"),
        (#"{"checks": {"firewall": "warn"}, "extra": 1}"#, "unknown key \"extra\" (known: version, max_report_age, checks)"),
        (#"{"checks": {"firewall": "warn", "firewall": "block"}}"#, "the key \"firewall\" appears twice"),
        (#"{"max_report_age": "1s", "checks": {"firewall": "warn"}}"#, "max_report_age must be a duration from 10s to 24h (e.g. \"10m\")"),
    ])
    func refusesWithTheReason(_ text: String, _ message: String) {
        #expect(throws: ComplianceError(message)) { try CompliancePolicy.parse(Array(text.utf8)) }
    }

    @Test func aBlockingFailureDeniesAndSaysOnlyWhatToFix() throws {
        let policy = try CompliancePolicy.parse(Array(Self.policy.utf8))
        let verdict = policy.evaluate(Self.evidence(["disk-encryption": "pass", "firewall": "fail", "screen-lock": "unknown", "secure-boot": "unknown", "audit-enabled": "fail"]), now: 1_800_000_010)
        #expect(verdict.decision == .noncompliant)
        #expect(verdict.blocking.map(\.id) == ["audit-enabled"])
        #expect(verdict.warnings.map(\.id) == ["firewall"])
        #expect(verdict.reported.map(\.id) == ["secure-boot"])
        // The denial names the check and its remediation, not modes or grace periods.
        #expect(verdict.denial == "access denied until these checks pass: audit-enabled (fail): fix fail")
    }

    @Test func graceRunsFromTheFirstFailure() throws {
        let policy = try CompliancePolicy.parse(Array(Self.policy.utf8))
        let failing = ["disk-encryption": "fail", "audit-enabled": "pass", "screen-lock": "pass"]
        let first = policy.evaluate(Self.evidence(failing, at: 1_800_000_000), now: 1_800_000_000)
        #expect(first.decision == .compliant)
        let until: Int64 = 1_800_000_000 + 259_200
        #expect(first.graced.first?.until == until)
        let later = policy.evaluate(Self.evidence(failing, at: 1_800_259_300), now: 1_800_259_300, firstFailures: first.firstFailures)
        #expect(later.decision == .noncompliant)
        #expect(later.blocking.map(\.id) == ["disk-encryption"])
        // Fixed: the clock stops.
        let fixed = policy.evaluate(Self.evidence(["disk-encryption": "pass", "audit-enabled": "pass", "screen-lock": "pass"], at: 1_800_259_400), now: 1_800_259_400, firstFailures: later.firstFailures)
        #expect(fixed.decision == .compliant)
        #expect(fixed.firstFailures["disk-encryption"] == nil)
    }

    @Test func unknownMissingAndStaleFailClosed() throws {
        let policy = try CompliancePolicy.parse(Array(Self.policy.utf8))
        let missing = policy.evaluate(Self.evidence(["disk-encryption": "pass", "screen-lock": "pass"]), now: 1_800_000_000)
        #expect(missing.blocking.map(\.status) == ["missing"])
        let unknown = policy.evaluate(Self.evidence(["disk-encryption": "pass", "audit-enabled": "unknown", "screen-lock": "unknown"]), now: 1_800_000_000)
        #expect(unknown.blocking.map(\.id) == ["audit-enabled"])
        #expect(unknown.blocking.first?.status == "unknown")
        let stale = policy.evaluate(Self.evidence(["disk-encryption": "pass", "audit-enabled": "pass", "screen-lock": "pass"], at: 1_800_000_000), now: 1_800_000_601)
        #expect(stale.blocking.map(\.id) == ["report-age"])
    }

    @Test func aPartialReportIsNotEvidence() {
        let report = JSONValue.object(["type": "holdfast.posture", "iat": 1, "partial": true, "checks": .array([])])
        #expect(throws: ComplianceError("a partial report (--only) is not evidence of the device's posture")) { try PostureEvidence.parse(report) }
    }
}

/// Cases a review found: each would have trapped the broker or passed what should not pass.
@Suite struct ComplianceRegressionTests {
    @Test func hostileTimesDoNotTrap() throws {
        let policy = try CompliancePolicy.parse(Array(#"{"checks": {"disk-encryption": {"mode": "block", "grace": "90d"}}}"#.utf8))
        let ancient = PostureEvidence(issuedAt: Int64.min, checks: ["disk-encryption": .init(status: "pass", remediation: "")])
        #expect(policy.evaluate(ancient, now: 1_800_000_000).blocking.map(\.id) == ["report-age"])
        let failing = PostureEvidence(issuedAt: Int64.max - 10, checks: ["disk-encryption": .init(status: "fail", remediation: "")])
        let late = policy.evaluate(failing, now: Int64.max - 10)
        #expect(late.decision == .noncompliant)
        // A first failure stored in the future counts from now, not from then.
        let now: Int64 = 1_800_000_000
        let future = policy.evaluate(PostureEvidence(issuedAt: now, checks: failing.checks), now: now, firstFailures: ["disk-encryption": now + 1_000_000])
        #expect(future.graced.first?.until == now + 90 * 86_400)
    }

    @Test func aMisspeltIdCannotPassEvenWithUnknownAllowed() throws {
        let policy = try CompliancePolicy.parse(Array(#"{"checks": {"disk-encyption": {"mode": "block", "unknown": "allow"}}}"#.utf8))
        let verdict = policy.evaluate(PostureEvidence(issuedAt: 1_800_000_000, checks: ["disk-encryption": .init(status: "fail", remediation: "")]), now: 1_800_000_000)
        #expect(verdict.decision == .noncompliant)
        #expect(verdict.blocking.first?.status == "missing")
    }

    @Test func partialMustBeABoolean() {
        let report = JSONValue.object(["type": "holdfast.posture", "iat": 1, "partial": "true", "checks": .array([])])
        #expect(throws: ComplianceError("partial must be true or false")) { try PostureEvidence.parse(report) }
    }
}

/// Policies stored before the strict JSON reader keep parsing as they did (Foundation's reading:
/// a byte-order mark, trailing commas); duplicates stay refused.
@Suite struct CompliancePolicyUpgradeTests {
    @Test func aPolicyStoredBeforeTheStrictReaderStillParses() throws {
        let trailing = Array(#"{"version":3,"checks":{"disk-encryption":"block","firewall":"warn",},}"#.utf8)
        #expect(try CompliancePolicy.parse(trailing).rules.count == 2)
        let marked = [0xEF, 0xBB, 0xBF] + Array(#"{"checks":{"firewall":"block"}}"#.utf8)
        #expect(try CompliancePolicy.parse(marked).rules.count == 1)
        #expect(throws: ComplianceError.self) { try CompliancePolicy.parse(Array(#"{"checks":{"firewall":"block","firewall":"report",}}"#.utf8)) }
    }
}
