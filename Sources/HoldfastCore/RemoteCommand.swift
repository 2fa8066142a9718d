/// A command from the broker (docs/lockdown.md, "Remote commands"; docs/exceptions.md): the
/// payload of a `holdfast-command+jws` document the broker signs and the agent verifies with a
/// pinned key. Lockdowns and exceptions share one sequence per device: one order of events.
///
/// The actions are a fixed set in code and the payload carries data only — a device, a sequence,
/// times, scope names, words for people. There is no member a script, a path or an address could
/// travel in, and a payload with any member not listed here is refused whole.
public struct RemoteCommand: Sendable, Equatable {
    public enum Action: String, Sendable, Equatable, CaseIterable {
        /// Shut the scopes.
        case lockdown
        /// Lift the scopes.
        case release
        /// Apply an approved exception (`exception`).
        case grant
        /// A request was denied (`request`): nothing changes but what the requester sees.
        case deny
        /// End an approved exception now (`request`).
        case revoke
        /// Offboarding (`user`): the user may not log in here from now on; their sessions end,
        /// their exceptions and requests are revoked (docs/offboarding.md).
        case offboard
        /// Lifts an offboarding (`user`).
        case reinstate
    }

    /// The JWS `typ` of a command.
    public static let documentType = "holdfast-command+jws"
    /// The payload's `type` member.
    public static let payloadType = "holdfast.command"
    /// The longest a command may stay valid: a lockdown waiting for a laptop that is away for a
    /// month is still what the admin asked, longer is a mistake.
    public static let maximumLifetime: Int64 = 30 * 86_400
    public static let maximumReasonBytes = 512
    public static let maximumAdminBytes = 64
    static let baseMembers: Set<String> = ["type", "device", "seq", "iat", "exp", "action", "reason", "admin"]

    /// The members an action carries besides the base ones.
    static func actionMembers(_ action: Action) -> Set<String> {
        switch action {
        case .lockdown, .release: ["scopes"]
        case .grant: ["exception"]
        case .deny, .revoke: ["request"]
        case .offboard, .reinstate: ["user"]
        }
    }

    /// The device it is for (`hf-…`).
    public var device: String
    /// Per device, starting at 1, one more for every command the broker queues: the agent applies
    /// only a sequence newer than the last it applied.
    public var sequence: Int64
    public var issuedAt: Int64
    public var expiresAt: Int64
    public var action: Action
    /// The scopes of a `lockdown` or `release`; empty for the others.
    public var scopes: [LockdownScope]
    /// The exception a `grant` applies.
    public var exception: GrantedException?
    /// The request a `deny` or `revoke` is about.
    public var request: RequestReference?
    /// The login name an `offboard` or `reinstate` is about.
    public var user: String?
    /// Why, in the admin's words (shown to the user).
    public var reason: String
    /// The admin who asked, by name.
    public var admin: String

    public init(
        device: String, sequence: Int64, issuedAt: Int64, expiresAt: Int64, action: Action, scopes: [LockdownScope] = [], exception: GrantedException? = nil,
        request: RequestReference? = nil, user: String? = nil, reason: String, admin: String
    ) {
        self.device = device
        self.sequence = sequence
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.action = action
        self.scopes = scopes
        self.exception = exception
        self.request = request
        self.user = user
        self.reason = reason
        self.admin = admin
    }

    /// The payload as signed: one compact JSON object, keys sorted.
    public var payload: JSONValue {
        var object: [String: JSONValue] = [
            "type": .string(Self.payloadType), "device": .string(device), "seq": .int(sequence), "iat": .int(issuedAt), "exp": .int(expiresAt),
            "action": .string(action.rawValue), "reason": .string(reason), "admin": .string(admin),
        ]
        switch action {
        case .lockdown, .release: object["scopes"] = .array(scopes.map { .string($0.rawValue) })
        case .grant: object["exception"] = exception?.value ?? .null
        case .deny, .revoke: object["request"] = request?.value ?? .null
        case .offboard, .reinstate: object["user"] = user.map(JSONValue.string) ?? .null
        }
        return .object(object)
    }

    /// Parses a payload strictly: every member present with its type, nothing else, a known
    /// action and known scopes, times that make sense, words without control characters.
    public static func parse(_ bytes: [UInt8]) throws(CommandError) -> RemoteCommand {
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw CommandError("the payload is not JSON (\(error))")
        }
        guard case .object(let members) = value else { throw CommandError("the payload is not a JSON object") }
        guard let actionName = members["action"]?.stringValue, let action = Action(rawValue: actionName) else {
            throw CommandError("action must be one of \(Action.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let extra = Set(members.keys).subtracting(Self.baseMembers.union(Self.actionMembers(action))).sorted().first {
            throw CommandError("the payload carries \"\(Printable.escape(String(extra.prefix(64))))\", which no \(action.rawValue) command has")
        }
        guard members["type"]?.stringValue == Self.payloadType else { throw CommandError("the payload's type is not \(Self.payloadType)") }
        guard let device = members["device"]?.stringValue, Self.isDeviceID(device) else { throw CommandError("device must be a device id (hf-…)") }
        guard let sequence = members["seq"]?.intValue, sequence >= 1 else { throw CommandError("seq must be a whole number from 1") }
        guard let issued = members["iat"]?.intValue, let expires = members["exp"]?.intValue, issued > 0, expires > issued, expires - issued <= maximumLifetime else {
            throw CommandError("iat and exp must be times with exp after iat, at most \(maximumLifetime / 86_400) days apart")
        }
        var scopes: [LockdownScope] = []
        var exception: GrantedException?
        var request: RequestReference?
        var user: String?
        switch action {
        case .lockdown, .release:
            guard case .array(let items)? = members["scopes"], !items.isEmpty, items.count <= LockdownScope.allCases.count else {
                throw CommandError("scopes must be a non-empty list of \(LockdownScope.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            for item in items {
                guard let name = item.stringValue, let scope = LockdownScope(rawValue: name) else {
                    throw CommandError("scopes must be a non-empty list of \(LockdownScope.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                guard !scopes.contains(scope) else { throw CommandError("scope \(name) is named twice") }
                scopes.append(scope)
            }
        case .grant:
            guard let given = members["exception"] else { throw CommandError("a grant carries its exception") }
            exception = try GrantedException.parse(given)
        case .deny, .revoke:
            guard let given = members["request"] else { throw CommandError("a \(action.rawValue) names its request") }
            request = try RequestReference.parse(given)
        case .offboard, .reinstate:
            guard let name = members["user"]?.stringValue, LoginName.isValid(name) else {
                throw CommandError("an \(action.rawValue) names its user: a login name (at most \(LoginName.maximumBytes) bytes, no control characters)")
            }
            user = name
        }
        guard let reason = members["reason"]?.stringValue, Self.isWords(reason, maximumBytes: maximumReasonBytes) else {
            throw CommandError("reason must be 1 to \(maximumReasonBytes) bytes without control characters")
        }
        guard let admin = members["admin"]?.stringValue, Self.isWords(admin, maximumBytes: maximumAdminBytes) else {
            throw CommandError("admin must be 1 to \(maximumAdminBytes) bytes without control characters")
        }
        return RemoteCommand(
            device: device, sequence: sequence, issuedAt: issued, expiresAt: expires, action: action, scopes: scopes, exception: exception, request: request,
            user: user, reason: reason, admin: admin)
    }

    /// `hf-` and 16 lower-case hex digits, as the broker issues them.
    public static func isDeviceID(_ id: String) -> Bool {
        id.utf8.count == 19 && id.hasPrefix("hf-") && id.utf8.dropFirst(3).allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Text a person wrote for another to read: not empty, not too long, no control or
    /// invisible format characters (a reason shown in a notification must not hide text).
    public static func isWords(_ text: String, maximumBytes: Int) -> Bool {
        !text.isEmpty && text.utf8.count <= maximumBytes && !LoginName.hidesText(text)
    }
}

/// Why a command payload was refused.
public struct CommandError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
