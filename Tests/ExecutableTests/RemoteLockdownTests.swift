import Foundation
import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

/// Remote lockdown over real HTTPS: `holdfast-broker lockdown/release` queue a signed command, a
/// real holdfastd picks it up by long poll, applies it and acknowledges; forged, replayed,
/// expired and other-device commands slipped into the broker's store are refused and journaled.
extension BrokerServeTests {
    static func lockdownStatus(_ rig: Rig) -> [String: Any] {
        guard let result = try? rig.holdfast(["lockdown", "status", "--json"]), result.status == 0 else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    static func locked(_ rig: Rig) -> Set<String> { Set(lockdownStatus(rig)["locked"] as? [String] ?? []) }

    static func deviceView(_ rig: Rig, _ device: String) -> [String: Any] {
        guard let result = try? rig.brokerCLI(["device", device, "--json"]), result.status == 0 else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    static func journalEvents(_ rig: Rig) -> [[String: Any]] {
        guard let result = try? runProcess(BrokerServeTests.holdfast, ["journal", "tail", "--lines", "1000", "--json", "--state-dir", rig.directory.file("state")]) else { return [] }
        return result.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func refusalReasons(_ rig: Rig) -> [String] {
        journalEvents(rig).filter { ($0["holdfast"] as? [String: Any])?["kind"] as? String == "lockdown.command_refused" }
            .compactMap { (($0["holdfast"] as? [String: Any])?["details"] as? [String: Any])?["reason"] as? String }
    }

    @Test func aBrokerLockdownReachesTheAgentIsShownBothWaysAndIsReleased() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()

        let queued = try rig.brokerCLI(["lockdown", device, "--scope", "print,usb", "--reason", "incident 7: bulk copy", "--dir", rig.etc])
        #expect(queued.status == 0, "\(queued.stderr)")
        #expect(queued.stdout.contains("queued for \(device) as command 1 by alice"))
        #expect(await BrokerServeTests.poll { Self.locked(rig) == ["print", "usb"] }, "\(rig.agentProcess?.output ?? "")")
        let usb = (Self.lockdownStatus(rig)["scopes"] as? [String: Any])?["usb"] as? [String: Any]
        #expect(usb?["source"] as? String == "broker")
        #expect(usb?["by"] as? String == "alice (broker command 1)")
        #expect(usb?["reason"] as? String == "incident 7: bulk copy")
        // The user is told why in `holdfast status`.
        #expect(try rig.holdfast(["status"]).stdout.contains("incident 7: bulk copy"))

        // The broker shows what was asked, and what the agent applied and when.
        #expect(await BrokerServeTests.poll {
            let lockdown = Self.deviceView(rig, device)["lockdown"] as? [String: Any]
            let requested = (lockdown?["requested"] as? [String: Any])?["usb"] as? [String: Any]
            let applied = (lockdown?["applied"] as? [String: Any])?["locked"] as? [String]
            return requested?["status"] as? String == "applied" && requested?["by"] as? String == "alice" && Set(applied ?? []) == ["print", "usb"]
        }, "\(Self.deviceView(rig, device))")
        let shown = try rig.brokerCLI(["device", device]).stdout
        #expect(shown.contains("lockdown by command 1 from alice"))

        // Release one scope, then the rest (no --scope: every scope).
        #expect(try rig.brokerCLI(["release", device, "--scope", "usb", "--reason", "investigated", "--dir", rig.etc]).status == 0)
        #expect(await BrokerServeTests.poll { Self.locked(rig) == ["print"] })
        #expect(try rig.brokerCLI(["release", device, "--reason", "closed", "--dir", rig.etc]).status == 0)
        #expect(await BrokerServeTests.poll { Self.locked(rig).isEmpty })
        #expect((Self.lockdownStatus(rig)["last_command_seq"] as? Int) == 3)

        // The lockdown survives a restart of holdfastd.
        #expect(try rig.brokerCLI(["lockdown", device, "--scope", "usb", "--reason", "again", "--dir", rig.etc]).status == 0)
        #expect(await BrokerServeTests.poll { Self.locked(rig) == ["usb"] })
        rig.agentProcess?.stop()
        try await rig.startAgent()
        #expect(Self.locked(rig) == ["usb"])
        #expect(Self.refusalReasons(rig).isEmpty)
    }

    @Test func forgedReplayedExpiredAndOtherDeviceCommandsAreRefusedCountedAndNeverApplied() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        #expect(try rig.brokerCLI(["lockdown", device, "--scope", "usb", "--reason", "incident 9", "--dir", rig.etc]).status == 0)
        #expect(await BrokerServeTests.poll { Self.locked(rig) == ["usb"] })

        // Four releases slipped into the broker's store under sequences 2…5, each wrong one way.
        let forgedKey = rig.directory.file("forged.key")
        #expect(try runProcess(BrokerServeTests.broker, ["key", "generate", "--out", forgedKey]).status == 0)
        let now = Int(Date().timeIntervalSince1970)
        func payload(device: String = device, seq: Int, iat: Int = now, exp: Int = now + 3_600) -> String {
            #"{"action":"release","admin":"mallory","device":"\#(device)","exp":\#(exp),"iat":\#(iat),"reason":"let me out","scopes":["usb"],"seq":\#(seq),"type":"holdfast.command"}"#
        }
        let rows: [(seq: Int, key: String, payload: String)] = [
            (2, forgedKey, payload(seq: 2)),                                        // not the broker's key
            (3, rig.etc + "/signing.key", payload(seq: 1)),                         // the broker's, an old sequence
            (4, rig.etc + "/signing.key", payload(seq: 4, iat: now - 7_200, exp: now - 3_600)), // expired
            (5, rig.etc + "/signing.key", payload(device: "hf-0000000000000000", seq: 5)),       // another device's
        ]
        for row in rows {
            try row.payload.writeReplacing(toFile: rig.directory.file("command.json"))
            let signed = try runProcess(BrokerServeTests.broker, ["sign", "--key", row.key, "--typ", "holdfast-command+jws", rig.directory.file("command.json")])
            #expect(signed.status == 0, "\(signed.stderr)")
            let document = signed.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let inserted = try runProcess("/usr/bin/sqlite3", ["-cmd", ".timeout 10000",
                rig.state + "/broker.sqlite",
                "INSERT INTO commands (device, seq, action, scopes, reason, admin, issued_at, expires_at, document) VALUES ('\(device)', \(row.seq), 'release', 'usb', 'let me out', 'mallory', \(now), \(now + 3_600), '\(document)')",
            ])
            #expect(inserted.status == 0, "\(inserted.stderr)")
        }
        #expect(await BrokerServeTests.poll { Self.refusalReasons(rig).count == 4 }, "\(Self.refusalReasons(rig)) \(rig.agentProcess?.output ?? "")")
        #expect(Self.refusalReasons(rig).sorted() == ["bad-signature", "expired", "other-device", "replayed"])
        #expect(Self.locked(rig) == ["usb"])
        // Each refusal is acknowledged to the broker with its reason.
        #expect(await BrokerServeTests.poll {
            let rows = try? runProcess("/usr/bin/sqlite3", ["-cmd", ".timeout 10000", rig.state + "/broker.sqlite", "SELECT seq || ':' || status || ':' || CASE WHEN instr(detail, ':') > 0 THEN substr(detail, 1, instr(detail, ':') - 1) ELSE detail END FROM commands ORDER BY seq"])
            return rows?.stdout.split(separator: "\n") == ["1:applied:changed usb", "2:refused:bad-signature", "3:refused:replayed", "4:refused:expired", "5:refused:other-device"]
        }, "\((try? runProcess("/usr/bin/sqlite3", ["-cmd", ".timeout 10000", rig.state + "/broker.sqlite", "SELECT seq, status, detail FROM commands"]).stdout) ?? "")")

        // The agent goes on with the next genuine command, and journals no refusal twice.
        #expect(try rig.brokerCLI(["release", device, "--reason", "investigated", "--dir", rig.etc]).status == 0)
        #expect(await BrokerServeTests.poll { Self.locked(rig).isEmpty })
        #expect((Self.lockdownStatus(rig)["last_command_seq"] as? Int) == 6)
        #expect(Self.refusalReasons(rig).count == 4)
    }
}

extension BrokerServeTests {
    /// Break-glass with the broker gone: the admin's CLI makes the code from the broker's state,
    /// the agent checks it offline against the secret from enrollment; once only; reported when
    /// the broker is back.
    @Test func aBreakGlassCodeLiftsTheLockdownOfflineOnceAndIsReported() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (device, _) = try await rig.enroll()
        #expect(try rig.brokerCLI(["lockdown", device, "--scope", "usb,print", "--reason", "incident 11", "--dir", rig.etc]).status == 0)
        #expect(await BrokerServeTests.poll { Self.locked(rig) == ["print", "usb"] })

        rig.brokerProcess?.stop()
        let issued = try rig.brokerCLI(["breakglass", device, "--for", "1h", "--scope", "usb", "--reason", "user on the phone, ticket 88", "--json"])
        #expect(issued.status == 0, "\(issued.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(issued.stdout.utf8)) as? [String: Any])
        let code = try #require(object["code"] as? String)
        #expect(code.count == 17)

        // Read aloud in groups, typed as four words: the same code — by the user at the desk,
        // who is not root (nobody here).
        let unlocked = try runProcess("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", BrokerServeTests.holdfast, "--socket", rig.socket, "unlock"]
            + code.split(separator: "-").map(String.init))
        #expect(unlocked.status == 0, "\(unlocked.stderr)")
        #expect(unlocked.stdout.contains("lifted usb until"))
        #expect(Self.journalEvents(rig).contains { ($0["message"] as? String)?.hasPrefix("break-glass by uid 65534 (nobody): usb lifted until") == true })
        let usb = (Self.lockdownStatus(rig)["scopes"] as? [String: Any])?["usb"] as? [String: Any]
        #expect(usb?["suspended_until"] != nil)
        #expect(Self.locked(rig) == ["print", "usb"], "the lockdown stays recorded; usb is lifted for the window")
        // Once.
        let again = try rig.holdfast(["unlock", code])
        #expect(again.status != 0)
        #expect(again.stderr.contains("break-glass refused (used)"), "\(again.stderr)")

        // Back online, the broker hears of it: the device view marks the code used.
        try await rig.startBroker()
        #expect(await BrokerServeTests.poll {
            let view = Self.deviceView(rig, device)["lockdown"] as? [String: Any]
            return ((view?["breakglass"] as? [[String: Any]])?.first?["used"] as? NSNumber)?.boolValue == true
                && ((view?["applied"] as? [String: Any])?["suspended_until"] as? [String: Any])?["usb"] != nil
        }, "\(Self.deviceView(rig, device))")
    }
}

extension BrokerServeTests {
    /// Enrolled again (a new device id, whose commands the broker numbers from 1): the first
    /// command for the new id is applied, not taken for an old sequence.
    @Test func aDeviceEnrolledAgainGetsItsFirstCommands() async throws {
        let rig = try await Rig()
        try await rig.startAgent()
        let (first, _) = try await rig.enroll()
        for (verb, scope) in [("lockdown", "print"), ("release", "print"), ("lockdown", "usb")] {
            #expect(try rig.brokerCLI([verb, first, "--scope", scope, "--reason", "old device", "--dir", rig.etc]).status == 0)
        }
        #expect(await BrokerServeTests.poll { (Self.lockdownStatus(rig)["last_command_seq"] as? Int) == 3 })
        #expect(try rig.brokerCLI(["release", first, "--reason", "before the re-enrollment", "--dir", rig.etc]).status == 0)
        #expect(await BrokerServeTests.poll { Self.locked(rig).isEmpty })
        #expect(try rig.brokerCLI(["device", "remove", first]).status == 0)
        unlink(rig.directory.file("state/enrollment.json"))
        let (second, _) = try await rig.enroll()
        #expect(second != first)
        let queued = try rig.brokerCLI(["lockdown", second, "--scope", "print", "--reason", "new device", "--dir", rig.etc])
        #expect(queued.stdout.contains("as command 1 by alice"))
        #expect(await BrokerServeTests.poll { Self.locked(rig) == ["print"] }, "\(Self.lockdownStatus(rig))")
        #expect(Self.refusalReasons(rig).isEmpty)
    }
}
