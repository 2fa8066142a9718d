import PrintGuard

/// Holdfast's own enforcement: USB default-deny in the kernel, CUPS restricted, lockdown as recorded.
enum EnforcementChecks {
    /// Where udev looks for a rule file, in its precedence order (udev(7)): a file of the same
    /// name in /etc overrides /run, which overrides /usr/lib and /lib; a link to /dev/null masks it.
    static let udevRules = ["/etc/udev/rules.d/70-holdfast-usb.rules", "/run/udev/rules.d/70-holdfast-usb.rules", "/usr/local/lib/udev/rules.d/70-holdfast-usb.rules", "/usr/lib/udev/rules.d/70-holdfast-usb.rules", "/lib/udev/rules.d/70-holdfast-usb.rules"]

    /// The rule file udev uses, and whether it is Holdfast's rule: (path, problem or nil); nil
    /// when there is none.
    static func udevRule(_ tree: RootTree) -> (path: String, problem: String?)? {
        for path in udevRules where tree.info(path, followLink: false) != nil {
            if tree.linkTarget(path) == "/dev/null" { return (path, "masked (a link to /dev/null)") }
            guard let text = tree.text(path) else { return (path, "unreadable") }
            // The line that makes new interfaces start unauthorized is what the rule is for.
            guard TextLines.of(text).contains(where: { !$0.trimmed(" \t").hasPrefix("#") && $0.contains("interface_authorized_default") }) else { return (path, "not Holdfast's rule (it never sets interface_authorized_default)") }
            return (path, nil)
        }
        return nil
    }

    static func usbDefaultDeny(_ context: PostureContext) -> CheckResult {
        let id = "usb-default-deny"
        let fix = "start holdfastd (it writes interface_authorized_default=0 on every root hub) and install the holdfast package's udev rule"
        let tree = context.tree
        if let agent = context.agent, !agent.usbEnforced {
            return PostureCheck.result(id, .fail, .selfReported, "USB enforcement is off in agent.conf ([usb] enabled = no)", fix: "set [usb] enabled = yes")
        }
        let rule = udevRule(tree)
        let ruleText = rule.map { "udev rule \($0.path)" + ($0.problem.map { " \($0)" } ?? "") } ?? "udev rule 70-holdfast-usb.rules missing"
        let ruleOK = rule != nil && rule?.problem == nil
        if rule?.problem == "unreadable" {
            return PostureCheck.result(id, .unknown, .selfReported, ruleText, fix: fix)
        }
        guard let devices = tree.list("/sys/bus/usb/devices") else {
            if !tree.exists("/sys/bus") { return PostureCheck.result(id, .unknown, .attested, "cannot read /sys/bus", fix: fix) }
            return ruleOK
                ? PostureCheck.result(id, .pass, .attested, "no USB bus on this machine; \(ruleText)")
                : PostureCheck.result(id, .fail, .selfReported, "no USB bus; \(ruleText)", fix: fix)
        }
        let hubs = devices.filter { $0.hasPrefix("usb") && Int($0.dropFirst(3)) != nil }
        var open: [String] = []
        for hub in hubs {
            let value = tree.attribute("/sys/bus/usb/devices/\(hub)/interface_authorized_default")
            if value != "0" { open.append("\(hub) interface_authorized_default=\(value ?? "unreadable")") }
        }
        let unreadable = open.filter { $0.hasSuffix("=unreadable") }
        var evidence = hubs.isEmpty ? "no USB root hubs" : "\(hubs.count - open.count) of \(hubs.count) root hub(s) default-deny"
        evidence += "; " + ruleText
        if !unreadable.isEmpty, unreadable.count == open.count, ruleOK {
            return PostureCheck.result(id, .unknown, .attested, evidence + " (" + unreadable.prefix(4).joined(separator: ", ") + ")", fix: fix)
        }
        guard open.isEmpty, ruleOK else {
            return PostureCheck.result(id, .fail, .attested, evidence + (open.isEmpty ? "" : " (" + open.prefix(4).joined(separator: ", ") + ")"), fix: fix)
        }
        return PostureCheck.result(id, .pass, .attested, evidence)
    }

    /// printers.conf `<Printer NAME>`/`<DefaultPrinter NAME>` … `DeviceURI …` → name → URI.
    static func printersConf(_ text: String) -> [String: String] {
        var queues: [String: String] = [:]
        var current: String?
        for line in TextLines.of(text) {
            let trimmed = line.trimmed(" \t\r")
            if trimmed.hasPrefix("<Printer ") || trimmed.hasPrefix("<DefaultPrinter ") {
                current = String(trimmed.drop { $0 != " " }.dropFirst().dropLast())
                if let current { queues[current] = "" }
            } else if trimmed.hasPrefix("</Printer") || trimmed.hasPrefix("</DefaultPrinter") {
                current = nil
            } else if let current, trimmed.hasPrefix("DeviceURI ") {
                queues[current] = String(trimmed.dropFirst("DeviceURI ".count))
            }
        }
        return queues
    }

    static func printRestricted(_ context: PostureContext) -> CheckResult {
        let id = "print-restricted"
        let fix = "start holdfastd with [print] enabled = yes: it removes unapproved queues, wraps approved ones in the holdfast: gate and hardens cupsd.conf"
        let tree = context.tree
        let root = context.settings.cupsRoot
        if let agent = context.agent, agent.printPolicy == nil {
            return PostureCheck.result(id, tree.exists(root) ? .fail : .pass, .selfReported, tree.exists(root) ? "PrintGuard is off ([print] enabled = no) while CUPS is installed" : "CUPS is not installed and PrintGuard is off", fix: "set [print] enabled = yes")
        }
        guard tree.exists(root) else {
            return PostureCheck.result(id, .pass, .selfReported, "CUPS is not installed (no \(root))")
        }
        var problems: [String] = []
        let queues: [String: String]
        if let live = context.agent?.printQueues {
            queues = live
        } else if tree.exists(root + "/printers.conf") {
            guard let text = tree.text(root + "/printers.conf") else {
                return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(root)/printers.conf (root only)", fix: fix)
            }
            queues = printersConf(text)
        } else {
            queues = [:]
        }
        for (name, uri) in queues.sorted(by: { $0.key < $1.key }) {
            let queue = PrintQueue(name: name, deviceURI: uri)
            if !queue.realURI.gated { problems.append("queue \(name) is not behind the holdfast: gate") }
            if let policy = context.agent?.printPolicy {
                let approval = policy.approval(for: queue)
                if !approval.approved { problems.append("queue \(name) unapproved: \(approval.reason)") }
            }
        }
        var unreadable: [String] = []
        if tree.exists(root + "/cupsd.conf") {
            if let conf = tree.text(root + "/cupsd.conf") { problems += CupsdHardening.findings(cupsdConf: conf).prefix(2) } else { unreadable.append("cupsd.conf") }
        }
        if tree.exists(root + "/cups-files.conf") {
            if let files = tree.text(root + "/cups-files.conf") {
                if CupsdHardening.fileDevice(cupsFilesConf: files) == true { problems.append("cups-files.conf sets FileDevice Yes (print-to-file)") }
            } else {
                unreadable.append("cups-files.conf")
            }
        }
        if problems.isEmpty, !unreadable.isEmpty {
            return PostureCheck.result(id, .unknown, .selfReported, "\(queues.count) queue(s); cannot read \(unreadable.joined(separator: ", ")) in \(root) (root only)", fix: fix)
        }
        let evidence = "\(queues.count) queue(s)" + (problems.isEmpty ? ", all gated" + (context.agent?.printPolicy != nil ? " and approved" : "") + "; cupsd.conf hardened" : ": " + problems.prefix(4).joined(separator: "; "))
        return problems.isEmpty ? PostureCheck.result(id, .pass, .selfReported, evidence) : PostureCheck.result(id, .fail, .selfReported, evidence, fix: fix)
    }

    static func lockdownConsistent(_ context: PostureContext) -> CheckResult {
        let id = "lockdown-consistent"
        let fix = "restart holdfastd (it re-applies the recorded lockdown at start) and check its journal for lockdown.enforcement_failed"
        guard let agent = context.agent else {
            return PostureCheck.result(id, .unknown, .attested, "needs holdfastd: the lockdown state is the agent's", fix: "start holdfastd (as root, holdfast posture asks it)")
        }
        var parts: [String] = []
        var broken: [String] = []
        for (scope, fact) in agent.lockdown.sorted(by: { $0.key < $1.key }) {
            if fact.recorded != fact.enforced {
                broken.append("\(scope) recorded \(fact.recorded ? "locked but not enforced" : "released but still enforced")" + (fact.detail.isEmpty ? "" : " (\(fact.detail))"))
            }
            parts.append("\(scope) " + (fact.recorded ? "locked" : "open"))
        }
        guard broken.isEmpty else { return PostureCheck.result(id, .fail, .attested, broken.joined(separator: "; "), fix: fix) }
        return PostureCheck.result(id, .pass, .attested, parts.isEmpty ? "no lockdown scopes" : parts.joined(separator: ", ") + ", as recorded")
    }
}
