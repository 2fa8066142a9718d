import Foundation
import HoldfastCore
import HoldfastNetfilter
import HoldfastTestSupport
import Testing

@Suite struct NetworkAddressTests {
    @Test(arguments: [
        ("10.0.0.5", "10.0.0.5"), ("10.1.2.3/16", "10.1.0.0/16"), ("0.0.0.0/0", "0.0.0.0/0"), ("FD00:0:0::53", "fd00::53"), ("2001:db8::1/32", "2001:db8::/32"),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
    ])
    func addressesAreWrittenBackCanonically(_ text: String, _ canonical: String) throws {
        #expect(try #require(NetworkAddress(text)).description == canonical)
    }

    @Test(arguments: ["", "broker.example", "10.0.0.256", "10.0.0.1/33", "10.0.0.1/", "10.0.0.1/+8", "fe80::1%eth0", "10.0.0.1 accept", "1.2.3.4; flush ruleset", "::/129"])
    func anythingElseIsNotAnAddress(_ text: String) {
        #expect(NetworkAddress(text) == nil)
    }

    @Test func onlySingleRealHostsAreHosts() {
        #expect(NetworkAddress("10.0.0.53")?.isHost == true)
        #expect(NetworkAddress("fd00::53")?.isHost == true)
        for text in ["0.0.0.0", "::", "0.0.0.0/0", "10.0.0.0/8", "fd00::/64"] { #expect(NetworkAddress(text)?.isHost == false, "\(text)") }
    }

    @Test func lockdownKeysParseAndRefuseWhatIsNotAnAddress() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("agent.conf")
        try "[lockdown]\ndns = 10.0.0.53, fd00::53\nallow = 10.20.0.0/24\nsessions = lock\n".writeReplacing(toFile: path)
        let configuration = try AgentConfigurationParser.load(path, requireRootOwned: false)
        #expect(configuration.lockdownDNS.map(\.description) == ["10.0.0.53", "fd00::53"])
        #expect(configuration.lockdownAllow.map(\.description) == ["10.20.0.0/24"])
        #expect(configuration.lockdownSessions == "lock")
        for bad in ["dns = resolver.example", "dns = 10.0.0.0/8", "dns = 0.0.0.0", "allow = 10.0.0.1; drop", "sessions = logout"] {
            try "[lockdown]\n\(bad)\n".writeReplacing(toFile: path)
            #expect(throws: ConfigError.self) { try AgentConfigurationParser.load(path, requireRootOwned: false) }
        }
    }
}

@Suite struct IsolationTableTests {
    static let table = IsolationTable(
        broker: [NetworkAddress("10.77.1.2"), NetworkAddress("fd00::2")].compactMap { $0 }, brokerPort: 8443,
        resolvers: [NetworkAddress("10.77.1.53")].compactMap { $0 }, allowed: [NetworkAddress("10.20.0.0/24")].compactMap { $0 })

    @Test func theTableAllowsTheBrokerDNSTheAddressAndNothingElse() {
        let text = Self.table.ruleset
        for line in [
            "table inet holdfast {", "type filter hook output priority -10; policy drop;", "type filter hook input priority -10; policy drop;",
            "type filter hook forward priority -10; policy drop;", "ip daddr { 10.77.1.2 } tcp dport 8443 accept", "ip6 daddr { fd00::2 } tcp dport 8443 accept",
            "ip saddr { 10.77.1.2 } tcp sport 8443 ct state established accept", "ip daddr { 10.77.1.53 } udp dport 53 accept",
            "ip daddr { 10.20.0.0/24 } accept", "oif \"lo\" accept", "ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
            "table bridge holdfast {", "ip6 hoplimit 255 accept",
        ] {
            #expect(text.contains(line), "missing: \(line)\n\(text)")
        }
        // Nothing open-ended: no bare established accept (old connections elsewhere stay dead).
        #expect(!text.contains("ct state established,related accept"))
        // No unicast DHCP channel out, no redirects in.
        #expect(!text.contains("\n        udp sport 68 udp dport 67 accept"))
        #expect(!text.contains("nd-redirect"))
        for line in text.split(separator: "\n") where line.contains("ct state established") {
            #expect(line.contains("saddr"), "an established accept not bound to an allowed source: \(line)")
        }
    }

    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft"), "needs root and nft"))
    func nftAcceptsTheTable() throws {
        // --check: parsed and validated by the kernel, nothing committed.
        let checked = try runProcess("/usr/sbin/nft", ["--check", "-f", "-"], stdin: Self.table.ruleset)
        #expect(checked.status == 0, "\(checked.stderr)")
        let bare = try runProcess("/usr/sbin/nft", ["--check", "-f", "-"], stdin: IsolationTable(broker: [], brokerPort: 443, resolvers: [], allowed: []).ruleset)
        #expect(bare.status == 0, "\(bare.stderr)")
    }
}
