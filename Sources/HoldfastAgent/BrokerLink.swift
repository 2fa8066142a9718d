public import BrokerClient
import FoundationEssentials
public import HoldfastCore
public import HoldfastCrypto
public import HoldfastStore
public import Lockdown
import Posture
#if canImport(Glibc)
import Glibc
#endif

/// holdfastd's side of the broker (docs/broker-protocol.md): enrollment, attestation on start,
/// on a schedule and after every posture change, the grant that results, and the agents' signed
/// policy by long poll. The agent dials out; nothing listens.
public actor BrokerLink: Service {
    public nonisolated let name = "broker"
    static let enrollmentFile = "enrollment.json"
    static let policyFile = "broker-policy.jws"
    static let verdictFile = "verdict.jws"

    private let stateDirectory: String
    private let key: SigningKey
    private let attestInterval: Duration
    private let heartbeatInterval: Duration
    /// Each service's state, for the heartbeat.
    private let services: @Sendable () async -> [String: String]
    private let started = ContinuousClock.now
    private var lastHeartbeat: Date?
    private var heartbeatError: (at: Date, message: String)?
    private let policyWait: Int
    private let logger: Logger
    private let record: @Sendable (Event) -> Void
    private let posture: PostureService?
    /// Applies a verified agent policy; nil when applied, else why it was refused.
    private let applyPolicy: @Sendable (SignedAgentPolicy) async -> String?
    private let policyVersion: @Sendable () async -> Int64?
    /// Where the broker's lockdown commands go (nil: none are asked for).
    private let lockdown: LockdownController?
    /// The broker's addresses as met over the pinned TLS (the network lockdown allows these).
    private let brokerAddresses: BrokerAddresses
    /// Commands delivered but refused before they reached the lockdown (a signature or payload
    /// that does not verify): the poll moves past their claimed sequence, in memory only, so
    /// one bad document is one event, not one per poll.
    private var skippedCommandSequence: Int64 = 0
    /// Documents refused before they reached the lockdown (SHA-256): journaled once.
    private var refusedDocuments: Set<String> = []
    private var pendingAcknowledgements: [(sequence: Int64, applied: Bool, detail: String)] = []
    /// The journal whose events are uploaded (nil: no upload, as in tests of the other loops).
    private let journal: Journal?
    /// Events one upload carries at most (`[broker] upload_batch`), and their bytes.
    private let uploadBatch: Int
    static let uploadBytes = 1 << 20
    private var uploadedTotal: Int64 = 0
    private var uploadError: (at: Date, message: String)?
    private var lastUpload: Date?
    private var uploadWanted = false
    private var heartbeatWanted = false
    private var requestWanted = false
    /// Users' exception requests, sent to the broker; nil: none are taken.
    private let requests: AccessRequests?
    /// The offboarded users: a new enrollment starts them over before any command is fetched.
    private let revocations: UserRevocations?
    private var isolating = false

    private var session: BrokerSession?
    /// The enrollment file exists but cannot be used: shown, never taken for "unenrolled".
    private var recordProblem: String?
    private var grant: (token: String, expiresAt: Int64?, user: String?)?
    private var verdict: (decision: String, at: Date, denial: String?, failing: [String])?
    private var lastError: (at: Date, message: String)?
    private var lastAttempt: Date?
    private var triggered: String?
    /// The newest agent policy version refused (it parsed, but a section did not): not asked for
    /// again, so one bad version is one event, not one per poll.
    private var refusedPolicyVersion: Int64 = 0

    public init(
        stateDirectory: String, key: SigningKey, attestInterval: Duration, heartbeatInterval: Duration = .seconds(60), policyWait: Int, logger: Logger, posture: PostureService?,
        journal: Journal? = nil, uploadBatch: Int = 500, record: @escaping @Sendable (Event) -> Void, applyPolicy: @escaping @Sendable (SignedAgentPolicy) async -> String?,
        policyVersion: @escaping @Sendable () async -> Int64?, services: @escaping @Sendable () async -> [String: String] = { [:] },
        lockdown: LockdownController? = nil, brokerAddresses: BrokerAddresses = BrokerAddresses(), requests: AccessRequests? = nil,
        revocations: UserRevocations? = nil
    ) {
        self.lockdown = lockdown
        self.requests = requests
        self.revocations = revocations
        self.brokerAddresses = brokerAddresses
        self.stateDirectory = stateDirectory
        self.key = key
        self.attestInterval = attestInterval
        self.heartbeatInterval = heartbeatInterval
        self.services = services
        self.policyWait = policyWait
        self.logger = logger
        self.posture = posture
        self.record = record
        self.applyPolicy = applyPolicy
        self.policyVersion = policyVersion
        self.journal = journal
        self.uploadBatch = uploadBatch
        if SmallFile.exists(stateDirectory + "/" + Self.enrollmentFile), Self.loadRecord(stateDirectory: stateDirectory) == nil {
            recordProblem = "\(stateDirectory)/\(Self.enrollmentFile) exists but cannot be read or parsed (owner root, mode 0600, JSON)"
            logger.error("the enrollment cannot be read; this agent does not attest until it is fixed or removed", ("path", stateDirectory + "/" + Self.enrollmentFile))
        }
        if let stored = Self.loadRecord(stateDirectory: stateDirectory) {
            session = BrokerSession(record: stored, key: key, peers: brokerAddresses)
            // The last signed verdict survives a restart: a login while the broker is away is
            // judged by it (inside the offline grace window).
            if let bytes = try? SecureFile.readPrivate(stateDirectory + "/" + Self.verdictFile, owner: 0, maximumSize: 1 << 20),
               let verified = try? JWS.verify(String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }, keys: stored.verifyingKeys),
               verified.header.type == "holdfast-verdict+jws",
               let claims = try? JSONValue.parse(verified.payload),
               claims["device"]?.stringValue == stored.deviceID, let decision = claims["decision"]?.stringValue, let iat = claims["iat"]?.intValue {
                verdict = (decision, Date(timeIntervalSince1970: Double(iat)), nil, [])
            }
        }
    }

    // MARK: Stored state

    /// The enrollment saved by an earlier `holdfast enroll`, if any (a file that does not parse is
    /// an error the status shows, never a silent unenrollment).
    public static func loadRecord(stateDirectory: String) -> EnrollmentRecord? {
        guard let bytes = try? SecureFile.readPrivate(stateDirectory + "/" + enrollmentFile, owner: 0, maximumSize: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(EnrollmentRecord.self, from: Data(bytes))
    }

    /// The last agent policy accepted from the broker, verified again with the pinned keys.
    public static func storedPolicy(stateDirectory: String) -> SignedAgentPolicy? {
        guard let record = loadRecord(stateDirectory: stateDirectory),
              let bytes = try? SecureFile.readPrivate(stateDirectory + "/" + policyFile, owner: 0, maximumSize: 8 << 20) else { return nil }
        return try? BrokerSession.verifyPolicy(String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }, keys: record.verifyingKeys)
    }

    /// Keeps an applied policy as the last good one (0600).
    public static func savePolicy(_ policy: SignedAgentPolicy, stateDirectory: String) throws {
        try SecureFile.write(Array(policy.compact.utf8), to: stateDirectory + "/" + policyFile, mode: 0o600)
    }

    public var enrolled: Bool { session != nil }

    // MARK: Verbs

    /// `holdfast enroll --token T`.
    public func enroll(token text: String) async -> Result<EnrollmentRecord, BrokerClientError> {
        // An admin who removed the enrollment file means to enroll again (e.g. after `device remove`).
        if session != nil, !SmallFile.exists(stateDirectory + "/" + Self.enrollmentFile) {
            session = nil
            grant = nil
            verdict = nil
        }
        if let recordProblem, SmallFile.exists(stateDirectory + "/" + Self.enrollmentFile) {
            return .failure(BrokerClientError(.setup, "\(recordProblem); remove it to enroll again"))
        }
        recordProblem = nil
        if let session {
            return .failure(BrokerClientError(.setup, "already enrolled as \(session.record.deviceID) with \(session.record.url); unenroll on the broker and remove \(stateDirectory)/\(Self.enrollmentFile) first"))
        }
        let token: EnrollmentToken
        do {
            token = try EnrollmentToken(text)
        } catch {
            return .failure(error)
        }
        do {
            let enrollment = try await BrokerSession.enroll(token: token, key: key, facts: Self.facts())
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            try SecureFile.write(Array(try encoder.encode(enrollment)), to: stateDirectory + "/" + Self.enrollmentFile, mode: 0o600)
            // A new device id: the offboarded users start over before the session exists, so no
            // poll can apply this enrollment's offboardings first (the broker queued them all).
            await revocations?.startOver()
            session = BrokerSession(record: enrollment, key: key, peers: brokerAddresses)
            // A new device to the broker: its commands are numbered from 1.
            skippedCommandSequence = 0
            refusedDocuments = []
            pendingAcknowledgements = []
            await posture?.enrolled(as: enrollment.deviceID)
            record(Event(
                kind: "broker.enrolled", eventClass: .deviceConfigStateChange, activityID: 1, activityName: "Enroll", time: Date(), severity: .informational, status: .success,
                message: "enrolled with \(enrollment.url) as device \(enrollment.deviceID); CA and signing key pinned",
                details: ["device_id": .string(enrollment.deviceID), "url": .string(enrollment.url), "ca_sha256": .string(token.caFingerprint), "signing_key": .string(token.keyThumbprint)]))
            triggered = "enrolled"
            return .success(enrollment)
        } catch let error as BrokerClientError {
            record(Event(
                kind: "broker.enroll_failed", eventClass: .deviceConfigStateChange, activityID: 1, activityName: "Enroll", time: Date(), severity: .medium, status: .failure,
                message: "enrollment with \(token.url) failed: \(error.message)"))
            return .failure(error)
        } catch {
            return .failure(BrokerClientError(.setup, "cannot save the enrollment in \(stateDirectory): \(error)"))
        }
    }

    /// Follows a signing-key rotation: keys announced by a pinned key are pinned too (saved).
    /// True when a new key was pinned.
    func refreshKeys() async -> Bool {
        guard let session, let updated = try? await session.refreshKeys() else { return false }
        do {
            try saveRecord(updated)
        } catch {
            logger.error("cannot save the newly pinned broker key", ("error", "\(error)"))
            return false
        }
        let before = Set(session.record.keys.compactMap(\.kid))
        let after = Set(updated.keys.compactMap(\.kid))
        let added = after.subtracting(before).sorted()
        let dropped = before.subtracting(after).sorted()
        self.session = BrokerSession(record: updated, key: key, peers: brokerAddresses)
        if !added.isEmpty {
            record(Event(
                kind: "broker.key_pinned", eventClass: .deviceConfigStateChange, activityID: 2, activityName: "Update", time: Date(), severity: .informational, status: .success,
                message: "the broker rotated its signing key: pinned \(added.joined(separator: ", ")), announced by a key pinned before",
                details: ["keys": .array(added.map(JSONValue.string))]))
        }
        if !dropped.isEmpty {
            record(Event(
                kind: "broker.key_unpinned", eventClass: .deviceConfigStateChange, activityID: 2, activityName: "Update", time: Date(), severity: .informational, status: .success,
                message: "the broker retired its signing key \(dropped.joined(separator: ", ")); it is no longer trusted",
                details: ["keys": .array(dropped.map(JSONValue.string))]))
        }
        return !added.isEmpty
    }

    /// Attests now; when the broker's answer does not verify with the pinned keys, follows a key
    /// rotation (if one was announced by a pinned key) and tries once more.
    public func attestNow(user: String? = nil, timeout: Duration = .seconds(10), followRotation: Bool = true) async -> Result<AttestationOutcome, BrokerClientError> {
        let first = await attestOnce(user: user, timeout: timeout)
        if followRotation, case .failure(let error) = first, error.code == .invalid, await refreshKeys() {
            return await attestOnce(user: user, timeout: timeout)
        }
        return first
    }

    private func attestOnce(user: String?, timeout: Duration) async -> Result<AttestationOutcome, BrokerClientError> {
        guard let session else { return .failure(BrokerClientError(.setup, "not enrolled (holdfast enroll --token …)")) }
        guard let posture else { return .failure(BrokerClientError(.setup, "posture is off on this agent ([posture] enabled = no): nothing to attest")) }
        lastAttempt = Date()
        do {
            let started = ContinuousClock.now
            let nonce = try await session.challenge(timeout: timeout)
            let report = await posture.report(nonce: nonce, only: nil)
            guard let signed = report.signed else { throw BrokerClientError(.setup, "the posture report could not be signed") }
            let left = timeout - (ContinuousClock.now - started)
            guard left > .milliseconds(50) else { throw BrokerClientError(.transport, "no time left to send the report") }
            let outcome = try await session.attest(report: signed, nonce: nonce, user: user, timeout: left)
            try? SecureFile.write(Array(outcome.verdict.utf8), to: stateDirectory + "/" + Self.verdictFile, mode: 0o600)
            let failing = outcome.verdictClaims["blocking"].flatMap { value -> [String]? in
                guard case .array(let items) = value else { return nil }
                return items.compactMap { $0["id"]?.stringValue }
            } ?? []
            let previous = verdict?.decision
            verdict = (outcome.decision, Date(), outcome.denial, failing)
            if let token = outcome.grant { grant = (token, outcome.grantExpiresAt, user) } else { grant = nil }
            if previous != outcome.decision || lastError != nil {
                record(Event(
                    kind: "broker.verdict", eventClass: .complianceFinding, activityID: 2, activityName: "Update", time: Date(),
                    severity: outcome.decision == "compliant" ? .informational : .high, status: outcome.decision == "compliant" ? .success : .failure,
                    message: outcome.decision == "compliant" ? "the broker finds this device compliant; access granted" : "the broker denies access: \(outcome.denial ?? "non-compliant")",
                    details: ["decision": .string(outcome.decision), "failing": .array(failing.map(JSONValue.string))]))
            }
            lastError = nil
            return .success(outcome)
        } catch let error as BrokerClientError where user != nil && error.code == .status && error.status == 403 && error.message.contains("offboarded") {
            // One person refused (offboarded), not the device: its own state is untouched.
            return .failure(error)
        } catch {
            let message = (error as? BrokerClientError)?.message ?? "\(error)"
            if lastError == nil {
                record(Event(
                    kind: "broker.attest_failed", eventClass: .complianceFinding, activityID: 2, activityName: "Update", time: Date(), severity: .medium, status: .failure,
                    message: "attestation failed: \(message); the broker marks the device stale if this lasts"))
            }
            lastError = (Date(), message)
            logger.warning("attestation failed", ("error", message))
            return .failure((error as? BrokerClientError) ?? BrokerClientError(.transport, message))
        }
    }

    /// How a login check was decided.
    public enum LoginPath: String, Sendable {
        case exempt, fresh, cached, offlineDeny = "offline-deny", refused, unenrolled
    }

    /// The login check for PAM (docs/login-check.md): a fresh attestation for the user when the
    /// broker answers within `timeout`; else the last signed verdict inside `grace`; else deny.
    public func loginCheck(user: String, timeout: Duration, grace: Int64) async -> (allowed: Bool, path: LoginPath, reason: String) {
        guard session != nil else { return (false, .unenrolled, "this workstation is not enrolled with a broker") }
        // The attestation races the deadline: a broker that drops packets must not hold the login.
        let outcome: Result<AttestationOutcome, BrokerClientError>? = await withTaskGroup(of: Result<AttestationOutcome, BrokerClientError>?.self) { group in
            // No key-rotation retry on a login: it would outlive the deadline (the loop follows it).
            group.addTask { await self.attestNow(user: user, timeout: timeout, followRotation: false) }
            group.addTask {
                try? await Task.sleep(for: timeout + .milliseconds(100))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        switch outcome {
        case .success(let attested)?:
            if attested.decision == "compliant" { return (true, .fresh, "the broker finds this device compliant") }
            return (false, .fresh, attested.denial ?? "the broker finds this device non-compliant")
        case .failure(let error)? where error.code == .status:
            // The broker answered and refused (unenrolled, refused report): not an outage.
            return (false, .refused, error.message)
        default:
            guard let verdict else { return (false, .offlineDeny, "the broker did not answer and there is no earlier verdict") }
            let age = Int64(Date().timeIntervalSince(verdict.at))
            if verdict.decision == "compliant", age <= grace {
                return (true, .cached, "the broker did not answer; the verdict of \(verdict.at.formatted(.iso8601)) (\(age) s old) is inside the \(grace) s offline grace")
            }
            return (false, .offlineDeny, verdict.decision == "compliant"
                ? "the broker did not answer and the last verdict is \(age) s old (grace \(grace) s)"
                : "the broker did not answer and the last verdict was \(verdict.decision)")
        }
    }

    /// Asks for an attestation soon (posture changed).
    public func trigger(_ reason: String) { if triggered == nil { triggered = reason } }

    /// The current grant for `holdfast grant`: the token and when it expires; nil without one.
    public func currentGrant() -> JSONValue {
        var object: [String: JSONValue] = ["enrolled": .bool(session != nil)]
        if let session { object["device_id"] = .string(session.record.deviceID) }
        if let verdict {
            object["decision"] = .string(verdict.decision)
            object["verdict_at"] = .string(verdict.at.formatted(.iso8601))
            if let denial = verdict.denial { object["denial"] = .string(denial) }
        }
        if let grant, (grant.expiresAt ?? 0) > Int64(Date().timeIntervalSince1970) {
            object["grant"] = .string(grant.token)
            if let expires = grant.expiresAt { object["expires_at"] = .int(expires) }
            if let user = grant.user { object["user"] = .string(user) }
        }
        return .object(object)
    }

    /// For `holdfast status`.
    public func status() async -> JSONValue {
        if let recordProblem { return .object(["state": "unreadable", "last_error": .string(recordProblem)]) }
        guard let session else { return .object(["state": "unenrolled"]) }
        var object: [String: JSONValue] = ["state": "enrolled", "device_id": .string(session.record.deviceID), "url": .string(session.record.url)]
        if let verdict {
            object["decision"] = .string(verdict.decision)
            object["verdict_at"] = .string(verdict.at.formatted(.iso8601))
            if !verdict.failing.isEmpty { object["failing"] = .array(verdict.failing.map(JSONValue.string)) }
        }
        if let grant, let expires = grant.expiresAt { object["grant_expires_at"] = .int(expires) }
        if let lastError {
            object["last_error"] = .string(lastError.message)
            object["last_error_at"] = .string(lastError.at.formatted(.iso8601))
        }
        var upload: [String: JSONValue] = ["uploaded": .int(uploadedTotal)]
        if let lastUpload { upload["last_at"] = .string(lastUpload.formatted(.iso8601)) }
        if let uploadError {
            upload["last_error"] = .string(uploadError.message)
            upload["last_error_at"] = .string(uploadError.at.formatted(.iso8601))
        }
        object["upload"] = .object(upload)
        var heartbeat: [String: JSONValue] = [:]
        if let lastHeartbeat { heartbeat["last_at"] = .string(lastHeartbeat.formatted(.iso8601)) }
        if let heartbeatError {
            heartbeat["last_error"] = .string(heartbeatError.message)
            heartbeat["last_error_at"] = .string(heartbeatError.at.formatted(.iso8601))
        }
        object["heartbeat"] = .object(heartbeat)
        return .object(object)
    }

    /// Writes the enrollment (0600).
    private func saveRecord(_ record: EnrollmentRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try SecureFile.write(Array(try encoder.encode(record)), to: stateDirectory + "/" + Self.enrollmentFile, mode: 0o600)
    }

    /// An enrollment from before break-glass asks the broker for its secret once (with backoff
    /// until it has it): codes then work offline.
    private func breakglassSecretLoop() async throws {
        var failures = 0
        while !Task.isCancelled {
            guard let session else { return }
            if session.record.breakglassSecretBytes != nil { return }
            do {
                var updated = session.record
                updated.breakglassSecret = try await session.breakglassSecret()
                try saveRecord(updated)
                self.session = BrokerSession(record: updated, key: key, peers: brokerAddresses)
                logger.notice("the broker's break-glass secret is kept; break-glass codes work offline now")
                return
            } catch {
                failures += 1
                logger.debug("the break-glass secret could not be fetched", ("error", "\(error)"))
                try await Task.sleep(for: .seconds(Self.backoff(failures)))
            }
        }
    }

    // MARK: Loops

    public func run() async throws {
        while session == nil {
            try await Task.sleep(for: .milliseconds(500))
        }
        if let session { await posture?.enrolled(as: session.record.deviceID) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.attestLoop() }
            group.addTask { try await self.pollLoop() }
            group.addTask { try await self.uploadLoop() }
            group.addTask { try await self.heartbeatLoop() }
            group.addTask { try await self.breakglassSecretLoop() }
            group.addTask { try await self.requestLoop() }
            try await group.waitForAll()
        }
    }

    private func attestLoop() async throws {
        var failures = 0
        var keysChecked: ContinuousClock.Instant?
        while !Task.isCancelled {
            triggered = nil
            let ok: Bool
            switch await attestNow() {
            case .success: ok = true
            case .failure: ok = false
            }
            // After the first attestation and then hourly, the key list: follows rotations and
            // drops retired keys.
            if ok, keysChecked.map({ ContinuousClock.now - $0 > .seconds(3_600) }) ?? true {
                keysChecked = ContinuousClock.now
                _ = await refreshKeys()
            }
            failures = ok ? 0 : failures + 1
            // After a failure: 2, 4, 8 … s with jitter, never longer than the interval.
            let wait: Duration = ok ? attestInterval : min(attestInterval, .seconds(Self.backoff(failures)))
            let deadline = ContinuousClock.now + wait
            while ContinuousClock.now < deadline, triggered == nil, !Task.isCancelled {
                try await Task.sleep(for: .milliseconds(250))
            }
            if triggered != nil { try await Task.sleep(for: .seconds(1)) }
        }
    }

    /// Users' exception requests to the broker, oldest first, as soon as they are asked and
    /// again after a failure (2, 4 … 60 s): kept in the journal's state while the broker is away.
    /// A request the broker refuses as it is (400, or 403 for an offboarded user) is marked refused; one over its limit (429)
    /// waits like a failure.
    private func requestLoop() async throws {
        guard let requests else { return }
        var failures = 0
        while !Task.isCancelled {
            requestWanted = false
            let pending = await requests.unsent()
            guard let session, !pending.isEmpty else {
                for _ in 0..<8 where !requestWanted && !Task.isCancelled { try await Task.sleep(for: .milliseconds(125)) }
                continue
            }
            var failed = false
            for request in pending {
                do {
                    let number = try await session.submitRequest(request)
                    await requests.sent(request.id, number: number)
                } catch where error.code == .status && (error.status == 400 || (error.status == 403 && error.message.contains("offboarded"))) {
                    await requests.refusedByBroker(request.id, why: error.message)
                } catch where error.code == .status && error.status == 429 && error.message.contains("waiting for a decision") {
                    // The device's queue at the broker is full: retried with the backoff.
                    failed = true
                    break
                } catch {
                    logger.warning("a request could not reach the broker; it stays queued", ("error", error.message))
                    failed = true
                    break
                }
            }
            failures = failed ? failures + 1 : 0
            if failed { try await Task.sleep(for: .seconds(Self.backoff(failures))) }
        }
    }

    /// A request was queued: send it now.
    public func requestSoon() { requestWanted = true }

    /// Between attestations, every `heartbeatInterval` (±10 %, so a fleet restarted together does
    /// not beat together): alive, and how. When the broker asks (no usable attestation: never,
    /// stale, or under an older compliance policy), the attestation loop attests at once.
    private func heartbeatLoop() async throws {
        var failures = 0
        while !Task.isCancelled {
            // Sooner when the lockdown changed (the broker shows what is in force), and after a
            // failure (2, 4 … s): a broker back from an outage hears from the fleet within seconds.
            let interval = heartbeatInterval * Double.random(in: 0.9...1.1)
            let due = ContinuousClock.now + (failures == 0 ? interval : min(interval, .seconds(Self.backoff(failures))))
            while ContinuousClock.now < due, !heartbeatWanted, !Task.isCancelled { try await Task.sleep(for: .milliseconds(250)) }
            heartbeatWanted = false
            guard let session else { continue }
            var health: [String: JSONValue] = [
                "agent_version": .string(HoldfastVersion.current),
                "uptime_s": .int((ContinuousClock.now - started).components.seconds),
                "services": .object(await services().mapValues(JSONValue.string)),
            ]
            if let pending = try? journal?.stats().pendingUpload { health["pending_events"] = .int(pending) }
            if let version = await policyVersion() { health["policy_version"] = .int(version) }
            if let verdict { health["decision"] = .string(verdict.decision) }
            if let lockdown { health["lockdown"] = await lockdown.reportedState() }
            do {
                if try await session.heartbeat(.object(health)) { trigger("the broker asked for an attestation") }
                lastHeartbeat = Date()
                heartbeatError = nil
                failures = 0
            } catch {
                failures += 1
                heartbeatError = (Date(), error.message)
                logger.debug("heartbeat failed", ("error", error.message))
                // A broker from before heartbeats (404) is asked again hourly, not every minute:
                // upgrade the brokers first, the agents after (docs/broker-protocol.md).
                if error.status == 404 { try await Task.sleep(for: .seconds(3_600)) }
            }
        }
    }

    /// Exponential backoff with jitter, seconds: 2^n capped at 60, ±25 %.
    static func backoff(_ failures: Int) -> Double {
        let base = min(60.0, Double(1 << min(failures, 6)))
        return base * Double.random(in: 0.75...1.25)
    }

    /// The one long poll: the agents' policy and the lockdown commands, whichever comes first.
    private func pollLoop() async throws {
        var failures = 0
        var idleCommandPolls = 0
        while !Task.isCancelled {
            // Between an unenrollment and the next enrollment there is no one to ask.
            guard let session else {
                try await Task.sleep(for: .seconds(1))
                continue
            }
            let inForce = await policyVersion() ?? 0
            let after = max(inForce, refusedPolicyVersion)
            let commandAfter = max(await lockdown?.lastCommandSequence(for: session.record.deviceID) ?? 0, skippedCommandSequence)
            do {
                await flushAcknowledgements(session)
                if let answer = try await session.poll(policyAfter: after, commandAfter: commandAfter, wait: policyWait) {
                    // Nothing new came of the commands (one the journal could not take, or only
                    // documents refused before): ask again, not at once.
                    if !answer.commands.isEmpty, await !obey(answer.commands, session: session) {
                        idleCommandPolls += 1
                        try await Task.sleep(for: .seconds(Self.backoff(idleCommandPolls)))
                    } else {
                        idleCommandPolls = 0
                    }
                    if let compact = answer.policy { try await adopt(try session.verifyPolicy(compact), after: after, session: session) }
                }
                failures = 0
            } catch let error as BrokerClientError {
                failures += 1
                if error.code == .invalid, await refreshKeys() { continue }
                if error.code == .invalid {
                    record(Event(
                        kind: "policy.refused", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Refuse", time: Date(), severity: .high, status: .failure,
                        message: "an agent policy from the broker was refused (\(error.message)); the policy in force stays"))
                }
                logger.warning("broker poll failed", ("error", error.message))
                try await Task.sleep(for: .seconds(Self.backoff(failures)))
            }
        }
    }

    /// A verified agent policy from the poll: applied when newer than the one in force.
    private func adopt(_ policy: SignedAgentPolicy, after: Int64, session: BrokerSession) async throws {
        if policy.version <= after {
            // Never roll back: an older version than the one in force is refused.
            try? await session.acknowledge(version: policy.version, applied: false, detail: "not newer than version \(after)")
            refusedPolicyVersion = max(refusedPolicyVersion, policy.version)
            try await Task.sleep(for: .seconds(Self.backoff(3)))
        } else if let refusal = await applyPolicy(policy) {
            try? await session.acknowledge(version: policy.version, applied: false, detail: refusal)
            // Not asked for again until a newer version comes.
            refusedPolicyVersion = policy.version
        } else {
            try? await session.acknowledge(version: policy.version, applied: true, detail: "")
        }
    }

    /// Lockdown commands from the poll, oldest first: each verified with the pinned keys, then
    /// applied (or refused) by the lockdown, and acknowledged under the broker's sequence with the
    /// state that resulted. False when nothing new came of it (the poll then waits before asking
    /// again): a command the journal could not take (the rest of the batch waits for it), or
    /// only documents refused before.
    private func obey(_ delivered: [(sequence: Int64, document: String)], session: BrokerSession) async -> Bool {
        guard let lockdown else { return true }
        var progressed = false
        var keys = session.record.verifyingKeys
        for (sequence, compact) in delivered {
            // A document that did not verify is refused and journaled once; it is not moved past
            // (its sequence is the broker's word, not a signed one): a later genuine command in
            // the same answer is applied all the same.
            let digest = SHA256.hex(Array(compact.utf8))
            if refusedDocuments.contains(digest) { continue }
            var verified = BrokerSession.verifyCommand(compact, keys: keys)
            // A command signed by a key the broker rotated to: follow the rotation once.
            if case .failure(let refusal) = verified, refusal.reason == "bad-signature", await refreshKeys(), let renewed = self.session {
                keys = renewed.record.verifyingKeys
                verified = BrokerSession.verifyCommand(compact, keys: keys)
            }
            let outcome: LockdownController.CommandOutcome
            switch verified {
            case .success(let command):
                outcome = await lockdown.apply(command, device: session.record.deviceID)
            case .failure(let refusal):
                outcome = await lockdown.refuseCommand(refusal.reason, refusal.message, sequence: sequence)
                if refusedDocuments.count >= 1_000 { refusedDocuments.removeAll() }
                refusedDocuments.insert(digest)
            }
            switch outcome {
            case .refused(let reason, _) where reason == "storage":
                // Not acknowledged (the broker keeps it queued), and nothing after it is applied
                // before it: order is the admin's.
                return progressed
            case .applied(let changed):
                progressed = true
                await acknowledge(session, sequence, applied: true, detail: changed.isEmpty ? "no change" : "changed \(changed.map(\.rawValue).joined(separator: ","))")
            case .done(let detail):
                progressed = true
                await acknowledge(session, sequence, applied: true, detail: detail)
            case .refused(let reason, let message):
                progressed = true
                // Authentic, but another device's or an old sequence: never applied, moved past
                // (in memory; an expired one is done with in the lockdown's own state).
                if case .success = verified, ["other-device", "replayed"].contains(reason) { skippedCommandSequence = max(skippedCommandSequence, sequence) }
                await acknowledge(session, sequence, applied: false, detail: "\(reason): \(message)")
            }
        }
        return progressed
    }

    /// Tells the broker what became of a command; one that does not reach it is sent again
    /// before the next poll (the broker would show it queued forever otherwise).
    private func acknowledge(_ session: BrokerSession, _ sequence: Int64, applied: Bool, detail: String) async {
        let state = await lockdown?.reportedState() ?? .object([:])
        do {
            try await session.acknowledgeCommand(sequence: sequence, applied: applied, detail: detail, state: state)
        } catch {
            if pendingAcknowledgements.count < 256 { pendingAcknowledgements.append((sequence, applied, detail)) }
        }
    }

    /// Acknowledgements that did not reach the broker, sent again (oldest first).
    private func flushAcknowledgements(_ session: BrokerSession) async {
        guard !pendingAcknowledgements.isEmpty else { return }
        let pending = pendingAcknowledgements
        pendingAcknowledgements = []
        for (sequence, applied, detail) in pending { await acknowledge(session, sequence, applied: applied, detail: detail) }
    }

    /// The lockdown changed: tell the broker with the next beat, now.
    public func beatSoon() { heartbeatWanted = true }

    /// New events were journaled: upload soon.
    public func uploadSoon() { uploadWanted = true }

    /// The journal to the broker, oldest first, in batches; an event is marked uploaded only after
    /// the broker answered 200 for its batch (committed). A failure keeps the batch and backs off
    /// (2, 4 … 60 s with jitter); an agent killed between the broker's commit and the mark sends
    /// the batch again, and the broker counts it as duplicates: nothing lost, nothing twice.
    private func uploadLoop() async throws {
        guard let journal else { return }
        var failures = 0
        while !Task.isCancelled {
            guard let session else {
                try await Task.sleep(for: .seconds(1))
                continue
            }
            uploadWanted = false
            let pending: [JournalEntry]
            do {
                pending = try journal.pendingUpload(limit: uploadBatch)
            } catch {
                logger.error("cannot read the journal for upload", ("error", "\(error)"))
                try await Task.sleep(for: .seconds(5))
                continue
            }
            if pending.isEmpty {
                // Idle: look again in a second (other processes append too), sooner when told.
                for _ in 0..<8 where !uploadWanted && !Task.isCancelled { try await Task.sleep(for: .milliseconds(125)) }
                continue
            }
            var batch: [JournalEntry] = []
            var bytes = 0
            // After the broker refused a batch, events go one at a time until the refused one is
            // found: one bad event must not hold back every event after it.
            for entry in pending where batch.isEmpty || (!isolating && bytes + entry.body.count <= Self.uploadBytes) {
                batch.append(entry)
                bytes += entry.body.count
            }
            do {
                _ = try await session.uploadEvents(batch.map(\.body))
                try journal.markUploaded(batch.map(\.id))
                uploadedTotal += Int64(batch.count)
                lastUpload = Date()
                uploadError = nil
                failures = 0
                if batch.count == 1 { isolating = false }
            } catch let error as BrokerClientError where error.code == .status && [400, 413].contains(error.status ?? 0) {
                if batch.count > 1 {
                    isolating = true
                    continue
                }
                // This one event is refused by the broker as it is: set aside (marked, so the rest
                // flows), and said loudly — the refusal is itself an event, which uploads.
                if let refused = batch.first {
                    _ = try? journal.markUploaded([refused.id])
                    record(Event(
                        kind: "broker.event_refused", eventClass: .eventLogActivity, activityID: 99, activityName: "Refuse", time: Date(), severity: .high, status: .failure,
                        message: "the broker refused journal event \(refused.id) (\(refused.kind), \(refused.body.count) bytes): \(error.message); it stays in the local journal only",
                        details: ["event_id": .int(refused.id), "event_uuid": .string(refused.uuid.uuidString.lowercased()), "kind": .string(refused.kind), "reason": .string(error.message)]))
                }
                isolating = false
            } catch {
                failures += 1
                let message = (error as? BrokerClientError)?.message ?? "\(error)"
                if uploadError == nil { logger.warning("event upload failed; the events stay in the journal", ("error", message)) }
                uploadError = (Date(), message)
                try await Task.sleep(for: .seconds(Self.backoff(failures)))
            }
        }
    }

    // MARK: Facts

    static func facts() -> DeviceFacts {
        func line(_ path: String) -> String? {
            guard let bytes = SmallFile.read(path, limit: 4_096) else { return nil }
            let text = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init)
            return text?.isEmpty == false ? text : nil
        }
        var host = [CChar](repeating: 0, count: 256)
        let hostname = gethostname(&host, host.count) == 0 ? String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        var os: String?
        if let bytes = SmallFile.read("/etc/os-release", limit: 16_384) {
            for entry in String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline) where entry.hasPrefix("PRETTY_NAME=") {
                os = String(entry.dropFirst(12)).filter { $0 != "\"" }
            }
        }
        return DeviceFacts(machineID: line("/etc/machine-id"), dmiSerial: line("/sys/class/dmi/id/product_serial"), hostname: hostname, os: os)
    }
}
