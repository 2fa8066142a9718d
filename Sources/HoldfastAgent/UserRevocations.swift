import Dispatch
public import FoundationEssentials
public import HoldfastCore
import HoldfastDBus
public import HoldfastStore
public import Lockdown

/// Offboarding on the agent (docs/offboarding.md): the broker's signed `offboard USER` is kept in
/// the journal's state before anything else happens (a restart, or a device that goes offline
/// after it, still denies the user), then the user's sessions end (logind `TerminateSession`),
/// their exceptions end and their open requests are withdrawn, and the login check denies them
/// from then on — whatever the broker or the exempt list says. `reinstate USER` lifts it.
public actor UserRevocations: DelegatedCommandHandler {
    /// One offboarded user as this agent keeps it.
    public struct Revocation: Codable, Sendable, Equatable {
        public var user: String
        /// When this agent applied it.
        public var since: Date
        public var reason: String
        /// The admin who offboarded them.
        public var by: String
        /// The broker command that carried it.
        public var seq: Int64
        /// The account's uid here when it was applied (nil: no such account on this device then).
        public var uid: UInt32?
    }

    static let stateKey = "users.revoked"
    /// Set when the list was lost (neither copy readable); kept across restarts and saves until a
    /// new enrollment starts the list over: a list rebuilt from later commands alone is not whole.
    static let lostKey = "users.revoked_lost"

    private let journal: Journal
    private let clock: any TimeSource
    private let logger: Logger
    private let record: @Sendable (Event) -> Void
    private var revoked: [String: Revocation]
    private var requests: AccessRequests?
    /// Ends the sessions of the users listed (by name, folded case, or uid) — and, when the flag
    /// says it is the offboarding itself, their user manager too (linger off, TerminateUser): how
    /// many sessions ended, and what failed (no logind, a session that would not end), if anything.
    public typealias SessionEnder = @Sendable (OffboardedUsers, Bool) async -> (ended: Int, failure: String?)
    private let endSessions: SessionEnder
    /// Whether the last attempt to end sessions failed (said once until it works again).
    private var logindDown = false
    /// Offboarded users whose user manager (linger, TerminateUser) is not known to be ended yet:
    /// logind did not answer at the offboarding. Tried again with each sweep until it does.
    private var managerPending: Set<String> = []
    /// Set when neither the journal's list nor its copy could be read at start: every login but
    /// root's is denied until the device is enrolled again (the broker then sends every
    /// offboarding in force first).
    public private(set) var unreadable: String?
    private let copyPath: String

    public init(
        journal: Journal, stateDirectory: String, clock: any TimeSource = SystemTimeSource(), logger: Logger, record: @escaping @Sendable (Event) -> Void,
        endSessions: SessionEnder? = nil
    ) {
        self.journal = journal
        self.clock = clock
        self.logger = logger
        self.record = record
        copyPath = stateDirectory + "/" + OffboardedUsers.fileName
        self.endSessions = endSessions ?? { users, ending in await Self.terminateSessions(of: users, ending: ending) }
        let copy = OffboardedUsers.load(stateDirectory: stateDirectory)
        do {
            let stored = try journal.state(Self.stateKey, as: [Revocation].self)
            if let stored {
                revoked = Dictionary(stored.map { ($0.user, $0) }, uniquingKeysWith: { first, _ in first })
            } else if case .list(let list) = copy {
                // The journal lost it, the copy has it.
                revoked = Self.restored(list, at: clock.now())
            } else {
                revoked = [:]
            }
        } catch {
            if case .list(let list) = copy {
                revoked = Self.restored(list, at: clock.now())
                record(Event(
                    kind: "user.state_unreadable", eventClass: .accountChange, activityID: 99, activityName: "Other", time: clock.now(), severity: .high,
                    status: .failure, message: "the list of offboarded users in the journal cannot be read (\(error)); its copy (\(list.entries.count) users) is in force"))
            } else {
                // Neither: fail closed. Every login but root's is denied until the device is
                // enrolled again (the broker sends every offboarding in force at enrollment).
                revoked = [:]
                let reason = "the list of offboarded users cannot be read (\(error)); every login but root's is denied until this device is enrolled again"
                do {
                    try journal.setState(Self.lostKey, Array(reason.utf8))
                } catch {
                    logger.error("the lost list's marker cannot be saved: a restart may not stay fail-closed", ("error", "\(error)"))
                }
                record(Event(
                    kind: "user.state_unreadable", eventClass: .accountChange, activityID: 99, activityName: "Other", time: clock.now(), severity: .critical,
                    status: .failure, message: reason))
            }
        }
        // A list lost before stays lost across restarts and later commands, until a new
        // enrollment: one rebuilt from later commands alone is not whole.
        if let lost = try? journal.state(Self.lostKey) { unreadable = String(decoding: lost, as: UTF8.self) }
        // The copy the login check reads says what is in force here (one deleted, or never
        // written by an older holdfastd, is written again).
        let current = Self.copyBytes(revoked, lost: unreadable)
        if (try? SecureFile.readPrivate(copyPath, owner: 0, maximumSize: 16 << 20)) != current { try? SecureFile.write(current, to: copyPath) }
    }

    /// The copy's bytes: the list, or — when it was lost — a document the login check cannot read
    /// as a list, so that it too lets only root in.
    static func copyBytes(_ revoked: [String: Revocation], lost: String?) -> [UInt8] {
        if let lost { return Array(JSONValue.object(["lost": .string(lost)]).compactText.utf8) }
        return OffboardedUsers(revoked.values.sorted { ($0.since, $0.user) < ($1.since, $1.user) }.map { OffboardedUsers.Entry(user: $0.user, uid: $0.uid) }).encoded
    }

    static func restored(_ list: OffboardedUsers, at time: Date) -> [String: Revocation] {
        Dictionary(list.entries.map { ($0.user, Revocation(user: $0.user, since: time, reason: "(restored from the copy)", by: "?", seq: 0, uid: $0.uid)) },
                   uniquingKeysWith: { first, _ in first })
    }

    /// Enrolled again (a new device id): the list starts over; the broker sends every offboarding
    /// in force before anything else.
    public func startOver() async {
        revoked = [:]
        unreadable = nil
        do {
            _ = try journal.removeState(Self.lostKey)
            try save()
        } catch {
            // In force for this run; after a restart the old list (or the lost state) comes back
            // until the broker's commands rebuild it.
            logger.error("the offboarded users could not be started over on disk", ("error", "\(error)"))
        }
        await requests?.setRevokedUsers([])
    }

    /// The list as the login check and the session sweep match it.
    var list: OffboardedUsers { OffboardedUsers(all().map { OffboardedUsers.Entry(user: $0.user, uid: $0.uid) }) }

    public func attach(requests registry: AccessRequests) async {
        requests = registry
        await registry.setRevokedUsers(Set(revoked.keys))
    }

    /// The offboarding in force for `user` — by the name as given, its case folded, or the
    /// account it resolves to here (its name or uid) — if any.
    public func revocation(_ user: String) -> Revocation? {
        list.match(user).flatMap { revoked[$0.user] }
    }

    /// Every offboarded user, oldest first (for `holdfast status`).
    public func all() -> [Revocation] { revoked.values.sorted { ($0.since, $0.user) < ($1.since, $1.user) } }

    public func handle(_ command: RemoteCommand) async -> DelegatedCommandResult {
        guard let user = command.user else { return refuse(command, "malformed", "an \(command.action.rawValue) without its user") }
        switch command.action {
        case .offboard: return await offboard(user, command)
        case .reinstate: return await reinstate(user, command)
        default: return .refused(reason: "unsupported", message: "not an offboarding command")
        }
    }

    private func offboard(_ user: String, _ command: RemoteCommand) async -> DelegatedCommandResult {
        guard !OffboardedUsers.isRoot(user) else {
            return refuse(command, "untouchable", "\(user) is not offboarded on a device: root on the console stays the way in")
        }
        // No expiry check: an offboarding only takes away, and a device that was away longer than
        // the command's life must still apply it.
        // One entry per person whatever the case the command writes it in.
        let user = revoked.keys.first { $0.lowercased() == user.lowercased() } ?? user
        let entry = revoked[user] ?? Revocation(
            user: user, since: clock.now(), reason: command.reason, by: command.admin, seq: command.sequence, uid: OffboardedUsers.account(user)?.uid)
        revoked[user] = entry
        await requests?.setRevokedUsers(Set(revoked.keys))
        let saved: Bool
        do {
            try save()
            saved = true
        } catch {
            // In force for this run (kept in memory); not acknowledged: the command comes again.
            saved = false
            record(Event(
                kind: "user.save_failed", eventClass: .accountChange, activityID: 99, activityName: "Other", time: clock.now(), severity: .critical, status: .failure,
                message: "the offboarding of \(user) could not be saved (\(error)): it holds for this run; the command comes again",
                actor: Actor(user: .init(uid: nil, name: user)), details: ["user": .string(user), "seq": .int(command.sequence), "error": .string("\(error)")]))
        }
        let ended = await requests?.revokeAll(user: user, by: command.admin, reason: command.reason) ?? (exceptions: 0, requests: 0, saved: true)
        let sessions = await endSessions(OffboardedUsers([OffboardedUsers.Entry(user: user, uid: entry.uid)]), true)
        if sessions.failure != nil { managerPending.insert(user) } else { managerPending.remove(user) }
        let sessionText: String
        var details: [String: JSONValue] = [
            "user": .string(user), "by": .string(command.admin), "reason": .string(command.reason), "seq": .int(command.sequence),
            "exceptions_ended": .int(Int64(ended.exceptions)), "requests_withdrawn": .int(Int64(ended.requests)),
        ]
        sessionText = "\(sessions.ended) session\(sessions.ended == 1 ? "" : "s") ended" + (sessions.failure.map { " (not all: \($0))" } ?? "")
        details["sessions_ended"] = .int(Int64(sessions.ended))
        if let failure = sessions.failure { details["sessions_error"] = .string(failure) }
        let summary = "\(sessionText), \(ended.exceptions) exception\(ended.exceptions == 1 ? "" : "s") ended, \(ended.requests) request\(ended.requests == 1 ? "" : "s") withdrawn"
        record(Event(
            kind: "user.revoked", eventClass: .accountChange, activityID: 5, activityName: "Disable", time: clock.now(), severity: .high, status: .success,
            message: "\(user) was offboarded by \(command.admin) (broker command \(command.sequence)): \(command.reason); the login check denies them here; \(summary)",
            actor: Actor(user: .init(uid: nil, name: user)), details: details))
        guard saved, ended.saved else { return .storage("the offboarding of \(user) could not be saved") }
        return .applied("\(user) revoked here: \(summary)")
    }

    private func reinstate(_ user: String, _ command: RemoteCommand) async -> DelegatedCommandResult {
        // No expiry check either: commands apply in the broker's order, so a reinstatement that
        // arrives late is still the latest word on this user (a later offboarding comes after it).
        // Whatever the case either command wrote the name in.
        let keys = revoked.keys.filter { $0.lowercased() == user.lowercased() }
        guard let previous = keys.first.flatMap({ revoked[$0] }) else {
            return .applied("\(user) was not offboarded here")
        }
        let removed = keys.compactMap { key in revoked.removeValue(forKey: key).map { (key, $0) } }
        do {
            try save()
        } catch {
            for (key, revocation) in removed { revoked[key] = revocation }
            return .storage("the reinstatement of \(user) could not be saved (\(error)); \(user) stays offboarded")
        }
        await requests?.setRevokedUsers(Set(revoked.keys))
        record(Event(
            kind: "user.reinstated", eventClass: .accountChange, activityID: 2, activityName: "Enable", time: clock.now(), severity: .medium, status: .success,
            message: "\(user) was reinstated by \(command.admin) (broker command \(command.sequence)): \(command.reason); offboarded since \(previous.since.formatted(.iso8601)) by \(previous.by)",
            actor: Actor(user: .init(uid: nil, name: user)),
            details: ["user": .string(user), "by": .string(command.admin), "reason": .string(command.reason), "seq": .int(command.sequence), "offboarded_by": .string(previous.by)]))
        return .applied("\(user) reinstated here")
    }

    /// Ends again any session an offboarded user still has (one logind could not end, or one
    /// opened while logind was away): one ListSessions for all of them. Called every 10 s; quiet
    /// when there is no one.
    public func reassert() async {
        guard !revoked.isEmpty else { return }
        managerPending.formIntersection(revoked.keys)
        if !managerPending.isEmpty {
            // The offboarding's own ending again (linger off, TerminateUser) for those logind
            // did not answer for then.
            let pending = OffboardedUsers(list.entries.filter { managerPending.contains($0.user) })
            if await endSessions(pending, true).failure == nil { managerPending.subtract(pending.entries.map(\.user)) }
        }
        let outcome = await endSessions(list, false)
        if outcome.ended > 0 { logger.notice("offboarding: ended sessions offboarded users still had", ("sessions", "\(outcome.ended)")) }
        if let failure = outcome.failure {
            if !logindDown { logger.warning("offboarding: sessions of offboarded users could not all be ended", ("error", failure)) }
            logindDown = true
        } else {
            logindDown = false
        }
    }

    private func refuse(_ command: RemoteCommand, _ reason: String, _ message: String) -> DelegatedCommandResult {
        record(Event(
            kind: "user.command_refused", eventClass: .accountChange, activityID: 99, activityName: "Refuse", time: clock.now(), severity: .high, status: .failure,
            message: "an offboarding command was refused (\(reason)): \(message)",
            details: ["reason": .string(reason), "detail": .string(message), "seq": .int(command.sequence), "by": .string(command.admin), "user": .string(command.user ?? "")]))
        return .refused(reason: reason, message: message)
    }

    /// The journal's state, and the copy the login check reads when holdfastd does not answer.
    private func save() throws(StoreError) {
        try journal.setState(Self.stateKey, encoding: all())
        do {
            try SecureFile.write(Self.copyBytes(revoked, lost: unreadable), to: copyPath)
        } catch {
            throw StoreError(.sqlite, "the copy of the offboarded users cannot be written: \(error)")
        }
    }

    /// Every logind session of the users listed ended (by name, folded case, or uid): how many.
    /// A session that will not end is said, the others are still ended.
    /// `ending`: at the offboarding itself, also linger off and TerminateUser for each account.
    static func terminateSessions(of users: OffboardedUsers, ending: Bool = false) async -> (ended: Int, failure: String?) {
        await SessionLockdown.offThread { () -> (ended: Int, failure: String?) in
            do {
                let bus = try DBusConnection.system()
                var count = 0
                var failures: [String] = []
                let uids = Set(users.entries.compactMap(\.uid).filter { $0 != 0 })
                var seen = uids
                for session in try Logind.sessions(bus) where session.uid != 0 && (uids.contains(session.uid) || users.match(session.user) != nil) {
                    seen.insert(session.uid)
                    do {
                        try Logind.terminate(bus, session: session.id)
                        count += 1
                    } catch {
                        failures.append("session \(session.id): \(error)")
                    }
                }
                if ending {
                    // What runs outside the sessions too: the user's manager (lingering services
                    // and timers). Best effort: a user logind does not know, or a logind without
                    // these methods, leaves only the sessions to end.
                    for uid in seen {
                        try? Logind.disableLinger(bus, uid: uid)
                        try? Logind.terminateUser(bus, uid: uid)
                    }
                }
                return (count, failures.isEmpty ? nil : "could not end " + failures.joined(separator: "; "))
            } catch {
                return (0, "logind does not answer on the system bus (\(error))")
            }
        }
    }
}
