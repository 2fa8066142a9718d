import HoldfastCore

/// A CUPS queue as reconciliation sees it.
public struct PrintQueue: Sendable, Equatable {
    public let name: String
    /// The device URI CUPS has (for a gated queue: `holdfast:` + the real one). Empty for classes.
    public let deviceURI: String
    public let isClass: Bool
    /// Member queue names, for a class.
    public let members: [String]
    /// Created by CUPS-Create-Local-Printer or cups-browsed (`printer-is-temporary`).
    public let isTemporary: Bool
    public let isAcceptingJobs: Bool
    /// 3 idle, 4 processing, 5 stopped.
    public let state: Int32
    public let stateMessage: String

    public init(
        name: String, deviceURI: String, isClass: Bool = false, members: [String] = [], isTemporary: Bool = false,
        isAcceptingJobs: Bool = true, state: Int32 = 3, stateMessage: String = ""
    ) {
        self.name = name
        self.deviceURI = deviceURI
        self.isClass = isClass
        self.members = members
        self.isTemporary = isTemporary
        self.isAcceptingJobs = isAcceptingJobs
        self.state = state
        self.stateMessage = stateMessage
    }

    /// The real device URI (after `holdfast:`) and whether the gate wraps it.
    public var realURI: (uri: String, gated: Bool) {
        let unwrapped = DeviceURI.unwrap(deviceURI)
        return (unwrapped.real, unwrapped.gated)
    }
}

/// Whether a queue may exist, and why.
public struct Approval: Sendable, Equatable {
    public let approved: Bool
    public let reason: String
    /// The rule that approved it.
    public let rule: ApprovedPrinter?

    static func refused(_ reason: String) -> Approval { Approval(approved: false, reason: reason, rule: nil) }
}

extension PrintPolicy {
    /// Decides a queue: approved only when a rule matches its name and real URI, and the URI does
    /// not write the job to a file or a virtual printer. First matching rule wins.
    public func approval(for queue: PrintQueue) -> Approval {
        let name = queue.name.lowercased()
        if queue.isClass {
            // A class sends each job to a member, whose own gate decides; the class itself is
            // approved by name only.
            for rule in approved where rule.uri == nil {
                if let pattern = rule.name, pattern.matches(name) {
                    return Approval(approved: true, reason: "class approved by rule \(rule.id) (each member queue gates its jobs)", rule: rule)
                }
            }
            return .refused("class not named by any approved rule")
        }
        return approval(name: queue.name, realURI: queue.realURI.uri)
    }

    /// The same decision from a queue name and its real device URI (what the gate backend reports).
    public func approval(name queueName: String, realURI: String) -> Approval {
        let name = queueName.lowercased()
        guard !realURI.isEmpty else { return .refused("no device URI") }
        guard let scheme = DeviceURI.scheme(of: realURI) else { return .refused("device URI \(Printable.escape(realURI)) has no valid scheme") }
        if DeviceURI.neverApproved.contains(scheme) {
            return .refused(scheme == DeviceURI.gateScheme
                ? "device URI wraps the gate twice"
                : "\(scheme): device URIs print to a file or a virtual printer and are never approved")
        }
        let userInfo = DeviceURI.authority(of: realURI)?.contains("@") == true
        for rule in approved {
            if let pattern = rule.name, !pattern.matches(name) { continue }
            if let pattern = rule.uri {
                guard DeviceURI.matches(pattern, realURI) else { continue }
                // ipp://10.0.0.5@evil/ must not pass for a pattern about 10.0.0.5.
                if userInfo, DeviceURI.authority(of: pattern.text)?.contains("@") != true { continue }
            } else if !DeviceURI.networkSchemes.contains(scheme) || DeviceURI.isLocal(realURI) {
                // A rule by name alone approves network printers only, and none on this machine
                // (a user's own listener on localhost, cupsd's socket).
                continue
            }
            return Approval(approved: true, reason: "approved by rule \(rule.id)", rule: rule)
        }
        return .refused(approved.isEmpty ? "the policy approves no printer" : "no approved rule matches queue \(Printable.escape(queueName)) at \(Printable.escape(realURI))")
    }
}
