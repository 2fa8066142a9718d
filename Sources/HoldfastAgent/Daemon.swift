import BrokerClient
import Dispatch
import FoundationEssentials
public import HoldfastCore
import FileWatch
import HoldfastStore
import Lockdown
import Posture
#if canImport(Glibc)
import Glibc
#endif

/// holdfastd's life: read the configuration, open the journal, bind the control socket, start the
/// services, say READY, ping the watchdog, reload on SIGHUP, stop cleanly on SIGTERM.
public enum Daemon {
    /// How long services get to stop after SIGTERM (systemd's stop must finish well within 2 s).
    static let stopDeadline: Duration = .milliseconds(1_500)
    /// How long start-up waits for the first USB scan before saying READY anyway.
    static let readyDeadline: Duration = .seconds(10)

    /// Runs until SIGTERM or SIGINT; returns the process exit code.
    public static func run(configurationPath: String, logLevel: LogLevel?, environment: [String: String]) async -> Int32 {
        let bootstrap = Logger(level: logLevel ?? .info)
        let configuration: AgentConfiguration
        do {
            configuration = try AgentConfigurationParser.load(configurationPath, requireRootOwned: true)
        } catch {
            bootstrap.error("configuration refused: \(error)")
            return 1
        }
        let logger = Logger(level: logLevel ?? configuration.logLevel, handler: bootstrap.handler)
        let notifier = SystemdNotifier(environment: environment)

        // Signals first. SIGTERM and SIGINT arm a hard deadline at once, on the signal queue: the
        // process is gone within 2 s whatever state the async code is in (start-up included). A
        // stop that needs it exits 1, so systemd records it as the failure it is.
        let signals = SignalStream.make([SIGTERM, SIGINT, SIGHUP]) { signal in
            guard signal != SIGHUP else { return }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(1_900)) {
                logger.error("clean stop did not finish within 1.9 s; exiting now")
                _exit(1)
            }
        }

        // One holdfastd per state directory (two would share the journal and the last good policy).
        let stateLock: ProcessLock
        let journal: Journal
        do {
            try SecureFile.ensurePrivateDirectory(configuration.stateDirectory)
            stateLock = try ProcessLock(path: configuration.stateDirectory + "/holdfastd.lock")
            journal = try Journal(configuration: JournalConfiguration(
                directory: configuration.stateDirectory, maximumEventBytes: configuration.journalMaximumBytes,
                device: DeviceIdentity.local()
            ))
        } catch {
            logger.error("cannot open the state directory: \(error)", ("state_dir", configuration.stateDirectory))
            return 1
        }
        defer { withExtendedLifetime(stateLock) {} }
        let supervisor = Supervisor(logger: logger)
        let agent = Agent(
            configurationPath: configurationPath, configuration: configuration,
            journal: journal, supervisor: supervisor, logger: logger
        )
        let listener: ControlListener
        do {
            listener = try ControlListener(path: configuration.controlSocket)
        } catch {
            logger.error("cannot open the control socket: \(error)")
            await agent.record(lifecycle("agent.start_failed", activity: 3, "Start", "holdfastd could not start: \(error)", ok: false))
            return 1
        }
        let recorder = EventRecorder(journal: journal, logger: logger)
        // The offboarded users before the control socket answers anything: no login is checked
        // without them (docs/offboarding.md).
        let revocations = UserRevocations(journal: journal, stateDirectory: configuration.stateDirectory, logger: logger, record: { recorder.record($0) })
        await agent.attach(revocations: revocations)
        await supervisor.start(ControlService(listener: listener, handler: agent, logger: logger))
        // Enrolled: the broker's last good policy wins over the local file, before any enforcer starts.
        if let stored = BrokerLink.storedPolicy(stateDirectory: configuration.stateDirectory) {
            if let floor = await agent.brokerPolicyFloor, stored.version < floor {
                await agent.keepLastGood(reason: "the stored broker policy is version \(stored.version), older than version \(floor) applied before (no rollback)")
            } else {
                _ = await agent.adoptBrokerPolicy(stored, atStart: true)
            }
        } else if await agent.brokerManaged || SmallFile.exists(configuration.stateDirectory + "/" + BrokerLink.policyFile) {
            // The broker's policy governed here and cannot be used now (does not verify, the
            // enrollment cannot be read, or it is gone): never the (possibly looser) local file;
            // the last broker policy applied stays, until the broker sends it again.
            await agent.keepLastGood(reason: "\(configuration.stateDirectory)/\(BrokerLink.policyFile) is missing or does not verify with the pinned broker keys (or \(BrokerLink.enrollmentFile) cannot be read)")
        }
        // The lockdown state first: every enforcer starts under it.
        let lockdown = LockdownController(journal: journal, record: { recorder.record($0) })
        await agent.attach(lockdown: lockdown)
        // Exceptions come in the same command sequence as lockdowns.
        let requests = AccessRequests(journal: journal, logger: logger, record: { recorder.record($0) })
        await lockdown.attach(exceptions: requests)
        await agent.attach(requests: requests)
        // Offboarding commands too (the list itself was loaded before the control socket opened).
        await revocations.attach(requests: requests)
        await lockdown.attach(users: revocations)
        // The network scope first of all: a locked machine is isolated again before anything
        // else of it runs (the table survives holdfastd's stops, not a reboot).
        let stateDirectory = configuration.stateDirectory
        let brokerAddresses = BrokerAddresses()
        let network = NetworkLockdown(
            brokerURL: { BrokerLink.loadRecord(stateDirectory: stateDirectory)?.url }, met: brokerAddresses, resolvers: configuration.lockdownDNS,
            allowed: configuration.lockdownAllow, journal: journal, logger: logger, record: { recorder.record($0) })
        await lockdown.attach(network, for: .network)
        await agent.attach(network: network)
        let loginConfiguration = configuration
        await lockdown.attach(
            // An exempt user's sessions are left alone (USER or USER@console: the admin at the
            // console keeps the session the login check let in).
            SessionLockdown(action: configuration.lockdownSessions, exempt: { loginConfiguration.loginExempt.contains($0) || loginConfiguration.loginExempt.contains($0 + "@console") }, logger: logger),
            for: .sessions)
        // The user is told why, on their desktop, whatever scope it is.
        let seatNotifier = SeatNotifier(
            seat: SeatUser(path: environment["HOLDFAST_SEAT_FILE"] ?? "/run/systemd/seats/seat0"), runtimeBase: environment["HOLDFAST_USER_RUNTIME_DIR"] ?? "/run/user",
            executable: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/usr/sbin/holdfastd", logger: logger)
        recorder.observe { event in
            if SeatNotifier.message(for: event) != nil { seatNotifier.notify(event) }
        }
        let reasserting = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: LockdownController.reassertInterval)
                await lockdown.expireSuspensions()
                await lockdown.reassert([.network, .sessions])
                await requests.sweep()
                await revocations.reassert()
            }
        }
        defer { reasserting.cancel() }
        // A print lockdown from before the lockdown state existed (PrintService's own key) is
        // carried over, never lifted by the upgrade.
        if await lockdown.entry(.print) == nil, let legacy = try? journal.state(PrintService.lockdownKey, as: PrintService.Lockdown.self) {
            _ = try? await lockdown.engage([.print], reason: legacy.reason, by: legacy.by, source: "admin")
        }
        if configuration.usbEnabled {
            if configuration.usbMarksDirectory != USBService.ruleMarksDirectory {
                logger.warning(
                    "USB marks are not where the shipped udev rule looks; a udev replay may turn off interfaces a policy rule allows",
                    ("usb.marks_dir", configuration.usbMarksDirectory), ("rule_looks_in", USBService.ruleMarksDirectory)
                )
            }
            let usb = USBService(
                policy: await agent.usbPolicy, journal: journal, recorder: recorder, logger: logger,
                rescanInterval: .seconds(configuration.usbRescanSeconds), marksDirectory: configuration.usbMarksDirectory
            )
            await agent.attach(usb: usb)
            await requests.attach(usb: usb)
            await usb.setLockdown(await lockdown.inForce(.usb))
            await supervisor.start(usb)
            // READY means every device present has been decided: `systemctl start` returns with
            // USB enforced. A service that cannot start does not hold the agent hostage.
            let deadline = ContinuousClock.now + readyDeadline
            while await !usb.ready, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(5))
            }
            if await !usb.ready { logger.error("USB enforcement is not ready yet; reporting READY anyway", ("waited", "\(readyDeadline)")) }
            await lockdown.attach(usb, for: .usb)
        }

        if configuration.printEnabled {
            let print = PrintService(
                policy: await agent.printPolicy, section: await agent.policy.policy.sections["print"], journal: journal, recorder: recorder, logger: logger,
                cupsServer: configuration.printCupsServer.isEmpty ? nil : configuration.printCupsServer,
                serverRoot: configuration.printCupsServerRoot, backendUser: configuration.printBackendUser
            )
            if print.backendUID == nil {
                logger.error(
                    "the CUPS backend user does not exist; only root's gate requests are answered",
                    ("print.backend_user", configuration.printBackendUser)
                )
            }
            await agent.attach(print: print)
            await requests.attach(print: print)
            await supervisor.start(print)
            // A lockdown in force before the restart cancels what waited meanwhile.
            Task { await lockdown.attach(print, for: .print) }
        }

        if configuration.fileWatchEnabled {
            let mode = FileWatchService.RuleMode(rawValue: configuration.fileWatchRules) ?? .manage
            let fileWatch = FileWatchService(
                policy: await agent.fileWatchPolicy, roots: configuration.fileWatchRoots, intakePath: configuration.fileWatchIntakePath,
                ruleMode: mode, ruleKey: configuration.fileWatchRuleKey, journal: journal, recorder: recorder, logger: logger, lockdown: lockdown
            )
            await agent.attach(fileWatch: fileWatch)
            await supervisor.start(fileWatch)
        }
        if configuration.postureEnabled {
            do {
                let key = try DeviceKey.loadOrCreate(stateDirectory: configuration.stateDirectory)
                let settings = PostureSettings(
                    minimumVersions: configuration.postureSupported, maximumUpdateAge: Double(configuration.postureMaximumUpdateAge),
                    maximumIdleLock: Int(configuration.postureMaximumIdleLock), configurationFile: configurationPath,
                    stateDirectory: configuration.stateDirectory, cupsRoot: configuration.printCupsServerRoot)
                let posture = PostureService(
                    key: key, interval: .seconds(configuration.postureIntervalSeconds), settings: settings, recorder: recorder, logger: logger,
                    facts: { await agent.postureFacts() })
                recorder.observe { event in
                    if PostureService.isRelevant(event.kind) { Task { await posture.trigger(event.kind) } }
                }
                await agent.attach(posture: posture)
                await supervisor.start(posture)
                let broker = BrokerLink(
                    stateDirectory: configuration.stateDirectory, key: key, attestInterval: .seconds(configuration.brokerAttestIntervalSeconds),
                    heartbeatInterval: .seconds(configuration.brokerHeartbeatIntervalSeconds), policyWait: Int(configuration.brokerPolicyWaitSeconds), logger: logger,
                    posture: posture, journal: journal, uploadBatch: Int(configuration.brokerUploadBatch), record: { recorder.record($0) },
                    applyPolicy: { await agent.adoptBrokerPolicy($0) }, policyVersion: { await agent.brokerPollAfter },
                    services: { Dictionary(await supervisor.snapshot().map { ($0.name, $0.state.name) }, uniquingKeysWith: { first, _ in first }) },
                    lockdown: lockdown, brokerAddresses: brokerAddresses, requests: requests, revocations: revocations)
                await requests.onQueued { Task { await broker.requestSoon() } }
                recorder.observe { event in
                    if event.kind == "posture.changed" { Task { await broker.trigger(event.kind) } }
                    if event.kind.hasPrefix("lockdown.") { Task { await broker.beatSoon() } }
                    Task { await broker.uploadSoon() }
                }
                await agent.attach(broker: broker)
                await supervisor.start(broker)
            } catch {
                // Enforcement runs regardless; a device that cannot sign cannot prove its posture.
                logger.error("posture is off: the device key cannot be loaded or created", ("error", "\(error)"))
                await agent.record(Event(
                    kind: "posture.key_unavailable", eventClass: .complianceFinding, activityID: 99, activityName: "Other",
                    time: Date(), severity: .high, status: .failure,
                    message: "posture reports cannot be signed: the device key in \(configuration.stateDirectory) cannot be loaded or created (\(error))"
                ))
            }
        }
        await agent.record(lifecycle("agent.start", activity: 3, "Start", "holdfastd \(HoldfastVersion.current) started (pid \(getpid()))"))
        if !configuration.usbEnabled {
            // Said loudly: a workstation without USB enforcement is a finding, not a detail.
            logger.warning("USB enforcement is off ([usb] enabled = no); only the udev rule, if installed, keeps storage off")
            await agent.record(Event(
                kind: "usb.disabled", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Disable",
                time: Date(), severity: .medium, status: .success,
                message: "USB enforcement is off on this agent ([usb] enabled = no in \(configurationPath)); only the udev rule, if installed, keeps storage off"
            ))
        }
        logger.notice("holdfastd started", ("version", HoldfastVersion.current), ("control_socket", configuration.controlSocket))
        notifier?.send("READY=1\nSTATUS=enforcing; policy \(await agent.policy.source.rawValue)\nMAINPID=\(getpid())")

        let watchdog = Task {
            guard let notifier, let interval = notifier.watchdogInterval else { return }
            while !Task.isCancelled {
                // The ping goes out only while the agent and the supervisor answer: an agent stuck
                // in a call stops pinging and systemd restarts it.
                await agent.heartbeat()
                _ = await supervisor.snapshot()
                notifier.send("WATCHDOG=1")
                try? await Task.sleep(for: interval)
            }
        }

        for await signal in signals {
            if signal == SIGHUP {
                // systemd's notify-reload needs the monotonic time with RELOADING=1.
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                notifier?.send("RELOADING=1\nMONOTONIC_USEC=\(Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000)")
                let outcome = await agent.reload(trigger: "SIGHUP")
                notifier?.send("READY=1\nSTATUS=\(outcome.ok ? "reloaded" : "reload refused; previous configuration in force")")
                continue
            }
            logger.notice("stopping", ("signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"))
            break
        }

        notifier?.send("STOPPING=1")
        watchdog.cancel()
        let late = await supervisor.shutdown(deadline: stopDeadline)
        recorder.flush()
        listener.removeSocketFile()
        await agent.record(lifecycle(
            "agent.stop", activity: 4, "Stop",
            late.isEmpty ? "holdfastd stopped" : "holdfastd stopped; services still stopping: \(late.joined(separator: ", "))"
        ))
        logger.notice("holdfastd stopped")
        return 0
    }

    static func lifecycle(_ kind: String, activity: Int, _ name: String, _ message: String, ok: Bool = true) -> Event {
        Event(
            kind: kind, eventClass: .applicationLifecycle, activityID: activity, activityName: name,
            time: Date(), severity: ok ? .informational : .high, status: ok ? .success : .failure, message: message,
            actor: Actor(process: .init(pid: Int(getpid()), name: "holdfastd"))
        )
    }
}
