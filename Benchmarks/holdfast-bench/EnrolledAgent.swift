import Foundation
import HoldfastTestSupport

/// A release broker on loopback and a release holdfastd enrolled with it (the login and lockdown
/// rows): everything under one temporary directory, removed with the value.
final class EnrolledAgent {
    let directory: String
    let url: String
    let port: Int
    let adminToken: String
    let socket: String
    let configuration: String
    let device: String
    let broker: String
    private(set) var server: BrokerBench.Child?
    private var agent: BrokerBench.Child?

    /// `print`: agent.conf's `[print]` section (default off); `policy`: the policy file's text.
    init(name: String, broker: String, holdfastd: String, holdfast: String, extra: String = "", print: String? = nil, policy: String? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("holdfast-\(name)-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        self.broker = broker
        port = BrokerBench.freePort()
        url = "https://localhost:\(port)"
        _ = try BrokerBench.run(broker, ["init", "--hostname", "localhost", "--dir", directory + "/etc"])
        adminToken = try BrokerBench.run(broker, ["admin", "add", "bench", "--state-dir", directory + "/broker-state"])
        server = try BrokerBench.Child(broker, ["serve", "--url", url, "--listen", "127.0.0.1:\(port)", "--dir", directory + "/etc", "--state-dir", directory + "/broker-state"])
        configuration = try TestAgentConfiguration.write(in: directory, extra: extra, print: print)
        if let policy { try policy.writeReplacing(toFile: directory + "/policy.json") }
        socket = directory + "/run/control.sock"
        agent = try BrokerBench.Child(holdfastd, ["--config", configuration])
        for _ in 0..<100 where (try? BrokerBench.run(holdfast, ["--socket", socket, "status"])) == nil || !FileManager.default.fileExists(atPath: socket) {
            usleep(100_000)
        }
        let token = try BrokerBench.run(
            broker, ["token", "create", "--url", url, "--dir", directory + "/etc", "--state-dir", directory + "/broker-state"], environment: ["HOLDFAST_ADMIN_TOKEN": adminToken])
        let enrolled = try BrokerBench.run(holdfast, ["--socket", socket, "enroll", "--token", token, "--json"])
        guard let data = enrolled.data(using: .utf8), let object = try JSONSerialization.jsonObject(with: data) as? [String: Any], let id = object["device_id"] as? String else {
            throw CocoaError(.featureUnsupported)
        }
        device = id
        // The first attestation and grant (what a login's cached path needs).
        for _ in 0..<150 {
            if let grant = try? BrokerBench.run(holdfast, ["--socket", socket, "grant"]), !grant.isEmpty { break }
            usleep(200_000)
        }
    }

    /// Stops the broker (the agent stays, offline).
    func stopBroker() {
        server = nil
        usleep(300_000)
    }

    deinit {
        // Processes first, then their directory.
        agent = nil
        server = nil
        try? FileManager.default.removeItem(atPath: directory)
    }
}
