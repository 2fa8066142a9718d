import FileWatch

/// Kernel audit, the audit daemon, Holdfast's rules and lost records: the ground FileWatch stands on.
enum AuditChecks {
    static func enabled(_ context: PostureContext) -> CheckResult {
        let id = "audit-enabled"
        let fix = "auditctl -e 1 (and keep audit=1 on the kernel command line)"
        switch context.system.auditStatus() {
        case .failure(let error):
            return PostureCheck.result(id, .unknown, .attested, error.message, fix: fix)
        case .success(let status):
            switch status.enabled {
            case 1: return PostureCheck.result(id, .pass, .attested, "kernel audit enabled (enabled=1)")
            case 2: return PostureCheck.result(id, .pass, .attested, "kernel audit enabled and locked (enabled=2, rules immutable until reboot)")
            default: return PostureCheck.result(id, .fail, .attested, "kernel audit disabled (enabled=\(status.enabled))", fix: fix)
            }
        }
    }

    /// The kernel knows which process receives audit records (AUDIT_GET's `pid`); the check
    /// trusts that, not a process list, and names what runs there.
    static func daemon(_ context: PostureContext) -> CheckResult {
        let id = "auditd-running"
        let fix = "systemctl enable --now auditd"
        switch context.system.auditStatus() {
        case .failure(let error):
            return PostureCheck.result(id, .unknown, .attested, error.message, fix: fix)
        case .success(let status):
            guard status.pid != 0 else {
                return PostureCheck.result(id, .fail, .attested, "no audit daemon registered with the kernel (records go to the kernel log, or are lost)", fix: fix)
            }
            let name = context.tree.attribute("/proc/\(status.pid)/comm") ?? "?"
            guard name == "auditd" else {
                return PostureCheck.result(id, .fail, .attested, "the kernel sends audit records to pid \(status.pid) (\(name)), not auditd", fix: fix)
            }
            return PostureCheck.result(id, .pass, .attested, "auditd pid \(status.pid) registered with the kernel")
        }
    }

    static func rules(_ context: PostureContext) -> CheckResult {
        let id = "audit-rules"
        let fix = "augenrules --load (Holdfast's rules ship as /etc/audit/rules.d/holdfast.rules; holdfastd re-adds them with [filewatch] rules = manage)"
        let set: AuditRuleSet
        if let agent = context.agent {
            guard let configured = agent.auditRules else {
                return PostureCheck.result(id, .fail, .selfReported, "FileWatch is off ([filewatch] enabled = no): no file rules are expected or checked", fix: "set [filewatch] enabled = yes in agent.conf")
            }
            set = configured
        } else {
            do {
                set = try context.settings.expectedAuditRules ?? AuditRuleSet()
            } catch {
                return PostureCheck.result(id, .unknown, .attested, "the packaged rule set does not build: \(error)", fix: fix)
            }
        }
        switch context.system.auditRules(set) {
        case .failure(let error):
            return PostureCheck.result(id, .unknown, .attested, error.message, fix: fix)
        case .success(let check):
            let total = check.present + check.missing.count
            guard check.missing.isEmpty else {
                let first = check.missing.first.map { $0.joined(separator: " ") } ?? ""
                return PostureCheck.result(id, .fail, .attested, "\(check.missing.count) of \(total) Holdfast audit rules missing (first: \(first))", fix: fix)
            }
            return PostureCheck.result(id, .pass, .attested, "all \(total) Holdfast audit rules loaded (key \(set.keyPrefix))")
        }
    }

    /// FileWatch's own accounting: every record the kernel audited under its rules reached it.
    static func coverage(_ context: PostureContext) -> CheckResult {
        let id = "filewatch-coverage"
        let fix = "see holdfast filewatch status: raise auditd's q_depth and the kernel backlog, check the plugin runs; coverage resets when holdfastd restarts"
        guard let agent = context.agent else {
            return PostureCheck.result(id, .unknown, .attested, "needs holdfastd: coverage is what its FileWatch counted", fix: "start holdfastd (as root, holdfast posture asks it)")
        }
        guard let coverage = agent.fileWatchCoverage else {
            return PostureCheck.result(id, .fail, .selfReported, "FileWatch is off ([filewatch] enabled = no): file activity is not watched", fix: "set [filewatch] enabled = yes in agent.conf")
        }
        guard coverage.complete else {
            let reasons = coverage.reasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            return PostureCheck.result(id, .fail, .attested, "coverage incomplete since \(coverage.since ?? "?"): \(reasons)", fix: fix)
        }
        return PostureCheck.result(id, .pass, .attested, "every audited record reached FileWatch since holdfastd started")
    }

    static func lost(_ context: PostureContext) -> CheckResult {
        let id = "audit-lost"
        let fix = "raise the kernel backlog (auditctl -b 8192 in /etc/audit/rules.d) and check auditd keeps up (disk, plugins)"
        switch context.system.auditStatus() {
        case .failure(let error):
            return PostureCheck.result(id, .unknown, .attested, error.message, fix: fix)
        case .success(let status):
            let backlog = "backlog \(status.backlog)/\(status.backlogLimit)"
            guard let previous = context.agent?.lostAtLastReport else {
                guard status.lost == 0 else {
                    return PostureCheck.result(id, .unknown, .attested, "\(status.lost) record(s) lost since boot, no earlier report to say when; \(backlog)", fix: fix)
                }
                return PostureCheck.result(id, .pass, .attested, "no records lost since boot; \(backlog)")
            }
            // The counter only grows until reboot; a smaller value means it restarted at zero.
            let since = status.lost >= previous ? status.lost - previous : status.lost
            guard since == 0 else {
                return PostureCheck.result(id, .fail, .attested, "\(since) record(s) lost since the last report (kernel counter \(status.lost)); \(backlog)", fix: fix)
            }
            return PostureCheck.result(id, .pass, .attested, "no records lost since the last report (kernel counter \(status.lost)); \(backlog)")
        }
    }
}
