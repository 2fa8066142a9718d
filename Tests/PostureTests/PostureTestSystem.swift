import FileWatch
@testable import Posture

/// Kernel probes with fixed answers: the unit tests' stand-in for adjtimex, audit netlink and
/// libnftables (each has an integration test against the real one).
struct TestSystem: PostureSystem {
    var clockState: Result<ClockState, ProbeError> = .success(ClockState(state: 0, status: 0x2001, maximumError: 12_000, estimatedError: 500))
    var audit: Result<KernelAuditStatus, ProbeError> = .success(KernelAuditStatus(enabled: 1, pid: 4242, lost: 0, backlog: 0, backlogLimit: 8192))
    var missingRules = 0
    var ruleset: Result<[UInt8], ProbeError> = .failure(ProbeError("no ruleset in this test"))
    /// Mapping name → its targets; a mapping not listed is dm-crypt with aes-xts-plain64 when its
    /// name says crypt (as cryptsetup's `NAME_crypt`), else linear (LVM).
    var tables: [String: [DeviceMapperTarget]] = [:]

    func clock() -> Result<ClockState, ProbeError> { clockState }
    func auditStatus() -> Result<KernelAuditStatus, ProbeError> { audit }
    func auditRules(_ set: AuditRuleSet) -> Result<RuleCheck, ProbeError> {
        .success(RuleCheck(missing: Array(set.rules.prefix(missingRules)), present: set.rules.count - missingRules))
    }
    func firewallRuleset() -> Result<[UInt8], ProbeError> { ruleset }
    func deviceMapperTargets(_ name: String) -> Result<[DeviceMapperTarget], ProbeError> {
        .success(tables[name] ?? (name.contains("crypt") ? [DeviceMapperTarget(type: "crypt", firstWord: "aes-xts-plain64")] : [DeviceMapperTarget(type: "linear", firstWord: "254:2")]))
    }
}

extension PostureContext {
    static func fixture(_ tree: String, system: TestSystem = TestSystem(), agent: AgentFacts? = nil, now: Double = 1_800_000_000, cache: PatchCache = PatchCache(), settings: PostureSettings = PostureSettings()) -> PostureContext {
        PostureContext(tree: RootTree(tree), system: system, settings: settings, agent: agent, now: now, cache: cache)
    }
}

/// One check's result in a fixture tree.
func run(_ id: String, _ context: PostureContext) -> CheckResult? {
    PostureCatalog.run(context, only: [id]).first
}
