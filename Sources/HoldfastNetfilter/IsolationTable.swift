import CNftables
public import HoldfastCore

/// The network lockdown's nftables table, `inet holdfast` (docs/lockdown.md, "network").
///
/// Everything is dropped — in, out and forwarded — except: loopback; TCP to the broker's
/// addresses on its port and the replies; DNS to the resolvers and the replies; what keeps the
/// machine's address (DHCPv4, DHCPv6, IPv6 neighbour and router discovery); the `allow` prefixes
/// both ways; and ICMP errors about allowed traffic (`related`). Connections that were open
/// before stay dead: only allowed destinations may send, and only from them is an established
/// reply accepted.
///
/// Installed and removed in one libnftables transaction each: the whole table appears (or is
/// replaced) at once, or nothing changes.
public struct IsolationTable: Sendable, Equatable {
    public static let family = "inet"
    public static let name = "holdfast"

    public var broker: [NetworkAddress]
    public var brokerPort: UInt16
    public var resolvers: [NetworkAddress]
    public var allowed: [NetworkAddress]

    public init(broker: [NetworkAddress], brokerPort: UInt16, resolvers: [NetworkAddress], allowed: [NetworkAddress]) {
        self.broker = broker
        self.brokerPort = brokerPort
        self.resolvers = resolvers
        self.allowed = allowed
    }

    /// The table as nft(8) syntax. Every address is a parsed `NetworkAddress` (its canonical
    /// text), every number a number: nothing a caller wrote reaches the ruleset as text.
    public var ruleset: String {
        func set(_ addresses: [NetworkAddress]) -> String { "{ " + addresses.map(\.description).joined(separator: ", ") + " }" }
        func by(_ family: NetworkAddress.Family, _ addresses: [NetworkAddress]) -> [NetworkAddress] { addresses.filter { $0.family == family } }
        var input = [
            "iif \"lo\" accept",
            // DHCPv4 offers and acks (to 68; broadcast or unicast), DHCPv6 answers (to 546).
            "udp sport 67 udp dport 68 accept",
            "udp sport 547 udp dport 546 accept",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect } accept",
            "ct state related accept",
        ]
        var output = [
            "oif \"lo\" accept",
            "udp sport 68 udp dport 67 accept",
            "udp sport 546 udp dport 547 accept",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept",
            "ct state related accept",
        ]
        for (family, keyword) in [(NetworkAddress.Family.v4, "ip"), (.v6, "ip6")] {
            let brokers = by(family, broker)
            if !brokers.isEmpty {
                output.append("\(keyword) daddr \(set(brokers)) tcp dport \(brokerPort) accept")
                input.append("\(keyword) saddr \(set(brokers)) tcp sport \(brokerPort) ct state established accept")
            }
            let dns = by(family, resolvers)
            if !dns.isEmpty {
                output.append("\(keyword) daddr \(set(dns)) udp dport 53 accept")
                output.append("\(keyword) daddr \(set(dns)) tcp dport 53 accept")
                input.append("\(keyword) saddr \(set(dns)) udp sport 53 ct state established accept")
                input.append("\(keyword) saddr \(set(dns)) tcp sport 53 ct state established accept")
            }
            let extra = by(family, allowed)
            if !extra.isEmpty {
                output.append("\(keyword) daddr \(set(extra)) accept")
                input.append("\(keyword) saddr \(set(extra)) accept")
            }
        }
        func chain(_ name: String, _ hook: String, _ rules: [String]) -> String {
            // Priority -10: before the usual filter chains (0). A drop here is final whatever
            // other tables say; an accept here does not override another table's drop.
            "    chain \(name) {\n        type filter hook \(hook) priority -10; policy drop;\n" + rules.map { "        \($0)\n" }.joined() + "    }\n"
        }
        return "table \(Self.family) \(Self.name) {\n" + chain("input", "input", input) + chain("output", "output", output) + chain("forward", "forward", []) + "}\n"
    }

    /// Installs the table, replacing an earlier one in the same transaction (`add` makes the
    /// `delete` valid when there was none).
    public func install() -> Result<Void, NetfilterError> {
        Netfilter.run("add table \(Self.family) \(Self.name)\ndelete table \(Self.family) \(Self.name)\n" + ruleset)
    }

    /// Removes the table (nothing when there is none).
    public static func remove() -> Result<Void, NetfilterError> {
        Netfilter.run("add table \(family) \(name)\ndelete table \(family) \(name)\n")
    }

    /// Whether the table is in the kernel now.
    public static func isInstalled() -> Bool {
        if case .success = Netfilter.run("list table \(family) \(name)") { return true }
        return false
    }
}

/// One libnftables context per call, its output and errors buffered.
enum Netfilter {
    /// Runs an nft(8) script as one transaction ("nft -f" semantics: all of it or none).
    static func run(_ script: String) -> Result<Void, NetfilterError> {
        guard let context = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else { return .failure(NetfilterError("cannot create a libnftables context")) }
        // "nft_ctx_free() … frees the context and any buffers it holds" (libnftables(3)).
        defer { nft_ctx_free(context) }
        guard nft_ctx_buffer_output(context) == 0, nft_ctx_buffer_error(context) == 0 else {
            return .failure(NetfilterError("cannot buffer libnftables' output"))
        }
        guard nft_run_cmd_from_buffer(context, script) == 0 else {
            let message = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
            let first = message.split(whereSeparator: \.isNewline).first.map(String.init) ?? "failed"
            return .failure(NetfilterError("nft: \(first)"))
        }
        return .success(())
    }
}
