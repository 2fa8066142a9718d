import COpenSSL
import HoldfastCore

/// A TLS certificate and its private key (ECDSA P-256, which every TLS stack and gateway speaks),
/// for `holdfast-broker init`'s quick start: a broker CA and the server certificate it signs.
/// The handles are owned here and freed in `deinit`.
public final class TLSIdentity: @unchecked Sendable {
    private let certificate: OpaquePointer
    private let key: OpaquePointer

    private init(certificate: OpaquePointer, key: OpaquePointer) {
        self.certificate = certificate
        self.key = key
    }

    deinit {
        X509_free(certificate)
        EVP_PKEY_free(key)
    }

    /// A self-signed CA: `basicConstraints critical,CA:TRUE,pathlen:0`, `keyUsage keyCertSign,cRLSign`,
    /// and, with `constrainedTo`, `nameConstraints` permitting only that name (or address): agents
    /// and gateways trust this CA, so a leaked CA key must not mint certificates for other hosts.
    public static func authority(commonName: String, validDays: Int, constrainedTo name: String? = nil) throws(CryptoError) -> TLSIdentity {
        var extensions = [(NID_basic_constraints, "critical,CA:TRUE,pathlen:0"), (NID_key_usage, "critical,keyCertSign,cRLSign"), (NID_subject_key_identifier, "hash")]
        if let name {
            guard isHostname(name) || isAddress(name) else { throw CryptoError(.invalidKey, "\(name) is not a host name (letters, digits, '-' and '.') or an IP address") }
            let permitted = isAddress(name) ? (name.contains(":") ? "IP:\(name)/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" : "IP:\(name)/255.255.255.255") : "DNS:\(name)"
            extensions.append((NID_name_constraints, "critical,permitted;\(permitted)"))
        }
        let key = try generateKey()
        let certificate = try makeCertificate(subject: commonName, key: key, validDays: validDays)
        let identity = TLSIdentity(certificate: certificate, key: key)
        for (nid, value) in extensions {
            guard holdfast_x509_add_extension(certificate, certificate, nid, value) == 1 else { throw .openssl("X509V3_EXT_conf_nid", code: .invalidKey) }
        }
        X509_set_issuer_name(certificate, X509_get_subject_name(certificate))
        guard X509_sign(certificate, key, EVP_sha256()) > 0 else { throw .openssl("X509_sign", code: .invalidKey) }
        return identity
    }

    /// A server certificate for `hostname` (DNS name, or an IP address), signed by this CA:
    /// `CA:FALSE`, `digitalSignature`, `serverAuth`, the name in subjectAltName.
    public func issueServer(hostname: String, validDays: Int) throws(CryptoError) -> TLSIdentity {
        // The name goes into OpenSSL's extension syntax: a comma or colon elsewhere would add names.
        guard Self.isHostname(hostname) || Self.isAddress(hostname) else {
            throw CryptoError(.invalidKey, "\(hostname) is not a host name (letters, digits, '-' and '.') or an IP address")
        }
        let serverKey = try Self.generateKey()
        // The name is in subjectAltName (what clients check); the CN holds it only when it fits
        // X.509's 64-character limit.
        let certificate = try Self.makeCertificate(subject: hostname.utf8.count <= 64 ? hostname : nil, key: serverKey, validDays: validDays)
        let identity = TLSIdentity(certificate: certificate, key: serverKey)
        X509_set_issuer_name(certificate, X509_get_subject_name(self.certificate))
        let alternative = (Self.isAddress(hostname) ? "IP:" : "DNS:") + hostname
        // RFC 5280 §4.2.1.6: with an empty subject, subjectAltName must be critical.
        let alternativeValue = (hostname.utf8.count <= 64 ? "" : "critical,") + alternative
        for (nid, value) in [
            (NID_basic_constraints, "critical,CA:FALSE"), (NID_key_usage, "critical,digitalSignature"), (NID_ext_key_usage, "serverAuth"),
            (NID_subject_alt_name, alternativeValue), (NID_subject_key_identifier, "hash"), (NID_authority_key_identifier, "keyid:always"),
        ] {
            guard holdfast_x509_add_extension(certificate, self.certificate, nid, value) == 1 else { throw .openssl("X509V3_EXT_conf_nid(\(value))", code: .invalidKey) }
        }
        guard X509_sign(certificate, key, EVP_sha256()) > 0 else { throw .openssl("X509_sign", code: .invalidKey) }
        return identity
    }

    /// The certificate as PEM.
    public func certificatePEM() throws(CryptoError) -> [UInt8] {
        try Self.pem { bio in PEM_write_bio_X509(bio, certificate) }
    }

    /// The private key as PKCS#8 PEM (write it 0600).
    public func keyPEM() throws(CryptoError) -> [UInt8] {
        try Self.pem { bio in PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) }
    }

    /// RFC 1123 host names: labels of 1–63 ASCII letters, digits and inner hyphens; the last
    /// label not all digits (so `127.1` or `256.1.1.1` is not taken for a name).
    static func isHostname(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.utf8.count), !label.hasPrefix("-"), !label.hasSuffix("-"),
                  label.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else { return false }
        }
        return !(labels.last?.unicodeScalars.allSatisfy { ("0"..."9").contains($0) } ?? true)
    }

    /// A dotted-quad IPv4 address (four 1–3 digit ASCII numbers ≤ 255), or an IPv6 address in
    /// ASCII hex and colons.
    static func isAddress(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts.allSatisfy({ part in (1...3).contains(part.count) && part.unicodeScalars.allSatisfy { ("0"..."9").contains($0) } && (Int(part) ?? 256) <= 255 }) {
            return true
        }
        let hexDigits = name.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) || ("A"..."F").contains($0) || $0 == ":" }
        return name.contains(":") && name.count <= 39 && hexDigits && name.split(separator: ":", omittingEmptySubsequences: false).count <= 8
    }

    static func generateKey() throws(CryptoError) -> OpaquePointer {
        guard let key = holdfast_ec_p256_generate() else { throw .openssl("EVP_EC_gen(P-256)", code: .invalidKey) }
        return key
    }

    static func makeCertificate(subject: String?, key: OpaquePointer, validDays: Int) throws(CryptoError) -> OpaquePointer {
        guard let certificate = X509_new() else { throw .openssl("X509_new", code: .invalidKey) }
        // A random 128-bit serial (RFC 5280 §4.1.2.2: positive, at most 20 octets).
        var serial = (try? SecureRandom.bytes(16)) ?? []
        guard serial.count == 16 else {
            X509_free(certificate)
            throw CryptoError(.invalidKey, "no random bytes for a certificate serial")
        }
        serial[0] &= 0x7F
        let number = serial.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, 16, nil) }
        defer { BN_free(number) }
        guard X509_set_version(certificate, 2) == 1, let number, BN_to_ASN1_INTEGER(number, X509_get_serialNumber(certificate)) != nil,
              X509_gmtime_adj(X509_getm_notBefore(certificate), -300) != nil,
              X509_gmtime_adj(X509_getm_notAfter(certificate), Int(validDays) * 86_400) != nil,
              X509_set_pubkey(certificate, key) == 1,
              let name = X509_get_subject_name(certificate),
              subject.map({ X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, $0, -1, -1, 0) == 1 }) ?? true
        else {
            X509_free(certificate)
            throw .openssl("building the certificate", code: .invalidKey)
        }
        return certificate
    }

    static func pem(_ write: (OpaquePointer) -> Int32) throws(CryptoError) -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw .openssl("BIO_new", code: .invalidKey) }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { throw .openssl("PEM_write_bio", code: .invalidKey) }
        var data: UnsafeMutablePointer<CChar>?
        let length = holdfast_bio_get_mem_data(bio, &data)
        guard length > 0, let data else { throw .openssl("BIO_get_mem_data", code: .invalidKey) }
        return data.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }
}
