public import HoldfastCore

/// What the `holdfast:` backend tells holdfastd about a job before it may print (`print.gate`).
public struct GateRequest: Sendable, Equatable {
    public let job: Int64
    public let user: String
    public let title: String
    public let copies: Int64
    /// The CUPS queue (`PRINTER`).
    public let queue: String
    /// The real device URI, after `holdfast:`.
    public let deviceURI: String
    public let contentType: String
    /// Pages in one copy; nil when the document's pages cannot be counted.
    public let pages: Int64?
    /// The format the page counter recognised, and why it could not count.
    public let format: String
    public let pageNote: String?
    /// The pages are only what the document declares (PostScript DSC, a URF header).
    public let pagesDeclared: Bool
    public let bytes: Int64

    public init(
        job: Int64, user: String, title: String, copies: Int64, queue: String, deviceURI: String, contentType: String,
        pages: Int64?, format: String, pageNote: String?, pagesDeclared: Bool = false, bytes: Int64
    ) {
        self.job = job
        self.user = user
        self.title = title
        self.copies = copies
        self.queue = queue
        self.deviceURI = deviceURI
        self.contentType = contentType
        self.pages = pages
        self.format = format
        self.pageNote = pageNote
        self.pagesDeclared = pagesDeclared
        self.bytes = bytes
    }

    /// The control-protocol arguments (the backend's side).
    public var arguments: [String: JSONValue] {
        var arguments: [String: JSONValue] = [
            "job": .int(job), "user": .string(user), "title": .string(title), "copies": .int(copies), "queue": .string(queue),
            "device_uri": .string(deviceURI), "content_type": .string(contentType), "format": .string(format), "bytes": .int(bytes),
        ]
        arguments["pages"] = pages.map(JSONValue.int) ?? .null
        if pagesDeclared { arguments["pages_declared"] = true }
        if let pageNote { arguments["page_note"] = .string(pageNote) }
        return arguments
    }

    /// Parses the arguments (holdfastd's side); nil names what is missing or bad.
    public init?(arguments: [String: JSONValue]) {
        guard let job = arguments["job"]?.intValue, let user = arguments["user"]?.stringValue, !user.isEmpty,
            let queue = arguments["queue"]?.stringValue, !queue.isEmpty, let uri = arguments["device_uri"]?.stringValue,
            let copies = arguments["copies"]?.intValue, (1...10_000).contains(copies), let bytes = arguments["bytes"]?.intValue, bytes >= 0
        else { return nil }
        let pages: Int64?
        switch arguments["pages"] {
        case .int(let count)? where count >= 0: pages = count
        case .null?, nil: pages = nil
        default: return nil
        }
        self.init(
            job: job, user: user, title: arguments["title"]?.stringValue ?? "", copies: copies, queue: queue, deviceURI: uri,
            contentType: arguments["content_type"]?.stringValue ?? "", pages: pages,
            format: arguments["format"]?.stringValue ?? "", pageNote: arguments["page_note"]?.stringValue,
            pagesDeclared: arguments["pages_declared"]?.boolValue ?? false, bytes: bytes
        )
    }
}

/// The gate's answer.
public struct GateVerdict: Sendable, Equatable {
    public let allowed: Bool
    public let reason: String
    /// Pages charged to the user's quota (copies included) when allowed.
    public let chargedPages: Int64
    /// The approving rule.
    public let rule: String?
    /// The exception the pages are charged to (its id) instead of the user's daily quota.
    public let exception: String?

    public init(allowed: Bool, reason: String, chargedPages: Int64, rule: String?, exception: String? = nil) {
        self.allowed = allowed
        self.reason = reason
        self.chargedPages = chargedPages
        self.rule = rule
        self.exception = exception
    }
}

/// The decision for one job, in order: lockdown, approval, user, countable pages, quota. An
/// active exception for the user on the queue (`exceptions`: the caller passes those in force)
/// takes the pages the daily quota cannot; it never admits a user the rule does not name.
public enum PrintGate {
    public static func decide(
        _ request: GateRequest, policy: PrintPolicy, ledger: QuotaLedger, today: String, lockdown: String?,
        exceptions: [PrintException] = [], isMember: (String, String) -> Bool
    ) -> GateVerdict {
        let covering = exceptions.filter { $0.covers(user: request.user, queue: request.queue) }
        if let lockdown {
            return GateVerdict(allowed: false, reason: "printing is locked down: \(lockdown)", chargedPages: 0, rule: nil)
        }
        let approval = policy.approval(name: request.queue, realURI: request.deviceURI)
        guard approval.approved, let rule = approval.rule else {
            return GateVerdict(allowed: false, reason: "queue not approved: \(approval.reason)", chargedPages: 0, rule: nil)
        }
        var named = true
        if !rule.users.isEmpty {
            named = rule.users.contains { entry in
                entry.hasPrefix("@") ? isMember(request.user, String(entry.dropFirst())) : entry == request.user
            }
            guard named else {
                return GateVerdict(
                    allowed: false, reason: "user \(Printable.escape(request.user)) may not print to this printer (rule \(rule.id))",
                    chargedPages: 0, rule: rule.id
                )
            }
        }
        var pages: Int64
        if let counted = request.pages, !request.pagesDeclared || policy.quota.trustDeclaredPages {
            pages = counted
        } else if policy.quota.pagesPerDay == nil {
            pages = 0
        } else if let charge = policy.quota.unknownPageCharge {
            pages = charge
        } else {
            return GateVerdict(
                allowed: false,
                reason: request.pagesDeclared && request.pages != nil
                    ? "the document only declares its pages (\(request.format)) and a page quota is set; the policy does not believe declarations"
                    : "pages cannot be counted (\(request.pageNote ?? request.format)) and a page quota is set; the policy refuses such documents",
                chargedPages: 0, rule: rule.id
            )
        }
        pages = pages.multipliedReportingOverflow(by: request.copies).overflow ? Int64.max / 2 : pages * request.copies
        // The daily quota first; an exception with room takes what it cannot.
        guard let refusal = ledger.refusal(user: request.user, pages: pages, quota: policy.quota, on: today) else {
            return GateVerdict(allowed: true, reason: approval.reason, chargedPages: pages, rule: rule.id)
        }
        guard let exception = covering.first(where: { $0.remaining >= pages }) ?? covering.first else {
            return GateVerdict(allowed: false, reason: refusal, chargedPages: 0, rule: rule.id)
        }
        guard pages <= exception.remaining else {
            return GateVerdict(
                allowed: false, reason: "\(refusal); exception #\(exception.number) has \(exception.remaining) of \(exception.pages) pages left and this job has \(pages)",
                chargedPages: 0, rule: rule.id)
        }
        return GateVerdict(
            allowed: true, reason: "\(approval.reason); charged to exception #\(exception.number) (\(exception.remaining - pages) of \(exception.pages) pages left after it)",
            chargedPages: pages, rule: rule.id, exception: exception.id)
    }
}
