/// The control socket's wire protocol (`docs/control-protocol.md`): one JSON request line from the
/// client, one JSON response line from the daemon, then the daemon closes the connection.
public enum ControlProtocol {
    /// The protocol version this build speaks. A request with another version is refused.
    public static let version = 1
    /// The longest request line the daemon reads.
    public static let maximumRequestBytes = 64 << 10
    /// The longest response line a client reads.
    public static let maximumResponseBytes = 16 << 20
}

/// Who may use a verb. The daemon decides from the caller's `SO_PEERCRED` uid.
public enum VerbClass: String, Sendable, Codable {
    /// Anyone: status, posture, device lists, explanations.
    case read
    /// Any local user, recorded with the caller's uid; never changes enforcement by itself.
    case request
    /// uid 0 only: reload, local exceptions, lockdowns by hand.
    case admin

    /// Whether a caller with `uid` may use verbs of this class.
    public func permits(uid: UInt32) -> Bool {
        switch self {
        case .read, .request: true
        case .admin: uid == 0
        }
    }
}

/// A request: a verb and its arguments.
public struct ControlRequest: Sendable, Equatable, Codable {
    public var version: Int
    public var verb: String
    public var arguments: [String: JSONValue]

    public init(verb: String, arguments: [String: JSONValue] = [:], version: Int = ControlProtocol.version) {
        self.version = version
        self.verb = verb
        self.arguments = arguments
    }

    enum CodingKeys: String, CodingKey { case version, verb, arguments }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decode(Int.self, forKey: .version)
        verb = try container.decode(String.self, forKey: .verb)
        arguments = try container.decodeIfPresent([String: JSONValue].self, forKey: .arguments) ?? [:]
    }
}

/// Machine-readable refusal codes.
public enum ControlErrorCode: String, Sendable, Codable {
    case permissionDenied = "permission-denied"
    case unknownVerb = "unknown-verb"
    case badRequest = "bad-request"
    case unsupportedVersion = "unsupported-version"
    case failed
    case busy
}

/// A response: a result, or an error with a code and a sentence.
public struct ControlResponse: Sendable, Equatable, Codable {
    public struct Failure: Sendable, Equatable, Codable {
        public var code: ControlErrorCode
        public var message: String
        public init(code: ControlErrorCode, message: String) {
            self.code = code
            self.message = message
        }
    }

    public var version: Int
    public var ok: Bool
    public var result: JSONValue?
    public var error: Failure?

    public static func success(_ result: JSONValue) -> ControlResponse {
        ControlResponse(version: ControlProtocol.version, ok: true, result: result, error: nil)
    }

    public static func failure(_ code: ControlErrorCode, _ message: String) -> ControlResponse {
        ControlResponse(version: ControlProtocol.version, ok: false, result: nil, error: Failure(code: code, message: message))
    }
}
