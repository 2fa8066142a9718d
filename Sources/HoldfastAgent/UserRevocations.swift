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
    }

    static let stateKey = "users.revoked"
    /// Never offboarded here: root on the console is the way in when everything else is refused.
    static let untouchable: Set<String> = ["root"]

    private let journal: Journal
    private let clock: any TimeSource
    private let logger: Logger
    private let record: @Sendable (Event) -> Void
    private var revoked: [String: Revocation]
    private var requests: AccessRequests?
    /// Ends a user's sessions: how many ended, and what failed (no logind, a session that would
    /// not end), if anything.
    public typealias SessionEnder = @Sendable (String) async -> (ended: Int, failure: String?)
    private let endSessions: SessionEnder
    /// Whether the last attempt to reach logind failed (said once until it works again).
    private var logindDown = false

    public init(
        journal: Journal, clock: any TimeSource = SystemTimeSource(), logger: Logger, record: @escaping @Sendable (Event) -> Void,
        endSessions: SessionEnder? = nil
    ) {
        self.journal = journal
        self.clock = clock
        self.logger = logger
        self.record = record
        self.endSessions = endSessions ?? { user in await Self.terminateSessions(of: user) }
        do {
            revoked = Dictionary(uniqueKeysWithValues: (try journal.state(Self.stateKey, as: [Revocation].self) ?? []).map { ($0.user, $0) })
        } catch {
            // Unreadable: the list is lost until the broker sends it again. Said loudly; the
            // broker's authz and attestation still refuse these users in the meantime.
            revoked = [:]
            record(Event(
                kind: "user.state_unreadable", eventClass: .accountChange, activityID: 99, activityName: "Other", time: clock.now(), severity: .critical,
                status: .failure, message: "the list of offboarded users cannot be read (\(error)); until the broker sends it again this device does not deny them by itself"))
        }
    }

    public func attach(requests registry: AccessRequests) async {
        requests = registry
        await registry.setRevokedUsers(Set(revoked.keys))
    }

    /// The offboarding in force for `user`, if any.
    public func revocation(_ user: String) -> Revocation? { revoked[user] }

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
        guard !Self.untouchable.contains(user) else {
            return refuse(command, "untouchable", "\(user) is not offboarded on a device: root on the console stays the way in")
        }
        // No expiry check: an offboarding only takes away, and a device that was away longer than
        // the command's life must still apply it.
        let entry = revoked[user] ?? Revocation(user: user, since: clock.now(), reason: command.reason, by: command.admin, seq: command.sequence)
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
        let sessions = await endSessions(user)
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
        guard Int64(clock.now().timeIntervalSince1970) < command.expiresAt else {
            return refuse(command, "expired", "the reinstatement of \(user) expired at \(Date(timeIntervalSince1970: Double(command.expiresAt)).formatted(.iso8601)) before it arrived; \(user) stays offboarded")
        }
        guard let previous = revoked.removeValue(forKey: user) else {
            return .applied("\(user) was not offboarded here")
        }
        do {
            try save()
        } catch {
            revoked[user] = previous
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
    /// opened while logind was away). Called every few seconds; quiet when there is no one.
    public func reassert() async {
        guard !revoked.isEmpty else { return }
        for user in revoked.keys.sorted() {
            let outcome = await endSessions(user)
            if outcome.ended > 0 { logger.notice("offboarding: ended a session the user still had", ("user", user), ("sessions", "\(outcome.ended)")) }
            if let failure = outcome.failure {
                if !logindDown { logger.warning("offboarding: sessions of offboarded users could not be ended", ("error", failure)) }
                logindDown = true
                return
            }
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

    private func save() throws(StoreError) {
        try journal.setState(Self.stateKey, encoding: all())
    }

    /// Every logind session of `user` ended: how many.
    static func terminateSessions(of user: String) async -> (ended: Int, failure: String?) {
        await SessionLockdown.offThread { () -> (ended: Int, failure: String?) in
            do {
                let bus = try DBusConnection.system()
                var count = 0
                var failures: [String] = []
                for session in try Logind.sessions(bus) where session.user == user {
                    do {
                        try Logind.terminate(bus, session: session.id)
                        count += 1
                    } catch {
                        failures.append("session \(session.id): \(error)")
                    }
                }
                return (count, failures.isEmpty ? nil : "could not end " + failures.joined(separator: "; "))
            } catch {
                return (0, "logind does not answer on the system bus (\(error))")
            }
        }
    }
}
