import Foundation
import HoldfastBroker
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport
import Testing

/// The broker's API in process, over real SQLite: every request is built as an agent builds it
/// (device-signed), and every refusal is checked for its status, its reason and its trail.
@Suite struct BrokerTests {
    /// A broker with one admin-made token, a manual clock and its storage in a temporary directory.
    final class Rig {
        let directory = TemporaryDirectory()
        let storage: SQLiteBrokerStorage
        let clock = ManualTimeSource(Date(timeIntervalSince1970: 1_900_000_000))
        let signing: SigningKey
        let broker: Broker
        let settings = BrokerSettings(issuer: "https://broker.test:8443", grantLifetime: 600, staleAfter: 900)

        /// Over real HTTPS (libmicrohttpd with a CA-issued certificate, curl as the client), or
        /// straight into the broker's handler.
        var server: HTTPServer?
        var caFile = ""

        init(https: Bool = false) throws {
            storage = try SQLiteBrokerStorage(directory: directory.file("state"))
            signing = try SigningKey.generate()
            broker = Broker(storage: storage, keys: BrokerKeys(current: signing), settings: settings, caPEM: "CA", clock: clock, logger: Logger(level: .error))
            if https {
                let authority = try TLSIdentity.authority(commonName: "test CA", validDays: 2, constrainedTo: "localhost")
                let identity = try authority.issueServer(hostname: "localhost", validDays: 1)
                caFile = directory.file("ca.pem")
                try String(decoding: try authority.certificatePEM(), as: UTF8.self).writeReplacing(toFile: caFile)
                let broker = self.broker
                let server = HTTPServer(
                    .init(listen: "127.0.0.1:0", certificatePEM: String(decoding: try identity.certificatePEM(), as: UTF8.self),
                          keyPEM: String(decoding: try identity.keyPEM(), as: UTF8.self), threads: 2),
                    handler: { broker.handle($0) })
                try server.start()
                self.server = server
            }
        }

        deinit { server?.stop() }

        var now: Int64 { Int64(clock.now().timeIntervalSince1970) }

        /// A token secret stored as `token create` stores it.
        func token(expiresIn seconds: Int64 = 3_600) throws -> String {
            let secret = try SecureRandom.token(bytes: 32)
            try storage.addEnrollmentToken(id: try SecureRandom.token(bytes: 9), tokenHash: SHA256.hash(Array(secret.utf8)), label: "test", expires: now + seconds, createdBy: "alice", at: now)
            return secret
        }

        func call(_ request: HTTPRequest) -> HTTPResponse {
            if let server { return Self.overHTTPS(request, port: server.port, caFile: caFile, directory: directory) }
            guard case .respond(let response) = broker.handle(request) else {
                Issue.record("expected an immediate answer for \(request.path)")
                return HTTPResponse(status: 0)
            }
            return response
        }

        func enroll(_ key: SigningKey, secret: String, iat: Int64? = nil, signWith: SigningKey? = nil) throws -> HTTPResponse {
            let jwk = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(key.publicKey.jwk))
            let payload: JSONValue = .object(["secret": .string(secret), "key": jwk, "facts": .object(["hostname": "desk-7"]), "iat": .int(iat ?? now)])
            let document = try JWS.sign(Array(try JSONEncoder().encode(payload)), with: signWith ?? key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: Broker.enrollType))
            return call(HTTPRequest(method: "POST", path: "/v1/enroll", body: Array(document.utf8)))
        }

        func enrolledDevice(_ key: SigningKey) throws -> String {
            let response = try enroll(key, secret: try token())
            #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
            return try #require(json(response)["device_id"]?.stringValue)
        }

        /// A device-signed request, as BrokerClient signs it.
        func signed(_ method: String, _ path: String, device: String, key: SigningKey, body: [UInt8], iat: Int64? = nil, signedPath: String? = nil, signedBody: [UInt8]? = nil) throws -> HTTPRequest {
            let claims: JSONValue = .object([
                "sub": .string(device), "htm": .string(method), "htu": .string(signedPath ?? path), "iat": .int(iat ?? now),
                "bh": .string(Base64URL.encode(SHA256.hash(signedBody ?? body))), "jti": .string(UUID().uuidString),
            ])
            let token = try JWS.sign(Array(try JSONEncoder().encode(claims)), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: Broker.requestType))
            return HTTPRequest(method: method, path: path, headers: ["authorization": "\(Broker.deviceScheme) \(token)"], body: body)
        }

        func challenge(device: String, key: SigningKey) throws -> String {
            let response = call(try signed("POST", "/v1/challenge", device: device, key: key, body: Array("{}".utf8)))
            #expect(response.status == 200)
            return try #require(json(response)["nonce"]?.stringValue)
        }

        /// A posture report payload, signed.
        func report(device: String, nonce: String?, key: SigningKey, failing: [String] = [], type: String = "holdfast-posture+jws", partial: Bool = false) throws -> String {
            var checks: [JSONValue] = ["disk-encryption", "firewall", "screen-lock"].map { id in
                .object(["id": .string(id), "status": .string(failing.contains(id) ? "fail" : "pass"), "remediation": .string("fix \(id)")])
            }
            checks.append(.object(["id": "clock-sync", "status": "unknown", "remediation": ""]))
            var object: [String: JSONValue] = ["type": "holdfast.posture", "device": .string(device), "iat": .int(now), "status": .string(failing.isEmpty ? "pass" : "fail"), "checks": .array(checks)]
            if let nonce { object["nonce"] = .string(nonce) }
            if partial { object["partial"] = true }
            return try JWS.sign(Array(try JSONEncoder().encode(JSONValue.object(object))), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: type))
        }

        func attest(device: String, key: SigningKey, report: String, user: String? = nil) throws -> HTTPResponse {
            var body: [String: JSONValue] = ["report": .string(report)]
            if let user { body["user"] = .string(user) }
            return call(try signed("POST", "/v1/attest", device: device, key: key, body: Array(try JSONEncoder().encode(JSONValue.object(body)))))
        }

        func authz(_ grant: String?, cookie: Bool = false) -> HTTPResponse {
            var headers: [String: String] = [:]
            if let grant { headers[cookie ? "cookie" : "authorization"] = cookie ? "theme=dark; holdfast_grant=\(grant)" : "Bearer \(grant)" }
            return call(HTTPRequest(method: "GET", path: "/v1/authz", headers: headers))
        }

        func setPolicy(_ text: String, version: Int64) throws {
            #expect(try storage.addDocument(VersionedDocument(kind: .compliancePolicy, version: version, document: text, setBy: "alice", setAt: now)))
        }

        /// The request sent with curl over TLS to the broker's server; the status and body back.
        static func overHTTPS(_ request: HTTPRequest, port: UInt16, caFile: String, directory: TemporaryDirectory) -> HTTPResponse {
            let bodyFile = directory.file("body-\(UUID().uuidString)")
            let outputFile = directory.file("out-\(UUID().uuidString)")
            let headerFile = directory.file("headers-\(UUID().uuidString)")
            var arguments = ["-s", "--cacert", caFile, "-X", request.method, "-o", outputFile, "-D", headerFile, "-w", "%{http_code}", "-H", "Expect:"]
            for (name, value) in request.headers { arguments += ["-H", "\(name): \(value)"] }
            if !request.body.isEmpty || request.method == "POST" {
                try? Data(request.body).write(to: URL(fileURLWithPath: bodyFile))
                arguments += ["-H", "Content-Type: application/json", "--data-binary", "@" + bodyFile]
            }
            let query = request.query.isEmpty ? "" : "?" + request.query.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "&")
            arguments.append("https://localhost:\(port)\(request.path)\(query)")
            guard let result = try? runProcess("/usr/bin/curl", arguments), let status = Int(result.stdout) else { return HTTPResponse(status: 0) }
            let body = (try? Data(contentsOf: URL(fileURLWithPath: outputFile))).map { Array($0) } ?? []
            var headers: [String: String] = [:]
            for line in ((try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? "").split(separator: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[String(line[..<colon])] = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            }
            return HTTPResponse(status: status, headers: headers, body: body)
        }

        /// The newest trail entry's kind and detail.
        func lastLog() throws -> BrokerLogEntry? { try storage.logEntries(device: nil, limit: 1).first }
    }

    static func json(_ response: HTTPResponse) -> JSONValue {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body))) ?? .null
    }
    func json(_ response: HTTPResponse) -> JSONValue { Self.json(response) }

    // MARK: Enrollment

    @Test(arguments: [false, true])
    func enrollmentBindsTheKeyAndTheTokenIsSingleUse(https: Bool) throws {
        let rig = try Rig(https: https)
        let key = try SigningKey.generate()
        let secret = try rig.token()
        let first = try rig.enroll(key, secret: secret)
        #expect(first.status == 200)
        let id = try #require(json(first)["device_id"]?.stringValue)
        #expect(id.hasPrefix("hf-") && id.count == 19)
        guard case .array(let published)? = json(first)["keys"] else { Issue.record("no keys"); return }
        #expect(published.first?["kid"]?.stringValue == rig.signing.publicKey.thumbprint)
        let stored = try #require(try rig.storage.device(id: id))
        #expect(stored.publicKey == key.publicKey.rawRepresentation)
        #expect(stored.facts.contains("desk-7"))
        // The same token again, even for another key: refused, and recorded.
        let again = try rig.enroll(try SigningKey.generate(), secret: secret)
        #expect(again.status == 403)
        #expect(json(again)["error"]?.stringValue == "token-used")
        // Whoever holds a spent secret proves nothing: counted, not written to the trail.
        #expect(try rig.lastLog()?.kind == "enroll")
    }

    @Test(arguments: [
        ("expired", "token-expired"), ("unknown", "token-unknown"), ("not signed by its key", "bad-request"), ("dated an hour ago", "clock"),
    ], [false, true])
    func enrollmentRefusals(_ scenario: (String, String), https: Bool) throws {
        let (scenario, expected) = scenario
        let rig = try Rig(https: https)
        let key = try SigningKey.generate()
        let response: HTTPResponse
        switch scenario {
        case "expired":
            let secret = try rig.token(expiresIn: 60)
            rig.clock.advance(by: 61)
            response = try rig.enroll(key, secret: secret)
        case "unknown":
            response = try rig.enroll(key, secret: "made-up")
        case "not signed by its key":
            response = try rig.enroll(key, secret: try rig.token(), signWith: try SigningKey.generate())
        default:
            response = try rig.enroll(key, secret: try rig.token(), iat: rig.now - 3_600)
        }
        #expect(response.status == 400 || response.status == 403)
        #expect(json(response)["error"]?.stringValue == expected)
        #expect(try rig.storage.devices().isEmpty)
        // None reaches the trail: anyone can send them (a made-up or a spent secret alike).
        #expect(try rig.lastLog() == nil)
    }

    @Test func theSameKeyCannotEnrollTwice() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        _ = try rig.enrolledDevice(key)
        let again = try rig.enroll(key, secret: try rig.token())
        #expect(again.status == 409)
        #expect(json(again)["error"]?.stringValue == "key-enrolled")
    }

    // MARK: Attestation

    @Test(arguments: [false, true])
    func attestationGivesAVerdictAndAGrantTheJWKSVerifies(https: Bool) throws {
        let rig = try Rig(https: https)
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let nonce = try rig.challenge(device: device, key: key)
        let response = try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: nonce, key: key), user: "maria")
        #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
        let grant = try #require(json(response)["grant"]?.stringValue)
        // A gateway with only the JWKS verifies the grant.
        let jwks = try JSONDecoder().decode(JWKSet.self, from: Data(rig.call(HTTPRequest(method: "GET", path: "/.well-known/jwks.json")).body))
        let keys = VerifyingKeySet(try jwks.keys.map { try VerifyingKey(jwk: $0) })
        let verified = try JWT.verify(grant, keys: keys, validation: JWTValidation(clock: rig.clock, audience: "holdfast", issuer: rig.settings.issuer, type: "JWT"))
        #expect(verified.claims.subject == device)
        #expect(verified.claims.other["user"]?.stringValue == "maria")
        #expect(verified.claims.other["posture"]?.stringValue == "compliant")
        let lifetime = try #require(verified.claims.expiresAt).timeIntervalSince(try #require(verified.claims.issuedAt))
        #expect(lifetime == 600)
        // The verdict is signed too, for this device and this nonce.
        let verdict = try JWS.verify(try #require(json(response)["verdict"]?.stringValue), keys: keys)
        #expect(verdict.header.type == Broker.verdictType)
        let claims = try JSONDecoder().decode(JSONValue.self, from: Data(verdict.payload))
        #expect(claims["device"]?.stringValue == device)
        #expect(claims["nonce"]?.stringValue == nonce)
        #expect(claims["decision"]?.stringValue == "compliant")
        #expect(rig.authz(grant).status == 200)
        #expect(rig.authz(grant).headers["X-Holdfast-Device-User"] == "maria")
        #expect(rig.authz(grant, cookie: true).status == 200)
    }

    /// Each way a report can be wrong is refused with its own reason, and recorded.
    @Test(arguments: ["forged", "other device's key", "names another device", "replayed nonce", "expired nonce", "another device's nonce", "unknown nonce", "no nonce", "partial", "wrong type"], [false, true])
    func reportRefusals(_ scenario: String, https: Bool) throws {
        let rig = try Rig(https: https)
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let otherKey = try SigningKey.generate()
        let other = try rig.enrolledDevice(otherKey)
        let nonce = try rig.challenge(device: device, key: key)
        let expected: String
        let report: String
        switch scenario {
        case "forged":
            report = try rig.report(device: device, nonce: nonce, key: try SigningKey.generate())
            expected = "bad-signature"
        case "other device's key":
            report = try rig.report(device: device, nonce: nonce, key: otherKey)
            expected = "bad-signature"
        case "names another device":
            report = try rig.report(device: other, nonce: nonce, key: key)
            expected = "wrong-device"
        case "replayed nonce":
            report = try rig.report(device: device, nonce: nonce, key: key)
            #expect(try rig.attest(device: device, key: key, report: report).status == 200)
            expected = "nonce-replayed"
        case "expired nonce":
            rig.clock.advance(by: 61)
            report = try rig.report(device: device, nonce: nonce, key: key)
            expected = "nonce-expired"
        case "another device's nonce":
            report = try rig.report(device: device, nonce: try rig.challenge(device: other, key: otherKey), key: key)
            expected = "nonce-other-device"
        case "unknown nonce":
            report = try rig.report(device: device, nonce: "made-up", key: key)
            expected = "nonce-unknown"
        case "no nonce":
            report = try rig.report(device: device, nonce: nil, key: key)
            expected = "no-nonce"
        case "partial":
            report = try rig.report(device: device, nonce: nonce, key: key, partial: true)
            expected = "bad-report"
        default:
            report = try rig.report(device: device, nonce: nonce, key: key, type: "JWT")
            expected = "wrong-type"
        }
        let response = try rig.attest(device: device, key: key, report: report)
        #expect(response.status == 403 || response.status == 400)
        #expect(json(response)["error"]?.stringValue == expected, "\(String(decoding: response.body, as: UTF8.self))")
        #expect(json(response)["grant"] == nil)
        #expect(try rig.lastLog()?.kind == "attest.refused")
        #expect(try rig.lastLog()?.detail.hasPrefix(expected) == true)
    }

    /// Device-signed requests: the signature covers method, path, body and time.
    @Test(arguments: ["wrong body", "wrong path", "an hour old", "unknown device", "removed device", "no signature"])
    func requestAuthenticationRefusals(_ scenario: String) throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let body = Array("{}".utf8)
        let request: HTTPRequest
        switch scenario {
        case "wrong body": request = try rig.signed("POST", "/v1/challenge", device: device, key: key, body: body, signedBody: Array("{\"x\":1}".utf8))
        case "wrong path": request = try rig.signed("POST", "/v1/challenge", device: device, key: key, body: body, signedPath: "/v1/agent-policy/ack")
        case "an hour old": request = try rig.signed("POST", "/v1/challenge", device: device, key: key, body: body, iat: rig.now - 3_600)
        case "unknown device": request = try rig.signed("POST", "/v1/challenge", device: "hf-0000000000000000", key: key, body: body)
        case "removed device":
            #expect(try rig.storage.removeDevice(id: device, at: rig.now))
            request = try rig.signed("POST", "/v1/challenge", device: device, key: key, body: body)
        default: request = HTTPRequest(method: "POST", path: "/v1/challenge", body: body)
        }
        let response = rig.call(request)
        #expect(response.status == 401)
        #expect(json(response)["nonce"] == nil)
    }

    // MARK: Gateways

    @Test func authzRefusesMissingForgedAndExpiredGrants() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let nonce = try rig.challenge(device: device, key: key)
        let grant = try #require(json(try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: nonce, key: key)))["grant"]?.stringValue)
        #expect(rig.authz(nil).status == 401)
        #expect(rig.authz("garbage").status == 401)
        // Same claims, signed by someone else.
        let verified = try JWT.verify(grant, keys: VerifyingKeySet([rig.signing.publicKey]), validation: JWTValidation(clock: rig.clock))
        let forged = try JWT.sign(verified.claims, with: try SigningKey.generate())
        #expect(rig.authz(forged).status == 401)
        #expect(rig.authz(grant).status == 200)
        rig.clock.advance(by: 601 + 30)
        #expect(rig.authz(grant).status == 401)
    }

    @Test func aStricterPolicyDeniesAtOnceAndNamesTheChecksNotThePolicy() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let nonce = try rig.challenge(device: device, key: key)
        let grant = try #require(json(try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: nonce, key: key, failing: ["firewall"])))["grant"]?.stringValue)
        #expect(rig.authz(grant).status == 200)
        try rig.setPolicy(#"{"checks": {"firewall": {"mode": "block"}, "disk-encryption": "block", "clock-sync": {"mode": "warn"}}}"#, version: 1)
        let denied = rig.authz(grant)
        #expect(denied.status == 403)
        #expect(json(denied)["error"]?.stringValue == "noncompliant")
        #expect(json(denied)["failing"] == .array(["firewall"]))
        let text = String(decoding: denied.body, as: UTF8.self)
        #expect(text.contains("fix firewall"))
        #expect(!text.contains("block") && !text.contains("grace"), "the denial must not show the policy's modes: \(text)")
        // The next attestation is denied too: a verdict and a denial, no grant.
        let next = try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: try rig.challenge(device: device, key: key), key: key, failing: ["firewall"]))
        #expect(next.status == 200)
        #expect(json(next)["grant"] == nil)
        #expect(json(next)["denial"]?.stringValue?.contains("firewall") == true)
    }

    @Test func aDeviceThatStopsAttestingGoesStaleAndIsDenied() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let nonce = try rig.challenge(device: device, key: key)
        let grant = try #require(json(try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: nonce, key: key)))["grant"]?.stringValue)
        rig.clock.advance(by: 500)
        #expect(rig.authz(grant).status == 200)
        // A long-lived grant is not the point: the device's own freshness is checked too. With a
        // stale window shorter than the grant, the grant stops early.
        let short = Broker(storage: rig.storage, keys: BrokerKeys(current: rig.signing), settings: BrokerSettings(issuer: rig.settings.issuer, staleAfter: 300), caPEM: "", clock: rig.clock, logger: Logger(level: .error))
        guard case .respond(let stale) = short.handle(HTTPRequest(method: "GET", path: "/v1/authz", headers: ["authorization": "Bearer \(grant)"])) else {
            Issue.record("no answer")
            return
        }
        #expect(stale.status == 403)
        #expect(Self.json(stale)["error"]?.stringValue == "stale")
    }

    @Test func anUnenrolledDevicesGrantIsRefused() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let nonce = try rig.challenge(device: device, key: key)
        let grant = try #require(json(try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: nonce, key: key)))["grant"]?.stringValue)
        #expect(try rig.storage.removeDevice(id: device, at: rig.now))
        let response = rig.authz(grant)
        #expect(response.status == 403)
        #expect(json(response)["error"]?.stringValue == "removed")
    }

    // MARK: Agent policy

    @Test func agentPolicyIsServedNewerThanAskedAndHeldOtherwise() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        func poll(after: Int64, wait: Int) throws -> HTTPHandling {
            var request = try rig.signed("GET", "/v1/agent-policy", device: device, key: key, body: [])
            request.query = ["after": "\(after)", "wait": "\(wait)"]
            return rig.broker.handle(request)
        }
        guard case .respond(let none) = try poll(after: 0, wait: 0) else { Issue.record("expected an answer"); return }
        #expect(none.status == 204)
        guard case .wait(_, let ready, let timeout) = try poll(after: 0, wait: 30) else { Issue.record("expected a held poll"); return }
        #expect(ready() == nil)
        #expect(timeout.status == 204)
        let document = Array(#"{"version": 3, "usb": {}}"#.utf8)
        let signed = try Broker.signAgentPolicy(document, version: 1, at: rig.now, key: rig.signing)
        #expect(try rig.storage.addDocument(VersionedDocument(kind: .agentPolicy, version: 1, document: signed, setBy: "alice", setAt: rig.now)))
        // The cache refreshes within half a second.
        var answer: HTTPResponse?
        for _ in 0..<20 where answer == nil {
            answer = ready()
            if answer == nil { usleep(100_000) }
        }
        let got = try #require(answer)
        #expect(got.status == 200)
        #expect(json(got)["version"]?.intValue == 1)
        #expect(json(got)["policy"]?.stringValue == signed)
        guard case .respond(let current) = try poll(after: 1, wait: 0) else { Issue.record("expected an answer"); return }
        #expect(current.status == 204)
        // The acknowledgement is recorded on the device.
        let ack = rig.call(try rig.signed("POST", "/v1/agent-policy/ack", device: device, key: key, body: Array(#"{"version":1,"status":"applied","detail":""}"#.utf8)))
        #expect(ack.status == 200)
        #expect(try rig.storage.device(id: device)?.policyVersion == 1)
        #expect(try rig.storage.device(id: device)?.policyStatus == "applied")
    }
}

extension BrokerTests {
    /// A stored compliance policy that no longer parses denies everyone: never "no policy".
    @Test func anUnreadableStoredPolicyDeniesEveryone() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let nonce = try rig.challenge(device: device, key: key)
        let grant = try #require(json(try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: nonce, key: key)))["grant"]?.stringValue)
        try rig.setPolicy(#"{"checks": {"firewall": "maybe"}}"#, version: 1)
        let response = rig.authz(grant)
        #expect(response.status == 403)
        #expect(json(response)["failing"] == .array(["broker-policy"]))
    }
}

/// What a hostile review found, kept as tests.
extension BrokerTests {
    /// A time at the edge of Int64 is a refusal, not a crash (abs(Int64.min) traps).
    @Test func hostileTimesAreRefusedNotCrashes() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let enroll = try rig.enroll(key, secret: try rig.token(), iat: Int64.min + rig.now)
        #expect(enroll.status == 400)
        #expect(json(enroll)["error"]?.stringValue == "clock")
        let device = try rig.enrolledDevice(key)
        for iat in [Int64.min + rig.now, Int64.max, Int64.min] {
            let response = rig.call(try rig.signed("POST", "/v1/challenge", device: device, key: key, body: Array("{}".utf8), iat: iat))
            #expect(response.status == 401)
        }
    }

    /// A captured request is accepted once.
    @Test func aReplayedRequestIsRefused() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let request = try rig.signed("POST", "/v1/challenge", device: device, key: key, body: Array("{}".utf8))
        #expect(rig.call(request).status == 200)
        let again = rig.call(request)
        #expect(again.status == 401)
        #expect(json(again)["error"]?.stringValue == "replayed")
    }

    @Test func aDeviceHoldsAtMostSixteenUnansweredChallenges() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        for _ in 0..<16 { _ = try rig.challenge(device: device, key: key) }
        let refused = rig.call(try rig.signed("POST", "/v1/challenge", device: device, key: key, body: Array("{}".utf8)))
        #expect(refused.status == 429)
        #expect(json(refused)["error"]?.stringValue == "too-many-challenges")
    }

    /// A removed device's key may enroll again (as a new device); an enrolled key is refused
    /// without spending the token.
    @Test func reEnrollmentAfterRemovalAndTokensAreNotBurnedByAKeyConflict() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let first = try rig.enrolledDevice(key)
        let secret = try rig.token()
        #expect(try rig.enroll(key, secret: secret).status == 409)
        #expect(try rig.storage.removeDevice(id: first, at: rig.now))
        let again = try rig.enroll(key, secret: secret)
        #expect(again.status == 200, "\(String(decoding: again.body, as: UTF8.self))")
        let second = try #require(json(again)["device_id"]?.stringValue)
        #expect(second != first)
        // The old id stays removed; its grant would be refused; the new one works.
        #expect(try rig.storage.device(id: first)?.removedAt != nil)
        #expect(rig.call(try rig.signed("POST", "/v1/challenge", device: second, key: key, body: Array("{}".utf8))).status == 200)
        #expect(rig.call(try rig.signed("POST", "/v1/challenge", device: first, key: key, body: Array("{}".utf8))).status == 401)
    }

    /// Refusals anyone can cause without a key or a real token never reach the trail.
    @Test func unauthenticatedRefusalsAreCountedNotWritten() throws {
        let rig = try Rig()
        let before = try rig.storage.logEntries(device: nil, limit: 100).count
        _ = try rig.enroll(try SigningKey.generate(), secret: "made-up")
        _ = rig.call(HTTPRequest(method: "POST", path: "/v1/enroll", body: Array("garbage".utf8)))
        _ = rig.call(try rig.signed("POST", "/v1/challenge", device: "hf-0123456789abcdef", key: try SigningKey.generate(), body: []))
        #expect(try rig.storage.logEntries(device: nil, limit: 100).count == before)
        #expect(rig.broker.unauthenticatedRefusalCount == 3)
    }

    /// The device routes refuse a request without a device signature before reading its body.
    @Test func deviceRoutesNeedASignatureBeforeTheBody() throws {
        let rig = try Rig()
        #expect(rig.broker.early(method: "POST", path: "/v1/attest", headers: [:]).refusal?.status == 401)
        #expect(rig.broker.early(method: "POST", path: "/v1/attest", headers: ["authorization": "Bearer x"]).refusal?.status == 401)
        // The header's prefix is not enough: the signature must verify before a body is read.
        #expect(rig.broker.early(method: "POST", path: "/v1/attest", headers: ["authorization": "Holdfast-Device x"]).refusal?.status == 401)
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let signed = try rig.signed("POST", "/v1/attest", device: device, key: key, body: Array("{}".utf8))
        #expect(rig.broker.early(method: "POST", path: "/v1/attest", headers: signed.headers).refusal == nil)
        #expect(rig.broker.early(method: "POST", path: "/v1/challenge", headers: signed.headers).refusal?.status == 401, "signed for another path")
        #expect(rig.broker.early(method: "POST", path: "/v1/enroll", headers: [:]).refusal == nil)
        // Unknown paths (a trailing slash, another case) are refused before their body too.
        for path in ["/v1/attest/", "/V1/attest", "/nope", "//v1/attest"] {
            #expect(rig.broker.early(method: "POST", path: path, headers: signed.headers).refusal?.status == 404, "\(path)")
        }
    }

    /// What `early` verified is used only for the request it verified: a screened signature
    /// attached to a request with another Authorization is checked again (and refused here).
    @Test func aScreenedSignatureServesOnlyItsOwnRequest() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let nonce = try rig.challenge(device: device, key: key)
        let body = Array(try JSONEncoder().encode(JSONValue.object(["report": .string(try rig.report(device: device, nonce: nonce, key: key))])))
        var request = try rig.signed("POST", "/v1/attest", device: device, key: key, body: body)
        guard case .proceed(let screened) = rig.broker.early(method: "POST", path: "/v1/attest", headers: request.headers) else {
            Issue.record("early refused a good signature")
            return
        }
        var forged = request
        forged.headers["authorization"] = "\(Broker.deviceScheme) not.a.signature"
        forged.screened = screened
        guard case .respond(let refused) = rig.broker.handle(forged) else { return }
        #expect(refused.status == 401)
        request.screened = screened
        // A body that took longer than the screening holds (trickled past the replay window) is
        // verified again: here its signature is 200 s old, past the skew, and refused.
        var trickled = request
        trickled.screened = screened
        rig.clock.advance(by: 200)
        guard case .respond(let late) = rig.broker.handle(trickled) else { return }
        #expect(late.status == 401, "\(String(decoding: late.body, as: UTF8.self))")
        rig.clock.advance(by: -200)
        guard case .respond(let accepted) = rig.broker.handle(request) else { return }
        #expect(accepted.status == 200, "\(String(decoding: accepted.body, as: UTF8.self))")
    }
}

/// Heartbeats between attestations.
extension BrokerTests {
    /// Directory users (sssd, winbind) attest and get grants under their own names.
    @Test(arguments: [#"CORP\alice"#, "John Smith@corp.example", "ölaf"])
    func directoryUserNamesAttest(_ user: String) throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let nonce = try rig.challenge(device: device, key: key)
        let answer = try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: nonce, key: key), user: user)
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        let grant = try #require(json(answer)["grant"]?.stringValue)
        let claims = try JWT.verify(grant, keys: VerifyingKeySet([rig.signing.publicKey]), validation: JWTValidation(clock: rig.clock))
        #expect(claims.claims.other["user"]?.stringValue == user)
    }

    @Test func aHeartbeatIsKeptCheckedAndAsksForAnAttestationWhenNoneIsUsable() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        func beat(_ body: String) throws -> HTTPResponse { rig.call(try rig.signed("POST", "/v1/heartbeat", device: device, key: key, body: Array(body.utf8))) }
        let health = #"{"agent_version":"0.1.0","uptime_s":42,"services":{"usb":"running","print":"backing-off"},"pending_events":3,"policy_version":2,"decision":"compliant","later":"ignored"}"#
        // Never attested: the broker asks for one.
        let first = try beat(health)
        #expect(first.status == 200)
        #expect(json(first)["attest_now"]?.boolValue == true)
        let stored = try #require(try rig.storage.device(id: device))
        #expect(stored.heartbeatAt == rig.now)
        #expect(stored.lastSeen == rig.now)
        let kept = try JSONValue.parse(Array((stored.heartbeat ?? "").utf8))
        #expect(kept["services"]?["print"]?.stringValue == "backing-off")
        #expect(kept["pending_events"]?.intValue == 3)
        #expect(kept["later"] == nil, "members the broker does not know are not kept")
        // Attested under the policy in force: nothing to ask.
        let nonce = try rig.challenge(device: device, key: key)
        #expect(try rig.attest(device: device, key: key, report: try rig.report(device: device, nonce: nonce, key: key)).status == 200)
        #expect(json(try beat(health))["attest_now"]?.boolValue == false)
        // A new compliance policy: the attestation was judged under the old one.
        try rig.setPolicy(#"{"version": 1, "checks": {"firewall": "block"}}"#, version: 1)
        #expect(json(try beat(health))["attest_now"]?.boolValue == true)
        // Bad members are refused with the reason, and the trail says so.
        for bad in [#"{"uptime_s":-1}"#, #"{"services":["usb"]}"#, #"{"agent_version":"a b"}"#, "[]", #"{"a":1,"a":2}"#] {
            let refused = try beat(bad)
            #expect(refused.status == 400, "\(bad)")
        }
        #expect(try rig.lastLog()?.kind == "heartbeat.refused")
        // Unsigned: refused before anything is kept.
        #expect(rig.call(HTTPRequest(method: "POST", path: "/v1/heartbeat", body: Array(health.utf8))).status == 401)
    }
}

/// Event intake: whole batches, deduplicated by uuid per device.
extension BrokerTests {
    static func event(_ uuid: String, kind: String = "test.kind") -> String {
        #"{"class_uid":0,"holdfast":{"kind":"\#(kind)"},"message":"m","metadata":{"uid":"\#(uuid)"},"severity_id":1,"time":1900000000000}"#
    }

    @Test func eventsAreStoredOnceAndABadOneRefusesTheBatch() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let first = UUID().uuidString.lowercased(), second = UUID().uuidString.lowercased()
        func upload(_ events: [String]) throws -> HTTPResponse {
            rig.call(try rig.signed("POST", "/v1/events", device: device, key: key, body: Array(#"{"events":[\#(events.joined(separator: ","))]}"#.utf8)))
        }
        let one = try upload([Self.event(first), Self.event(second)])
        #expect(one.status == 200)
        #expect(json(one)["stored"]?.intValue == 2)
        // A retry of the same batch (the agent died before marking it): acknowledged, not stored again.
        let again = try upload([Self.event(first), Self.event(second)])
        #expect(json(again)["stored"]?.intValue == 0)
        #expect(json(again)["duplicates"]?.intValue == 2)
        #expect(json(again)["acknowledged"]?.intValue == 2)
        // One event without a uuid: nothing of the batch is stored.
        let bad = try upload([Self.event(UUID().uuidString), #"{"holdfast":{"kind":"x"},"time":1}"#])
        #expect(bad.status == 400)
        #expect(try rig.storage.eventCount(device: device, kind: nil) == 2)
        // Another device may send the same uuid (its own event): kept apart.
        let otherKey = try SigningKey.generate()
        let other = try rig.enrolledDevice(otherKey)
        let theirs = rig.call(try rig.signed("POST", "/v1/events", device: other, key: otherKey, body: Array(#"{"events":[\#(Self.event(first))]}"#.utf8)))
        #expect(json(theirs)["stored"]?.intValue == 1)
        #expect(try rig.storage.eventCount(device: device, kind: nil) == 2)
    }
}

/// Alert triage: detection findings folded per device, user and kind; ranked by the score.
extension BrokerTests {
    static func alertEvent(user: String, ratio: Double? = nil, metric: String = "files_written", action: String = "alert", classUID: Int = 2004, severity: Int = 3) -> String {
        let ratioText = ratio.map { String($0) } ?? "null"
        return #"{"actor":{"user":{"name":"\#(user)"}},"class_uid":\#(classUID),"holdfast":{"details":{"action":"\#(action)","metric":"\#(metric)","ratio":\#(ratioText)},"kind":"filewatch.alert"},"message":"\#(user) wrote many files","metadata":{"uid":"\#(UUID().uuidString.lowercased())"},"severity_id":\#(severity),"time":\#(Int64(Date().timeIntervalSince1970 * 1000))}"#
    }

    @Test func alertsFoldRepeatsAndRankByRisk() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        func upload(_ events: [String]) throws -> HTTPResponse {
            rig.call(try rig.signed("POST", "/v1/events", device: device, key: key, body: Array(#"{"events":[\#(events.joined(separator: ","))]}"#.utf8)))
        }
        let alice = (0..<3).map { _ in Self.alertEvent(user: "alice", ratio: 2) }
        let bob = Self.alertEvent(user: "bob", ratio: 64, metric: "removable_files_written", action: "block", severity: 4)
        let quiet = Self.alertEvent(user: "carol", classUID: 1001, severity: 1)
        #expect(try upload(alice + [bob, quiet]).status == 200)
        // The same batch again (a retry): no count added.
        #expect(try upload(alice).status == 200)
        let open = try rig.storage.alerts(includeClosed: false, limit: 10)
        #expect(open.map(\.user) == ["bob", "alice"], "highest risk first; carol's informational event is no alert")
        #expect(open.first { $0.user == "alice" }?.count == 3)
        // bob: High (48) + ratio 64 (5 × 6 = 30, capped 20) + removable 10 + block 10 = 88.
        #expect(open.first?.score == 88)
        #expect(try rig.storage.acknowledgeAlert(id: try #require(open.first?.id), admin: "alice-admin", note: "checked", at: rig.now))
        #expect(try rig.storage.alerts(includeClosed: false, limit: 10).map(\.user) == ["alice"])
        // After the ack, bob's next one is a new alert.
        #expect(try upload([Self.alertEvent(user: "bob", severity: 4)]).status == 200)
        #expect(try rig.storage.alerts(includeClosed: false, limit: 10).count == 2)
        #expect(try rig.storage.alerts(includeClosed: true, limit: 10).first { $0.status == "acknowledged" }?.acknowledgedBy == "alice-admin")
    }

    /// One device with many users' alerts: past 100 open ones, the rest fold into one flood alert.
    @Test func oneDeviceCannotFloodTheAlertList() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let events = (0..<150).map { Self.alertEvent(user: "user\($0)", severity: 6) }
        let upload = rig.call(try rig.signed("POST", "/v1/events", device: device, key: key, body: Array(#"{"events":[\#(events.joined(separator: ","))]}"#.utf8)))
        #expect(upload.status == 200)
        let open = try rig.storage.alerts(includeClosed: false, limit: 1_000)
        #expect(open.count == 101)
        #expect(open.first { $0.kind == "alerts.flood" }?.count == 50)
    }

    /// Hostile numbers from a device: "Other" severity is no alert, a far-future time folds at the
    /// broker's clock, a huge user name is cut.
    @Test func hostileAlertFieldsAreTamed() throws {
        let body = try JSONDecoder().decode(JSONValue.self, from: Data(#"{"class_uid":1,"actor":{"user":{"name":"\#(String(repeating: "u", count: 500))"}},"message":"m"}"#.utf8))
        let other = StoredEvent(device: "d", uuid: "u1", timeMilliseconds: 1, kind: "k", severity: 99, body: "{}")
        #expect(AlertTriage.candidate(other, body: body, posture: .compliant) == nil)
        let future = StoredEvent(device: "d", uuid: "u2", timeMilliseconds: Int64.max - 5, kind: "k", severity: 5, body: "{}")
        let candidate = try #require(AlertTriage.candidate(future, body: body, posture: .compliant, receivedMilliseconds: 1_900_000_000_000))
        #expect(candidate.time == 1_900_000_000_000)
        #expect(candidate.user.count == 64)
    }

    @Test(arguments: [
        (3, nil, "", "", AlertTriage.Posture.compliant, 36), (4, 8.0, "", "", .compliant, 63), (4, 1.0, "removable_files_written", "block", .noncompliant, 78),
        (5, 1e9, "removable_files_written", "block", .noncompliant, 100), (3, nil, "", "", .stale, 41),
    ] as [(Int64, Double?, String, String, AlertTriage.Posture, Int64)])
    func theRiskScore(_ severity: Int64, _ ratio: Double?, _ metric: String, _ action: String, _ posture: AlertTriage.Posture, _ expected: Int64) {
        var details: [String: JSONValue] = ["metric": .string(metric), "action": .string(action)]
        if let ratio { details["ratio"] = .double(ratio) }
        #expect(AlertTriage.score(severity: severity, details: .object(details), posture: posture) == expected)
    }
}
