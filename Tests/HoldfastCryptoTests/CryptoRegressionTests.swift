import Foundation
import HoldfastCore
import HoldfastCrypto
import HoldfastTestSupport
import Testing

/// Cases found by review, kept so they stay fixed.
@Suite struct CryptoRegressionTests {
    let key: SigningKey
    let keys: VerifyingKeySet

    init() throws {
        key = try SigningKey.generate()
        keys = VerifyingKeySet([key.publicKey])
    }

    /// Signs any header and payload text, bypassing the library's own header writer.
    func sign(header: String, payload: String) throws -> String {
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
        return input + "." + Base64URL.encode(try key.signature(for: Array(input.utf8)))
    }

    func refusal(_ token: String, jwt: Bool = true) -> CryptoError.Code? {
        do {
            if jwt {
                _ = try JWT.verify(token, keys: keys, validation: JWTValidation(clock: ManualTimeSource(Date(timeIntervalSince1970: 1_800_000_000))))
            } else {
                _ = try JWS.verify(token, keys: keys)
            }
            return nil
        } catch {
            return error.code
        }
    }

    @Test(arguments: [
        #"{"alg":"EdDSA","alg":"none"}"#,
        #"{"alg":"EdDSA","kid":"a","kid":"b"}"#,
        #"{"alg":"EdDSA","\u0061lg":"EdDSA"}"#,
    ])
    func refusesDuplicateHeaderMembers(_ header: String) throws {
        #expect(refusal(try sign(header: header, payload: "{}"), jwt: false) == .malformed)
    }

    @Test func refusesDuplicateClaims() throws {
        #expect(refusal(try sign(header: #"{"alg":"EdDSA"}"#, payload: #"{"exp":1900000000,"exp":1}"#)) == .malformed)
    }

    @Test(arguments: [
        #"{"exp":1e300}"#, #"{"exp":-1e300}"#, #"{"exp":-1}"#, #"{"exp":1900000000,"nbf":1e19}"#,
        #"{"exp":1900000000,"iat":1e300}"#, #"{"exp":"1900000000"}"#,
    ])
    func refusesDatesOutsideTheNumericDateRangeWithoutCrashing(_ claims: String) throws {
        #expect(refusal(try sign(header: #"{"alg":"EdDSA"}"#, payload: claims)) == .malformed)
    }

    @Test func refusesToSignADateOutsideTheRange() throws {
        let claims = JWTClaims(expiresAt: Date(timeIntervalSince1970: 1e19))
        #expect(throws: CryptoError.self) { try JWT.sign(claims, with: key) }
    }

    @Test func enforcesAMaximumLifetime() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let token = try JWT.sign(JWTClaims(issuedAt: now, expiresAt: now + 86_400), with: key)
        let validation = JWTValidation(clock: ManualTimeSource(now), maximumLifetime: 900)
        let error = #expect(throws: CryptoError.self) { try JWT.verify(token, keys: keys, validation: validation) }
        #expect(error?.code == .expired)
    }

    @Test func refusesSmallOrderPublicKeys() {
        // The identity point: with it, R = identity and S = 0 "verifies" any message.
        let identity = JWK(kty: "OKP", crv: "Ed25519", x: Base64URL.encode([1] + [UInt8](repeating: 0, count: 31)))
        let error = #expect(throws: CryptoError.self) { try VerifyingKey(jwk: identity) }
        #expect(error?.code == .invalidKey)
        let orderTwo = [0xEC] + [UInt8](repeating: 0xFF, count: 30) + [0xFF]  // sign bit set: same point class
        #expect(throws: CryptoError.self) { try VerifyingKey(rawRepresentation: orderTwo) }
    }

    @Test func refusesAPrivateKeyInAPublicSet() throws {
        var jwk = key.publicKey.jwk
        jwk.d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
        #expect(throws: CryptoError.self) { try VerifyingKeySet(jwks: JWKSet(keys: [jwk])) }
    }

    @Test func refusesKeyOperationsThatDoNotAllowVerify() throws {
        var jwk = key.publicKey.jwk
        jwk.keyOps = ["encrypt"]
        #expect(throws: CryptoError.self) { try VerifyingKey(jwk: jwk) }
        jwk.keyOps = ["verify"]
        #expect(try VerifyingKey(jwk: jwk) == key.publicKey)
    }

    @Test func refusesAnEncryptedKeyFileWithoutPrompting() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("encrypted.key")
        let made = try runProcess("/usr/bin/openssl", ["genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:secret", "-out", path])
        #expect(made.status == 0)
        chmod(path, 0o600)
        let error = #expect(throws: CryptoError.self) { try SigningKey.load(from: path) }
        #expect(error?.code == .keyFile)
    }
}
