import FileWatch
import FoundationEssentials
public import HoldfastCore
public import HoldfastCrypto
import Lockdown
public import Posture

/// The device key: Ed25519, created on first start in the state directory (0600 root), signing
/// posture reports now and the broker enrollment later. Its thumbprint names the device until
/// enrollment assigns an id.
public enum DeviceKey {
    public static func loadOrCreate(stateDirectory: String) throws -> SigningKey {
        let path = stateDirectory + "/device.key"
        // A key that exists but cannot be read is an error, never silently replaced: the
        // broker knows the device by it.
        if SmallFile.exists(path) { return try SigningKey.load(from: path) }
        let key = try SigningKey.generate()
        try key.save(to: path)
        return key
    }
}

/// Posture in holdfastd (docs/posture-checks.md): runs every check on a schedule and soon after
/// a relevant event (coalesced), keeps the last signed report, journals every status change
/// (after hysteresis) and answers `posture.report` with a fresh run, signed, carrying the
/// caller's nonce.
public actor PostureService: Service {
    public nonisolated let name = "posture"
    /// Events that change what a check would see; posture re-runs after them.
    static let relevantPrefixes = ["filewatch.rules_", "filewatch.coverage_incomplete", "print.queue_", "print.hardening_", "print.cups_", "lockdown.", "usb.hub_", "usb.mode_changed", "usb.enforcement_", "usb.tamper", "usb.disabled", "policy."]
    /// How long after a relevant event the run waits for more (a reconcile emits several).
    static let coalesce: Duration = .seconds(2)
    /// The least time between two event-triggered runs: events a user can provoke (coverage
    /// gaps from an audit flood) must not keep the checks running.
    private let minimumGap: Duration

    private let key: SigningKey
    private let interval: Duration
    private let recorder: EventRecorder
    private let logger: Logger
    private let facts: @Sendable () async -> AgentFacts
    private let settings: PostureSettings
    private let system: any PostureSystem
    private let cache = PatchCache()
    private var history = PostureHistory()
    private var lostAtLastReport: UInt32?
    private var latest: (report: JSONValue, signed: String)?
    private var triggered: String?
    private var lastRun = ContinuousClock.now
    private var runs = 0

    public init(
        key: SigningKey, interval: Duration, settings: PostureSettings, recorder: EventRecorder, logger: Logger, system: any PostureSystem = LiveSystem(),
        minimumGap: Duration = .seconds(30), facts: @escaping @Sendable () async -> AgentFacts
    ) {
        self.key = key
        deviceID = key.publicKey.thumbprint
        self.minimumGap = minimumGap
        self.interval = interval
        self.settings = settings
        self.recorder = recorder
        self.logger = logger
        self.system = system
        self.facts = facts
    }

    /// The device id reports carry: the device key's thumbprint until enrollment, then the
    /// broker's id.
    public private(set) var deviceID: String

    /// Enrollment assigned an id: later reports carry it.
    public func enrolled(as id: String) { deviceID = id }

    /// Asks for a run soon (coalesced with others in the next couple of seconds).
    public func trigger(_ reason: String) {
        if triggered == nil { triggered = reason }
    }

    /// Whether an event should re-run the checks.
    public static func isRelevant(_ kind: String) -> Bool {
        !kind.hasPrefix("posture.") && relevantPrefixes.contains { kind.hasPrefix($0) }
    }

    public func run() async throws {
        while !Task.isCancelled {
            lastRun = ContinuousClock.now
            _ = await produce(nonce: nil, only: nil, reason: runs == 0 ? "start" : triggered ?? "schedule")
            triggered = nil
            let deadline = ContinuousClock.now + interval
            while ContinuousClock.now < deadline, triggered == nil, !Task.isCancelled {
                try await Task.sleep(for: .milliseconds(500))
            }
            if triggered != nil {
                try await Task.sleep(for: Self.coalesce)
                let earliest = lastRun + minimumGap
                if ContinuousClock.now < earliest { try await Task.sleep(until: earliest) }
            }
        }
    }

    /// A fresh run for `posture.report`: the report object and its JWS. With `only`, just those
    /// checks run and history is left alone (a partial run says nothing about the others).
    public func report(nonce: String?, only: Set<String>?) async -> (report: JSONValue, signed: String?) {
        await produce(nonce: nonce, only: only, reason: "request")
    }

    /// For `holdfast status` (anyone may read it): the overall status and which checks fail or
    /// are unknown, without their evidence.
    public func statusSummary() -> JSONValue {
        var object: [String: JSONValue] = ["enabled": true, "device": .string(deviceID), "runs": .int(Int64(runs))]
        if let report = latest?.report {
            object["status"] = report["status"]
            object["at"] = report["time"]
            if case .array(let checks)? = report["checks"] {
                for status in [CheckStatus.fail, .unknown] {
                    object[status.rawValue] = .array(checks.filter { $0["status"]?.stringValue == status.rawValue }.compactMap { $0["id"] })
                }
            }
        }
        return .object(object)
    }

    private func produce(nonce: String?, only: Set<String>?, reason: String) async -> (report: JSONValue, signed: String?) {
        var agent = await facts()
        agent.lostAtLastReport = lostAtLastReport
        let snapshot = RunSnapshot(system)
        let context = PostureContext(tree: RootTree("/"), system: snapshot, settings: settings, agent: agent, now: Date().timeIntervalSince1970, cache: cache)
        let started = ContinuousClock.now
        let observed = PostureCatalog.run(context, only: only)
        let elapsed = ContinuousClock.now - started
        let milliseconds = Double(elapsed.components.seconds) * 1_000 + Double(elapsed.components.attoseconds) / 1e15
        var results = observed
        if only == nil {
            let applied = history.apply(observed)
            results = applied.reported
            for change in applied.changes { journal(change, first: runs == 0) }
            if case .success(let status) = snapshot.auditStatus() { lostAtLastReport = status.lost }
            runs += 1
        }
        var report = PostureReport(device: deviceID, time: Date(), nonce: nonce, checks: results, durationMilliseconds: milliseconds)
        report.partial = only != nil
        let signed: String?
        do {
            signed = try report.signed(with: key)
        } catch {
            logger.error("cannot sign the posture report", ("error", "\(error)"))
            signed = nil
        }
        if only == nil, let signed { latest = (report.json, signed) }
        logger.debug("posture run", ("reason", reason), ("status", report.status.rawValue), ("ms", "\(Int(milliseconds))"))
        return (report.json, signed)
    }

    /// One event per reported status change; the first run journals the failing and unknown
    /// checks only (a passing check needs no finding).
    private func journal(_ change: PostureHistory.Change, first: Bool) {
        if first && change.to == .pass { return }
        let severity: Severity = change.to == .fail ? .medium : change.to == .unknown ? .low : .informational
        recorder.record(Event(
            kind: "posture.changed", eventClass: .complianceFinding, activityID: change.from == nil ? 1 : 2, activityName: change.from == nil ? "Create" : "Update",
            time: Date(), severity: severity, status: change.to == .fail ? .failure : .success,
            message: "posture check \(change.id): \(change.from?.rawValue ?? "first run") → \(change.to.rawValue): \(change.evidence)",
            details: ["check": .string(change.id), "from": change.from.map { .string($0.rawValue) } ?? .null, "to": .string(change.to.rawValue), "evidence": .string(change.evidence)]
        ))
    }
}
