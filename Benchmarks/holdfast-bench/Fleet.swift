import BrokerClient
import Foundation
import HoldfastCore
import HoldfastCrypto
import HoldfastStore

/// A release `holdfast-broker serve` on loopback and `devices` simulated devices enrolled with it
/// (each a key and a BrokerSession, as an agent holds them): the load row and the offboarding row
/// run on it. Its directory goes with it. Sendable by hand: its lists are filled once, by `enroll`,
/// before anything reads them.
final class Fleet: @unchecked Sendable {
    let directory: String
    let url: String
    let caPEM: String
    let signing: SigningKey
    let server: BrokerBench.Child
    /// The broker's store, opened beside the serving process (WAL), as the admin CLI opens it.
    let storage: SQLiteBrokerStorage
    private(set) var sessions: [BrokerSession] = []
    private(set) var keys: [SigningKey] = []
    private let tokens: [String]
    var brokerPID: Int32 { server.process.processIdentifier }

    init(broker: String, devices: Int, name: String) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("holdfast-\(name)-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o700)
        let port = BrokerBench.freePort()
        url = "https://localhost:\(port)"
        _ = try BrokerBench.run(broker, ["init", "--hostname", "localhost", "--dir", directory + "/etc"])
        _ = try BrokerBench.run(broker, ["admin", "add", "bench", "--state-dir", directory + "/state"])
        server = try BrokerBench.Child(broker, [
            "serve", "--url", url, "--listen", "127.0.0.1:\(port)", "--dir", directory + "/etc", "--state-dir", directory + "/state", "--max-per-peer", "10000",
        ])
        caPEM = try String(contentsOfFile: directory + "/etc/ca.pem", encoding: .utf8)
        signing = try SigningKey.load(from: directory + "/etc/signing.key")
        let fingerprint = Hex.encode(try CertificateFingerprint.sha256(of: Array(caPEM.utf8)))
        // Tokens straight into the broker's store (WAL: the serving process sees them).
        storage = try SQLiteBrokerStorage(directory: directory + "/state")
        var tokens: [String] = []
        for index in 0..<devices {
            let secret = try SecureRandom.token(bytes: 32)
            let now = Int64(Date().timeIntervalSince1970)
            try storage.addEnrollmentToken(id: "\(name)-\(index)", tokenHash: SHA256.hash(Array(secret.utf8)), label: name, expires: now + 3_600, createdBy: "bench", at: now)
            let body = #"{"ca":"sha256:\#(fingerprint)","key":"\#(signing.publicKey.thumbprint)","secret":"\#(secret)","url":"\#(url)"}"#
            tokens.append("hft1." + Base64URL.encode(Array(body.utf8)))
        }
        self.tokens = tokens
    }

    deinit {
        // The broker first, then its directory.
        if server.process.isRunning {
            server.process.terminate()
            server.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Waits for the broker, then enrolls every device, `workers` at a time.
    func enroll(workers: Int) async throws {
        let probe = HTTPClient(trust: .pinned(caPEM))
        for _ in 0..<100 {
            if (try? await probe.send("GET", url + "/v1/health", timeout: .seconds(2)))?.status == 200 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let tokens = tokens
        for start in stride(from: 0, to: tokens.count, by: workers) {
            let slice = Array(start..<min(tokens.count, start + workers))
            let enrolled = try await withThrowingTaskGroup(of: (Int, BrokerSession, SigningKey).self) { group in
                for index in slice {
                    group.addTask {
                        let key = try SigningKey.generate()
                        let record = try await BrokerSession.enroll(
                            token: try EnrollmentToken(tokens[index]), key: key, facts: DeviceFacts(machineID: nil, dmiSerial: nil, hostname: "bench-\(index)", os: nil))
                        return (index, BrokerSession(record: record, key: key), key)
                    }
                }
                var all: [(Int, BrokerSession, SigningKey)] = []
                for try await item in group { all.append(item) }
                return all.sorted { $0.0 < $1.0 }
            }
            sessions += enrolled.map(\.1)
            keys += enrolled.map(\.2)
        }
    }
}
