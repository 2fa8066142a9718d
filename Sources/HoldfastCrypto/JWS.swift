import HoldfastCore
import FoundationEssentials

/// The protected header of a JWS (RFC 7515 §4). Holdfast writes and accepts only `alg: EdDSA`.
public struct JWSHeader: Sendable, Equatable {
    /// Always `EdDSA` (RFC 8037 §3.1).
    public let algorithm: String
    /// The signing key's id (`kid`): its RFC 7638 thumbprint.
    public var keyID: String?
    /// The document type (`typ`), e.g. `holdfast-command+jwt`; verifiers may require it.
    public var type: String?

    public init(keyID: String? = nil, type: String? = nil) {
        algorithm = JWS.algorithm
        self.keyID = keyID
        self.type = type
    }

    /// The exact JSON bytes that are signed: `alg`, then `kid`, then `typ`, no white space.
    var serialized: String {
        var text = #"{"alg":"EdDSA""#
        if let keyID { text += #","kid":"# + JSONText.quote(keyID) }
        if let type { text += #","typ":"# + JSONText.quote(type) }
        return text + "}"
    }
}

/// A JWS whose signature verified: the header and the exact payload bytes that were signed.
public struct VerifiedJWS: Sendable, Equatable {
    public let header: JWSHeader
    public let payload: [UInt8]
}

/// A set of trusted public keys, by key id. A document names its key with `kid`; one without a
/// `kid` is accepted only when the set holds exactly one key.
public struct VerifyingKeySet: Sendable {
    public private(set) var keys: [String: VerifyingKey]

    public init(_ keys: [VerifyingKey]) {
        self.keys = Dictionary(keys.map { ($0.thumbprint, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public init(keyedBy keys: [String: VerifyingKey]) { self.keys = keys }

    /// The key a header names, or the only key when it names none.
    func key(for header: JWSHeader) throws(CryptoError) -> VerifyingKey {
        if let keyID = header.keyID {
            guard let key = keys[keyID] else { throw CryptoError(.unknownKey, "no trusted key has id \(keyID)") }
            return key
        }
        guard keys.count == 1, let only = keys.values.first else {
            throw CryptoError(.unknownKey, "the document names no key (kid) and \(keys.count) keys are trusted")
        }
        return only
    }
}

/// JWS compact serialization with EdDSA/Ed25519 (RFC 7515, RFC 8037).
///
/// Verification works on the exact bytes received: the signing input is the first two segments
/// as they arrived, never a re-serialization. Anything unusual is refused: another `alg`
/// (`none` included), `crit`, non-canonical base64url, a segment count other than three,
/// white space or trailing data, a signature that is not 64 bytes.
public enum JWS {
    /// The only algorithm Holdfast signs or accepts.
    public static let algorithm = "EdDSA"
    /// Documents larger than this are refused before any parsing.
    public static let maximumSize = 1 << 20

    /// Signs `payload` and returns the compact serialization.
    public static func sign(
        _ payload: some Collection<UInt8>,
        with key: SigningKey,
        header: JWSHeader? = nil
    ) throws(CryptoError) -> String {
        let header = header ?? JWSHeader(keyID: key.publicKey.thumbprint)
        let signingInput = Base64URL.encode(Array(header.serialized.utf8)) + "." + Base64URL.encode(Array(payload))
        let signature = try key.signature(for: Array(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(signature)
    }

    /// Verifies a compact JWS against trusted keys and returns its header and payload.
    public static func verify(_ compact: String, keys: VerifyingKeySet) throws(CryptoError) -> VerifiedJWS {
        let parts = try split(compact)
        let key = try keys.key(for: parts.header)
        guard key.isValidSignature(parts.signature, for: parts.signingInput) else {
            throw CryptoError(.badSignature, "the signature does not verify")
        }
        return VerifiedJWS(header: parts.header, payload: parts.payload)
    }

    /// Verifies a compact JWS against one key.
    public static func verify(_ compact: String, key: VerifyingKey) throws(CryptoError) -> VerifiedJWS {
        try verify(compact, keys: VerifyingKeySet([key]))
    }

    /// Decodes a JWS **without verifying it**, for display only (`holdfast verify --inspect`).
    public static func inspectUnverified(_ compact: String) throws(CryptoError) -> (header: JWSHeader, payload: [UInt8]) {
        let parts = try split(compact)
        return (parts.header, parts.payload)
    }

    struct Parts {
        var header: JWSHeader
        var payload: [UInt8]
        var signature: [UInt8]
        var signingInput: ArraySlice<UInt8>
    }

    static func split(_ compact: String) throws(CryptoError) -> Parts {
        let bytes = Array(compact.utf8)
        guard bytes.count <= maximumSize else {
            throw CryptoError(.malformed, "the document is larger than \(maximumSize) bytes")
        }
        let dots = bytes.indices.filter { bytes[$0] == UInt8(ascii: ".") }
        guard dots.count == 2 else {
            throw CryptoError(.malformed, "a compact JWS has 3 segments, this has \(dots.count + 1)")
        }
        let headerText = Array(bytes[..<dots[0]])
        let payloadText = Array(bytes[(dots[0] + 1)..<dots[1]])
        let signatureText = Array(bytes[(dots[1] + 1)...])
        guard let headerBytes = Base64URL.decode(utf8: headerText), !headerBytes.isEmpty else {
            throw CryptoError(.malformed, "the header is not base64url")
        }
        guard let payload = Base64URL.decode(utf8: payloadText) else {
            throw CryptoError(.malformed, "the payload is not base64url")
        }
        guard let signature = Base64URL.decode(utf8: signatureText) else {
            throw CryptoError(.malformed, "the signature is not base64url (or has trailing data)")
        }
        let header = try parseHeader(headerBytes)
        guard signature.count == 64 else {
            throw CryptoError(.malformed, "an Ed25519 signature is 64 bytes, this is \(signature.count)")
        }
        return Parts(header: header, payload: payload, signature: signature, signingInput: bytes[..<dots[1]])
    }

    static func parseHeader(_ bytes: [UInt8]) throws(CryptoError) -> JWSHeader {
        let parsed: JSONValue
        do {
            parsed = try JSONValue.parse(bytes)
        } catch {
            if let duplicate = error.duplicateName { throw CryptoError(.malformed, "the header names \"\(duplicate)\" twice") }
            throw CryptoError(.malformed, "the header is not a JSON object")
        }
        guard case .object(let members) = parsed else { throw CryptoError(.malformed, "the header is not a JSON object") }
        guard case .string(let algorithm)? = members["alg"] else {
            throw CryptoError(.unsupportedAlgorithm, "the header names no algorithm")
        }
        guard algorithm == Self.algorithm else {
            throw CryptoError(.unsupportedAlgorithm, "algorithm \(algorithm) is refused; only EdDSA is accepted")
        }
        if members["crit"] != nil {
            throw CryptoError(.unsupportedHeader, "the header has critical extensions (crit), which are not supported")
        }
        var header = JWSHeader()
        switch members["kid"] {
        case nil: break
        case .string(let keyID)?: header.keyID = keyID
        default: throw CryptoError(.malformed, "kid is not a string")
        }
        switch members["typ"] {
        case nil: break
        case .string(let type)?: header.type = type
        default: throw CryptoError(.malformed, "typ is not a string")
        }
        return header
    }
}
