public import FoundationEssentials

/// An approved print exception (docs/exceptions.md): one user, one approved queue, extra pages
/// beyond the daily quota until `until`. It never opens a queue the policy does not approve,
/// never admits a user the queue's rule does not name, never beats a print lockdown.
public struct PrintException: Sendable, Equatable, Codable {
    /// The request id (`rq-…`) it came from, and the broker's number for it.
    public let id: String
    public let number: Int64
    public let user: String
    public let queue: String
    /// Pages granted (copies count), and pages charged to it so far.
    public let pages: Int64
    public var used: Int64
    public let created: Date
    public let until: Date
    /// The requester's words and the approver's.
    public let reason: String
    public let grantedBy: String

    public init(id: String, number: Int64, user: String, queue: String, pages: Int64, used: Int64 = 0, created: Date, until: Date, reason: String, grantedBy: String) {
        self.id = id
        self.number = number
        self.user = user
        self.queue = queue
        self.pages = pages
        self.used = used
        self.created = created
        self.until = until
        self.reason = reason
        self.grantedBy = grantedBy
    }

    enum CodingKeys: String, CodingKey {
        case id, number, user, queue, pages, used, created, until, reason
        case grantedBy = "granted_by"
    }

    /// Stored state is input too: a damaged entry (an end decades away, negative use) is refused
    /// rather than honoured — none of it is in force then (`print.exceptions_unreadable`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        number = try container.decode(Int64.self, forKey: .number)
        user = try container.decode(String.self, forKey: .user)
        queue = try container.decode(String.self, forKey: .queue)
        pages = try container.decode(Int64.self, forKey: .pages)
        used = try container.decode(Int64.self, forKey: .used)
        created = try container.decode(Date.self, forKey: .created)
        until = try container.decode(Date.self, forKey: .until)
        reason = try container.decode(String.self, forKey: .reason)
        grantedBy = try container.decode(String.self, forKey: .grantedBy)
        let span = until.timeIntervalSince(created)
        guard (1...100_000).contains(pages), used >= 0, span > 0, span <= 30 * 86_400 + 300 else {
            throw DecodingError.dataCorruptedError(forKey: .until, in: container, debugDescription: "a print exception has 1 to 100000 pages, no negative use, and lasts at most 30 days")
        }
    }

    public var remaining: Int64 { max(0, pages - used) }

    public func isActive(at now: Date) -> Bool { now < until }

    /// Whether it covers `user` printing on `queue` (CUPS queue names are case-insensitive).
    public func covers(user: String, queue: String) -> Bool {
        self.user == user && self.queue.lowercased() == queue.lowercased()
    }
}
