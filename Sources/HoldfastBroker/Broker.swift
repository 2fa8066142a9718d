import FoundationEssentials
public import HoldfastCore
public import HoldfastCrypto
public import HoldfastStore
import Synchronization

/// How the broker behaves: who it says it is, how long what it signs stays valid.
public struct BrokerSettings: Sendable {
    /// `iss` of grants and verdicts: the broker's URL as agents and gateways know it.
    public var issuer: String
    /// `aud` of grants.
    public var audience: String
    /// Grant lifetime in seconds (default 10 minutes).
    public var grantLifetime: Int64
    /// Challenge lifetime in seconds.
    public var nonceLifetime: Int64
    /// A device that has not attested for this long is stale: its grants stop being honoured.
    public var staleAfter: Int64
    /// Clock skew tolerated on device-signed requests, seconds.
    public var skew: Int64
    /// Longest a long poll is held, seconds.
    public var maximumWait: Int64

    public init(issuer: String, audience: String = "holdfast", grantLifetime: Int64 = 600, nonceLifetime: Int64 = 60, staleAfter: Int64 = 900, skew: Int64 = 120,
                maximumWait: Int64 = 55) {
        self.issuer = issuer
        self.audience = audience
        self.grantLifetime = grantLifetime
        self.nonceLifetime = nonceLifetime
        self.staleAfter = staleAfter
        self.skew = skew
        self.maximumWait = maximumWait
    }
}

/// The broker's signing keys: the current one signs; during a rotation the previous one is still
/// published (JWKS) and accepted, and the announcement of the new key, signed by the old one, is
/// served so pinned agents can move over.
public struct BrokerKeys: Sendable {
    public var current: SigningKey
    public var previous: [VerifyingKey]
    /// Compact JWS documents (`holdfast-key-rotation+jws`), each signed by an older key.
    public var announcements: [String]

    public init(current: SigningKey, previous: [VerifyingKey] = [], announcements: [String] = []) {
        self.current = current
        self.previous = previous
        self.announcements = announcements
    }

    public var verifying: VerifyingKeySet { VerifyingKeySet([current.publicKey] + previous) }
    public var jwks: JWKSet { JWKSet(keys: ([current.publicKey] + previous).map(\.jwk)) }
}

/// The reference broker's HTTP API (docs/broker-protocol.md): enrollment, challenge →
/// signed report → verdict and grant, `/v1/authz` for gateways, the JWKS, and the agents'
/// signed policy by long poll. Thread-safe: libmicrohttpd calls `handle` from its threads.
public final class Broker: Sendable {
    public static let grantType = "JWT"
    public static let verdictType = "holdfast-verdict+jws"
    public static let requestType = "holdfast-request+jws"
    public static let enrollType = "holdfast-enroll+jws"
    public static let agentPolicyType = "holdfast-policy+jws"
    public static let rotationType = "holdfast-key-rotation+jws"
    /// The `Authorization` scheme of device-signed requests.
    public static let deviceScheme = "Holdfast-Device"

    let storage: any BrokerStorage
    let keys: BrokerKeys
    let settings: BrokerSettings
    let caPEM: String
    let clock: any TimeSource
    let logger: Logger
    /// The latest agent policy, re-read at most every half second: thousands of held long polls
    /// ask, and the admin CLI writes from another process.
    private let agentPolicyCache = Mutex<(checked: ContinuousClock.Instant?, document: VersionedDocument?)>((nil, nil))
    /// Each device's highest queued command sequence, and the newest command row seen
    /// (`queuedSequence`, Commands.swift).
    let commandCache = Mutex<(checked: ContinuousClock.Instant?, row: Int64, latest: [String: Int64])>((nil, 0, [:]))
    /// The users offboarded now (Offboarding.swift), refreshed when the table changes.
    /// `change` starts below any the store reports, so the first look reads the list.
    let offboardingCache = Mutex<(change: Int64, users: [String: OffboardingRecord])>((-1, [:]))
    /// The parsed compliance policy by its version: every authz asks for the latest version
    /// number (one indexed read), and parses only when it changed — so `policy set` from the
    /// admin CLI applies to the very next request.
    private let complianceCache = Mutex<(version: Int64, policy: PolicyInForce)?>(nil)
    /// Parsed evidence of each device's latest report, by its row (bounded).
    private let evidenceCache = Mutex<[String: (sequence: Int64, evidence: PostureEvidence?)]>([:])
    /// When each device was last marked seen: the write happens at most once a minute.
    private let seenCache = Mutex<[String: Int64]>([:])
    /// Parsed device keys (`verifyingKey`).
    private let deviceKeys = Mutex<[[UInt8]: VerifyingKey]>([:])
    /// Request ids (`jti`) seen inside the skew window, per device: a captured request is not
    /// accepted twice (one broker process; several behind a balancer each keep their own).
    private let seenRequests = Mutex<[String: [String: Int64]]>([:])
    /// Requests one device may make inside the replay window (2 × skew).
    static let maximumRequestsPerWindow = 1_024
    /// Refusals of unauthenticated requests are counted and logged at a bounded rate, never
    /// written to the trail: anyone can send them.
    private let unauthenticatedLog = RateLimiter(burst: 20, perSecond: 1)
    private let unauthenticatedRefusals = Atomic<Int>(0)
    /// Challenges one device may hold unanswered.
    static let maximumOutstandingNonces = 16
    /// The body each route may carry (bodies are buffered; GETs carry none).
    public static let bodyLimits = ["/v1/enroll": 16_384, "/v1/challenge": 1_024, "/v1/attest": 262_144, "/v1/agent-policy/ack": 4_096, "/v1/events": 2 << 20, "/v1/heartbeat": 8_192,
                                    "/v1/commands/ack": 4_096, "/v1/breakglass-secret": 1_024, "/v1/requests": 4_096]
    static let deviceRoutes: Set<String> = [
        "/v1/challenge", "/v1/attest", "/v1/agent-policy", "/v1/agent-policy/ack", "/v1/events", "/v1/heartbeat", "/v1/poll", "/v1/commands/ack", "/v1/breakglass-secret",
        "/v1/requests",
    ]
    /// Events one upload may carry.
    public static let maximumEventsPerUpload = 1_000

    public init(storage: any BrokerStorage, keys: BrokerKeys, settings: BrokerSettings, caPEM: String, clock: any TimeSource = SystemTimeSource(), logger: Logger) {
        self.storage = storage
        self.keys = keys
        self.settings = settings
        self.caPEM = caPEM
        self.clock = clock
        self.logger = logger
    }

    var now: Int64 { Int64(clock.now().timeIntervalSince1970.rounded(.down)) }

    // MARK: Routing

    /// Every path the broker answers (anything else is 404 before a body is read).
    static let knownPaths: Set<String> = [
        "/.well-known/jwks.json", "/v1/ca.pem", "/v1/keys", "/v1/authz", "/v1/health", "/v1/enroll", "/v1/challenge", "/v1/attest", "/v1/agent-policy",
        "/v1/agent-policy/ack", "/v1/events", "/v1/heartbeat", "/v1/poll", "/v1/commands/ack", "/v1/breakglass-secret",
        "/v1/requests",
    ]

    /// Before any body is read: an unknown path is 404, and a device route needs a device
    /// signature that verifies (everything but the body hash and the replay check, which need the
    /// body) — so only enrolled devices can make the broker buffer a body.
    /// The verified signature travels to the handler (`HTTPRequest.screened`), which then only
    /// checks the body hash and the replay cache.
    public func early(method: String, path: String, headers: [String: String]) -> EarlyDecision {
        guard Self.knownPaths.contains(path) else {
            noteUnauthenticated("unknown path")
            return .refuse(.error(404, "not-found", "no such endpoint", headers: ["Connection": "close"]))
        }
        guard Self.deviceRoutes.contains(path) else { return .proceed(nil) }
        let request = HTTPRequest(method: method, path: path, headers: headers)
        switch verifyDeviceSignature(request) {
        case .success(let verified):
            return .proceed(ScreenedSignature(method: method, path: path, authorization: request.header("authorization") ?? "", device: verified.0, claims: verified.1, at: now))
        case .failure(var response):
            response.headers["Connection"] = "close"
            return .refuse(response)
        }
    }

    /// A device signature `early` verified, for exactly this method, path and Authorization,
    /// and when. A body that took longer than `screenedFor` to arrive (trickled, to outlast the
    /// replay window) is verified again, clock skew and unenrollment included.
    struct ScreenedSignature: Sendable {
        let method: String
        let path: String
        let authorization: String
        let device: EnrolledDevice
        let claims: JSONValue
        let at: Int64
    }

    static let screenedFor: Int64 = 30
    /// How many unauthenticated requests were refused since start.
    public var unauthenticatedRefusalCount: Int { unauthenticatedRefusals.load(ordering: .relaxed) }

    func noteUnauthenticated(_ reason: String) {
        unauthenticatedRefusals.add(1, ordering: .relaxed)
        let admitted = unauthenticatedLog.admit("unauthenticated")
        if admitted.allowed {
            logger.warning("refused an unauthenticated request", ("reason", reason), ("suppressed", "\(admitted.suppressed)"))
        }
    }

    public func handle(_ request: HTTPRequest) -> HTTPHandling {
        let path = request.path
        switch (request.method, path) {
        case ("GET", "/.well-known/jwks.json"):
            return .respond(jwks())
        case ("GET", "/v1/ca.pem"):
            return .respond(HTTPResponse(status: 200, headers: ["Content-Type": "application/x-pem-file"], body: Array(caPEM.utf8)))
        case ("GET", "/v1/keys"):
            return .respond(keyDocument())
        case ("GET", "/v1/authz"):
            return .respond(authorize(request))
        case ("GET", "/v1/health"):
            return .respond(.json(200, .object(["status": "ok"])))
        case ("POST", "/v1/enroll"):
            return .respond(enroll(request))
        case ("POST", "/v1/challenge"):
            return .respond(challenge(request))
        case ("POST", "/v1/attest"):
            return .respond(attest(request))
        case ("GET", "/v1/agent-policy"):
            return agentPolicy(request)
        case ("POST", "/v1/agent-policy/ack"):
            return .respond(acknowledgePolicy(request))
        case ("POST", "/v1/events"):
            return .respond(receiveEvents(request))
        case ("POST", "/v1/heartbeat"):
            return .respond(heartbeat(request))
        case ("GET", "/v1/poll"):
            return poll(request)
        case ("POST", "/v1/commands/ack"):
            return .respond(acknowledgeCommand(request))
        case ("POST", "/v1/breakglass-secret"):
            return .respond(breakglassSecret(request))
        case ("POST", "/v1/requests"):
            return .respond(receiveRequest(request))
        default:
            if Self.knownPaths.contains(path) { return .respond(.error(405, "method-not-allowed", "\(request.method) is not allowed on \(path)")) }
            return .respond(.error(404, "not-found", "no such endpoint"))
        }
    }

    // MARK: Keys

    func jwks() -> HTTPResponse {
        var response = HTTPResponse.json(200, jsonValue(keys.jwks))
        response.headers["Cache-Control"] = "max-age=300"
        return response
    }

    func keyDocument() -> HTTPResponse {
        .json(200, .object(["keys": jsonValue(keys.jwks)["keys"] ?? .array([]), "announcements": .array(keys.announcements.map(JSONValue.string))]))
    }

    func jsonValue(_ value: some Encodable) -> JSONValue {
        guard let data = try? JSONEncoder().encode(value), let decoded = try? JSONDecoder().decode(JSONValue.self, from: data) else { return .null }
        return decoded
    }

    // MARK: Enrollment

    /// `POST /v1/enroll`: a JWS signed by the new device key over `{secret, key (JWK), facts, iat}`
    /// — the signature proves the agent holds the key it registers.
    func enroll(_ request: HTTPRequest) -> HTTPResponse {
        let body = trimmed(String(decoding: request.body, as: UTF8.self))
        let payload: JSONValue
        let key: VerifyingKey
        do {
            let unverified = try JWS.inspectUnverified(body)
            guard unverified.header.type == Self.enrollType else { return unauthenticated(400, "bad-request", "the body must be a \(Self.enrollType) document") }
            payload = try Self.parseObject(unverified.payload)
            guard let jwkValue = payload["key"], let jwk = try? JSONDecoder().decode(JWK.self, from: JSONEncoder().encode(jwkValue)) else {
                return unauthenticated(400, "bad-request", "the enrollment carries no device key (key: JWK)")
            }
            key = try VerifyingKey(jwk: jwk)
            _ = try JWS.verify(body, key: key)
        } catch {
            return unauthenticated(400, "bad-request", "the enrollment request is not a document signed by the key it carries")
        }
        guard let iat = payload["iat"]?.intValue, isWithinSkew(iat) else {
            return unauthenticated(400, "clock", "the enrollment is not dated within \(settings.skew) s of the broker's clock")
        }
        guard let secret = payload["secret"]?.stringValue, !secret.isEmpty, secret.utf8.count <= 128 else {
            return unauthenticated(400, "bad-request", "the enrollment carries no token secret")
        }
        var facts: [String: JSONValue] = [:]
        if case .object(let given)? = payload["facts"] {
            for name in ["machine_id", "dmi_serial", "hostname", "os", "agent_version"] {
                if let value = given[name]?.stringValue, value.utf8.count <= 256 { facts[name] = .string(value) }
            }
        }
        let id: String
        let breakglass: [UInt8]
        do {
            id = "hf-" + Hex.encode(try SecureRandom.bytes(8))
            breakglass = try SecureRandom.bytes(32)
        } catch {
            return .error(500, "internal", "no randomness")
        }
        let factsText = JSONValue.object(facts).compactText
        var enrolled = EnrolledDevice(id: id, publicKey: key.rawRepresentation, facts: factsText, enrolledAt: now)
        enrolled.breakglassSecret = breakglass
        do {
            switch try storage.enroll(enrolled, tokenHash: SHA256.hash(Array(secret.utf8))) {
            case .accepted: break
            // Anyone can send a made-up secret: counted, not written to the trail.
            case .unknown: return unauthenticated(403, "token-unknown", "not a valid enrollment token")
            // A spent or expired secret proves nothing about its holder either: counted only.
            case .used: return unauthenticated(403, "token-used", "this enrollment token was used already; tokens are single use")
            case .expired: return unauthenticated(403, "token-expired", "this enrollment token has expired")
            case .keyEnrolled:
                return refuse("", "enroll.refused", 409, "key-enrolled", "this device key is enrolled already (the token was not used); unenroll that device first (holdfast-broker device remove ID)")
            }
            try storage.log(BrokerLogEntry(time: now, device: id, kind: "enroll", detail: "key \(key.thumbprint) facts \(factsText)"))
        } catch {
            logger.error("enrollment failed in storage", ("error", "\(error)"))
            return .error(503, "storage", "the broker cannot record the enrollment now; retry")
        }
        do {
            // The offboardings in force reach a new device before anything else it is sent.
            try queueOffboardings(device: id)
        } catch {
            // Enrolled all the same (the token is spent): offboard-status shows it `not-sent`,
            // and the broker's authz and attestation refuse those users for it regardless.
            logger.error("cannot queue the offboardings for a new device", ("device.id", id), ("error", "\(error)"))
        }
        logger.notice("device enrolled", ("device.id", id), ("device.key", key.thumbprint))
        return .json(200, .object([
            "device_id": .string(id), "issuer": .string(settings.issuer), "audience": .string(settings.audience),
            "keys": jsonValue(keys.jwks)["keys"] ?? .array([]),
            // Break-glass codes derive from it; only this answer, over the pinned TLS, carries it.
            "breakglass_secret": .string(Base64URL.encode(breakglass)),
        ]))
    }

    // MARK: Device-signed requests

    /// The device behind a `Holdfast-Device <JWS>` request: the JWS, signed by an enrolled
    /// device's key, names the method, the path, the body's SHA-256 and a time within the skew.
    func authenticate(_ request: HTTPRequest) -> Authenticated {
        let device: EnrolledDevice
        let claims: JSONValue
        if let screened = request.screened as? ScreenedSignature, screened.method == request.method, screened.path == request.path,
            screened.authorization == request.header("authorization"), now - screened.at <= Self.screenedFor
        {
            (device, claims) = (screened.device, screened.claims)
        } else {
            switch verifyDeviceSignature(request) {
            case .success(let verified):
                (device, claims) = verified
            case .failure(let response):
                return .failure(response)
            }
        }
        guard claims["bh"]?.stringValue == Base64URL.encode(SHA256.hash(request.body)) else {
            return .failure(refuse(device.id, "request.refused", 401, "wrong-body", "the signature does not cover this body"))
        }
        guard let jti = claims["jti"]?.stringValue, !jti.isEmpty, jti.utf8.count <= 64 else {
            return .failure(refuse(device.id, "request.refused", 401, "no-request-id", "the request carries no jti"))
        }
        let current = now
        let window = 2 * settings.skew + 1
        // Per device, at most `maximumRequestsPerWindow` ids inside the window: bounded memory and
        // bounded work per request, whatever one device sends.
        let fresh = seenRequests.withLock { all -> Bool? in
            var seen = all[device.id] ?? [:]
            if let until = seen[jti], until > current { return false }
            if seen.count >= Self.maximumRequestsPerWindow { seen = seen.filter { $0.value > current } }
            guard seen.count < Self.maximumRequestsPerWindow else { return nil }
            seen[jti] = current + window
            all[device.id] = seen
            return true
        }
        switch fresh {
        case true?: break
        case false?: return .failure(refuse(device.id, "request.refused", 401, "replayed", "this request was seen already (replay)"))
        case nil: return .failure(.error(429, "too-many-requests", "more than \(Self.maximumRequestsPerWindow) requests in \(window) s from this device"))
        }
        let due = seenCache.withLock { seen -> Bool in
            if let last = seen[device.id], current - last < 60 { return false }
            if seen.count > 100_000 { seen.removeAll() }
            seen[device.id] = current
            return true
        }
        if due { try? storage.markSeen(device: device.id, at: current) }
        return .success(device)
    }

    enum Verified {
        case success((EnrolledDevice, JSONValue))
        case failure(HTTPResponse)
    }

    /// The device behind a `Holdfast-Device <JWS>` header: signed by an enrolled, not removed
    /// device's key, for this method and path, dated within the skew. The body hash and the
    /// replay check come after the body (`authenticate`).
    func verifyDeviceSignature(_ request: HTTPRequest) -> Verified {
        guard let header = request.header("authorization"), header.hasPrefix(Self.deviceScheme + " ") else {
            return .failure(unauthenticated(401, "unauthenticated", "this endpoint needs a device-signed request (Authorization: \(Self.deviceScheme) …)"))
        }
        let token = String(header.dropFirst(Self.deviceScheme.count + 1))
        let id: String
        do {
            let unverified = try JWS.inspectUnverified(token)
            guard unverified.header.type == Self.requestType else { return .failure(unauthenticated(401, "unauthenticated", "not a \(Self.requestType) document")) }
            let unverifiedClaims = try Self.parseObject(unverified.payload)
            guard let named = unverifiedClaims["sub"]?.stringValue, RemoteCommand.isDeviceID(named) else { return .failure(unauthenticated(401, "unauthenticated", "the request names no device")) }
            id = named
        } catch {
            return .failure(unauthenticated(401, "unauthenticated", "the request is not a signed document"))
        }
        let device: EnrolledDevice
        do {
            guard let found = try storage.device(id: id) else { return .failure(unauthenticated(401, "unknown-device", "no such device")) }
            device = found
        } catch {
            logger.error("device lookup failed", ("error", "\(error)"))
            return .failure(.error(503, "storage", "the broker cannot read its state now; retry"))
        }
        // The signature first, even for a removed device: only its own key can write to its trail.
        let claims: JSONValue
        do {
            let verified = try JWS.verify(token, key: try verifyingKey(device))
            claims = try Self.parseObject(verified.payload)
        } catch {
            return .failure(unauthenticated(401, "bad-signature", "the request signature does not verify"))
        }
        guard device.removedAt == nil else { return .failure(refuse(id, "request.refused", 401, "removed", "this device was unenrolled")) }
        guard claims["htm"]?.stringValue == request.method, claims["htu"]?.stringValue == request.path else {
            return .failure(refuse(device.id, "request.refused", 401, "wrong-request", "the signature is for another request"))
        }
        guard let iat = claims["iat"]?.intValue, isWithinSkew(iat) else {
            return .failure(refuse(device.id, "request.refused", 401, "clock", "the request is not dated within \(settings.skew) s of the broker's clock"))
        }
        return .success((device, claims))
    }

    /// A device's key, parsed once (an OpenSSL key and its thumbprint per request were a
    /// measurable part of an attestation); keyed by the key bytes, so a re-enrolled device's new
    /// key is a new entry. Bounded: emptied past 200,000 keys.
    func verifyingKey(_ device: EnrolledDevice) throws(CryptoError) -> VerifyingKey {
        if let known = deviceKeys.withLock({ $0[device.publicKey] }) { return known }
        let key = try VerifyingKey(rawRepresentation: device.publicKey)
        deviceKeys.withLock { keys in
            if keys.count >= 200_000 { keys.removeAll() }
            keys[device.publicKey] = key
        }
        return key
    }

    /// Whether a device's time is within the skew of ours; overflow (a hostile `iat`) is not.
    func isWithinSkew(_ time: Int64) -> Bool {
        let (difference, overflow) = time.subtractingReportingOverflow(now)
        return !overflow && difference >= -settings.skew && difference <= settings.skew
    }

    enum Authenticated {
        case success(EnrolledDevice)
        case failure(HTTPResponse)
    }

    // MARK: Attestation

    /// `POST /v1/challenge`: a nonce for the device's next report, valid `nonceLifetime` seconds.
    func challenge(_ request: HTTPRequest) -> HTTPResponse {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return response
        }
        do {
            let nonce = try SecureRandom.token(bytes: 32)
            let current = now
            let expires = current + settings.nonceLifetime
            guard try storage.addNonce(nonce, device: device.id, expires: expires, openAt: current, limit: Self.maximumOutstandingNonces) else {
                return refuse(device.id, "challenge.refused", 429, "too-many-challenges", "\(Self.maximumOutstandingNonces) challenges are unanswered; answer one or wait \(settings.nonceLifetime) s")
            }
            return .json(200, .object(["nonce": .string(nonce), "expires_at": .int(expires)]))
        } catch {
            logger.error("cannot store a challenge", ("error", "\(error)"))
            return .error(503, "storage", "the broker cannot issue a challenge now; retry")
        }
    }

    /// `POST /v1/attest` with `{"report": JWS, "user": NAME?}`: the report must be signed by the
    /// device's key, name the device, answer an unused unexpired challenge of that device, and be
    /// a whole report. Then the compliance policy decides; a compliant device gets a grant.
    func attest(_ request: HTTPRequest) -> HTTPResponse {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return response
        }
        let body: JSONValue
        do {
            body = try Self.parseObject(request.body)
        } catch {
            return refuse(device.id, "attest.refused", 400, "bad-request", "the body is not a JSON object: \(error)")
        }
        guard let compact = body["report"]?.stringValue else { return refuse(device.id, "attest.refused", 400, "bad-request", "the body carries no report") }
        var user: String?
        if let given = body["user"] {
            guard let name = given.stringValue, Self.isUserName(name) else { return refuse(device.id, "attest.refused", 400, "bad-request", "user must be a login name") }
            user = name
        }
        let payload: [UInt8]
        let report: JSONValue
        do {
            let verified = try JWS.verify(compact, key: try verifyingKey(device))
            guard verified.header.type == "holdfast-posture+jws" else { return refuse(device.id, "attest.refused", 400, "wrong-type", "the report is not a holdfast-posture+jws document") }
            payload = verified.payload
            report = try Self.parseObject(payload)
        } catch {
            return refuse(device.id, "attest.refused", 403, "bad-signature", "the report is not signed by this device's key: \(error)")
        }
        let thumbprint = (try? verifyingKey(device))?.thumbprint
        guard let named = report["device"]?.stringValue, named == device.id || named == thumbprint else {
            return refuse(device.id, "attest.refused", 403, "wrong-device", "the report names another device")
        }
        guard let nonce = report["nonce"]?.stringValue else { return refuse(device.id, "attest.refused", 403, "no-nonce", "the report answers no challenge") }
        if let user {
            // An offboarded user gets no grant, whatever the device's health — and the device's
            // own attestation is not recorded for it: one person's refusal is not the device's
            // verdict (docs/offboarding.md).
            do {
                if let offboarded = try offboarding(of: user) {
                    return refuse(device.id, "attest.refused", 403, "user-offboarded", "\(user)'s access was revoked (offboarded) by \(offboarded.admin): \(offboarded.reason)")
                }
            } catch {
                return .error(503, "storage", "the broker cannot read the offboarded users now; retry")
            }
        }
        // Judged first, then the challenge is spent and the attestation recorded in one
        // transaction: a refused challenge records nothing.
        let evidence: PostureEvidence
        do {
            evidence = try PostureEvidence.parse(report)
        } catch {
            return refuse(device.id, "attest.refused", 400, "bad-report", error.message)
        }
        let previous: Attestation?
        do {
            previous = try storage.latestAttestation(device: device.id)
        } catch {
            // Without the previous first failures, grace periods would restart: no verdict now.
            return .error(503, "storage", "the broker cannot read the device's history now; retry")
        }
        let policy = compliancePolicy()
        let verdict = evaluate(evidence, policy: policy, firstFailures: previous.map { Self.firstFailures($0.firstFailures, policy: policy) } ?? [:])
        let current = now
        do {
            let attestation = Attestation(
                device: device.id, at: current, report: String(decoding: payload, as: UTF8.self), decision: verdict.decision.rawValue, policyVersion: policy.version,
                user: user, firstFailures: JSONValue.object(verdict.firstFailures.mapValues { .int($0) }).compactText)
            let entry = BrokerLogEntry(time: current, device: device.id, kind: "attest", detail: "\(verdict.decision.rawValue)" + (verdict.blocking.isEmpty ? "" : " failing \(verdict.blocking.map(\.id).joined(separator: ","))"))
            switch try storage.recordAttestation(attestation, spending: nonce, log: entry) {
            case .accepted: break
            case .unknown: return refuse(device.id, "attest.refused", 403, "nonce-unknown", "the report answers no challenge this broker issued")
            case .used: return refuse(device.id, "attest.refused", 403, "nonce-replayed", "the challenge was answered already (replay)")
            case .expired: return refuse(device.id, "attest.refused", 403, "nonce-expired", "the challenge expired; ask for a new one")
            case .otherDevice: return refuse(device.id, "attest.refused", 403, "nonce-other-device", "the challenge was issued to another device")
            }
        } catch {
            logger.error("cannot record an attestation", ("error", "\(error)"))
            return .error(503, "storage", "the broker cannot record the attestation now; retry")
        }
        do {
            var answer: [String: JSONValue] = ["verdict": .string(try signVerdict(verdict, device: device.id, nonce: nonce, user: user, policyVersion: policy.version))]
            if verdict.decision == .compliant {
                answer["grant"] = .string(try issueGrant(device: device.id, user: user, verdict: verdict))
            } else if let denial = verdict.denial {
                answer["denial"] = .string(denial)
            }
            return .json(200, .object(answer))
        } catch {
            logger.error("cannot sign a verdict", ("error", "\(error)"))
            return .error(500, "internal", "the broker cannot sign now")
        }
    }

    static func isUserName(_ name: String) -> Bool { LoginName.isValid(name) }

    /// The stored first failures; text that cannot be read counts every rule as failing since
    /// 1970, so no grace period restarts because of a damaged record.
    static func firstFailures(_ text: String, policy: PolicyInForce) -> [String: Int64] {
        guard let value = try? parseObject(Array(text.utf8)), case .object(let members) = value else {
            guard case .policy(let rules) = policy else { return [:] }
            return Dictionary(uniqueKeysWithValues: rules.rules.map { ($0.id, Int64(0)) })
        }
        return members.compactMapValues(\.intValue)
    }

    /// The compliance policy in force: none ever set (then every attested device is compliant;
    /// `serve` says so at start), or one that can no longer be read — then nothing is compliant.
    enum PolicyInForce {
        case none
        case policy(CompliancePolicy)
        case unreadable(String)

        var version: Int64? { if case .policy(let policy) = self { policy.version } else { nil } }
    }

    func compliancePolicy() -> PolicyInForce {
        let latest: Int64?
        do {
            latest = try storage.latestVersion(kind: .compliancePolicy)
        } catch {
            return .unreadable("the compliance policy cannot be read: \(error)")
        }
        guard let latest else { return .none }
        if let cached = complianceCache.withLock({ $0 }), cached.version == latest { return cached.policy }
        let parsed: PolicyInForce
        do {
            guard let stored = try storage.latestDocument(kind: .compliancePolicy) else { return .none }
            do {
                var policy = try CompliancePolicy.parse(Array(stored.document.utf8))
                policy.version = stored.version
                parsed = .policy(policy)
            } catch {
                logger.error("the stored compliance policy does not parse; every device is denied", ("version", "\(stored.version)"), ("error", error.message))
                parsed = .unreadable("compliance policy version \(stored.version) does not parse")
            }
            complianceCache.withLock { $0 = (stored.version, parsed) }
        } catch {
            return .unreadable("the compliance policy cannot be read: \(error)")
        }
        return parsed
    }

    func evaluate(_ evidence: PostureEvidence, policy: PolicyInForce, firstFailures: [String: Int64]) -> ComplianceVerdict {
        switch policy {
        case .none:
            return CompliancePolicy(rules: []).evaluate(evidence, now: now, firstFailures: firstFailures)
        case .policy(let policy):
            return policy.evaluate(evidence, now: now, firstFailures: firstFailures)
        case .unreadable:
            // Fail closed, and say so without detail: the broker's own policy is broken.
            var verdict = CompliancePolicy(rules: []).evaluate(evidence, now: now, firstFailures: firstFailures)
            verdict.decision = .noncompliant
            verdict.blocking.append(.init(id: "broker-policy", status: "unreadable", remediation: "the broker cannot read its compliance policy; ask an administrator", until: nil))
            return verdict
        }
    }

    func findings(_ list: [ComplianceVerdict.Finding]) -> JSONValue {
        .array(list.map { finding in
            var object: [String: JSONValue] = ["id": .string(finding.id), "status": .string(finding.status), "remediation": .string(finding.remediation)]
            if let until = finding.until { object["until"] = .int(until) }
            return .object(object)
        })
    }

    func signVerdict(_ verdict: ComplianceVerdict, device: String, nonce: String, user: String?, policyVersion: Int64?) throws -> String {
        var object: [String: JSONValue] = [
            "type": "holdfast.verdict", "iss": .string(settings.issuer), "device": .string(device), "nonce": .string(nonce), "iat": .int(now),
            "exp": .int(now + settings.grantLifetime), "decision": .string(verdict.decision.rawValue), "blocking": findings(verdict.blocking),
            "warnings": findings(verdict.warnings), "graced": findings(verdict.graced),
        ]
        if let user { object["user"] = .string(user) }
        if let policyVersion { object["policy_version"] = .int(policyVersion) }
        return try JWS.sign(Array(JSONValue.object(object).compactText.utf8), with: keys.current, header: JWSHeader(keyID: keys.current.publicKey.thumbprint, type: Self.verdictType))
    }

    func issueGrant(device: String, user: String?, verdict: ComplianceVerdict) throws -> String {
        var other: [String: JSONValue] = ["posture": .string(verdict.warnings.isEmpty && verdict.graced.isEmpty ? "compliant" : "compliant-with-warnings")]
        if let user { other["user"] = .string(user) }
        let claims = JWTClaims(
            issuer: settings.issuer, subject: device, audience: [settings.audience], issuedAt: Date(timeIntervalSince1970: Double(now)),
            expiresAt: Date(timeIntervalSince1970: Double(now + settings.grantLifetime)), id: try SecureRandom.token(bytes: 16), other: other)
        return try JWT.sign(claims, with: keys.current, type: Self.grantType)
    }

    // MARK: Gateways

    /// `GET /v1/authz` (nginx `auth_request`): 200 when the grant verifies and its device is,
    /// right now, enrolled, fresh and compliant under the policy in force; 401 for a missing or
    /// invalid grant; 403 for a device denied now. The answer names the reason and the failing
    /// check ids, never the policy's modes or grace periods.
    func authorize(_ request: HTTPRequest) -> HTTPResponse {
        guard let token = Self.grant(from: request) else {
            return .error(401, "no-grant", "no access grant (Authorization: Bearer, or the holdfast_grant cookie)", headers: ["WWW-Authenticate": "Bearer"])
        }
        let verified: VerifiedJWT
        do {
            verified = try JWT.verify(
                token, keys: keys.verifying,
                validation: JWTValidation(clock: clock, leeway: 30, audience: settings.audience, issuer: settings.issuer, type: Self.grantType, maximumLifetime: Double(settings.grantLifetime) + 60))
        } catch {
            logger.debug("grant refused", ("error", "\(error)"))
            return .error(401, "invalid-grant", "the grant is not valid (signature, issuer, audience, type or expiry)", headers: ["WWW-Authenticate": "Bearer error=\"invalid_token\""])
        }
        guard let id = verified.claims.subject else { return .error(401, "invalid-grant", "the grant names no device") }
        if let user = verified.claims.other["user"]?.stringValue {
            // Offboarded: every grant carrying the user is refused, however fresh (docs/offboarding.md).
            do {
                if let offboarded = try offboarding(of: user) {
                    return .json(403, .object([
                        "error": "user-offboarded",
                        "message": .string("\(user)'s access was revoked by \(offboarded.admin) at \(Date(timeIntervalSince1970: Double(offboarded.at)).formatted(.iso8601))"),
                        "failing": .array([]),
                    ]))
                }
            } catch {
                return .error(503, "storage", "the broker cannot read its state now")
            }
        }
        switch deviceDecision(id) {
        case .allowed:
            var headers = ["X-Holdfast-Device": id]
            // Asserted by the device (the login its agent attested for), not by an identity provider.
            if let user = verified.claims.other["user"]?.stringValue { headers["X-Holdfast-Device-User"] = user }
            return .json(200, .object(["device": .string(id), "status": "allowed"]), headers: headers)
        case .denied(let reason, let message, let failing):
            return .json(403, .object(["error": .string(reason), "message": .string(message), "failing": .array(failing.map(JSONValue.string))]))
        case .unavailable:
            // Fail closed: no answer from storage is no access.
            return .error(503, "storage", "the broker cannot read its state now")
        }
    }

    enum DeviceDecision: Equatable {
        case allowed
        case denied(reason: String, message: String, failing: [String])
        case unavailable
    }

    /// Whether a device may have access now: enrolled, attested within the stale window, and its
    /// latest report compliant under the policy in force now (so a stricter policy applies at once).
    func deviceDecision(_ id: String) -> DeviceDecision {
        do {
            guard let device = try storage.device(id: id) else { return .denied(reason: "unknown-device", message: "the device is not enrolled", failing: []) }
            guard device.removedAt == nil else { return .denied(reason: "removed", message: "the device was unenrolled", failing: []) }
            guard let latest = try storage.latestAttestation(device: id) else { return .denied(reason: "not-attested", message: "the device has not attested", failing: []) }
            let age = now.subtractingReportingOverflow(latest.at).partialValue
            if age > settings.staleAfter {
                return .denied(reason: "stale", message: "the device has not attested for \(age) s (limit \(settings.staleAfter) s)", failing: [])
            }
            let cached = evidenceCache.withLock { $0[id] }
            let parsedEvidence: PostureEvidence?
            if let cached, cached.sequence == latest.sequence {
                parsedEvidence = cached.evidence
            } else {
                parsedEvidence = (try? Self.parseObject(Array(latest.report.utf8))).flatMap { try? PostureEvidence.parse($0) }
                evidenceCache.withLock { cache in
                    if cache.count > 100_000 { cache.removeAll() }
                    cache[id] = (latest.sequence, parsedEvidence)
                }
            }
            guard let evidence = parsedEvidence else {
                return .denied(reason: "noncompliant", message: "the device's last report cannot be read", failing: [])
            }
            let policy = compliancePolicy()
            let verdict = evaluate(evidence, policy: policy, firstFailures: Self.firstFailures(latest.firstFailures, policy: policy))
            if verdict.decision == .noncompliant {
                return .denied(reason: "noncompliant", message: verdict.denial ?? "the device is not compliant", failing: verdict.blocking.map(\.id))
            }
            return .allowed
        } catch {
            logger.error("authz storage failure", ("error", "\(error)"))
            return .unavailable
        }
    }

    /// The grant from `Authorization: Bearer …` or the `holdfast_grant` cookie.
    static func grant(from request: HTTPRequest) -> String? {
        if let header = request.header("authorization") {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return trimmed(String(parts[1])) }
        }
        if let cookies = request.header("cookie") {
            for pair in cookies.split(separator: ";") {
                let cookie = trimmed(String(pair))
                if cookie.hasPrefix("holdfast_grant=") { return String(cookie.dropFirst("holdfast_grant=".count)) }
            }
        }
        return nil
    }

    // MARK: Agent policy

    func latestAgentPolicy() -> VersionedDocument? {
        let clockNow = ContinuousClock.now
        if let cached = agentPolicyCache.withLock({ cache -> VersionedDocument?? in
            guard let checked = cache.checked, clockNow - checked < .milliseconds(500) else { return nil }
            return .some(cache.document)
        }) {
            return cached
        }
        let document = try? storage.latestDocument(kind: .agentPolicy)
        agentPolicyCache.withLock { $0 = (clockNow, document) }
        return document
    }

    /// `GET /v1/agent-policy?after=V[&wait=S]`: the signed policy when its version is newer than
    /// V, else held until one is set or `wait` (at most `maximumWait`) passes → 204.
    func agentPolicy(_ request: HTTPRequest) -> HTTPHandling {
        if case .failure(let response) = authenticate(request) { return .respond(response) }
        let after = request.query["after"].flatMap { Int64($0) } ?? 0
        let wait = min(max(request.query["wait"].flatMap { Int64($0) } ?? 0, 0), settings.maximumWait)
        let ready: @Sendable () -> HTTPResponse? = { [self] in
            guard let latest = latestAgentPolicy(), latest.version > after else { return nil }
            return .json(200, .object(["version": .int(latest.version), "policy": .string(latest.document)]))
        }
        if wait == 0 { return .respond(ready() ?? HTTPResponse(status: 204)) }
        return .wait(until: ContinuousClock.now + .seconds(wait), ready: ready, timeout: HTTPResponse(status: 204))
    }

    /// `POST /v1/agent-policy/ack` with `{version, status: applied|refused, detail}`.
    func acknowledgePolicy(_ request: HTTPRequest) -> HTTPResponse {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return response
        }
        guard let body = try? Self.parseObject(request.body), let version = body["version"]?.intValue,
              let status = body["status"]?.stringValue, ["applied", "refused"].contains(status) else {
            return .error(400, "bad-request", "say {version, status: applied|refused, detail}")
        }
        let detail = String((body["detail"]?.stringValue ?? "").prefix(512))
        do {
            try storage.acknowledgePolicy(device: device.id, version: version, status: status, detail: detail, at: now)
            try storage.log(BrokerLogEntry(time: now, device: device.id, kind: "policy.\(status)", detail: "version \(version)" + (detail.isEmpty ? "" : ": \(detail)")))
        } catch {
            return .error(503, "storage", "the broker cannot record the acknowledgement now; retry")
        }
        return .json(200, .object(["recorded": true]))
    }

    // MARK: Heartbeat

    /// `POST /v1/heartbeat` between attestations: the agent is alive and says how it is (its
    /// version, uptime, each service's state, events not yet uploaded, the agent policy version
    /// and verdict it holds). Only those members are kept, each checked; others are ignored (a
    /// newer agent may say more). The answer asks for an attestation now when the device has none
    /// the broker could use: never attested, stale, or judged under an older compliance policy.
    func heartbeat(_ request: HTTPRequest) -> HTTPResponse {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return response
        }
        let health: JSONValue
        do {
            health = try Self.heartbeatHealth(try Self.parseObject(request.body))
        } catch {
            return refuse(device.id, "heartbeat.refused", 400, "bad-request", "\(error)")
        }
        let current = now
        do {
            try storage.recordHeartbeat(device: device.id, at: current, health: health.compactText)
            if let state = health["lockdown"] { try storage.recordLockdownState(device: device.id, state: state.compactText, at: current) }
        } catch {
            logger.error("cannot record a heartbeat", ("error", "\(error)"))
            return .error(503, "storage", "the broker cannot record the heartbeat now; retry")
        }
        let latest = try? storage.latestAttestation(device: device.id)
        let inForce = compliancePolicy().version
        let attestNow = latest.map { current - $0.at > settings.staleAfter || $0.policyVersion != inForce } ?? true
        return .json(200, .object(["time": .int(current), "attest_now": .bool(attestNow)]))
    }

    /// The members of a heartbeat the broker keeps, checked: short printable strings, counts
    /// that are not negative, at most 32 services.
    static func heartbeatHealth(_ body: JSONValue) throws -> JSONValue {
        var kept: [String: JSONValue] = [:]
        func word(_ value: JSONValue?, _ name: String) throws -> String? {
            guard let value else { return nil }
            guard let text = value.stringValue, !text.isEmpty, text.utf8.count <= 64, text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw ComplianceError("\(name) must be a short printable word")
            }
            return text
        }
        func count(_ name: String) throws {
            guard let value = body[name] else { return }
            guard let number = value.intValue, number >= 0 else { throw ComplianceError("\(name) must be a count (0 or more)") }
            kept[name] = .int(number)
        }
        if let version = try word(body["agent_version"], "agent_version") { kept["agent_version"] = .string(version) }
        if let decision = try word(body["decision"], "decision") { kept["decision"] = .string(decision) }
        try count("uptime_s")
        try count("pending_events")
        try count("policy_version")
        if let lockdown = body["lockdown"] {
            do {
                kept["lockdown"] = try lockdownState(lockdown)
            } catch {
                throw ComplianceError("lockdown: \(error)")
            }
        }
        if let services = body["services"] {
            guard case .object(let members) = services, members.count <= 32 else { throw ComplianceError("services must be an object of at most 32 names") }
            var states: [String: JSONValue] = [:]
            for (name, state) in members {
                guard try word(.string(name), "a service name") != nil, let text = try word(state, "the state of \(name)") else { continue }
                states[name] = .string(text)
            }
            kept["services"] = .object(states)
        }
        return .object(kept)
    }

    // MARK: Events

    /// `POST /v1/events` with `{"events": [EVENT, …]}` (the journal's event JSON): stored in one
    /// transaction, deduplicated by the event's `metadata.uid` per device; the answer is sent only
    /// after the commit, so a 200 means every event of the batch is kept (new or seen before).
    func receiveEvents(_ request: HTTPRequest) -> HTTPResponse {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return response
        }
        guard let body = try? Self.parseObject(request.body), case .array(let items)? = body["events"] else {
            return refuse(device.id, "events.refused", 400, "bad-request", "say {\"events\": [event, …]}")
        }
        guard items.count <= Self.maximumEventsPerUpload else {
            return refuse(device.id, "events.refused", 413, "too-many", "at most \(Self.maximumEventsPerUpload) events per upload")
        }
        var events: [StoredEvent] = []
        events.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            guard let uid = item["metadata"]?["uid"]?.stringValue, UUID(uuidString: uid) != nil, let time = item["time"]?.intValue,
                  let kind = item["holdfast"]?["kind"]?.stringValue, kind.utf8.count <= 128 else {
                // One bad event refuses the batch: the agent keeps it and says so, nothing is half-stored.
                return refuse(device.id, "events.refused", 400, "bad-event", "event \(index) has no metadata.uid (UUID), time or holdfast.kind")
            }
            events.append(StoredEvent(device: device.id, uuid: uid.lowercased(), timeMilliseconds: time, kind: kind, severity: item["severity_id"]?.intValue ?? 0, body: item.compactText))
        }
        do {
            // Alerts come from events seen for the first time only (a retried batch adds no
            // count), recorded in the same transaction as the events.
            let posture = triagePosture(device.id)
            let received = (now + settings.skew) * 1_000
            let new = try storage.storeNewEvents(events, device: device.id, at: now, alertWindow: AlertTriage.window) { event in
                guard let body = try? JSONValue.parse(event.body.utf8) else { return nil }
                return AlertTriage.candidate(event, body: body, posture: posture, receivedMilliseconds: received)
            }
            return .json(200, .object(["stored": .int(Int64(new.count)), "duplicates": .int(Int64(events.count - new.count)), "acknowledged": .int(Int64(events.count))]))
        } catch {
            logger.error("cannot store events", ("device.id", device.id), ("error", "\(error)"))
            return .error(503, "storage", "the broker cannot store events now; keep them and retry")
        }
    }

    /// The device's posture for scoring its alerts: its latest verdict, or stale.
    func triagePosture(_ id: String) -> AlertTriage.Posture {
        guard let latest = try? storage.latestAttestation(device: id) else { return .unknown }
        if now - latest.at > settings.staleAfter { return .stale }
        return latest.decision == "compliant" ? .compliant : .noncompliant
    }

    /// Signs an agent policy document (the exact bytes of a `policy.json`) as version `version`.
    public static func signAgentPolicy(_ bytes: [UInt8], version: Int64, at time: Int64, key: SigningKey) throws -> String {
        let object: JSONValue = .object([
            "type": "holdfast.agent_policy", "version": .int(version), "iat": .int(time), "sha256": .string(SHA256.hex(bytes)),
            "document": .string(Base64URL.encode(bytes)),
        ])
        return try JWS.sign(Array(object.compactText.utf8), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: agentPolicyType))
    }

    /// An announcement of a new signing key, signed by the old one (`holdfast-key-rotation+jws`).
    public static func announceKey(_ new: VerifyingKey, signedBy old: SigningKey, at time: Int64) throws -> String {
        let encoder = JSONEncoder()
        guard let jwk = try? JSONDecoder().decode(JSONValue.self, from: encoder.encode(new.jwk)) else { throw ComplianceError("cannot encode the key") }
        let object: JSONValue = .object(["type": "holdfast.key_rotation", "old": .string(old.publicKey.thumbprint), "new": jwk, "iat": .int(time)])
        return try JWS.sign(Array(object.compactText.utf8), with: old, header: JWSHeader(keyID: old.publicKey.thumbprint, type: rotationType))
    }

    // MARK: Helpers

    /// A refusal of a request nobody has proved anything about: counted and logged at a bounded
    /// rate, never written to the trail.
    func unauthenticated(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        noteUnauthenticated(code)
        return .error(status, code, message)
    }

    /// Records a refusal (the broker's trail and its log) and builds the answer.
    func refuse(_ device: String, _ kind: String, _ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        try? storage.log(BrokerLogEntry(time: now, device: device, kind: kind, detail: "\(code): \(message)"))
        logger.warning("refused", ("kind", kind), ("device.id", device), ("reason", code))
        return .error(status, code, message)
    }

    /// A JSON object from bytes; repeated keys are refused (parsers disagree on which wins).
    static func parseObject(_ bytes: [UInt8]) throws -> JSONValue {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            if let key = error.duplicateName { throw ComplianceError("the key \"\(key)\" appears twice") }
            throw ComplianceError("\(error)")
        }
        guard case .object = value else { throw ComplianceError("not a JSON object") }
        return value
    }
}

/// Without leading and trailing white space.
func trimmed(_ text: String) -> String {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
    guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) }) else { return "" }
    return String(text[first...last])
}
