import Foundation
import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

/// The network scope for real: three network namespaces (endpoint, broker, elsewhere), a release
/// of holdfastd inside the endpoint, the broker serving HTTPS inside its own, a plain HTTP server
/// elsewhere. Locked by the broker's command, the endpoint reaches the broker and nothing else;
/// the table outlives holdfastd, comes back after someone deletes it, and goes on release.
@Suite(.serialized, .enabled(if: NetworkNamespaces.available, "needs root and iproute2 (ip netns)"))
struct NetworkLockdownTests {
    final class Rig {
        let directory = TemporaryDirectory()
        let hosts: NetworkNamespaces
        let port = 8443
        var adminToken = ""
        var broker: BrokerServeTests.Child?
        var elsewhere: BrokerServeTests.Child?
        var agent: BrokerServeTests.Child?
        var etc: String { directory.file("broker-etc") }
        var state: String { directory.file("broker-state") }
        var socket: String { directory.file("run/control.sock") }
        var url: String { "https://\(hosts.brokerAddress):\(port)" }

        init() async throws {
            chmod(directory.path, 0o755)
            hosts = try NetworkNamespaces()
            try #require(try runProcess(BrokerServeTests.broker, ["init", "--hostname", hosts.brokerAddress, "--dir", etc]).status == 0)
            let admin = try runProcess(BrokerServeTests.broker, ["admin", "add", "alice", "--state-dir", state])
            try #require(admin.status == 0, "\(admin.stderr)")
            adminToken = admin.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            broker = try BrokerServeTests.Child("/usr/sbin/ip", NetworkNamespaces.inside(hosts.broker, [
                BrokerServeTests.broker, "serve", "--url", url, "--listen", "\(hosts.brokerAddress):\(port)", "--dir", etc, "--state-dir", state, "--threads", "2",
            ]), log: directory.file("broker.log"))
            try FileManager.default.createDirectory(atPath: directory.file("www"), withIntermediateDirectories: true)
            try "elsewhere\n".writeReplacing(toFile: directory.file("www/index.html"))
            elsewhere = try BrokerServeTests.Child("/usr/sbin/ip", NetworkNamespaces.inside(hosts.elsewhere, [
                "/usr/bin/python3", "-m", "http.server", "8080", "--bind", hosts.elsewhereAddress, "--directory", directory.file("www"),
            ]), log: directory.file("elsewhere.log"))
            try TestAgentConfiguration.write(in: directory.path, extra: "[broker]\npolicy_wait = 5s\n[lockdown]\ndns = 10.77.1.53")
            try #require(await BrokerServeTests.poll { self.brokerStatus == 200 && self.elsewhereStatus == 200 },
                         "broker \(brokerStatus), elsewhere \(elsewhereStatus): \(broker?.output ?? "") \(elsewhere?.output ?? "")")
        }

        var brokerStatus: Int { hosts.status(fromEndpoint: url + "/v1/health", caFile: etc + "/ca.pem") }
        var elsewhereStatus: Int { hosts.status(fromEndpoint: "http://\(hosts.elsewhereAddress):8080/") }

        func startAgent() async throws {
            agent = try BrokerServeTests.Child("/usr/sbin/ip", NetworkNamespaces.inside(hosts.endpoint, [BrokerServeTests.daemon, "--config", directory.file("agent.conf")]),
                                               log: directory.file("agent.log"))
            try #require(await BrokerServeTests.poll { (try? self.holdfast(["status"]).status) == 0 }, "holdfastd did not start: \(agent?.output ?? "")")
        }

        func holdfast(_ arguments: [String]) throws -> ProcessResult { try runProcess(BrokerServeTests.holdfast, ["--socket", socket] + arguments) }

        func brokerCLI(_ arguments: [String]) throws -> ProcessResult {
            try runProcess(BrokerServeTests.broker, arguments + ["--state-dir", state], environment: ["HOLDFAST_ADMIN_TOKEN": adminToken, "PATH": "/usr/bin:/bin"])
        }

        func enroll() async throws -> String {
            let created = try brokerCLI(["token", "create", "--url", url, "--expires", "1h", "--dir", etc])
            try #require(created.status == 0, "\(created.stderr)")
            let enrolled = try holdfast(["enroll", "--token", created.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "--json"])
            try #require(enrolled.status == 0, "\(enrolled.stderr)")
            return try #require((try? JSONSerialization.jsonObject(with: Data(enrolled.stdout.utf8)) as? [String: Any])?["device_id"] as? String)
        }

        var locked: Set<String> {
            guard let result = try? holdfast(["lockdown", "status", "--json"]), result.status == 0,
                  let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else { return [] }
            return Set(object["locked"] as? [String] ?? [])
        }

        var table: String { (try? hosts.run(in: hosts.endpoint, ["/usr/sbin/nft", "list", "table", "inet", "holdfast"]))?.stdout ?? "" }

        deinit {
            // Processes first: a namespace is deleted under no one.
            agent?.stop()
            broker?.stop()
            elsewhere?.stop()
        }
    }

    @Test func aNetworkLockdownLeavesOnlyTheBrokerOutlivesHoldfastdAndIsReleased() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let device = try await rig.enroll()
        // Before: no table, both answer.
        #expect(rig.table.isEmpty)

        let queued = try rig.brokerCLI(["lockdown", device, "--scope", "network", "--reason", "incident 21: isolate", "--dir", rig.etc])
        #expect(queued.status == 0, "\(queued.stderr)")
        #expect(await BrokerServeTests.poll { rig.locked == ["network"] }, "\(rig.agent?.output ?? "")")
        #expect(await BrokerServeTests.poll { rig.elsewhereStatus == 0 }, "elsewhere still answers: \(rig.table)")
        #expect(rig.brokerStatus == 200)
        let table = rig.table
        #expect(table.contains("policy drop"))
        #expect(table.contains("ip daddr 10.77.1.2 tcp dport 8443 accept"), "\(table)")
        #expect(table.contains("ip daddr 10.77.1.53 udp dport 53 accept"), "\(table)")
        #expect(table.contains("ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept"), "\(table)")
        #expect((try? rig.hosts.run(in: rig.hosts.endpoint, ["/usr/sbin/nft", "list", "table", "bridge", "holdfast"]))?.stdout.contains("policy drop") == true)
        // The broker sees the acknowledgement through the lockdown.
        #expect(await BrokerServeTests.poll {
            (try? rig.brokerCLI(["device", device]).stdout.contains("lockdown by command 1 from alice")) == true
                && (try? rig.brokerCLI(["device", device, "--json"]).stdout.contains(#""enforced":["network"]"#)) == true
        })

        // holdfastd stopped: the kernel keeps the table, elsewhere stays unreachable.
        rig.agent?.stop()
        #expect(rig.elsewhereStatus == 0)
        #expect(rig.brokerStatus == 200)
        try await rig.startAgent()
        #expect(rig.locked == ["network"])
        #expect(!rig.table.isEmpty)

        // Someone deletes the table: it is back within a reassertion, and said.
        #expect(try rig.hosts.run(in: rig.hosts.endpoint, ["/usr/sbin/nft", "delete", "table", "inet", "holdfast"]).status == 0)
        #expect(await BrokerServeTests.poll(seconds: 40) { !rig.table.isEmpty })
        #expect(rig.elsewhereStatus == 0)
        let journal = { (try? runProcess(BrokerServeTests.holdfast, ["journal", "tail", "--lines", "500", "--state-dir", rig.directory.file("state")]).stdout) ?? "" }
        #expect(journal().contains("were removed by something other than holdfastd"))
        // Someone opens a chain in place (the table stays, its policy accepts): also put back.
        #expect(try rig.hosts.run(in: rig.hosts.endpoint, ["/usr/sbin/nft", "chain", "inet", "holdfast", "output", "{ policy accept; }"]).status == 0)
        #expect(try rig.hosts.run(in: rig.hosts.endpoint, ["/usr/sbin/nft", "flush", "chain", "inet", "holdfast", "output"]).status == 0)
        #expect(await BrokerServeTests.poll(seconds: 40) { journal().contains("were changed by something other than holdfastd") })
        #expect(rig.table.contains("policy drop"))
        #expect(rig.elsewhereStatus == 0)
        #expect(rig.brokerStatus == 200)

        // Released by the broker: the table goes, both answer.
        #expect(try rig.brokerCLI(["release", device, "--reason", "incident 21 closed", "--dir", rig.etc]).status == 0)
        #expect(await BrokerServeTests.poll { rig.locked.isEmpty })
        #expect(await BrokerServeTests.poll { rig.elsewhereStatus == 200 })
        #expect(rig.brokerStatus == 200)
        #expect(rig.table.isEmpty)
    }
}
