import Dispatch
import FoundationEssentials
public import HoldfastCore
import HoldfastCrypto
public import HoldfastStore
public import PrintGuard
public import Lockdown
#if canImport(Glibc)
import Glibc
#endif

/// Runs libcups calls on one serial queue: libcups blocks, and its connection is not thread-safe,
/// so the cooperative pool never waits on cupsd.
final class CupsWorker: @unchecked Sendable {
    private let queue = DispatchQueue(label: "holdfast.cups")
    /// Touched only on `queue`.
    private let client: CupsClient

    init(server: String?) { client = CupsClient(server: server) }

    var server: String { client.server }

    func run<T: Sendable>(_ body: @escaping @Sendable (CupsClient) throws(CupsError) -> T) async throws(CupsError) -> T {
        let result: Result<T, CupsError> = await withCheckedContinuation { continuation in
            queue.async {
                do throws(CupsError) {
                    continuation.resume(returning: .success(try body(self.client)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}

/// PrintGuard in holdfastd (`docs/print-enforcement.md`): keeps cupsd's queues to the approved
/// list, keeps its operation policy hardened, answers the `holdfast:` backend's gate for every
/// job, keeps the per-user quota ledger, and holds the print lockdown flag.
public actor PrintService: Service {
    public nonisolated let name = "print"

    /// Journal state keys.
    static let ledgerKey = "print.quota"
    static let lockdownKey = "print.lockdown"
    static let exceptionsKey = "print.exceptions"

    /// How often the subscription is pulled for queue changes.
    static let pollInterval: Duration = .milliseconds(200)
    /// A full look at every queue and the hardening even without events.
    static let fullInterval: Duration = .seconds(30)
    static let leaseSeconds: Int32 = 300

    private var policy: PrintPolicy
    /// The `print` section as written (for `holdfast print status`, which decides queues itself).
    private var policySection: JSONValue
    private let journal: Journal
    private let recorder: EventRecorder
    private let logger: Logger
    private let clock: any TimeSource
    private let cups: CupsWorker
    /// The gate's own connection: a job's check never waits behind reconciliation.
    private let gateCups: CupsWorker
    private let serverRoot: String
    /// uid of the user cupsd runs backends as (`[print] backend_user`); nil when it does not exist.
    public nonisolated let backendUID: UInt32?
    private var ledger: QuotaLedger
    /// Approved exceptions (docs/exceptions.md), in force until their end.
    private(set) var exceptions: [PrintException] = []
    /// Whether the last save of the exceptions failed (an ending not saved would come back).
    private var exceptionsUnsaved = false
    /// When a request last made PrintService look at CUPS for a queue it did not know: at most
    /// every 5 s (any local user can ask).
    private var lastLookup: Date?
    /// The lockdown in force: why, since when, by whom.
    private var lockdown: Lockdown?
    /// The jobs the last lockdown cancelled (the `print.lockdown` verb reports them).
    private(set) var lastLockdownCancelled: [Int32] = []
    /// The last reconciliation's view.
    private var queues: [(queue: PrintQueue, approval: Approval)] = []

    /// The queues of the last reconcile (name → device URI), for posture; nil before the first.
    public func queueURIs() -> [String: String]? {
        guard lastReconcile != nil else { return nil }
        return Dictionary(queues.filter { !$0.queue.isClass }.map { ($0.queue.name, $0.queue.deviceURI) }, uniquingKeysWith: { first, _ in first })
    }
    private var hardening = HardeningState()
    /// Queues cupsd refused to change at the last reconciliation, with the error.
    private var queueFailures: [String: String] = [:]
    private var cupsState: String = "not contacted yet"
    private var lastReconcile: Date?
    private var reconcileRequested = true
    private var unreachableSince: Date?
    private var outageReported = false
    /// The job events' counters since start.
    private var allowedJobs = 0
    private var deniedJobs = 0

    struct Lockdown: Codable, Sendable {
        var reason: String
        var since: Date
        var by: String
    }

    struct HardeningState: Sendable {
        var findings: [String] = []
        var fileDevice: Bool?
        var checkedAt: Date?
        var error: String?
        var repairedAt: Date?
        var reported: [String] = []
    }

    public init(
        policy: PrintPolicy, section: JSONValue?, journal: Journal, recorder: EventRecorder, logger: Logger, cupsServer: String?, serverRoot: String,
        backendUser: String, clock: any TimeSource = SystemTimeSource()
    ) {
        self.policy = policy
        policySection = section ?? .null
        self.journal = journal
        self.recorder = recorder
        self.logger = logger
        self.clock = clock
        self.serverRoot = serverRoot
        cups = CupsWorker(server: cupsServer)
        gateCups = CupsWorker(server: cupsServer)
        backendUID = Self.passwd(backendUser)?.uid
        ledger = (try? journal.state(Self.ledgerKey, as: QuotaLedger.self)) ?? QuotaLedger(day: "")
        lockdown = try? journal.state(Self.lockdownKey, as: Lockdown.self)
        do {
            exceptions = try journal.state(Self.exceptionsKey, as: [PrintException].self) ?? []
        } catch {
            // Unreadable: none is in force (the strict side), and that is said.
            recorder.record(Event(
                kind: "print.exceptions_unreadable", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Refuse", time: clock.now(),
                severity: .high, status: .failure, message: "stored print exceptions could not be read (\(error)); none is in force"))
        }
    }

    // MARK: Exceptions

    /// The approval of a queue CUPS has, as the last reconciliation saw it, and whether its rule
    /// lets `user` print there; nil when there is no such queue (names are case-insensitive). A
    /// queue not seen yet makes it look again, at most every 5 s.
    public func queueApproval(_ name: String, user: String) async -> (approval: Approval, admits: Bool)? {
        let known = { self.queues.first { $0.queue.name.lowercased() == name.lowercased() }?.approval }
        if known() == nil, lastLookup.map({ clock.now().timeIntervalSince($0) >= 5 }) ?? true {
            lastLookup = clock.now()
            try? await reconcile(checkHardening: false)
        }
        guard let approval = known() else { return nil }
        let users = approval.rule?.users ?? []
        let admits = users.isEmpty || users.contains { $0.hasPrefix("@") ? Self.isMember(user, String($0.dropFirst())) : $0 == user }
        return (approval, admits)
    }

    /// Puts an approved exception in force (saved first: an exception that could not be saved is
    /// not applied, and the broker's command comes again).
    public func addException(_ exception: PrintException) throws(StoreError) {
        var exception = exception
        // The same approval again (a command re-delivered): the pages used stay used.
        if let before = exceptions.first(where: { $0.id == exception.id }) { exception.used = max(exception.used, before.used) }
        var next = exceptions.filter { $0.id != exception.id }
        next.append(exception)
        try journal.setState(Self.exceptionsKey, encoding: next)
        exceptionsUnsaved = false
        exceptions = next
        record(event(
            "print.exception_granted", .deviceConfigStateChange, 1, "Create", .medium, .success,
            "print exception #\(exception.number): \(Printable.escape(exception.user)) may print \(exception.pages) pages on \(Printable.escape(exception.queue)) beyond the quota until \(exception.until.formatted(.iso8601)), granted by \(exception.grantedBy): \(exception.reason)",
            Self.exceptionDetails(exception), user: exception.user))
    }

    /// Ends an exception now (none with that id: nothing to do). False when the ending could not
    /// be saved (it is ended for this run; a restart would bring it back).
    @discardableResult
    public func endException(_ id: String, why: String, kind: String = "print.exception_revoked") -> Bool {
        guard let exception = exceptions.first(where: { $0.id == id }) else { return !exceptionsUnsaved }
        let next = exceptions.filter { $0.id != id }
        var saved = true
        do {
            try journal.setState(Self.exceptionsKey, encoding: next)
            exceptionsUnsaved = false
        } catch {
            saved = false
            exceptionsUnsaved = true
            logger.error("could not save print exceptions; the ended one stays ended for this run", ("error", "\(error)"))
        }
        exceptions = next
        record(event(
            kind, .deviceConfigStateChange, 3, "Delete", .informational, .success,
            "print exception #\(exception.number) for \(Printable.escape(exception.user)) on \(Printable.escape(exception.queue)) ended: \(why) (\(exception.used) of \(exception.pages) pages used)",
            Self.exceptionDetails(exception).merging(["ended": .string(why)]) { $1 }, user: exception.user))
        return saved
    }

    /// Ends the exceptions whose time is up (the gate never uses one past its end; this says so
    /// in the journal and clears the state).
    public func expireExceptions() {
        let now = clock.now()
        for exception in exceptions where !exception.isActive(at: now) {
            endException(exception.id, why: "its time ran out", kind: "print.exception_expired")
        }
    }

    static func exceptionDetails(_ exception: PrintException) -> [String: JSONValue] {
        [
            "id": .string(exception.id), "number": .int(exception.number), "user": .string(exception.user), "queue": .string(exception.queue),
            "pages": .int(exception.pages), "used": .int(exception.used), "created": .string(exception.created.formatted(.iso8601)),
            "until": .string(exception.until.formatted(.iso8601)), "reason": .string(exception.reason), "granted_by": .string(exception.grantedBy),
        ]
    }

    // MARK: Reconciliation

    public func run() async throws {
        var subscription: Int32?
        var sequence: Int32 = 0
        var lastFull = ContinuousClock.now - Self.fullInterval
        var lastRenew = ContinuousClock.now
        var polling = false
        defer {
            if let subscription {
                let worker = cups
                Task.detached { _ = try? await worker.run { client throws(CupsError) in try client.cancel(subscription: subscription) } }
            }
        }
        while !Task.isCancelled {
            do throws(CupsError) {
                if subscription == nil, !polling {
                    do throws(CupsError) {
                        subscription = try await cups.run { client throws(CupsError) in
                            try client.subscribe(events: CupsClient.queueEvents, leaseSeconds: Self.leaseSeconds)
                        }
                        sequence = 0
                        lastRenew = .now
                        reconcileRequested = true
                    } catch where error.code == .refused {
                        polling = true
                        logger.warning("cupsd refused a subscription; watching queues by polling", ("error", error.message))
                    }
                }
                let full = ContinuousClock.now - lastFull >= Self.fullInterval
                if reconcileRequested || full || polling {
                    reconcileRequested = false
                    try await reconcile(checkHardening: full || hardening.checkedAt == nil)
                    if full { lastFull = .now }
                }
                if let id = subscription {
                    let after = sequence
                    let (events, last) = try await cups.run { client throws(CupsError) in try client.notifications(subscription: id, after: after) }
                    sequence = last
                    if !events.isEmpty {
                        reconcileRequested = true
                        if events.contains(where: { $0.hasPrefix("server-") }) { lastFull = ContinuousClock.now - Self.fullInterval }
                    }
                    if ContinuousClock.now - lastRenew >= .seconds(60) {
                        try await cups.run { client throws(CupsError) in try client.renew(subscription: id, leaseSeconds: Self.leaseSeconds) }
                        lastRenew = .now
                    }
                }
                reachable()
            } catch {
                if error.code == .notFound, subscription != nil {
                    // cupsd restarted without our subscription (or its lease ran out): subscribe again.
                    subscription = nil
                    continue
                }
                unreachable(error)
                subscription = nil
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            try? await Task.sleep(for: reconcileRequested ? .zero : (polling ? .seconds(1) : Self.pollInterval))
        }
    }


    private func reachable() {
        cupsState = "reachable"
        guard let since = unreachableSince else { return }
        unreachableSince = nil
        guard outageReported else { return }
        outageReported = false
        let seconds = Int(clock.now().timeIntervalSince(since))
        logger.notice("cupsd is reachable again", ("cups.server", cups.server))
        record(event(
            "print.cups_reachable", .deviceConfigStateChange, 99, "Reconnect", .informational, .success,
            "cupsd at \(cups.server) is reachable again after \(seconds) s; queues reconciled", ["server": .string(cups.server)]
        ))
    }

    /// An outage is reported once it has lasted this long (a cupsd reload is not one).
    static let outageGrace: TimeInterval = 3

    private func unreachable(_ error: CupsError) {
        cupsState = "unreachable: \(error.message)"
        let now = clock.now()
        guard let since = unreachableSince else {
            unreachableSince = now
            return
        }
        guard !outageReported, now.timeIntervalSince(since) >= Self.outageGrace else { return }
        outageReported = true
        logger.warning("cannot reach cupsd; jobs already gated stay gated", ("cups.server", cups.server), ("error", error.message))
        record(event(
            "print.cups_unreachable", .deviceConfigStateChange, 99, "Disconnect", .medium, .failure,
            "cannot reach cupsd at \(cups.server) (\(error.message)); queues are not reconciled until it answers, the gate still decides every job",
            ["server": .string(cups.server), "error": .string(error.message)]
        ))
    }

    private func reconcile(checkHardening: Bool) async throws(CupsError) {
        let listed = try await cups.run { client throws(CupsError) in try client.queues() }
        var seen: [(queue: PrintQueue, approval: Approval)] = []
        var failing: [String: String] = [:]
        for queue in listed {
            let approval = policy.approval(for: queue)
            seen.append((queue, approval))
            do throws(CupsError) {
                if approval.approved {
                    try await keep(queue, approval)
                } else {
                    try await refuse(queue, approval)
                }
            } catch where error.code == .refused {
                // One queue cupsd will not change must not stop the others being reconciled.
                failing[queue.name] = error.message
                await failed(queue, approval, error)
            }
        }
        queueFailures = failing
        queues = seen
        lastReconcile = clock.now()
        if checkHardening { try await checkHardeningState() }
    }

    private func keep(_ queue: PrintQueue, _ approval: Approval) async throws(CupsError) {
        let real = queue.realURI
        if !queue.isClass, !real.gated {
            let name = queue.name
            let wrapped = DeviceURI.gatePrefix + real.uri
            try await cups.run { client throws(CupsError) in try client.setDeviceURI(name, wrapped) }
            record(event(
                "print.queue_gated", .deviceConfigStateChange, 2, "Update", .informational, .success,
                "queue \(Printable.escape(queue.name)) approved (\(approval.reason)); its jobs now pass the Holdfast gate",
                ["queue": .string(queue.name), "device_uri": .string(real.uri), "rule": .string(approval.rule?.id ?? "")]
            ))
        }
        if (!queue.isAcceptingJobs || queue.state == 5), queue.stateMessage.hasPrefix(Self.messagePrefix) {
            try await cups.run { client throws(CupsError) in try client.accept(queue) }
            record(event(
                "print.queue_accepted", .deviceConfigStateChange, 2, "Update", .informational, .success,
                "queue \(Printable.escape(queue.name)) is approved now (\(approval.reason)); Holdfast lets it take jobs again",
                ["queue": .string(queue.name)]
            ))
        }
    }

    static let messagePrefix = "Holdfast:"

    /// cupsd refused a change to `queue`. An approved queue that cannot be gated must not print
    /// around the gate: it is made to reject jobs and stopped (fail closed). Journaled once per
    /// queue and error.
    private func failed(_ queue: PrintQueue, _ approval: Approval, _ error: CupsError) async {
        var stopped = false
        if approval.approved, !queue.isClass, !queue.realURI.gated, queue.isAcceptingJobs || queue.state != 5 {
            let message = "\(Self.messagePrefix) the print gate cannot be put in front of this queue"
            stopped = (try? await cups.run { client throws(CupsError) in try client.reject(queue, message: message) }) != nil
        }
        guard queueFailures[queue.name] != error.message else { return }
        logger.error("cupsd refused a change to a print queue", ("queue", queue.name), ("error", error.message))
        record(event(
            "print.queue_failed", .deviceConfigStateChange, 99, "Fail", .high, .failure,
            "cupsd refused Holdfast's change to queue \(Printable.escape(queue.name)) (\(error.message))"
                + (stopped ? "; the queue rejects jobs and is stopped until it can be gated" : ""),
            ["queue": .string(queue.name), "device_uri": .string(queue.realURI.uri), "approved": .bool(approval.approved),
             "error": .string(error.message), "stopped": .bool(stopped)]
        ))
    }

    private func refuse(_ queue: PrintQueue, _ approval: Approval) async throws(CupsError) {
        var details: [String: JSONValue] = [
            "queue": .string(queue.name), "device_uri": .string(queue.realURI.uri), "reason": .string(approval.reason),
            "temporary": .bool(queue.isTemporary), "class": .bool(queue.isClass),
        ]
        switch policy.unapproved {
        case .remove:
            do throws(CupsError) {
                try await cups.run { client throws(CupsError) in try client.delete(queue) }
            } catch where error.code == .notFound {
                return
            }
            details["action"] = "removed"
            logger.notice("removed an unapproved print queue", ("queue", queue.name), ("reason", approval.reason))
            record(event(
                "print.queue_removed", .deviceConfigStateChange, 3, "Delete", .medium, .success,
                "removed print queue \(Printable.escape(queue.name)) at \(Printable.escape(queue.realURI.uri)): \(approval.reason)", details
            ))
        case .reject:
            guard queue.isAcceptingJobs || queue.state != 5 || !queue.stateMessage.hasPrefix(Self.messagePrefix) else { return }
            let message = "\(Self.messagePrefix) not an approved printer"
            try await cups.run { client throws(CupsError) in try client.reject(queue, message: message) }
            let name = queue.name
            let cancelled = try await cancelJobs(where: { $0.queue == name }, message: message)
            details["action"] = "rejected"
            details["cancelled_jobs"] = .array(cancelled.map { .int(Int64($0)) })
            record(event(
                "print.queue_rejected", .deviceConfigStateChange, 2, "Update", .medium, .success,
                "print queue \(Printable.escape(queue.name)) rejects jobs and is stopped: \(approval.reason)", details
            ))
        }
    }

    /// Cancels the active jobs `matching`, each journaled; returns their ids.
    private func cancelJobs(where matching: @escaping @Sendable (PrintJob) -> Bool, message: String) async throws(CupsError) -> [Int32] {
        let jobs = try await cups.run { client throws(CupsError) in try client.activeJobs() }.filter(matching)
        var cancelled: [Int32] = []
        for job in jobs {
            let id = job.id
            do throws(CupsError) {
                try await cups.run { client throws(CupsError) in try client.cancel(job: id, message: message) }
            } catch where error.code == .notFound {
                continue
            }
            cancelled.append(id)
            record(event(
                "print.job_cancelled", .peripheralActivity, 3, "Cancel", .medium, .success,
                "cancelled print job \(id) of \(Printable.escape(job.user)) on \(Printable.escape(job.queue)): \(message)",
                ["job": .int(Int64(id)), "queue": .string(job.queue), "user": .string(job.user), "title": titleValue(job.title), "reason": .string(message)],
                user: job.user
            ))
        }
        return cancelled
    }

    private func checkHardeningState() async throws(CupsError) {
        var state = hardening
        state.checkedAt = clock.now()
        let conf: String
        do throws(CupsError) {
            conf = try await cups.run { client throws(CupsError) in try client.file("/admin/conf/cupsd.conf") }
            state.error = nil
        } catch where error.code == .refused {
            state.error = "cannot read cupsd.conf through cupsd: \(error.message)"
            state.findings = [state.error ?? ""]
            hardening = state
            reportHardening()
            return
        }
        state.findings = CupsdHardening.findings(cupsdConf: conf)
        if policy.hardening == .repair, !state.findings.isEmpty, let fixed = CupsdHardening.repaired(cupsdConf: conf) {
            let before = state.findings
            try await cups.run { client throws(CupsError) in try client.put("/admin/conf/cupsd.conf", fixed) }
            // cupsd reloads with it; wait for it to answer again (its own restart is no outage).
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                if (try? await cups.run({ client throws(CupsError) in try client.queues() })) != nil { break }
                try? await Task.sleep(for: .milliseconds(50))
            }
            state.findings = CupsdHardening.findings(cupsdConf: fixed)
            state.repairedAt = clock.now()
            logger.notice("hardened cupsd's operation policy", ("fixed", before.joined(separator: "; ")))
            record(event(
                "print.hardening_repaired", .deviceConfigStateChange, 2, "Update", .medium, .success,
                "cupsd's operation policy let users get around the print gate; Holdfast repaired \(before.count) finding(s) (bypassing operations @SYSTEM's only, job submission authenticated): "
                    + before.joined(separator: "; "),
                ["fixed": .array(before.map(JSONValue.string))]
            ))
        }
        var filesConf = [UInt8]()
        if let bytes = SmallFile.read(serverRoot + "/cups-files.conf", limit: 1 << 20) { filesConf = bytes }
        state.fileDevice = filesConf.isEmpty ? nil : (CupsdHardening.fileDevice(cupsFilesConf: String(decoding: filesConf, as: UTF8.self)) ?? false)
        if state.fileDevice == true {
            state.findings.append("cups-files.conf sets FileDevice Yes: file: queues could be added (Holdfast removes them; set FileDevice No)")
        }
        hardening = state
        reportHardening()
    }

    /// A drift event when the set of findings changes (not every 30 s while it stays).
    private func reportHardening() {
        guard hardening.findings != hardening.reported else { return }
        hardening.reported = hardening.findings
        if hardening.findings.isEmpty {
            record(event(
                "print.hardening_ok", .complianceFinding, 2, "Update", .informational, .success,
                "cupsd's operation policy limits the gate-bypassing operations to @SYSTEM", [:]
            ))
            return
        }
        logger.warning("cupsd is not hardened", ("findings", hardening.findings.joined(separator: "; ")))
        record(event(
            "print.hardening_drift", .complianceFinding, 1, "Create", .high, .failure,
            "cupsd is not hardened (\(policy.hardening == .repair ? "repair failed" : "policy says report")): "
                + hardening.findings.joined(separator: "; "),
            ["findings": .array(hardening.findings.map(JSONValue.string))]
        ))
    }

    // MARK: Policy

    public func update(policy newPolicy: PrintPolicy, section: JSONValue?) {
        policySection = section ?? .null
        guard newPolicy != policy else { return }
        policy = newPolicy
        reconcileRequested = true
        hardening.checkedAt = nil
    }

    // MARK: Gate

    /// The verdict for one job the backend asks about; journaled, and charged to the ledger when
    /// allowed. A ledger that cannot be saved refuses the job (fail closed).
    public func gate(_ request: GateRequest) async -> GateVerdict {
        // The question must describe a job cupsd is printing now, for that user on that queue: a
        // process running as lp (any CUPS filter) cannot spend someone's quota or forge events.
        if let mismatch = await verifyWithCups(request) {
            deniedJobs += 1
            record(event(
                "print.gate_mismatch", .peripheralActivity, 2, "Deny", .high, .failure,
                "refused a print.gate question that does not match cupsd's job \(request.job): \(mismatch)",
                ["job": .int(request.job), "user": .string(request.user), "queue": .string(request.queue), "mismatch": .string(mismatch)]
            ))
            return GateVerdict(allowed: false, reason: "the question does not match cupsd's job: \(mismatch)", chargedPages: 0, rule: nil)
        }
        let now = clock.now()
        let today = Self.localDay(now)
        var verdict = PrintGate.decide(
            request, policy: policy, ledger: ledger, today: today, lockdown: lockdown?.reason,
            exceptions: exceptions.filter { $0.isActive(at: now) }, isMember: Self.isMember
        )
        if verdict.allowed, let id = verdict.exception {
            // Charged to the exception, saved before the job may print (fail closed).
            var next = exceptions
            if let index = next.firstIndex(where: { $0.id == id }) { next[index].used += verdict.chargedPages }
            do {
                try journal.setState(Self.exceptionsKey, encoding: next)
                exceptions = next
            } catch {
                verdict = GateVerdict(allowed: false, reason: "the exception's page count cannot be saved (\(error)); refusing", chargedPages: 0, rule: verdict.rule)
            }
        } else if verdict.allowed {
            var charged = ledger
            charged.charge(user: request.user, pages: verdict.chargedPages, on: today)
            do {
                try journal.setState(Self.ledgerKey, Array(JSONEncoder.sortedKeys.encode(charged)))
                ledger = charged
            } catch {
                verdict = GateVerdict(allowed: false, reason: "the quota ledger cannot be saved (\(error)); refusing", chargedPages: 0, rule: verdict.rule)
            }
        }
        if verdict.allowed { allowedJobs += 1 } else { deniedJobs += 1 }
        let used = ledger.use(of: request.user, on: today)
        var details: [String: JSONValue] = [
            "job": .int(request.job), "user": .string(request.user), "queue": .string(request.queue),
            "device_uri": .string(request.deviceURI), "title": titleValue(request.title), "copies": .int(request.copies),
            "pages": request.pages.map(JSONValue.int) ?? .null, "format": .string(request.format), "bytes": .int(request.bytes),
            "verdict": .string(verdict.allowed ? "allow" : "deny"), "reason": .string(verdict.reason),
            "pages_today": .int(used.pages), "jobs_today": .int(used.jobs),
        ]
        if verdict.allowed { details["charged_pages"] = .int(verdict.chargedPages) }
        if let rule = verdict.rule { details["rule"] = .string(rule) }
        if let id = verdict.exception, let exception = exceptions.first(where: { $0.id == id }) {
            details["exception"] = .object(["id": .string(id), "number": .int(exception.number), "used": .int(exception.used), "pages": .int(exception.pages)])
        }
        if let note = request.pageNote { details["page_note"] = .string(note) }
        if request.pagesDeclared { details["pages_declared"] = true }
        let pages = request.pages.map { "\($0) page\($0 == 1 ? "" : "s")" } ?? "uncounted pages"
        record(event(
            "print.job", .peripheralActivity, verdict.allowed ? 1 : 2, verdict.allowed ? "Allow" : "Deny",
            verdict.allowed ? .informational : .medium, verdict.allowed ? .success : .failure,
            "print job \(request.job) of \(Printable.escape(request.user)) on \(Printable.escape(request.queue)) (\(pages) × \(request.copies)) "
                + (verdict.allowed ? "allowed: " : "cancelled: ") + verdict.reason,
            details, user: request.user
        ))
        return verdict
    }

    /// nil when cupsd has job `request.job` processing on `request.queue` for `request.user`; else
    /// what differs. cupsd reloading (after a hardening repair) is waited out for up to 3 s.
    private func verifyWithCups(_ request: GateRequest) async -> String? {
        guard let id = Int32(exactly: request.job) else { return "job id \(request.job) is out of range" }
        let deadline = ContinuousClock.now + .seconds(3)
        while true {
            do throws(CupsError) {
                let record = try await gateCups.run { client throws(CupsError) in try client.jobRecord(id) }
                if record.state != 5 { return "job \(id) is not processing (state \(record.state))" }
                if record.user != request.user { return "job \(id) belongs to \(Printable.escape(record.user)), not \(Printable.escape(request.user))" }
                if record.queue.lowercased() != request.queue.lowercased() {
                    return "job \(id) is on \(Printable.escape(record.queue)), not \(Printable.escape(request.queue))"
                }
                return nil
            } catch where error.code == .notFound {
                return "cupsd has no job \(id)"
            } catch {
                guard ContinuousClock.now < deadline else { return "cupsd cannot confirm job \(id): \(error.message)" }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// `YYYY-MM-DD` of the workstation's local calendar day (its time zone, daylight saving included).
    static func localDay(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
    }

    /// Whether `user` is in `group` (primary or supplementary), through NSS with the reentrant
    /// calls (other threads look users up too).
    static func isMember(_ user: String, _ group: String) -> Bool {
        guard let account = passwd(user), let gid = groupID(group) else { return false }
        if account.gid == gid { return true }
        var count: Int32 = 64
        for _ in 0..<4 {
            var groups = [gid_t](repeating: 0, count: Int(count))
            var found = count
            if getgrouplist(user, account.gid, &groups, &found) >= 0 {
                return groups.prefix(Int(found)).contains(gid)
            }
            count = max(found, count * 2)
        }
        return false
    }

    /// uid and primary gid of `user`.
    static func passwd(_ user: String) -> (uid: UInt32, gid: UInt32)? {
        var entry = Glibc.passwd()
        var buffer = [CChar](repeating: 0, count: 4_096)
        var result: UnsafeMutablePointer<Glibc.passwd>?
        guard getpwnam_r(user, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return (entry.pw_uid, entry.pw_gid)
    }

    static func groupID(_ name: String) -> UInt32? {
        var entry = group()
        var buffer = [CChar](repeating: 0, count: 16_384)
        var result: UnsafeMutablePointer<group>?
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }

    private func titleValue(_ title: String) -> JSONValue {
        switch policy.title {
        case .full: .string(title)
        case .hashed: .string("sha256:" + SHA256.hex(Array(title.utf8)))
        case .omitted: .null
        }
    }

    // MARK: Lockdown

    /// Turns the print lockdown on (cancels every active job; the gate refuses new ones) or off.
    /// Persisted: a restart keeps it. Returns the cancelled job ids.
    public func setLockdown(_ reason: String?, by who: String) async throws(CupsError) -> [Int32] {
        let now = clock.now()
        if let reason {
            let state = Lockdown(reason: reason.isEmpty ? "no reason given" : reason, since: now, by: who)
            do {
                try journal.setState(Self.lockdownKey, Array(JSONEncoder.sortedKeys.encode(state)))
            } catch {
                throw CupsError(.refused, "the lockdown cannot be saved: \(error)")
            }
            lockdown = state
            record(event(
                "print.lockdown", .deviceConfigStateChange, 2, "Lock", .high, .success,
                "printing locked down by \(who): \(state.reason)", ["reason": .string(state.reason), "by": .string(who)]
            ))
            return try await cancelJobs(where: { _ in true }, message: "\(Self.messagePrefix) printing is locked down")
        }
        guard lockdown != nil else { return [] }
        _ = try? journal.removeState(Self.lockdownKey)
        lockdown = nil
        record(event(
            "print.lockdown_released", .deviceConfigStateChange, 2, "Unlock", .medium, .success,
            "print lockdown released by \(who)", ["by": .string(who)]
        ))
        return []
    }

    /// At start: a lockdown that was in force before the restart cancels what waited meanwhile.
    public func reapplyLockdown() async {
        guard lockdown != nil else { return }
        _ = try? await cancelJobs(where: { _ in true }, message: "\(Self.messagePrefix) printing is locked down")
    }


    // MARK: Status

    /// What `holdfast print status` shows besides the queues it reads from CUPS itself.
    public func statusReport() -> JSONValue {
        let today = Self.localDay(clock.now())
        var quota: [String: JSONValue] = [
            "day": .string(today),
            "pages_per_day": policy.quota.pagesPerDay.map(JSONValue.int) ?? .null,
            "jobs_per_day": policy.quota.jobsPerDay.map(JSONValue.int) ?? .null,
        ]
        var users: [String: JSONValue] = [:]
        if ledger.day == today {
            for (user, use) in ledger.users { users[user] = .object(["pages": .int(use.pages), "jobs": .int(use.jobs)]) }
        }
        quota["users"] = .object(users)
        quota["exceptions"] = .array(exceptions.map { .object(Self.exceptionDetails($0)) })
        var hardeningValue: [String: JSONValue] = [
            "hardened": .bool(hardening.checkedAt != nil && hardening.findings.isEmpty),
            "findings": .array(hardening.findings.map(JSONValue.string)),
            "action": .string(policy.hardening.rawValue),
            "file_device": hardening.fileDevice.map(JSONValue.bool) ?? .null,
        ]
        if let at = hardening.checkedAt { hardeningValue["checked_at"] = .string(at.formatted(.iso8601)) }
        if let at = hardening.repairedAt { hardeningValue["repaired_at"] = .string(at.formatted(.iso8601)) }
        var result: [String: JSONValue] = [
            "policy": policySection,
            "cups_server": .string(cups.server),
            "cups": .string(cupsState),
            "hardening": .object(hardeningValue),
            "quota": .object(quota),
            "unapproved_action": .string(policy.unapproved.rawValue),
            "queues": .array(queues.map { Self.queueValue($0.queue, $0.approval) }),
            "jobs": .object(["allowed": .int(Int64(allowedJobs)), "denied": .int(Int64(deniedJobs))]),
        ]
        if let lastReconcile { result["reconciled_at"] = .string(lastReconcile.formatted(.iso8601)) }
        if let lockdown {
            result["lockdown"] = .object(["reason": .string(lockdown.reason), "since": .string(lockdown.since.formatted(.iso8601)), "by": .string(lockdown.by)])
        } else {
            result["lockdown"] = .null
        }
        return .object(result)
    }

    static func queueValue(_ queue: PrintQueue, _ approval: Approval) -> JSONValue {
        .object([
            "name": .string(queue.name), "device_uri": .string(queue.realURI.uri), "gated": .bool(queue.realURI.gated),
            "approved": .bool(approval.approved), "reason": .string(approval.reason), "class": .bool(queue.isClass),
            "temporary": .bool(queue.isTemporary),
        ])
    }

    /// The `print` block of `holdfast status`.
    public func statusSummary() -> JSONValue {
        .object([
            "enabled": true, "cups": .string(cupsState), "queues": .int(Int64(queues.count)),
            "unapproved": .int(Int64(queues.filter { !$0.approval.approved }.count)),
            "hardened": .bool(hardening.checkedAt != nil && hardening.findings.isEmpty),
            "locked_down": .bool(lockdown != nil),
            "jobs_allowed": .int(Int64(allowedJobs)), "jobs_denied": .int(Int64(deniedJobs)),
        ])
    }

    // MARK: Events

    private func record(_ event: Event) { recorder.record(event) }

    private func event(
        _ kind: String, _ eventClass: EventClass, _ activity: Int, _ activityName: String, _ severity: Severity, _ status: Status,
        _ message: String, _ details: [String: JSONValue], user: String? = nil
    ) -> Event {
        Event(
            kind: kind, eventClass: eventClass, activityID: activity, activityName: activityName, time: clock.now(),
            severity: severity, status: status, message: message,
            actor: user.map { name in Actor(user: .init(uid: Self.passwd(name).map { String($0.uid) }, name: name)) },
            details: details
        )
    }
}

extension JSONEncoder {
    static var sortedKeys: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}

extension PrintService: LockdownEnforcer {
    public func enforceLockdown(_ entry: LockdownEntry?) async -> String? {
        do {
            if let entry {
                // Already locked (a restart): only what waited meanwhile is cancelled.
                if lockdown != nil {
                    await reapplyLockdown()
                    return nil
                }
                lastLockdownCancelled = try await setLockdown(entry.reason, by: entry.by)
            } else {
                _ = try await setLockdown(nil, by: "lockdown release")
            }
            return nil
        } catch {
            return error.message
        }
    }
}
