import HoldfastCore
import Synchronization

/// A lockdown command as the broker keeps it: the signed document the agent receives, what it
/// says (for people reading `device ID`), and what the agent made of it.
public struct QueuedCommand: Sendable, Equatable {
    public var device: String
    public var sequence: Int64
    /// `lockdown` or `release`.
    public var action: String
    /// Scope names, comma-separated.
    public var scopes: String
    public var reason: String
    public var admin: String
    public var issuedAt: Int64
    public var expiresAt: Int64
    /// The compact `holdfast-command+jws`.
    public var document: String
    /// `queued`, then `applied` or `refused` once the agent acknowledged it.
    public var status: String
    public var statusAt: Int64?
    /// Why it was refused, or what resulted.
    public var detail: String?
    /// The user an `offboard` or `reinstate` is about (nil for the others).
    public var subject: String?

    public init(device: String, sequence: Int64, action: String, scopes: String, reason: String, admin: String, issuedAt: Int64, expiresAt: Int64, document: String,
                status: String = "queued", statusAt: Int64? = nil, detail: String? = nil, subject: String? = nil) {
        self.device = device
        self.sequence = sequence
        self.action = action
        self.scopes = scopes
        self.reason = reason
        self.admin = admin
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.document = document
        self.status = status
        self.statusAt = statusAt
        self.detail = detail
        self.subject = subject
    }
}

/// A break-glass code the broker made: for whom, what, when, by whom — and its digest only.
public struct IssuedBreakglassCode: Sendable, Equatable {
    public var device: String
    public var codeSHA256: String
    public var scopes: String
    public var startsAt: Int64
    public var endsAt: Int64
    public var admin: String
    public var reason: String

    public init(device: String, codeSHA256: String, scopes: String, startsAt: Int64, endsAt: Int64, admin: String, reason: String) {
        self.device = device
        self.codeSHA256 = codeSHA256
        self.scopes = scopes
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.admin = admin
        self.reason = reason
    }
}

extension SQLiteBrokerStorage {
    static let breakglassColumns = "device, code_sha256, scopes, starts_at, ends_at, admin, reason"

    /// A `breakglass_codes` row selected as `breakglassColumns`.
    static func breakglassCode(_ statement: Statement) -> IssuedBreakglassCode {
        IssuedBreakglassCode(
            device: statement.text(0) ?? "", codeSHA256: statement.text(1) ?? "", scopes: statement.text(2) ?? "", startsAt: statement.int64(3),
            endsAt: statement.int64(4), admin: statement.text(5) ?? "", reason: statement.text(6) ?? "")
    }

    static let commandColumns = "device, seq, action, scopes, reason, admin, issued_at, expires_at, document, status, status_at, detail, subject"

    static func command(_ statement: Statement) -> QueuedCommand {
        QueuedCommand(
            device: statement.text(0) ?? "", sequence: statement.int64(1), action: statement.text(2) ?? "", scopes: statement.text(3) ?? "",
            reason: statement.text(4) ?? "", admin: statement.text(5) ?? "", issuedAt: statement.int64(6), expiresAt: statement.int64(7),
            document: statement.text(8) ?? "", status: statement.text(9) ?? "queued", statusAt: statement.isNull(10) ? nil : statement.int64(10), detail: statement.text(11),
            subject: statement.text(12))
    }

    public func latestCommandSequence(device: String) throws(StoreError) -> Int64 {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT coalesce(max(seq), 0) FROM commands WHERE device = ?") { statement throws(StoreError) -> Int64 in
                statement.bind(1, device)
                _ = try statement.step()
                return statement.int64(0)
            }
        }
    }

    /// A command is an admin's order a device will act on: committed with fsync.
    public func addCommand(_ command: QueuedCommand) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in try Self.insertCommand(command, connection) }
        }
    }

    /// Inserts a queued command; false when its sequence is taken.
    static func insertCommand(_ command: QueuedCommand, _ connection: Connection) throws(StoreError) -> Bool {
        try connection.withStatement("""
            INSERT OR IGNORE INTO commands (device, seq, action, scopes, reason, admin, issued_at, expires_at, document, status, subject)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)
            """) { statement throws(StoreError) in
            statement.bind(1, command.device)
            statement.bind(2, command.sequence)
            statement.bind(3, command.action)
            statement.bind(4, command.scopes)
            statement.bind(5, command.reason)
            statement.bind(6, command.admin)
            statement.bind(7, command.issuedAt)
            statement.bind(8, command.expiresAt)
            statement.bind(9, command.document)
            statement.bind(10, command.subject)
            try statement.run()
            return statement.changes == 1
        }
    }

    public func commands(device: String, after sequence: Int64, limit: Int) throws(StoreError) -> [QueuedCommand] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.commandColumns) FROM commands WHERE device = ? AND seq > ? ORDER BY seq LIMIT ?") { statement throws(StoreError) in
                statement.bind(1, device)
                statement.bind(2, sequence)
                statement.bind(3, Int64(limit))
                var all: [QueuedCommand] = []
                while try statement.step() { all.append(Self.command(statement)) }
                return all
            }
        }
    }

    public func recentCommands(device: String, limit: Int) throws(StoreError) -> [QueuedCommand] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.commandColumns) FROM commands WHERE device = ? ORDER BY seq DESC LIMIT ?") { statement throws(StoreError) in
                statement.bind(1, device)
                statement.bind(2, Int64(limit))
                var all: [QueuedCommand] = []
                while try statement.step() { all.append(Self.command(statement)) }
                return all
            }
        }
    }

    public func acknowledgeCommand(device: String, sequence: Int64, status: String, detail: String, at time: Int64) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("UPDATE commands SET status = ?, status_at = ?, detail = ? WHERE device = ? AND seq = ? AND status = 'queued'") { statement throws(StoreError) in
                statement.bind(1, status)
                statement.bind(2, time)
                statement.bind(3, detail)
                statement.bind(4, device)
                statement.bind(5, sequence)
                try statement.run()
                return statement.changes == 1
            }
        }
    }

    public func commandSequences(afterRow row: Int64) throws(StoreError) -> (row: Int64, latest: [String: Int64]) {
        try connection.withLock { connection throws(StoreError) in
            let newest = try connection.int64("SELECT coalesce(max(rowid), 0) FROM commands")
            guard newest > row else { return (row, [:]) }
            return try connection.withStatement("SELECT device, max(seq) FROM commands WHERE rowid > ? GROUP BY device") { statement throws(StoreError) in
                statement.bind(1, row)
                var latest: [String: Int64] = [:]
                while try statement.step() { latest[statement.text(0) ?? ""] = statement.int64(1) }
                return (newest, latest)
            }
        }
    }

    public func recordLockdownState(device: String, state: String, at time: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("UPDATE devices SET lockdown_state = ?, lockdown_at = ? WHERE id = ? AND (lockdown_at IS NULL OR lockdown_at <= ?)") { statement throws(StoreError) in
                statement.bind(1, state)
                statement.bind(2, time)
                statement.bind(3, device)
                statement.bind(4, time)
                try statement.run()
            }
        }
    }

    public func breakglassSecret(device: String, orSet candidate: [UInt8]?) throws(StoreError) -> [UInt8]? {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                if let candidate {
                    try connection.withStatement("UPDATE devices SET breakglass_secret = ? WHERE id = ? AND breakglass_secret IS NULL") { statement throws(StoreError) in
                        statement.bind(1, candidate)
                        statement.bind(2, device)
                        try statement.run()
                    }
                }
                return try connection.withStatement("SELECT breakglass_secret FROM devices WHERE id = ?") { statement throws(StoreError) -> [UInt8]? in
                    statement.bind(1, device)
                    guard try statement.step(), !statement.isNull(0) else { return nil }
                    return statement.blob(0)
                }
            }
        }
    }

    public func recordBreakglassCode(_ code: IssuedBreakglassCode) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.withStatement("""
                    INSERT INTO breakglass_codes (device, code_sha256, scopes, starts_at, ends_at, admin, reason) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """) { statement throws(StoreError) in
                    statement.bind(1, code.device)
                    statement.bind(2, code.codeSHA256)
                    statement.bind(3, code.scopes)
                    statement.bind(4, code.startsAt)
                    statement.bind(5, code.endsAt)
                    statement.bind(6, code.admin)
                    statement.bind(7, code.reason)
                    try statement.run()
                }
            }
        }
    }

    public func breakglassCodes(device: String, limit: Int) throws(StoreError) -> [IssuedBreakglassCode] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.breakglassColumns) FROM breakglass_codes WHERE device = ? ORDER BY id DESC LIMIT ?") { statement throws(StoreError) in
                statement.bind(1, device)
                statement.bind(2, Int64(limit))
                var all: [IssuedBreakglassCode] = []
                while try statement.step() { all.append(Self.breakglassCode(statement)) }
                return all
            }
        }
    }
}
