public import FoundationEssentials
public import HoldfastCore
import HoldfastCrypto
public import HoldfastStore

/// One scope in force: why, since when, by whom, and what asked for it.
public struct LockdownEntry: Sendable, Codable, Equatable {
    public var reason: String
    public var since: Date
    /// The person or component: `uid 0 (root)`, `filewatch`.
    public var by: String
    /// `admin` (a control verb), `filewatch` (a block threshold), `broker` (later: a signed command).
    public var source: String
    /// The event that caused it (a FileWatch decision's id), when there is one.
    public var cause: String?

    public init(reason: String, since: Date, by: String, source: String, cause: String? = nil) {
        self.reason = reason
        self.since = since
        self.by = by
        self.source = source
        self.cause = cause
    }
}

/// A locked scope lifted by a break-glass code until `until`; the lockdown itself stays recorded
/// and is back in force when the window ends.
public struct LockdownSuspension: Sendable, Codable, Equatable {
    public var until: Date
    /// When the code was used: an order given before this (a broker command issued earlier) does
    /// not end the suspension; a newer one does.
    public var since: Date
    /// The code's digest (`BreakGlassCode.digest`), never the code.
    public var code: String
    public var by: String
}

/// One scope as recorded and as enforced.
public struct LockdownEnforcementState: Sendable, Equatable {
    public let locked: Bool
    public let inEffect: Bool
    public let failure: String?

    public init(locked: Bool, inEffect: Bool, failure: String?) {
        self.locked = locked
        self.inEffect = inEffect
        self.failure = failure
    }
}

/// A part of the agent that enforces one scope (DeviceGuard for `usb`, PrintGuard for `print`).
public protocol LockdownEnforcer: Sendable {
    /// Puts the scope's lockdown in force (an entry) or lifts it (nil). Returns what failed, if
    /// anything; the lockdown stays recorded either way (enforcement retries it).
    func enforceLockdown(_ entry: LockdownEntry?) async -> String?
}

/// What applies the broker's commands other than lockdowns: exceptions (`grant`, `deny`, `revoke`:
/// docs/exceptions.md) and offboarding (`offboard`, `reinstate`: docs/offboarding.md). The
/// lockdown controller keeps the one command sequence of the device and hands these over once a
/// command is verified, this device's and newer than the last; the handler judges their end
/// itself (a late grant is refused there, with the request in the event; a late offboarding is
/// still applied: it only takes away).
public protocol DelegatedCommandHandler: Sendable {
    func handle(_ command: RemoteCommand) async -> DelegatedCommandResult
}

/// What became of an exception command.
public enum DelegatedCommandResult: Sendable, Equatable {
    /// Done; what resulted, in words for the broker's view.
    case applied(String)
    /// Refused for good (journaled by the handler): a reason code and words.
    case refused(reason: String, message: String)
    /// Could not be saved: not done, asked for again with the next poll.
    case storage(String)
}

/// The lockdown state of this agent: which scopes are shut, persisted in the journal's state before
/// anything is enforced (a crash between the two comes back locked), journaled as events, and
/// applied again at every start.
public actor LockdownController {
    static let stateKey = "lockdown.scopes"
    /// The sequence of the last broker command this agent applied (or refused as expired), and
    /// the device id it was for: only newer ones are applied. A new enrollment is a new device,
    /// whose commands the broker numbers from 1 again.
    static let sequenceKey = "lockdown.command_seq"

    struct CommandProgress: Codable, Equatable {
        /// Nil in a state from before the device was kept: taken as this device's.
        var device: String?
        var seq: Int64
    }

    private let journal: Journal
    private let record: @Sendable (Event) -> Void
    private let clock: any TimeSource
    private var entries: [LockdownScope: LockdownEntry]
    private var enforcers: [LockdownScope: any LockdownEnforcer] = [:]
    /// The last enforcement failure per scope (shown in status).
    private var failures: [LockdownScope: String] = [:]
    /// The last broker command sequence done with (applied, or refused as expired), per device.
    private var progress: CommandProgress
    /// Where exception commands go (nil: they are refused as unsupported).
    private var exceptionHandler: (any DelegatedCommandHandler)?
    /// Where offboarding commands go (nil: they are refused as unsupported).
    private var userHandler: (any DelegatedCommandHandler)?
    static let suspendedKey = "lockdown.suspended"
    static let usedCodesKey = "lockdown.breakglass_used"
    /// Scopes lifted by a break-glass code until a time.
    private var suspensions: [LockdownScope: LockdownSuspension]
    /// Wrong break-glass codes lately, by who tried: five from one caller, or twenty in all, in
    /// 15 minutes close the verb for 15 minutes (any local user may try a code).
    private var wrongCodes: [(at: Date, by: String)] = []
    static let wrongCodeLimit = 5
    static let wrongCodeLimitAll = 20
    static let wrongCodeWindow: TimeInterval = 900

    /// Loads the state. A state that cannot be read is treated as *every scope locked*: failing
    /// closed is the only safe reading of a lockdown we cannot decode.
    public init(journal: Journal, clock: any TimeSource = SystemTimeSource(), record: @escaping @Sendable (Event) -> Void) {
        self.journal = journal
        self.clock = clock
        self.record = record
        progress = Self.loadProgress(journal)
        if progress.device == nil, progress.seq == 0, let bytes = try? journal.state(Self.sequenceKey), !bytes.isEmpty {
            // Said, not guessed: old signed commands of this device would be taken again.
            record(Event(
                kind: "lockdown.state_unreadable", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Other",
                time: clock.now(), severity: .critical, status: .failure,
                message: "the sequence of the last broker command applied cannot be read; commands are judged from 0 (the broker's older commands may apply again)"))
        }
        // A suspension that cannot be read is no suspension: the lockdown is in force.
        suspensions = ((try? journal.state(Self.suspendedKey, as: [LockdownScope: LockdownSuspension].self)) ?? nil) ?? [:]
        do {
            entries = try journal.state(Self.stateKey, as: [LockdownScope: LockdownEntry].self) ?? [:]
        } catch {
            let now = clock.now()
            entries = Dictionary(uniqueKeysWithValues: LockdownScope.allCases.map {
                ($0, LockdownEntry(reason: "the stored lockdown state could not be read (\(error)); locked until an admin releases it", since: now, by: "holdfastd", source: "recovery"))
            })
            record(Event(
                kind: "lockdown.state_unreadable", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Lock",
                time: now, severity: .critical, status: .failure,
                message: "the stored lockdown state could not be read; every scope is locked until an admin releases it",
                details: ["error": .string("\(error)")]
            ))
        }
    }

    /// The entry recorded for a scope, in force or lifted by a break-glass code for now.
    public func entry(_ scope: LockdownScope) -> LockdownEntry? { entries[scope] }

    /// The entry in force for a scope: recorded and not lifted by a break-glass code (start-up
    /// hands it to the enforcer before its first pass; the login check asks it).
    public func inForce(_ scope: LockdownScope) -> LockdownEntry? { suspensions[scope] == nil ? entries[scope] : nil }

    /// Registers what applies exception commands.
    public func attach(exceptions handler: any DelegatedCommandHandler) { exceptionHandler = handler }

    public func attach(users handler: any DelegatedCommandHandler) { userHandler = handler }

    /// Registers the enforcer of a scope and brings it in line with the state at once.
    public func attach(_ enforcer: any LockdownEnforcer, for scope: LockdownScope) async {
        enforcers[scope] = enforcer
        await enforce(scope)
    }

    /// Shuts `scopes`. Scopes already shut keep their first entry. Returns the scopes newly shut.
    /// A state that cannot be saved does not stop the lockdown (it is journaled as
    /// `lockdown.save_failed`); the `throws` is for callers that treat saving as their own concern.
    @discardableResult
    /// A scope lifted by a break-glass code is shut again by an order newer than the code's use
    /// (`issuedAt`, default now: a broker command carries the time it was issued).
    public func engage(
        _ scopes: [LockdownScope], reason: String, by who: String, source: String, cause: String? = nil, issuedAt: Date? = nil
    ) async throws(StoreError) -> [LockdownScope] {
        let now = clock.now()
        let order = issuedAt ?? now
        let fresh = scopes.filter { scope in entries[scope] == nil || suspensions[scope].map { order > $0.since } == true }
        guard !fresh.isEmpty else { return [] }
        let resumed = fresh.filter { suspensions[$0] != nil }
        if !resumed.isEmpty {
            for scope in resumed { suspensions[scope] = nil }
            saveSuspensions()
        }
        var next = entries
        for scope in fresh { next[scope] = LockdownEntry(reason: reason, since: now, by: who, source: source, cause: cause) }
        do {
            try journal.setState(Self.stateKey, encoding: next)
        } catch {
            // Fail closed: the lockdown is enforced all the same; it is said that a restart
            // would not remember it.
            record(Event(
                kind: "lockdown.save_failed", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Lock",
                time: now, severity: .critical, status: .failure,
                message: "the lockdown of \(fresh.map(\.rawValue).joined(separator: ", ")) is enforced but could not be saved (\(error)): a restart would not remember it",
                details: ["scopes": .array(fresh.map { .string($0.rawValue) }), "error": .string("\(error)")]
            ))
        }
        entries = next
        var details: [String: JSONValue] = [
            "scopes": .array(fresh.map { .string($0.rawValue) }), "reason": .string(reason), "by": .string(who), "source": .string(source),
        ]
        if let cause { details["cause"] = .string(cause) }
        record(Event(
            kind: "lockdown.engaged", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Lock",
            time: now, severity: .high, status: .success,
            message: "lockdown of \(fresh.map(\.rawValue).joined(separator: ", ")) by \(who): \(reason)", details: details
        ))
        for scope in fresh { await enforce(scope) }
        // Recorded either way; said loudly when nothing on this agent can enforce it.
        let unenforced = fresh.filter { enforcers[$0] == nil }
        if !unenforced.isEmpty {
            for scope in unenforced { failures[scope] = "no \(scope.rawValue) enforcement runs on this agent" }
            record(Event(
                kind: "lockdown.enforcement_failed", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Lock",
                time: now, severity: .high, status: .failure,
                message: "the lockdown of \(unenforced.map(\.rawValue).joined(separator: ", ")) is recorded but not enforced: that enforcement does not run on this agent (it applies when it starts)",
                details: ["scopes": .array(unenforced.map { .string($0.rawValue) })]
            ))
        }
        return fresh
    }

    /// Lifts `scopes`. Returns the scopes that were shut.
    @discardableResult
    public func release(_ scopes: [LockdownScope], reason: String, by who: String) async throws(StoreError) -> [LockdownScope] {
        let lifted = scopes.filter { entries[$0] != nil }
        guard !lifted.isEmpty else { return [] }
        var next = entries
        for scope in lifted { next[scope] = nil }
        try journal.setState(Self.stateKey, encoding: next)
        entries = next
        if lifted.contains(where: { suspensions[$0] != nil }) {
            for scope in lifted { suspensions[scope] = nil }
            saveSuspensions()
        }
        record(Event(
            kind: "lockdown.released", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Unlock",
            time: clock.now(), severity: .medium, status: .success,
            message: "lockdown of \(lifted.map(\.rawValue).joined(separator: ", ")) released by \(who): \(reason)",
            details: ["scopes": .array(lifted.map { .string($0.rawValue) }), "reason": .string(reason), "by": .string(who)]
        ))
        for scope in lifted { await enforce(scope) }
        return lifted
    }

    /// How often a locked `network` or `sessions` scope is enforced again (`reassert`).
    public static let reassertInterval: Duration = .seconds(10)

    /// Enforces every locked scope again: a table someone deleted comes back, a session opened
    /// since is ended. A failure is journaled when it is new, not at every pass.
    public func reassert(_ scopes: [LockdownScope]) async {
        for scope in scopes where entries[scope] != nil { await enforce(scope) }
    }

    private func enforce(_ scope: LockdownScope) async {
        let entry = inForce(scope)
        guard let enforcer = enforcers[scope] else {
            // Nothing runs for this scope: a lock is said to be unenforced, an open scope (or one
            // lifted by break-glass) carries no failure from before.
            failures[scope] = entry == nil ? nil : "no \(scope.rawValue) enforcement runs on this agent"
            return
        }
        if let failure = await enforcer.enforceLockdown(entry) {
            let repeated = failures[scope] == failure
            failures[scope] = failure
            if repeated { return }
            record(Event(
                kind: "lockdown.enforcement_failed", eventClass: .deviceConfigStateChange, activityID: 99, activityName: entry == nil ? "Unlock" : "Lock",
                time: clock.now(), severity: .high, status: .failure,
                message: "the \(scope.rawValue) lockdown could not be \(entry == nil ? "lifted" : "enforced") completely: \(failure)",
                details: ["scope": .string(scope.rawValue), "error": .string(failure)]
            ))
        } else {
            failures[scope] = nil
        }
    }

    // MARK: Break-glass

    /// What a break-glass code did.
    public struct BreakGlassOutcome: Sendable, Equatable {
        public let lifted: [LockdownScope]
        public let until: Date
    }

    /// Why a break-glass code was refused (journaled as `lockdown.breakglass_refused`).
    public struct BreakGlassRefusal: Error, Sendable, Equatable, CustomStringConvertible {
        /// `no-secret`, `malformed`, `wrong`, `outside-window`, `used`, `nothing-locked`,
        /// `too-many-tries`, `storage`.
        public let reason: String
        public let message: String
        public var description: String { message }
    }

    /// `holdfast unlock CODE`: lifts the code's scopes that are locked until its window ends —
    /// offline, against the secret the broker gave at enrollment. Each code works once; five
    /// wrong codes in 15 minutes close the verb for 15 minutes. Every try is journaled.
    public func breakGlass(_ text: String, secret: [UInt8]?, device: String?, by who: String) async -> Result<BreakGlassOutcome, BreakGlassRefusal> {
        let now = clock.now()
        wrongCodes = wrongCodes.filter { now.timeIntervalSince($0.at) < Self.wrongCodeWindow }
        func refuse(_ reason: String, _ message: String, counts: Bool = false) -> Result<BreakGlassOutcome, BreakGlassRefusal> {
            if counts { wrongCodes.append((now, who)) }
            record(Event(
                kind: "lockdown.breakglass_refused", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Refuse", time: now, severity: .high, status: .failure,
                message: "a break-glass code was refused (\(reason)): \(message)", details: ["reason": .string(reason), "by": .string(who)]))
            return .failure(BreakGlassRefusal(reason: reason, message: message))
        }
        let mine = wrongCodes.filter { $0.by == who }
        guard mine.count < Self.wrongCodeLimit, wrongCodes.count < Self.wrongCodeLimitAll else {
            let oldest = (mine.count >= Self.wrongCodeLimit ? mine : wrongCodes).map(\.at).min() ?? now
            let reopens = oldest.addingTimeInterval(Self.wrongCodeWindow)
            return refuse("too-many-tries", "too many wrong codes in \(Int(Self.wrongCodeWindow / 60)) minutes; try again after \(reopens.formatted(.iso8601))")
        }
        guard let secret, let device else {
            return refuse("no-secret", "this agent holds no break-glass secret (not enrolled, or not in contact with its broker since break-glass came)")
        }
        let code: BreakGlassCode
        switch BreakGlassCode.verify(text, secret: secret, device: device, now: Int64(now.timeIntervalSince1970)) {
        case .success(let verified): code = verified
        // Only a code that decodes and fails its MAC counts as a try: guessing needs those; a
        // garbled or late code gains nothing.
        case .failure(.malformed): return refuse("malformed", "that is not a code this agent can read: mistyped? Read it back to the security team (14 letters and digits in groups: XXXX-XXXX-XXXX-XX)")
        case .failure(.wrong): return refuse("wrong", "the code does not match this computer: mistyped, or made for another computer", counts: true)
        case .failure(.outsideWindow): return refuse("outside-window", "the code's window has ended (or not begun); ask for a new one")
        }
        let current = Int64(now.timeIntervalSince1970)
        // Which codes were used: a record that cannot be read refuses every code (a code must
        // never work twice because a state file was damaged).
        var used: [String: Int64]
        do {
            used = try journal.state(Self.usedCodesKey, as: [String: Int64].self) ?? [:]
        } catch {
            return refuse("storage", "the record of used codes cannot be read (\(error)); no code is taken until it can")
        }
        used = used.filter { $0.value > current }
        guard used[code.digest] == nil else { return refuse("used", "this code was used already; each code works once") }
        // Only a lockdown that began before the code was made: a code kept for later does not
        // open a lockdown for another incident.
        let lifted = code.scopes.filter { scope in inForce(scope).map { Int64($0.since.timeIntervalSince1970) <= code.startsAt + BreakGlassCode.skew } ?? false }
        guard !lifted.isEmpty else {
            return refuse("nothing-locked", "none of the code's scopes (\(code.scopes.map(\.rawValue).joined(separator: ", "))) has a lockdown from before the code was made")
        }
        let until = Date(timeIntervalSince1970: Double(code.endsAt))
        used[code.digest] = code.endsAt
        var next = suspensions
        for scope in lifted { next[scope] = LockdownSuspension(until: until, since: now, code: code.digest, by: who) }
        do {
            try journal.setState(Self.usedCodesKey, encoding: used)
            try journal.setState(Self.suspendedKey, encoding: next)
        } catch {
            return refuse("storage", "the break-glass could not be saved (\(error)); nothing was lifted")
        }
        suspensions = next
        record(Event(
            kind: "lockdown.breakglass_used", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Unlock", time: now, severity: .high, status: .success,
            message: "break-glass by \(who): \(lifted.map(\.rawValue).joined(separator: ", ")) lifted until \(until.formatted(.iso8601)); the lockdown is back in force then",
            details: [
                "scopes": .array(lifted.map { .string($0.rawValue) }), "until": .int(code.endsAt), "code_sha256": .string(code.digest), "by": .string(who),
                "reason": .string("break-glass code until \(until.formatted(.iso8601))"),
            ]))
        for scope in lifted { await enforce(scope) }
        return .success(BreakGlassOutcome(lifted: lifted, until: until))
    }

    /// Ends break-glass windows that are over: the lockdown is back in force (called with every
    /// reassertion, so at most that late).
    public func expireSuspensions() async {
        let now = clock.now()
        let ended = suspensions.filter { $0.value.until <= now }.map(\.key).sorted()
        guard !ended.isEmpty else { return }
        for scope in ended { suspensions[scope] = nil }
        saveSuspensions()
        record(Event(
            kind: "lockdown.breakglass_ended", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Lock", time: now, severity: .medium, status: .success,
            message: "the break-glass window ended: \(ended.map(\.rawValue).joined(separator: ", ")) locked again",
            details: ["scopes": .array(ended.map { .string($0.rawValue) }), "reason": .string("the break-glass window ended"), "by": "holdfastd"]))
        for scope in ended { await enforce(scope) }
    }

    private func saveSuspensions() {
        do {
            try journal.setState(Self.suspendedKey, encoding: suspensions)
        } catch {
            record(Event(
                kind: "lockdown.save_failed", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Other", time: clock.now(), severity: .critical, status: .failure,
                message: "the break-glass state could not be saved (\(error)): a restart may remember it otherwise", details: ["error": .string("\(error)")]))
        }
    }

    // MARK: Broker commands

    /// What became of a broker command.
    public enum CommandOutcome: Sendable, Equatable {
        /// Applied; the scopes that changed.
        case applied(changed: [LockdownScope])
        /// An exception command done (`DelegatedCommandHandler`); what resulted.
        case done(detail: String)
        /// Refused and journaled: a reason code (`other-device`, `replayed`, `expired`, `storage`)
        /// and words for the trail.
        case refused(reason: String, message: String)
    }

    /// Applies a verified command from the broker — only if it is for this device, newer than the
    /// last applied, and not expired; anything else is refused and journaled with the reason.
    /// Commands take the same path as every lockdown (`engage`, `release`).
    public func apply(_ command: RemoteCommand, device: String) async -> CommandOutcome {
        let now = clock.now()
        guard command.device == device else {
            return refuseCommand("other-device", "command \(command.sequence) is for device \(command.device), not this one (\(device))", sequence: command.sequence, admin: command.admin)
        }
        let last = lastCommandSequence(for: device)
        guard command.sequence > last else {
            return refuseCommand("replayed", "command \(command.sequence) is not newer than command \(last) applied before", sequence: command.sequence, admin: command.admin)
        }
        // Exception commands: the handler judges their own end (a late grant is refused there, with
        // the requester and the request in the event, and the request marked not applied).
        let delegate: (handler: (any DelegatedCommandHandler)?, name: String)? = switch command.action {
        case .grant, .deny, .revoke: (exceptionHandler, "the exception handler")
        case .offboard, .reinstate: (userHandler, "the offboarding handler")
        case .lockdown, .release: nil
        }
        if let delegate {
            guard let handler = delegate.handler else {
                saveSequence(command.sequence, device: device)
                return refuseCommand("unsupported", "command \(command.sequence) (\(command.action.rawValue)) needs \(delegate.name), which does not run here", sequence: command.sequence, admin: command.admin)
            }
            switch await handler.handle(command) {
            case .applied(let detail):
                saveSequence(command.sequence, device: device)
                return .done(detail: detail)
            case .refused(let reason, let message):
                saveSequence(command.sequence, device: device)
                return .refused(reason: reason, message: message)
            case .storage(let message):
                return .refused(reason: "storage", message: message)
            }
        }
        guard Int64(now.timeIntervalSince1970) < command.expiresAt else {
            // Authentic and this device's, but too late: done with, never applied.
            saveSequence(command.sequence, device: device)
            return refuseCommand(
                "expired", "command \(command.sequence) expired at \(Date(timeIntervalSince1970: Double(command.expiresAt)).formatted(.iso8601))",
                sequence: command.sequence, admin: command.admin)
        }
        let who = "\(command.admin) (broker command \(command.sequence))"
        let changed: [LockdownScope]
        do {
            switch command.action {
            case .lockdown:
                changed = try await engage(
                    command.scopes, reason: command.reason, by: who, source: "broker", cause: "command \(command.sequence)",
                    issuedAt: Date(timeIntervalSince1970: Double(command.issuedAt)))
            case .release:
                changed = try await release(command.scopes, reason: command.reason, by: who)
            case .grant, .deny, .revoke, .offboard, .reinstate:
                changed = []
            }
        } catch {
            // Not saved, not applied: the next poll brings it again.
            return refuseCommand("storage", "command \(command.sequence) could not be saved: \(error)", sequence: command.sequence, admin: command.admin)
        }
        saveSequence(command.sequence, device: device)
        record(Event(
            kind: "lockdown.command_applied", eventClass: .deviceConfigStateChange, activityID: 99, activityName: command.action == .lockdown ? "Lock" : "Unlock",
            time: now, severity: .medium, status: .success,
            message: "broker command \(command.sequence) (\(command.action.rawValue) \(command.scopes.map(\.rawValue).joined(separator: ", ")) by \(command.admin)) applied: \(command.reason)",
            details: [
                "seq": .int(command.sequence), "action": .string(command.action.rawValue), "scopes": .array(command.scopes.map { .string($0.rawValue) }),
                "changed": .array(changed.map { .string($0.rawValue) }), "by": .string(command.admin), "reason": .string(command.reason),
            ]))
        return .applied(changed: changed)
    }

    /// Journals a command that was refused (here, or before: its signature or payload failed).
    @discardableResult
    public func refuseCommand(_ reason: String, _ message: String, sequence: Int64?, admin: String? = nil) -> CommandOutcome {
        var details: [String: JSONValue] = ["reason": .string(reason), "detail": .string(message)]
        if let sequence { details["seq"] = .int(sequence) }
        if let admin { details["by"] = .string(admin) }
        record(Event(
            kind: "lockdown.command_refused", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Refuse",
            time: clock.now(), severity: .high, status: .failure, message: "a broker command was refused (\(reason)): \(message)", details: details))
        return .refused(reason: reason, message: message)
    }

    /// The last command sequence done with for this device (0: none, or another device's).
    public func lastCommandSequence(for device: String) -> Int64 {
        progress.device == nil || progress.device == device ? progress.seq : 0
    }

    static func loadProgress(_ journal: Journal) -> CommandProgress {
        guard let bytes = try? journal.state(sequenceKey) else { return CommandProgress(device: nil, seq: 0) }
        if let stored = try? JSONDecoder().decode(CommandProgress.self, from: Data(bytes)) { return stored }
        // The first form: the number alone.
        return CommandProgress(device: nil, seq: Int64(String(decoding: bytes, as: UTF8.self)) ?? 0)
    }

    private func saveSequence(_ sequence: Int64, device: String) {
        progress = CommandProgress(device: device, seq: max(lastCommandSequence(for: device), sequence))
        do {
            try journal.setState(Self.sequenceKey, encoding: progress)
        } catch {
            record(Event(
                kind: "lockdown.save_failed", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Other",
                time: clock.now(), severity: .critical, status: .failure,
                message: "the sequence of broker command \(sequence) could not be saved (\(error)): after a restart it may be refused as a replay",
                details: ["seq": .int(sequence), "error": .string("\(error)")]))
        }
    }

    /// What the agent tells the broker it has in force: the scopes recorded locked, and those of
    /// them whose enforcement is in effect.
    public func reportedState() -> JSONValue {
        let enforcement = enforcement()
        let locked = LockdownScope.allCases.filter { entries[$0] != nil }
        let enforced = locked.filter { enforcement[$0]?.inEffect == true }
        var object: [String: JSONValue] = ["locked": .array(locked.map { .string($0.rawValue) }), "enforced": .array(enforced.map { .string($0.rawValue) })]
        if !suspensions.isEmpty {
            object["suspended_until"] = .object(Dictionary(uniqueKeysWithValues: suspensions.map { ($0.key.rawValue, JSONValue.int(Int64($0.value.until.timeIntervalSince1970))) }))
        }
        return .object(object)
    }

    /// Per scope: whether it is recorded locked, and whether the enforcer's last pass put it in
    /// effect (posture's `lockdown-consistent` compares the two).
    public func enforcement() -> [LockdownScope: LockdownEnforcementState] {
        var result: [LockdownScope: LockdownEnforcementState] = [:]
        for scope in LockdownScope.allCases {
            // Lifted by a break-glass code: not meant to be in force now.
            let locked = inForce(scope) != nil
            let failure = enforcers[scope] == nil && locked ? "no \(scope.rawValue) enforcement runs on this agent" : failures[scope]
            // A failed pass leaves the scope in the state it had: a failed lock is not in effect,
            // a failed release still is.
            let inEffect = failure == nil ? locked : !locked
            result[scope] = LockdownEnforcementState(locked: locked, inEffect: inEffect, failure: failure)
        }
        return result
    }

    /// What `holdfast lockdown status` shows.
    public func status() -> JSONValue {
        var scopes: [String: JSONValue] = [:]
        for scope in LockdownScope.allCases {
            guard let entry = entries[scope] else {
                scopes[scope.rawValue] = .object(["locked": false, "enforcer": .bool(enforcers[scope] != nil)])
                continue
            }
            var object: [String: JSONValue] = [
                "locked": true, "reason": .string(entry.reason), "since": .string(entry.since.formatted(.iso8601)),
                "by": .string(entry.by), "source": .string(entry.source), "enforcer": .bool(enforcers[scope] != nil),
            ]
            if let cause = entry.cause { object["cause"] = .string(cause) }
            if let failure = failures[scope] { object["last_failure"] = .string(failure) }
            if let suspension = suspensions[scope] {
                object["suspended_until"] = .string(suspension.until.formatted(.iso8601))
                object["suspended_by"] = .string("break-glass code by \(suspension.by)")
            }
            scopes[scope.rawValue] = .object(object)
        }
        return .object([
            "scopes": .object(scopes), "locked": .array(entries.keys.sorted().map { .string($0.rawValue) }), "last_command_seq": .int(progress.seq),
        ])
    }
}
