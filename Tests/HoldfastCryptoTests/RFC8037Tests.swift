import HoldfastCore
import HoldfastCrypto
import Testing

/// RFC 8037 Appendix A: the Ed25519 key, its thumbprint, and the signed example, byte for byte.
@Suite struct RFC8037Tests {
    static let d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
    static let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    static let thumbprint = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    static let payload = "Example of Ed25519 signing"
    static let jws = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
        + "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"

    func key() throws -> SigningKey {
        try SigningKey(rawRepresentation: try #require(Base64URL.decode(Self.d)))
    }

    @Test func derivesThePublicKeyOfA1() throws {
        #expect(Base64URL.encode(try key().publicKey.rawRepresentation) == Self.x)
    }

    @Test func computesTheThumbprintOfA3() throws {
        #expect(try key().publicKey.thumbprint == Self.thumbprint)
    }

    @Test func reproducesTheSignatureOfA4ByteForByte() throws {
        let signed = try JWS.sign(Array(Self.payload.utf8), with: try key(), header: JWSHeader())
        #expect(signed == Self.jws)
    }

    @Test func verifiesTheExampleOfA5() throws {
        let publicKey = try VerifyingKey(jwk: JWK(kty: "OKP", crv: "Ed25519", x: Self.x))
        let verified = try JWS.verify(Self.jws, key: publicKey)
        #expect(verified.payload == Array(Self.payload.utf8))
        #expect(verified.header.algorithm == "EdDSA")
        #expect(verified.header.keyID == nil)
    }
}

@Suite struct DigestTests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ])
    func hashesTheFIPS180Vectors(_ input: String, _ digest: String) {
        #expect(SHA256.hex(Array(input.utf8)) == digest)
    }

    @Test func producesDistinctRandomBytes() throws {
        let first = try SecureRandom.bytes(32)
        let second = try SecureRandom.bytes(32)
        #expect(first.count == 32)
        #expect(first != second)
    }

    @Test func comparesInConstantTime() {
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([1, 2], [1, 2, 3]))
    }
}
