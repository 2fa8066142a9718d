import Foundation
import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

/// holdfast-broker serve and holdfastd talking over real HTTPS on loopback, with a real nginx
/// asking `/v1/authz` (auth_request) in front of a dummy upstream.
@Suite(.serialized) struct BrokerServeTests {
    static let broker = Products.path("holdfast-broker")
    static let holdfast = Products.path("holdfast")
    static let daemon = Products.path("holdfastd")

    /// A free loopback TCP port (bound, read, closed).
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        try #require(bound)
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A child process stopped (SIGTERM, then SIGKILL) when the test lets go of it. Spawned with
    /// every signal unblocked (`SpawnedProcess`: Foundation's Process would pass on the test
    /// runner's blocked SIGTERM, and a stand-in such as dbus-daemon would sit out the 5 s).
    final class Child {
        let spawned: SpawnedProcess
        let log: String

        init(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]) throws {
            self.log = log
            // Not createFile(atPath:contents:): swift-corelibs-foundation writes it atomically and
            // leaves an item-replacement directory in /tmp each time (docs/platform.md).
            try "".writeReplacing(toFile: log)
            spawned = try SpawnedProcess([executable] + arguments, environment: environment, log: log)
        }

        var pid: Int32 { spawned.pid }
        var isRunning: Bool { spawned.exitStatus() == nil }

        func stop() { spawned.stop() }

        /// SIGKILL (no chance to stop cleanly), and the exit reaped.
        func kill() {
            spawned.signal(SIGKILL)
            spawned.stop()
        }

        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        deinit { stop() }
    }

    /// Broker (init, an admin, serve) and one enrolled-to-be agent, all under one directory.
    final class Rig {
        let directory = TemporaryDirectory()
        let port: Int
        let url: String
        var adminToken = ""
        var brokerProcess: Child?
        var agentProcess: Child?
        var etc: String { directory.file("broker-etc") }
        var state: String { directory.file("broker-state") }
        var socket: String { directory.file("run/control.sock") }

        let staleAfter: String

        func startBroker() async throws {
            brokerProcess?.stop()
            brokerProcess = try Child(BrokerServeTests.broker, [
                "serve", "--url", url, "--listen", "127.0.0.1:\(port)", "--dir", etc, "--state-dir", state, "--stale-after", staleAfter, "--threads", "2",
            ], log: directory.file("broker.log"))
            try #require(await BrokerServeTests.poll { self.curl(["\(self.url)/v1/health"]).code == 200 }, "the broker did not start: \(brokerProcess?.output ?? "")")
        }

        init(staleAfter: String = "15m", attestInterval: String = "5m", uploadBatch: Int = 500, extraConfig: String = "") async throws {
            chmod(directory.path, 0o755)
            port = try BrokerServeTests.freePort()
            url = "https://localhost:\(port)"
            self.staleAfter = staleAfter
            let initialized = try runProcess(BrokerServeTests.broker, ["init", "--hostname", "localhost", "--dir", etc])
            try #require(initialized.status == 0, "\(initialized.stderr)")
            let admin = try runProcess(BrokerServeTests.broker, ["admin", "add", "alice", "--state-dir", state])
            try #require(admin.status == 0, "\(admin.stderr)")
            adminToken = admin.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            try await startBroker()
            try TestAgentConfiguration.write(in: directory.path, extra: """
                [broker]
                attest_interval = \(attestInterval)
                policy_wait = 2s
                upload_batch = \(uploadBatch)
                \(extraConfig)
                """)
        }

        func startAgent() async throws {
            agentProcess = try Child(BrokerServeTests.daemon, ["--config", directory.file("agent.conf")], log: directory.file("agent.log"))
            try #require(await BrokerServeTests.poll { (try? self.holdfast(["status"]).status) == 0 }, "holdfastd did not start: \(agentProcess?.output ?? "")")
        }

        func brokerCLI(_ arguments: [String]) throws -> ProcessResult {
            try runProcess(BrokerServeTests.broker, arguments + ["--state-dir", state], environment: ["HOLDFAST_ADMIN_TOKEN": adminToken, "PATH": "/usr/bin:/bin"])
        }

        func holdfast(_ arguments: [String]) throws -> ProcessResult {
            try runProcess(BrokerServeTests.holdfast, ["--socket", socket] + arguments)
        }

        func token() throws -> String {
            let created = try brokerCLI(["token", "create", "--url", url, "--expires", "1h", "--dir", etc])
            try #require(created.status == 0, "\(created.stderr)")
            return created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// Enrolls the running agent and waits for its first grant.
        func enroll() async throws -> (device: String, grant: String) {
            let enrolled = try holdfast(["enroll", "--token", try token(), "--json"])
            try #require(enrolled.status == 0, "\(enrolled.stderr)")
            let device = try #require((try? JSONSerialization.jsonObject(with: Data(enrolled.stdout.utf8)) as? [String: Any])?["device_id"] as? String)
            var grant = ""
            try #require(await BrokerServeTests.poll {
                guard let result = try? self.holdfast(["grant"]), result.status == 0 else { return false }
                grant = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                return !grant.isEmpty
            }, "no grant: \((try? holdfast(["grant"]).stderr) ?? "")")
            return (device, grant)
        }

        func curl(_ arguments: [String]) -> (code: Int, body: String) {
            let output = directory.file("curl.out")
            guard let result = try? runProcess("/usr/bin/curl", ["-s", "-o", output, "-w", "%{http_code}", "--max-time", "10", "--cacert", etc + "/ca.pem"] + arguments) else { return (0, "") }
            return (Int(result.stdout) ?? 0, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
        }

        func authz(_ grant: String?) -> (code: Int, body: String) {
            curl((grant.map { ["-H", "Authorization: Bearer \($0)"] } ?? []) + ["\(url)/v1/authz"])
        }

        func status() throws -> [String: Any] {
            let result = try holdfast(["status", "--json"])
            return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
        }
    }

    /// Polls until true, at most `seconds`.
    /// Polls until true, at most `seconds`; waits without holding a thread (two cooperative
    /// threads on 2 cores: a test that blocks them starves every async test running beside it).
    static func poll(seconds: Double = 30, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return condition()
    }
}


extension BrokerServeTests {
    @Test func enrollAttestAndAGatewayInFrontAsksAuthz() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (device, grant) = try await rig.enroll()
        #expect(fileMode(rig.directory.file("state/enrollment.json")) == 0o600)
        #expect(fileMode(rig.directory.file("state/device.key")) == 0o600)
        let enrollment = try #require(try rig.status()["enrollment"] as? [String: Any])
        #expect(enrollment["device_id"] as? String == device)
        #expect(enrollment["decision"] as? String == "compliant")

        // The grant verifies with the published JWKS alone (as a gateway without the broker would).
        let jwks = rig.curl(["\(rig.url)/.well-known/jwks.json"])
        #expect(jwks.code == 200)
        try jwks.body.writeReplacing(toFile: rig.directory.file("jwks.json"))
        let verified = try runProcess(BrokerServeTests.holdfast, ["verify", "--jwks", rig.directory.file("jwks.json"), "--jwt", "--aud", "holdfast", "--iss", rig.url, "--typ", "JWT", "--json", grant])
        #expect(verified.status == 0, "\(verified.stderr)")
        #expect(verified.stdout.contains("\"sub\":\"\(device)\""))

        // nginx: auth_request to the broker over HTTPS (CA pinned), a dummy upstream behind it.
        let upstream = try BrokerServeTests.freePort()
        let gateway = try BrokerServeTests.freePort()
        let nginxDirectory = rig.directory.file("nginx")
        try FileManager.default.createDirectory(atPath: nginxDirectory + "/tmp", withIntermediateDirectories: true)
        try """
            worker_processes 1;
            pid \(nginxDirectory)/nginx.pid;
            events { worker_connections 64; }
            http {
                access_log off;
                client_body_temp_path \(nginxDirectory)/tmp; proxy_temp_path \(nginxDirectory)/tmp; fastcgi_temp_path \(nginxDirectory)/tmp;
                uwsgi_temp_path \(nginxDirectory)/tmp; scgi_temp_path \(nginxDirectory)/tmp;
                server { listen 127.0.0.1:\(upstream); location / { return 200 "upstream reached\\n"; } }
                server {
                    listen 127.0.0.1:\(gateway);
                    location = /_authz {
                        internal;
                        proxy_pass https://127.0.0.1:\(rig.port)/v1/authz;
                        proxy_pass_request_body off;
                        proxy_set_header Content-Length "";
                        proxy_ssl_trusted_certificate \(rig.etc)/ca.pem;
                        proxy_ssl_verify on;
                        proxy_ssl_name localhost;
                        proxy_ssl_server_name on;
                    }
                    location / { auth_request /_authz; proxy_pass http://127.0.0.1:\(upstream); }
                }
            }

            """.writeReplacing(toFile: nginxDirectory + "/nginx.conf")
        let nginx = try Child("/usr/sbin/nginx", ["-p", nginxDirectory, "-e", nginxDirectory + "/error.log", "-c", nginxDirectory + "/nginx.conf", "-g", "daemon off;"], log: nginxDirectory + "/stdout.log")
        defer { nginx.stop() }
        let through = { (grant: String?) in rig.curl((grant.map { ["-H", "Authorization: Bearer \($0)"] } ?? []) + ["http://127.0.0.1:\(gateway)/"]) }
        #expect(await BrokerServeTests.poll { through(grant).code == 200 }, "nginx: \((try? String(contentsOfFile: nginxDirectory + "/error.log", encoding: .utf8)) ?? "")")
        #expect(through(grant).body == "upstream reached\n")
        #expect(through(nil).code == 401)
        #expect(through("not.a.grant").code == 401)
        // The cookie works as well as the header.
        #expect(rig.curl(["-b", "holdfast_grant=\(grant)", "http://127.0.0.1:\(gateway)/"]).code == 200)

        // A policy that requires a check this machine fails: 403 through nginx at once.
        try #"{"checks": {"no-such-check": "block"}}"#.writeReplacing(toFile: rig.directory.file("compliance.json"))
        let set = try rig.brokerCLI(["policy", "set", rig.directory.file("compliance.json")])
        #expect(set.status == 0, "\(set.stderr)")
        #expect(through(grant).code == 403)
        let denied = rig.authz(grant)
        #expect(denied.code == 403)
        #expect(denied.body.contains("no-such-check"))
        // The agent learns it at its next attestation: no grant, the denial names the check.
        let fresh = try rig.holdfast(["grant", "--fresh"])
        #expect(fresh.status == 1)
        #expect(fresh.stderr.contains("no-such-check"))
        // Every step is in the broker's trail, with the admin's name on the policy change.
        let log = try rig.brokerCLI(["log", "--device", device])
        #expect(log.stdout.contains("enroll"))
        #expect(log.stdout.contains("attest  noncompliant failing no-such-check"))
    }

    /// Between attestations the agent beats; the admin sees its services; and a new compliance
    /// policy is attested under at the next beat, not at the next scheduled attestation (1 h here).
    @Test func heartbeatsShowTheAgentAndANewPolicyIsAttestedUnderAtOnce() async throws {
        let rig = try await Rig(attestInterval: "1h", extraConfig: "heartbeat_interval = 1s")
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        func shown() -> [String: Any] {
            guard let result = try? rig.brokerCLI(["device", device, "--json"]), result.status == 0 else { return [:] }
            return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
        }
        #expect(await BrokerServeTests.poll { ((shown()["heartbeat"] as? [String: Any])?["services"] as? [String: String])?["broker"] == "running" }, "\(shown())")
        #expect((shown()["heartbeat"] as? [String: Any])?["agent_version"] as? String != nil)
        #expect(((try? rig.status())?["enrollment"] as? [String: Any]).flatMap { ($0["heartbeat"] as? [String: Any])?["last_at"] } != nil)
        #expect(shown()["decision"] as? String == "compliant")
        try #"{"checks": {"no-such-check": "block"}}"#.writeReplacing(toFile: rig.directory.file("compliance.json"))
        #expect(try rig.brokerCLI(["policy", "set", rig.directory.file("compliance.json")]).status == 0)
        #expect(await BrokerServeTests.poll { shown()["decision"] as? String == "noncompliant" }, "\(shown())")
        let text = try rig.brokerCLI(["device", device])
        #expect(text.stdout.contains("heartbeat   "), "\(text.stdout)")
        #expect(text.stdout.contains("broker running"), "\(text.stdout)")
    }

    @Test func anAgentThatStopsGoesStaleAndItsGrantStopsWorking() async throws {
        let rig = try await Rig(staleAfter: "4s", attestInterval: "1s")
        try await rig.startAgent()
        let (_, grant) = try await rig.enroll()
        // Attesting every second keeps it fresh well past the stale window.
        #expect(await BrokerServeTests.poll { rig.authz(grant).code == 200 })
        try await Task.sleep(for: .seconds(5))
        #expect(rig.authz(grant).code == 200, "\(rig.authz(grant).body)")
        rig.agentProcess?.stop()
        #expect(await BrokerServeTests.poll { rig.authz(grant).code == 403 })
        #expect(rig.authz(grant).body.contains("stale"))
    }

    @Test func theAgentsPolicyArrivesSignedSurvivesARestartAndAForgeryIsRefused() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        try #"{"version": 42, "usb": {"rules": []}}"#.writeReplacing(toFile: rig.directory.file("fleet.json"))
        let published = try rig.brokerCLI(["agent-policy", "set", rig.directory.file("fleet.json"), "--dir", rig.etc])
        #expect(published.status == 0, "\(published.stderr)")
        let brokerVersion = { (try? rig.status()["policy"] as? [String: Any])??["broker_version"] as? Int }
        #expect(await BrokerServeTests.poll { brokerVersion() == 1 }, "\(rig.agentProcess?.output ?? "")")
        #expect((try rig.status()["policy"] as? [String: Any])?["source"] as? String == "broker")
        #expect((try rig.status()["policy"] as? [String: Any])?["version"] as? Int == 42)
        #expect(fileMode(rig.directory.file("state/broker-policy.jws")) == 0o600)
        // The broker sees the acknowledgement.
        #expect(await BrokerServeTests.poll { (try? rig.brokerCLI(["devices", "--json"]).stdout.contains("\"policy_status\":\"applied\"")) == true })

        // A version signed by another key, slipped into the broker's store: refused, v1 stays.
        let forgedKey = rig.directory.file("forged.key")
        #expect(try runProcess(BrokerServeTests.broker, ["key", "generate", "--out", forgedKey]).status == 0)
        let document = Data(#"{"version": 43, "usb": {"default": "allow"}}"#.utf8)
        let payload = #"{"document":"\#(document.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: ""))","iat":1,"sha256":"\#(sha256Hex(document))","type":"holdfast.agent_policy","version":2}"#
        try payload.writeReplacing(toFile: rig.directory.file("forged.json"))
        let forged = try runProcess(BrokerServeTests.broker, ["sign", "--key", forgedKey, "--typ", "holdfast-policy+jws", rig.directory.file("forged.json")])
        #expect(forged.status == 0, "\(forged.stderr)")
        let inserted = try runProcess("/usr/bin/sqlite3", ["-cmd", ".timeout 10000", rig.state + "/broker.sqlite", "INSERT INTO documents VALUES ('agent-policy', 2, '\(forged.stdout.trimmingCharacters(in: .whitespacesAndNewlines))', 'mallory', 1)"])
        #expect(inserted.status == 0, "\(inserted.stderr)")
        let journal = { (try? runProcess(BrokerServeTests.holdfast, ["journal", "tail", "--state-dir", rig.directory.file("state"), "--lines", "200"]).stdout) ?? "" }
        #expect(await BrokerServeTests.poll { journal().contains("policy.refused") }, "\(journal())")
        #expect(brokerVersion() == 1)

        // Restart: the broker's v1 is in force before anything else starts.
        rig.agentProcess?.stop()
        try await rig.startAgent()
        #expect((try rig.status()["policy"] as? [String: Any])?["source"] as? String == "broker")
        #expect(brokerVersion() == 1)
        #expect((try rig.status()["enrollment"] as? [String: Any])?["device_id"] as? String == device)
    }
}

extension BrokerServeTests {
    /// `key rotate`: the broker signs with a new key, announced by the old one; the agent pins the
    /// new key through the announcement and its next grant (signed by the new key) is accepted.
    @Test func aKeyRotationIsFollowedThroughTheOldKeysAnnouncement() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (_, first) = try await rig.enroll()
        let rotated = try rig.brokerCLI(["key", "rotate", "--dir", rig.etc])
        #expect(rotated.status == 0, "\(rotated.stderr)")
        #expect(try rig.brokerCLI(["key", "rotate", "--dir", rig.etc]).status == 1, "a second rotation inside the overlap is refused")
        try await rig.startBroker()
        // Both keys are published during the overlap; the old grant still verifies.
        let jwks = rig.curl(["\(rig.url)/.well-known/jwks.json"])
        #expect(jwks.body.components(separatedBy: "\"kid\"").count == 3)
        #expect(rig.authz(first).code == 200)
        let fresh = try rig.holdfast(["grant", "--fresh", "--json"])
        #expect(fresh.status == 0, "\(fresh.stderr) \(rig.agentProcess?.output ?? "")")
        let grant = try #require((try? JSONSerialization.jsonObject(with: Data(fresh.stdout.utf8)) as? [String: Any])?["grant"] as? String)
        #expect(grant != first)
        #expect(rig.authz(grant).code == 200)
        let enrollment = try String(contentsOfFile: rig.directory.file("state/enrollment.json"), encoding: .utf8)
        #expect(enrollment.components(separatedBy: "\"kid\"").count == 3)
        let journal = try runProcess(BrokerServeTests.holdfast, ["journal", "tail", "--state-dir", rig.directory.file("state"), "--lines", "100"]).stdout
        #expect(journal.contains("broker.key_pinned"))
        // After the overlap, the old key is gone: the first grant no longer verifies.
        #expect(try rig.brokerCLI(["key", "retire", "--dir", rig.etc]).status == 0)
        try await rig.startBroker()
        #expect(rig.authz(first).code == 401)
        #expect(rig.authz(grant).code == 200)
        // The agent drops the retired key at its next key check (after its first attestation).
        rig.agentProcess?.stop()
        try await rig.startAgent()
        #expect(await BrokerServeTests.poll {
            ((try? String(contentsOfFile: rig.directory.file("state/enrollment.json"), encoding: .utf8)) ?? "").components(separatedBy: "\"kid\"").count == 2
        })
        let later = try runProcess(BrokerServeTests.holdfast, ["journal", "tail", "--state-dir", rig.directory.file("state"), "--lines", "100"]).stdout
        #expect(later.contains("broker.key_unpinned"))
    }

    /// After `device remove`, removing the agent's enrollment file lets it enroll again with a
    /// new token, as a new device, without a restart.
    @Test func aRemovedDeviceEnrollsAgainAsANewDevice() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (first, grant) = try await rig.enroll()
        #expect(try rig.brokerCLI(["device", "remove", first]).status == 0)
        #expect(rig.authz(grant).code == 403)
        #expect(try rig.holdfast(["enroll", "--token", try rig.token()]).status == 1, "still enrolled while the file is there")
        unlink(rig.directory.file("state/enrollment.json"))
        let (second, fresh) = try await rig.enroll()
        #expect(second != first)
        #expect(rig.authz(fresh).code == 200)
    }
}

extension BrokerServeTests {
    /// A token that pins another CA or another signing key is refused before anything is sent.
    @Test(arguments: ["ca", "key"])
    func aTokenPinningSomethingElseIsRefused(_ field: String) async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let token = try rig.token()
        let encoded = String(token.dropFirst(5))
        var base64 = encoded.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        let decoded = try #require(Data(base64Encoded: base64))
        var object = try #require(try JSONSerialization.jsonObject(with: decoded) as? [String: String])
        object[field] = field == "ca" ? "sha256:" + String(repeating: "ab", count: 32) : "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        let forged = "hft1." + (try JSONSerialization.data(withJSONObject: object)).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let result = try rig.holdfast(["enroll", "--token", forged])
        #expect(result.status == 1)
        #expect(result.stderr.contains(field == "ca" ? "the token pins sha256:abab" : "does not publish the signing key the token pins"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: rig.directory.file("state/enrollment.json")))
        // Nothing reached the enrollment endpoint: the token is still unused and works.
        let enrolled = try rig.holdfast(["enroll", "--token", token])
        #expect(enrolled.status == 0, "\(enrolled.stderr)")
    }
}

extension BrokerServeTests {
    /// A signed version whose USB section does not parse: refused once (one event, acknowledged as
    /// refused with the reason), the policy in force stays, and it is not fetched again.
    @Test func aSignedPolicyWithABadSectionIsRefusedOnce() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        try #"{"usb":{"rules":[{"id":"x","match":{"vendor":"zz"},"action":"allow"}]}}"#.writeReplacing(toFile: rig.directory.file("bad.json"))
        #expect(try rig.brokerCLI(["agent-policy", "set", rig.directory.file("bad.json"), "--dir", rig.etc]).status == 0)
        let devices = { (try? rig.brokerCLI(["devices", "--json"]).stdout) ?? "" }
        #expect(await BrokerServeTests.poll { devices().contains("refused: broker policy version 1") }, "\(devices())")
        #expect(devices().contains("vendor must be 4 hex digits"))
        try await Task.sleep(for: .seconds(5))
        let journal = try runProcess(BrokerServeTests.holdfast, ["journal", "tail", "--state-dir", rig.directory.file("state"), "--lines", "500", "--json"]).stdout
        #expect(journal.components(separatedBy: "\"policy.refused\"").count == 2, "one refusal event, not one per poll")
        #expect((try rig.status()["policy"] as? [String: Any])?["source"] as? String == "file")
        let log = try rig.brokerCLI(["log", "--device", device]).stdout
        #expect(log.components(separatedBy: "policy.refused").count == 2)
    }
}

/// Issue 12's reporting acceptance: nothing lost, nothing twice, across a broker outage and an
/// agent killed mid-upload.
extension BrokerServeTests {
    func fill(_ rig: Rig, _ count: Int, kind: String) throws {
        let filled = try runProcess(Products.path("holdfast-testkit"), ["journal-fill", rig.directory.file("state"), "\(count)", kind])
        try #require(filled.status == 0, "\(filled.stderr)")
    }

    func arrived(_ rig: Rig, _ device: String, kind: String) -> Int {
        Int(((try? rig.brokerCLI(["events", "--device", device, "--kind", kind, "--count"]).stdout) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    func pendingUpload(_ rig: Rig) -> Int64? {
        let stats = try? runProcess(BrokerServeTests.holdfast, ["journal", "stats", "--state-dir", rig.directory.file("state"), "--json"])
        return ((try? JSONSerialization.jsonObject(with: Data((stats?.stdout ?? "").utf8))) as? [String: Any])?["pending_upload"] as? Int64
    }

    @Test func tenThousandEventsJournaledDuringABrokerOutageArriveExactlyOnce() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        rig.brokerProcess?.stop()
        try fill(rig, 10_000, kind: "test.outage")
        #expect(arrived(rig, device, kind: "test.outage") == 0)
        try await rig.startBroker()
        #expect(await BrokerServeTests.poll(seconds: 90) { arrived(rig, device, kind: "test.outage") == 10_000 }, "arrived \(arrived(rig, device, kind: "test.outage"))")
        #expect(await BrokerServeTests.poll { pendingUpload(rig) == 0 }, "pending \(String(describing: pendingUpload(rig)))")
        // Nothing more arrives later (no second copy of anything).
        try await Task.sleep(for: .seconds(2))
        #expect(arrived(rig, device, kind: "test.outage") == 10_000)
        let sample = try rig.brokerCLI(["events", "--device", device, "--kind", "test.outage", "--limit", "1", "--json"]).stdout
        #expect(sample.contains("filled event"))
        let shown = try rig.brokerCLI(["device", device, "--json"]).stdout
        #expect(shown.contains("\"status\":\"compliant\""), "\(shown)")
        let events = ((try? JSONSerialization.jsonObject(with: Data(shown.utf8))) as? [String: Any])?["events"] as? Int ?? 0
        #expect(events >= 10_000)
    }

    /// One event the broker refuses (a kind over its limit) is set aside, said loudly, and every
    /// event after it still arrives.
    @Test func aRefusedEventDoesNotHoldBackTheOnesAfterIt() async throws {
        let rig = try await Rig(uploadBatch: 50)
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        rig.brokerProcess?.stop()
        try fill(rig, 1, kind: String(repeating: "k", count: 200))
        try fill(rig, 120, kind: "test.after")
        try await rig.startBroker()
        #expect(await BrokerServeTests.poll(seconds: 60) { arrived(rig, device, kind: "test.after") == 120 }, "arrived \(arrived(rig, device, kind: "test.after"))")
        #expect(await BrokerServeTests.poll { arrived(rig, device, kind: "broker.event_refused") == 1 })
        #expect(await BrokerServeTests.poll { pendingUpload(rig) == 0 })
    }

    @Test func anAgentKilledMidUploadLosesNothingAndDuplicatesNothing() async throws {
        let rig = try await Rig(uploadBatch: 50)
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        rig.brokerProcess?.stop()
        try fill(rig, 10_000, kind: "test.kill")
        try await rig.startBroker()
        // Killed once some batches are in and others are not.
        #expect(await BrokerServeTests.poll(seconds: 60) { arrived(rig, device, kind: "test.kill") > 0 })
        rig.agentProcess?.kill()
        let atKill = arrived(rig, device, kind: "test.kill")
        #expect(atKill > 0 && atKill < 10_000, "killed at \(atKill) of 10000")
        try await rig.startAgent()
        #expect(await BrokerServeTests.poll(seconds: 90) { arrived(rig, device, kind: "test.kill") == 10_000 }, "arrived \(arrived(rig, device, kind: "test.kill"))")
        #expect(await BrokerServeTests.poll { pendingUpload(rig) == 0 })
        try await Task.sleep(for: .seconds(2))
        #expect(arrived(rig, device, kind: "test.kill") == 10_000)
    }
}

extension BrokerServeTests {
    /// An enrolled agent whose stored broker policy no longer verifies runs the last broker policy
    /// (never the local file), and takes the broker's current version again when it answers.
    @Test func aTamperedStoredBrokerPolicyFallsBackToTheLastBrokerPolicyNotTheLocalFile() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        _ = try await rig.enroll()
        try #"{"version": 42, "usb": {}}"#.writeReplacing(toFile: rig.directory.file("fleet.json"))
        #expect(try rig.brokerCLI(["agent-policy", "set", rig.directory.file("fleet.json"), "--dir", rig.etc]).status == 0)
        let policy = { (try? rig.status()["policy"] as? [String: Any]) ?? [:] }
        #expect(await BrokerServeTests.poll { policy()["broker_version"] as? Int == 1 })
        let brokerDigest = policy()["sha256"] as? String
        rig.agentProcess?.stop()
        rig.brokerProcess?.stop()
        // One character of the signature changed.
        let path = rig.directory.file("state/broker-policy.jws")
        var text = try String(contentsOfFile: path, encoding: .utf8)
        let last = text.removeLast()
        text.append(last == "A" ? "B" : "A")
        try text.writeReplacing(toFile: path)
        chmod(path, 0o600)
        try await rig.startAgent()
        #expect(policy()["source"] as? String == "last-good")
        #expect(policy()["sha256"] as? String == brokerDigest, "the last broker policy, not the local file")
        // A reload does not bring the local file back either.
        _ = try rig.holdfast(["reload"])
        #expect(policy()["sha256"] as? String == brokerDigest)
        // The broker back: its version 1 is applied again.
        try await rig.startBroker()
        #expect(await BrokerServeTests.poll { policy()["source"] as? String == "broker" && policy()["broker_version"] as? Int == 1 }, "\(policy())")
    }

    /// A damaged enrollment file is an error the status shows, not a silent unenrollment.
    @Test func aDamagedEnrollmentIsShownAndBlocksANewEnrollment() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        _ = try await rig.enroll()
        rig.agentProcess?.stop()
        try "{ broken".writeReplacing(toFile: rig.directory.file("state/enrollment.json"))
        chmod(rig.directory.file("state/enrollment.json"), 0o600)
        try await rig.startAgent()
        let enrollment = try #require(try rig.status()["enrollment"] as? [String: Any])
        #expect(enrollment["state"] as? String == "unreadable")
        let again = try rig.holdfast(["enroll", "--token", try rig.token()])
        #expect(again.status == 1)
        #expect(again.stderr.contains("remove it to enroll again"), "\(again.stderr)")
    }
}

extension BrokerServeTests {
    /// Five findings of one user on one device: one alert ×5 at the top; `ack` closes it by name.
    @Test func alertsFromUploadedFindingsAreFoldedAndAcknowledgedByName() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        let filled = try runProcess(Products.path("holdfast-testkit"), ["journal-fill", rig.directory.file("state"), "5", "filewatch.alert", "finding"])
        #expect(filled.status == 0, "\(filled.stderr)")
        let open = { (try? rig.brokerCLI(["alerts", "--json"]).stdout) ?? "" }
        #expect(await BrokerServeTests.poll { open().contains("\"count\":5") }, "\(open())")
        let alerts = try #require((try? JSONSerialization.jsonObject(with: Data(open().utf8))) as? [[String: Any]])
        #expect(alerts.count == 1)
        #expect(alerts.first?["device"] as? String == device)
        #expect(alerts.first?["user"] as? String == "maria")
        let id = try #require(alerts.first?["id"] as? Int)
        let acked = try rig.brokerCLI(["ack", "\(id)", "--note", "spoke to maria"])
        #expect(acked.status == 0, "\(acked.stderr)")
        #expect(acked.stdout.contains("acknowledged by alice"))
        #expect(try rig.brokerCLI(["alerts"]).stdout.contains("no open alerts"))
        #expect(try rig.brokerCLI(["alerts", "--all"]).stdout.contains("acknowledged by alice"))
    }
}

private func sha256Hex(_ data: Data) -> String {
    guard let result = try? runProcessBytes("/usr/bin/sha256sum", [], stdin: Array(data)) else { return "" }
    return String(String(decoding: result, as: UTF8.self).prefix(64))
}
