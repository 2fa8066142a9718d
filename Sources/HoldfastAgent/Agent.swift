public import BrokerClient
public import DeviceGuard
public import FileWatch
import FoundationEssentials
import HoldfastCrypto
public import HoldfastCore
public import HoldfastStore
public import Lockdown
public import PrintGuard
public import Posture
#if canImport(Glibc)
import Glibc
#endif

/// The agent's state and its control verbs: configuration, policy, journal, services.
public actor Agent: ControlHandler {
    public let configurationPath: String
    public private(set) var configuration: AgentConfiguration
    public private(set) var policy: ActivePolicy
    public let journal: Journal
    public let supervisor: Supervisor
    let logger: Logger
    let clock: any TimeSource
    let startedAt: Date
    private var lastReload: (at: Date, ok: Bool, messages: [String])?
    /// Settings read on reload that only a restart applies, as `key: new value`.
    private var pendingRestart: [String: String] = [:]
    /// Refused requests journaled per caller uid: a burst of 20, then one per 10 s. An
    /// unprivileged user must not be able to fill the journal (and evict un-uploaded events) with
    /// refusals; the suppressed ones are counted in the next event that passes.
    private let denialLimiter: RateLimiter
    /// Refusals counted but not journaled one by one (shown in `holdfast status`).
    private var suppressedDenials = 0
    /// DeviceGuard, when USB enforcement runs (`[usb] enabled`).
    private(set) var usb: USBService?
    /// PrintGuard, when print enforcement runs (`[print] enabled`).
    private(set) var print: PrintService?
    /// FileWatch, when it runs (`[filewatch] enabled`).
    private(set) var fileWatch: FileWatchService?
    /// The lockdown scopes in force.
    private(set) var lockdown: LockdownController?
    /// The network scope's enforcer (what its table allows).
    private(set) var network: NetworkLockdown?
    /// Device health: the signed posture report.
    private(set) var posture: PostureService?
    /// The broker: enrollment, attestation, grants, the signed agent policy.
    private(set) var broker: BrokerLink?
    /// Users' requests for just-in-time exceptions.
    private(set) var requests: AccessRequests?
    /// Users offboarded by the broker: denied at login here.
    private(set) var revocations: UserRevocations?

    /// Builds the agent: loads the policy (file, else last good, else built-in) and journals the start.
    public init(
        configurationPath: String,
        configuration: AgentConfiguration,
        journal: Journal,
        supervisor: Supervisor,
        logger: Logger,
        clock: any TimeSource = SystemTimeSource()
    ) {
        self.configurationPath = configurationPath
        self.configuration = configuration
        self.journal = journal
        self.supervisor = supervisor
        self.logger = logger
        self.clock = clock
        startedAt = clock.now()
        denialLimiter = RateLimiter(burst: 20, perSecond: 0.1, clock: clock)
        var loader = PolicyLoader(journal: journal)
        defer {
            if let failure = loader.saveFailure { logger.error("could not save the policy as the last good one", ("error", failure)) }
        }
        switch loader.load(configuration.policyFile, now: startedAt) {
        case .loaded(let active):
            policy = active
        case .refused(let reason, let fallback):
            policy = fallback
            logger.error("policy refused; using the \(fallback.source.rawValue) policy", ("reason", reason))
            Self.record(journal, logger, Self.policyRefusedEvent(reason: reason, fallback: fallback, at: startedAt))
        }
        logger.notice(
            "policy in force", ("policy.source", policy.source.rawValue), ("policy.sha256", String(policy.digest.prefix(16)))
        )
        // A broker policy was applied here before: the broker governs, never the local file.
        brokerManaged = (try? journal.state(Self.brokerFloorKey)) != nil
    }

    // MARK: Verbs

    /// The verbs this agent answers, with their class.
    static let verbs: [String: VerbClass] = [
        "ping": .read,
        "status": .read,
        "reload": .admin,
        "usb.devices": .read,
        "usb.allow": .admin,
        "usb.revoke": .admin,
        "print.status": .read,
        // The backend's question; answered only for root and `[print] backend_user` (checked in handle).
        "print.gate": .request,
        "print.lockdown": .admin,
        "filewatch.status": .read,
        "filewatch.export": .admin,
        "filewatch.import": .admin,
        "lockdown.status": .read,
        // Root only: it signs with the device key over a caller's nonce, and the evidence names
        // accounts and files an unprivileged user should not learn.
        "posture.report": .admin,
        "lockdown.engage": .admin,
        "lockdown.release": .admin,
        // Break-glass: a code read over the phone lifts scopes offline until its window ends. Any
        // local user: the person at a locked laptop is rarely root, and root needs no code (it
        // can release); the code carries the admin's authority, bound to this device, its scopes
        // and window, once. Wrong codes are limited per caller and in all.
        "lockdown.unlock": .request,
        // Enrolling binds this device to a broker; the grant is a bearer credential.
        "enroll": .admin,
        "grant": .admin,
        "broker.attest": .admin,
        // PAM's question (pam_exec runs as root at login); answered only for root (checked in handle).
        "login.check": .request,
        // Just-in-time exceptions: any local user asks (recorded with their uid; an approver
        // decides) and sees their own requests; root sees everyone's.
        "request.submit": .request,
        "request.list": .request,
    ]

    /// Attaches DeviceGuard: its verbs answer, and reloads hand it the new policy.
    public func attach(usb service: USBService) { usb = service }

    /// Attaches PrintGuard.
    public func attach(print service: PrintService) { print = service }

    /// Attaches FileWatch.
    public func attach(fileWatch service: FileWatchService) { fileWatch = service }

    /// Attaches the lockdown controller.
    public func attach(lockdown controller: LockdownController) { lockdown = controller }

    /// Attaches the exception requests.
    public func attach(requests registry: AccessRequests) { requests = registry }

    /// Attaches the offboarded users.
    public func attach(revocations registry: UserRevocations) { revocations = registry }

    func attach(network enforcer: NetworkLockdown) { network = enforcer }

    /// The lockdown status, with what the network table allows.
    func lockdownStatus(_ lockdown: LockdownController) async -> JSONValue {
        guard case .object(var object) = await lockdown.status() else { return .null }
        if let network { object["network"] = await network.detail() }
        return .object(object)
    }

    /// Attaches Posture.
    public func attach(posture service: PostureService) { posture = service }

    /// Attaches the broker link.
    public func attach(broker link: BrokerLink) { broker = link }

    /// The broker's policy version in force, if a broker policy is.
    public var brokerPolicyVersion: Int64? { policy.source == .broker ? policy.brokerVersion : nil }

    static let brokerFloorKey = "broker.policy_version"
    /// The last broker policy document applied (its exact bytes, verified when it was applied):
    /// what an enrolled agent falls back to, never the local file.
    static let brokerLastGoodKey = "broker.last_good"
    /// Set once the broker's policy governs this agent (enrolled, or a broker policy was ever
    /// applied): from then on the local policy file is not read, at reload either.
    private(set) var brokerManaged = false

    /// Enrollment with a (new) broker starts its policy history afresh.
    public func resetBrokerPolicy() {
        _ = try? journal.removeState(Self.brokerFloorKey)
        _ = try? journal.removeState(Self.brokerLastGoodKey)
        unlink(configuration.stateDirectory + "/" + BrokerLink.policyFile)
        // Until this broker publishes a policy, the local file serves (as for any enrolled agent).
        brokerManaged = false
    }

    /// What to ask the broker for: versions after this one. After a fallback the newest applied
    /// version may come back (it is not in force), so the ask is one below it.
    public var brokerPollAfter: Int64 {
        if let version = brokerPolicyVersion { return version }
        if let floor = brokerPolicyFloor { return max(0, floor - 1) }
        return 0
    }

    /// The newest broker policy version ever applied (kept in the journal's state): nothing older
    /// is accepted again, even when the policy in force fell back to the last good one.
    public var brokerPolicyFloor: Int64? {
        let stored = (try? journal.state(Self.brokerFloorKey)).flatMap { Int64(String(decoding: $0, as: UTF8.self)) }
        switch (stored, brokerPolicyVersion) {
        case (let a?, let b?): return max(a, b)
        case (let a?, nil): return a
        case (nil, let b): return b
        }
    }

    /// The stored broker policy cannot be trusted: the last good policy (else the built-in one)
    /// is in force instead of the local file, and the refusal is journaled.
    public func keepLastGood(reason: String) {
        brokerManaged = true
        var fallback = ActivePolicy(
            policy: Policy.builtInDefault, source: .builtIn, path: "(built-in)", digest: SHA256.hex(Policy.builtInDefault.bytes), loadedAt: clock.now())
        if let bytes = try? journal.state(Self.brokerLastGoodKey), let parsed = try? Policy.parse(bytes) {
            fallback = ActivePolicy(policy: parsed, source: .lastGood, path: "(last broker policy)", digest: SHA256.hex(bytes), loadedAt: clock.now())
        }
        policy = fallback
        logger.error("broker policy refused at start; using the \(fallback.source.rawValue) policy", ("reason", reason))
        record(Self.policyRefusedEvent(reason: reason, fallback: fallback, at: clock.now()))
    }

    /// Puts a verified agent policy from the broker in force (it wins over the local file);
    /// nil when applied, else why it was refused — the policy in force then stays.
    public func adoptBrokerPolicy(_ signed: SignedAgentPolicy, atStart: Bool = false) async -> String? {
        let now = clock.now()
        // No rollback: older than the newest applied is refused; the newest itself only when it
        // is not what is in force (after a fallback it may come back).
        if let floor = brokerPolicyFloor, signed.version < floor || (signed.version == floor && !atStart && brokerPolicyVersion == floor) {
            let reason = "broker policy version \(signed.version) is not newer than version \(floor) applied before (no rollback)"
            Self.record(journal, logger, Self.policyRefusedEvent(reason: reason, fallback: policy, at: now))
            return reason
        }
        let parsed: Policy
        do {
            parsed = try Policy.parse(signed.document)
        } catch {
            let reason = "broker policy version \(signed.version): \(error.message)"
            Self.record(journal, logger, Self.policyRefusedEvent(reason: reason, fallback: policy, at: now))
            return reason
        }
        if let problem = PolicyLoader.domainProblem(parsed) {
            let reason = "broker policy version \(signed.version): \(problem)"
            Self.record(journal, logger, Self.policyRefusedEvent(reason: reason, fallback: policy, at: now))
            return reason
        }
        if !atStart {
            do {
                try BrokerLink.savePolicy(signed, stateDirectory: configuration.stateDirectory)
            } catch {
                logger.error("could not keep the broker policy as the last good one", ("error", "\(error)"))
            }
        }
        try? journal.setState(PolicyLoader.lastGoodKey, signed.document)
        try? journal.setState(Self.brokerLastGoodKey, signed.document)
        brokerManaged = true
        if signed.version > (brokerPolicyFloor ?? 0) { try? journal.setState(Self.brokerFloorKey, Array("\(signed.version)".utf8)) }
        var active = ActivePolicy(policy: parsed, source: .broker, path: "(agent-policy v\(signed.version))", digest: SHA256.hex(signed.document), loadedAt: now)
        active.brokerVersion = signed.version
        let changed = active.digest != policy.digest || policy.source != .broker
        policy = active
        if let usb { await usb.update(policy: usbPolicy) }
        if let print { await print.update(policy: printPolicy, section: policy.policy.sections["print"]) }
        if let fileWatch { await fileWatch.update(policy: fileWatchPolicy) }
        if changed || !atStart {
            record(Event(
                kind: "policy.applied", eventClass: .deviceConfigStateChange, activityID: 2, activityName: "Update", time: now, severity: .informational, status: .success,
                message: "broker policy version \(signed.version) in force (sha256 \(active.digest.prefix(16)))",
                details: ["version": .int(signed.version), "sha256": .string(active.digest), "source": "broker"]))
        }
        logger.notice("broker policy in force", ("policy.version", "\(signed.version)"), ("policy.sha256", String(active.digest.prefix(16))))
        return nil
    }

    /// What the posture checks compare the machine with: the agent's intent.
    public func postureFacts() async -> AgentFacts {
        var lockdownFacts: [String: LockdownFact] = [:]
        if let lockdown {
            for (scope, state) in await lockdown.enforcement() {
                lockdownFacts[scope.rawValue] = LockdownFact(recorded: state.locked, enforced: state.inEffect, detail: state.failure ?? "")
            }
        }
        let rules = configuration.fileWatchEnabled ? try? AuditRuleSet(roots: configuration.fileWatchRoots, keyPrefix: configuration.fileWatchRuleKey) : nil
        var facts = AgentFacts(
            auditRules: rules, lostAtLastReport: nil, printPolicy: print == nil ? nil : printPolicy,
            printQueues: await print?.queueURIs(), usbEnforced: configuration.usbEnabled, lockdown: lockdownFacts)
        if let coverage = await fileWatch?.statusReport()["coverage"] {
            var reasons: [String: Int64] = [:]
            if case .object(let members)? = coverage["reasons"] { for (reason, count) in members { reasons[reason] = count.intValue ?? 0 } }
            facts.fileWatchCoverage = CoverageFact(complete: coverage["complete"]?.boolValue ?? false, reasons: reasons, since: coverage["incomplete_since"]?.stringValue)
        }
        return facts
    }

    /// The `filewatch` section of the policy in force (the defaults when it no longer parses).
    public var fileWatchPolicy: FileWatchPolicy { (try? FileWatchPolicy(section: policy.policy.sections["filewatch"])) ?? FileWatchPolicy() }

    /// The `print` section of the policy in force (strict defaults when it no longer parses).
    public var printPolicy: PrintPolicy { (try? PrintPolicy(section: policy.policy.sections["print"])) ?? .empty }

    /// The `usb` section of the policy in force (validated when it was loaded; a last-good policy
    /// that no longer parses gives the strict defaults).
    public var usbPolicy: USBPolicy { (try? USBPolicy(section: policy.policy.sections["usb"])) ?? .empty }

    public func verbClass(_ verb: String) -> VerbClass? { Self.verbs[verb] }

    public func handle(_ request: ControlRequest, from peer: PeerCredentials) async -> ControlResponse {
        switch request.verb {
        case "ping":
            return .success(.object(["pong": true]))
        case "status":
            return .success(await status())
        case "reload":
            let outcome = await reload(trigger: "control (uid \(peer.uid), pid \(peer.pid))")
            let object: JSONValue = .object(["reloaded": .bool(outcome.ok), "messages": .array(outcome.messages.map(JSONValue.string))])
            return outcome.ok ? .success(object) : .failure(.failed, outcome.messages.joined(separator: "; "))
        case "usb.devices", "usb.allow", "usb.revoke":
            guard let usb else { return .failure(.failed, "USB enforcement is not running on this agent ([usb] enabled = no)") }
            return await handleUSB(request, usb, peer)
        case "print.status", "print.gate", "print.lockdown":
            guard let print else { return .failure(.failed, "print enforcement is not running on this agent ([print] enabled = no)") }
            return await handlePrint(request, print, peer)
        case "filewatch.status", "filewatch.export", "filewatch.import":
            guard let fileWatch else { return .failure(.failed, "FileWatch is not running on this agent ([filewatch] enabled = no)") }
            return await handleFileWatch(request, fileWatch, peer)
        case "lockdown.status", "lockdown.engage", "lockdown.release", "lockdown.unlock":
            guard let lockdown else { return .failure(.failed, "no lockdown controller on this agent") }
            return await handleLockdown(request, lockdown, peer)
        case "posture.report":
            guard let posture else { return .failure(.failed, "posture is off on this agent ([posture] enabled = no)") }
            var only: Set<String>?
            if let list = request.arguments["only"] {
                guard case .array(let ids) = list, !ids.isEmpty else { return .failure(.badRequest, "only is a non-empty list of check ids") }
                let names = ids.compactMap(\.stringValue)
                let known = Set(PostureCatalog.checks.map(\.id))
                let unknown = Set(names).subtracting(known)
                guard names.count == ids.count, unknown.isEmpty else {
                    return .failure(.badRequest, names.count != ids.count ? "only lists check ids (strings)" : "no check named \(unknown.sorted().joined(separator: ", "))")
                }
                only = Set(names)
            }
            let nonce = request.arguments["nonce"]?.stringValue
            if let nonce, nonce.utf8.count > 256 { return .failure(.badRequest, "nonce is at most 256 bytes") }
            let answer = await posture.report(nonce: nonce, only: only)
            var result: [String: JSONValue] = ["posture": answer.report]
            if let signed = answer.signed { result["report"] = .string(signed) }
            return .success(.object(result))
        case "login.check":
            return await loginCheck(request, peer)
        case "request.submit", "request.list":
            guard let requests else { return .failure(.failed, "exception requests are not taken on this agent") }
            return await handleRequests(request, requests, peer)
        case "enroll", "grant", "broker.attest":
            guard let broker else { return .failure(.failed, "the broker link is not running on this agent") }
            return await handleBroker(request, broker, peer)
        default:
            return .failure(.unknownVerb, "unknown verb '\(request.verb)'")
        }
    }

    /// `login.check` from `holdfast login-check` (PAM account phase): allowed or not, why, and
    /// which path decided; every decision is an event.
    private func loginCheck(_ request: ControlRequest, _ peer: PeerCredentials) async -> ControlResponse {
        guard peer.uid == 0 else {
            let reason = "login.check answers only root (pam_exec at login); uid \(peer.uid) is not"
            denied(request, from: peer, reason: reason)
            return .failure(.permissionDenied, "permission denied: \(reason)")
        }
        guard let user = request.arguments["user"]?.stringValue, LoginName.isValid(user) else {
            return .failure(.badRequest, "login.check needs the user (PAM_USER): a login name without control characters, at most \(LoginName.maximumBytes) bytes")
        }
        let tty = request.arguments["tty"]?.stringValue
        let remote = request.arguments["rhost"]?.stringValue
        let service = request.arguments["service"]?.stringValue ?? ""
        let allowed: Bool
        let path: String
        let reason: String
        if let revoked = await revocations?.revocation(user) {
            // Offboarded: denied whatever else says yes, exemptions included (docs/offboarding.md).
            (allowed, path, reason) = (false, "offboarded", "\(user)'s access was revoked by \(revoked.by) at \(revoked.since.formatted(.iso8601)): \(revoked.reason)")
        } else if let unreadable = await revocations?.unreadable, OffboardedUsers.account(user)?.uid != 0 {
            // The list is lost: nobody but root can be told apart from an offboarded user.
            (allowed, path, reason) = (false, "offboarded", unreadable)
        } else if configuration.loginIsExempt(user: user, tty: tty, remoteHost: remote) {
            // An exempt user other than root is still asked about at the broker when it answers: a
            // device that has not had an offboarding yet must not let that person in because
            // they are exempt (an unreachable broker keeps the exemption).
            var offboardedAtBroker: String?
            if !OffboardedUsers.isRoot(user), let broker, await broker.enrolled {
                let decision = await broker.loginCheck(user: user, timeout: .milliseconds(configuration.loginTimeoutMilliseconds), grace: configuration.loginOfflineGraceSeconds)
                if decision.path == .refused, decision.reason.contains("(offboarded)") { offboardedAtBroker = decision.reason }
            }
            if let offboardedAtBroker {
                (allowed, path, reason) = (false, "offboarded", offboardedAtBroker)
            } else {
                (allowed, path, reason) = (true, "exempt", "\(user) is exempt here ([login] exempt)")
            }
        } else if let sessions = await lockdown?.inForce(.sessions) {
            // A sessions lockdown denies every login but the exempt ones, whatever the broker says.
            (allowed, path, reason) = (false, "lockdown", "this computer is locked down by \(sessions.by): \(sessions.reason)")
        } else if let broker {
            let decision = await broker.loginCheck(
                user: user, timeout: .milliseconds(configuration.loginTimeoutMilliseconds), grace: configuration.loginOfflineGraceSeconds)
            (allowed, path, reason) = (decision.allowed, decision.path.rawValue, decision.reason)
        } else {
            (allowed, path, reason) = (false, "unenrolled", "posture and the broker link are off on this agent")
        }
        record(Event(
            kind: allowed ? "login.allowed" : "login.denied", eventClass: .authentication, activityID: 1, activityName: "Logon", time: clock.now(),
            severity: allowed ? .informational : .medium, status: allowed ? .success : .failure,
            message: "login of \(user)\(service.isEmpty ? "" : " (\(service))") \(allowed ? "allowed" : "denied") [\(path)]: \(reason)",
            actor: Actor(user: .init(uid: nil, name: user)),
            details: ["user": .string(user), "path": .string(path), "service": .string(service), "tty": .string(tty ?? ""), "rhost": .string(remote ?? ""), "reason": .string(reason)]))
        return .success(.object(["allowed": .bool(allowed), "path": .string(path), "reason": .string(reason)]))
    }

    /// `request.submit` {kind: usb|print, target, pages?, seconds, reason} and `request.list`.
    private func handleRequests(_ request: ControlRequest, _ requests: AccessRequests, _ peer: PeerCredentials) async -> ControlResponse {
        if request.verb == "request.list" { return .success(await requests.list(uid: peer.uid == 0 && request.arguments["all"]?.boolValue != false ? nil : Int64(peer.uid))) }
        guard let kind = request.arguments["kind"]?.stringValue.flatMap(ExceptionKind.init(rawValue:)) else {
            return .failure(.badRequest, "request.submit needs \"kind\": usb or print")
        }
        guard let target = request.arguments["target"]?.stringValue, target.utf8.count <= 256 else {
            return .failure(.badRequest, "request.submit needs \"target\": the device (usb) or the queue (print)")
        }
        guard let seconds = request.arguments["seconds"]?.intValue else { return .failure(.badRequest, "request.submit needs \"seconds\": every exception ends") }
        guard let reason = request.arguments["reason"]?.stringValue, reason.utf8.count <= 4_096 else { return .failure(.badRequest, "request.submit needs a \"reason\"") }
        guard let broker else {
            return .failure(.failed, "this agent has no broker link ([posture] enabled = no): a request has no one to go to; ask the security team for a local exception")
        }
        guard await broker.enrolled else {
            return .failure(.failed, "this device is not enrolled with a broker: a request has no one to go to; ask the security team")
        }
        guard let name = Self.actor(for: peer).user?.name else { return .failure(.failed, "uid \(peer.uid) has no login name") }
        do {
            let entry = try await requests.submit(
                kind: kind, target: target, pages: request.arguments["pages"]?.intValue, seconds: seconds, reason: reason, uid: Int64(peer.uid), user: name)
            return .success(.object(AccessRequests.details(entry)))
        } catch {
            denied(request, from: peer, reason: error.message)
            return .failure(.failed, error.message)
        }
    }

    private func handleBroker(_ request: ControlRequest, _ broker: BrokerLink, _ peer: PeerCredentials) async -> ControlResponse {
        switch request.verb {
        case "enroll":
            guard let token = request.arguments["token"]?.stringValue, token.utf8.count <= 8_192 else { return .failure(.badRequest, "say the enrollment token") }
            switch await broker.enroll(token: token) {
            case .success(let record):
                resetBrokerPolicy()
                return .success(.object(["device_id": .string(record.deviceID), "url": .string(record.url), "enrolled_by": .string(Self.who(peer))]))
            case .failure(let error):
                return .failure(.failed, error.message)
            }
        case "broker.attest":
            var user: String?
            if let given = request.arguments["user"] {
                guard let name = given.stringValue, LoginName.isValid(name) else { return .failure(.badRequest, "user is a login name") }
                user = name
            }
            switch await broker.attestNow(user: user) {
            case .success: return .success(await broker.currentGrant())
            case .failure(let error): return .failure(.failed, error.message)
            }
        default:
            let grant = await broker.currentGrant()
            guard grant["grant"] != nil else {
                let why = grant["denial"]?.stringValue
                    ?? (grant["enrolled"]?.boolValue == true
                        ? "none yet: the first attestation may still be running, or the last one failed (holdfast status says which; holdfast grant --fresh attests now)"
                        : "this device is not enrolled (holdfast enroll --token …)")
                return .failure(.failed, "no access grant: \(why)")
            }
            return .success(grant)
        }
    }

    private func handleUSB(_ request: ControlRequest, _ usb: USBService, _ peer: PeerCredentials) async -> ControlResponse {
        let who = "uid \(peer.uid)" + (Self.actor(for: peer).user?.name.map { " (\($0))" } ?? "")
        switch request.verb {
        case "usb.devices":
            return .success(await usb.devicesReport())
        case "usb.allow":
            guard let text = request.arguments["device"]?.stringValue, let target = USBExceptionTarget(text) else {
                return .failure(.badRequest, "usb.allow needs \"device\": a bus path such as 1-2, or vid:pid[:serial]")
            }
            guard let seconds = request.arguments["seconds"]?.intValue else {
                return .failure(.badRequest, "usb.allow needs \"seconds\": every exception has an expiry")
            }
            do {
                let exception = try await usb.allow(target, seconds: seconds, reason: request.arguments["reason"]?.stringValue ?? "", grantedBy: who)
                return .success(.object(USBService.exceptionDetails(exception)))
            } catch {
                return .failure(.failed, error.message)
            }
        default:
            guard let id = request.arguments["id"]?.stringValue else { return .failure(.badRequest, "usb.revoke needs \"id\"") }
            do {
                let exception = try await usb.revoke(id, by: who)
                return .success(.object(USBService.exceptionDetails(exception)))
            } catch {
                return .failure(.failed, error.message)
            }
        }
    }

    private func handlePrint(_ request: ControlRequest, _ print: PrintService, _ peer: PeerCredentials) async -> ControlResponse {
        switch request.verb {
        case "print.status":
            return .success(await print.statusReport())
        case "print.gate":
            guard peer.uid == 0 || peer.uid == print.backendUID else {
                let reason = "print.gate answers only root and the CUPS backend user; uid \(peer.uid) is neither"
                denied(request, from: peer, reason: reason)
                return .failure(.permissionDenied, "permission denied: \(reason)")
            }
            guard let job = GateRequest(arguments: request.arguments) else {
                return .failure(.badRequest, "print.gate needs job, user, queue, device_uri, copies (1-10000), bytes and pages (a count or null)")
            }
            let verdict = await print.gate(job)
            return .success(.object([
                "verdict": .string(verdict.allowed ? "allow" : "deny"), "reason": .string(verdict.reason),
                "charged_pages": .int(verdict.chargedPages),
            ]))
        default:
            guard let on = request.arguments["on"]?.boolValue else { return .failure(.badRequest, "print.lockdown needs \"on\": true or false") }
            let who = "uid \(peer.uid)" + (Self.actor(for: peer).user?.name.map { " (\($0))" } ?? "")
            // The print scope of the one lockdown state: the same path a FileWatch block takes.
            if let lockdown {
                let reason = (request.arguments["reason"]?.stringValue ?? "").trimmingSpaces
                do {
                    if on {
                        let changed = try await lockdown.engage([.print], reason: reason.isEmpty ? "no reason given" : reason, by: who, source: "admin")
                        let cancelled = changed.isEmpty ? [] : await print.lastLockdownCancelled
                        return .success(.object(["locked_down": true, "cancelled_jobs": .array(cancelled.map { .int(Int64($0)) })]))
                    }
                    try await lockdown.release([.print], reason: reason.isEmpty ? "released by hand" : reason, by: who)
                    return .success(.object(["locked_down": false, "cancelled_jobs": .array([])]))
                } catch {
                    return .failure(.failed, "the lockdown state cannot be saved: \(error)")
                }
            }
            do {
                let cancelled = try await print.setLockdown(on ? (request.arguments["reason"]?.stringValue ?? "") : nil, by: who)
                return .success(.object(["locked_down": .bool(on), "cancelled_jobs": .array(cancelled.map { .int(Int64($0)) })]))
            } catch {
                return .failure(.failed, error.message)
            }
        }
    }

    private func handleFileWatch(_ request: ControlRequest, _ fileWatch: FileWatchService, _ peer: PeerCredentials) async -> ControlResponse {
        switch request.verb {
        case "filewatch.status":
            return .success(await fileWatch.statusReport())
        case "filewatch.export":
            let snapshot = await fileWatch.exportBaseline()
            guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(snapshot.encoded())) else {
                return .failure(.failed, "the baseline could not be encoded")
            }
            return .success(.object(["baseline": value]))
        default:
            guard let path = request.arguments["path"]?.stringValue, path.hasPrefix("/") else {
                return .failure(.badRequest, "filewatch.import needs \"path\": the absolute path of a baseline export")
            }
            let bytes: [UInt8]
            // Up to 64 MiB: an export of many users at a long memory is larger than a policy.
            switch PolicyLoader.read(path, limit: 64 << 20) {
            case .success(let read): bytes = read
            case .failure(let reason): return .failure(.failed, "\(path): \(reason)")
            }
            do {
                let snapshot = try BaselineSnapshot.decode(bytes)
                try await fileWatch.importBaseline(snapshot, by: Self.who(peer))
                return .success(.object(["imported_users": .int(Int64(snapshot.users.count))]))
            } catch {
                return .failure(.failed, "\(path): \(error.message)")
            }
        }
    }

    private func handleLockdown(_ request: ControlRequest, _ lockdown: LockdownController, _ peer: PeerCredentials) async -> ControlResponse {
        if request.verb == "lockdown.status" { return .success(await lockdownStatus(lockdown)) }
        if request.verb == "lockdown.unlock" {
            guard let code = request.arguments["code"]?.stringValue, code.utf8.count <= 64 else { return .failure(.badRequest, "lockdown.unlock needs \"code\"") }
            let record = BrokerLink.loadRecord(stateDirectory: configuration.stateDirectory)
            switch await lockdown.breakGlass(code, secret: record?.breakglassSecretBytes, device: record?.deviceID, by: Self.who(peer)) {
            case .success(let outcome):
                var result = await lockdownStatus(lockdown)
                if case .object(var object) = result {
                    object["lifted"] = .array(outcome.lifted.map { .string($0.rawValue) })
                    object["until"] = .string(outcome.until.formatted(.iso8601))
                    result = .object(object)
                }
                return .success(result)
            case .failure(let refusal):
                return .failure(.failed, "break-glass refused (\(refusal.reason)): \(refusal.message)")
            }
        }
        let scopes: [LockdownScope]
        do {
            scopes = try LockdownScope.parseList(request.arguments["scopes"]?.stringValue ?? "")
        } catch {
            return .failure(.badRequest, error.description)
        }
        guard !scopes.isEmpty else { return .failure(.badRequest, "\(request.verb) needs \"scopes\": usb, print, network or sessions") }
        let reason = (request.arguments["reason"]?.stringValue ?? "").trimmingSpaces
        guard !reason.isEmpty else { return .failure(.badRequest, "\(request.verb) needs a \"reason\"") }
        do {
            let changed = request.verb == "lockdown.engage"
                ? try await lockdown.engage(scopes, reason: reason, by: Self.who(peer), source: "admin")
                : try await lockdown.release(scopes, reason: reason, by: Self.who(peer))
            var result = await lockdownStatus(lockdown)
            if case .object(var object) = result {
                object["changed"] = .array(changed.map { .string($0.rawValue) })
                result = .object(object)
            }
            return .success(result)
        } catch {
            return .failure(.failed, "the lockdown state cannot be saved: \(error)")
        }
    }

    static func who(_ peer: PeerCredentials) -> String {
        "uid \(peer.uid)" + (actor(for: peer).user?.name.map { " (\($0))" } ?? "")
    }

    public func denied(_ request: ControlRequest, from peer: PeerCredentials, reason: String) {
        let (allowed, suppressed) = denialLimiter.admit(String(peer.uid))
        guard allowed else {
            suppressedDenials += 1
            return
        }
        var details: [String: JSONValue] = [
            "verb": .string(request.verb), "peer_uid": .int(Int64(peer.uid)), "peer_pid": .int(Int64(peer.pid)),
        ]
        if suppressed > 0 { details["suppressed_since_last"] = .int(Int64(suppressed)) }
        let event = Event(
            kind: "control.denied",
            eventClass: .apiActivity,
            activityID: 99,
            activityName: request.verb,
            time: clock.now(),
            severity: .medium,
            status: .failure,
            message: "refused control verb '\(request.verb)' from uid \(peer.uid): \(reason)"
                + (suppressed > 0 ? " (\(suppressed) more refusals from this uid were not journaled one by one)" : ""),
            actor: Self.actor(for: peer),
            details: details
        )
        Self.record(journal, logger, event)
    }

    /// Everything `holdfast status` shows.
    public func status() async -> JSONValue {
        let now = clock.now()
        var services: [JSONValue] = []
        for service in await supervisor.snapshot() {
            var row: [String: JSONValue] = [
                "name": .string(service.name), "state": .string(service.state.name), "restarts": .int(Int64(service.restarts)),
            ]
            if let error = service.lastError { row["last_error"] = .string(error) }
            services.append(.object(row))
        }
        var journalStatus: JSONValue = .null
        if let stats = try? journal.stats() {
            journalStatus = .object([
                "path": .string(journal.configuration.path),
                "events": .int(stats.events),
                "event_bytes": .int(stats.eventBytes),
                "max_bytes": .int(Int64(journal.configuration.maximumEventBytes)),
                "pending_upload": .int(stats.pendingUpload),
                "lost_unuploaded": .int(stats.lostUnuploaded),
                "last_id": .int(stats.lastID),
            ])
        }
        var policyStatus: [String: JSONValue] = [
            "source": .string(policy.source.rawValue),
            "path": .string(policy.path),
            "sha256": .string(policy.digest),
            "loaded_at": .string(policy.loadedAt.formatted(.iso8601)),
        ]
        if let version = policy.policy.version { policyStatus["version"] = .int(version) }
        if let version = policy.brokerVersion { policyStatus["broker_version"] = .int(version) }
        var result: [String: JSONValue] = [
            "version": .string(HoldfastVersion.current),
            "pid": .int(Int64(getpid())),
            "started_at": .string(startedAt.formatted(.iso8601)),
            "uptime_seconds": .int(Int64(now.timeIntervalSince(startedAt))),
            "config": .object(["path": .string(configurationPath), "log_level": .string(logger.level.name)]),
            "policy": .object(policyStatus),
            "enrollment": await broker?.status() ?? .object(["state": "unenrolled"]),
            "services": .array(services),
            "journal": journalStatus,
            "control": .object(["denials_not_journaled": .int(Int64(suppressedDenials))]),
        ]
        result["usb"] = await usb?.statusSummary() ?? .object(["enabled": false])
        result["print"] = await print?.statusSummary() ?? .object(["enabled": false])
        result["filewatch"] = await fileWatch?.statusReport() ?? .object(["enabled": false])
        if let lockdown { result["lockdown"] = await lockdownStatus(lockdown) }
        if let requests { result["requests"] = await requests.summary() }
        if let revocations {
            // Who, since when, by whom — not why (the journal keeps the reasons, for root).
            result["offboarded"] = .array(await revocations.all().map { .object(["user": .string($0.user), "since": .string($0.since.formatted(.iso8601)), "by": .string($0.by)]) })
            if let lost = await revocations.unreadable { result["offboarded_lost"] = .string(lost) }
        }
        result["posture"] = await posture?.statusSummary() ?? .object(["enabled": false])
        if !pendingRestart.isEmpty {
            result["pending_restart"] = .object(pendingRestart.mapValues(JSONValue.string))
        }
        if let lastReload {
            result["last_reload"] = .object([
                "at": .string(lastReload.at.formatted(.iso8601)), "ok": .bool(lastReload.ok),
                "messages": .array(lastReload.messages.map(JSONValue.string)),
            ])
        }
        return .object(result)
    }

    /// Answers as soon as the actor is free: the watchdog pings systemd only after this returns,
    /// so an agent stuck in a call stops pinging and gets restarted.
    public func heartbeat() {}

    // MARK: Reload

    public struct ReloadOutcome: Sendable {
        public let ok: Bool
        public let messages: [String]
    }

    /// Re-reads the configuration and the policy. A bad new configuration or policy is logged and
    /// journaled, and the one in force stays.
    @discardableResult
    public func reload(trigger: String) async -> ReloadOutcome {
        let now = clock.now()
        var messages: [String] = []
        var ok = true
        do {
            let fresh = try AgentConfigurationParser.load(configurationPath, requireRootOwned: true)
            // Only what can change live changes; the rest stays in force and is shown as pending.
            pendingRestart = [:]
            for (name, old, new) in [
                ("agent.state_dir", configuration.stateDirectory, fresh.stateDirectory),
                ("agent.control_socket", configuration.controlSocket, fresh.controlSocket),
                ("journal.max_size", "\(configuration.journalMaximumBytes)", "\(fresh.journalMaximumBytes)"),
                ("usb.enabled", configuration.usbEnabled ? "yes" : "no", fresh.usbEnabled ? "yes" : "no"),
                ("usb.rescan_interval", "\(configuration.usbRescanSeconds)s", "\(fresh.usbRescanSeconds)s"),
                ("usb.marks_dir", configuration.usbMarksDirectory, fresh.usbMarksDirectory),
                ("print.enabled", configuration.printEnabled ? "yes" : "no", fresh.printEnabled ? "yes" : "no"),
                ("print.cups_server", configuration.printCupsServer, fresh.printCupsServer),
                ("print.cups_server_root", configuration.printCupsServerRoot, fresh.printCupsServerRoot),
                ("print.backend_user", configuration.printBackendUser, fresh.printBackendUser),
                ("filewatch.enabled", configuration.fileWatchEnabled ? "yes" : "no", fresh.fileWatchEnabled ? "yes" : "no"),
                ("filewatch.intake_socket", configuration.fileWatchIntakePath, fresh.fileWatchIntakePath),
                ("filewatch.roots", configuration.fileWatchRoots.joined(separator: ","), fresh.fileWatchRoots.joined(separator: ",")),
                ("filewatch.rules", configuration.fileWatchRules, fresh.fileWatchRules),
                ("filewatch.rule_key", configuration.fileWatchRuleKey, fresh.fileWatchRuleKey),
            ] where old != new {
                pendingRestart[name] = new
                messages.append("\(name) changed to \(new); it takes effect at the next start")
            }
            if fresh.logLevel != configuration.logLevel { logger.level = fresh.logLevel }
            configuration.logLevel = fresh.logLevel
            configuration.policyFile = fresh.policyFile
        } catch {
            ok = false
            messages.append("configuration refused, the previous one stays: \(error)")
            logger.error("configuration refused on reload; keeping the previous one", ("error", "\(error)"))
        }
        var loader = PolicyLoader(journal: journal)
        defer {
            if let failure = loader.saveFailure { logger.error("could not save the policy as the last good one", ("error", failure)) }
        }
        switch brokerManaged || policy.source == .broker ? .loaded(policy) : loader.load(configuration.policyFile, now: now) {
        case .loaded(let active):
            if brokerManaged || policy.source == .broker { messages.append("the broker's policy stays in force; \(configuration.policyFile) is not read while enrolled") }
            if active.digest != policy.digest { messages.append("policy changed to sha256 \(active.digest.prefix(16))") }
            policy = active
        case .refused(let reason, _):
            ok = false
            messages.append("policy refused, the previous one stays: \(reason)")
            logger.error("policy refused on reload; keeping the previous one", ("reason", reason))
            Self.record(journal, logger, Self.policyRefusedEvent(reason: reason, fallback: policy, at: now))
        }
        if let usb { await usb.update(policy: usbPolicy) }
        if let print { await print.update(policy: printPolicy, section: policy.policy.sections["print"]) }
        if let fileWatch { await fileWatch.update(policy: fileWatchPolicy) }
        lastReload = (now, ok, messages)
        let event = Event(
            kind: ok ? "agent.reload" : "agent.reload_failed",
            eventClass: .applicationLifecycle,
            activityID: 5,
            activityName: "Restart",
            time: now,
            severity: ok ? .informational : .high,
            status: ok ? .success : .failure,
            message: ok ? "reloaded configuration and policy (\(trigger))" : "reload partly refused (\(trigger)): \(messages.joined(separator: "; "))",
            details: ["trigger": .string(trigger), "messages": .array(messages.map(JSONValue.string)), "policy_sha256": .string(policy.digest)]
        )
        Self.record(journal, logger, event)
        logger.notice(ok ? "reloaded" : "reload partly refused", ("trigger", trigger))
        return ReloadOutcome(ok: ok, messages: messages)
    }

    // MARK: Events

    /// Journals an event; a journal failure is logged (the event is not silently dropped from view).
    static func record(_ journal: Journal, _ logger: Logger, _ event: Event) {
        do {
            try journal.append(event)
        } catch {
            logger.error("could not journal an event", ("event.kind", event.kind), ("error", "\(error)"), ("event.message", event.message))
        }
    }

    func record(_ event: Event) { Self.record(journal, logger, event) }

    static func policyRefusedEvent(reason: String, fallback: ActivePolicy, at time: Date) -> Event {
        Event(
            kind: "policy.refused",
            eventClass: .deviceConfigStateChange,
            activityID: 99,
            activityName: "Refuse",
            time: time,
            severity: .high,
            status: .failure,
            message: "policy refused (\(reason)); the \(fallback.source.rawValue) policy stays in force",
            details: ["reason": .string(reason), "in_force": .string(fallback.source.rawValue), "in_force_sha256": .string(fallback.digest)]
        )
    }

    static func actor(for peer: PeerCredentials) -> Actor {
        let name = getpwuid(peer.uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } }
        return Actor(user: .init(uid: String(peer.uid), name: name), process: .init(pid: Int(peer.pid)))
    }
}
