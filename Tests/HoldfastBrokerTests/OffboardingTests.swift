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
    /// Polls `condition` for up to 5 s (the serving broker re-reads the offboarded users every 100 ms).
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
        #expect(json(again)["grant"] == nil)
        #expect(json(again)["denial"]?.stringValue?.contains("user-offboarded") == true)
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
        #expect(throws: ComplianceError.self) {
            try Broker.setOffboarded(storage: rig.storage, key: rig.signing, user: "maria", offboard: true, reason: "twice", admin: "carol", at: rig.now)
        }

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
        for user in ["root", "", "-x", "a/b", "bad\nname"] {
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
