public import DeviceGuard
public import FoundationEssentials
public import HoldfastCore
public import HoldfastStore
import HoldfastCrypto
public import Lockdown

/// DeviceGuard inside holdfastd: decides every USB device with the full policy and writes the
/// kernel's `authorized` attributes; journals every decision.
///
/// Start-up: root hubs get `interface_authorized_default=0`, the udev monitor opens *before* the
/// scan (events during the scan wait in its socket and are replayed after it), then every present
/// device is decided, hubs first. After that: hot-plug events as they come, a periodic rescan
/// (what was missed, what someone else changed), exception expiry timers, and re-decisions when
/// the policy or the exceptions change. An overflowing event socket triggers a full rescan.
public actor USBService: Service {
    public nonisolated let name = "usb"

    /// What made DeviceGuard look at a device.
    enum Trigger: String {
        case startup, add, change, bind, interface, rescan, overflow, policy, exception, expiry, parent
    }

    /// What the service knows about one device.
    struct Tracked {
        /// As read after our writes.
        var state: USBDeviceState
        var decision: DeviceDecision
        /// nil in audit-only mode (nothing was written, so nothing is expected).
        var expected: ExpectedAuthorization?
        var firstSeen: Date
        /// Interfaces refused for a driver the policy does not allow, with that driver: they stay
        /// off while this device stays plugged in (and are reported once).
        var refusedDrivers: [String: String] = [:]
        /// Interfaces given up on after a tug of war with another writer: they stay off too.
        var conflicts: Set<String> = []
        /// The driver each interface was last seen bound to (`bind` events).
        var boundDrivers: [String: String] = [:]
        /// How often each interface was authorized again after something turned it off.
        var reauthorized: [String: Int] = [:]

        var context: EnforcementContext {
            EnforcementContext(refused: Set(refusedDrivers.keys).union(conflicts), boundDrivers: boundDrivers)
        }
    }

    /// Authorizing the same interface again this often, after something else turned it off each
    /// time, is a tug of war (another USB tool, a udev rule that cannot see our marks): holdfastd
    /// leaves it off and says so, rather than flip it forever.
    static let reauthorizationLimit = 5

    let host: any USBHost
    let makeEventSource: @Sendable () throws -> any USBEventSource
    let journal: Journal
    let recorder: EventRecorder
    let logger: Logger
    let clock: any TimeSource
    let rescanInterval: Duration
    let seat: SeatUser
    /// Marks for the udev rule (`InterfaceMarks`): interfaces holdfastd allowed beyond the rule's
    /// classes, and interfaces it blocked that the rule would allow. nil where no rule is in play
    /// (unit tests), or when their directory cannot be trusted.
    private var marks: (allowed: InterfaceMarks, blocked: InterfaceMarks)?
    /// `bind` events' drivers not yet taken into a decision, by interface path.
    private var pendingBinds: [String: String] = [:]

    private(set) var policy: USBPolicy
    private var classifier: Classifier
    private(set) var exceptions: [USBException] = []
    /// The USB lockdown in force (from the LockdownController): only HID and hubs stay.
    private(set) var lockdown: LockdownEntry?
    /// Whether decisions are written to sysfs: the policy says enforce, or a lockdown is in
    /// force (a lockdown is an order, audit-only mode does not soften it).
    var enforcing: Bool { policy.mode == .enforce || lockdown != nil }
    private var tracked: [String: Tracked] = [:]
    private var expiryTimers: [String: Task<Void, Never>] = [:]
    /// Root hubs whose `interface_authorized_default` we set, so a reset by someone else is seen.
    private var hubsDefaulted: Set<String> = []
    private(set) var ready = false
    private var counters = Counters()
    /// Connect and disconnect events per port and device: a device that re-enumerates in a loop
    /// (a bad cable, a hostile one) must not fill the journal and push out un-uploaded events.
    /// What is held back is counted in the next event for it, and summed up at each rescan.
    private let plugLimiter: RateLimiter
    /// A cap per port over all identities: a device that changes its descriptors on every plug
    /// (each a new identity) is still held to it.
    private let portLimiter: RateLimiter
    private var lastRescan: Date?

    struct Counters {
        var decisions = 0
        var blocked = 0
        var tamper = 0
        var overflows = 0
        var failures = 0
    }

    static let exceptionsKey = "usb.exceptions"
    /// How far in the future a stored exception's grant time may lie (clock steps, NTP).
    static let clockSkewSeconds: Double = 300
    /// A ticket number and a sentence fit; a pasted document does not belong in every event.
    static let maximumReasonBytes = 1_000

    init(
        policy: USBPolicy,
        host: any USBHost,
        events: @escaping @Sendable () throws -> any USBEventSource,
        journal: Journal,
        recorder: EventRecorder,
        logger: Logger,
        clock: any TimeSource = SystemTimeSource(),
        rescanInterval: Duration = .seconds(10),
        seat: SeatUser = SeatUser(),
        marksDirectory: String? = nil
    ) {
        self.policy = policy
        classifier = Classifier(policy: policy)
        self.host = host
        makeEventSource = events
        self.journal = journal
        self.recorder = recorder
        self.logger = logger.with("service", "usb")
        self.clock = clock
        self.rescanInterval = rescanInterval
        self.seat = seat
        marks = marksDirectory.map { (InterfaceMarks(directory: $0 + "/usb-allowed"), InterfaceMarks(directory: $0 + "/usb-blocked")) }
        plugLimiter = RateLimiter(burst: 20, perSecond: 0.1, clock: clock)
        portLimiter = RateLimiter(burst: 200, perSecond: 1, clock: clock)
    }

    /// Where the shipped udev rule looks for marks (`/run/holdfast/usb-allowed`, `…/usb-blocked`).
    public static let ruleMarksDirectory = "/run/holdfast"

    /// The production service: sysfs through libudev, the udev monitor, marks for the udev rule
    /// under `marksDirectory`.
    public init(policy: USBPolicy, journal: Journal, recorder: EventRecorder, logger: Logger, rescanInterval: Duration, marksDirectory: String) {
        self.init(
            policy: policy, host: SysfsUSBHost(), events: { try UdevMonitor() }, journal: journal,
            recorder: recorder, logger: logger, rescanInterval: rescanInterval, marksDirectory: marksDirectory
        )
    }

    // MARK: Running

    public func run() async throws {
        defer { ready = false }
        let source = try makeEventSource()
        do {
            try marks?.allowed.reset()
            try marks?.blocked.reset()
        } catch {
            // A directory that cannot be trusted gets no marks at all. Without them the rule may
            // turn off what a policy rule allowed when udev replays events (holdfastd turns it
            // back on, or gives up after a few rounds and says so); enforcement does not depend
            // on them.
            logger.error("cannot prepare the udev rule's marks; going without", ("error", error.message))
            marks = nil
        }
        loadExceptions()
        if enforcing { prepareHubs() }
        try fullScan(.startup)
        ready = true
        logger.notice(
            "USB enforcement running", ("usb.mode", policy.mode.rawValue), ("usb.devices", "\(tracked.count)"),
            ("usb.exceptions", "\(exceptions.count)")
        )
        var nextRescan = ContinuousClock.now + rescanInterval
        while !Task.isCancelled {
            let wait = nextRescan - ContinuousClock.now
            if wait > .zero { _ = await Readiness.wait(source.fileDescriptor, for: .read, timeout: wait) }
            if Task.isCancelled { break }
            try await drain(source)
            if ContinuousClock.now >= nextRescan {
                rescan()
                nextRescan = ContinuousClock.now + rescanInterval
            }
        }
        for timer in expiryTimers.values { timer.cancel() }
        expiryTimers = [:]
    }

    /// Handles every event waiting in the socket. Yields now and then, so control verbs are
    /// answered during a storm.
    private func drain(_ source: any USBEventSource) async throws {
        var handled = 0
        while true {
            let event: USBEvent?
            do {
                event = try source.next()
            } catch .overflow {
                counters.overflows += 1
                logger.warning("uevent socket overflowed; rescanning every device")
                try fullScan(.overflow)
                record(Event(
                    kind: "usb.monitor_overflow", eventClass: .peripheralActivity, activityID: 99, activityName: "Rescan",
                    time: clock.now(), severity: .medium,
                    message: "USB events were lost (the uevent socket overflowed); every device was decided again",
                    details: ["devices": .int(Int64(tracked.count))]
                ))
                continue
            } catch {
                throw error
            }
            guard let event else { return }
            handle(event)
            handled += 1
            if handled % 256 == 0 { await Task.yield() }
        }
    }

    func handle(_ event: USBEvent) {
        if event.isInterface {
            switch event.action {
            case .remove, .unbind:
                // The kernel removes interfaces with their device, or unbinds on our own write.
                if event.action == .remove {
                    clearMarks(String(event.sysPath.split(separator: "/").last ?? ""))
                }
                if event.action == .remove, let known = tracked[event.deviceSysPath] {
                    let name = String(event.sysPath.split(separator: "/").last ?? "")
                    tracked[event.deviceSysPath]?.expected?.interfaces[name] = nil
                    tracked[event.deviceSysPath]?.state = known.state.removing(interface: name)
                }
            default:
                // The bind event's driver: the udev rule may have cut the interface off again
                // (its driver link gone) before we look.
                if event.action == .bind, let driver = event.driver { pendingBinds[event.sysPath] = driver }
                evaluate(event.deviceSysPath, .interface)
            }
            return
        }
        switch event.action {
        case .remove:
            forget(event.sysPath, .add)
        case .add:
            evaluate(event.sysPath, .add)
        case .bind:
            evaluate(event.sysPath, .bind)
        default:
            evaluate(event.sysPath, .change)
        }
    }

    // MARK: Deciding

    /// Reads a device afresh and applies the policy to it; its parent first if that is not known
    /// yet (a child never goes before its hub).
    func evaluate(_ path: String, _ trigger: Trigger, depth: Int = 0) {
        // The device without its interfaces first: that is all a block needs (and the common
        // case on the hot-plug path, where every read counts); anything else reads the rest.
        guard var state = host.device(at: path, interfaces: false) else {
            // Gone before we looked: nothing to enforce on.
            forget(path, trigger)
            return
        }
        if let parent = state.parentSysPath, tracked[parent] == nil, depth < 8 {
            evaluate(parent, .parent, depth: depth + 1)
        }
        let quick = classifier.decide(state.record, exceptions: exceptions, now: clock.now(), lockdown: lockdown != nil)
        // Undecodable descriptors keep the device's input interfaces: those need reading.
        let blocks = enforcing && !state.isRootHub && quick.verdict == .block && quick.rule != "malformed"
        if !blocks {
            guard let full = host.device(at: path) else {
                forget(path, trigger)
                return
            }
            state = full
        }
        // The quick decision holds for the record it was made on (the full read reads it again).
        apply(state, trigger, decided: blocks ? quick : nil)
        if !state.isRootHub { checkRootHub(above: path) }
    }

    /// After a device below it was decided: a root hub whose default went back to 1 (someone
    /// reset it) is decided again now, not at the next rescan.
    private func checkRootHub(above path: String) {
        guard enforcing,
            let hub = path.split(separator: "/").firstIndex(where: { $0.hasPrefix("usb") && $0.dropFirst(3).allSatisfy(\.isNumber) && $0.count > 3 })
        else { return }
        let hubPath = "/" + path.split(separator: "/")[...hub].joined(separator: "/")
        guard hubsDefaulted.contains(hubPath), host.attribute("interface_authorized_default", of: hubPath) == "1",
            let state = host.device(at: hubPath)
        else { return }
        apply(state, .change)
    }

    /// Decides one device, writes what the decision needs (enforce mode), and journals the
    /// decision when it is new or changed, a tamper, or a failure.
    func apply(_ state: USBDeviceState, _ trigger: Trigger, decided: DeviceDecision? = nil) {
        let path = state.record.sysPath
        let now = clock.now()
        let decision = decided ?? classifier.decide(state.record, exceptions: exceptions, now: now, lockdown: lockdown != nil)
        let previous = tracked[path]
        // On an `add` the node is new to udev too: a replayed add (`udevadm trigger`) lets the
        // shipped rule turn an interface off again, which is not someone else's doing. Anything
        // that lets more through than we left is reported whatever the trigger.
        let replayed = trigger == .add || trigger == .interface
        var tamper = (previous?.expected?.differences(in: state) ?? []).filter { $0.loosens || !replayed }.map { ($0.description, $0.loosens) }
        // A root hub found at 0 (the udev rule set it, or we did) is expected to stay there.
        if state.isRootHub, state.interfaceAuthorizedDefault == "0", enforcing { hubsDefaulted.insert(path) }
        if state.isRootHub, hubsDefaulted.contains(path), state.interfaceAuthorizedDefault == "1", enforcing {
            tamper.append(("\(state.record.name) interface_authorized_default=1, expected 0", true))
        }
        var context = previous?.context ?? EnforcementContext()
        for interface in state.interfaces {
            if let driver = pendingBinds.removeValue(forKey: interface.sysPath) { context.boundDrivers[interface.name] = driver }
        }
        context.malformedKeepsInput = decision.rule != "malformed" || !classifier.rulesMightRestrict(state)
        // Refused drivers, from the driver link or from the bind event that announced it.
        let refused = state.interfaces.compactMap { interface in
            EnforcementPlan.refusedDriver(interface, decision: decision, rootHub: state.isRootHub, driver: context.boundDrivers[interface.name]).map { (interface, $0) }
        }
        for (interface, _) in refused { context.refused.insert(interface.name) }
        // A tug of war: an interface we keep turning back on after something else turns it off.
        var conflicts = previous?.conflicts ?? []
        var reauthorized = previous?.reauthorized ?? [:]
        if enforcing, let expectedBefore = previous?.expected {
            for interface in state.interfaces where expectedBefore.interfaces[interface.name] == true && interface.authorized == false {
                reauthorized[interface.name, default: 0] += 1
                if reauthorized[interface.name, default: 0] > Self.reauthorizationLimit, conflicts.insert(interface.name).inserted {
                    context.refused.insert(interface.name)
                    record(conflictEvent(state, decision, interface.name))
                }
            }
        }
        let plan = EnforcementPlan.actions(for: state, decision: decision, context: context)
        var latest = state
        var performed: [USBAction] = []
        var failures: [String] = []
        var expected: ExpectedAuthorization?
        if enforcing {
            var actions = plan.actions
            expected = plan.expected
            updateMarks(state, previous: previous, decision: decision, expected: plan.expected)
            let hub = state.isRootHub ? EnforcementPlan.hubDefault(for: state) : nil
            if let hub { actions.insert(hub, at: 0) }
            var gone = false
            (performed, failures, gone) = perform(actions, on: path)
            if let hub, performed.contains(hub) {
                hubsDefaulted.insert(path)
                recordHubDefault(state)
            }
            if !performed.isEmpty, !gone {
                // Keep what sysfs shows after our writes. Interfaces a device authorization makes
                // the kernel create are decided on their own `add` events, which come after udev
                // ran its rules on them: the shipped rule, which keeps unlisted classes off, then
                // never undoes an interface we authorized.
                if let fresh = host.device(at: path) { latest = fresh } else { gone = true }
            }
            if gone {
                // Unplugged while (or right after) we acted: nothing is left to track, but the
                // decision was made and what was written stays on the record.
                tracked[path] = nil
                logger.debug("device left during its decision", ("device.path", state.record.name))
                counters.decisions += 1
                if decision.verdict != .allow { counters.blocked += 1 }
                var event = decisionEvent(state, decision, trigger, first: previous == nil, actions: performed)
                event.details["left_during_decision"] = true
                recordPlug(event, state, decision)
                return
            }
        }
        var reported = previous?.refusedDrivers ?? [:]
        let newlyRefused = refused.filter { reported[$0.0.name] != $0.1 }
        for (interface, driver) in refused { reported[interface.name] = driver }
        tracked[path] = Tracked(
            state: latest, decision: decision, expected: expected, firstSeen: previous?.firstSeen ?? now, refusedDrivers: reported,
            conflicts: conflicts, boundDrivers: context.boundDrivers, reauthorized: reauthorized
        )
        if !newlyRefused.isEmpty {
            record(driverEvent(state, decision, newlyRefused.map { ($0.0.name, $0.1) }))
        }

        let changed = previous.map { $0.decision.verdict != decision.verdict || $0.decision.rule != decision.rule } ?? true
        if changed {
            counters.decisions += 1
            if decision.verdict != .allow { counters.blocked += 1 }
            let event = decisionEvent(state, decision, trigger, first: previous == nil, actions: enforcing ? performed : plan.actions)
            previous == nil ? recordPlug(event, state, decision) : record(event)
        }
        if !tamper.isEmpty {
            counters.tamper += 1
            logger.warning("USB authorization changed by someone else; policy re-asserted", ("device.path", state.record.name), ("changes", tamper.map(\.0).joined(separator: "; ")))
            record(tamperEvent(state, decision, tamper, reasserted: performed))
        }
        if !failures.isEmpty {
            counters.failures += 1
            logger.error("could not enforce a USB decision", ("device.path", state.record.name), ("error", failures.joined(separator: "; ")))
            record(Event(
                kind: "usb.enforcement_failed", eventClass: .peripheralActivity, activityID: 99, activityName: "Enforce",
                time: clock.now(), severity: .high, status: .failure,
                message: "could not apply the \(decision.verdict.rawValue) decision for \(state.record.name): \(failures.joined(separator: "; ")); retried at the next rescan",
                actor: seat.current(), details: identity(state, decision).merging(["errors": .array(failures.map(JSONValue.string))]) { $1 }
            ))
            // Forget the expectation so the next rescan decides (and writes) again.
            tracked[path]?.expected = nil
            tracked[path]?.state = state
        }
    }

    /// Executes actions in order. Stops at the first one that finds the device gone.
    private func perform(_ actions: [USBAction], on path: String) -> (performed: [USBAction], failures: [String], gone: Bool) {
        var performed: [USBAction] = []
        var failures: [String] = []
        var notAuthorized: Set<String> = []
        for action in actions {
            // An interface whose authorization did not happen is not probed.
            if case .probe(let name) = action, notAuthorized.contains(name) { continue }
            do {
                try host.perform(action)
                performed.append(action)
            } catch where error.code == .gone {
                // An interface the kernel removed (its device was just deauthorized) is not an
                // error. For the device itself, ENOENT means gone only if the device is: a
                // missing attribute on a device still there is a failure to enforce.
                if case .authorizeInterface(_, let name, _) = action {
                    notAuthorized.insert(name)
                    continue
                }
                if case .probe = action { continue }
                if host.device(at: path, interfaces: false) == nil { return (performed, failures, true) }
                failures.append("\(action): \(error.message)")
            } catch {
                if case .authorizeInterface(_, let name, _) = action { notAuthorized.insert(name) }
                failures.append("\(action): \(error.message)")
            }
        }
        return (performed, failures, false)
    }

    private func forget(_ path: String, _ trigger: Trigger) {
        guard let gone = tracked.removeValue(forKey: path) else { return }
        hubsDefaulted.remove(path)
        for interface in gone.state.interfaces { clearMarks(interface.name) }
        recordPlug(Event(
            kind: "usb.disconnect", eventClass: .peripheralActivity, activityID: 2, activityName: "Disconnect",
            time: clock.now(), severity: .informational,
            message: "USB device \(Self.describe(gone.state, gone.decision)) left \(gone.state.record.name)",
            actor: seat.current(), details: identity(gone.state, gone.decision)
        ), gone.state, gone.decision)
    }

    /// Journals a connect or disconnect unless this port and device are flapping (see
    /// `plugLimiter`); the first one let through again says how many were held back.
    private func recordPlug(_ event: Event, _ state: USBDeviceState, _ decision: DeviceDecision) {
        let (allowed, suppressed) = plugLimiter.admit(Self.plugKey(state))
        guard allowed else { return }
        let (portAllowed, portSuppressed) = portLimiter.admit(state.record.name + " *")
        guard portAllowed else { return }
        var event = event
        if suppressed + portSuppressed > 0 { event.details["suppressed_since_last"] = .int(Int64(suppressed + portSuppressed)) }
        record(event)
    }

    /// Port and identity: vendor, product and serial as the device says them, and a digest of
    /// its raw descriptors (so two devices that differ in any byte are two identities).
    static func plugKey(_ state: USBDeviceState) -> String {
        state.record.name + " " + SHA256.hex(state.record.descriptors + Array((state.record.serial ?? "").utf8))
    }

    /// The plug events held back since the last summary, one event per port and device.
    private func reportSuppressedPlugs() {
        for (key, count) in plugLimiter.takeSuppressed() + portLimiter.takeSuppressed() {
            let parts = key.split(separator: " ", maxSplits: 1).map(String.init)
            record(Event(
                kind: "usb.plugs_suppressed", eventClass: .peripheralActivity, activityID: 99, activityName: "Flapping",
                time: clock.now(), severity: .medium,
                message: parts.count > 1 && parts[1] == "*"
                    ? "\(count) connect and disconnect events on \(parts[0]) were not journaled one by one (devices there re-enumerated in a loop, each looking different)"
                    : "\(count) connect and disconnect events of one device on \(parts.first ?? key) were not journaled one by one (it re-enumerated in a loop)",
                details: ["path": .string(parts.first ?? key), "identity": .string(parts.count > 1 ? parts[1] : ""), "suppressed": .int(Int64(count))]
            ))
        }
    }

    /// Marks, for the udev rule, the interfaces a policy rule or an exception allows (it leaves
    /// them alone) and the interfaces of an authorized device that holdfastd keeps off (it keeps
    /// them off, instead of turning one on by its class when udev replays events); clears the
    /// rest. Before any write, so the rule never races us.
    private func updateMarks(_ state: USBDeviceState, previous: Tracked?, decision: DeviceDecision, expected: ExpectedAuthorization) {
        guard let marks, !state.isRootHub else { return }
        let beyondTheRule = decision.rule != "default" && decision.rule != "malformed"
        let names = Set(state.interfaces.map(\.name)).union(previous?.state.interfaces.map(\.name) ?? [])
        for name in names {
            let allowed = beyondTheRule && expected.device && expected.interfaces[name] == true
            let blocked = expected.device && expected.interfaces[name] == false
            if allowed != marks.allowed.isMarked(name) { marks.allowed.set(name, allowed) }
            if blocked != marks.blocked.isMarked(name) { marks.blocked.set(name, blocked) }
        }
    }

    private func clearMarks(_ name: String) {
        marks?.allowed.set(name, false)
        marks?.blocked.set(name, false)
    }

    /// Makes new interfaces start unauthorized on every root hub: the kernel's default-deny.
    private func prepareHubs() {
        guard let states = try? host.devices() else { return }
        for state in states where state.isRootHub {
            guard state.interfaceAuthorizedDefault != nil else {
                // Kernels before 4.4 have no interface authorization: holdfastd can still
                // deauthorize whole devices, but the layer that holds without it is missing.
                record(Event(
                    kind: "usb.hub_unsupported", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Harden",
                    time: clock.now(), severity: .high, status: .failure,
                    message: "\(state.record.name) has no interface_authorized_default: this kernel cannot start new USB interfaces unauthorized; blocked devices are still deauthorized while holdfastd runs, but nothing holds without it",
                    details: ["hub": .string(state.record.name)]
                ))
                continue
            }
            guard let action = EnforcementPlan.hubDefault(for: state) else {
                hubsDefaulted.insert(state.record.sysPath)
                continue
            }
            do {
                try host.perform(action)
                hubsDefaulted.insert(state.record.sysPath)
                recordHubDefault(state)
            } catch {
                logger.error("cannot set interface_authorized_default on a root hub", ("hub", state.record.name), ("error", error.message))
            }
        }
    }

    private func recordHubDefault(_ state: USBDeviceState) {
        record(Event(
            kind: "usb.hub_default", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Harden",
            time: clock.now(), severity: .informational, status: .success,
            message: "\(state.record.name): new USB interfaces now start unauthorized (interface_authorized_default \(state.interfaceAuthorizedDefault ?? "?") → 0)",
            details: ["hub": .string(state.record.name), "previous": state.interfaceAuthorizedDefault.map(JSONValue.string) ?? .null]
        ))
    }

    /// Decides every device present now; forgets the ones that are gone.
    private func fullScan(_ trigger: Trigger) throws(DeviceGuardError) {
        let states = try host.devices()
        for state in states { apply(state, trigger) }
        let present = Set(states.map(\.record.sysPath))
        for path in tracked.keys where !present.contains(path) { forget(path, trigger) }
        lastRescan = clock.now()
    }

    /// The periodic look: expired exceptions end; a device whose sysfs state differs from what
    /// we left (or that we never saw) is decided again; a vanished one is forgotten.
    func rescan() {
        expireDue()
        reportSuppressedPlugs()
        let states: [USBDeviceState]
        do {
            states = try host.devices()
        } catch {
            logger.error("USB rescan failed", ("error", error.message))
            return
        }
        for state in states {
            // Unchanged since we left it, and nothing left to write: nothing to do.
            if let known = tracked[state.record.sysPath], known.state == state,
                !enforcing || (known.expected != nil && EnforcementPlan.actions(for: state, decision: known.decision, context: known.context).actions.isEmpty)
            {
                continue
            }
            if tracked[state.record.sysPath] == nil {
                logger.info("found a USB device no event announced", ("device.path", state.record.name))
            }
            apply(state, .rescan)
        }
        let present = Set(states.map(\.record.sysPath))
        for path in tracked.keys where !present.contains(path) { forget(path, .rescan) }
        lastRescan = clock.now()
    }

    /// Decides every known device again (the policy or the exceptions changed).
    private func reevaluateAll(_ trigger: Trigger) {
        for path in tracked.keys.sorted(by: { (tracked[$0]?.state.depth ?? 0, $0) < (tracked[$1]?.state.depth ?? 0, $1) }) {
            evaluate(path, trigger)
        }
    }

    // MARK: Policy

    /// A new policy is in force: decide everything again under it.
    public func update(policy newPolicy: USBPolicy) {
        guard newPolicy != policy else { return }
        let switchedToEnforce = policy.mode == .auditOnly && newPolicy.mode == .enforce
        if newPolicy.mode != policy.mode {
            // Turning blocking off is the change a security team must not miss.
            let loosens = newPolicy.mode == .auditOnly
            logger.warning("USB mode changed", ("usb.mode", newPolicy.mode.rawValue))
            record(Event(
                kind: "usb.mode_changed", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Mode",
                time: clock.now(), severity: loosens ? .high : .medium, status: .success,
                message: loosens
                    ? "USB enforcement switched to audit-only: decisions are recorded, nothing is blocked by holdfastd"
                    : "USB enforcement switched from audit-only to enforce",
                details: ["from": .string(policy.mode.rawValue), "to": .string(newPolicy.mode.rawValue)]
            ))
        }
        policy = newPolicy
        classifier = Classifier(policy: newPolicy)
        // Exceptions longer than the new policy allows end now.
        let now = clock.now()
        for exception in exceptions where !exception.approved && exception.until.timeIntervalSince(exception.created) > Double(newPolicy.maximumExceptionSeconds) {
            end(exception, kind: "usb.exception_revoked", why: "the new policy allows at most \(DurationText.text(newPolicy.maximumExceptionSeconds))", at: now)
        }
        if switchedToEnforce { prepareHubs() }
        if ready { reevaluateAll(.policy) }
    }

    // MARK: Lockdown

    /// Puts the USB lockdown in force (every device but hubs and HID loses its interfaces;
    /// exceptions are suspended, not deleted) or lifts it (everything is decided again under the
    /// policy). Called by the LockdownController; at start, before the first scan.
    public func setLockdown(_ entry: LockdownEntry?) {
        guard entry != lockdown else { return }
        let wasEnforcing = enforcing
        lockdown = entry
        logger.notice(entry == nil ? "USB lockdown lifted" : "USB lockdown in force", ("reason", entry?.reason ?? ""))
        guard ready else { return }
        if !wasEnforcing, enforcing { prepareHubs() }
        reevaluateAll(.policy)
    }

    // MARK: Exceptions

    /// Why an exception was refused.
    public struct ExceptionError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Grants an exception for `target` for `seconds`. Refused when the policy does not allow it
    /// that long, when the reason is empty, or when the target is unknown or undecodable.
    public func allow(_ target: USBExceptionTarget, seconds: Int64, reason: String, grantedBy: String) throws(ExceptionError) -> USBException {
        let reason = String(reason.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
        guard !reason.isEmpty else { throw ExceptionError(message: "an exception needs a reason (--reason \"…\")") }
        guard reason.utf8.count <= Self.maximumReasonBytes else {
            throw ExceptionError(message: "the reason is longer than \(Self.maximumReasonBytes) bytes; give a ticket and a sentence")
        }
        guard policy.maximumExceptionSeconds > 0 else {
            throw ExceptionError(message: "the policy refuses local exceptions (usb.max_exception is 0)")
        }
        guard seconds > 0 else { throw ExceptionError(message: "an exception needs a positive duration") }
        guard seconds <= policy.maximumExceptionSeconds else {
            throw ExceptionError(message: "\(DurationText.text(seconds)) is longer than the policy allows (usb.max_exception: \(DurationText.text(policy.maximumExceptionSeconds)))")
        }
        let vendor: UInt16, product: UInt16, serial: String?, hash: String?
        switch target {
        case .busPath(let name):
            let present = tracked.values.first(where: { $0.state.record.name == name })?.state
                ?? (try? host.devices())?.first(where: { $0.record.name == name })
            guard let state = present else {
                throw ExceptionError(message: "no USB device at \(name) (see 'holdfast usb devices')")
            }
            let decision = classifier.decide(state.record)
            guard let parsed = decision.parsed, let digest = decision.descriptorHash else {
                throw ExceptionError(message: "\(name)'s descriptors were refused (\(decision.reason)); no exception can allow a device whose descriptors do not parse")
            }
            guard !state.isRootHub else { throw ExceptionError(message: "\(name) is a root hub; it is never blocked") }
            (vendor, product, serial, hash) = (parsed.device.vendorID, parsed.device.productID, state.record.serial, digest)
        case .model(let v, let p, let s):
            (vendor, product, serial, hash) = (v, p, s, nil)
        }
        let now = clock.now()
        let id = (try? SecureRandom.bytes(4)).map(Hex.encode) ?? String(UInt32.random(in: .min ... .max), radix: 16)
        return put(USBException(
            id: id, vendor: vendor, product: product, serial: serial, hash: hash,
            created: now, until: now + Double(seconds), reason: reason, grantedBy: grantedBy
        ))
    }

    /// Puts an exception in force (replacing one with its id): saved, timed, journaled, and
    /// every device decided again.
    private func put(_ exception: USBException) -> USBException {
        exceptions.removeAll { $0.id == exception.id }
        exceptions.append(exception)
        saveExceptions()
        schedule(exception)
        record(Event(
            kind: "usb.exception_granted", eventClass: .deviceConfigStateChange, activityID: 1, activityName: "Create",
            time: exception.created, severity: .medium, status: .success,
            message: "USB exception \(exception.id) for \(exception.target) until \(exception.until.formatted(.iso8601)) granted by \(exception.grantedBy): \(exception.reason)",
            details: Self.exceptionDetails(exception)
        ))
        reevaluateAll(.exception)
        return exception
    }

    /// What a bus path names now, for a request (docs/exceptions.md): the device's vendor,
    /// product, serial and descriptor digest, and words for people. Refused like `allow`.
    public func identify(_ name: String) throws(ExceptionError) -> (match: ExceptionMatch, label: String) {
        let present = tracked.values.first(where: { $0.state.record.name == name })?.state
            ?? (try? host.devices())?.first(where: { $0.record.name == name })
        guard let state = present else { throw ExceptionError(message: "no USB device at \(name) (see 'holdfast usb devices')") }
        guard !state.isRootHub else { throw ExceptionError(message: "\(name) is a root hub; it is never blocked") }
        let decision = classifier.decide(state.record)
        guard let parsed = decision.parsed, let digest = decision.descriptorHash else {
            throw ExceptionError(message: "\(name)'s descriptors were refused (\(decision.reason)); no exception can allow a device whose descriptors do not parse")
        }
        let serial = state.record.serial.flatMap { ExceptionMatch.isSerial($0) ? $0 : nil }
        // What the approval would open, by DeviceGuard's reading of the descriptors, before the
        // names the device chose (a cut label keeps the classes).
        var classes: [String] = []
        for interface in decision.interfaces where !classes.contains(Classifier.className(interface.triple)) { classes.append(Classifier.className(interface.triple)) }
        return (.usb(vendor: parsed.device.vendorID, product: parsed.device.productID, serial: serial, hash: digest),
                "interfaces: \(classes.joined(separator: ", ")); \(name) \(Self.describe(state, decision))")
    }

    /// Puts an approved exception in force until `until` (an approval carries its own end; the
    /// policy's `max_exception` bounds local grants only). Replaces one with the same id.
    public func allowApproved(id: String, match: ExceptionMatch, until: Date, reason: String, grantedBy: String) throws(ExceptionError) -> USBException {
        guard case .usb(let vendor, let product, let serial, let hash) = match else { throw ExceptionError(message: "not a USB exception") }
        let now = clock.now()
        guard until > now else { throw ExceptionError(message: "it ended at \(until.formatted(.iso8601))") }
        guard until.timeIntervalSince(now) <= Double(USBPolicy.ceilingExceptionSeconds) else {
            throw ExceptionError(message: "it would last more than \(DurationText.text(USBPolicy.ceilingExceptionSeconds))")
        }
        return put(USBException(
            id: id, vendor: vendor, product: product, serial: serial, hash: hash, created: now, until: until, reason: reason, grantedBy: grantedBy, approved: true))
    }

    /// Ends an approved exception now, if it is in force; false when the ending could not be saved.
    public func endApproved(_ id: String, by who: String) -> Bool {
        // Gone already (an earlier try removed it but could not save that): saved only if the
        // last save went through.
        guard exceptions.contains(where: { $0.id == id }) else { return !exceptionsUnsaved }
        _ = try? revoke(id, by: who)
        return !exceptionsUnsaved
    }

    /// Ends an exception now.
    public func revoke(_ id: String, by who: String) throws(ExceptionError) -> USBException {
        guard let exception = exceptions.first(where: { $0.id == id }) else {
            throw ExceptionError(message: "no USB exception \(id) (see 'holdfast usb devices')")
        }
        end(exception, kind: "usb.exception_revoked", why: "revoked by \(who)", at: clock.now())
        reevaluateAll(.exception)
        return exception
    }

    /// Ends every exception whose time is up; decides again if any ended.
    func expireDue() {
        let now = clock.now()
        let due = exceptions.filter { !$0.isActive(at: now) }
        guard !due.isEmpty else { return }
        for exception in due { end(exception, kind: "usb.exception_expired", why: "its time ran out", at: now) }
        reevaluateAll(.expiry)
    }

    private func end(_ exception: USBException, kind: String, why: String, at now: Date) {
        exceptions.removeAll { $0.id == exception.id }
        expiryTimers.removeValue(forKey: exception.id)?.cancel()
        saveExceptions()
        record(Event(
            kind: kind, eventClass: .deviceConfigStateChange, activityID: 3, activityName: "Delete",
            time: now, severity: .informational, status: .success,
            message: "USB exception \(exception.id) for \(exception.target) ended: \(why)",
            details: Self.exceptionDetails(exception).merging(["ended": .string(why)]) { $1 }
        ))
    }

    /// A timer that ends the exception at its `until`, plugged in or not. It sleeps at most a
    /// day at a time and looks again (the wall clock may have moved meanwhile).
    private func schedule(_ exception: USBException) {
        let delay = min(max(0, exception.until.timeIntervalSince(clock.now())), 86_400)
        expiryTimers[exception.id]?.cancel()
        let id = exception.id
        expiryTimers[id] = Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000) + 1))
            guard !Task.isCancelled else { return }
            await self?.timerFired(id)
        }
    }

    private func timerFired(_ id: String) {
        expireDue()
        if let exception = exceptions.first(where: { $0.id == id }) { schedule(exception) }
    }

    /// Exceptions from state; the ones whose time ran out while holdfastd was stopped end now.
    private func loadExceptions() {
        exceptions = []
        do {
            exceptions = try journal.state(Self.exceptionsKey, as: [USBException].self) ?? []
        } catch {
            // Unreadable state: no exception is in force (the strict side), and that is said.
            logger.error("stored USB exceptions are unreadable; none is in force", ("error", "\(error)"))
            record(Event(
                kind: "usb.exceptions_unreadable", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Refuse",
                time: clock.now(), severity: .high, status: .failure,
                message: "stored USB exceptions could not be read (\(error)); none is in force"
            ))
        }
        let now = clock.now()
        for exception in exceptions where !exception.isActive(at: now) {
            end(exception, kind: "usb.exception_expired", why: "its time ran out while holdfastd was stopped", at: now)
        }
        // What the policy in force allows now, whatever it allowed when they were granted (the
        // policy may have changed while holdfastd was stopped); and nothing granted in the future.
        for exception in exceptions {
            if exception.created.timeIntervalSince(now) > Self.clockSkewSeconds {
                end(exception, kind: "usb.exception_revoked", why: "it claims to have been granted in the future (\(exception.created.formatted(.iso8601)))", at: now)
            } else if !exception.approved, exception.until.timeIntervalSince(exception.created) > Double(policy.maximumExceptionSeconds) {
                end(exception, kind: "usb.exception_revoked", why: "the policy allows at most \(DurationText.text(policy.maximumExceptionSeconds))", at: now)
            }
        }
        for exception in exceptions { schedule(exception) }
    }

    /// Whether the last save of the exceptions failed (a revocation that is not saved would come
    /// back with a restart: its command is then not marked done).
    private(set) var exceptionsUnsaved = false

    private func saveExceptions() {
        do {
            try journal.setState(Self.exceptionsKey, encoding: exceptions)
            exceptionsUnsaved = false
        } catch {
            exceptionsUnsaved = true
            logger.error("could not save USB exceptions; they end with this run", ("error", "\(error)"))
        }
    }

    // MARK: Reporting

    /// `holdfast usb devices`: every device with its decision, authorization and exception.
    public func devicesReport() -> JSONValue {
        let rows = tracked.values.sorted { ($0.state.depth, $0.state.record.sysPath) < ($1.state.depth, $1.state.record.sysPath) }.map { entry -> JSONValue in
            var object = Explanation.json(entry.decision).objectValue ?? [:]
            object["authorized"] = entry.state.authorized.map(JSONValue.bool) ?? .null
            object["root_hub"] = .bool(entry.state.isRootHub)
            object["first_seen"] = .string(entry.firstSeen.formatted(.iso8601))
            object["sysfs_interfaces"] = .array(entry.state.interfaces.map { interface in
                .object([
                    "name": .string(interface.name),
                    "authorized": interface.authorized.map(JSONValue.bool) ?? .null,
                    "allowed": .bool(entry.decision.verdict != .block && entry.decision.allowedInterfaces.contains(interface.key)),
                ])
            })
            if entry.state.isRootHub {
                object["interface_authorized_default"] = entry.state.interfaceAuthorizedDefault.map(JSONValue.string) ?? .null
                object["authorized_default"] = entry.state.authorizedDefault.map(JSONValue.string) ?? .null
            }
            object["exception"] = entry.decision.exception.map { .object(Self.exceptionDetails($0)) } ?? .null
            return .object(object)
        }
        return .object([
            "mode": .string(policy.mode.rawValue),
            "ready": .bool(ready),
            "devices": .array(rows),
            "exceptions": .array(exceptions.map { .object(Self.exceptionDetails($0)) }),
            "max_exception_seconds": .int(policy.maximumExceptionSeconds),
        ])
    }

    /// The `usb` object in `holdfast status`.
    public func statusSummary() -> JSONValue {
        var object: [String: JSONValue] = [
            "enabled": true,
            "mode": .string(policy.mode.rawValue),
            "ready": .bool(ready),
            "devices": .int(Int64(tracked.count)),
            "blocked_now": .int(Int64(tracked.values.filter { $0.decision.verdict != .allow }.count)),
            "exceptions": .int(Int64(exceptions.count)),
            "locked_down": .bool(lockdown != nil),
            "decisions": .int(Int64(counters.decisions)),
            "tamper": .int(Int64(counters.tamper)),
            "overflows": .int(Int64(counters.overflows)),
            "failures": .int(Int64(counters.failures)),
        ]
        if let lastRescan { object["last_rescan"] = .string(lastRescan.formatted(.iso8601)) }
        return .object(object)
    }

    private func record(_ event: Event) { recorder.record(event) }

    static func describe(_ state: USBDeviceState, _ decision: DeviceDecision) -> String {
        let id = decision.parsed.map { "\(Classifier.hex16($0.device.vendorID)):\(Classifier.hex16($0.device.productID))" } ?? "????:????"
        let names = [state.record.manufacturer, state.record.product].compactMap { $0 }.joined(separator: " ")
        return names.isEmpty ? id : "\(id) (\(Printable.escape(names)))"
    }

    private func identity(_ state: USBDeviceState, _ decision: DeviceDecision) -> [String: JSONValue] {
        var details = Explanation.json(decision).objectValue ?? [:]
        details["configurations"] = nil
        details["mode"] = .string(policy.mode.rawValue)
        return details
    }

    private func decisionEvent(_ state: USBDeviceState, _ decision: DeviceDecision, _ trigger: Trigger, first: Bool, actions: [USBAction]) -> Event {
        let enforce = enforcing
        let verb: String = switch decision.verdict {
        case .allow: enforce ? "allowed" : "would allow"
        case .block: enforce ? "blocked" : "would block"
        case .partial: enforce ? "partly allowed" : "would partly allow"
        }
        var details = identity(state, decision)
        details["trigger"] = .string(trigger.rawValue)
        details[enforce ? "actions" : "would_write"] = .array(actions.map { .string($0.description) })
        if let exception = decision.exception { details["exception"] = .object(Self.exceptionDetails(exception)) }
        let severity: Severity = switch decision.verdict {
        case .allow: .informational
        case .partial: .low
        case .block: decision.rule == "malformed" ? .high : .medium
        }
        return Event(
            kind: "usb.decision", eventClass: .peripheralActivity,
            activityID: first ? 1 : 99, activityName: first ? "Connect" : "Re-decide",
            time: clock.now(), severity: severity,
            message: "\(verb) USB device \(Self.describe(state, decision)) on \(state.record.name): \(decision.reason)\(enforce ? "" : " (audit-only)")",
            actor: seat.current(), details: details
        )
    }

    /// Someone else changed authorization: High when it let through what the policy blocks,
    /// Medium when it blocked what the policy allows (a second USB tool, a root shell).
    private func tamperEvent(_ state: USBDeviceState, _ decision: DeviceDecision, _ changes: [(String, Bool)], reasserted: [USBAction]) -> Event {
        var details = identity(state, decision)
        details["changes"] = .array(changes.map { .string($0.0) })
        details["loosened"] = .bool(changes.contains { $0.1 })
        details["reasserted"] = .array(reasserted.map { .string($0.description) })
        return Event(
            kind: "usb.tamper", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Tamper",
            time: clock.now(), severity: changes.contains { $0.1 } ? .high : .medium, status: .failure,
            message: "USB authorization of \(Self.describe(state, decision)) on \(state.record.name) was changed outside Holdfast (\(changes.map(\.0).joined(separator: "; "))); the policy was re-asserted. Another USB authorization tool (USBGuard, GNOME USB protection) or a root user is acting on this machine",
            actor: seat.current(), details: details
        )
    }

    /// An interface of an allowed class taken by a driver the default policy does not allow for
    /// that class: a device that matches a driver by vendor and product.
    private func driverEvent(_ state: USBDeviceState, _ decision: DeviceDecision, _ refused: [(String, String)]) -> Event {
        var details = identity(state, decision)
        details["drivers"] = .object(Dictionary(uniqueKeysWithValues: refused.map { ($0.0, JSONValue.string($0.1)) }))
        let list = refused.map { "\($0.0) by \($0.1)" }.joined(separator: ", ")
        let enforce = enforcing
        return Event(
            kind: "usb.driver_refused", eventClass: .peripheralActivity, activityID: 99, activityName: "Driver",
            time: clock.now(), severity: .high, status: .failure,
            message: "\(Self.describe(state, decision)) on \(state.record.name): \(list), a driver the policy does not allow for the class the device declares (it matched by vendor and product); \(enforce ? "deauthorized" : "would be deauthorized (audit-only)")",
            actor: seat.current(), details: details
        )
    }

    /// Holdfastd gave up turning an interface back on.
    private func conflictEvent(_ state: USBDeviceState, _ decision: DeviceDecision, _ name: String) -> Event {
        var details = identity(state, decision)
        details["interface"] = .string(name)
        details["reauthorizations"] = .int(Int64(Self.reauthorizationLimit))
        return Event(
            kind: "usb.enforcement_conflict", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Conflict",
            time: clock.now(), severity: .high, status: .failure,
            message: "\(name) of \(Self.describe(state, decision)) was turned off by something else \(Self.reauthorizationLimit) times after holdfastd allowed it; it stays off until the device is plugged in again. Another USB tool, or a udev rule that does not see holdfastd's marks, is fighting the policy",
            actor: seat.current(), details: details
        )
    }

    static func exceptionDetails(_ exception: USBException) -> [String: JSONValue] {
        [
            "id": .string(exception.id),
            "target": .string(exception.target),
            "vendor": .string(Classifier.hex16(exception.vendor)),
            "product": .string(Classifier.hex16(exception.product)),
            "serial": exception.serial.map(JSONValue.string) ?? .null,
            "hash": exception.hash.map(JSONValue.string) ?? .null,
            "created": .string(exception.created.formatted(.iso8601)),
            "until": .string(exception.until.formatted(.iso8601)),
            "reason": .string(exception.reason),
            "granted_by": .string(exception.grantedBy),
            "approved": .bool(exception.approved),
        ]
    }
}

extension USBService: LockdownEnforcer {
    public func enforceLockdown(_ entry: LockdownEntry?) async -> String? {
        // Failures to write sysfs are the decisions' own events; the lockdown itself always takes.
        setLockdown(entry)
        return nil
    }
}
