import CNftables
public import HoldfastCore

/// The network lockdown's nftables tables, `inet holdfast` and `bridge holdfast` (docs/lockdown.md,
/// "The network table").
///
/// Everything is dropped — in, out and forwarded, bridged frames too — except: loopback; TCP to
/// the broker's addresses on its port and the replies; DNS to the resolvers and the replies; what
/// keeps the machine's address (DHCPv4 broadcasts out and offers in, DHCPv6 to the all-servers
/// group from link-local, IPv6 neighbour and router discovery with hop limit 255); the `allow`
/// prefixes both ways; and ICMP errors about allowed traffic (`related`). Connections that were
/// open before stay dead: only allowed destinations may send, and only from them is an
/// established reply accepted.
///
/// Installed and removed in one libnftables transaction each: the whole tables appear (or are
/// replaced) at once, or nothing changes.
public struct IsolationTable: Sendable, Equatable, Codable {
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

    /// The tables as nft(8) syntax. Every address is a parsed `NetworkAddress` (its canonical
    /// text), every number a number: nothing a caller wrote reaches the ruleset as text.
    public var ruleset: String {
        func set(_ addresses: [NetworkAddress]) -> String { "{ " + addresses.map(\.description).joined(separator: ", ") + " }" }
        func by(_ family: NetworkAddress.Family, _ addresses: [NetworkAddress]) -> [NetworkAddress] { addresses.filter { $0.family == family } }
        var input = [
            "iif \"lo\" accept",
            // DHCPv4 offers and acks (to 68, unicast or broadcast); DHCPv6 answers from link-local.
            "udp sport 67 udp dport 68 accept",
            "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept",
            // Neighbour and router discovery only as the link delivers it (RFC 4861: hop limit 255).
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } ip6 hoplimit 255 accept",
            "ct state related accept",
        ]
        var output = [
            "oif \"lo\" accept",
            // DHCPv4 out as broadcast only (discover, request, rebind): a unicast renewal fails and
            // the client rebinds by broadcast, keeping its lease; no unicast port-67 channel.
            "ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
            "ip6 daddr ff02::1:2 udp sport 546 udp dport 547 accept",
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } ip6 hoplimit 255 accept",
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
            // Frames bridged between other ports (VMs and containers on a bridge) never reach the
            // inet forward hook unless br_netfilter is loaded: dropped here.
            + "table bridge \(Self.name) {\n" + chain("forward", "forward", []) + "}\n"
    }

    static let reset = "add table \(family) \(name)\ndelete table \(family) \(name)\nadd table bridge \(name)\ndelete table bridge \(name)\n"

    /// Installs the tables, replacing earlier ones in the same transaction (`add` makes the
    /// `delete` valid when there was none).
    public func install() -> Result<Void, NetfilterError> {
        Netfilter.run(Self.reset + ruleset).map { _ in }
    }

    /// Removes the tables (nothing when there are none).
    public static func remove() -> Result<Void, NetfilterError> {
        Netfilter.run(reset).map { _ in }
    }

    /// Whether the inet table is in the kernel now.
    public static func isInstalled() -> Bool {
        if case .success = Netfilter.run("list table \(family) \(name)") { return true }
        return false
    }

    /// Both tables as the kernel lists them now (nil when either is missing): compared with the
    /// listing taken right after installing, it shows any change someone made.
    public static func listing() -> String? {
        guard case .success(let inet) = Netfilter.run("list table \(family) \(name)"), case .success(let bridge) = Netfilter.run("list table bridge \(name)") else { return nil }
        return inet + bridge
    }
}

/// One libnftables context per call, its output and errors buffered.
enum Netfilter {
    /// Runs an nft(8) script as one transaction ("nft -f" semantics: all of it or none); returns
    /// what it printed (a listing).
    static func run(_ script: String) -> Result<String, NetfilterError> {
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
        return .success(nft_ctx_get_output_buffer(context).map { String(cString: $0) } ?? "")
    }
}
