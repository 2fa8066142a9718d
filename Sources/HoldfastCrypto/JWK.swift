import HoldfastCore

/// A public JSON Web Key for Ed25519 (RFC 7517, RFC 8037 §2): `kty` OKP, `crv` Ed25519.
public struct JWK: Sendable, Equatable, Codable {
    public var kty: String
    public var crv: String
    /// The public key, base64url.
    public var x: String
    public var kid: String?
    public var use: String?
    public var alg: String?
    /// RFC 7517 §4.3; when present it must allow `verify`.
    public var keyOps: [String]?
    /// The private key. Read only to refuse it: a public key set must never carry one.
    public var d: String?

    public init(
        kty: String, crv: String, x: String, kid: String? = nil, use: String? = nil, alg: String? = nil,
        keyOps: [String]? = nil, d: String? = nil
    ) {
        self.kty = kty
        self.crv = crv
        self.x = x
        self.kid = kid
        self.use = use
        self.alg = alg
        self.keyOps = keyOps
        self.d = d
    }

    enum CodingKeys: String, CodingKey { case kty, crv, x, kid, use, alg, keyOps = "key_ops", d }
}

/// A JWK Set (RFC 7517 §5), as the broker serves it at `/.well-known/jwks.json`.
public struct JWKSet: Sendable, Equatable, Codable {
    public var keys: [JWK]
    public init(keys: [JWK]) { self.keys = keys }
}

extension VerifyingKey {
    /// The key as a public JWK with its thumbprint as `kid`, for signature use with EdDSA.
    public var jwk: JWK {
        JWK(kty: "OKP", crv: "Ed25519", x: Base64URL.encode(rawRepresentation), kid: thumbprint, use: "sig", alg: JWS.algorithm)
    }

    /// A key from a public JWK; refuses other key types, curves, uses and algorithms.
    public convenience init(jwk: JWK) throws(CryptoError) {
        guard jwk.kty == "OKP", jwk.crv == "Ed25519" else {
            throw CryptoError(.invalidKey, "JWK is \(jwk.kty)/\(jwk.crv), expected OKP/Ed25519")
        }
        if let use = jwk.use, use != "sig" { throw CryptoError(.invalidKey, "JWK use is \(use), expected sig") }
        if let alg = jwk.alg, alg != JWS.algorithm { throw CryptoError(.invalidKey, "JWK alg is \(alg), expected EdDSA") }
        if let operations = jwk.keyOps, !operations.contains("verify") {
            throw CryptoError(.invalidKey, "JWK key_ops \(operations) does not allow verify")
        }
        if jwk.d != nil {
            throw CryptoError(.invalidKey, "the JWK carries a private key (d); refusing to treat it as a public key")
        }
        guard let raw = Base64URL.decode(jwk.x) else { throw CryptoError(.invalidKey, "JWK x is not base64url") }
        try self.init(rawRepresentation: raw)
    }
}

extension VerifyingKeySet {
    /// Trusts every key of a JWK Set under its `kid` (its thumbprint when it has none).
    public init(jwks: JWKSet) throws(CryptoError) {
        var keys: [String: VerifyingKey] = [:]
        for jwk in jwks.keys {
            let key = try VerifyingKey(jwk: jwk)
            let keyID = jwk.kid ?? key.thumbprint
            guard keys[keyID] == nil else { throw CryptoError(.invalidKey, "JWK Set has key id \(keyID) twice") }
            keys[keyID] = key
        }
        guard !keys.isEmpty else { throw CryptoError(.invalidKey, "the JWK Set holds no key") }
        self.init(keyedBy: keys)
    }

    /// The set as a JWK Set document.
    public var jwks: JWKSet {
        JWKSet(keys: keys.keys.sorted().compactMap { keyID in
            guard let key = keys[keyID] else { return nil }
            var jwk = key.jwk
            jwk.kid = keyID
            return jwk
        })
    }
}
