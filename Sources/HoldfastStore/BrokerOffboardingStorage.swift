import HoldfastCore
import Synchronization

/// One offboarding or reinstatement as the broker keeps it (every one, for the access review).
public struct OffboardingRecord: Sendable, Equatable {
    public var id: Int64
    public var user: String
    /// `offboard` or `reinstate`.
    public var action: String
    public var reason: String
    public var admin: String
    public var at: Int64

    public init(id: Int64 = 0, user: String, action: String, reason: String, admin: String, at: Int64) {
        self.id = id
        self.user = user
        self.action = action
        self.reason = reason
        self.admin = admin
        self.at = at
    }
}

/// What became of an offboarding or reinstatement.
public enum OffboardingOutcome: Sendable, Equatable {
    /// Recorded, with this many commands queued.
    case recorded(commands: Int)
    /// The user is in that state already (offboarded, or not offboarded), since this record.
    case already(OffboardingRecord?)
}

/// Makes the signed command for one device at a sequence (the storage picks the sequence inside
/// its transaction, so no other command can take it meanwhile).
public typealias CommandSigner = @Sendable (_ device: String, _ sequence: Int64) throws(StoreError) -> QueuedCommand

extension SQLiteBrokerStorage {
    static let offboardingColumns = "id, user, action, reason, admin, at"

    static func offboarding(_ statement: Statement) -> OffboardingRecord {
        OffboardingRecord(
            id: statement.int64(0), user: statement.text(1) ?? "", action: statement.text(2) ?? "", reason: statement.text(3) ?? "",
            admin: statement.text(4) ?? "", at: statement.int64(5))
    }

    /// The latest offboarding or reinstatement of `user`.
    static func latestOffboarding(_ user: String, _ connection: Connection) throws(StoreError) -> OffboardingRecord? {
        try connection.withStatement("SELECT \(offboardingColumns) FROM offboardings WHERE user = ? COLLATE NOCASE ORDER BY id DESC LIMIT 1") { statement throws(StoreError) in
            statement.bind(1, user)
            return try statement.step() ? Self.offboarding(statement) : nil
        }
    }

    public func setOffboarded(
        _ record: OffboardingRecord, sign: CommandSigner, requestNote: String
    ) throws(StoreError) -> OffboardingOutcome {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> OffboardingOutcome in
                    let latest = try Self.latestOffboarding(record.user, connection)
                    let offboarded = latest?.action == "offboard"
                    guard offboarded != (record.action == "offboard") else { return .already(latest) }
                    try connection.withStatement("INSERT INTO offboardings (user, action, reason, admin, at) VALUES (?, ?, ?, ?, ?)") { statement throws(StoreError) in
                        statement.bind(1, record.user)
                        statement.bind(2, record.action)
                        statement.bind(3, record.reason)
                        statement.bind(4, record.admin)
                        statement.bind(5, record.at)
                        try statement.run()
                    }
                    // Every enrolled device, each at its next sequence.
                    let devices = try Self.queueUserCommand(user: record.user, condition: "", bind: { _ in }, sign: sign, connection)
                    if record.action == "offboard" {
                        // The device ends them with the offboarding; the broker's view says so at once.
                        try connection.withStatement("""
                            UPDATE requests SET status = 'denied', decided_at = ?, decided_by = ?, note = ? WHERE user = ? COLLATE NOCASE AND status = 'pending'
                            """) { statement throws(StoreError) in
                            statement.bind(1, record.at)
                            statement.bind(2, record.admin)
                            statement.bind(3, requestNote)
                            statement.bind(4, record.user)
                            try statement.run()
                        }
                        try connection.withStatement("""
                            UPDATE requests SET status = 'revoked', revoked_at = ?, revoked_by = ?, revoke_note = ?, until = min(coalesce(until, ?), ?)
                            WHERE user = ? COLLATE NOCASE AND status = 'approved' AND coalesce(until, 0) > ?
                            """) { statement throws(StoreError) in
                            statement.bind(1, record.at)
                            statement.bind(2, record.admin)
                            statement.bind(3, requestNote)
                            statement.bind(4, record.at)
                            statement.bind(5, record.at)
                            statement.bind(6, record.user)
                            statement.bind(7, record.at)
                            try statement.run()
                        }
                    }
                    try Self.insertLog(BrokerLogEntry(
                        time: record.at, device: "", kind: "user.\(record.action == "offboard" ? "offboarded" : "reinstated")",
                        detail: "\(record.user) by \(record.admin) (\(devices) devices): \(record.reason)"), connection)
                    try connection.withStatement("INSERT INTO admin_actions (time, admin, verb, detail) VALUES (?, ?, ?, ?)") { statement throws(StoreError) in
                        statement.bind(1, record.at)
                        statement.bind(2, record.admin)
                        statement.bind(3, record.action)
                        statement.bind(4, "user=\(record.user) devices=\(devices) reason=\(record.reason)")
                        try statement.run()
                    }
                    return .recorded(commands: devices)
                }
            }
        }
    }

    /// Queues a command about `user` for every enrolled device meeting `condition` (SQL over `d`,
    /// bound by `bind`), each at its next sequence — picked inside the caller's transaction, under
    /// the write lock, so no other command takes it. Returns how many.
    static func queueUserCommand(
        user: String, condition: String, bind: (Statement) -> Void, sign: CommandSigner, _ connection: Connection
    ) throws(StoreError) -> Int {
        let devices = try connection.withStatement("""
            SELECT d.id, coalesce((SELECT max(seq) FROM commands c WHERE c.device = d.id), 0) FROM devices d WHERE d.removed_at IS NULL \(condition)
            ORDER BY d.id
            """) { statement throws(StoreError) -> [(String, Int64)] in
            bind(statement)
            var all: [(String, Int64)] = []
            while try statement.step() { all.append((statement.text(0) ?? "", statement.int64(1))) }
            return all
        }
        for (device, latest) in devices {
            var command = try sign(device, latest + 1)
            command.subject = user
            guard try insertCommand(command, connection) else {
                throw StoreError(.sqlite, "command \(latest + 1) of \(device) was taken inside this transaction")
            }
        }
        return devices.count
    }

    public func offboardedUsers() throws(StoreError) -> [OffboardingRecord] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("""
                SELECT \(Self.offboardingColumns) FROM offboardings o WHERE id = (SELECT max(id) FROM offboardings p WHERE p.user = o.user COLLATE NOCASE) AND action = 'offboard'
                ORDER BY id
                """) { statement throws(StoreError) in
                var all: [OffboardingRecord] = []
                while try statement.step() { all.append(Self.offboarding(statement)) }
                return all
            }
        }
    }

    public func offboardingHistory(user: String) throws(StoreError) -> [OffboardingRecord] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.offboardingColumns) FROM offboardings WHERE user = ? COLLATE NOCASE ORDER BY id") { statement throws(StoreError) in
                statement.bind(1, user)
                var all: [OffboardingRecord] = []
                while try statement.step() { all.append(Self.offboarding(statement)) }
                return all
            }
        }
    }

    public func offboardingChange() throws(StoreError) -> Int64 {
        try connection.withLock { connection throws(StoreError) in try connection.int64("SELECT coalesce(max(id), 0) FROM offboardings") }
    }

    public func userCommands(user: String) throws(StoreError) -> [QueuedCommand] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.commandColumns) FROM commands WHERE subject = ? COLLATE NOCASE ORDER BY device, seq") { statement throws(StoreError) in
                statement.bind(1, user)
                var all: [QueuedCommand] = []
                while try statement.step() { all.append(Self.command(statement)) }
                return all
            }
        }
    }

    public func queueOffboardings(device: String, sign: @Sendable (_ user: OffboardingRecord, _ sequence: Int64) throws(StoreError) -> QueuedCommand) throws(StoreError) -> Int {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> Int in
                    // The users offboarded now that this device has no offboarding command for yet
                    // (an offboarding that ran after the enrollment queued its own).
                    let users = try connection.withStatement("""
                        SELECT \(Self.offboardingColumns) FROM offboardings o WHERE id = (SELECT max(id) FROM offboardings p WHERE p.user = o.user COLLATE NOCASE) AND action = 'offboard'
                        AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.device = ? AND c.subject = o.user COLLATE NOCASE AND c.action = 'offboard' AND c.issued_at >= o.at)
                        ORDER BY id
                        """) { statement throws(StoreError) in
                        statement.bind(1, device)
                        var all: [OffboardingRecord] = []
                        while try statement.step() { all.append(Self.offboarding(statement)) }
                        return all
                    }
                    var sequence = try connection.withStatement("SELECT coalesce(max(seq), 0) FROM commands WHERE device = ?") { statement throws(StoreError) -> Int64 in
                        statement.bind(1, device)
                        _ = try statement.step()
                        return statement.int64(0)
                    }
                    for user in users {
                        sequence += 1
                        var command = try sign(user, sequence)
                        command.subject = user.user
                        guard try Self.insertCommand(command, connection) else {
                            throw StoreError(.sqlite, "command \(sequence) of \(device) was taken inside the enrollment's transaction")
                        }
                    }
                    return users.count
                }
            }
        }
    }
}

extension SQLiteBrokerStorage {
    public func resendUserCommand(user: String, by admin: String, at time: Int64, sign: CommandSigner) throws(StoreError) -> (record: OffboardingRecord, devices: Int)? {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> (record: OffboardingRecord, devices: Int)? in
                    guard let latest = try Self.latestOffboarding(user, connection) else { return nil }
                    // Enrolled devices with nothing applied or on its way for the latest word on
                    // this user: none sent, refused (an agent too old for it), or lost.
                    let devices = try Self.queueUserCommand(
                        user: latest.user,
                        condition: """
                            AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.device = d.id AND c.subject = ? COLLATE NOCASE AND c.action = ? AND c.issued_at >= ?
                                            AND c.status IN ('queued', 'applied'))
                            """,
                        bind: { statement in
                            statement.bind(1, user)
                            statement.bind(2, latest.action)
                            statement.bind(3, latest.at)
                        }, sign: sign, connection)
                    try Self.insertLog(BrokerLogEntry(
                        time: time, device: "", kind: "user.resent", detail: "\(latest.action) of \(latest.user) sent again to \(devices) devices by \(admin)"), connection)
                    return (latest, devices)
                }
            }
        }
    }
}
