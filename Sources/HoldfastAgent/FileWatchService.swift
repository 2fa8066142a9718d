public import FileWatch
import FoundationEssentials
public import HoldfastCore
public import HoldfastStore
public import Lockdown
#if canImport(Glibc)
import Glibc
#endif

/// FileWatch as a service: the audit intake (records from the auditd plugin over a Unix socket),
/// classification, per-user baselines, alerts and blocks, the kernel rule check, and coverage
/// (the kernel's `lost` counter, serial gaps, the forwarder's drops). docs/filewatch.md.
public actor FileWatchService: Service {
    public nonisolated let name = "filewatch"

    /// How the kernel's rules are looked after (`[filewatch] rules`).
    public enum RuleMode: String, Sendable {
        case manage, check, off
    }

    let intakePath: String
    let ruleSet: AuditRuleSet?
    let ruleMode: RuleMode
    let kernel: (any KernelAuditControl)?
    let journal: Journal
    let recorder: EventRecorder
    let logger: Logger
    let clock: any TimeSource
    let lockdown: LockdownController?
    let procRoot: String
    let sysRoot: String

    private var policy: FileWatchPolicy
    private var classifier: FileActivityClassifier
    private var detector: FileWatchDetector
    private var gaps = SerialGapTracker()
    private var counters = Counters()
    private var coverage = Coverage()
    private var lastRuleCheck: (at: Date, present: Int, missing: Int, added: Int, error: String?)?
    private var lastLost: UInt32?
    private var baselineDirty = false
    private var nextConnection = 0
    private var connections: [Int: ConnectionState] = [:]
    /// Mounts under a root already made part of its watched tree (root, mount point, device).
    private var taggedMounts: Set<String> = []
    /// What FileWatch cannot see on this machine (shown in status, journaled once at start).
    private var blindSpots: [String] = []

    static let baselineKey = "filewatch.baseline"

    struct Counters: Sendable {
        var records = 0
        var events = 0
        var malformed = 0
        var late = 0
        var activities = 0
        var alerts = 0
        var blocks = 0
        var refusedPeers = 0
        var forwarderReceived: UInt64 = 0
        var forwarderDropped: UInt64 = 0
        /// Events per audit rule key (the first 64 keys seen; the rest under "other").
        var byKey: [String: Int] = [:]
    }

    /// Whether FileWatch saw everything since it started; when not, why (a posture finding).
    struct Coverage: Sendable {
        var complete = true
        var since: Date?
        var reasons: [String: Int64] = [:]
    }

    struct ConnectionState: Sendable {
        let peer: PeerCredentials
        let opened: Date
        var records = 0
        var events = 0
    }

    public init(
        policy: FileWatchPolicy, roots: [String], intakePath: String, ruleMode: RuleMode, ruleKey: String = "holdfast",
        journal: Journal, recorder: EventRecorder, logger: Logger, lockdown: LockdownController?,
        kernel: (any KernelAuditControl)? = NetlinkAudit(), clock: any TimeSource = SystemTimeSource(),
        procRoot: String = "/proc", sysRoot: String = "/sys"
    ) {
        self.policy = policy
        self.intakePath = intakePath
        ruleSet = try? AuditRuleSet(roots: roots, keyPrefix: ruleKey)
        self.ruleMode = ruleMode
        self.kernel = ruleMode == .off ? nil : kernel
        self.journal = journal
        self.recorder = recorder
        self.logger = logger.with("service", "filewatch")
        self.clock = clock
        self.lockdown = lockdown
        self.procRoot = procRoot
        self.sysRoot = sysRoot
        let prefixes = RemovablePrefixes(policy.removablePrefixes)
        classifier = FileActivityClassifier(roots: ruleSet?.roots ?? roots, media: MountTable.read(procRoot: procRoot, sysRoot: sysRoot, prefixes: prefixes))
        var stored: BaselineSnapshot?
        var unreadable: String?
        if let bytes = try? journal.state(Self.baselineKey) {
            do {
                stored = try BaselineSnapshot.decode(bytes)
            } catch {
                unreadable = error.message
            }
        }
        detector = FileWatchDetector(policy: policy, baseline: stored)
        if let unreadable {
            recorder.record(Event(
                kind: "filewatch.baseline_unreadable", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Load",
                time: clock.now(), severity: .high, status: .failure,
                message: "the stored FileWatch baseline could not be read (\(unreadable)); every user starts a new warm-up",
                details: ["error": .string(unreadable)]
            ))
        }
    }

    // MARK: Running

    public func run() async throws {
        let listener = try IntakeListener(path: intakePath)
        defer { listener.close() }
        logger.notice("audit intake listening", ("socket", intakePath), ("rules", ruleMode.rawValue))
        await checkRules()
        refreshMounts()
        checkKernel()
        checkBlindSpots()
        try await withThrowingDiscardingTaskGroup { group in
            defer { group.cancelAll() }
            group.addTask { [self] in await housekeeping() }
            while !Task.isCancelled {
                _ = await Readiness.wait(listener.descriptor, for: .read, timeout: .seconds(1))
                while true {
                    let client = accept(listener.descriptor, nil, nil)
                    if client < 0 {
                        if errno == EINTR || errno == ECONNABORTED { continue }
                        if errno == EAGAIN || errno == EWOULDBLOCK { break }
                        if errno == EMFILE || errno == ENFILE {
                            try await Task.sleep(for: .milliseconds(100))
                            break
                        }
                        throw IntakeError("accept: \(String(cString: strerror(errno)))")
                    }
                    _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                    _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                    // Records are evidence: only root (auditd runs its plugins as root) may hand them in.
                    guard let peer = try? PeerCredentials.of(client), peer.uid == 0 else {
                        let peer = try? PeerCredentials.of(client)
                        close(client)
                        refused(peer)
                        continue
                    }
                    let id = opened(peer)
                    group.addTask { [self] in
                        await read(client, id: id)
                        close(client)
                        await closed(id)
                    }
                }
            }
        }
    }

    /// One forwarder connection: audit lines go through the stream; `#holdfast-forwarder` lines
    /// are the forwarder's own reports.
    private nonisolated func read(_ client: Int32, id: Int) async {
        var stream = AuditStream()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var carry: [UInt8] = []
        var events: [AuditEvent] = []
        var late = 0
        while !Task.isCancelled {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(client, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if !(await Readiness.wait(client, for: .read, timeout: .seconds(1))) {
                        // Quiet: events still open are complete by now (the kernel writes an
                        // event's records together).
                        stream.flush { if case .event(let event) = $0 { events.append(event) } else { late += 1 } }
                        if !events.isEmpty || late > 0 { await ingest(events, late: late, statistics: stream.statistics, connection: id) }
                        events.removeAll(keepingCapacity: true)
                        late = 0
                    }
                    continue
                }
                break
            }
            if count == 0 { break }
            // Split at the last newline; lines starting `#holdfast-forwarder ` are reports.
            // Only the new bytes are searched: a line that never ends must not cost a rescan of
            // everything carried on every read.
            guard let newEnd = buffer[0..<count].lastIndex(of: UInt8(ascii: "\n")) else {
                carry += buffer[0..<count]
                if carry.count > 1 << 20 {
                    // Longer than any audit record: fed as one line, which the parser refuses and counts.
                    carry.append(UInt8(ascii: "\n"))
                    carry.withUnsafeBytes { bytes in stream.feed(bytes) { _ in } }
                    carry = []
                }
                continue
            }
            var chunk = carry
            chunk += buffer[0...newEnd]
            let end = chunk.count - 1
            carry = Array(buffer[(newEnd + 1)..<count])
            var reports: [String] = []
            var start = 0
            var runStart = 0
            while start <= end {
                let lineEnd = chunk.withUnsafeBytes { bytes -> Int in
                    guard let base = bytes.baseAddress, let found = memchr(base + start, 0x0A, end + 1 - start) else { return end }
                    return UnsafeRawPointer(found) - base
                }
                if chunk[start] == UInt8(ascii: "#"), Self.isReport(chunk[start..<lineEnd]) {
                    if runStart < start { chunk[runStart..<start].withUnsafeBytes { bytes in stream.feed(bytes) { output in
                        if case .event(let event) = output { events.append(event) } else { late += 1 }
                    } } }
                    reports.append(String(decoding: chunk[start..<lineEnd], as: UTF8.self))
                    runStart = lineEnd + 1
                }
                start = lineEnd + 1
            }
            if runStart <= end {
                chunk[runStart...end].withUnsafeBytes { bytes in stream.feed(bytes) { output in
                    if case .event(let event) = output { events.append(event) } else { late += 1 }
                } }
            }
            if !events.isEmpty || late > 0 || !reports.isEmpty {
                await ingest(events, late: late, statistics: stream.statistics, connection: id, reports: reports)
                events.removeAll(keepingCapacity: true)
                late = 0
            }
            // A small read: let a few milliseconds of records gather (a wake-up per batch, not
            // per record; the forwarder queues meanwhile).
            if count < 1 << 14 { try? await Task.sleep(for: .milliseconds(20)) }
        }
        stream.finish { if case .event(let event) = $0 { events.append(event) } else { late += 1 } }
        await ingest(events, late: late, statistics: stream.statistics, connection: id)
    }

    private func opened(_ peer: PeerCredentials) -> Int {
        nextConnection += 1
        connections[nextConnection] = ConnectionState(peer: peer, opened: clock.now())
        logger.info("forwarder connected", ("peer.pid", "\(peer.pid)"))
        return nextConnection
    }

    private func closed(_ id: Int) {
        guard let state = connections.removeValue(forKey: id) else { return }
        logger.info("forwarder disconnected", ("peer.pid", "\(state.peer.pid)"), ("records", "\(state.records)"))
    }

    private func refused(_ peer: PeerCredentials?) {
        counters.refusedPeers += 1
        guard counters.refusedPeers <= 20 || counters.refusedPeers % 100 == 0 else { return }
        record(Event(
            kind: "filewatch.intake_refused", eventClass: .apiActivity, activityID: 99, activityName: "Refuse",
            time: clock.now(), severity: .medium, status: .failure,
            message: "refused an audit intake connection from uid \(peer.map { String($0.uid) } ?? "unknown"): only root may hand in audit records",
            actor: peer.map { Actor(user: .init(uid: String($0.uid)), process: .init(pid: Int($0.pid))) },
            details: ["refused_total": .int(Int64(counters.refusedPeers))]
        ))
    }

    // MARK: Events

    /// Statistics per connection are cumulative; what was counted before is subtracted.
    private func ingest(_ events: [AuditEvent], late: Int, statistics: AuditStreamStatistics, connection id: Int, reports: [String] = []) async {
        if var state = connections[id] {
            counters.records += statistics.records - state.records
            counters.malformed = max(counters.malformed, statistics.malformedTotal)
            state.records = statistics.records
            state.events += events.count
            connections[id] = state
        }
        counters.events += events.count
        counters.late += late
        for report in reports { forwarderReport(report) }
        var mountsChanged = false
        for event in events {
            if !Self.isDaemonEvent(event) {
                let found = gaps.saw(node: event.node, serial: event.serial)
                if found > 0 { incomplete("serial_gap", by: Int64(found), "\(found) audit serial numbers never arrived (the kernel or the path to holdfastd lost them)") }
                if Self.lostItsSyscall(event) {
                    incomplete("partial_event", by: 1, "audit event \(event.serial) arrived without its SYSCALL record (auditd's dispatcher queue drops single records when it overflows: raise q_depth in auditd.conf); who did it is lost")
                }
            }
            let summary = AuditEventSummary(event)
            if let key = summary.key {
                let slot = counters.byKey[key] != nil || counters.byKey.count < 64 ? key : "other"
                counters.byKey[slot, default: 0] += 1
            }
            guard var activity = classifier.classify(summary) else { continue }
            let wallClock = Int64(clock.now().timeIntervalSince1970 * 1_000)
            counters.activities += 1
            // A time stamp from the future (a clock step, a forged log) must not freeze the
            // sliding hour: no event is later than a minute past this machine's clock.
            activity.time = min(activity.time, wallClock + 60_000)
            if activity.operation == .mount {
                mountsChanged = true
                continue
            }
            for output in detector.observe(activity) { await act(output, activity) }
            baselineDirty = true
        }
        if mountsChanged { refreshMounts() }
    }

    static let reportPrefix = Array("#holdfast-forwarder ".utf8)

    /// Only the forwarder's own lines are reports; anything else starting `#` is fed to the parser
    /// (and counted malformed there).
    static func isReport(_ line: ArraySlice<UInt8>) -> Bool { line.starts(with: reportPrefix) }

    /// auditd's own records (DAEMON_*, 1200–1299) carry auditd's serials, not the kernel's.
    /// A syscall event's records (CWD, PATH, EXECVE) without the SYSCALL record that names the
    /// user: a record was lost on the way although its serial arrived, so no serial gap shows it.
    /// (io_uring's events carry URINGOP instead of SYSCALL.)
    static func lostItsSyscall(_ event: AuditEvent) -> Bool {
        var auxiliary = false
        for record in event.records {
            switch record.kind {
            case .syscall: return false
            case .path, .cwd, .execve: auxiliary = true
            default: if record.type == "URINGOP" { return false }
            }
        }
        return auxiliary
    }

    static func isDaemonEvent(_ event: AuditEvent) -> Bool {
        guard let first = event.records.first else { return true }
        return first.type.hasPrefix("DAEMON_")
    }

    /// `#holdfast-forwarder hello|stats|dropped|bye key=value…`
    private func forwarderReport(_ line: String) {
        let words = line.split(separator: " ")
        guard words.count >= 2 else { return }
        var values: [String: UInt64] = [:]
        for word in words.dropFirst(2) {
            let parts = word.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let number = UInt64(parts[1]) { values[String(parts[0])] = number }
        }
        switch words[1] {
        case "stats", "bye":
            if let received = values["received"] { counters.forwarderReceived = received }
            if let dropped = values["dropped"] { counters.forwarderDropped = dropped }
        case "dropped":
            let records = values["records"] ?? 0
            if let total = values["total_dropped"] { counters.forwarderDropped = total }
            incomplete("forwarder_dropped", by: Int64(clamping: records), "the auditd plugin dropped \(records) records (\(values["bytes"] ?? 0) bytes): holdfastd did not take them in time, or before a plugin stopped")
        case "hello":
            logger.info("forwarder hello", ("line", line))
        default:
            break
        }
    }

    /// Coverage is incomplete: an event (rate-limited by reason) and a posture finding.
    private func incomplete(_ reason: String, by count: Int64, _ message: String) {
        let first = coverage.reasons[reason] == nil
        let before = coverage.reasons[reason, default: 0]
        let (sum, overflow) = before.addingReportingOverflow(count)
        coverage.reasons[reason] = overflow ? .max : sum
        if coverage.complete {
            coverage.complete = false
            coverage.since = clock.now()
        }
        // The first of each reason at once; then one per 100 occurrences' worth is enough.
        guard first || coverage.reasons[reason, default: 0] / 100 != before / 100 else { return }
        logger.error("FileWatch coverage incomplete", ("reason", reason), ("count", "\(count)"))
        record(Event(
            kind: "filewatch.coverage_incomplete", eventClass: .complianceFinding, activityID: 1, activityName: "Create",
            time: clock.now(), severity: .high, status: .failure,
            message: "FileWatch coverage incomplete: \(message)",
            details: ["reason": .string(reason), "count": .int(count), "total": .int(coverage.reasons[reason, default: 0])]
        ))
    }

    private func act(_ output: DetectorOutput, _ activity: FileActivity) async {
        switch output {
        case .decision(let decision):
            let event = Self.decisionEvent(decision, policy: policy)
            if decision.threshold.action == .block { counters.blocks += 1 } else { counters.alerts += 1 }
            record(event)
            logger.warning(
                decision.threshold.action == .block ? "FileWatch block" : "FileWatch alert",
                ("user.uid", "\(decision.auid)"), ("metric", decision.threshold.metric.rawValue), ("observed", "\(decision.observed)")
            )
            guard decision.threshold.action == .block else { return }
            let scopes = policy.blockScopes.compactMap(LockdownScope.init(rawValue:))
            guard let lockdown else {
                logger.error("a FileWatch block has no lockdown to engage")
                return
            }
            do {
                try await lockdown.engage(
                    scopes, reason: Self.describe(decision), by: "filewatch", source: "filewatch", cause: event.id.uuidString.lowercased()
                )
            } catch {
                logger.error("the FileWatch block could not be saved", ("error", "\(error)"))
            }
        case .burstEnded(let summary):
            record(Self.burstEvent(summary))
        case .blockHeld(let decision):
            // Still crossing: if an admin released the lockdown meanwhile, the block holds again.
            guard let lockdown else { return }
            let scopes = policy.blockScopes.compactMap(LockdownScope.init(rawValue:))
            var open: [LockdownScope] = []
            // A scope lifted by a break-glass code counts as open: a new crossing shuts it again.
            for scope in scopes where await lockdown.inForce(scope) == nil { open.append(scope) }
            guard !open.isEmpty else { return }
            let event = Self.decisionEvent(decision, policy: policy)
            counters.blocks += 1
            record(event)
            do {
                try await lockdown.engage(open, reason: Self.describe(decision) + " (still crossing after a release)", by: "filewatch", source: "filewatch", cause: event.id.uuidString.lowercased())
            } catch {
                logger.error("the FileWatch block could not be saved", ("error", "\(error)"))
            }
        }
    }

    static func describe(_ decision: FileDecision) -> String {
        let who = decision.userName.map { "\($0) (auid \(decision.auid))" } ?? "auid \(decision.auid)"
        let against = decision.basis == "relative"
            ? "baseline \(Self.number(decision.baseline ?? 0)), threshold \(decision.limit) (\(Self.number(decision.threshold.relative ?? 0))× baseline, at least \(decision.threshold.minimum))"
            : "threshold \(decision.limit) per hour"
        return "\(who): \(decision.threshold.metric.rawValue) \(decision.observed) in the last hour; \(against); rule \(decision.threshold.id)"
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int64(value)) : String(Double((value * 10).rounded() / 10))
    }

    static func decisionEvent(_ decision: FileDecision, policy: FileWatchPolicy) -> Event {
        let block = decision.threshold.action == .block
        let severity: Severity = block || decision.threshold.metric == .removableFilesWritten ? .high : .medium
        var details: [String: JSONValue] = [
            "action": .string(decision.threshold.action.rawValue),
            "threshold": .string(decision.threshold.id),
            "metric": .string(decision.threshold.metric.rawValue),
            "observed": .int(Int64(decision.observed)),
            "limit": .int(Int64(decision.limit)),
            "basis": .string(decision.basis),
            "baseline": decision.baseline.map(JSONValue.double) ?? .null,
            "spread": decision.spread.map(JSONValue.double) ?? .null,
            "ratio": decision.ratio.map(JSONValue.double) ?? .null,
            "window_seconds": 3_600,
            "sample_paths": .array(decision.samplePaths.map(JSONValue.string)),
            "folded_since_last": .int(Int64(decision.folded)),
            "time_zone": .string(policy.timeZone),
        ]
        if block { details["scopes"] = .array(policy.blockScopes.map(JSONValue.string)) }
        if let exe = decision.exe { details["exe"] = .string(exe) }
        if let relative = decision.threshold.relative { details["relative"] = .double(relative) }
        return Event(
            kind: block ? "filewatch.block" : "filewatch.alert", eventClass: .detectionFinding, activityID: 1, activityName: "Create",
            time: Date(timeIntervalSince1970: Double(decision.time) / 1_000), severity: severity, status: block ? .success : nil,
            message: (block ? "FileWatch blocked (lockdown of \(policy.blockScopes.joined(separator: ", "))): " : "FileWatch alert: ") + describe(decision)
                + (decision.folded > 0 ? " (\(decision.folded) more crossings since the previous alert)" : ""),
            actor: Actor(user: .init(uid: String(decision.auid), name: decision.userName), process: .init(pid: decision.pid.map { Int($0) }, name: decision.comm)),
            details: details
        )
    }

    static func burstEvent(_ summary: BurstSummary) -> Event {
        let who = summary.userName.map { "\($0) (auid \(summary.auid))" } ?? "auid \(summary.auid)"
        return Event(
            kind: "filewatch.burst_ended", eventClass: .detectionFinding, activityID: 2, activityName: "Update",
            time: Date(timeIntervalSince1970: Double(summary.ended) / 1_000), severity: .low,
            message: "FileWatch: \(who)'s \(summary.threshold.metric.rawValue) burst under rule \(summary.threshold.id) is over: \(summary.count) activities past the threshold, peak \(summary.peak) in an hour, \(summary.alerts) alert(s)",
            actor: Actor(user: .init(uid: String(summary.auid), name: summary.userName)),
            details: [
                "threshold": .string(summary.threshold.id), "metric": .string(summary.threshold.metric.rawValue),
                "action": .string(summary.threshold.action.rawValue), "count": .int(Int64(summary.count)), "peak": .int(Int64(summary.peak)),
                "alerts": .int(Int64(summary.alerts)),
                "started": .string(Date(timeIntervalSince1970: Double(summary.started) / 1_000).formatted(.iso8601)),
            ]
        )
    }

    private func record(_ event: Event) { recorder.record(event) }

    // MARK: Housekeeping

    /// Every second: bursts end on the wall clock when the stream is quiet. Every 10 s: mounts,
    /// the kernel's lost counter. Every minute: the rules. Every 5 minutes: the baseline is saved.
    private func housekeeping() async {
        var second = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            second += 1
            tick()
            if second % 10 == 0 {
                refreshMounts()
                checkKernel()
            }
            if second % 60 == 0 { await checkRules() }
            if second % 300 == 0 { saveBaseline() }
        }
        saveBaseline()
    }

    private func tick() {
        let now = Int64(clock.now().timeIntervalSince1970 * 1_000)
        for output in detector.tick(now: now) {
            if case .burstEnded(let summary) = output { record(Self.burstEvent(summary)) }
        }
    }

    private func refreshMounts() {
        let table = MountTable.read(procRoot: procRoot, sysRoot: sysRoot, prefixes: RemovablePrefixes(policy.removablePrefixes))
        classifier = FileActivityClassifier(roots: classifier.roots, media: table)
        tagNewMounts(table)
    }

    /// Filesystems mounted under a watched root after its rule was loaded (a stick udisks mounts
    /// under /media) are outside the kernel's watched tree until they are made equivalent to it.
    private func tagNewMounts(_ table: MountTable) {
        guard let kernel, let ruleSet else { return }
        var current: Set<String> = []
        for mount in table.mounts {
            for root in ruleSet.roots where mount.mountPoint != root && RemovablePrefixes.isUnder(mount.mountPoint, root) {
                let key = root + "\u{0}" + mount.mountPoint + "\u{0}" + mount.device
                current.insert(key)
                guard !taggedMounts.contains(key) else { continue }
                do {
                    try kernel.makeEquivalent(watched: root, mountPoint: mount.mountPoint)
                    logger.info("watching a new mount under a root", ("root", root), ("mount", mount.mountPoint))
                } catch {
                    logger.error("cannot watch a new mount under a root", ("mount", mount.mountPoint), ("error", error.message))
                    incomplete("mount_untagged", by: 1, "\(mount.mountPoint) is mounted under the watched \(root) but the kernel refused to watch it (\(error.message))")
                }
            }
        }
        taggedMounts = current
    }

    /// io_uring's file operations never pass the syscall exit audit rules see: while io_uring is
    /// open to users (`kernel.io_uring_disabled` absent or 0), a user can write files FileWatch
    /// does not see. Said once per start, and in status.
    private func checkBlindSpots() {
        let setting = (try? String(contentsOfFile: procRoot + "/sys/kernel/io_uring_disabled", encoding: .utf8))
            .map { String($0.filter { !$0.isWhitespace }) }
        let spots = setting == nil || setting == "0"
            ? ["io_uring is enabled for every user (kernel.io_uring_disabled = \(setting ?? "absent")): file writes made through io_uring are not audited; set kernel.io_uring_disabled = 2"]
            : []
        guard spots != blindSpots else { return }
        blindSpots = spots
        for spot in spots {
            record(Event(
                kind: "filewatch.blind_spot", eventClass: .complianceFinding, activityID: 1, activityName: "Create",
                time: clock.now(), severity: .medium, status: .failure, message: "FileWatch blind spot: \(spot)",
                details: ["blind_spot": "io_uring", "io_uring_disabled": setting.map(JSONValue.string) ?? .null]
            ))
        }
    }

    /// The kernel's `lost` counter: records it dropped before auditd (and so we) could see them.
    private func checkKernel() {
        guard let kernel else { return }
        guard let status = try? kernel.status() else { return }
        defer { lastLost = status.lost }
        guard let previous = lastLost, status.lost > previous else { return }
        incomplete("kernel_lost", by: Int64(status.lost - previous), "the kernel dropped \(status.lost - previous) audit records (lost counter \(status.lost); backlog limit \(status.backlogLimit))")
    }

    /// Our rules must be in the kernel; missing ones are reported and, in `manage` mode, added.
    func checkRules() async {
        guard let kernel, let ruleSet else { return }
        let now = clock.now()
        do {
            // /run/media exists only once something was mounted there; the kernel refuses dir= rules for missing directories.
            let set = try AuditRuleSet(roots: ruleSet.roots.filter { access($0, F_OK) == 0 }, keyPrefix: ruleSet.keyPrefix)
            let check = try RuleCheck.run(set, against: kernel)
            var added = 0
            var failures: [String] = []
            if ruleMode == .manage {
                for rule in check.missing {
                    do {
                        try kernel.add(rule)
                        added += 1
                    } catch {
                        failures.append(error.message)
                    }
                }
            }
            let wasMissing = lastRuleCheck?.missing ?? -1
            let firstCheck = lastRuleCheck == nil
            lastRuleCheck = (now, check.present + added, check.missing.count - added, added, failures.first)
            if firstCheck, check.present == 0, added == set.rules.count {
                // Nothing of ours at start (auditd's rules file not installed, or a test rig):
                // loaded, said plainly; a rule that goes missing later is the finding.
                record(Event(
                    kind: "filewatch.rules_loaded", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Load",
                    time: now, severity: .informational, status: .success,
                    message: "FileWatch's \(added) kernel audit rules were not loaded at start; holdfastd loaded them",
                    details: ["added": .int(Int64(added))]
                ))
            } else if !check.missing.isEmpty, check.missing.count != wasMissing || added > 0 {
                record(Event(
                    kind: added > 0 ? "filewatch.rules_restored" : "filewatch.rules_missing", eventClass: .deviceConfigStateChange,
                    activityID: 99, activityName: added > 0 ? "Repair" : "Check", time: now,
                    severity: .high, status: failures.isEmpty && added == check.missing.count ? .success : .failure,
                    message: added > 0
                        ? "\(check.missing.count) of FileWatch's \(set.rules.count) kernel audit rules were missing; \(added) re-added" + (failures.isEmpty ? "" : "; \(failures.count) could not be: \(failures[0])")
                        : "\(check.missing.count) of FileWatch's \(set.rules.count) kernel audit rules are missing (rules = check: not re-added)",
                    details: [
                        "missing": .array(check.missing.map { .string($0.joined(separator: " ")) }), "added": .int(Int64(added)),
                        "failures": .array(failures.map(JSONValue.string)),
                    ]
                ))
            }
        } catch {
            lastRuleCheck = (now, 0, 0, 0, "\(error)")
            logger.error("cannot check the kernel's audit rules", ("error", "\(error)"))
        }
    }

    private func saveBaseline() {
        guard baselineDirty else { return }
        do {
            try journal.setState(Self.baselineKey, detector.snapshot.encoded())
            baselineDirty = false
        } catch {
            logger.error("cannot save the FileWatch baseline", ("error", "\(error)"))
        }
    }

    // MARK: Control

    /// A new policy: thresholds at once; a new time zone starts the baselines over.
    public func update(policy newPolicy: FileWatchPolicy) {
        guard newPolicy != policy else { return }
        if newPolicy.timeZone != policy.timeZone {
            logger.warning("FileWatch time zone changed; baselines start over", ("from", policy.timeZone), ("to", newPolicy.timeZone))
        }
        policy = newPolicy
        detector.update(policy: newPolicy)
        refreshMounts()
    }

    public func exportBaseline() -> BaselineSnapshot { detector.snapshot }

    public func importBaseline(_ snapshot: BaselineSnapshot, by who: String) throws(FileWatchPolicyError) {
        try detector.importBaseline(snapshot)
        baselineDirty = true
        saveBaseline()
        record(Event(
            kind: "filewatch.baseline_imported", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Import",
            time: clock.now(), severity: .medium, status: .success,
            message: "FileWatch baseline for \(snapshot.users.count) user(s) imported by \(who)",
            details: ["users": .array(snapshot.users.keys.sorted().map(JSONValue.string)), "by": .string(who)]
        ))
    }

    public func statusReport() -> JSONValue {
        var rules: JSONValue = .object(["mode": .string(ruleMode.rawValue)])
        if let check = lastRuleCheck {
            var object: [String: JSONValue] = [
                "mode": .string(ruleMode.rawValue), "checked_at": .string(check.at.formatted(.iso8601)),
                "present": .int(Int64(check.present)), "missing": .int(Int64(check.missing)), "added": .int(Int64(check.added)),
            ]
            if let error = check.error { object["error"] = .string(error) }
            rules = .object(object)
        }
        var coverageObject: [String: JSONValue] = [
            "complete": .bool(coverage.complete), "reasons": .object(coverage.reasons.mapValues(JSONValue.int)),
            "serial_gaps": .int(Int64(gaps.missing)),
        ]
        if let since = coverage.since { coverageObject["incomplete_since"] = .string(since.formatted(.iso8601)) }
        if let lastLost { coverageObject["kernel_lost"] = .int(Int64(lastLost)) }
        return .object([
            "enabled": true,
            "intake_socket": .string(intakePath),
            "forwarders": .int(Int64(connections.count)),
            "records": .int(Int64(counters.records)),
            "events": .int(Int64(counters.events)),
            "malformed": .int(Int64(counters.malformed)),
            "late": .int(Int64(counters.late)),
            "activities": .int(Int64(counters.activities)),
            "events_by_key": .object(counters.byKey.mapValues { .int(Int64($0)) }),
            "alerts": .int(Int64(counters.alerts)),
            "blocks": .int(Int64(counters.blocks)),
            "users": .int(Int64(detector.userCount)),
            "forwarder": .object(["received": .int(Int64(clamping: counters.forwarderReceived)), "dropped": .int(Int64(clamping: counters.forwarderDropped))]),
            "refused_connections": .int(Int64(counters.refusedPeers)),
            "coverage": .object(coverageObject),
            "blind_spots": .array(blindSpots.map(JSONValue.string)),
            "rules": rules,
            "time_zone": .string(policy.timeZone),
        ])
    }
}

/// Why the intake socket could not be set up or failed.
struct IntakeError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// The intake socket: `0600` root, so only root can even connect (SO_PEERCRED is checked too).
final class IntakeListener: Sendable {
    let path: String
    let descriptor: Int32

    init(path: String) throws(IntakeError) {
        self.path = path
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else { throw IntakeError("\(path) exists and is not a socket; refusing to replace it") }
            unlink(path)
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw IntakeError("socket: \(String(cString: strerror(errno)))") }
        // Bound with a tight umask, then chmod: no moment where others could connect.
        let previous = umask(0o177)
        let bound = UnixAddress.withAddress(path) { address, length in bind(descriptor, address, length) == 0 ? 0 : errno }
        umask(previous)
        guard bound == 0 else {
            Glibc.close(descriptor)
            throw IntakeError("cannot bind \(path): \(bound.map { String(cString: strerror($0)) } ?? "path too long")")
        }
        chmod(path, 0o600)
        guard listen(descriptor, 16) == 0 else {
            Glibc.close(descriptor)
            unlink(path)
            throw IntakeError("listen \(path): \(String(cString: strerror(errno)))")
        }
        self.descriptor = descriptor
    }

    func close() {
        var info = stat()
        if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
        Glibc.close(descriptor)
    }
}
