/// A session as systemd-logind lists it (org.freedesktop.login1(5), `ListSessions`).
public struct LogindSession: Sendable, Equatable {
    public let id: String
    public let uid: UInt32
    public let user: String
    /// Empty for sessions without a seat (ssh).
    public let seat: String
    public let path: String
}

/// The parts of `org.freedesktop.login1.Manager` the sessions lockdown uses.
public enum Logind {
    static let destination = "org.freedesktop.login1"
    static let path = "/org/freedesktop/login1"
    static let manager = "org.freedesktop.login1.Manager"

    /// `ListSessions() → a(susso)`.
    public static func sessions(_ bus: DBusConnection) throws(DBusError) -> [LogindSession] {
        let reply = try bus.call(destination, path, manager, "ListSessions")
        return try reply.readArray("(susso)") { element throws(DBusError) in
            try element.readStruct("susso") { fields throws(DBusError) in
                LogindSession(
                    id: try fields.readString(), uid: try fields.readUInt32(), user: try fields.readString(), seat: try fields.readString(),
                    path: try fields.readString("o"))
            }
        }
    }

    /// `LockSession(s)`: the session's screen locker locks it.
    public static func lock(_ bus: DBusConnection, session: String) throws(DBusError) {
        _ = try bus.call(destination, path, manager, "LockSession", [.string(session)])
    }

    /// `TerminateUser(u)`: every session of the user, and what runs outside them, is ended.
    public static func terminateUser(_ bus: DBusConnection, uid: UInt32) throws(DBusError) {
        _ = try bus.call(destination, path, manager, "TerminateUser", [.uint32(uid)])
    }

    /// `SetUserLinger(ubb)` off: the user's service manager no longer outlives their sessions
    /// (no timers or services of theirs left running after an offboarding).
    public static func disableLinger(_ bus: DBusConnection, uid: UInt32) throws(DBusError) {
        _ = try bus.call(destination, path, manager, "SetUserLinger", [.uint32(uid), .boolean(false), .boolean(false)])
    }

    /// `TerminateSession(s)`: every process of the session is ended.
    public static func terminate(_ bus: DBusConnection, session: String) throws(DBusError) {
        _ = try bus.call(destination, path, manager, "TerminateSession", [.string(session)])
    }
}

/// The Desktop Notifications Specification's `Notify` on a user's session bus.
public enum DesktopNotification {
    /// Shows `summary` and `body` (plain text; the server may render markup, so callers escape
    /// `<` and `&`); returns the notification id. Critical urgency needs a hint the spec types as
    /// a byte variant; the notification is sent without hints and without expiry instead (0:
    /// the server's default).
    public static func send(_ bus: DBusConnection, application: String, summary: String, body: String) throws(DBusError) -> UInt32 {
        let reply = try bus.call(
            "org.freedesktop.Notifications", "/org/freedesktop/Notifications", "org.freedesktop.Notifications", "Notify",
            [.string(application), .uint32(0), .string("dialog-warning"), .string(summary), .string(body), .stringArray([]), .emptyVariantDictionary, .int32(0)])
        return try reply.readUInt32()
    }
}
