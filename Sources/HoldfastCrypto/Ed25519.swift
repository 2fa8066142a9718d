import COpenSSL
import HoldfastCore

/// An Ed25519 public key (RFC 8032): verifies signatures.
///
/// `@unchecked Sendable`: the `EVP_PKEY` is never mutated after creation, and OpenSSL 3 allows
/// concurrent read-only use of one key; every operation makes its own `EVP_MD_CTX`.
public final class VerifyingKey: @unchecked Sendable, Equatable {
    let handle: OpaquePointer
    /// The 32 raw public key bytes.
    public let rawRepresentation: [UInt8]
    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the key's id (`kid`).
    public let thumbprint: String

    /// Wraps an owned `EVP_PKEY`; frees it in `deinit`.
    init(owning handle: OpaquePointer) throws(CryptoError) {
        self.handle = handle
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_get_raw_public_key(handle, &raw, &length) == 1, length == 32 else {
            EVP_PKEY_free(handle)
            throw .openssl("EVP_PKEY_get_raw_public_key", code: .invalidKey)
        }
        rawRepresentation = raw
        thumbprint = Self.thumbprint(of: raw)
    }

    deinit { EVP_PKEY_free(handle) }

    /// A key from its 32 raw bytes (the JWK `x` value).
    public convenience init(rawRepresentation raw: [UInt8]) throws(CryptoError) {
        guard raw.count == 32 else {
            throw CryptoError(.invalidKey, "an Ed25519 public key is 32 bytes, not \(raw.count)")
        }
        if Self.hasSmallOrder(raw) {
            throw CryptoError(.invalidKey, "the public key is a point of small order; with it a forged signature verifies")
        }
        guard let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, raw, raw.count) else {
            throw .openssl("EVP_PKEY_new_raw_public_key", code: .invalidKey)
        }
        try self.init(owning: key)
    }

    /// A key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block.
    public convenience init(pem: [UInt8]) throws(CryptoError) {
        let key = try PEM.read(pem) { bio in PEM_read_bio_PUBKEY(bio, nil, PEM.noPassphrase, nil) }
        guard EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else {
            EVP_PKEY_free(key)
            throw CryptoError(.invalidKey, "the PEM public key is not an Ed25519 key")
        }
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        let ok = EVP_PKEY_get_raw_public_key(key, &raw, &length) == 1 && length == 32
        EVP_PKEY_free(key)
        guard ok else { throw .openssl("EVP_PKEY_get_raw_public_key", code: .invalidKey) }
        // Through the raw constructor, so the small-order check applies to PEM keys too.
        try self.init(rawRepresentation: raw)
    }

    /// The encodings (y-coordinate, sign bit ignored) of the points of order 1, 2, 4 and 8, and
    /// their non-canonical spellings — libsodium's blocklist (ed25519_ref10.c, `has_small_order`).
    private static let smallOrderY: [[UInt8]] = [
        [UInt8](repeating: 0, count: 32),
        [1] + [UInt8](repeating: 0, count: 31),
        [0x26, 0xE8, 0x95, 0x8F, 0xC2, 0xB2, 0x27, 0xB0, 0x45, 0xC3, 0xF4, 0x89, 0xF2, 0xEF, 0x98, 0xF0,
         0xD5, 0xDF, 0xAC, 0x05, 0xD3, 0xC6, 0x33, 0x39, 0xB1, 0x38, 0x02, 0x88, 0x6D, 0x53, 0xFC, 0x05],
        [0xC7, 0x17, 0x6A, 0x70, 0x3D, 0x4D, 0xD8, 0x4F, 0xBA, 0x3C, 0x0B, 0x76, 0x0D, 0x10, 0x67, 0x0F,
         0x2A, 0x20, 0x53, 0xFA, 0x2C, 0x39, 0xCC, 0xC6, 0x4E, 0xC7, 0xFD, 0x77, 0x92, 0xAC, 0x03, 0x7A],
        [0xEC] + [UInt8](repeating: 0xFF, count: 30) + [0x7F],
        [0xED] + [UInt8](repeating: 0xFF, count: 30) + [0x7F],
        [0xEE] + [UInt8](repeating: 0xFF, count: 30) + [0x7F],
    ]

    static func hasSmallOrder(_ raw: [UInt8]) -> Bool {
        var y = raw
        y[31] &= 0x7F
        return smallOrderY.contains(y)
    }

    /// The key as a PEM `PUBLIC KEY` block.
    public func pem() throws(CryptoError) -> [UInt8] {
        try PEM.write { bio in PEM_write_bio_PUBKEY(bio, handle) }
    }

    /// True when `signature` is a valid Ed25519 signature of exactly `message` under this key.
    public func isValidSignature(_ signature: [UInt8], for message: some Collection<UInt8>) -> Bool {
        guard signature.count == 64, let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, handle) == 1 else {
            _ = OpenSSLErrors.drain()
            return false
        }
        let bytes = Array(message)
        let result = bytes.withUnsafeBytes { buffer in
            EVP_DigestVerify(context, signature, signature.count, buffer.baseAddress, buffer.count)
        }
        // 1 is valid, 0 is a bad signature, anything else an error: only 1 passes.
        if result != 1 { _ = OpenSSLErrors.drain() }
        return result == 1
    }

    /// RFC 7638 §3: SHA-256 over the required members in lexicographic order, no white space.
    private static func thumbprint(of raw: [UInt8]) -> String {
        let canonical = #"{"crv":"Ed25519","kty":"OKP","x":"\#(Base64URL.encode(raw))"}"#
        return Base64URL.encode(SHA256.hash(Array(canonical.utf8)))
    }

    public static func == (lhs: VerifyingKey, rhs: VerifyingKey) -> Bool {
        lhs.rawRepresentation == rhs.rawRepresentation
    }
}

/// An Ed25519 private key: signs. Stored as PKCS#8 PEM in a 0600 file owned by its user.
///
/// `@unchecked Sendable` for the same reason as `VerifyingKey`.
public final class SigningKey: @unchecked Sendable {
    let handle: OpaquePointer
    /// The matching public key.
    public let publicKey: VerifyingKey

    init(owning handle: OpaquePointer) throws(CryptoError) {
        self.handle = handle
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_get_raw_public_key(handle, &raw, &length) == 1, length == 32 else {
            EVP_PKEY_free(handle)
            throw .openssl("EVP_PKEY_get_raw_public_key", code: .invalidKey)
        }
        do {
            publicKey = try VerifyingKey(rawRepresentation: raw)
        } catch {
            EVP_PKEY_free(handle)
            throw error
        }
    }

    deinit { EVP_PKEY_free(handle) }

    /// A new random key.
    public static func generate() throws(CryptoError) -> SigningKey {
        // EVP_PKEY_Q_keygen is variadic; the context API is not.
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else {
            throw .openssl("EVP_PKEY_CTX_new_id")
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1 else { throw .openssl("EVP_PKEY_keygen_init") }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen(context, &key) == 1, let key else { throw .openssl("EVP_PKEY_keygen") }
        return try SigningKey(owning: key)
    }

    /// A key from its 32-byte seed (the JWK `d` value).
    public convenience init(rawRepresentation seed: [UInt8]) throws(CryptoError) {
        guard seed.count == 32 else {
            throw CryptoError(.invalidKey, "an Ed25519 private key is 32 bytes, not \(seed.count)")
        }
        guard let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, seed, seed.count) else {
            throw .openssl("EVP_PKEY_new_raw_private_key", code: .invalidKey)
        }
        try self.init(owning: key)
    }

    /// A key from a PEM `PRIVATE KEY` (PKCS#8) block.
    public convenience init(pem: [UInt8]) throws(CryptoError) {
        let key = try PEM.read(pem) { bio in PEM_read_bio_PrivateKey(bio, nil, PEM.noPassphrase, nil) }
        guard EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 else {
            EVP_PKEY_free(key)
            throw CryptoError(.invalidKey, "the PEM private key is not an Ed25519 key")
        }
        try self.init(owning: key)
    }

    /// The key as an unencrypted PKCS#8 PEM block. Secret: write it only with `save(to:)`.
    public func pem() throws(CryptoError) -> [UInt8] {
        try PEM.write { bio in PEM_write_bio_PrivateKey(bio, handle, nil, nil, 0, nil, nil) }
    }

    /// Loads a key file, refusing one that is a link, not owned by the effective user, or
    /// readable or writable by group or others.
    public static func load(from path: String) throws(CryptoError) -> SigningKey {
        var contents: [UInt8]
        do {
            contents = try SecureFile.readPrivate(path)
        } catch {
            throw CryptoError(.keyFile, "refusing key file \(path)", cause: error.message)
        }
        defer { contents.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) } }
        do {
            return try SigningKey(pem: contents)
        } catch {
            throw CryptoError(.keyFile, "\(path) holds no Ed25519 private key", cause: error.description)
        }
    }

    /// Writes the key to `path` as PKCS#8 PEM, mode 0600, atomically.
    public func save(to path: String) throws(CryptoError) {
        var contents = try pem()
        defer { contents.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) } }
        do {
            try SecureFile.write(contents, to: path)
        } catch {
            throw CryptoError(.keyFile, "cannot write key file \(path)", cause: error.message)
        }
    }

    /// The Ed25519 signature (64 bytes) of exactly `message`.
    public func signature(for message: some Collection<UInt8>) throws(CryptoError) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw .openssl("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(context) }
        // Ed25519 is a one-shot algorithm: no digest, EVP_DigestSign over the whole message.
        guard EVP_DigestSignInit(context, nil, nil, nil, handle) == 1 else { throw .openssl("EVP_DigestSignInit") }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = 64
        let bytes = Array(message)
        let ok = bytes.withUnsafeBytes { buffer in
            EVP_DigestSign(context, &signature, &length, buffer.baseAddress, buffer.count)
        }
        guard ok == 1, length == 64 else { throw .openssl("EVP_DigestSign") }
        return signature
    }
}

/// PEM through memory BIOs.
enum PEM {
    /// A passphrase callback that has none: an encrypted key fails at once instead of OpenSSL
    /// prompting on the terminal (pem_password_cb returns the passphrase length; 0 = none).
    static let noPassphrase: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = { _, _, _, _ in 0 }

    static func read(_ pem: [UInt8], _ body: (OpaquePointer) -> OpaquePointer?) throws(CryptoError) -> OpaquePointer {
        guard pem.count <= 1 << 20 else { throw CryptoError(.invalidKey, "the PEM input is larger than 1 MiB") }
        let result: OpaquePointer? = pem.withUnsafeBytes { buffer in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return body(bio)
        }
        guard let result else { throw .openssl("PEM_read", code: .invalidKey) }
        return result
    }

    static func write(_ body: (OpaquePointer) -> Int32) throws(CryptoError) -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw .openssl("BIO_new") }
        defer { BIO_free(bio) }
        guard body(bio) == 1 else { throw .openssl("PEM_write") }
        var data: UnsafeMutablePointer<CChar>?
        let length = holdfast_bio_get_mem_data(bio, &data)
        guard length > 0, let data else { throw .openssl("BIO_get_mem_data") }
        return Array(UnsafeRawBufferPointer(start: data, count: length))
    }
}
