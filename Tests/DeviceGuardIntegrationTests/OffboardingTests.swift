import Foundation
import HoldfastTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Offboarding end to end (docs/offboarding.md): three real holdfastd enrolled with one real
/// broker over HTTPS on loopback — each with its own configuration, state, control socket and
/// device key; only the first drives the umockdev bus, the others run with USB off. The user
/// (`nobody`, asking through `runuser`) holds an approved USB exception on the first and an
/// access grant from the second; `holdfast-broker offboard nobody` refuses the grant at
/// `/v1/authz`, ends the exception (the stick is deauthorized), and the login check denies the
/// user on all three — on the third, stopped during the offboarding, once it starts again.
@Suite(.serialized, .enabled(if: USBTestbed.available && getuid() == 0, "needs root, umockdev and python3-gi"))
struct OffboardingTests {
    static let user = JustInTimeUSBTests.requester

    /// `holdfast login-check` for `user` against an agent, as PAM would run it: (allowed, what the user saw).
    func loginCheck(_ agent: EnforcingAgent, _ user: String = Self.user) throws -> (allowed: Bool, output: String) {
        let result = try runProcess(
            Products.path("holdfast"), ["login-check", "--socket", agent.socket, "--user", user, "--config", agent.config],
            environment: ["PAM_TYPE": "account", "PAM_SERVICE": "sshd", "PAM_TTY": "ssh", "PAM_RHOST": "10.1.2.3", "PATH": "/usr/bin:/bin"])
        return (result.status == 0, result.stdout + result.stderr)
    }

    /// `GET /v1/authz` with a grant, from inside the bus's network namespace (where the broker listens).
    func authz(_ bus: USBTestbed, _ broker: TestBroker, _ grant: String) throws -> Int? {
        let log = bus.root + "/authz-\(UInt32.random(in: 0 ... .max)).txt"
        let pid = try bus.spawn([
            "/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", broker.etc + "/ca.pem",
            "-H", "Authorization: Bearer \(grant)", broker.url + "/v1/authz",
        ], log: log)
        _ = try bus.wait(pid, timeout: 15)
        return Int((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// `holdfast-broker offboard-status USER --json`, parsed.
    func offboardStatus(_ broker: TestBroker) throws -> [String: Any] {
        let listed = try broker.cli(["offboard-status", Self.user, "--json"])
        return (try? JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    func states(_ status: [String: Any]) -> [String: String] {
        var states: [String: String] = [:]
        for row in status["devices"] as? [[String: Any]] ?? [] {
            if let device = row["device"] as? String { states[device] = row["state"] as? String }
        }
        return states
    }

    @Test func anOffboardedUserLosesGrantsExceptionsAndLoginsOnEveryDevice() async throws {
        let jit = JustInTimeUSBTests()
        let (bus, first, broker, firstID) = try await jit.running()
        let second = try EnforcingAgent(bus: bus, extra: TestBroker.agentSection, usb: false)
        try second.start()
        let secondID = try await second.enroll(broker)
        let third = try EnforcingAgent(bus: bus, extra: TestBroker.agentSection, usb: false)
        try third.start()
        let thirdID = try await third.enroll(broker)

        // The user holds an approved exception on the first device: the stick works.
        let number = try await jit.ask(first, broker, bus, reason: "TICKET-90 copy the audit export")
        #expect(try broker.cli(["approve", String(number), "--for", "2h", "--dir", broker.etc]).status == 0)
        #expect(try await eventually { try jit.authorized(bus) == "1" }, "\(first.logText)")
        // … and an access grant from the second.
        let granted = try second.cli(["grant", "--fresh", "--user", Self.user, "--json"])
        try #require(granted.status == 0, "\(granted.stderr)")
        let grant = try #require((try JSONSerialization.jsonObject(with: Data(granted.stdout.utf8)) as? [String: Any])?["grant"] as? String)
        #expect(try authz(bus, broker, grant) == 200)
        // Logins pass before (compliant: the broker has no compliance policy).
        #expect(try loginCheck(first).allowed)

        // The third is stopped when the offboarding is sent.
        try third.stop()
        let started = Date()
        let offboarded = try broker.cli(["offboard", Self.user, "--reason", "left the company (HR-2231)", "--json", "--dir", broker.etc])
        try #require(offboarded.status == 0, "\(offboarded.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(offboarded.stdout.utf8)) as? [String: Any])?["devices"] as? Int == 3)

        // At once: the grant is refused at /v1/authz.
        #expect(try await eventually { try authz(bus, broker, grant) == 403 })
        // The two running devices apply it: the exception ends, the stick is deauthorized.
        #expect(try await eventually {
            let applied = states(try offboardStatus(broker))
            return applied[firstID] == "applied" && applied[secondID] == "applied"
        }, "\((try? offboardStatus(broker)) ?? [:])")
        let elapsed = Date().timeIntervalSince(started)
        print("offboarding: the two running devices applied it \(String(format: "%.2f", elapsed)) s after the command")
        #expect(try await eventually { try jit.authorized(bus) == "0" }, "\(first.logText)")
        let revoked = try #require(try await jit.event(first, "user.revoked"))
        #expect(details(revoked)["exceptions_ended"] as? Int == 1)
        #expect(details(revoked)["by"] as? String == "alice")
        #expect(try first.events("request.revoked").contains { details($0)["number"] as? Int == number })
        #expect(states(try offboardStatus(broker))[thirdID] == "pending")
        let shown = try first.cli(["status"]).stdout
        #expect(shown.contains("offboarded 1 user denied at login here (nobody;"), "\(shown)")

        // The login check denies the user on the running devices, with who and why.
        for agent in [first, second] {
            let denied = try loginCheck(agent)
            #expect(!denied.allowed)
            #expect(denied.output.contains("Holdfast: login refused: nobody's access was revoked by alice"), "\(denied.output)")
            #expect(denied.output.contains("left the company (HR-2231)"))
        }
        // The name's case does not help (NSS resolves it to the same account), another user is not
        // touched by it (allowed, as before).
        let shouted = try loginCheck(first, "NOBODY")
        #expect(!shouted.allowed, "\(shouted.output)")
        #expect(try loginCheck(first, "daemon").allowed)
        // With holdfastd stopped, the login check reads the copy of the list (root's, 0600).
        #expect(fileMode(second.state + "/offboarded-users") == 0o600)
        try second.stop()
        let down = try loginCheck(second)
        #expect(!down.allowed)
        #expect(down.output.contains("nobody's access was revoked on this computer"), "\(down.output)")
        try second.start()

        // The third applies it when it starts, and denies from then on — across a restart too.
        try third.start()
        #expect(try await eventually { states(try offboardStatus(broker))[thirdID] == "applied" }, "\(third.logText)")
        try third.stop()
        try third.start()
        let deniedThird = try loginCheck(third)
        #expect(!deniedThird.allowed)
        #expect(deniedThird.output.contains("access was revoked"), "\(deniedThird.output)")
        print("offboarding: all three devices applied it \(String(format: "%.2f", Date().timeIntervalSince(started))) s after the command (the third was stopped for part of it)")

        // The user can ask for nothing now.
        let asked = try first.cli(["request", "usb", "--device", "1-2", "--for", "1h", "--reason", "again"], as: Self.user)
        #expect(asked.status != 0)
        #expect(asked.stderr.contains("revoked"), "\(asked.stderr)")

        // A forged reinstatement (a key the agents never pinned) is refused like any command.
        let forgedKey = broker.directory.file("forged.key")
        #expect(try runProcess(Products.path("holdfast-broker"), ["key", "generate", "--out", forgedKey]).status == 0)
        let now = Int(Date().timeIntervalSince1970)
        let sequence = (try offboardStatus(broker)["devices"] as? [[String: Any]])?.first { $0["device"] as? String == firstID }?["seq"] as? Int ?? 0
        let payload = #"{"action":"reinstate","admin":"mallory","device":"\#(firstID)","exp":\#(now + 3_600),"iat":\#(now),"reason":"let me in","seq":\#(sequence + 1),"type":"holdfast.command","user":"\#(Self.user)"}"#
        try broker.insertCommand(device: firstID, sequence: sequence + 1, action: "reinstate", payload: payload, key: forgedKey)
        let forged = try #require(try await jit.event(first, "lockdown.command_refused") { details($0)["reason"] as? String == "bad-signature" }, "\(first.logText)")
        #expect(details(forged)["seq"] as? Int == sequence + 1)
        #expect(!(try loginCheck(first).allowed))
        #expect(try first.events("user.reinstated").isEmpty)

        // Reinstated (signed, recorded): logins pass again on every device.
        let reinstated = try broker.cli(["reinstate", Self.user, "--reason", "rehired (HR-2290)", "--dir", broker.etc])
        #expect(reinstated.status == 0, "\(reinstated.stderr)")
        for agent in [first, second, third] {
            #expect(try await eventually { try loginCheck(agent).allowed }, "\((try? loginCheck(agent).output) ?? "")")
        }
        let history = try offboardStatus(broker)["history"] as? [[String: Any]] ?? []
        #expect(history.map { $0["action"] as? String } == ["offboard", "reinstate"])
    }
}
