public import FoundationEssentials
public import HoldfastCore

/// The registered claims of a JWT (RFC 7519 §4.1) and any others, kept as JSON.
///
/// Dates are NumericDate (seconds since the epoch) on the wire; `aud` may be one string or
/// an array (RFC 7519 §4.1.3), and is written as a string when it holds one audience.
public struct JWTClaims: Sendable, Equatable, Codable {
    public var issuer: String?
    public var subject: String?
    public var audience: [String]?
    public var issuedAt: Date?
    public var notBefore: Date?
    public var expiresAt: Date?
    public var id: String?
    /// Every claim that is not a registered one (posture status, user, scope, …).
    public var other: [String: JSONValue]

    public init(
        issuer: String? = nil, subject: String? = nil, audience: [String]? = nil,
        issuedAt: Date? = nil, notBefore: Date? = nil, expiresAt: Date? = nil, id: String? = nil,
        other: [String: JSONValue] = [:]
    ) {
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
        self.issuedAt = issuedAt
        self.notBefore = notBefore
        self.expiresAt = expiresAt
        self.id = id
        self.other = other
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    private static let registered: Set<String> = ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"]

    /// 9999-12-31T23:59:59Z: the latest NumericDate accepted or written.
    static let latestDate: Double = 253_402_300_799

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        issuer = try container.decodeIfPresent(String.self, forKey: Key("iss"))
        subject = try container.decodeIfPresent(String.self, forKey: Key("sub"))
        if let single = try? container.decodeIfPresent(String.self, forKey: Key("aud")) {
            audience = [single]
        } else {
            audience = try container.decodeIfPresent([String].self, forKey: Key("aud"))
        }
        func date(_ name: String) throws -> Date? {
            guard let seconds = try container.decodeIfPresent(Double.self, forKey: Key(name)) else { return nil }
            // NumericDate (RFC 7519 §2) within 1970…9999: anything else is an attack or a bug, and
            // "exp: 1e300" must not mean "never expires".
            guard seconds.isFinite, seconds >= 0, seconds <= JWTClaims.latestDate else {
                throw DecodingError.dataCorruptedError(forKey: Key(name), in: container, debugDescription: "\(name) is not a date between 1970 and 9999")
            }
            return Date(timeIntervalSince1970: seconds)
        }
        issuedAt = try date("iat")
        notBefore = try date("nbf")
        expiresAt = try date("exp")
        id = try container.decodeIfPresent(String.self, forKey: Key("jti"))
        var other: [String: JSONValue] = [:]
        for key in container.allKeys where !Self.registered.contains(key.stringValue) {
            other[key.stringValue] = try container.decode(JSONValue.self, forKey: key)
        }
        self.other = other
    }

    /// The claims of a parsed object, read as the `Decodable` initializer reads them (a
    /// registered claim that is `null` is absent; one of the wrong type is refused).
    public init(members: [String: JSONValue]) throws(CryptoError) {
        func text(_ name: String) throws(CryptoError) -> String? {
            switch members[name] {
            case nil, .null?: return nil
            case .string(let value)?: return value
            default: throw CryptoError(.malformed, "the payload is not a valid claims set: \(name) is not a string")
            }
        }
        func date(_ name: String) throws(CryptoError) -> Date? {
            let seconds: Double
            switch members[name] {
            case nil, .null?: return nil
            case .int(let value)?: seconds = Double(value)
            case .double(let value)?: seconds = value
            default: throw CryptoError(.malformed, "the payload is not a valid claims set: \(name) is not a number")
            }
            // NumericDate (RFC 7519 §2) within 1970…9999, as in init(from:).
            guard seconds.isFinite, seconds >= 0, seconds <= JWTClaims.latestDate else {
                throw CryptoError(.malformed, "the payload is not a valid claims set: \(name) is not a date between 1970 and 9999")
            }
            return Date(timeIntervalSince1970: seconds)
        }
        issuer = try text("iss")
        subject = try text("sub")
        switch members["aud"] {
        case nil, .null?: audience = nil
        case .string(let single)?: audience = [single]
        case .array(let items)?:
            var names: [String] = []
            for item in items {
                guard case .string(let name) = item else { throw CryptoError(.malformed, "the payload is not a valid claims set: aud holds a non-string") }
                names.append(name)
            }
            audience = names
        default: throw CryptoError(.malformed, "the payload is not a valid claims set: aud is neither a string nor an array")
        }
        issuedAt = try date("iat")
        notBefore = try date("nbf")
        expiresAt = try date("exp")
        id = try text("jti")
        other = members.filter { !Self.registered.contains($0.key) }
    }

    /// The claims as JSON, as `encode(to:)` writes them (a test holds the two equal): the broker
    /// signs a grant per attestation, without an encoder's cost.
    public func json() throws(CryptoError) -> JSONValue {
        var object = other.filter { !Self.registered.contains($0.key) }
        if let issuer { object["iss"] = .string(issuer) }
        if let subject { object["sub"] = .string(subject) }
        if let audience { object["aud"] = audience.count == 1 ? .string(audience[0]) : .array(audience.map(JSONValue.string)) }
        for (name, date) in [("iat", issuedAt), ("nbf", notBefore), ("exp", expiresAt)] {
            guard let date else { continue }
            let seconds = date.timeIntervalSince1970
            guard seconds.isFinite, seconds >= 0, seconds <= Self.latestDate else {
                throw CryptoError(.malformed, "the claims cannot be encoded: \(name) is not a date between 1970 and 9999")
            }
            object[name] = seconds == seconds.rounded() ? .int(Int64(seconds)) : .double(seconds)
        }
        if let id { object["jti"] = .string(id) }
        return .object(object)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encodeIfPresent(issuer, forKey: Key("iss"))
        try container.encodeIfPresent(subject, forKey: Key("sub"))
        if let audience {
            if audience.count == 1 { try container.encode(audience[0], forKey: Key("aud")) }
            else { try container.encode(audience, forKey: Key("aud")) }
        }
        func encodeDate(_ date: Date?, _ name: String) throws {
            guard let date else { return }
            let seconds = date.timeIntervalSince1970
            guard seconds.isFinite, seconds >= 0, seconds <= Self.latestDate else {
                throw EncodingError.invalidValue(date, .init(codingPath: [Key(name)], debugDescription: "\(name) is not a date between 1970 and 9999"))
            }
            if seconds == seconds.rounded() { try container.encode(Int64(seconds), forKey: Key(name)) }
            else { try container.encode(seconds, forKey: Key(name)) }
        }
        try encodeDate(issuedAt, "iat")
        try encodeDate(notBefore, "nbf")
        try encodeDate(expiresAt, "exp")
        try container.encodeIfPresent(id, forKey: Key("jti"))
        for (name, value) in other where !Self.registered.contains(name) {
            try container.encode(value, forKey: Key(name))
        }
    }
}

/// What a verifier insists on beyond the signature.
public struct JWTValidation: Sendable {
    /// Where "now" comes from.
    public var clock: any TimeSource
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    public var leeway: TimeInterval
    /// The audience this verifier serves; when set, the token's `aud` must contain it.
    public var audience: String?
    /// The expected issuer; when set, `iss` must equal it.
    public var issuer: String?
    /// The expected `typ` header; when set, it must match exactly.
    public var type: String?
    /// Refuse tokens without `exp` (the default: every Holdfast grant expires).
    public var requireExpiry: Bool
    /// When set, refuse tokens whose `exp` lies further than this after `iat` (or now).
    public var maximumLifetime: TimeInterval?

    public init(
        clock: any TimeSource = SystemTimeSource(),
        leeway: TimeInterval = 60,
        audience: String? = nil,
        issuer: String? = nil,
        type: String? = nil,
        requireExpiry: Bool = true,
        maximumLifetime: TimeInterval? = nil
    ) {
        self.clock = clock
        self.leeway = leeway
        self.audience = audience
        self.issuer = issuer
        self.type = type
        self.requireExpiry = requireExpiry
        self.maximumLifetime = maximumLifetime
    }
}

/// A JWT whose signature and claims passed.
public struct VerifiedJWT: Sendable, Equatable {
    public let header: JWSHeader
    public let claims: JWTClaims
    /// The exact payload bytes, for decoding application-specific claims.
    public let payload: [UInt8]
}

/// JSON Web Tokens (RFC 7519) signed with EdDSA.
public enum JWT {
    /// Signs a claims set. `type` goes into the `typ` header (default `JWT`).
    public static func sign(_ claims: JWTClaims, with key: SigningKey, type: String = "JWT") throws(CryptoError) -> String {
        try JWS.sign(Array(try claims.json().compactText.utf8), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: type))
    }

    /// Verifies the signature first, then the claims against `validation`.
    public static func verify(
        _ token: String,
        keys: VerifyingKeySet,
        validation: JWTValidation
    ) throws(CryptoError) -> VerifiedJWT {
        let verified = try JWS.verify(token, keys: keys)
        if let expected = validation.type, verified.header.type != expected {
            throw CryptoError(.wrongType, "document type is \(verified.header.type ?? "unset"), expected \(expected)")
        }
        let parsed: JSONValue
        do {
            parsed = try JSONValue.parse(verified.payload)
        } catch {
            if let duplicate = error.duplicateName { throw CryptoError(.malformed, "the claims name \"\(duplicate)\" twice") }
            throw CryptoError(.malformed, "the payload is not a JWT claims set")
        }
        guard case .object(let members) = parsed else { throw CryptoError(.malformed, "the payload is not a JWT claims set") }
        let claims = try JWTClaims(members: members)
        if let maximum = validation.maximumLifetime, let expiresAt = claims.expiresAt {
            let from = claims.issuedAt ?? validation.clock.now()
            if expiresAt.timeIntervalSince(from) > maximum {
                throw CryptoError(.expired, "lifetime \(Int64(expiresAt.timeIntervalSince(from))) s exceeds the \(Int64(maximum)) s allowed")
            }
        }
        let now = validation.clock.now()
        if let expiresAt = claims.expiresAt {
            if now.timeIntervalSince(expiresAt) >= validation.leeway {
                throw CryptoError(.expired, "expired at \(Int64(expiresAt.timeIntervalSince1970)) (now \(Int64(now.timeIntervalSince1970)))")
            }
        } else if validation.requireExpiry {
            throw CryptoError(.expired, "the token has no expiry (exp)")
        }
        if let notBefore = claims.notBefore, notBefore.timeIntervalSince(now) > validation.leeway {
            throw CryptoError(.notYetValid, "not valid before \(Int64(notBefore.timeIntervalSince1970)) (now \(Int64(now.timeIntervalSince1970)))")
        }
        if let issuedAt = claims.issuedAt, issuedAt.timeIntervalSince(now) > validation.leeway {
            throw CryptoError(.notYetValid, "issued in the future at \(Int64(issuedAt.timeIntervalSince1970))")
        }
        if let audience = validation.audience, !(claims.audience ?? []).contains(audience) {
            throw CryptoError(.wrongAudience, "the token is not for audience \(audience)")
        }
        if let issuer = validation.issuer, claims.issuer != issuer {
            throw CryptoError(.wrongIssuer, "issuer is \(claims.issuer ?? "unset"), expected \(issuer)")
        }
        return VerifiedJWT(header: verified.header, claims: claims, payload: verified.payload)
    }
}
