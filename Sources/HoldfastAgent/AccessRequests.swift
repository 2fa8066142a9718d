import DeviceGuard
import PrintGuard
public import FoundationEssentials
public import HoldfastCore
import HoldfastCrypto
public import HoldfastStore
public import Lockdown

/// Just-in-time exceptions on the agent (docs/exceptions.md): users' requests kept in the
/// journal's state until the broker has them, and the broker's signed decisions applied — an
/// approval through DeviceGuard or PrintGuard until its absolute end, a denial or a revocation
/// recorded. Every step is an event naming the requester, the approver and their reasons.
public actor AccessRequests: DelegatedCommandHandler {
    /// One request as this agent keeps it.
    public struct Record: Codable, Sendable, Equatable {
        public var id: String
        public var match: ExceptionMatch
        /// What the user named (`1-2: SanDisk Cruzer …`, a queue), for people.
        public var label: String
        public var uid: Int64
        public var user: String
        public var seconds: Int64
        public var reason: String
        public var created: Date
        /// `queued` (not at the broker yet), `pending`, `approved`, `denied`, `revoked`,
        /// `refused` (by the broker or by this agent).
        public var status: String
        /// The broker's number for it.
        public var number: Int64?
        public var until: Date?
        public var decidedBy: String?
        public var note: String?
        public var decidedAt: Date?
        /// `request.expired` was journaled for it.
        public var endSaid: Bool?
    }

    static let stateKey = "requests"
    /// Requests kept once decided (the newest); open ones are always kept.
    static let keptDecided = 200
    /// Open requests one user may have: a user (or a script of theirs) cannot flood the approvers.
    static let openPerUser = 5
    /// A request unanswered this long no longer counts against that limit (the broker does not
    /// approve one older than 7 days).
    static let openWindow: TimeInterval = 8 * 86_400

    private let journal: Journal
    private let clock: any TimeSource
    private let logger: Logger
    private let record: @Sendable (Event) -> Void
    private var records: [Record]
    private var usb: USBService?
    private var print: PrintService?
    /// Told when a request waits to be sent.
    private var onQueued: (@Sendable () -> Void)?
    /// Users offboarded on this device (`UserRevocations` keeps it): they may not ask, and no
    /// approval for them is applied.
    private var revokedUsers: Set<String> = []

    public init(journal: Journal, clock: any TimeSource = SystemTimeSource(), logger: Logger, record: @escaping @Sendable (Event) -> Void) {
        self.journal = journal
        self.clock = clock
        self.logger = logger
        self.record = record
        do {
            records = try journal.state(Self.stateKey, as: [Record].self) ?? []
        } catch {
            // Unreadable: the requests are forgotten (nothing is granted by forgetting one; an
            // approval still applies, it is self-contained), and that is said.
            records = []
            record(Event(
                kind: "request.state_unreadable", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Other", time: clock.now(), severity: .high,
                status: .failure, message: "the stored exception requests cannot be read (\(error)); requests not yet sent to the broker are lost; the users ask again"))
        }
    }

    public func attach(usb: USBService) { self.usb = usb }
    public func attach(print: PrintService) { self.print = print }
    public func onQueued(_ body: @escaping @Sendable () -> Void) { onQueued = body }
    public func setRevokedUsers(_ users: Set<String>) { revokedUsers = users }

    // MARK: Asking

    /// Why a request was refused on the device (never sent).
    public struct Refusal: Error, Sendable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// `holdfast request usb|print …` from a local user (`uid`, `user` from `SO_PEERCRED`): checked,
    /// kept, journaled, and queued for the broker.
    public func submit(kind: ExceptionKind, target: String, pages: Int64?, seconds: Int64, reason rawReason: String, uid: Int64, user: String) async throws(Refusal) -> Record {
        let reason = rawReason.trimmingSpaces
        guard RemoteCommand.isWords(reason, maximumBytes: AccessRequestSubmission.maximumReasonBytes) else {
            throw Refusal(message: "say why (--reason): 1 to \(AccessRequestSubmission.maximumReasonBytes) bytes without control characters; the approver reads it")
        }
        guard (1...AccessRequestSubmission.maximumSeconds).contains(seconds) else {
            throw Refusal(message: "--for is from 1s to \(DurationText.text(AccessRequestSubmission.maximumSeconds)); every exception ends")
        }
        guard LoginName.isValid(user) else { throw Refusal(message: "uid \(uid) has no login name this agent can send") }
        guard !revokedUsers.contains(user) else { throw Refusal(message: "\(user)'s access was revoked on this device (offboarded); there is nothing to ask for") }
        let now = clock.now()
        let open = records.filter { $0.uid == uid && ["queued", "pending"].contains($0.status) && now.timeIntervalSince($0.created) < Self.openWindow }
        guard open.count < Self.openPerUser else {
            throw Refusal(message: "you have \(open.count) requests waiting for a decision (holdfast requests); no more until some are decided")
        }
        let match: ExceptionMatch
        let label: String
        switch kind {
        case .usb:
            guard let usb else { throw Refusal(message: "USB enforcement is not running on this agent; there is nothing to ask an exception from") }
            if let model = USBExceptionTarget(target), case .model(let vendor, let product, let serial) = model {
                if let serial, !ExceptionMatch.isSerial(serial) { throw Refusal(message: "that serial cannot be sent (at most 128 bytes, no control characters)") }
                match = .usb(vendor: vendor, product: product, serial: serial, hash: nil)
                label = target
            } else if USBExceptionTarget(target) != nil {
                do {
                    (match, label) = try await usb.identify(target)
                } catch {
                    throw Refusal(message: error.message)
                }
            } else {
                throw Refusal(message: "--device is a bus path such as 1-2 (holdfast usb devices lists them) or vid:pid[:serial]")
            }
        case .print:
            guard let print else { throw Refusal(message: "print enforcement is not running on this agent; there is nothing to ask an exception from") }
            guard ExceptionMatch.isQueueName(target) else { throw Refusal(message: "--queue is a CUPS queue name (holdfast print status lists them)") }
            guard let pages, (1...ExceptionMatch.maximumPages).contains(pages) else { throw Refusal(message: "--pages is a whole number from 1 to \(ExceptionMatch.maximumPages)") }
            switch await print.queueApproval(target, user: user) {
            case nil:
                throw Refusal(message: "there is no print queue \(Printable.escape(target)) (holdfast print status lists them)")
            case let found? where !found.approval.approved:
                throw Refusal(message: "queue \(Printable.escape(target)) is not an approved printer (\(found.approval.reason)); an exception cannot open it: ask for the printer to be approved")
            case let found? where !found.admits:
                throw Refusal(message: "the policy does not let \(user) print to \(Printable.escape(target)) (rule \(found.approval.rule?.id ?? "?")); an exception adds pages, it cannot change who may print there")
            default:
                break
            }
            match = .print(queue: target, pages: pages)
            label = target
        }
        // Counted again after the waits above: parallel asks cannot pass the limit together.
        let stillOpen = records.filter { $0.uid == uid && ["queued", "pending"].contains($0.status) && now.timeIntervalSince($0.created) < Self.openWindow }
        guard stillOpen.count < Self.openPerUser else {
            throw Refusal(message: "you have \(stillOpen.count) requests waiting for a decision (holdfast requests); no more until some are decided")
        }
        let id = "rq-" + ((try? SecureRandom.bytes(8)).map(Hex.encode) ?? String(UInt64.random(in: .min ... .max), radix: 16))
        let entry = Record(id: id, match: match, label: label, uid: uid, user: user, seconds: seconds, reason: reason, created: now, status: "queued")
        var next = records
        next.append(entry)
        do {
            try save(next)
        } catch {
            throw Refusal(message: "the request cannot be kept (\(error)); try again")
        }
        record(event("request.submitted", 1, "Create", .informational, .success,
                     "\(user) (uid \(uid)) asks for \(match.summary) for \(DurationText.text(seconds)): \(reason)", entry))
        onQueued?()
        return entry
    }

    // MARK: The broker link's side

    /// Requests not yet at the broker, oldest first.
    public func unsent() -> [AccessRequestSubmission] {
        let now = clock.now()
        // One the broker could no longer approve is not sent.
        return records.filter { $0.status == "queued" && now.timeIntervalSince($0.created) < Self.openWindow - 86_400 }.map {
            AccessRequestSubmission(
                id: $0.id, match: $0.match, user: $0.user, uid: $0.uid, seconds: $0.seconds, reason: $0.reason, created: Int64($0.created.timeIntervalSince1970),
                label: Self.sawDevice($0.match) ? AccessRequestSubmission.sendableLabel($0.label) : nil)
        }
    }

    /// Whether the request names a device the agent looked at (a bus path: its descriptors'
    /// digest is in the match); only then is there something it saw to tell the approver.
    static func sawDevice(_ match: ExceptionMatch) -> Bool {
        if case .usb(_, _, _, let hash) = match { return hash != nil }
        return false
    }

    /// The broker has it, as `number`.
    public func sent(_ id: String, number: Int64) {
        update(id) { entry in
            guard entry.status == "queued" else { return false }
            entry.status = "pending"
            entry.number = number
            return true
        } then: { entry in
            record(event("request.sent", 1, "Create", .informational, .success, "request #\(number) (\(entry.match.summary) for \(entry.user)) is with the broker, waiting for an approver", entry))
        }
    }

    /// The broker refused it for good (it will not take it as it is).
    public func refusedByBroker(_ id: String, why: String) {
        update(id) { entry in
            guard entry.status == "queued" else { return false }
            entry.status = "refused"
            entry.note = "the broker refused it: \(why)"
            return true
        } then: { entry in
            record(event("request.refused", 99, "Refuse", .medium, .failure, "the broker refused the request of \(entry.user) for \(entry.match.summary): \(why)", entry))
        }
    }

    // MARK: Decisions (broker commands)

    public func handle(_ command: RemoteCommand) async -> DelegatedCommandResult {
        switch command.action {
        case .grant:
            guard let granted = command.exception else { return refuse(command, nil, "malformed", "a grant without its exception") }
            return await grant(granted, command)
        case .deny, .revoke:
            guard let reference = command.request else { return refuse(command, nil, "malformed", "a \(command.action.rawValue) without its request") }
            return await end(reference, command)
        case .lockdown, .release, .offboard, .reinstate:
            return .refused(reason: "unsupported", message: "not an exception command")
        }
    }

    private func grant(_ granted: GrantedException, _ command: RemoteCommand) async -> DelegatedCommandResult {
        let now = clock.now()
        // The end is the broker's, but never later than the approved span from now on this
        // clock: a clock behind the broker's neither revives an ended approval nor stretches one.
        let span = max(0, granted.until - command.issuedAt)
        let until = Date(timeIntervalSince1970: Double(min(granted.until, Int64(now.timeIntervalSince1970) + span)))
        let local = records.first { $0.id == granted.request }
        if let local, ["denied", "revoked", "refused"].contains(local.status) {
            // A grant seen again (a replay after lost state) never revives what was ended.
            return refuse(command, nil, "ended", "request #\(granted.number) is \(local.status) here; a grant for it is not applied again")
        }
        guard until > now, Int64(now.timeIntervalSince1970) < command.expiresAt else {
            return refuse(command, local, "expired", "approval #\(granted.number) ended at \(until.formatted(.iso8601)) before it arrived; nothing was applied")
        }
        guard Int64(until.timeIntervalSince(now)) <= AccessRequestSubmission.maximumSeconds + 300 else {
            return refuse(command, local, "too-long", "approval #\(granted.number) would last past \(DurationText.text(AccessRequestSubmission.maximumSeconds)) from now")
        }
        if revokedUsers.contains(granted.user) {
            return refuse(command, local, "user-revoked", "approval #\(granted.number) is for \(granted.user), whose access was revoked on this device (offboarded); nothing was applied")
        }
        if let local, local.match != granted.match || local.uid != granted.uid || local.user != granted.user {
            return refuse(command, local, "mismatch", "approval #\(granted.number) is not for what \(local.user) asked (\(local.match.summary)); nothing was applied")
        }
        let grantedBy = "\(command.admin) (broker, request #\(granted.number))"
        let reason = "asked by \(granted.user): \(granted.asked); approved by \(command.admin): \(command.reason)"
        switch granted.match {
        case .usb:
            guard let usb else { return refuse(command, local, "unavailable", "USB enforcement does not run on this agent") }
            do {
                _ = try await usb.allowApproved(id: granted.request, match: granted.match, until: until, reason: reason, grantedBy: grantedBy)
            } catch {
                return refuse(command, local, "refused", error.message)
            }
        case .print(let queue, let pages):
            guard let print else { return refuse(command, local, "unavailable", "print enforcement does not run on this agent") }
            do {
                try await print.addException(PrintException(
                    id: granted.request, number: granted.number, user: granted.user, queue: queue, pages: pages, created: now, until: until, reason: reason, grantedBy: grantedBy))
            } catch {
                // Not applying an exception is the safe side: refused for good (the broker shows
                // it not applied), so the commands after it are not held back.
                return refuse(command, local, "unsaved", "the print exception cannot be saved (\(error)); nothing was applied")
            }
        }
        var entry = local ?? Record(
            id: granted.request, match: granted.match, label: granted.match.summary, uid: granted.uid, user: granted.user, seconds: granted.until - command.issuedAt,
            reason: granted.asked, created: now, status: "pending")
        entry.status = "approved"
        entry.number = granted.number
        entry.until = until
        entry.decidedBy = command.admin
        entry.note = command.reason
        entry.decidedAt = now
        entry.endSaid = nil
        keep(entry)
        record(event("request.approved", 1, "Create", .medium, .success,
                     "request #\(granted.number) of \(granted.user) approved by \(command.admin) until \(until.formatted(.iso8601)): \(granted.match.summary) (asked: \(granted.asked); approver: \(command.reason))",
                     entry))
        return .applied("exception #\(granted.number) in force until \(until.formatted(.iso8601))")
    }

    private func end(_ reference: RequestReference, _ command: RemoteCommand) async -> DelegatedCommandResult {
        let now = clock.now()
        let denied = command.action == .deny
        var entry = records.first { $0.id == reference.request }
        if !denied {
            // What the approval put in force ends now, whichever enforcer holds it; an ending that
            // cannot be saved is not acknowledged (the command comes again).
            let who = "\(command.admin) (broker, request #\(reference.number)): \(command.reason)"
            let usbSaved = await usb?.endApproved(reference.request, by: who) ?? true
            let printSaved = await print?.endException(reference.request, why: "revoked by \(who)") ?? true
            guard usbSaved, printSaved else {
                record(Event(
                    kind: "exception.save_failed", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Other", time: now, severity: .critical, status: .failure,
                    message: "exception #\(reference.number) was ended by \(command.admin) but the end could not be saved: it is ended for this run; the command comes again",
                    details: ["request": .string(reference.request), "number": .int(reference.number), "approver": .string(command.admin), "note": .string(command.reason)]))
                return .storage("the end of exception #\(reference.number) could not be saved")
            }
        }
        if var found = entry {
            found.status = denied ? "denied" : "revoked"
            found.number = reference.number
            found.decidedBy = command.admin
            found.note = command.reason
            found.decidedAt = now
            if !denied { found.until = min(found.until ?? now, now) }
            keep(found)
            entry = found
        }
        let who = entry.map { " of \($0.user)" } ?? ""
        let message = denied
            ? "request #\(reference.number)\(who) denied by \(command.admin): \(command.reason)"
            : "the exception of request #\(reference.number)\(who) was revoked by \(command.admin): \(command.reason)"
        if let entry {
            record(event(denied ? "request.denied" : "request.revoked", denied ? 99 : 3, denied ? "Refuse" : "Delete", .medium, .success, message, entry))
        } else {
            record(Event(
                kind: denied ? "request.denied" : "request.revoked", eventClass: .deviceConfigStateChange, activityID: denied ? 99 : 3, activityName: denied ? "Refuse" : "Delete",
                time: now, severity: .medium, status: .success, message: message + " (a request this agent no longer keeps)",
                details: ["request": .string(reference.request), "number": .int(reference.number), "approver": .string(command.admin), "note": .string(command.reason)]))
        }
        return .applied(denied ? "request #\(reference.number) denied" : "exception #\(reference.number) ended")
    }

    /// Offboarding: every exception of `user` in force ends now, and every request of theirs
    /// still open is withdrawn (never sent, never applied). Returns how many of each, and
    /// whether every end was saved (an end not saved holds for this run; the command comes again).
    public func revokeAll(user: String, by admin: String, reason: String) async -> (exceptions: Int, requests: Int, saved: Bool) {
        let now = clock.now()
        var exceptions = 0
        var withdrawn = 0
        var saved = true
        for var entry in records where entry.user == user {
            let shown = Self.shownStatus(entry, now: now)
            guard ["queued", "pending", "approved"].contains(shown) else { continue }
            let who = "\(admin) (broker, offboarding \(user)): \(reason)"
            if shown == "approved" {
                let usbSaved = await usb?.endApproved(entry.id, by: who) ?? true
                let printSaved = await print?.endException(entry.id, why: "revoked by \(who)") ?? true
                saved = saved && usbSaved && printSaved
                exceptions += 1
                entry.until = min(entry.until ?? now, now)
            } else {
                withdrawn += 1
            }
            entry.status = "revoked"
            entry.decidedBy = admin
            entry.note = "offboarded: \(reason)"
            entry.decidedAt = now
            keep(entry)
            let number = entry.number.map { "#\($0)" } ?? "(not sent)"
            record(event("request.revoked", 3, "Delete", .medium, .success,
                         shown == "approved"
                             ? "the exception of request \(number) of \(user) (\(entry.match.summary)) was revoked: \(user) was offboarded by \(admin): \(reason)"
                             : "request \(number) of \(user) (\(entry.match.summary)) was withdrawn: \(user) was offboarded by \(admin): \(reason)",
                         entry))
        }
        return (exceptions, withdrawn, saved)
    }

    private func refuse(_ command: RemoteCommand, _ local: Record?, _ reason: String, _ message: String) -> DelegatedCommandResult {
        var details: [String: JSONValue] = ["reason": .string(reason), "detail": .string(message), "seq": .int(command.sequence), "approver": .string(command.admin)]
        if let granted = command.exception {
            details["request"] = .string(granted.request)
            details["number"] = .int(granted.number)
            details["requester"] = .string(granted.user)
            details["match"] = .string(granted.match.summary)
        }
        if var local {
            local.status = "refused"
            local.note = message
            keep(local)
        }
        record(Event(
            kind: "exception.refused", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Refuse", time: clock.now(), severity: .high, status: .failure,
            message: "an approved exception was not applied (\(reason)): \(message)", details: details))
        return .refused(reason: reason, message: message)
    }

    // MARK: Time

    /// Says once that an approved exception's time ran out (its enforcer ended it at that moment;
    /// print exceptions are cleared here too). Called every few seconds.
    public func sweep() async {
        await print?.expireExceptions()
        let now = clock.now()
        for var entry in records where entry.status == "approved" && (entry.until ?? now) <= now && entry.endSaid != true {
            entry.endSaid = true
            keep(entry)
            record(event("request.expired", 3, "Delete", .informational, .success,
                         "the exception of request #\(entry.number ?? 0) (\(entry.match.summary) for \(entry.user), approved by \(entry.decidedBy ?? "?")) ended at \(entry.until?.formatted(.iso8601) ?? "?")",
                         entry))
        }
    }

    // MARK: Showing

    /// The state a person reads: `expired` for an approval past its end, `lapsed` for a request
    /// no approver answered while it could still be approved.
    static func shownStatus(_ entry: Record, now: Date) -> String {
        if entry.status == "approved", let until = entry.until, until <= now { return "expired" }
        if ["queued", "pending"].contains(entry.status), now.timeIntervalSince(entry.created) >= openWindow { return "lapsed" }
        return entry.status
    }

    /// For `holdfast status` (anyone may read it): how many requests wait, and the exceptions in
    /// force with their kind, number and end — not who asked or why (`holdfast requests` shows
    /// a user their own).
    public func summary() -> JSONValue {
        let now = clock.now()
        let waiting = records.filter { ["queued", "pending"].contains(Self.shownStatus($0, now: now)) }.count
        let inForce = records.filter { Self.shownStatus($0, now: now) == "approved" }.map { entry -> JSONValue in
            .object(["number": .int(entry.number ?? 0), "kind": .string(entry.match.kind.rawValue), "until": .string(entry.until?.formatted(.iso8601) ?? "?")])
        }
        return .object(["waiting": .int(Int64(waiting)), "in_force": .array(inForce)])
    }

    /// `holdfast requests`: the caller's requests (every request for root), newest first.
    public func list(uid: Int64?) -> JSONValue {
        let now = clock.now()
        let shown = records.filter { uid == nil || $0.uid == uid }.sorted { $0.created > $1.created }
        return .object(["requests": .array(shown.map { entry in
            var object = Self.details(entry)
            object["status"] = .string(Self.shownStatus(entry, now: now))
            return .object(object)
        })])
    }

    static func details(_ entry: Record) -> [String: JSONValue] {
        var object: [String: JSONValue] = [
            "request": .string(entry.id), "kind": .string(entry.match.kind.rawValue), "match": .object(entry.match.members), "summary": .string(entry.match.summary),
            "label": .string(entry.label), "requester": .string(entry.user), "uid": .int(entry.uid), "seconds": .int(entry.seconds), "reason": .string(entry.reason),
            "created": .string(entry.created.formatted(.iso8601)), "status": .string(entry.status),
        ]
        if let number = entry.number { object["number"] = .int(number) }
        if let until = entry.until { object["until"] = .string(until.formatted(.iso8601)) }
        if let by = entry.decidedBy { object["approver"] = .string(by) }
        if let note = entry.note { object["note"] = .string(note) }
        if let at = entry.decidedAt { object["decided_at"] = .string(at.formatted(.iso8601)) }
        return object
    }

    // MARK: Keeping

    private func event(_ kind: String, _ activity: Int, _ name: String, _ severity: Severity, _ status: Status, _ message: String, _ entry: Record) -> Event {
        Event(
            kind: kind, eventClass: .deviceConfigStateChange, activityID: activity, activityName: name, time: clock.now(), severity: severity, status: status,
            message: message, actor: Actor(user: .init(uid: String(entry.uid), name: entry.user)), details: Self.details(entry))
    }

    private func update(_ id: String, _ change: (inout Record) -> Bool, then after: (Record) -> Void) {
        guard let index = records.firstIndex(where: { $0.id == id }) else { return }
        var entry = records[index]
        guard change(&entry) else { return }
        keep(entry)
        after(entry)
    }

    /// Replaces (or adds) a record and saves; a failed save is logged (the decision is in force
    /// either way; what `holdfast requests` shows after a restart may lag).
    private func keep(_ entry: Record) {
        var next = records.filter { $0.id != entry.id }
        next.append(entry)
        do {
            try save(next)
        } catch {
            records = next
            logger.error("could not save the exception requests", ("error", "\(error)"))
        }
    }

    private func save(_ next: [Record]) throws(StoreError) {
        // Open ones and exceptions in force always; of the rest, the newest.
        let now = clock.now()
        let isOpen: (Record) -> Bool = { ["queued", "pending", "approved"].contains(Self.shownStatus($0, now: now)) }
        let open = next.filter(isOpen)
        let decided = next.filter { !isOpen($0) }.sorted { $0.created > $1.created }.prefix(Self.keptDecided)
        let kept = (open + decided).sorted { $0.created < $1.created }
        try journal.setState(Self.stateKey, encoding: kept)
        records = kept
    }
}
