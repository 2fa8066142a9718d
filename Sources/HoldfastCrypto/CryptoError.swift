import COpenSSL

/// Why a key, a signature or a signed document was refused.
public struct CryptoError: Error, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Not well-formed: bad base64url, wrong number of segments, trailing data, not JSON.
        case malformed
        /// `alg` is anything but EdDSA (`none` included).
        case unsupportedAlgorithm
        /// The header asks for something this verifier does not do (`crit`).
        case unsupportedHeader
        /// The signature does not verify under the selected key.
        case badSignature
        /// No trusted key matches the document's `kid`.
        case unknownKey
        /// `exp` has passed (beyond the allowed skew), or a required `exp` is missing.
        case expired
        /// `nbf` or `iat` lies in the future (beyond the allowed skew).
        case notYetValid
        /// The audience is not the one this verifier serves.
        case wrongAudience
        /// The issuer is not the expected one.
        case wrongIssuer
        /// The `typ` header is not the expected document type.
        case wrongType
        /// A key is not a valid Ed25519 key.
        case invalidKey
        /// A key file was refused or could not be read or written.
        case keyFile
        /// OpenSSL itself failed.
        case library
    }

    public let code: Code
    public let message: String
    /// What lies underneath: OpenSSL's error queue, or a file error.
    public let cause: String?

    public init(_ code: Code, _ message: String, cause: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }

    /// An error for a failed OpenSSL call, with OpenSSL's error queue drained into `cause`.
    static func openssl(_ call: String, code: Code = .library) -> CryptoError {
        CryptoError(code, "\(call) failed", cause: OpenSSLErrors.drain())
    }
}

/// OpenSSL's per-thread error queue.
enum OpenSSLErrors {
    /// Empties the queue and returns its entries as text, so errors never leak into a later call.
    static func drain() -> String? {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return messages.isEmpty ? nil : messages.joined(separator: "; ")
    }
}
