import COpenSSL
import FoundationEssentials
import HoldfastCore

/// X.509 certificate fingerprints, for pinning the broker's CA (SHA-256 over the DER encoding).
public enum CertificateFingerprint {
    /// The SHA-256 of the certificate's DER bytes. Accepts one PEM `CERTIFICATE` block or DER;
    /// the certificate must parse, so garbage never yields a fingerprint.
    public static func sha256(of certificate: [UInt8]) throws(CryptoError) -> [UInt8] {
        SHA256.hash(try der(of: certificate))
    }

    /// The fingerprint as colon-separated upper-case hex, as `openssl x509 -fingerprint` prints it.
    public static func display(_ fingerprint: [UInt8]) -> String {
        fingerprint.map { byte in
            let hex = String(byte, radix: 16, uppercase: true)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }

    /// One certificate as PEM, re-encoded from its parsed DER: what an agent pins is exactly the
    /// certificate whose fingerprint it checked, never extra blocks that came along with it.
    public static func canonicalPEM(of certificate: [UInt8]) throws(CryptoError) -> String {
        let encoded = Data(try der(of: certificate)).base64EncodedString()
        var lines: [String] = ["-----BEGIN CERTIFICATE-----"]
        var rest = Substring(encoded)
        while !rest.isEmpty {
            lines.append(String(rest.prefix(64)))
            rest = rest.dropFirst(64)
        }
        lines.append("-----END CERTIFICATE-----")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Whether the certificate is valid for `host` (a DNS name or an IP address), as a TLS client
    /// checks it (X509_check_host / X509_check_ip_asc).
    public static func matches(_ certificate: [UInt8], host: String) -> Bool {
        guard let der = try? der(of: certificate) else { return false }
        return der.withUnsafeBufferPointer { buffer -> Bool in
            var cursor = buffer.baseAddress
            guard let parsed = d2i_X509(nil, &cursor, buffer.count) else { return false }
            defer { X509_free(parsed) }
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            if X509_check_ip_asc(parsed, bare, 0) == 1 { return true }
            return X509_check_host(parsed, bare, bare.utf8.count, 0, nil) == 1
        }
    }

    /// The DER encoding of a PEM or DER certificate, re-encoded by OpenSSL after parsing.
    static func der(of certificate: [UInt8]) throws(CryptoError) -> [UInt8] {
        let isPEM = certificate.starts(with: Array("-----BEGIN".utf8))
        let parsed: OpaquePointer? = certificate.withUnsafeBytes { buffer in
            if isPEM {
                guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
                defer { BIO_free(bio) }
                return PEM_read_bio_X509(bio, nil, nil, nil)
            }
            var cursor = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
            let start = cursor
            let parsed = d2i_X509(nil, &cursor, buffer.count)
            // DER with trailing bytes is not one certificate.
            if let parsed, let start, let cursor, cursor - start != buffer.count {
                X509_free(parsed)
                return nil
            }
            return parsed
        }
        guard let parsed else { throw .openssl("reading the certificate", code: .malformed) }
        defer { X509_free(parsed) }
        var output: UnsafeMutablePointer<UInt8>?
        let length = i2d_X509(parsed, &output)
        guard length > 0, let output else { throw .openssl("i2d_X509") }
        defer { holdfast_openssl_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }
}
