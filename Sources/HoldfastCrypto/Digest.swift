import COpenSSL
import HoldfastCore

/// SHA-256 (FIPS 180-4) through OpenSSL.
public enum SHA256 {
    /// The 32-byte digest of `bytes`.
    public static func hash(_ bytes: some Collection<UInt8>) -> [UInt8] {
        let input = Array(bytes)
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = input.withUnsafeBytes { buffer in
            EVP_Digest(buffer.baseAddress, buffer.count, &digest, &length, EVP_sha256(), nil)
        }
        // EVP_Digest with SHA-256 fails only when allocation fails; that is not a recoverable state.
        precondition(ok == 1 && length == 32, "EVP_Digest(SHA-256) failed: \(OpenSSLErrors.drain() ?? "unknown")")
        return digest
    }

    /// The digest as lower-case hex.
    public static func hex(_ bytes: some Collection<UInt8>) -> String { Hex.encode(hash(bytes)) }
}

/// MD5, only to compare files with the checksums dpkg records (`/var/lib/dpkg/info/*.md5sums`):
/// a record format we read, never a security decision of ours (the package's own signature is).
public enum DpkgMD5 {
    /// The digest as lower-case hex.
    public static func hex(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var digest = [UInt8](repeating: 0, count: 16)
        var length: UInt32 = 0
        let ok = input.withUnsafeBytes { buffer in
            EVP_Digest(buffer.baseAddress, buffer.count, &digest, &length, EVP_md5(), nil)
        }
        precondition(ok == 1 && length == 16, "EVP_Digest(MD5) failed: \(OpenSSLErrors.drain() ?? "unknown")")
        return Hex.encode(digest)
    }
}

/// Cryptographically secure random bytes from OpenSSL's DRBG (seeded by getrandom(2)).
public enum SecureRandom {
    /// `count` random bytes.
    public static func bytes(_ count: Int) throws(CryptoError) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return output }
        guard RAND_bytes(&output, Int32(count)) == 1 else { throw .openssl("RAND_bytes") }
        return output
    }

    /// A random token of `count` bytes as base64url text (nonces, identifiers).
    public static func token(bytes count: Int = 32) throws(CryptoError) -> String {
        Base64URL.encode(try bytes(count))
    }
}

/// Comparing secrets without leaking where they differ through timing.
public enum ConstantTime {
    /// True when both are equal; runs in time that depends only on the length.
    public static func equals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        if lhs.isEmpty { return true }
        return lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in CRYPTO_memcmp(left.baseAddress, right.baseAddress, lhs.count) == 0 }
        }
    }
}

/// HMAC-SHA-256 (RFC 2104) through OpenSSL's EVP_Q_mac.
public enum HMACSHA256 {
    /// The 32-byte MAC of `message` under `key`.
    public static func mac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: 32)
        var length = 0
        let result = key.withUnsafeBytes { keyBuffer in
            message.withUnsafeBytes { messageBuffer in
                EVP_Q_mac(nil, "HMAC", nil, "SHA256", nil, keyBuffer.baseAddress, keyBuffer.count, messageBuffer.baseAddress, messageBuffer.count, &output, 32, &length)
            }
        }
        // Fails only when allocation fails (or HMAC is missing from libcrypto): not recoverable.
        precondition(result != nil && length == 32, "EVP_Q_mac(HMAC-SHA256) failed: \(OpenSSLErrors.drain() ?? "unknown")")
        return output
    }
}
