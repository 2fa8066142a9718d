import Foundation
import HoldfastBroker
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport
import Testing

/// Offboarding on the broker in process over real SQLite: one signed command per enrolled device
/// in its sequence, in one transaction; grants carrying the user refused at /v1/authz, no grant
/// at attestation, no requests; a device enrolled later gets the command too; reinstated once.
extension BrokerTests {
    /// Polls `condition` for up to 5 s (an outcome, not a speed).
    func soon(_ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return try condition()
    }

    @Test func anOffboardingReachesEveryDeviceAndRefusesTheUsersGrants() throws {
        let rig = try Rig()
        let keys = try (0..<3).map { _ in try SigningKey.generate() }
        let devices = try keys.map { try rig.enrolledDevice($0) }
        // A lockdown queued before: the offboarding takes the next sequence.
        _ = try Broker.queueCommand(storage: rig.storage, key: rig.signing, device: devices[0], action: .lockdown, scopes: [.usb], reason: "incident", admin: "bob", lifetime: 3_600, at: rig.now)
        let nonce = try rig.challenge(device: devices[1], key: keys[1])
        let attested = try rig.attest(device: devices[1], key: keys[1], report: try rig.report(device: devices[1], nonce: nonce, key: keys[1]), user: "maria")
        let grant = try #require(json(attested)["grant"]?.stringValue)
        #expect(rig.authz(grant).status == 200)
        // A pending request and an approved one of hers.
        #expect(try submit(rig, devices[2], keys[2], Self.submission("rq-0000000000000001")).status == 200)
        var approved = Self.submission("rq-0000000000000002")
        approved.user = "maria"
        var pending = Self.submission("rq-0000000000000003")
        pending.user = "maria"
        let approvedNumber = try #require(json(try submit(rig, devices[2], keys[2], approved))["number"]?.intValue)
        let pendingNumber = try #require(json(try submit(rig, devices[2], keys[2], pending))["number"]?.intValue)
        _ = try Broker.decideRequest(storage: rig.storage, key: rig.signing, number: approvedNumber, decision: .approve(seconds: nil), note: "ok", admin: "bob", at: rig.now)

        let result = try Broker.setOffboarded(storage: rig.storage, key: rig.signing, user: "maria", offboard: true, reason: "left (HR-1)", admin: "carol", at: rig.now)
        #expect(result.devices == 3)
        // One signed offboard per device, next in its sequence, naming the user.
        for device in devices {
            let command = try #require(try rig.storage.commands(device: device, after: 0, limit: 10).last)
            #expect(command.action == "offboard")
            #expect(command.subject == "maria")
            #expect(command.sequence == (device == devices[0] ? 2 : device == devices[2] ? 2 : 1))
            let payload = try RemoteCommand.parse(try JWS.verify(command.document, keys: VerifyingKeySet([rig.signing.publicKey])).payload)
            #expect(payload.action == .offboard)
            #expect(payload.user == "maria")
            #expect(payload.device == device)
            #expect(payload.admin == "carol")
        }
        // Her grant is refused; attesting for her gets no grant; she cannot ask.
        #expect(soon { rig.authz(grant).status == 403 })
        #expect(json(rig.authz(grant))["error"]?.stringValue == "user-offboarded")
        let again = try rig.attest(device: devices[1], key: keys[1], report: try rig.report(device: devices[1], nonce: try rig.challenge(device: devices[1], key: keys[1]), key: keys[1]), user: "maria")
        #expect(again.status == 403)
        #expect(json(again)["error"]?.stringValue == "user-offboarded")
        #expect(json(again)["message"]?.stringValue?.contains("left (HR-1)") == true)
        // The agent tells this refusal apart by these words (an exempt user's check asks for it).
        #expect(json(again)["message"]?.stringValue?.contains("(offboarded)") == true)
        // The name's case does not matter (a directory's names are not case-sensitive).
        let shouted = try rig.attest(device: devices[1], key: keys[1], report: try rig.report(device: devices[1], nonce: try rig.challenge(device: devices[1], key: keys[1]), key: keys[1]), user: "MARIA")
        #expect(shouted.status == 403)
        // The device's own attestation is not recorded for her refusal: it stays compliant.
        #expect(try rig.storage.latestAttestation(device: devices[1])?.user == "maria")
        #expect(try rig.storage.latestAttestation(device: devices[1])?.decision == "compliant")
        var later = Self.submission("rq-0000000000000004")
        later.user = "maria"
        #expect(try submit(rig, devices[2], keys[2], later).status == 403)
        // Another user's grant on the same device still works.
        let other = try rig.attest(device: devices[1], key: keys[1], report: try rig.report(device: devices[1], nonce: try rig.challenge(device: devices[1], key: keys[1]), key: keys[1]), user: "ana")
        #expect(rig.authz(try #require(json(other)["grant"]?.stringValue)).status == 200)
        // Her requests: the pending one denied, the approval revoked, both with the reason.
        #expect(try rig.storage.request(number: pendingNumber)?.status == "denied")
        #expect(try rig.storage.request(number: approvedNumber)?.status == "revoked")
        #expect(try rig.storage.request(number: approvedNumber)?.revokeNote?.contains("left (HR-1)") == true)
        for spelling in ["maria", "MARIA", "Maria"] {
            #expect(throws: ComplianceError.self) {
                try Broker.setOffboarded(storage: rig.storage, key: rig.signing, user: spelling, offboard: true, reason: "twice", admin: "carol", at: rig.now)
            }
        }

        // A device that refused it (an agent too old for the action) gets it again with --resend;
        // the others, which have it on its way, do not.
        let refused = try #require(try rig.storage.commands(device: devices[2], after: 0, limit: 10).last)
        #expect(try rig.storage.acknowledgeCommand(device: devices[2], sequence: refused.sequence, status: "refused", detail: "unknown action", at: rig.now))
        // Typed in another case, it is still maria's: the command names her as first recorded.
        let resent = try Broker.resend(storage: rig.storage, key: rig.signing, user: "MARIA", offboard: true, admin: "dave", at: rig.now + 5)
        #expect(resent.devices == 1)
        #expect(resent.record.user == "maria")
        #expect(resent.record.at == rig.now + 5)
        let sentAgain = try #require(try rig.storage.commands(device: devices[2], after: refused.sequence, limit: 10).first)
        #expect(sentAgain.action == "offboard")
        #expect(try RemoteCommand.parse(try JWS.verify(sentAgain.document, keys: VerifyingKeySet([rig.signing.publicKey])).payload).user == "maria")
        #expect(throws: ComplianceError.self) { try Broker.resend(storage: rig.storage, key: rig.signing, user: "maria", offboard: false, admin: "carol", at: rig.now) }
        #expect(try Broker.resend(storage: rig.storage, key: rig.signing, user: "maria", offboard: true, admin: "carol", at: rig.now).devices == 0)

        // A device enrolled afterwards gets it at enrollment, once.
        let newKey = try SigningKey.generate()
        let newDevice = try rig.enrolledDevice(newKey)
        #expect(try rig.storage.commands(device: newDevice, after: 0, limit: 10).map(\.action) == ["offboard"])
        let status = try Broker.offboardingStatus(storage: rig.storage, user: "maria")
        #expect(status["state"]?.stringValue == "offboarded")
        #expect(status["counts"]?["pending"]?.intValue == 4)

        // Reinstated: a signed reinstate to every device; her new grants work again.
        let reinstated = try Broker.setOffboarded(storage: rig.storage, key: rig.signing, user: "maria", offboard: false, reason: "rehired", admin: "carol", at: rig.now)
        #expect(reinstated.devices == 4)
        #expect(try rig.storage.commands(device: newDevice, after: 0, limit: 10).map(\.action) == ["offboard", "reinstate"])
        var fresh: String?
        #expect(try soon {
            let back = try rig.attest(device: devices[1], key: keys[1], report: try rig.report(device: devices[1], nonce: try rig.challenge(device: devices[1], key: keys[1]), key: keys[1]), user: "maria")
            fresh = json(back)["grant"]?.stringValue
            return fresh.map { rig.authz($0).status == 200 } ?? false
        })
        #expect(try rig.storage.offboardingHistory(user: "maria").map(\.action) == ["offboard", "reinstate"])
        #expect(try rig.storage.offboardedUsers().isEmpty)
    }

    @Test func rootAndMalformedNamesAreNotOffboarded() throws {
        let rig = try Rig()
        for user in ["root", "ROOT", "Root", "", "-x", "a/b", "bad\nname"] {
            #expect(throws: ComplianceError.self) {
                try Broker.setOffboarded(storage: rig.storage, key: rig.signing, user: user, offboard: true, reason: "no", admin: "carol", at: rig.now)
            }
        }
        #expect(throws: ComplianceError.self) {
            try Broker.setOffboarded(storage: rig.storage, key: rig.signing, user: "maria", offboard: false, reason: "never offboarded", admin: "carol", at: rig.now)
        }
        #expect(throws: ComplianceError.self) {
            try Broker.setOffboarded(storage: rig.storage, key: rig.signing, user: "maria", offboard: true, reason: "", admin: "carol", at: rig.now)
        }
    }
}

/// The access review over real SQLite: what is beyond the default, who granted it, when it ends,
/// when events last showed it used, and what to remove.
extension BrokerTests {
    func event(_ device: String, _ kind: String, at seconds: Int64, details: JSONValue) -> StoredEvent {
        let body: JSONValue = .object(["holdfast": .object(["kind": .string(kind), "details": details])])
        return StoredEvent(device: device, uuid: UUID().uuidString.lowercased(), timeMilliseconds: seconds * 1_000, kind: kind, severity: 1, body: body.compactText)
    }

    @Test func theAccessReviewListsEveryPrivilegeWithItsEndAndLastUse() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let now = rig.now
        // An approved print exception, used since.
        let number = try #require(json(try submit(rig, device, key, Self.submission("rq-00000000000000a1")))["number"]?.intValue)
        _ = try Broker.decideRequest(storage: rig.storage, key: rig.signing, number: number, decision: .approve(seconds: 7_200), note: "month end", admin: "bob", at: now - 60)
        // The agent policy: a USB allow rule (used), one never used, a block rule (not a privilege), local exceptions, a printer.
        // Written as docs/usb-policy.md writes rules, signed as `holdfast-broker agent-policy set` signs it.
        let policy = #"{"version": 3, "usb": {"max_exception": "4h", "rules": [{"id": "scanners", "match": {"vendor": "04a9"}, "action": "allow"}, {"id": "old-dock", "match": {"vendor": "17ef", "product": "a396"}, "action": "allow-interfaces", "interfaces": ["03:*:*"]}, {"id": "no-phones", "match": {"class": ["06:*:*"]}, "action": "block"}]}, "print": {"approved": [{"id": "floor-7", "name": "floor7-*", "users": ["@print-desk"]}]}}"#
        let signed = try Broker.signAgentPolicy(Array(policy.utf8), version: 1, at: now - 90 * 86_400, key: rig.signing)
        #expect(try rig.storage.addDocument(VersionedDocument(kind: .agentPolicy, version: 1, document: signed, setBy: "carol", setAt: now - 90 * 86_400)))
        _ = try rig.storage.storeEvents([
            event(device, "usb.decision", at: now - 86_400, details: .object(["rule": "scanners", "verdict": "allow"])),
            event(device, "print.job", at: now - 30, details: .object(["rule": "floor-7", "exception": .object(["id": "rq-00000000000000a1"])])),
            // A local exception root granted, in force; another one revoked since.
            event(device, "usb.exception_granted", at: now - 600, details: .object([
                "id": "ex-1", "target": "1-2", "vendor": "0781", "product": "5567", "until": .string(Date(timeIntervalSince1970: Double(now + 3_600)).formatted(.iso8601)),
                "reason": "TICKET-4711", "granted_by": "uid 0 (root)",
            ])),
            event(device, "usb.exception_granted", at: now - 500, details: .object([
                "id": "ex-2", "target": "1-3", "vendor": "0781", "product": "5567", "until": .string(Date(timeIntervalSince1970: Double(now + 3_600)).formatted(.iso8601)),
                "reason": "done", "granted_by": "uid 0 (root)",
            ])),
            event(device, "usb.exception_revoked", at: now - 400, details: .object(["id": "ex-2"])),
        ], device: device, at: now)

        let review = try Broker.accessReview(storage: rig.storage, now: now, unusedAfter: 30 * 86_400)
        guard case .array(let items)? = review["items"] else { Issue.record("no items"); return }
        let byID = Dictionary(items.compactMap { item in item["id"]?.stringValue.map { ($0, item) } }, uniquingKeysWith: { first, _ in first })
        #expect(Set(byID.keys) == ["#\(number)", "ex-1", "scanners", "old-dock", "usb.max_exception", "floor-7"])
        let exception = try #require(byID["#\(number)"])
        #expect(exception["granted_by"]?.stringValue == "bob")
        #expect(exception["expires"]?.intValue == now - 60 + 7_200)
        #expect(exception["last_used"]?.intValue == now - 30)
        #expect(exception["flag"] == nil)
        #expect(byID["ex-1"]?["kind"]?.stringValue == "local-usb-exception")
        #expect(byID["ex-1"]?["expires"]?.intValue == now + 3_600)
        // Policy rules have no end; the used one is not flagged, the never used one is.
        #expect(byID["scanners"]?["expires"] == .null)
        #expect(byID["scanners"]?["policy_level"]?.boolValue == true)
        #expect(byID["scanners"]?["last_used"]?.intValue == now - 86_400)
        #expect(byID["scanners"]?["flag"] == nil)
        #expect(byID["old-dock"]?["flag"]?.stringValue == "never-used")
        #expect(byID["floor-7"]?["what"]?.stringValue?.contains("@print-desk") == true)
        #expect(byID["scanners"]?["what"]?.stringValue == "USB rule allow vendor=04a9")
        #expect(byID["old-dock"]?["what"]?.stringValue == #"USB rule allow-interfaces vendor=17ef product=a396 interfaces=["03:*:*"]"#)
        // Oldest first: the policy's rules, then the exceptions.
        #expect(items.first?["policy_level"]?.boolValue == true)
        #expect(items.last?["id"]?.stringValue == "#\(number)")
    }
}
