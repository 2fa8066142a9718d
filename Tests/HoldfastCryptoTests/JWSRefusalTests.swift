import HoldfastCore
import HoldfastCrypto
import Testing

/// Every way a signed document can be wrong is refused, each with its own reason.
@Suite struct JWSRefusalTests {
    let key: SigningKey
    let good: String

    init() throws {
        key = try SigningKey.generate()
        good = try JWS.sign(Array(#"{"policy":1}"#.utf8), with: key)
    }

    var segments: [String] { good.split(separator: ".", omittingEmptySubsequences: false).map(String.init) }

    func header(_ json: String) -> String { Base64URL.encode(Array(json.utf8)) }

    func refusal(_ token: String) -> CryptoError.Code? {
        do {
            _ = try JWS.verify(token, key: key.publicKey)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func acceptsTheGoodDocument() throws {
        #expect(try JWS.verify(good, key: key.publicKey).payload == Array(#"{"policy":1}"#.utf8))
    }

    @Test(arguments: [
        ("none", #"{"alg":"none"}"#),
        ("HS256", #"{"alg":"HS256"}"#),
        ("RS256", #"{"alg":"RS256"}"#),
        ("Ed25519 spelled as RFC 9864 does", #"{"alg":"Ed25519"}"#),
        ("lower case", #"{"alg":"eddsa"}"#),
        ("missing", #"{"kid":"x"}"#),
        ("not a string", #"{"alg":1}"#),
    ])
    func refusesEveryAlgorithmButEdDSA(_ name: String, _ json: String) {
        let token = header(json) + "." + segments[1] + "." + segments[2]
        #expect(refusal(token) == .unsupportedAlgorithm, "\(name)")
    }

    @Test func refusesAlgNoneWithAnEmptySignature() {
        let token = header(#"{"alg":"none"}"#) + "." + segments[1] + "."
        #expect(refusal(token) != nil)
    }

    @Test func refusesCriticalExtensions() {
        let token = header(#"{"alg":"EdDSA","crit":["b64"],"b64":false}"#) + "." + segments[1] + "." + segments[2]
        #expect(refusal(token) == .unsupportedHeader)
    }

    @Test(arguments: [
        ("header padding", "="),
        ("header with a space", " "),
        ("header standard alphabet", "+"),
    ])
    func refusesBadBase64URLInTheHeader(_ name: String, _ suffix: String) {
        let token = segments[0] + suffix + "." + segments[1] + "." + segments[2]
        #expect(refusal(token) == .malformed, "\(name)")
    }

    @Test func refusesBadBase64URLInThePayload() {
        #expect(refusal(segments[0] + "." + segments[1] + "*." + segments[2]) == .malformed)
    }

    @Test func refusesBadBase64URLInTheSignature() {
        #expect(refusal(segments[0] + "." + segments[1] + "." + segments[2] + "==") == .malformed)
    }

    @Test(arguments: [
        ("four segments", ".extra"),
        ("a trailing dot", "."),
        ("a trailing newline", "\n"),
        ("a trailing space", " "),
        ("trailing bytes in the signature", "AA"),
    ])
    func refusesExtraSegmentsAndTrailingData(_ name: String, _ suffix: String) {
        #expect(refusal(good + suffix) == .malformed, "\(name)")
    }

    @Test func refusesTwoSegments() {
        #expect(refusal(segments[0] + "." + segments[1]) == .malformed)
    }

    @Test func refusesAHeaderThatIsNotJSON() {
        #expect(refusal(header("not json") + "." + segments[1] + "." + segments[2]) == .malformed)
    }

    @Test func refusesASignatureFromAnotherKey() throws {
        let other = try SigningKey.generate()
        let token = try JWS.sign(Array(#"{"policy":1}"#.utf8), with: other, header: JWSHeader(keyID: key.publicKey.thumbprint))
        #expect(refusal(token) == .badSignature)
    }

    @Test func refusesATamperedPayload() {
        let token = segments[0] + "." + Base64URL.encode(Array(#"{"policy":2}"#.utf8)) + "." + segments[2]
        #expect(refusal(token) == .badSignature)
    }

    @Test func refusesAFlippedSignatureBit() throws {
        var signature = try #require(Base64URL.decode(segments[2]))
        signature[10] ^= 0x01
        #expect(refusal(segments[0] + "." + segments[1] + "." + Base64URL.encode(signature)) == .badSignature)
    }

    @Test func refusesAnUnknownKeyID() throws {
        let token = try JWS.sign([1], with: key, header: JWSHeader(keyID: "someone-else"))
        #expect(refusal(token) == .unknownKey)
    }

    @Test func refusesADocumentWithoutKeyIDWhenSeveralKeysAreTrusted() throws {
        let token = try JWS.sign([1], with: key, header: JWSHeader())
        let keys = VerifyingKeySet([key.publicKey, try SigningKey.generate().publicKey])
        let error = #expect(throws: CryptoError.self) { try JWS.verify(token, keys: keys) }
        #expect(error?.code == .unknownKey)
    }

    @Test func refusesOversizedDocuments() {
        let token = String(repeating: "A", count: JWS.maximumSize + 1)
        #expect(refusal(token) == .malformed)
    }

    @Test func survivesMutatedDocumentsWithAFixedSeed() throws {
        // Fuzz-style: 5,000 random single-byte mutations of a good document. None may verify
        // unless it is the original (e.g. a base64url change that decodes to the same bytes is
        // impossible: decoding is canonical), and none may crash.
        var generator = SplitMix(seed: 0xF022)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.= \n".utf8)
        let original = Array(good.utf8)
        var accepted = 0
        for _ in 0..<5_000 {
            var bytes = original
            let position = Int.random(in: 0..<bytes.count, using: &generator)
            bytes[position] = alphabet[Int.random(in: 0..<alphabet.count, using: &generator)]
            if bytes == original { continue }
            if refusal(String(decoding: bytes, as: UTF8.self)) == nil { accepted += 1 }
        }
        #expect(accepted == 0)
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
