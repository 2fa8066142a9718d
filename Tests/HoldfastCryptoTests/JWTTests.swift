import Foundation
import HoldfastCore
import HoldfastCrypto
import Testing

@Suite struct JWTTests {
    let key: SigningKey
    let keys: VerifyingKeySet
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    init() throws {
        key = try SigningKey.generate()
        keys = VerifyingKeySet([key.publicKey])
    }

    func token(
        audience: [String]? = ["gateway"], issuer: String? = "broker",
        issuedAt: TimeInterval? = 0, notBefore: TimeInterval? = nil, expiresIn: TimeInterval? = 300,
        type: String = "JWT"
    ) throws -> String {
        let claims = JWTClaims(
            issuer: issuer, subject: "device-1", audience: audience,
            issuedAt: issuedAt.map { now + $0 }, notBefore: notBefore.map { now + $0 },
            expiresAt: expiresIn.map { now + $0 }, id: "j1",
            other: ["posture": "compliant", "user": "alice"]
        )
        return try JWT.sign(claims, with: key, type: type)
    }

    func validation(at offset: TimeInterval = 0, audience: String? = "gateway", issuer: String? = "broker", type: String? = nil) -> JWTValidation {
        JWTValidation(clock: ManualTimeSource(now + offset), leeway: 30, audience: audience, issuer: issuer, type: type)
    }

    func refusal(_ token: String, _ validation: JWTValidation) -> CryptoError.Code? {
        do {
            _ = try JWT.verify(token, keys: keys, validation: validation)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func acceptsAValidTokenAndKeepsItsClaims() throws {
        let verified = try JWT.verify(try token(), keys: keys, validation: validation())
        #expect(verified.claims.subject == "device-1")
        #expect(verified.claims.audience == ["gateway"])
        #expect(verified.claims.expiresAt == now + 300)
        #expect(verified.claims.other["posture"] == "compliant")
        #expect(verified.header.type == "JWT")
        #expect(verified.header.keyID == key.publicKey.thumbprint)
    }

    @Test func refusesAnExpiredToken() throws {
        #expect(refusal(try token(), validation(at: 331)) == .expired)
    }

    @Test func acceptsExpiryWithinTheLeeway() throws {
        #expect(refusal(try token(), validation(at: 320)) == nil)
    }

    @Test func refusesATokenWithoutExpiry() throws {
        #expect(refusal(try token(expiresIn: nil), validation()) == .expired)
    }

    @Test func refusesATokenNotYetValid() throws {
        #expect(refusal(try token(notBefore: 120), validation()) == .notYetValid)
    }

    @Test func refusesATokenIssuedInTheFuture() throws {
        #expect(refusal(try token(issuedAt: 600, expiresIn: 900), validation()) == .notYetValid)
    }

    @Test func refusesTheWrongAudience() throws {
        #expect(refusal(try token(audience: ["other-gateway"]), validation()) == .wrongAudience)
    }

    @Test func refusesAMissingAudienceWhenOneIsRequired() throws {
        #expect(refusal(try token(audience: nil), validation()) == .wrongAudience)
    }

    @Test func acceptsItsAudienceInAnArray() throws {
        #expect(refusal(try token(audience: ["a", "gateway"]), validation()) == nil)
    }

    @Test func refusesTheWrongIssuer() throws {
        #expect(refusal(try token(issuer: "mallory"), validation()) == .wrongIssuer)
    }

    @Test func refusesTheWrongDocumentType() throws {
        #expect(refusal(try token(type: "holdfast-grant+jwt"), validation(type: "holdfast-command+jwt")) == .wrongType)
    }

    @Test func refusesAPayloadThatIsNotAClaimsSet() throws {
        let signed = try JWS.sign(Array("[1,2]".utf8), with: key)
        #expect(refusal(signed, validation()) == .malformed)
    }
}

@Suite struct JWKTests {
    @Test func roundTripsAKeyThroughAJWKSet() throws {
        let key = try SigningKey.generate()
        let set = JWKSet(keys: [key.publicKey.jwk])
        let decoded = try JSONDecoder().decode(JWKSet.self, from: try JSONEncoder().encode(set))
        let keys = try VerifyingKeySet(jwks: decoded)
        let token = try JWS.sign([42], with: key)
        #expect(try JWS.verify(token, keys: keys).payload == [42])
        #expect(decoded.keys.first?.kid == key.publicKey.thumbprint)
    }

    @Test(arguments: [
        ("RSA key type", JWK(kty: "RSA", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")),
        ("X25519 curve", JWK(kty: "OKP", crv: "X25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")),
        ("short x", JWK(kty: "OKP", crv: "Ed25519", x: "11qYAYKx")),
        ("bad base64url", JWK(kty: "OKP", crv: "Ed25519", x: "11qYAYKx+")),
        ("encryption use", JWK(kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", use: "enc")),
        ("another alg", JWK(kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", alg: "ES256")),
    ])
    func refusesKeysThatAreNotEd25519SigningKeys(_ name: String, _ jwk: JWK) {
        let error = #expect(throws: CryptoError.self, "\(name)") { try VerifyingKey(jwk: jwk) }
        #expect(error?.code == .invalidKey)
    }

    @Test func refusesADuplicateKeyID() throws {
        let jwk = try SigningKey.generate().publicKey.jwk
        #expect(throws: CryptoError.self) { try VerifyingKeySet(jwks: JWKSet(keys: [jwk, jwk])) }
    }

    @Test func refusesAnEmptySet() {
        #expect(throws: CryptoError.self) { try VerifyingKeySet(jwks: JWKSet(keys: [])) }
    }
}

/// `JWTClaims.json()` (what `JWT.sign` signs) against the `Encodable` form it replaced.
@Suite struct JWTClaimsJSONTests {
    @Test(arguments: [
        JWTClaims(issuer: "https://broker", subject: "hf-1", audience: ["holdfast"], issuedAt: Date(timeIntervalSince1970: 1_900_000_000),
                  expiresAt: Date(timeIntervalSince1970: 1_900_000_600), id: "j-1", other: ["posture": "compliant", "user": "CORP\\alice"]),
        JWTClaims(audience: ["a", "b"], notBefore: Date(timeIntervalSince1970: 1_900_000_000.25), other: ["nested": .object(["x": .array([1, .double(0.5), .null])])]),
        JWTClaims(other: ["iss": "not registered here", "é": "x/y"]),
        JWTClaims(),
    ])
    func isWhatTheEncoderWrites(_ claims: JWTClaims) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(try claims.json().compactText == String(decoding: try encoder.encode(claims), as: UTF8.self))
    }
}
