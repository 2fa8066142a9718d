import HoldfastCore
import Synchronization

/// A user's request as the broker keeps it (docs/exceptions.md): what they asked, what an
/// approver decided, and the command that carried it.
public struct StoredRequest: Sendable, Equatable {
    /// The broker's number (what admins type).
    public var number: Int64
    public var device: String
    /// The agent's id for it.
    public var request: String
    public var kind: String
    public var user: String
    public var uid: Int64
    /// The match members as compact JSON.
    public var match: String
    /// What the agent saw of the device, as it sent it (words the device chose: show escaped).
    public var label: String?
    public var seconds: Int64
    public var reason: String
    public var created: Int64
    public var receivedAt: Int64
    /// `pending`, `approved`, `denied`, `revoked`.
    public var status: String
    public var decidedAt: Int64?
    public var decidedBy: String?
    public var note: String?
    /// An approval's absolute end.
    public var until: Int64?
    /// The command that carried the decision, and a revocation's.
    public var commandSequence: Int64?
    public var revokeSequence: Int64?
    /// Who ended an approval early, when and why.
    public var revokedAt: Int64?
    public var revokedBy: String?
    public var revokeNote: String?
    /// What the agent made of the decision's command (`queued`, `applied`, `refused`) and why.
    public var commandStatus: String?
    public var commandDetail: String?
    public var commandStatusAt: Int64?

    public init(
        number: Int64 = 0, device: String, request: String, kind: String, user: String, uid: Int64, match: String, label: String? = nil, seconds: Int64, reason: String, created: Int64,
        receivedAt: Int64, status: String = "pending", decidedAt: Int64? = nil, decidedBy: String? = nil, note: String? = nil, until: Int64? = nil,
        commandSequence: Int64? = nil, revokeSequence: Int64? = nil, revokedAt: Int64? = nil, revokedBy: String? = nil, revokeNote: String? = nil, commandStatus: String? = nil, commandDetail: String? = nil, commandStatusAt: Int64? = nil
    ) {
        self.number = number
        self.device = device
        self.request = request
        self.kind = kind
        self.user = user
        self.uid = uid
        self.match = match
        self.label = label
        self.seconds = seconds
        self.reason = reason
        self.created = created
        self.receivedAt = receivedAt
        self.status = status
        self.decidedAt = decidedAt
        self.decidedBy = decidedBy
        self.note = note
        self.until = until
        self.commandSequence = commandSequence
        self.revokeSequence = revokeSequence
        self.revokedAt = revokedAt
        self.revokedBy = revokedBy
        self.revokeNote = revokeNote
        self.commandStatus = commandStatus
        self.commandDetail = commandDetail
        self.commandStatusAt = commandStatusAt
    }
}

/// What deciding a request came to.
public enum DecisionOutcome: Sendable, Equatable {
    case decided
    /// Its status is not the one expected (decided by someone else meanwhile, or unknown).
    case notInState(String?)
    /// The command's sequence was taken meanwhile: sign again with the next.
    case sequenceTaken
}

extension SQLiteBrokerStorage {
    static let requestColumns = """
        r.number, r.device, r.request, r.kind, r.user, r.uid, r.match, r.seconds, r.reason, r.created, r.received_at, r.status, r.decided_at, r.decided_by, \
        r.note, r.until, r.command_seq, r.revoke_seq, r.revoked_at, r.revoked_by, r.revoke_note, c.status, c.detail, c.status_at, r.label
        """
    static let requestJoin = "requests r LEFT JOIN commands c ON c.device = r.device AND c.seq = coalesce(r.revoke_seq, r.command_seq)"

    static func storedRequest(_ statement: Statement) -> StoredRequest {
        func optional(_ column: Int32) -> Int64? { statement.isNull(column) ? nil : statement.int64(column) }
        var request = StoredRequest(
            number: statement.int64(0), device: statement.text(1) ?? "", request: statement.text(2) ?? "", kind: statement.text(3) ?? "", user: statement.text(4) ?? "",
            uid: statement.int64(5), match: statement.text(6) ?? "{}", seconds: statement.int64(7), reason: statement.text(8) ?? "", created: statement.int64(9),
            receivedAt: statement.int64(10), status: statement.text(11) ?? "pending", decidedAt: optional(12), decidedBy: statement.text(13), note: statement.text(14),
            until: optional(15), commandSequence: optional(16), revokeSequence: optional(17), revokedAt: optional(18), revokedBy: statement.text(19),
            revokeNote: statement.text(20), commandStatus: statement.text(21), commandDetail: statement.text(22), commandStatusAt: optional(23))
        request.label = statement.text(24)
        return request
    }

    /// A request is a person's ask the device waits on: committed with fsync.
    public func addRequest(_ request: StoredRequest, pendingLimit limit: Int, shelfLife: Int64) throws(StoreError) -> (number: Int64, new: Bool)? {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> (number: Int64, new: Bool)? in
                    let existing = try connection.withStatement("SELECT number FROM requests WHERE device = ? AND request = ?") { statement throws(StoreError) -> Int64? in
                        statement.bind(1, request.device)
                        statement.bind(2, request.request)
                        return try statement.step() ? statement.int64(0) : nil
                    }
                    if let existing { return (existing, false) }
                    // Requests past the shelf life are never approved: they do not hold a place.
                    let pending = try connection.withStatement("SELECT count(*) FROM requests WHERE device = ? AND status = 'pending' AND received_at > ?") { statement throws(StoreError) -> Int64 in
                        statement.bind(1, request.device)
                        statement.bind(2, request.receivedAt - shelfLife)
                        _ = try statement.step()
                        return statement.int64(0)
                    }
                    guard pending < Int64(limit) else { return nil }
                    return try connection.withStatement("""
                        INSERT INTO requests (device, request, kind, user, uid, match, seconds, reason, created, received_at, label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """) { statement throws(StoreError) -> (number: Int64, new: Bool)? in
                        statement.bind(1, request.device)
                        statement.bind(2, request.request)
                        statement.bind(3, request.kind)
                        statement.bind(4, request.user)
                        statement.bind(5, request.uid)
                        statement.bind(6, request.match)
                        statement.bind(7, request.seconds)
                        statement.bind(8, request.reason)
                        statement.bind(9, request.created)
                        statement.bind(10, request.receivedAt)
                        statement.bind(11, request.label)
                        try statement.run()
                        return (try connection.int64("SELECT last_insert_rowid()"), true)
                    }
                }
            }
        }
    }

    public func request(number: Int64) throws(StoreError) -> StoredRequest? {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.requestColumns) FROM \(Self.requestJoin) WHERE r.number = ?") { statement throws(StoreError) -> StoredRequest? in
                statement.bind(1, number)
                return try statement.step() ? Self.storedRequest(statement) : nil
            }
        }
    }

    public func requests(statuses: [String]?, device: String?, limit: Int) throws(StoreError) -> [StoredRequest] {
        var conditions: [String] = []
        if let statuses { conditions.append("r.status IN (\(statuses.map { _ in "?" }.joined(separator: ", ")))") }
        if device != nil { conditions.append("r.device = ?") }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.requestColumns) FROM \(Self.requestJoin)\(filter) ORDER BY r.number DESC LIMIT ?") { statement throws(StoreError) in
                var index: Int32 = 1
                for status in statuses ?? [] {
                    statement.bind(index, status)
                    index += 1
                }
                if let device {
                    statement.bind(index, device)
                    index += 1
                }
                statement.bind(index, Int64(limit))
                var all: [StoredRequest] = []
                while try statement.step() { all.append(Self.storedRequest(statement)) }
                return all
            }
        }
    }

    public func requestsNeedingAttention(device: String?, limit: Int) throws(StoreError) -> [StoredRequest] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("""
                SELECT \(Self.requestColumns) FROM \(Self.requestJoin)
                WHERE (r.status = 'pending' OR (r.status = 'approved' AND c.status = 'refused')) AND (? IS NULL OR r.device = ?)
                ORDER BY r.number DESC LIMIT ?
                """) { statement throws(StoreError) in
                statement.bind(1, device)
                statement.bind(2, device)
                statement.bind(3, Int64(limit))
                var all: [StoredRequest] = []
                while try statement.step() { all.append(Self.storedRequest(statement)) }
                return all
            }
        }
    }

    public func decideRequest(
        number: Int64, from: String, to status: String, by admin: String, note: String, until: Int64?, command: QueuedCommand, trail: BrokerLogEntry,
        adminAction: String, at time: Int64
    ) throws(StoreError) -> DecisionOutcome {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> DecisionOutcome in
                    let current = try connection.withStatement("SELECT status FROM requests WHERE number = ?") { statement throws(StoreError) -> String? in
                        statement.bind(1, number)
                        return try statement.step() ? statement.text(0) : nil
                    }
                    guard current == from else { return .notInState(current) }
                    let inserted = try Self.insertCommand(command, connection)
                    guard inserted else { return .sequenceTaken }
                    // A revocation keeps the approval's record (who approved, until when) beside
                    // its own; a first decision records who decided.
                    let sql = from == "pending"
                        ? "UPDATE requests SET status = ?, decided_at = ?, decided_by = ?, note = ?, until = ?, command_seq = ? WHERE number = ?"
                        : "UPDATE requests SET status = ?, revoked_at = ?, revoked_by = ?, revoke_note = ?, until = coalesce(?, until), revoke_seq = ? WHERE number = ?"
                    try connection.withStatement(sql) { statement throws(StoreError) in
                        statement.bind(1, status)
                        statement.bind(2, time)
                        statement.bind(3, admin)
                        statement.bind(4, note)
                        statement.bind(5, until)
                        statement.bind(6, command.sequence)
                        statement.bind(7, number)
                        try statement.run()
                    }
                    try Self.insertLog(trail, connection)
                    try connection.withStatement("INSERT INTO admin_actions (time, admin, verb, detail) VALUES (?, ?, ?, ?)") { statement throws(StoreError) in
                        statement.bind(1, time)
                        statement.bind(2, admin)
                        statement.bind(3, ["approved": "approve", "denied": "deny", "revoked": "revoke"][status] ?? status)
                        statement.bind(4, adminAction)
                        try statement.run()
                    }
                    return .decided
                }
            }
        }
    }
}
