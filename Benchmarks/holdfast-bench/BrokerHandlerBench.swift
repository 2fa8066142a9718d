import Foundation
import HoldfastBroker
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport
import Posture

/// The broker's own work per attestation, without the transport: the challenge and the attest
/// request straight into `Broker.early` and `Broker.handle` (real SQLite), beside the
/// cryptography the exchange cannot avoid — three Ed25519 verifications (the two request
/// signatures and the report's) and two signatures (verdict and grant).
enum BrokerHandlerBench {
    static func rows(devices: Int = 100, attestations: Int = 2_000) throws -> [Row] {
        let directory = TemporaryDirectory()
        let storage = try SQLiteBrokerStorage(directory: directory.file("state"))
        let signing = try SigningKey.generate()
        let broker = Broker(storage: storage, keys: BrokerKeys(current: signing), settings: BrokerSettings(issuer: "https://broker.bench"), caPEM: "CA", logger: Logger(level: .error))
        let checks = PostureCatalog.run(PostureContext(tree: RootTree("/"), system: LiveSystem(), now: Date().timeIntervalSince1970, cache: PatchCache()))
        var enrolled: [(id: String, key: SigningKey)] = []
        for index in 0..<devices {
            let key = try SigningKey.generate()
            let secret = try SecureRandom.token(bytes: 32)
            let now = Int64(Date().timeIntervalSince1970)
            try storage.addEnrollmentToken(id: "handler-\(index)", tokenHash: SHA256.hash(Array(secret.utf8)), label: "bench", expires: now + 3_600, createdBy: "bench", at: now)
            let jwk = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(key.publicKey.jwk))
            let payload: JSONValue = .object(["secret": .string(secret), "key": jwk, "facts": .object(["hostname": .string("desk-\(index)")]), "iat": .int(now)])
            let document = try JWS.sign(Array(try JSONEncoder().encode(payload)), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: Broker.enrollType))
            let answer = try respond(broker, HTTPRequest(method: "POST", path: "/v1/enroll", body: Array(document.utf8)))
            guard answer.status == 200, let id = try JSONDecoder().decode(JSONValue.self, from: Data(answer.body))["device_id"]?.stringValue else { throw BenchFailure("enrollment answered \(answer.status)") }
            enrolled.append((id, key))
        }
        // Only the broker's calls are timed; the device's signing happens outside the clock.
        var handler: [Double] = []
        var decisions = 0
        let clock = ContinuousClock()
        let started = clock.now
        var spent = Duration.zero
        for round in 0..<attestations {
            let (id, key) = enrolled[round % devices]
            let challengeRequest = try signed("POST", "/v1/challenge", device: id, key: key, body: Array("{}".utf8))
            var before = clock.now
            let challenge = try respond(broker, challengeRequest)
            var elapsed = clock.now - before
            guard challenge.status == 200, let nonce = try JSONDecoder().decode(JSONValue.self, from: Data(challenge.body))["nonce"]?.stringValue else { throw BenchFailure("challenge answered \(challenge.status)") }
            let report = try PostureReport(device: id, time: Date(), nonce: nonce, checks: checks, durationMilliseconds: 0).signed(with: key)
            let body = Array(try JSONEncoder().encode(JSONValue.object(["report": .string(report)])))
            let attestRequest = try signed("POST", "/v1/attest", device: id, key: key, body: body)
            before = clock.now
            let attest = try respond(broker, attestRequest)
            elapsed += clock.now - before
            guard attest.status == 200 else { throw BenchFailure("attest answered \(attest.status): \(String(decoding: attest.body, as: UTF8.self))") }
            decisions += 1
            handler.append(elapsed.seconds)
            spent += elapsed
        }
        _ = started
        let measured = Measurement(operations: decisions, seconds: spent.seconds, latencies: handler)
        // The floor: the same cryptography with OpenSSL alone.
        let message = Array(repeating: UInt8(ascii: "x"), count: 256)
        let signature = try signing.signature(for: message)
        let verifier = signing.publicKey
        let floor = try measure(attestations) { _ in
            for _ in 0..<3 { guard verifier.isValidSignature(signature, for: message) else { throw BenchFailure("verify") } }
            for _ in 0..<2 { _ = try signing.signature(for: message) }
        }
        return [Row(
            name: "broker handler alone, per attestation (challenge + attest into Broker.early/handle, real SQLite, no transport; \(attestations)× over \(devices) devices, report of \(checks.count) checks)",
            holdfast: String(format: "p50 %.0f µs, p99 %.0f µs (%.0f/s on one core)", measured.percentile(0.5) * 1e6, measured.percentile(0.99) * 1e6, measured.perSecond),
            anchorName: "the cryptography it cannot avoid: 3 Ed25519 verifications + 2 signatures (OpenSSL EVP)",
            anchor: String(format: "p50 %.0f µs (%.0f/s)", floor.percentile(0.5) * 1e6, floor.perSecond),
            ratio: String(format: "%.2f× the anchor's time (p50)", measured.percentile(0.5) / max(floor.percentile(0.5), 1e-9)))]
    }

    struct BenchFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    static func respond(_ broker: Broker, _ request: HTTPRequest) throws -> HTTPResponse {
        var screened = request
        switch broker.early(method: request.method, path: request.path, headers: request.headers) {
        case .refuse(let response): return response
        case .proceed(let learned): screened.screened = learned
        }
        guard case .respond(let response) = broker.handle(screened) else { throw BenchFailure("\(request.path) did not answer at once") }
        return response
    }

    /// A device-signed request, as BrokerClient signs it.
    static func signed(_ method: String, _ path: String, device: String, key: SigningKey, body: [UInt8]) throws -> HTTPRequest {
        let claims: JSONValue = .object([
            "sub": .string(device), "htm": .string(method), "htu": .string(path), "iat": .int(Int64(Date().timeIntervalSince1970)),
            "bh": .string(Base64URL.encode(SHA256.hash(body))), "jti": .string(UUID().uuidString),
        ])
        let token = try JWS.sign(Array(try JSONEncoder().encode(claims)), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: Broker.requestType))
        return HTTPRequest(method: method, path: path, headers: ["authorization": "\(Broker.deviceScheme) \(token)"], body: body)
    }
}
