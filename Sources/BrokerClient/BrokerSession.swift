import FoundationEssentials
public import HoldfastCore
public import HoldfastCrypto

/// What `holdfast-broker token create` prints: `hft1.` + base64url of
/// `{url, ca: "sha256:HEX", key: THUMBPRINT, secret}`.
public struct EnrollmentToken: Sendable, Equatable {
    public let url: String
    /// SHA-256 of the broker CA certificate (DER), hex.
    public let caFingerprint: String
    /// The RFC 7638 thumbprint of the broker's signing key.
    public let keyThumbprint: String
    public let secret: String

    public init(_ text: String) throws(BrokerClientError) {
        let trimmed = String(text.filter { !$0.isWhitespace })
        guard trimmed.hasPrefix("hft1."), let bytes = Base64URL.decode(String(trimmed.dropFirst(5))),
              let value = try? JSONValue.parse(bytes),
              let url = value["url"]?.stringValue, let ca = value["ca"]?.stringValue, let key = value["key"]?.stringValue, let secret = value["secret"]?.stringValue
        else {
            throw BrokerClientError(.setup, "not an enrollment token (holdfast-broker token create prints one: hft1.…)")
        }
        guard ca.hasPrefix("sha256:"), ca.utf8.count == 71 else { throw BrokerClientError(.setup, "the token's CA fingerprint is not sha256:HEX") }
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), ["https", "http"].contains(scheme), let host = parsed.host(percentEncoded: false),
              !host.isEmpty, parsed.user == nil else {
            throw BrokerClientError(.setup, "the token's broker URL is not an https URL")
        }
        // Over plain HTTP the pinned CA protects nothing: only to this machine (as token create allows).
        if scheme == "http", !["localhost", "127.0.0.1", "::1", "[::1]"].contains(host.lowercased()) {
            throw BrokerClientError(.setup, "the token's broker URL is plain http to \(host); only https is accepted (http only to loopback)")
        }
        self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
        caFingerprint = String(ca.dropFirst(7)).lowercased()
        keyThumbprint = key
        self.secret = secret
    }
}

/// What enrollment leaves on the device (saved 0600 in the state directory): whom to call, how
/// to recognise them, and who this device is to them.
public struct EnrollmentRecord: Sendable, Equatable, Codable {
    public var url: String
    public var deviceID: String
    public var issuer: String
    public var audience: String
    /// The pinned CA (PEM) the broker's TLS certificate must chain to.
    public var caPEM: String
    /// The pinned signing keys: what the broker signs must verify with one of them.
    public var keys: [JWK]
    public var enrolledAt: Int64
    /// The secret break-glass codes derive from (base64url, 32 bytes), given by the broker at
    /// enrollment; an enrollment from before break-glass asks for it once (`breakglassSecret()`).
    public var breakglassSecret: String?

    enum CodingKeys: String, CodingKey {
        case url, deviceID = "device_id", issuer, audience, caPEM = "ca_pem", keys, enrolledAt = "enrolled_at", breakglassSecret = "breakglass_secret"
    }

    /// The break-glass secret's bytes, when there is one of the right length.
    public var breakglassSecretBytes: [UInt8]? {
        guard let text = breakglassSecret, let bytes = Base64URL.decode(text), bytes.count == 32 else { return nil }
        return bytes
    }

    public var verifyingKeys: VerifyingKeySet {
        VerifyingKeySet(keys.compactMap { try? VerifyingKey(jwk: $0) })
    }
}

/// Registration facts the broker keeps for the device.
public struct DeviceFacts: Sendable {
    public var machineID: String?
    public var dmiSerial: String?
    public var hostname: String?
    public var os: String?

    public init(machineID: String?, dmiSerial: String?, hostname: String?, os: String?) {
        self.machineID = machineID
        self.dmiSerial = dmiSerial
        self.hostname = hostname
        self.os = os
    }

    var json: JSONValue {
        var object: [String: JSONValue] = ["agent_version": .string(HoldfastVersion.current)]
        if let machineID { object["machine_id"] = .string(machineID) }
        if let dmiSerial { object["dmi_serial"] = .string(dmiSerial) }
        if let hostname { object["hostname"] = .string(hostname) }
        if let os { object["os"] = .string(os) }
        return .object(object)
    }
}

/// The broker's answer to an attestation, verified.
public struct AttestationOutcome: Sendable {
    /// `compliant` or `noncompliant`.
    public let decision: String
    /// The verdict JWS, verified with a pinned key.
    public let verdict: String
    public let verdictClaims: JSONValue
    /// The access grant (JWT), when compliant.
    public let grant: String?
    public let grantExpiresAt: Int64?
    /// What the user is told when denied: failing check ids and remediation.
    public let denial: String?
}

/// An agent policy received from the broker, verified.
public struct SignedAgentPolicy: Sendable, Equatable {
    public let version: Int64
    /// The exact policy.json bytes the admin published.
    public let document: [UInt8]
    /// The JWS as received (kept as the last good one).
    public let compact: String
}

/// Calls to the broker as an enrolled device: every request is signed with the device key
/// (`Authorization: Holdfast-Device <JWS>` over method, path, body hash and time), every answer
/// that matters is a document signed by a pinned broker key.
public struct BrokerSession: Sendable {
    public let record: EnrollmentRecord
    let key: SigningKey
    let client: HTTPClient
    let pollClient: HTTPClient
    let uploadClient: HTTPClient

    /// `peers` notes the addresses that answered over the pinned TLS (the network lockdown's).
    public init(record: EnrollmentRecord, key: SigningKey, peers: BrokerAddresses? = nil) {
        self.record = record
        self.key = key
        client = HTTPClient(trust: .pinned(record.caPEM), label: "holdfast.broker-client", peers: peers)
        // Long polls on their own queue: a held poll must not delay an attestation.
        pollClient = HTTPClient(trust: .pinned(record.caPEM), label: "holdfast.broker-poll", peers: peers)
        // Uploads on their own queue too: a large batch must not delay a login's attestation.
        uploadClient = HTTPClient(trust: .pinned(record.caPEM), label: "holdfast.broker-upload", maximumBody: 1 << 16, peers: peers)
    }

    // MARK: Enrollment

    /// Enrolls with a token: fetch the CA and accept it only if its SHA-256 is the token's; from
    /// then on only that CA; check the broker's signing key is the token's; register the device
    /// key with a document signed by it.
    public static func enroll(token: EnrollmentToken, key: SigningKey, facts: DeviceFacts, timeout: Duration = .seconds(15)) async throws(BrokerClientError) -> EnrollmentRecord {
        let bootstrap = HTTPClient(trust: .unverifiedForPinning, label: "holdfast.broker-enroll")
        let caAnswer = try await bootstrap.send("GET", token.url + "/v1/ca.pem", timeout: timeout)
        guard caAnswer.status == 200 else { throw BrokerClientError(.status, "the broker answered \(caAnswer.status) for its CA certificate", status: caAnswer.status) }
        let fingerprint: String
        do {
            fingerprint = Hex.encode(try CertificateFingerprint.sha256(of: caAnswer.body))
        } catch {
            throw BrokerClientError(.invalid, "the broker's CA certificate does not parse: \(error)")
        }
        guard fingerprint == token.caFingerprint else {
            throw BrokerClientError(.invalid, "the broker's CA certificate is sha256:\(fingerprint), the token pins sha256:\(token.caFingerprint): refusing (a different broker, or someone in between)")
        }
        let caPEM: String
        do {
            caPEM = try CertificateFingerprint.canonicalPEM(of: caAnswer.body)
        } catch {
            throw BrokerClientError(.invalid, "the broker's CA certificate does not parse: \(error)")
        }
        let pinned = HTTPClient(trust: .pinned(caPEM), label: "holdfast.broker-enroll")
        let keysAnswer = try await pinned.send("GET", token.url + "/.well-known/jwks.json", timeout: timeout)
        guard keysAnswer.status == 200, let set = try? JSONDecoder().decode(JWKSet.self, from: Data(keysAnswer.body)) else {
            throw BrokerClientError(.invalid, "the broker's JWKS cannot be read (status \(keysAnswer.status))", status: keysAnswer.status)
        }
        guard let signing = set.keys.first(where: { (try? VerifyingKey(jwk: $0))?.thumbprint == token.keyThumbprint }) else {
            throw BrokerClientError(.invalid, "the broker does not publish the signing key the token pins (\(token.keyThumbprint))")
        }
        let payload: JSONValue = .object([
            "secret": .string(token.secret), "key": jsonValue(key.publicKey.jwk), "facts": facts.json, "iat": .int(Int64(Date().timeIntervalSince1970)),
        ])
        let document: String
        do {
            document = try JWS.sign(Array(payload.compactText.utf8), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: "holdfast-enroll+jws"))
        } catch {
            throw BrokerClientError(.setup, "cannot sign the enrollment: \(error)")
        }
        let answer = try await pinned.send("POST", token.url + "/v1/enroll", body: Array(document.utf8), timeout: timeout)
        let object = try parse(answer, "enrollment")
        guard let id = object["device_id"]?.stringValue, let issuer = object["issuer"]?.stringValue else {
            throw BrokerClientError(.invalid, "the enrollment answer names no device id")
        }
        return EnrollmentRecord(
            url: token.url, deviceID: id, issuer: issuer, audience: object["audience"]?.stringValue ?? "holdfast", caPEM: caPEM, keys: [signing],
            enrolledAt: Int64(Date().timeIntervalSince1970), breakglassSecret: object["breakglass_secret"]?.stringValue)
    }

    // MARK: Attestation

    /// A fresh challenge nonce.
    public func challenge(timeout: Duration = .seconds(10)) async throws(BrokerClientError) -> String {
        let object = try BrokerSession.parse(try await signedRequest("POST", "/v1/challenge", body: Array("{}".utf8), timeout: timeout), "challenge")
        guard let nonce = object["nonce"]?.stringValue else { throw BrokerClientError(.invalid, "the challenge carries no nonce") }
        return nonce
    }

    /// Sends a signed posture report answering `nonce`; verifies the verdict (pinned key, this
    /// device, this nonce) and the grant.
    public func attest(report: String, nonce: String, user: String?, timeout: Duration = .seconds(10)) async throws(BrokerClientError) -> AttestationOutcome {
        var body: [String: JSONValue] = ["report": .string(report)]
        if let user { body["user"] = .string(user) }
        let object = try BrokerSession.parse(try await signedRequest("POST", "/v1/attest", body: Array(JSONValue.object(body).compactText.utf8), timeout: timeout), "attestation")
        guard let verdict = object["verdict"]?.stringValue else { throw BrokerClientError(.invalid, "the attestation answer carries no verdict") }
        let claims: JSONValue
        do {
            let verified = try JWS.verify(verdict, keys: record.verifyingKeys)
            guard verified.header.type == "holdfast-verdict+jws" else { throw BrokerClientError(.invalid, "the verdict is not a holdfast-verdict+jws document") }
            claims = try JSONValue.parse(verified.payload)
        } catch let error as BrokerClientError {
            throw error
        } catch {
            throw BrokerClientError(.invalid, "the verdict does not verify with the pinned broker key: \(error)")
        }
        guard claims["device"]?.stringValue == record.deviceID, claims["nonce"]?.stringValue == nonce, let decision = claims["decision"]?.stringValue else {
            throw BrokerClientError(.invalid, "the verdict is for another device or another challenge")
        }
        var grant: String?
        var expires: Int64?
        if let token = object["grant"]?.stringValue {
            do {
                let verified = try JWT.verify(token, keys: record.verifyingKeys, validation: JWTValidation(audience: record.audience, issuer: record.issuer, type: "JWT"))
                guard verified.claims.subject == record.deviceID else { throw BrokerClientError(.invalid, "the grant is for another device") }
                grant = token
                expires = verified.claims.expiresAt.map { Int64($0.timeIntervalSince1970) }
            } catch let error as BrokerClientError {
                throw error
            } catch {
                throw BrokerClientError(.invalid, "the grant does not verify with the pinned broker key: \(error)")
            }
        }
        return AttestationOutcome(decision: decision, verdict: verdict, verdictClaims: claims, grant: grant, grantExpiresAt: expires, denial: object["denial"]?.stringValue)
    }

    // MARK: Agent policy

    /// Waits up to `wait` for an agent policy newer than `after`; nil when none came.
    public func pollPolicy(after: Int64, wait: Int) async throws(BrokerClientError) -> SignedAgentPolicy? {
        let answer = try await signedRequest("GET", "/v1/agent-policy", query: "after=\(after)&wait=\(wait)", body: nil, timeout: .seconds(wait + 15), client: pollClient)
        if answer.status == 204 { return nil }
        let object = try BrokerSession.parse(answer, "agent policy")
        guard let compact = object["policy"]?.stringValue else { throw BrokerClientError(.invalid, "the agent policy answer carries no policy") }
        return try verifyPolicy(compact)
    }

    /// What one poll brought: the agent policy when newer (not verified yet) and commands, oldest
    /// first: the sequence the broker stores each under and the compact JWS (not verified yet).
    public struct PollAnswer: Sendable {
        public var policy: String?
        public var commands: [(sequence: Int64, document: String)]
    }

    /// The agent's one long poll (`/v1/poll`): waits up to `wait` for an agent policy newer than
    /// `policyAfter` or a command after `commandAfter`; nil when nothing came.
    public func poll(policyAfter: Int64, commandAfter: Int64, wait: Int) async throws(BrokerClientError) -> PollAnswer? {
        let answer = try await signedRequest(
            "GET", "/v1/poll", query: "policy_after=\(policyAfter)&command_after=\(commandAfter)&wait=\(wait)", body: nil, timeout: .seconds(wait + 15), client: pollClient)
        if answer.status == 204 { return nil }
        let object = try BrokerSession.parse(answer, "poll")
        var commands: [(sequence: Int64, document: String)] = []
        if let list = object["commands"] {
            guard case .array(let items) = list else { throw BrokerClientError(.invalid, "the poll answer's commands are not a list") }
            for item in items {
                guard let sequence = item["seq"]?.intValue, let document = item["document"]?.stringValue else {
                    throw BrokerClientError(.invalid, "the poll answer's commands are not {seq, document}")
                }
                commands.append((sequence, document))
            }
        }
        return PollAnswer(policy: object["policy"]?["policy"]?.stringValue, commands: commands)
    }

    /// A command that did not verify, and why.
    public struct CommandRefusal: Error, Sendable, Equatable {
        /// `bad-signature`, `wrong-type` or `malformed`.
        public let reason: String
        public let message: String
    }

    /// Verifies a command: signed by a pinned broker key, typed `holdfast-command+jws`, a payload
    /// that parses strictly. Whether it is for this device, new and unexpired is the lockdown's
    /// to decide (it keeps the last sequence applied).
    public static func verifyCommand(_ compact: String, keys: VerifyingKeySet) -> Result<RemoteCommand, CommandRefusal> {
        let verified: VerifiedJWS
        do {
            verified = try JWS.verify(compact, keys: keys)
        } catch {
            return .failure(CommandRefusal(reason: "bad-signature", message: "the command does not verify with the pinned broker keys: \(error)"))
        }
        guard verified.header.type == RemoteCommand.documentType else {
            return .failure(CommandRefusal(reason: "wrong-type", message: "the document is not a \(RemoteCommand.documentType)"))
        }
        do {
            return .success(try RemoteCommand.parse(verified.payload))
        } catch {
            return .failure(CommandRefusal(reason: "malformed", message: "the command is malformed: \(error.message)"))
        }
    }

    /// Tells the broker what became of a command, and the lockdown in force since.
    public func acknowledgeCommand(sequence: Int64, applied: Bool, detail: String, state: JSONValue) async throws(BrokerClientError) {
        let body: JSONValue = .object(["seq": .int(sequence), "status": .string(applied ? "applied" : "refused"), "detail": .string(detail), "state": state])
        _ = try BrokerSession.parse(try await signedRequest("POST", "/v1/commands/ack", body: Array(body.compactText.utf8), timeout: .seconds(10)), "command acknowledgement")
    }

    /// Verifies a signed agent policy: a pinned key, the type, the digest of the exact bytes.
    public func verifyPolicy(_ compact: String) throws(BrokerClientError) -> SignedAgentPolicy {
        try BrokerSession.verifyPolicy(compact, keys: record.verifyingKeys)
    }

    public static func verifyPolicy(_ compact: String, keys: VerifyingKeySet) throws(BrokerClientError) -> SignedAgentPolicy {
        let payload: JSONValue
        do {
            let verified = try JWS.verify(compact, keys: keys)
            guard verified.header.type == "holdfast-policy+jws" else { throw BrokerClientError(.invalid, "not a holdfast-policy+jws document") }
            payload = try JSONValue.parse(verified.payload)
        } catch let error as BrokerClientError {
            throw error
        } catch {
            throw BrokerClientError(.invalid, "the agent policy does not verify with the pinned broker key: \(error)")
        }
        guard payload["type"]?.stringValue == "holdfast.agent_policy", let version = payload["version"]?.intValue, version > 0,
              let encoded = payload["document"]?.stringValue, let document = Base64URL.decode(encoded), payload["sha256"]?.stringValue == SHA256.hex(document)
        else {
            throw BrokerClientError(.invalid, "the agent policy document is malformed (version, document, sha256)")
        }
        return SignedAgentPolicy(version: version, document: document, compact: compact)
    }

    /// Tells the broker what became of a policy version.
    public func acknowledge(version: Int64, applied: Bool, detail: String) async throws(BrokerClientError) {
        let body: JSONValue = .object(["version": .int(version), "status": .string(applied ? "applied" : "refused"), "detail": .string(detail)])
        _ = try BrokerSession.parse(try await signedRequest("POST", "/v1/agent-policy/ack", body: Array(body.compactText.utf8), timeout: .seconds(10)), "acknowledgement")
    }

    // MARK: Break-glass

    /// The device's break-glass secret (`POST /v1/breakglass-secret`): for an enrollment made
    /// before the broker gave one at enrollment. The broker makes it once and answers the same.
    public func breakglassSecret(timeout: Duration = .seconds(10)) async throws(BrokerClientError) -> String {
        let object = try BrokerSession.parse(try await signedRequest("POST", "/v1/breakglass-secret", body: Array("{}".utf8), timeout: timeout, client: uploadClient), "break-glass secret")
        guard let secret = object["secret"]?.stringValue, Base64URL.decode(secret)?.count == 32 else { throw BrokerClientError(.invalid, "the break-glass secret is not 32 bytes of base64url") }
        return secret
    }

    // MARK: Heartbeat

    /// Tells the broker the agent is alive and how it is (`health`: the members
    /// docs/broker-protocol.md lists); true when the broker asks for an attestation now. On the
    /// upload connection: a broker that hangs must not hold an attestation (a login) behind it.
    public func heartbeat(_ health: JSONValue, timeout: Duration = .seconds(10)) async throws(BrokerClientError) -> Bool {
        let object = try BrokerSession.parse(try await signedRequest("POST", "/v1/heartbeat", body: Array(health.compactText.utf8), timeout: timeout, client: uploadClient), "heartbeat")
        return object["attest_now"]?.boolValue ?? false
    }

    // MARK: Requests

    /// Sends a user's request for an exception; returns the broker's number for it (the same
    /// request sent again gets the same number).
    public func submitRequest(_ request: AccessRequestSubmission, timeout: Duration = .seconds(10)) async throws(BrokerClientError) -> Int64 {
        let object = try BrokerSession.parse(try await signedRequest("POST", "/v1/requests", body: Array(request.body.compactText.utf8), timeout: timeout, client: uploadClient), "request")
        guard let number = object["number"]?.intValue, number >= 1 else { throw BrokerClientError(.invalid, "the broker's answer to a request carries no number") }
        return number
    }

    // MARK: Events

    /// Uploads events (each the journal's exact JSON); returns how many the broker acknowledged —
    /// all of them, or it throws: the broker commits a batch whole or not at all.
    public func uploadEvents(_ bodies: [[UInt8]], timeout: Duration = .seconds(30)) async throws(BrokerClientError) -> Int {
        var body = Array(#"{"events":["#.utf8)
        for (index, event) in bodies.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body += event
        }
        body += Array("]}".utf8)
        let object = try BrokerSession.parse(try await signedRequest("POST", "/v1/events", body: body, timeout: timeout, client: uploadClient), "event upload")
        guard let acknowledged = object["acknowledged"]?.intValue, acknowledged == Int64(bodies.count) else {
            throw BrokerClientError(.invalid, "the broker acknowledged \(object["acknowledged"]?.intValue ?? 0) of \(bodies.count) events")
        }
        return bodies.count
    }

    // MARK: Key rotation

    /// Fetches the broker's key announcements and returns the record with every new key that an
    /// already pinned key announced (chains follow: old → middle → new); nil when nothing changed.
    public func refreshKeys(timeout: Duration = .seconds(10)) async throws(BrokerClientError) -> EnrollmentRecord? {
        let answer = try await client.send("GET", record.url + "/v1/keys", timeout: timeout)
        let object = try BrokerSession.parse(answer, "key announcements")
        guard case .array(let items)? = object["announcements"] else { return nil }
        let accepted = BrokerSession.acceptAnnouncements(items.compactMap(\.stringValue), pinned: record.keys)
        // A key the broker no longer publishes was retired (key retire): unpinned, as long as a
        // pinned key is still published — the answer came over the pinned TLS channel.
        var published: Set<String> = []
        if case .array(let keys)? = object["keys"] {
            for key in keys {
                if let data = try? JSONEncoder().encode(key), let jwk = try? JSONDecoder().decode(JWK.self, from: data), let verifying = try? VerifyingKey(jwk: jwk) {
                    published.insert(verifying.thumbprint)
                }
            }
        }
        let kept = accepted.filter { (try? VerifyingKey(jwk: $0)).map { published.contains($0.thumbprint) } ?? false }
        let final = kept.isEmpty ? accepted : kept
        guard final != record.keys else { return nil }
        var updated = record
        updated.keys = final
        return updated
    }

    /// The pinned keys plus every key announced (`holdfast-key-rotation+jws`, `{type, old, new,
    /// iat}`) by a key already pinned. An announcement signed by anything else is ignored.
    public static func acceptAnnouncements(_ announcements: [String], pinned: [JWK]) -> [JWK] {
        var keys = pinned
        var changed = true
        while changed {
            changed = false
            let trusted = VerifyingKeySet(keys.compactMap { try? VerifyingKey(jwk: $0) })
            let known = Set(keys.compactMap { try? VerifyingKey(jwk: $0).thumbprint })
            for compact in announcements {
                guard let verified = try? JWS.verify(compact, keys: trusted), verified.header.type == "holdfast-key-rotation+jws",
                      let payload = try? JSONValue.parse(verified.payload), payload["type"]?.stringValue == "holdfast.key_rotation",
                      let newValue = payload["new"], let data = try? JSONEncoder().encode(newValue), let jwk = try? JSONDecoder().decode(JWK.self, from: data),
                      let key = try? VerifyingKey(jwk: jwk), !known.contains(key.thumbprint)
                else { continue }
                keys.append(key.jwk)
                changed = true
                break
            }
        }
        return keys
    }

    // MARK: Plumbing

    func signedRequest(_ method: String, _ path: String, query: String? = nil, body: [UInt8]?, timeout: Duration, client: HTTPClient? = nil) async throws(BrokerClientError) -> HTTPAnswer {
        let claims: JSONValue = .object([
            "sub": .string(record.deviceID), "htm": .string(method), "htu": .string(path), "iat": .int(Int64(Date().timeIntervalSince1970)),
            "bh": .string(Base64URL.encode(SHA256.hash(body ?? []))), "jti": .string((try? SecureRandom.token(bytes: 12)) ?? ""),
        ])
        let token: String
        do {
            token = try JWS.sign(Array(claims.compactText.utf8), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: "holdfast-request+jws"))
        } catch {
            throw BrokerClientError(.setup, "cannot sign the request: \(error)")
        }
        let url = record.url + path + (query.map { "?" + $0 } ?? "")
        return try await (client ?? self.client).send(method, url, headers: ["Authorization: Holdfast-Device " + token], body: body, timeout: timeout)
    }

    static func parse(_ answer: HTTPAnswer, _ what: String) throws(BrokerClientError) -> JSONValue {
        let value = try? JSONValue.parse(answer.body)
        guard answer.status == 200 else {
            let message = value?["message"]?.stringValue ?? "status \(answer.status)"
            throw BrokerClientError(.status, "the broker refused the \(what): \(message)", status: answer.status)
        }
        guard let value, case .object = value else { throw BrokerClientError(.invalid, "the broker's \(what) answer is not a JSON object") }
        return value
    }
}

func jsonValue(_ value: some Encodable) -> JSONValue {
    guard let data = try? JSONEncoder().encode(value), let decoded = try? JSONDecoder().decode(JSONValue.self, from: data) else { return .null }
    return decoded
}
