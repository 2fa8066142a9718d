/// A lockdown command from the broker (docs/lockdown.md, "Remote commands"): the payload of a
/// `holdfast-command+jws` document the broker signs and the agent verifies with a pinned key.
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
    static let members: Set<String> = ["type", "device", "seq", "iat", "exp", "action", "scopes", "reason", "admin"]

    /// The device it is for (`hf-…`).
    public var device: String
    /// Per device, starting at 1, one more for every command the broker queues: the agent applies
    /// only a sequence newer than the last it applied.
    public var sequence: Int64
    public var issuedAt: Int64
    public var expiresAt: Int64
    public var action: Action
    public var scopes: [LockdownScope]
    /// Why, in the admin's words (shown to the user).
    public var reason: String
    /// The admin who asked, by name.
    public var admin: String

    public init(device: String, sequence: Int64, issuedAt: Int64, expiresAt: Int64, action: Action, scopes: [LockdownScope], reason: String, admin: String) {
        self.device = device
        self.sequence = sequence
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.action = action
        self.scopes = scopes
        self.reason = reason
        self.admin = admin
    }

    /// The payload as signed: one compact JSON object, keys sorted.
    public var payload: JSONValue {
        .object([
            "type": .string(Self.payloadType), "device": .string(device), "seq": .int(sequence), "iat": .int(issuedAt), "exp": .int(expiresAt),
            "action": .string(action.rawValue), "scopes": .array(scopes.map { .string($0.rawValue) }), "reason": .string(reason), "admin": .string(admin),
        ])
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
        if let extra = Set(members.keys).subtracting(Self.members).sorted().first {
            throw CommandError("the payload carries \"\(Printable.escape(String(extra.prefix(64))))\", which no command has")
        }
        guard members["type"]?.stringValue == Self.payloadType else { throw CommandError("the payload's type is not \(Self.payloadType)") }
        guard let device = members["device"]?.stringValue, Self.isDeviceID(device) else { throw CommandError("device must be a device id (hf-…)") }
        guard let sequence = members["seq"]?.intValue, sequence >= 1 else { throw CommandError("seq must be a whole number from 1") }
        guard let issued = members["iat"]?.intValue, let expires = members["exp"]?.intValue, issued > 0, expires > issued, expires - issued <= maximumLifetime else {
            throw CommandError("iat and exp must be times with exp after iat, at most \(maximumLifetime / 86_400) days apart")
        }
        guard let actionName = members["action"]?.stringValue, let action = Action(rawValue: actionName) else {
            throw CommandError("action must be one of \(Action.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard case .array(let items)? = members["scopes"], !items.isEmpty, items.count <= LockdownScope.allCases.count else {
            throw CommandError("scopes must be a non-empty list of \(LockdownScope.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var scopes: [LockdownScope] = []
        for item in items {
            guard let name = item.stringValue, let scope = LockdownScope(rawValue: name) else {
                throw CommandError("scopes must be a non-empty list of \(LockdownScope.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard !scopes.contains(scope) else { throw CommandError("scope \(name) is named twice") }
            scopes.append(scope)
        }
        guard let reason = members["reason"]?.stringValue, Self.isWords(reason, maximumBytes: maximumReasonBytes) else {
            throw CommandError("reason must be 1 to \(maximumReasonBytes) bytes without control characters")
        }
        guard let admin = members["admin"]?.stringValue, Self.isWords(admin, maximumBytes: maximumAdminBytes) else {
            throw CommandError("admin must be 1 to \(maximumAdminBytes) bytes without control characters")
        }
        return RemoteCommand(device: device, sequence: sequence, issuedAt: issued, expiresAt: expires, action: action, scopes: scopes, reason: reason, admin: admin)
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
