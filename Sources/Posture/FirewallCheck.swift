import FoundationEssentials
import HoldfastCore

/// Whether inbound traffic is default-deny: some nftables base chain on the input hook drops by
/// policy or ends in an unconditional drop/reject, for IPv4 and (unless it is off) IPv6. Read from
/// the kernel's live ruleset, so iptables-nft rules count and a config file never loaded does not.
enum FirewallCheck {
    struct Chain {
        var family: String
        var table: String
        var name: String
        var hook: String?
        var type: String
        var policy: String
        var rules: [[JSONValue]] = []
        var isInputFilter: Bool { hook == "input" && type == "filter" }
    }

    /// Every chain of the active tables from libnftables JSON, with its rules in order. A
    /// dormant table registers no hooks: its chains filter nothing.
    static func chains(_ json: [UInt8]) -> [Chain]? {
        guard let document = try? JSONDecoder().decode(JSONValue.self, from: Data(json)), case .array(let items)? = document["nftables"] else { return nil }
        var dormant: Set<String> = []
        for item in items {
            guard let table = item["table"] else { continue }
            let flags: [String]
            switch table["flags"] {
            case .string(let flag)?: flags = [flag]
            case .array(let values)?: flags = values.compactMap(\.stringValue)
            default: flags = []
            }
            if flags.contains("dormant") { dormant.insert((table["family"]?.stringValue ?? "") + " " + (table["name"]?.stringValue ?? "")) }
        }
        var chains: [Chain] = []
        var index: [String: Int] = [:]
        for item in items {
            if let chain = item["chain"] {
                let family = chain["family"]?.stringValue ?? "", table = chain["table"]?.stringValue ?? "", name = chain["name"]?.stringValue ?? ""
                if dormant.contains(family + " " + table) { continue }
                index[family + " " + table + " " + name] = chains.count
                chains.append(Chain(family: family, table: table, name: name, hook: chain["hook"]?.stringValue, type: chain["type"]?.stringValue ?? "filter", policy: chain["policy"]?.stringValue ?? "accept"))
            } else if let rule = item["rule"], case .array(let expressions)? = rule["expr"] {
                let key = (rule["family"]?.stringValue ?? "") + " " + (rule["table"]?.stringValue ?? "") + " " + (rule["chain"]?.stringValue ?? "")
                if let position = index[key] { chains[position].rules.append(expressions) }
            }
        }
        return chains
    }

    /// The verdict (and jump/goto target) of a rule that applies to whatever reaches it — only
    /// counters and logs beside the verdict — or nil for a rule with a match.
    static func unconditionalVerdict(_ expressions: [JSONValue]) -> (verdict: String, target: String?)? {
        var verdict: (String, String?)?
        for expression in expressions {
            guard case .object(let members) = expression, let kind = members.keys.first, members.count == 1 else { return nil }
            switch kind {
            // Statements that act on the packet without deciding whether the rule applies.
            case "counter", "log", "mangle", "notrack", "flow", "ct helper", "synproxy": continue
            case "drop", "reject", "accept", "return", "queue": verdict = (kind, nil)
            case "jump", "goto": verdict = (kind, members[kind]?["target"]?.stringValue)
            default: return nil
            }
        }
        return verdict
    }

    enum Outcome { case drops, accepts, falls }

    /// What a chain does with a packet no conditional rule took: the first unconditional verdict
    /// decides; a jump's target is followed (and falls back here if it returns), a goto's
    /// target decides for this chain.
    static func evaluate(_ chain: Chain, in all: [Chain], depth: Int = 0) -> (Outcome, String) {
        var memo: [String: (Outcome, String)] = [:]
        return evaluate(chain, in: all, depth: depth, memo: &memo)
    }

    /// Each chain is evaluated once per check (its answer does not depend on the caller), so a
    /// web of jumps costs its size, not its paths.
    static func evaluate(_ chain: Chain, in all: [Chain], depth: Int, memo: inout [String: (Outcome, String)]) -> (Outcome, String) {
        let key = chain.family + " " + chain.table + " " + chain.name
        if let known = memo[key] { return known }
        guard depth < 16 else { return (.accepts, "jumps nested deeper than 16") }
        let answer = evaluateRules(chain, in: all, depth: depth, memo: &memo)
        memo[key] = answer
        return answer
    }

    static func evaluateRules(_ chain: Chain, in all: [Chain], depth: Int, memo: inout [String: (Outcome, String)]) -> (Outcome, String) {
        for rule in chain.rules {
            guard let (verdict, target) = unconditionalVerdict(rule) else { continue }
            switch verdict {
            case "drop", "reject": return (.drops, "ends in \(verdict)")
            case "return": return (.falls, "returns")
            case "jump", "goto":
                guard let target, let next = all.first(where: { $0.family == chain.family && $0.table == chain.table && $0.name == target }) else {
                    return (.accepts, "an unconditional \(verdict) to a chain not found")
                }
                let (outcome, why) = evaluate(next, in: all, depth: depth + 1, memo: &memo)
                if verdict == "goto" || outcome != .falls { return (outcome, "\(verdict) \(target): \(why)") }
            default:
                return (.accepts, "an unconditional \(verdict) before any drop")
            }
        }
        return (.falls, "")
    }

    static func dropsByDefault(_ chain: Chain, in all: [Chain]) -> (drops: Bool, why: String) {
        let (outcome, why) = evaluate(chain, in: all)
        switch outcome {
        case .drops: return (true, why)
        case .accepts: return (false, why)
        case .falls: return (chain.policy == "drop", chain.policy == "drop" ? "policy drop" : "accepts by default")
        }
    }

    static func check(_ context: PostureContext) -> CheckResult {
        let id = "firewall"
        let fix = "load an nftables ruleset whose input chain drops by default (Debian: enable nftables.service with /etc/nftables.conf setting `policy drop` on the inet filter input chain)"
        let json: [UInt8]
        switch context.system.firewallRuleset() {
        case .success(let bytes): json = bytes
        case .failure(let error): return PostureCheck.result(id, .unknown, .attested, error.message, fix: fix)
        }
        guard let all = chains(json) else {
            return PostureCheck.result(id, .unknown, .attested, "libnftables returned JSON this check cannot read", fix: fix)
        }
        var coversIPv4 = false, coversIPv6 = false
        var seen: [String] = []
        for chain in all where chain.isInputFilter && ["inet", "ip", "ip6"].contains(chain.family) {
            let (drops, why) = dropsByDefault(chain, in: all)
            seen.append("\(chain.family) \(chain.table)/\(chain.name) " + why)
            guard drops else { continue }
            if chain.family != "ip6" { coversIPv4 = true }
            if chain.family != "ip" { coversIPv6 = true }
        }
        // IPv6 needs no chain when the kernel has no IPv6, or it is off on every interface
        // (`all` alone does not switch off an interface that has it on).
        let ipv6Off: Bool
        if let interfaces = context.tree.list("/proc/sys/net/ipv6/conf") {
            ipv6Off = interfaces.filter { $0 != "lo" }.allSatisfy { context.tree.attribute("/proc/sys/net/ipv6/conf/\($0)/disable_ipv6") == "1" }
        } else {
            ipv6Off = !context.tree.exists("/proc/sys/net/ipv6")
        }
        var evidence = seen.isEmpty ? "no input-hook chain in the nftables ruleset" : seen.joined(separator: "; ")
        let legacy4 = context.tree.text("/proc/net/ip_tables_names").map { TextLines.of($0).filter { !$0.isEmpty } } ?? []
        let legacy6 = context.tree.text("/proc/net/ip6_tables_names").map { TextLines.of($0).filter { !$0.isEmpty } } ?? []
        if !legacy4.isEmpty || !legacy6.isEmpty {
            evidence += "; legacy iptables tables loaded (\((legacy4.map { "ip " + $0 } + legacy6.map { "ip6 " + $0 }).joined(separator: ", ")), not read)"
            if (!coversIPv4 && !legacy4.isEmpty) || (!coversIPv6 && !ipv6Off && !legacy6.isEmpty) { return PostureCheck.result(id, .unknown, .attested, evidence, fix: fix) }
        }
        if ipv6Off { evidence += "; IPv6 off" }
        guard coversIPv4, coversIPv6 || ipv6Off else {
            let missing = [coversIPv4 ? nil : "IPv4", coversIPv6 || ipv6Off ? nil : "IPv6"].compactMap { $0 }.joined(separator: " and ")
            return PostureCheck.result(id, .fail, .attested, evidence + "; inbound \(missing) not default-deny", fix: fix)
        }
        return PostureCheck.result(id, .pass, .attested, evidence)
    }
}
