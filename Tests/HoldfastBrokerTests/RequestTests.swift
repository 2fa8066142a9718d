import Foundation
import HoldfastBroker
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport
import Testing

/// Requests on the broker in process over real SQLite: kept once per id, limited per device,
/// decided once, and each decision a signed command in the device's sequence.
extension BrokerTests {
    static func submission(_ id: String, pages: Int64 = 10) -> AccessRequestSubmission {
        AccessRequestSubmission(id: id, match: .print(queue: "office", pages: pages), user: "alice", uid: 1000, seconds: 3_600, reason: "month end", created: 1_900_000_000)
    }

    func submit(_ rig: Rig, _ device: String, _ key: SigningKey, _ request: AccessRequestSubmission) throws -> HTTPResponse {
        rig.call(try rig.signed("POST", "/v1/requests", device: device, key: key, body: Array(request.body.compactText.utf8)))
    }

    @Test func aRequestIsKeptOnceLimitedAndDecidedOnceBySignedCommands() throws {
        let rig = try Rig()
        let key = try SigningKey.generate()
        let device = try rig.enrolledDevice(key)
        let first = try submit(rig, device, key, Self.submission("rq-0000000000000001"))
        #expect(first.status == 200)
        let number = try #require(json(first)["number"]?.intValue)
        // Sent again after a lost answer: the same number, one row.
        #expect(json(try submit(rig, device, key, Self.submission("rq-0000000000000001")))["number"]?.intValue == number)
        #expect(try rig.storage.requests(statuses: nil, device: device, limit: 10).count == 1)
        // A malformed one is refused with the reason.
        var bad = Self.submission("rq-0000000000000002")
        bad.seconds = 0
        #expect(try submit(rig, device, key, bad).status == 400)

        // Approved once: a grant in the device's sequence, until now + 1 h, signed with the broker's key.
        let approved = try Broker.decideRequest(storage: rig.storage, key: rig.signing, number: number, decision: .approve(seconds: nil), note: "ok", admin: "bob", at: rig.now)
        #expect(approved.status == "approved")
        #expect(approved.until == rig.now + 3_600)
        let command = try #require(try rig.storage.commands(device: device, after: 0, limit: 10).first)
        #expect(command.action == "grant")
        #expect(command.expiresAt == rig.now + 3_600)
        let verified = try JWS.verify(command.document, keys: VerifyingKeySet([rig.signing.publicKey]))
        let payload = try RemoteCommand.parse(verified.payload)
        #expect(payload.exception?.match == .print(queue: "office", pages: 10))
        #expect(payload.exception?.user == "alice")
        #expect(payload.admin == "bob")
        // Not twice, not denied after; revoked once.
        #expect(throws: ComplianceError.self) { try Broker.decideRequest(storage: rig.storage, key: rig.signing, number: number, decision: .approve(seconds: nil), note: "again", admin: "carol", at: rig.now) }
        #expect(throws: ComplianceError.self) { try Broker.decideRequest(storage: rig.storage, key: rig.signing, number: number, decision: .deny, note: "no", admin: "carol", at: rig.now) }
        let revoked = try Broker.decideRequest(storage: rig.storage, key: rig.signing, number: number, decision: .revoke, note: "done early", admin: "carol", at: rig.now)
        #expect(revoked.status == "revoked")
        #expect(revoked.decidedBy == "bob")
        #expect(revoked.revokedBy == "carol")
        #expect(try rig.storage.commands(device: device, after: 0, limit: 10).map(\.action) == ["grant", "revoke"])

        // Twenty waiting at most per device.
        for index in 0..<Broker.pendingRequestLimit {
            #expect(try submit(rig, device, key, Self.submission(String(format: "rq-%016x", 100 + index))).status == 200)
        }
        #expect(try submit(rig, device, key, Self.submission("rq-00000000000000ff")).status == 429)
        // A stale request is not approved.
        let stale = try #require(try rig.storage.requests(statuses: ["pending"], device: device, limit: 1).first)
        #expect(throws: ComplianceError.self) {
            try Broker.decideRequest(storage: rig.storage, key: rig.signing, number: stale.number, decision: .approve(seconds: nil), note: "late", admin: "bob", at: rig.now + 8 * 86_400)
        }
    }
}
