public import FoundationEssentials
public import HoldfastCore
public import HoldfastCrypto

/// A posture report: who, when, for which challenge, and every check's result. Signed as a JWS
/// (`typ` `holdfast-posture+jws`) with the device key; the broker verifies the exact bytes.
public struct PostureReport: Sendable, Equatable {
    public static let documentType = "holdfast-posture+jws"

    public var device: String
    public var agentVersion: String
    public var time: Date
    /// The broker's challenge nonce, when the report answers one.
    public var nonce: String?
    public var status: CheckStatus
    public var checks: [CheckResult]
    /// How long the run took, milliseconds.
    public var durationMilliseconds: Double
    /// Only some checks ran (`--only`): the status speaks for those, not for the device.
    public var partial = false

    public init(device: String, agentVersion: String = HoldfastVersion.current, time: Date, nonce: String?, checks: [CheckResult], durationMilliseconds: Double) {
        self.device = device
        self.agentVersion = agentVersion
        self.time = time
        self.nonce = nonce
        self.checks = checks
        self.status = PostureCatalog.overall(checks)
        self.durationMilliseconds = durationMilliseconds
    }

    /// The report as JSON (docs/posture-checks.md "Report").
    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "type": "holdfast.posture", "device": .string(device), "agent_version": .string(agentVersion),
            "time": .string(time.formatted(.iso8601)), "iat": .int(Int64(time.timeIntervalSince1970)),
            "status": .string(status.rawValue), "duration_ms": .double((durationMilliseconds * 10).rounded() / 10),
            "checks": .array(checks.map(Self.json)),
            "summary": .object(Dictionary(uniqueKeysWithValues: CheckStatus.allCases.map { status in (status.rawValue, JSONValue.int(Int64(checks.filter { $0.status == status }.count))) })),
        ]
        if let nonce { object["nonce"] = .string(nonce) }
        if partial { object["partial"] = true }
        return .object(object)
    }

    public static func json(_ result: CheckResult) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(result.id), "status": .string(result.status.rawValue), "strength": .string(result.strength.rawValue),
            "evidence": .string(result.evidence),
        ]
        if !result.remediation.isEmpty { object["remediation"] = .string(result.remediation) }
        if result.held == true { object["held"] = true }
        return .object(object)
    }

    /// The payload bytes: sorted keys, so the same report always serializes the same way.
    public func payload() throws -> [UInt8] {
        Array(json.compactText.utf8)
    }

    /// The compact JWS of the report, signed with the device key.
    public func signed(with key: SigningKey) throws -> String {
        try JWS.sign(payload(), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: Self.documentType))
    }
}

/// Hysteresis between runs: a status change is reported at once, but a single `unknown` after a
/// known status is held at that status (marked `held`) until it repeats; a check that could not
/// read its input once does not flap the device.
public struct PostureHistory: Sendable, Equatable {
    struct Entry: Sendable, Equatable {
        var reported: CheckStatus
        var lastObserved: CheckStatus
    }

    private var entries: [String: Entry] = [:]
    public init() {}

    /// A check whose reported status changed.
    public struct Change: Sendable, Equatable {
        public let id: String
        public let from: CheckStatus?
        public let to: CheckStatus
        public let evidence: String
    }

    /// The results to report for this run, and the changes against the previous report.
    public mutating func apply(_ observed: [CheckResult]) -> (reported: [CheckResult], changes: [Change]) {
        var reported: [CheckResult] = []
        var changes: [Change] = []
        for result in observed {
            let previous = entries[result.id]
            var outcome = result
            if result.status == .unknown, let previous, previous.reported != .unknown, previous.lastObserved != .unknown {
                outcome.status = previous.reported
                outcome.held = true
                outcome.evidence = "unknown this run (\(result.evidence)); holding \(previous.reported.rawValue) until it repeats"
                outcome.remediation = outcome.status == .pass ? "" : result.remediation
            }
            if previous?.reported != outcome.status {
                changes.append(Change(id: result.id, from: previous?.reported, to: outcome.status, evidence: outcome.evidence))
            }
            entries[result.id] = Entry(reported: outcome.status, lastObserved: result.status)
            reported.append(outcome)
        }
        return (reported, changes)
    }
}
