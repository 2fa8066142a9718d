import CCups

/// cupsd's operation policies (`<Policy>` / `<Limit>` in cupsd.conf), checked and repaired so the
/// operations that get around the print gate are `@SYSTEM`'s alone.
///
/// The Debian default lets any local user create a temporary queue (`CUPS-Create-Local-Printer`
/// falls under `<Limit All>`), and lets a job's owner release it, change its attributes or move it
/// to another queue. Holdfast limits them to `@SYSTEM` (root over the local socket, and the
/// SystemGroup) in every policy, since a queue may use any policy (`printer-op-policy`).
public enum CupsdHardening {
    /// Operations only @SYSTEM may use once hardened.
    public static let restrictedOperations = [
        "CUPS-Create-Local-Printer", "Release-Job", "Set-Job-Attributes", "CUPS-Move-Job", "CUPS-Authenticate-Job",
        "CUPS-Add-Modify-Printer", "CUPS-Delete-Printer", "CUPS-Add-Modify-Class", "CUPS-Delete-Class",
    ]

    /// Operations that submit a job: they must authenticate the user (over the local socket cupsd
    /// checks the peer's uid), or `lp -U someone-else` prints as, and on the quota of, anyone.
    public static let submissionOperations = ["Print-Job", "Print-URI", "Validate-Job", "Create-Job"]

    static let managedComment = "# Holdfast: only @SYSTEM may use these; they get around the print gate (holdfast print status)."
    static let submissionComment = "# Holdfast: jobs carry the user cupsd authenticated, never a name the client claims."

    /// cupsd's operation code for a `<Limit>` token: a name as libcups spells it or hex (`0x4028`);
    /// nil for `All` and for tokens cupsd would not know either.
    static func operationCode(_ token: some StringProtocol) -> Int32? {
        let text = String(token)
        if text.lowercased().hasPrefix("0x") { return Int32(text.dropFirst(2), radix: 16) }
        let code = ippOpValue(text).rawValue
        return code > 0 ? code : nil
    }

    static let restrictedCodes = Set(restrictedOperations.compactMap { operationCode($0) })
    static let submissionCodes = Set(submissionOperations.compactMap { operationCode($0) })

    struct Limit {
        var operations: [String]
        var requireUsers: [String]?
        var requireValidUser = false
        var denyAll = false
        var allows = false
        /// `Satisfy any`: an address match alone lets a request through.
        var satisfyAny = false
        /// A directive this check does not know: not trusted to be closed.
        var unknownDirective: String?
        /// The Limit's own `AuthType`, lower-cased (nil: cupsd's DefaultAuthType applies).
        var authType: String?
        /// cupsd's `DefaultAuthType` is `None`: a Limit without its own AuthType authenticates no one.
        var defaultAuthNone = false

        /// Whether cupsd would authenticate under this Limit at all.
        var authenticates: Bool {
            if let authType { return authType != "none" }
            return !defaultAuthNone
        }

        var isAll: Bool { operations.contains { $0.equalsIgnoringCase("All") } }
        var codes: Set<Int32> { Set(operations.compactMap { CupsdHardening.operationCode($0) }) }

        /// Whether only @SYSTEM (or root) gets through.
        var systemOnly: Bool {
            guard !satisfyAny, unknownDirective == nil else { return false }
            if denyAll && !allows { return true }
            guard authenticates, !requireValidUser, let users = requireUsers, !users.isEmpty else { return false }
            return users.allSatisfy { $0.equalsIgnoringCase("@SYSTEM") || $0 == "root" }
        }

        /// Whether cupsd authenticates whoever gets through.
        var authenticated: Bool {
            guard !satisfyAny, unknownDirective == nil else { return false }
            if denyAll && !allows { return true }
            return authenticates && (requireValidUser || !(requireUsers ?? []).isEmpty)
        }

        var who: String {
            if satisfyAny { return "anyone (Satisfy any)" }
            if !authenticates, requireValidUser || requireUsers != nil { return "anyone (AuthType None)" }
            if let unknownDirective { return "whoever \(unknownDirective) lets through" }
            if requireValidUser { return "any authenticated user" }
            guard let users = requireUsers else { return "anyone" }
            return users.joined(separator: " ")
        }
    }

    struct PolicyBlock {
        var name: String
        var limits: [Limit] = []
    }

    static func tokens(_ line: Substring) -> [Substring] {
        line.split(whereSeparator: { $0 == " " || $0 == "\t" })
    }

    /// `<Limit A B>` → ["A", "B"]; nil when the line is not that tag.
    static func tag(_ line: Substring, _ name: String) -> [String]? {
        guard line.hasPrefix("<"), line.hasSuffix(">") else { return nil }
        let inner = tokens(line.dropFirst().dropLast())
        guard let first = inner.first, first.equalsIgnoringCase(name) else { return nil }
        return inner.dropFirst().map(String.init)
    }

    static func isClosing(_ line: Substring, _ name: String) -> Bool {
        line.equalsIgnoringCase("</\(name)>")
    }

    /// The line without its comment (`#` anywhere, as cupsd reads it) and surrounding blanks.
    static func trimmed(_ line: Substring) -> Substring {
        var line = line
        if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
        while let first = line.first, first == " " || first == "\t" { line = line.dropFirst() }
        while let last = line.last, last == " " || last == "\t" || last == "\r" { line = line.dropLast() }
        return line
    }

    /// Whether cupsd.conf sets `DefaultAuthType None` (outside any block).
    static func defaultAuthNone(_ text: String) -> Bool {
        var none = false
        for raw in text.split(separator: "\n") {
            let words = tokens(trimmed(raw))
            if words.count >= 2, words[0].equalsIgnoringCase("DefaultAuthType") { none = words[1].equalsIgnoringCase("None") }
        }
        return none
    }

    static func parse(_ text: String) -> [PolicyBlock] {
        var policies: [PolicyBlock] = []
        var policy: PolicyBlock?
        var limit: Limit?
        let noDefaultAuth = defaultAuthNone(text)
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = trimmed(raw)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if policy == nil {
                if let names = tag(line, "Policy") { policy = PolicyBlock(name: names.first ?? "") }
                continue
            }
            if limit == nil {
                if let operations = tag(line, "Limit") {
                    limit = Limit(operations: operations)
                    limit?.defaultAuthNone = noDefaultAuth
                } else if isClosing(line, "Policy"), let done = policy {
                    policies.append(done)
                    policy = nil
                }
                continue
            }
            if isClosing(line, "Limit"), let done = limit {
                policy?.limits.append(done)
                limit = nil
                continue
            }
            let words = tokens(line)
            guard let directive = words.first?.lowercased() else { continue }
            switch directive {
            case "require":
                if words.count >= 2, words[1].lowercased() == "valid-user" {
                    limit?.requireValidUser = true
                } else if words.count >= 2, words[1].lowercased() == "user" {
                    limit?.requireUsers = words.dropFirst(2).map(String.init)
                }
            case "deny":
                if words.dropFirst().contains(where: { $0.lowercased() == "all" }) { limit?.denyAll = true }
            case "allow":
                limit?.allows = true
            case "satisfy":
                if words.count >= 2, words[1].lowercased() == "any" { limit?.satisfyAny = true }
            case "authtype":
                limit?.authType = words.count >= 2 ? words[1].lowercased() : nil
            case "order", "encryption":
                break
            default:
                if limit?.unknownDirective == nil { limit?.unknownDirective = String(directive) }
            }
        }
        return policies
    }

    /// What is open that should not be: one line per policy and operation. Empty when hardened.
    public static func findings(cupsdConf text: String) -> [String] {
        let policies = parse(text)
        guard !policies.isEmpty else { return ["cupsd.conf defines no operation policy (<Policy>); cupsd's built-in one lets users create queues"] }
        var findings: [String] = []
        for policy in policies {
            func governing(_ operation: String) -> [Limit]? {
                guard let code = operationCode(operation) else { return nil }
                let named = policy.limits.filter { $0.codes.contains(code) }
                return named.isEmpty ? policy.limits.filter(\.isAll) : named
            }
            for operation in restrictedOperations {
                guard let limits = governing(operation) else { continue }
                if limits.isEmpty {
                    findings.append("policy \(policy.name): \(operation) has no <Limit>; anyone may use it")
                } else if let open = limits.first(where: { !$0.systemOnly }) {
                    findings.append("policy \(policy.name): \(operation) is open to \(open.who)")
                }
            }
            for operation in submissionOperations {
                guard let limits = governing(operation) else { continue }
                if limits.isEmpty || limits.contains(where: { !$0.authenticated }) {
                    findings.append("policy \(policy.name): \(operation) takes the user name the client claims (no Require): users can print as someone else")
                }
            }
        }
        return findings
    }

    /// cupsd.conf with the restricted operations taken out of every other `<Limit>` and put in one
    /// `@SYSTEM`-only `<Limit>` at the top of every `<Policy>`. Everything else stays as written.
    /// Idempotent. nil when there is no policy block to repair.
    public static func repaired(cupsdConf text: String) -> String? {
        let policies = parse(text)
        guard !policies.isEmpty else { return nil }
        // With `DefaultAuthType None`, "Default" would authenticate no one.
        let authType = defaultAuthNone(text) ? "Basic" : "Default"
        // Per policy: the submission operations some unauthenticated Limit governs (they get the
        // managed block), and the Limits they are taken out of. An admin's stricter Limit (say
        // `Require user @printusers`) keeps its operations: the repair never loosens.
        var submission: [[String]] = []
        var loosened: [Set<Int>] = []
        for policy in policies {
            var operations: [String] = []
            var limits = Set<Int>()
            for operation in submissionOperations {
                guard let code = operationCode(operation) else { continue }
                let named = policy.limits.indices.filter { policy.limits[$0].codes.contains(code) }
                let governing = named.isEmpty ? policy.limits.indices.filter { policy.limits[$0].isAll } : named
                let open = governing.filter { !policy.limits[$0].authenticated }
                guard !open.isEmpty || governing.isEmpty else { continue }
                operations.append(operation)
                limits.formUnion(open.filter { !policy.limits[$0].isAll })
            }
            submission.append(operations)
            loosened.append(limits)
        }
        var output: [String] = []
        var policyIndex = -1
        var limitIndex = -1
        var inPolicy = false
        var skippingLimit = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = trimmed(raw)
            if skippingLimit {
                if isClosing(line, "Limit") { skippingLimit = false }
                continue
            }
            if !inPolicy {
                output.append(String(raw))
                if tag(line, "Policy") != nil {
                    inPolicy = true
                    policyIndex += 1
                    limitIndex = -1
                    output += [
                        "  " + managedComment,
                        "  <Limit \(restrictedOperations.joined(separator: " "))>",
                        "    AuthType \(authType)",
                        "    Require user @SYSTEM",
                        "    Order deny,allow",
                        "  </Limit>",
                    ]
                    if policyIndex < submission.count, !submission[policyIndex].isEmpty {
                        output += [
                            "  " + submissionComment,
                            "  <Limit \(submission[policyIndex].joined(separator: " "))>",
                            "    AuthType \(authType)",
                            "    Require valid-user",
                            "    Order deny,allow",
                            "  </Limit>",
                        ]
                    }
                }
                continue
            }
            let whole = raw.trimmingPrefix(while: { $0 == " " || $0 == "\t" })
            // The restricted block is always written anew; the submission block only when needed
            // (an existing one that already authenticates stays, with its comment).
            if whole == Substring(managedComment) { continue }
            if whole == Substring(submissionComment), policyIndex < submission.count, !submission[policyIndex].isEmpty { continue }
            if isClosing(line, "Policy") {
                inPolicy = false
                output.append(String(raw))
                continue
            }
            if let operations = tag(line, "Limit") {
                limitIndex += 1
                let loosen = policyIndex < loosened.count && loosened[policyIndex].contains(limitIndex)
                let removed = restrictedCodes.union(loosen ? submissionCodes : [])
                let kept = operations.filter { operation in operationCode(operation).map { !removed.contains($0) } ?? true }
                if kept.isEmpty {
                    skippingLimit = true
                    continue
                }
                if kept.count != operations.count {
                    let indent = raw.prefix { $0 == " " || $0 == "\t" }
                    output.append("\(indent)<Limit \(kept.joined(separator: " "))>")
                    continue
                }
            }
            output.append(String(raw))
        }
        return output.joined(separator: "\n")
    }

    /// `FileDevice` from cups-files.conf: true when it lets queues print to files (CUPS' default
    /// is No). nil when the file says nothing.
    public static func fileDevice(cupsFilesConf text: String) -> Bool? {
        var result: Bool?
        for raw in text.split(separator: "\n") {
            let words = tokens(trimmed(raw))
            guard words.count >= 2, words[0].equalsIgnoringCase("FileDevice") else { continue }
            result = ["yes", "on", "true"].contains(words[1].lowercased())
        }
        return result
    }
}

extension StringProtocol {
    /// ASCII case-insensitive equality (cupsd's directives and operation names are ASCII).
    func equalsIgnoringCase(_ other: some StringProtocol) -> Bool {
        lowercased() == other.lowercased()
    }
}
