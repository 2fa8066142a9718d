import Foundation
import HoldfastTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Just-in-time USB exceptions end to end (docs/exceptions.md): a real holdfastd on a umockdev
/// bus enrolled with a real broker over HTTPS on loopback. A user asks with `holdfast request
/// usb`, an admin approves with `holdfast-broker approve`, the signed grant comes by the agent's
/// long poll, the stick works, and at the approval's end it is deauthorized again.
@Suite(.serialized, .enabled(if: USBTestbed.available && getuid() == 0, "needs root, umockdev and python3-gi"))
struct JustInTimeUSBTests {
    static let requester = "nobody"

    /// A bus with the stick at 1-2, a broker, and an agent enrolled with it.
    func running() async throws -> (USBTestbed, EnforcingAgent, TestBroker, String) {
        let bus = try USBTestbed()
        try bus.add(USBEnforcementTests.rootHub())
        try bus.add(USBEnforcementTests.devices([("2", USBEnforcementTests.stick)]))
        // The harness has a network namespace of its own: the broker runs in it too, on its
        // loopback (which starts down).
        let up = try bus.spawn(["/usr/sbin/ip", "link", "set", "lo", "up"], log: bus.root + "/ip.log")
        try #require(try bus.wait(up, timeout: 10) == 0)
        let broker = try TestBroker { argv, log in
            let pid = try bus.spawn(argv, log: log)
            return {
                try? bus.signal(pid, SIGTERM)
                _ = try? bus.wait(pid, timeout: 10)
            }
        }
        let agent = try EnforcingAgent(bus: bus, extra: TestBroker.agentSection)
        try agent.start()
        return (bus, agent, broker, try await agent.enroll(broker))
    }

    static let stick = USBEnforcementTests.path("2")

    /// The first journaled event of `kind` matching, waited for (up to 30 s) without holding a thread.
    func event(_ agent: EnforcingAgent, _ kind: String, where matches: ([String: Any]) -> Bool = { _ in true }) async throws -> [String: Any]? {
        var found: [String: Any]?
        _ = try await eventually {
            found = try agent.events(kind).first(where: matches)
            return found != nil
        }
        return found
    }

    func authorized(_ bus: USBTestbed) throws -> String? { try bus.attribute(Self.stick, "authorized") }

    /// `holdfast requests --json` as the requester.
    func mine(_ agent: EnforcingAgent) throws -> [[String: Any]] {
        let listed = try agent.cli(["requests", "--json"], as: Self.requester)
        return ((try? JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any])?["requests"] as? [[String: Any]]) ?? []
    }

    /// The broker's request `number` once its agent has done `status` with it.
    func waitAtBroker(_ broker: TestBroker, _ bus: USBTestbed, number: Int, agentStatus: String) async throws -> [String: Any]? {
        var found: [String: Any]?
        _ = try await eventually {
            found = try broker.requests().first { $0["number"] as? Int == number }
            return (found?["agent"] as? [String: Any])?["status"] as? String == agentStatus
        }
        return found
    }

    /// The user asks; the broker has it as pending: its number.
    func ask(_ agent: EnforcingAgent, _ broker: TestBroker, _ bus: USBTestbed, reason: String) async throws -> Int {
        let asked = try agent.cli(["request", "usb", "--device", "1-2", "--for", "2h", "--reason", reason], as: Self.requester)
        try #require(asked.status == 0, "\(asked.stderr)")
        #expect(asked.stdout.contains("asked for USB 0781:5567 serial 4C530001230512110413 (these descriptors only) for 2h"))
        var number: Int?
        _ = try await eventually {
            number = try broker.requests().first { $0["reason"] as? String == reason && $0["status"] as? String == "pending" }?["number"] as? Int
            return number != nil
        }
        return try #require(number, "the request never reached the broker: \(agent.logText)")
    }

    @Test func requestApproveTheStickWorksThenItsEndDeauthorizesIt() async throws {
        let (bus, agent, broker, device) = try await running()
        #expect(try await eventually { try authorized(bus) == "0" })

        let number = try await ask(agent, broker, bus, reason: "TICKET-81 vendor firmware update")
        let pending = try #require(try broker.requests().first { $0["number"] as? Int == number })
        #expect(pending["device"] as? String == device)
        #expect(pending["user"] as? String == Self.requester)
        #expect(pending["kind"] as? String == "usb")
        let match = pending["match"] as? [String: Any]
        #expect(match?["vendor"] as? String == "0781")
        #expect(match?["serial"] as? String == "4C530001230512110413")
        #expect((match?["hash"] as? String)?.hasPrefix("sha256:") == true)
        // The approver sees what the agent saw of the device.
        #expect((pending["label"] as? String)?.contains("SanDisk Cruzer Blade") == true)
        #expect((pending["label"] as? String)?.hasPrefix("interfaces: mass storage") == true)
        #expect(try mine(agent).first?["status"] as? String == "pending")
        #expect(try broker.cli(["requests"]).stdout.contains("#\(number)  \(device)  nobody"))

        // Approved for less than asked: the stick is allowed until then, and works.
        let approved = try broker.cli(["approve", String(number), "--for", "8s", "--note", "ok for the firmware", "--dir", broker.etc])
        #expect(approved.status == 0, "\(approved.stderr)")
        #expect(try await eventually { try bus.state().nodes[Self.stick + "/1-2:1.0"]?.bound == true }, "\(agent.logText)")
        #expect(try authorized(bus) == "1")
        let shown = try #require(try mine(agent).first)
        #expect(shown["status"] as? String == "approved")
        #expect(shown["approver"] as? String == "alice")
        #expect(shown["note"] as? String == "ok for the firmware")
        let atBroker = try await waitAtBroker(broker, bus, number: number, agentStatus: "applied")
        #expect(atBroker?["status"] as? String == "approved")
        let granted = try #require(try await event(agent, "request.approved"))
        #expect(details(granted)["requester"] as? String == Self.requester)
        #expect(details(granted)["approver"] as? String == "alice")
        #expect(details(granted)["reason"] as? String == "TICKET-81 vendor firmware update")

        // At the approval's end: deauthorized again, still plugged in; said with who and why.
        #expect(try await eventually { try authorized(bus) == "0" })
        let ended = try #require(try await event(agent, "usb.exception_expired"))
        #expect((details(ended)["granted_by"] as? String)?.hasPrefix("alice (broker, request #\(number))") == true)
        let expired = try #require(try await event(agent, "request.expired"))
        #expect(details(expired)["approver"] as? String == "alice")
        #expect(try mine(agent).first?["status"] as? String == "expired")
        #expect(try broker.requests().first { $0["number"] as? Int == number }?["status"] as? String == "expired")

        // Denied: nothing changes but what the requester sees.
        let second = try await ask(agent, broker, bus, reason: "TICKET-82 copy the photos")
        #expect(try broker.cli(["deny", String(second), "--note", "use the file share", "--dir", broker.etc]).status == 0)
        _ = try await waitAtBroker(broker, bus, number: second, agentStatus: "applied")
        let denied = try #require(try mine(agent).first { $0["number"] as? Int == second })
        #expect(denied["status"] as? String == "denied")
        #expect(denied["note"] as? String == "use the file share")
        #expect(try authorized(bus) == "0")
        #expect(details(try await event(agent, "request.denied"))["approver"] as? String == "alice")

        // Someone else's requests are not shown to this user; root sees them all.
        #expect(try agent.cli(["requests", "--json"]).stdout.contains("TICKET-82"))
    }

    @Test func anApprovalPastItsEndAndAForgedOneAreNeverApplied() async throws {
        let (bus, agent, broker, device) = try await running()
        #expect(try await eventually { try authorized(bus) == "0" })

        // Approved while the agent is stopped, for 1 s: it has ended when the agent hears of it.
        let number = try await ask(agent, broker, bus, reason: "TICKET-90 late one")
        try agent.stop()
        #expect(try broker.cli(["approve", String(number), "--for", "1s", "--dir", broker.etc]).status == 0)
        try await Task.sleep(for: .seconds(3))
        try agent.start()
        let refused = try #require(try await waitAtBroker(broker, bus, number: number, agentStatus: "refused"), "\(agent.logText)")
        #expect(((refused["agent"] as? [String: Any])?["detail"] as? String)?.hasPrefix("expired") == true)
        #expect(refused["status"] as? String == "not-applied")
        #expect(try broker.cli(["requests"]).stdout.contains("NOT APPLIED on the device"))
        // Said with the requester and the approver; the requester sees it was not applied.
        let late = try #require(try await event(agent, "exception.refused"))
        #expect(details(late)["reason"] as? String == "expired")
        #expect(details(late)["approver"] as? String == "alice")
        #expect(details(late)["requester"] as? String == Self.requester)
        #expect(try mine(agent).first?["status"] as? String == "refused")
        #expect(try authorized(bus) == "0")
        #expect(try agent.events("usb.exception_granted").isEmpty)

        // A grant signed with a key the agent never pinned, slipped into the broker's store.
        let forgedKey = broker.directory.file("forged.key")
        #expect(try runProcess(Products.path("holdfast-broker"), ["key", "generate", "--out", forgedKey]).status == 0)
        let now = Int(Date().timeIntervalSince1970)
        let payload = #"{"action":"grant","admin":"mallory","device":"\#(device)","exception":{"asked":"let me","kind":"usb","number":99,"product":"5567","request":"rq-00000000000000aa","uid":65534,"until":\#(now + 3_600),"user":"nobody","vendor":"0781"},"exp":\#(now + 3_600),"iat":\#(now),"reason":"approved","seq":2,"type":"holdfast.command"}"#
        try broker.insertCommand(device: device, sequence: 2, action: "grant", payload: payload, key: forgedKey)
        let forged = try #require(try await event(agent, "lockdown.command_refused") { details($0)["reason"] as? String == "bad-signature" }, "\(agent.logText)")
        #expect(details(forged)["seq"] as? Int == 2)
        try await Task.sleep(for: .seconds(1))
        #expect(try authorized(bus) == "0")
        #expect(try agent.events("usb.exception_granted").isEmpty)
    }
}
