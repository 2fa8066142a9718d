public import FileWatch
public import PrintGuard

/// Everything a check may look at: the filesystem tree, the few kernel probes behind
/// `PostureSystem`, the settings, and (in holdfastd) what the agent itself knows.
public struct PostureContext: Sendable {
    public let tree: RootTree
    public let system: any PostureSystem
    public let settings: PostureSettings
    /// Facts only the running agent has (its audit rule set, lockdown state, live print queues);
    /// nil when `holdfast posture` runs without holdfastd.
    public let agent: AgentFacts?
    /// Seconds since 1970; checks compare ages against it.
    public let now: Double
    public let cache: PatchCache

    public init(tree: RootTree, system: any PostureSystem, settings: PostureSettings = PostureSettings(), agent: AgentFacts? = nil, now: Double, cache: PatchCache = PatchCache()) {
        self.tree = tree
        self.system = system
        self.settings = settings
        self.agent = agent
        self.now = now
        self.cache = cache
    }
}

/// The thresholds and paths the checks use (docs/posture-checks.md). The paths come from
/// agent.conf (holdfastd and `holdfast posture` read it); the thresholds are the defaults below
/// until the broker's compliance policy sets them.
public struct PostureSettings: Sendable, Equatable {
    /// The lowest supported release per os-release `ID`; an ID not listed fails `os-version`.
    public var minimumVersions: [String: String]
    /// How old the last successful `apt-get update` may be.
    public var maximumUpdateAge: Double
    /// How long a clock may run unsynchronized error before `clock-sync` fails, microseconds
    /// (the kernel's `maxerror`; NTP clients keep it well under a second).
    public var maximumClockError: Int
    /// The longest idle delay a screen lock may have, seconds.
    public var maximumIdleLock: Int
    /// The agent's configuration file, state directory and device key (for the permission check).
    public var configurationFile: String
    public var stateDirectory: String
    /// The CUPS server root (printers.conf, cupsd.conf, cups-files.conf).
    public var cupsRoot: String
    /// The dpkg package whose recorded checksums `holdfast-integrity` verifies.
    public var packageName: String
    /// The audit rules expected without holdfastd's facts (from agent.conf's `[filewatch]`);
    /// nil: the packaged set.
    public var expectedAuditRules: AuditRuleSet?

    public init(
        minimumVersions: [String: String] = ["debian": "12", "ubuntu": "22.04"],
        maximumUpdateAge: Double = 7 * 86_400,
        maximumClockError: Int = 1_000_000,
        maximumIdleLock: Int = 900,
        configurationFile: String = "/etc/holdfast/agent.conf",
        stateDirectory: String = "/var/lib/holdfast",
        cupsRoot: String = "/etc/cups",
        packageName: String = "holdfast"
    ) {
        self.minimumVersions = minimumVersions
        self.maximumUpdateAge = maximumUpdateAge
        self.maximumClockError = maximumClockError
        self.maximumIdleLock = maximumIdleLock
        self.configurationFile = configurationFile
        self.stateDirectory = stateDirectory
        self.cupsRoot = cupsRoot
        self.packageName = packageName
    }
}

/// What holdfastd adds to a posture run: the checks that ask "is Holdfast itself enforcing"
/// compare the machine with what the agent intends.
public struct AgentFacts: Sendable {
    /// The audit rules FileWatch keeps loaded; nil when FileWatch is off.
    public var auditRules: AuditRuleSet?
    /// The kernel's lost-record counter at the previous report, for "no records lost since".
    public var lostAtLastReport: UInt32?
    /// The print policy in force (approved queues); nil when PrintGuard is off.
    public var printPolicy: PrintPolicy?
    /// The queues cupsd has now (name → device URI), from PrintGuard's last reconcile.
    public var printQueues: [String: String]?
    /// Whether USB enforcement is on in the configuration.
    public var usbEnforced: Bool
    /// The lockdown scopes recorded in the journal, and whether each is enforced now.
    public var lockdown: [String: LockdownFact]
    /// FileWatch's coverage since it started: nil when FileWatch is off.
    public var fileWatchCoverage: CoverageFact?

    public init(auditRules: AuditRuleSet?, lostAtLastReport: UInt32?, printPolicy: PrintPolicy?, printQueues: [String: String]?, usbEnforced: Bool, lockdown: [String: LockdownFact]) {
        self.auditRules = auditRules
        self.lostAtLastReport = lostAtLastReport
        self.printPolicy = printPolicy
        self.printQueues = printQueues
        self.usbEnforced = usbEnforced
        self.lockdown = lockdown
    }
}

/// Whether FileWatch saw everything the kernel audited (docs/filewatch.md "Coverage").
public struct CoverageFact: Sendable, Equatable {
    public var complete: Bool
    /// Reason → count (`kernel_lost`, `serial_gap`, `partial_event`, `forwarder_dropped`, …).
    public var reasons: [String: Int64]
    public var since: String?

    public init(complete: Bool, reasons: [String: Int64], since: String?) {
        self.complete = complete
        self.reasons = reasons
        self.since = since
    }
}

/// One lockdown scope: recorded (journal) and enforced (the enforcer's last answer).
public struct LockdownFact: Sendable, Equatable {
    public var recorded: Bool
    public var enforced: Bool
    public var detail: String

    public init(recorded: Bool, enforced: Bool, detail: String = "") {
        self.recorded = recorded
        self.enforced = enforced
        self.detail = detail
    }
}
