public import FileWatch
import CKernel
import HoldfastNetfilter
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The kernel state the checks need that no file shows: the clock discipline, the audit
/// subsystem, the netfilter ruleset. A real implementation for the machine, a detached one for
/// `--root` trees (whose kernel is not the one running), and test ones.
public protocol PostureSystem: Sendable {
    /// `adjtimex(2)` with no modes: the clock's synchronization state.
    func clock() -> Result<ClockState, ProbeError>
    /// The audit subsystem's status (AUDIT_GET over netlink).
    func auditStatus() -> Result<KernelAuditStatus, ProbeError>
    /// Which of `set`'s rules the kernel has loaded.
    func auditRules(_ set: AuditRuleSet) -> Result<RuleCheck, ProbeError>
    /// The nftables ruleset as libnftables JSON.
    func firewallRuleset() -> Result<[UInt8], ProbeError>
    /// The targets of a device-mapper mapping (DM_TABLE_STATUS): what it really is, which sysfs
    /// does not say (its uuid is whatever `dmsetup create --uuid` was given).
    func deviceMapperTargets(_ name: String) -> Result<[DeviceMapperTarget], ProbeError>
}

/// One target of a device-mapper table: its type (`crypt`, `linear`, `integrity`, …) and the
/// first word of its table line (for `crypt`, the cipher; never the key).
public struct DeviceMapperTarget: Sendable, Equatable {
    public var type: String
    public var firstWord: String

    public init(type: String, firstWord: String) {
        self.type = type
        self.firstWord = firstWord
    }
}

/// Why a kernel probe has no answer; the check then says `unknown` with this text.
public struct ProbeError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    /// The probe does not exist here at all (a --root tree, no device-mapper control node, not
    /// root), as opposed to a probe that ran and failed.
    public let unavailable: Bool
    public init(_ message: String, unavailable: Bool = false) {
        self.message = message
        self.unavailable = unavailable
    }
    public var description: String { message }
}

/// `adjtimex(2)`'s answer.
public struct ClockState: Sendable, Equatable {
    /// The return value: TIME_OK (0) … TIME_ERROR (5).
    public var state: Int32
    /// `status` bits; STA_UNSYNC (0x40) set means no NTP client disciplines the clock.
    public var status: Int32
    /// Maximum error, microseconds.
    public var maximumError: Int
    /// Estimated error, microseconds.
    public var estimatedError: Int

    public init(state: Int32, status: Int32, maximumError: Int, estimatedError: Int) {
        self.state = state
        self.status = status
        self.maximumError = maximumError
        self.estimatedError = estimatedError
    }

    /// STA_UNSYNC from <linux/timex.h>.
    public static let unsynchronizedBit: Int32 = 0x0040
    /// TIME_ERROR from <sys/timex.h>: the clock is not synchronized.
    public static let timeError: Int32 = 5
}

/// The running machine's kernel.
public struct LiveSystem: PostureSystem {
    private let audit: any KernelAuditControl

    public init(audit: any KernelAuditControl = NetlinkAudit()) { self.audit = audit }

    public func clock() -> Result<ClockState, ProbeError> {
        var status: Int32 = 0
        var maximumError = 0, estimatedError = 0
        let state = holdfast_adjtimex_query(&status, &maximumError, &estimatedError)
        guard state >= 0 else { return .failure(ProbeError("adjtimex: \(String(cString: strerror(errno)))")) }
        return .success(ClockState(state: state, status: status, maximumError: maximumError, estimatedError: estimatedError))
    }

    public func auditStatus() -> Result<KernelAuditStatus, ProbeError> {
        do {
            return .success(try audit.status())
        } catch {
            return .failure(ProbeError("\(error)"))
        }
    }

    public func auditRules(_ set: AuditRuleSet) -> Result<RuleCheck, ProbeError> {
        do {
            return .success(try RuleCheck.run(set, against: audit))
        } catch {
            return .failure(ProbeError("\(error)"))
        }
    }

    public func firewallRuleset() -> Result<[UInt8], ProbeError> {
        NetfilterRuleset.listJSON().mapError { ProbeError($0.message) }
    }

    public func deviceMapperTargets(_ name: String) -> Result<[DeviceMapperTarget], ProbeError> {
        var output = [CChar](repeating: 0, count: 4_096)
        let count = output.withUnsafeMutableBufferPointer { buffer in holdfast_dm_targets(name, buffer.baseAddress, buffer.count) }
        // Open failures (no control node, not root) mean no probe; an ioctl failure is an answer.
        if count <= -1_000 { return .failure(ProbeError("device-mapper table of \(name): \(String(cString: strerror(-count - 1_000)))")) }
        guard count >= 0 else { return .failure(ProbeError("device-mapper table of \(name): \(String(cString: strerror(-count)))", unavailable: true)) }
        let text = output.withUnsafeBufferPointer { buffer in buffer.baseAddress.map { String(cString: $0) } ?? "" }
        let targets = text.split(separator: "\n").map { line -> DeviceMapperTarget in
            let words = line.split(separator: " ", maxSplits: 1)
            return DeviceMapperTarget(type: String(words.first ?? ""), firstWord: words.count > 1 ? String(words[1]) : "")
        }
        guard targets.count == Int(count) else { return .failure(ProbeError("device-mapper table of \(name): \(count) targets, \(targets.count) read")) }
        return .success(targets)
    }
}

/// For a `--root` tree: its kernel is not running, so every probe answers "not read".
public struct DetachedSystem: PostureSystem {
    public init() {}
    static let reason = ProbeError("kernel state is not read for a --root tree (it belongs to the running machine)", unavailable: true)
    public func clock() -> Result<ClockState, ProbeError> { .failure(Self.reason) }
    public func auditStatus() -> Result<KernelAuditStatus, ProbeError> { .failure(Self.reason) }
    public func auditRules(_ set: AuditRuleSet) -> Result<RuleCheck, ProbeError> { .failure(Self.reason) }
    public func firewallRuleset() -> Result<[UInt8], ProbeError> { .failure(Self.reason) }
    public func deviceMapperTargets(_ name: String) -> Result<[DeviceMapperTarget], ProbeError> { .failure(Self.reason) }
}

/// One run's view of the kernel: the audit status is read once and every check (and the
/// daemon's "lost at the last report" mark) sees that same reading, so no record lost between
/// two reads can fall between reports.
public final class RunSnapshot: PostureSystem {
    private let base: any PostureSystem
    private let status = Mutex<Result<KernelAuditStatus, ProbeError>?>(nil)

    public init(_ base: any PostureSystem) { self.base = base }

    public func clock() -> Result<ClockState, ProbeError> { base.clock() }
    public func auditStatus() -> Result<KernelAuditStatus, ProbeError> {
        status.withLock { status in
            if let status { return status }
            let fresh = base.auditStatus()
            status = fresh
            return fresh
        }
    }
    public func auditRules(_ set: AuditRuleSet) -> Result<RuleCheck, ProbeError> { base.auditRules(set) }
    public func firewallRuleset() -> Result<[UInt8], ProbeError> { base.firewallRuleset() }
    public func deviceMapperTargets(_ name: String) -> Result<[DeviceMapperTarget], ProbeError> { base.deviceMapperTargets(name) }
}
