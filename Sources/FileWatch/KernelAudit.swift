import CAudit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's audit status, as `auditctl -s` shows it.
public struct KernelAuditStatus: Sendable, Equatable {
    /// 0 off, 1 on, 2 on and locked (`-e 2`).
    public var enabled: UInt32
    /// The process the kernel sends records to (auditd); 0 when none.
    public var pid: UInt32
    /// Records the kernel dropped since boot (backlog full, rate limit, no daemon and printk off).
    public var lost: UInt32
    public var backlog: UInt32
    public var backlogLimit: UInt32

    public init(enabled: UInt32, pid: UInt32, lost: UInt32, backlog: UInt32, backlogLimit: UInt32) {
        self.enabled = enabled
        self.pid = pid
        self.lost = lost
        self.backlog = backlog
        self.backlogLimit = backlogLimit
    }
}

/// Why a call to kernel audit failed.
public struct KernelAuditError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Kernel audit as FileWatch uses it: the status (the `lost` counter) and the rule list. A
/// protocol so the service's logic runs in unit tests without netlink.
public protocol KernelAuditControl: Sendable {
    func status() throws(KernelAuditError) -> KernelAuditStatus
    /// Every rule in the kernel, as canonical text (`NetlinkAudit.text(of:)`).
    func ruleTexts() throws(KernelAuditError) -> [String]
    /// The canonical text of an `auditctl` rule (`-a always,exit -F … -S … -k …`).
    func text(of rule: [String]) throws(KernelAuditError) -> String
    /// Loads one rule into the kernel.
    func add(_ rule: [String]) throws(KernelAuditError)
    /// Makes a filesystem mounted at `mountPoint` after the rules were loaded part of the watched
    /// tree `watched` (`auditctl -q watched,mountPoint`): the kernel tags the mounts under a
    /// `dir=` root when the rule is added, not those that come later.
    func makeEquivalent(watched: String, mountPoint: String) throws(KernelAuditError)
}

/// Kernel audit over netlink, through libaudit. libaudit's rule builder keeps state in globals,
/// so every call holds one lock.
public final class NetlinkAudit: KernelAuditControl {
    private static let lock = Mutex(())

    /// libaudit prints its own complaints to stderr ("… (you must be root)"); every failure here
    /// is returned as an error with the reason instead, so libaudit is told to keep quiet.
    public init() {
        Self.lock.withLock { _ in set_aumessage_mode(MSG_QUIET, DBG_NO) }
    }

    private func withSocket<Result>(_ body: (Int32) throws(KernelAuditError) -> Result) throws(KernelAuditError) -> Result {
        let descriptor = audit_open()
        guard descriptor >= 0 else { throw KernelAuditError("cannot open the audit netlink socket: \(String(cString: strerror(errno)))") }
        defer { audit_close(descriptor) }
        return try body(descriptor)
    }

    public func status() throws(KernelAuditError) -> KernelAuditStatus {
        try Self.lock.withLock { _ throws(KernelAuditError) in
            try withSocket { descriptor throws(KernelAuditError) in
                var raw = audit_status()
                let result = holdfast_audit_status(descriptor, &raw)
                guard result == 0 else { throw KernelAuditError("audit status: \(String(cString: strerror(-result)))") }
                return KernelAuditStatus(enabled: raw.enabled, pid: raw.pid, lost: raw.lost, backlog: raw.backlog, backlogLimit: raw.backlog_limit)
            }
        }
    }

    final class Collected { var texts: [String] = [] }

    public func ruleTexts() throws(KernelAuditError) -> [String] {
        try Self.lock.withLock { _ throws(KernelAuditError) in
            try withSocket { descriptor throws(KernelAuditError) in
                let collected = Collected()
                let result = withExtendedLifetime(collected) {
                    holdfast_audit_list_rules(descriptor, { text, context in
                        guard let text, let context else { return }
                        Unmanaged<Collected>.fromOpaque(context).takeUnretainedValue().texts.append(String(cString: text))
                    }, Unmanaged.passUnretained(collected).toOpaque())
                }
                guard result == 0 else { throw KernelAuditError("listing audit rules: \(String(cString: strerror(-result)))") }
                return collected.texts
            }
        }
    }

    public func text(of rule: [String]) throws(KernelAuditError) -> String {
        try Self.lock.withLock { _ throws(KernelAuditError) in
            let built = try Self.build(rule)
            defer { audit_rule_free_data(built) }
            var text = [CChar](repeating: 0, count: 16_384)
            let length = holdfast_audit_rule_text(built, &text, text.count)
            guard length >= 0 else { throw KernelAuditError("the rule is too large to compare") }
            return String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public func add(_ rule: [String]) throws(KernelAuditError) {
        try Self.lock.withLock { _ throws(KernelAuditError) in
            let built = try Self.build(rule)
            defer { audit_rule_free_data(built) }
            try withSocket { descriptor throws(KernelAuditError) in
                let result = audit_add_rule_data(descriptor, built, Int32(AUDIT_FILTER_EXIT), Int32(AUDIT_ALWAYS))
                guard result > 0 || result == -EEXIST else {
                    throw KernelAuditError("adding the audit rule '\(rule.joined(separator: " "))': \(String(cString: strerror(-result)))")
                }
            }
        }
    }

    public func makeEquivalent(watched: String, mountPoint: String) throws(KernelAuditError) {
        try Self.lock.withLock { _ throws(KernelAuditError) in
            try withSocket { descriptor throws(KernelAuditError) in
                let result = audit_make_equivalent(descriptor, watched, mountPoint)
                guard result > 0 else {
                    throw KernelAuditError("making \(mountPoint) part of the watched \(watched): \(String(cString: strerror(-result)))")
                }
            }
        }
    }

    /// Builds a rule as auditctl does: `-a always,exit`, then `-F` pairs, `-S` lists and `-k` in
    /// order (the arch first: it chooses the syscall table). Only what AuditRuleSet writes.
    static func build(_ arguments: [String]) throws(KernelAuditError) -> UnsafeMutablePointer<audit_rule_data> {
        holdfast_audit_rule_reset()
        guard let created = audit_rule_create_data() else { throw KernelAuditError("out of memory") }
        // audit_rule_fieldpair_data may reallocate the rule; it takes the pointer's address.
        var rule: UnsafeMutablePointer<audit_rule_data>? = created
        func free() { audit_rule_free_data(rule) }
        created.pointee.flags = UInt32(AUDIT_FILTER_EXIT)
        created.pointee.action = UInt32(AUDIT_ALWAYS)
        var index = 0
        while index + 1 < arguments.count {
            let (option, value) = (arguments[index], arguments[index + 1])
            index += 2
            switch option {
            case "-a":
                guard value == "always,exit" || value == "exit,always" else {
                    free()
                    throw KernelAuditError("only always,exit rules are built here, not '\(value)'")
                }
            case "-F", "-k":
                let pair = option == "-k" ? "key=" + value : value
                let result = audit_rule_fieldpair_data(&rule, pair, Int32(AUDIT_FILTER_EXIT))
                guard result == 0 else {
                    free()
                    throw KernelAuditError("libaudit refused '\(pair)' (\(result))")
                }
            case "-S":
                for name in value.split(separator: ",") {
                    guard audit_rule_syscallbyname_data(rule, String(name)) == 0 else {
                        free()
                        throw KernelAuditError("libaudit does not know the syscall '\(name)' for this rule's arch")
                    }
                }
                holdfast_audit_rule_syscalls_added()
            default:
                free()
                throw KernelAuditError("unexpected rule option '\(option)'")
            }
        }
        guard let rule else { throw KernelAuditError("libaudit lost the rule") }
        return rule
    }
}

/// Compares the kernel's rules with the rule set FileWatch needs.
public struct RuleCheck: Sendable, Equatable {
    /// Rules of the set the kernel does not have, as auditctl arguments.
    public var missing: [[String]]
    public var present: Int

    public init(missing: [[String]], present: Int) {
        self.missing = missing
        self.present = present
    }

    public static func run(_ set: AuditRuleSet, against kernel: any KernelAuditControl) throws(KernelAuditError) -> RuleCheck {
        let loaded = Set(try kernel.ruleTexts())
        var missing: [[String]] = []
        var present = 0
        for rule in set.rules {
            if loaded.contains(try kernel.text(of: rule)) { present += 1 } else { missing.append(rule) }
        }
        return RuleCheck(missing: missing, present: present)
    }
}
