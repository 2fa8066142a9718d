import Dispatch
import Foundation
import HoldfastStore
import HoldfastTestSupport
import Synchronization
import Testing

@Suite struct BrokerStorageTests {
    @Test func adminsAreNamedOnceAndFoundByTheirTokenHash() throws {
        let directory = TemporaryDirectory()
        let storage = try SQLiteBrokerStorage(directory: directory.file("broker"))
        #expect(fileMode(directory.file("broker")) == 0o700)
        #expect(fileMode(storage.path) == 0o600)
        #expect(try storage.addAdmin(name: "alice", tokenHash: [1, 2, 3], at: 10))
        #expect(try !storage.addAdmin(name: "alice", tokenHash: [9], at: 11))
        #expect(try storage.admin(tokenHash: [1, 2, 3]) == "alice")
        #expect(try storage.admin(tokenHash: [1, 2]) == nil)
        try storage.recordAdminAction(admin: "alice", verb: "token create", detail: "label=desk-4", at: 12)
    }

    @Test func aTokenIsSpentOnceAndOnlyBeforeItExpires() throws {
        let directory = TemporaryDirectory()
        let storage = try SQLiteBrokerStorage(directory: directory.path + "/b")
        try storage.addEnrollmentToken(id: "t1", tokenHash: [1], label: "desk", expires: 100, createdBy: "alice", at: 0)
        try storage.addEnrollmentToken(id: "t2", tokenHash: [2], label: "desk", expires: 100, createdBy: "alice", at: 0)
        #expect(try storage.consumeEnrollmentToken(tokenHash: [1], device: "d1", at: 50) == .accepted)
        #expect(try storage.consumeEnrollmentToken(tokenHash: [1], device: "d2", at: 51) == .used)
        #expect(try storage.consumeEnrollmentToken(tokenHash: [2], device: "d2", at: 100) == .expired)
        #expect(try storage.consumeEnrollmentToken(tokenHash: [3], device: "d2", at: 1) == .unknown)
    }

    /// Two broker processes over one database, racing for the same tokens: one winner each.
    @Test func twoStoragesOverOneFileNeverBothSpendAToken() throws {
        let directory = TemporaryDirectory()
        let first = try SQLiteBrokerStorage(directory: directory.path + "/b")
        let second = try SQLiteBrokerStorage(directory: directory.path + "/b")
        for index in 0..<40 { try first.addEnrollmentToken(id: "t\(index)", tokenHash: [UInt8(index)], label: "", expires: 1_000, createdBy: "a", at: 0) }
        let accepted = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 80) { iteration in
            let storage = iteration % 2 == 0 ? first : second
            if (try? storage.consumeEnrollmentToken(tokenHash: [UInt8(iteration / 2)], device: "d\(iteration)", at: 1)) == .accepted {
                accepted.withLock { $0 += 1 }
            }
        }
        #expect(accepted.withLock { $0 } == 40)
    }

    @Test func aNonceIsSpentOnceByItsDeviceBeforeItExpires() throws {
        let directory = TemporaryDirectory()
        let storage = try SQLiteBrokerStorage(directory: directory.path + "/b")
        try storage.addNonce("n1", device: "d1", expires: 60)
        try storage.addNonce("n2", device: "d1", expires: 60)
        #expect(try storage.consumeNonce("n1", device: "d2", at: 1) == .otherDevice)
        #expect(try storage.consumeNonce("n1", device: "d1", at: 1) == .accepted)
        #expect(try storage.consumeNonce("n1", device: "d1", at: 2) == .used)
        #expect(try storage.consumeNonce("n2", device: "d1", at: 60) == .expired)
        #expect(try storage.consumeNonce("n3", device: "d1", at: 1) == .unknown)
    }

    @Test func aDeviceHoldsAtMostTheLimitOfOpenChallenges() throws {
        let directory = TemporaryDirectory()
        let storage = try SQLiteBrokerStorage(directory: directory.path + "/b")
        #expect(try storage.addNonce("n1", device: "d1", expires: 60, openAt: 0, limit: 2))
        #expect(try storage.addNonce("n2", device: "d1", expires: 60, openAt: 0, limit: 2))
        #expect(try !storage.addNonce("n3", device: "d1", expires: 60, openAt: 0, limit: 2))
        #expect(try storage.addNonce("n4", device: "d2", expires: 60, openAt: 0, limit: 2), "another device's count is its own")
        #expect(try storage.consumeNonce("n1", device: "d1", at: 1) == .accepted)
        #expect(try storage.addNonce("n5", device: "d1", expires: 60, openAt: 1, limit: 2), "a spent challenge frees a place")
        #expect(try storage.addNonce("n6", device: "d1", expires: 120, openAt: 60, limit: 2), "so does an expired one")
        #expect(try storage.consumeNonce("n3", device: "d1", at: 1) == .unknown, "a refused challenge was never stored")
    }

    @Test func anAttestationIsRecordedOnlyWithItsChallengeSpent() throws {
        let directory = TemporaryDirectory()
        let storage = try SQLiteBrokerStorage(directory: directory.path + "/b")
        try storage.addNonce("n1", device: "d1", expires: 60)
        let attestation = Attestation(device: "d1", at: 5, report: "{}", decision: "compliant", policyVersion: nil, user: nil, firstFailures: "{}")
        let entry = BrokerLogEntry(time: 5, device: "d1", kind: "attest", detail: "compliant")
        #expect(try storage.recordAttestation(attestation, spending: "n0", log: entry) == .unknown)
        #expect(try storage.latestAttestation(device: "d1") == nil)
        #expect(try storage.logEntries(device: "d1", limit: 10).isEmpty)
        #expect(try storage.recordAttestation(attestation, spending: "n1", log: entry) == .accepted)
        #expect(try storage.latestAttestation(device: "d1")?.decision == "compliant")
        #expect(try storage.logEntries(device: "d1", limit: 10).map(\.detail) == ["compliant"])
        #expect(try storage.recordAttestation(attestation, spending: "n1", log: entry) == .used)
        #expect(try storage.logEntries(device: "d1", limit: 10).count == 1, "a replay records nothing")
    }

    @Test func devicesAreBoundToOneKeyAndCanBeRemoved() throws {
        let directory = TemporaryDirectory()
        let storage = try SQLiteBrokerStorage(directory: directory.path + "/b")
        let device = EnrolledDevice(id: "d1", publicKey: Array(repeating: 7, count: 32), facts: #"{"hostname":"desk-4"}"#, enrolledAt: 5)
        #expect(try storage.addDevice(device))
        #expect(try !storage.addDevice(device))
        #expect(try !storage.addDevice(EnrolledDevice(id: "d2", publicKey: device.publicKey, facts: "{}", enrolledAt: 6)))
        #expect(try storage.device(id: "d1") == device)
        #expect(try storage.removeDevice(id: "d1", at: 9))
        #expect(try !storage.removeDevice(id: "d1", at: 10))
        #expect(try storage.device(id: "d1")?.removedAt == 9)
        // Reopened, everything is still there.
        let again = try SQLiteBrokerStorage(directory: directory.path + "/b")
        #expect(try again.device(id: "d1")?.removedAt == 9)
    }
}

extension BrokerStorageTests {
    @Test func commandsTakeOneSequenceEachAndAreAcknowledgedOnce() throws {
        let directory = TemporaryDirectory()
        let storage = try SQLiteBrokerStorage(directory: directory.file("broker"))
        func command(_ device: String, _ sequence: Int64) -> QueuedCommand {
            QueuedCommand(device: device, sequence: sequence, action: "lockdown", scopes: "usb", reason: "r", admin: "alice", issuedAt: 10, expiresAt: 20, document: "doc-\(device)-\(sequence)")
        }
        #expect(try storage.latestCommandSequence(device: "hf-a") == 0)
        #expect(try storage.addCommand(command("hf-a", 1)))
        // Two admins racing for sequence 2: one wins, the other is told to take the next.
        #expect(try storage.addCommand(command("hf-a", 2)))
        #expect(try !storage.addCommand(command("hf-a", 2)))
        #expect(try storage.addCommand(command("hf-b", 1)))
        #expect(try storage.latestCommandSequence(device: "hf-a") == 2)
        #expect(try storage.commands(device: "hf-a", after: 1, limit: 10).map(\.document) == ["doc-hf-a-2"])

        let first = try storage.commandSequences(afterRow: 0)
        #expect(first.latest == ["hf-a": 2, "hf-b": 1])
        #expect(try storage.commandSequences(afterRow: first.row).latest.isEmpty)
        #expect(try storage.addCommand(command("hf-b", 2)))
        #expect(try storage.commandSequences(afterRow: first.row).latest == ["hf-b": 2])

        #expect(try storage.acknowledgeCommand(device: "hf-a", sequence: 1, status: "applied", detail: "changed usb", at: 15))
        // Once: a second acknowledgement (a retried request) changes nothing.
        #expect(try !storage.acknowledgeCommand(device: "hf-a", sequence: 1, status: "refused", detail: "replayed", at: 16))
        let recent = try storage.recentCommands(device: "hf-a", limit: 5)
        #expect(recent.map(\.sequence) == [2, 1])
        #expect(recent.last?.status == "applied")
        #expect(recent.last?.statusAt == 15)
    }
}
