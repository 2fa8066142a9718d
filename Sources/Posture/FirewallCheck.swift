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
        var policy: String
        var lastRule: [JSONValue]?
    }

    /// Input-hook filter base chains from libnftables JSON, with each one's last rule.
    static func inputChains(_ json: [UInt8]) -> [Chain]? {
        guard let document = try? JSONDecoder().decode(JSONValue.self, from: Data(json)), case .array(let items)? = document["nftables"] else { return nil }
        var chains: [Chain] = []
        for item in items {
            if let chain = item["chain"], chain["hook"]?.stringValue == "input", (chain["type"]?.stringValue ?? "filter") == "filter" {
                chains.append(Chain(
                    family: chain["family"]?.stringValue ?? "", table: chain["table"]?.stringValue ?? "", name: chain["name"]?.stringValue ?? "",
                    policy: chain["policy"]?.stringValue ?? "accept", lastRule: nil))
            } else if let rule = item["rule"], case .array(let expressions)? = rule["expr"] {
                let family = rule["family"]?.stringValue, table = rule["table"]?.stringValue, name = rule["chain"]?.stringValue
                if let index = chains.firstIndex(where: { $0.family == family && $0.table == table && $0.name == name }) {
                    chains[index].lastRule = expressions
                }
            }
        }
        return chains
    }

    /// A rule that drops or rejects whatever reaches it: only counters, logs and the verdict.
    static func isUnconditionalDrop(_ expressions: [JSONValue]) -> Bool {
        var verdict = false
        for expression in expressions {
            guard case .object(let members) = expression, let kind = members.keys.first, members.count == 1 else { return false }
            switch kind {
            case "counter", "log": continue
            case "drop", "reject": verdict = true
            default: return false
            }
        }
        return verdict
    }

    static func check(_ context: PostureContext) -> CheckResult {
        let id = "firewall"
        let fix = "load an nftables ruleset whose input chain drops by default (Debian: enable nftables.service with /etc/nftables.conf setting `policy drop` on the inet filter input chain)"
        let json: [UInt8]
        switch context.system.firewallRuleset() {
        case .success(let bytes): json = bytes
        case .failure(let error): return PostureCheck.result(id, .unknown, .attested, error.message, fix: fix)
        }
        guard let chains = inputChains(json) else {
            return PostureCheck.result(id, .unknown, .attested, "libnftables returned JSON this check cannot read", fix: fix)
        }
        var coversIPv4 = false, coversIPv6 = false
        var seen: [String] = []
        for chain in chains where ["inet", "ip", "ip6"].contains(chain.family) {
            let drops = chain.policy == "drop" || (chain.lastRule.map(isUnconditionalDrop) ?? false)
            seen.append("\(chain.family) \(chain.table)/\(chain.name) " + (chain.policy == "drop" ? "policy drop" : drops ? "ends in drop" : "accepts by default"))
            guard drops else { continue }
            if chain.family != "ip6" { coversIPv4 = true }
            if chain.family != "ip" { coversIPv6 = true }
        }
        // IPv6 needs no chain when the kernel has it off (or has no IPv6 at all).
        let ipv6Off = context.tree.attribute("/proc/sys/net/ipv6/conf/all/disable_ipv6").map { $0 == "1" } ?? !context.tree.exists("/proc/sys/net/ipv6")
        var evidence = seen.isEmpty ? "no input-hook chain in the nftables ruleset" : seen.joined(separator: "; ")
        if let legacy = context.tree.text("/proc/net/ip_tables_names"), !legacy.isEmpty {
            evidence += "; legacy iptables tables loaded (\(legacy.split(separator: "\n").joined(separator: ",")), not read)"
            if !coversIPv4 { return PostureCheck.result(id, .unknown, .attested, evidence, fix: fix) }
        }
        if ipv6Off { evidence += "; IPv6 off" }
        guard coversIPv4, coversIPv6 || ipv6Off else {
            let missing = [coversIPv4 ? nil : "IPv4", coversIPv6 || ipv6Off ? nil : "IPv6"].compactMap { $0 }.joined(separator: " and ")
            return PostureCheck.result(id, .fail, .attested, evidence + "; inbound \(missing) not default-deny", fix: fix)
        }
        return PostureCheck.result(id, .pass, .attested, evidence)
    }
}
