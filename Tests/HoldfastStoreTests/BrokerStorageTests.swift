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
