/// Pages and jobs each user printed today, across every queue: Holdfast's own ledger, kept in the
/// journal's state. A job is charged when the gate lets it through (before it prints), so a job
/// that fails at the printer still counts: the ledger never undercounts.
public struct QuotaLedger: Sendable, Equatable, Codable {
    public struct Use: Sendable, Equatable, Codable {
        public var pages: Int64
        public var jobs: Int64

        public init(pages: Int64, jobs: Int64) {
            self.pages = pages
            self.jobs = jobs
        }
    }

    /// The local calendar day the counts are for, `YYYY-MM-DD`.
    public private(set) var day: String
    public private(set) var users: [String: Use]

    public init(day: String, users: [String: Use] = [:]) {
        self.day = day
        self.users = users
    }

    /// Today's use for `user` (zero on a new day).
    public func use(of user: String, on today: String) -> Use {
        today == day ? users[user] ?? Use(pages: 0, jobs: 0) : Use(pages: 0, jobs: 0)
    }

    /// Whether a job of `pages` fits `quota` for `user`; nil when it does, else why not.
    public func refusal(user: String, pages: Int64, quota: PrintQuota, on today: String) -> String? {
        let used = use(of: user, on: today)
        if let limit = quota.jobsPerDay, used.jobs + 1 > limit {
            return "job quota reached: \(used.jobs) of \(limit) jobs today"
        }
        if let limit = quota.pagesPerDay, used.pages + pages > limit {
            return "page quota: this job has \(pages) page\(pages == 1 ? "" : "s"), \(used.pages) of \(limit) used today"
        }
        return nil
    }

    /// Charges a job to `user` (a new day starts from zero).
    public mutating func charge(user: String, pages: Int64, on today: String) {
        if today != day {
            day = today
            users = [:]
        }
        var used = users[user] ?? Use(pages: 0, jobs: 0)
        used.pages += pages
        used.jobs += 1
        users[user] = used
    }
}
