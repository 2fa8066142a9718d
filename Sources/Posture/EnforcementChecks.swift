import PrintGuard

/// Holdfast's own enforcement: USB default-deny in the kernel, CUPS restricted, lockdown as recorded.
enum EnforcementChecks {
    /// The shipped udev rule, as the package installs it (or an admin's copy in /etc).
    static let udevRules = ["/usr/lib/udev/rules.d/70-holdfast-usb.rules", "/lib/udev/rules.d/70-holdfast-usb.rules", "/etc/udev/rules.d/70-holdfast-usb.rules"]

    static func usbDefaultDeny(_ context: PostureContext) -> CheckResult {
        let id = "usb-default-deny"
        let fix = "start holdfastd (it writes interface_authorized_default=0 on every root hub) and install the holdfast package's udev rule"
        let tree = context.tree
        if let agent = context.agent, !agent.usbEnforced {
            return PostureCheck.result(id, .fail, .selfReported, "USB enforcement is off in agent.conf ([usb] enabled = no)", fix: "set [usb] enabled = yes")
        }
        guard let devices = tree.list("/sys/bus/usb/devices") else {
            if !tree.exists("/sys/bus") { return PostureCheck.result(id, .unknown, .attested, "cannot read /sys/bus", fix: fix) }
            let rule = udevRules.first { tree.exists($0) }
            return rule == nil
                ? PostureCheck.result(id, .fail, .selfReported, "no USB bus; the udev rule is not installed", fix: fix)
                : PostureCheck.result(id, .pass, .attested, "no USB bus on this machine; udev rule \(rule ?? "") present")
        }
        let hubs = devices.filter { $0.hasPrefix("usb") && Int($0.dropFirst(3)) != nil }
        var open: [String] = []
        for hub in hubs {
            let value = tree.attribute("/sys/bus/usb/devices/\(hub)/interface_authorized_default")
            if value != "0" { open.append("\(hub) interface_authorized_default=\(value ?? "unreadable")") }
        }
        let rule = udevRules.first { tree.exists($0) }
        var evidence = hubs.isEmpty ? "no USB root hubs" : "\(hubs.count - open.count) of \(hubs.count) root hub(s) default-deny"
        evidence += rule.map { "; udev rule \($0)" } ?? "; udev rule 70-holdfast-usb.rules missing"
        guard open.isEmpty, rule != nil else {
            return PostureCheck.result(id, .fail, .attested, evidence + (open.isEmpty ? "" : " (" + open.prefix(4).joined(separator: ", ") + ")"), fix: fix)
        }
        return PostureCheck.result(id, .pass, .attested, evidence)
    }

    /// printers.conf `<Printer NAME>`/`<DefaultPrinter NAME>` … `DeviceURI …` → name → URI.
    static func printersConf(_ text: String) -> [String: String] {
        var queues: [String: String] = [:]
        var current: String?
        for line in text.split(separator: "\n") {
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
        if let conf = tree.text(root + "/cupsd.conf") {
            problems += CupsdHardening.findings(cupsdConf: conf).prefix(2)
        }
        if let files = tree.text(root + "/cups-files.conf"), CupsdHardening.fileDevice(cupsFilesConf: files) == true {
            problems.append("cups-files.conf sets FileDevice Yes (print-to-file)")
        }
        let evidence = "\(queues.count) queue(s)" + (problems.isEmpty ? ", all gated" + (context.agent?.printPolicy != nil ? " and approved" : "") + "; cupsd.conf hardened" : ": " + problems.prefix(4).joined(separator: "; "))
        return problems.isEmpty ? PostureCheck.result(id, .pass, .selfReported, evidence) : PostureCheck.result(id, .fail, .selfReported, evidence, fix: fix)
    }

    static func lockdownConsistent(_ context: PostureContext) -> CheckResult {
        let id = "lockdown-consistent"
        let fix = "restart holdfastd (it re-applies the recorded lockdown at start) and check its journal for lockdown.enforce_failed"
        guard let agent = context.agent else {
            return PostureCheck.result(id, .unknown, .selfReported, "needs holdfastd: the lockdown state is the agent's", fix: "start holdfastd")
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
