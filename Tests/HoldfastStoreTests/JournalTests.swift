import Foundation
import Glibc
import HoldfastCore
@testable import HoldfastStore
import HoldfastTestSupport
import Testing

func makeEvent(_ number: Int, message: String? = nil, time: Date = Date(timeIntervalSince1970: 1_800_000_000)) -> Event {
    Event(
        kind: "test.event",
        eventClass: .fileSystemActivity,
        activityID: 1,
        time: time + Double(number),
        severity: .informational,
        message: message ?? "event \(number)",
        details: ["number": .int(Int64(number))]
    )
}

@Suite struct JournalTests {
    let directory = TemporaryDirectory()
    var configuration: JournalConfiguration { JournalConfiguration(directory: directory.file("state")) }

    @Test func appendsAndReadsBackInOrderWithMonotonicIDs() throws {
        let journal = try Journal(configuration: configuration)
        let events = (1...5).map { makeEvent($0) }
        var ids: [Int64] = []
        for event in events { ids.append(try journal.append(event)) }
        #expect(ids == [1, 2, 3, 4, 5])
        let entries = try journal.entries()
        #expect(entries.map(\.id) == ids)
        #expect(try entries.map { try $0.event() } == events)
        #expect(entries.map(\.uuid) == events.map(\.id))
        #expect(try journal.entries(after: 3).map(\.id) == [4, 5])
        #expect(try journal.tail(2).map(\.id) == [4, 5])
    }

    @Test func everyEventIsStampedWithTheWorkstationUnlessItNamesOne() throws {
        var stamped = configuration
        stamped.device = DeviceIdentity(uid: "3d1219c7c4c5404aaa1f6d2a48adfda4", hostname: "ws-17")
        let journal = try Journal(configuration: stamped)
        var other = makeEvent(2)
        other.device = DeviceIdentity(uid: "dev-9", hostname: "ws-9")
        try journal.append(contentsOf: [makeEvent(1), other])
        let devices = try journal.entries().map { try $0.event().device }
        #expect(devices == [stamped.device, other.device])
    }

    @Test func theLocalIdentityIsTheMachineIDAndHostName() throws {
        let file = directory.file("machine-id")
        try "3d1219c7c4c5404aaa1f6d2a48adfda4\n".writeReplacing(toFile: file)
        let local = DeviceIdentity.local(machineIDPath: file)
        #expect(local.uid == "3d1219c7c4c5404aaa1f6d2a48adfda4")
        #expect(local.hostname?.isEmpty == false)
        #expect(local.typeID == 2)
        #expect(DeviceIdentity.local(machineIDPath: directory.file("missing")).uid == nil)
    }

    @Test func appendsABatchInOneTransaction() throws {
        let journal = try Journal(configuration: configuration)
        let ids = try journal.append(contentsOf: (1...100).map { makeEvent($0) })
        #expect(ids == Array(1...100))
        #expect(try journal.stats().events == 100)
    }

    @Test func appendingTheSameEventTwiceStoresItOnce() throws {
        let journal = try Journal(configuration: configuration)
        let event = makeEvent(1)
        let first = try journal.append(event)
        let second = try journal.append(event)
        #expect(first == second)
        #expect(try journal.stats().events == 1)
    }

    @Test func keepsEverythingAcrossReopen() throws {
        let events = (1...3).map { makeEvent($0) }
        do {
            let journal = try Journal(configuration: configuration)
            try journal.append(contentsOf: events)
            try journal.setState("policy.version", Array("7".utf8))
        }
        let reopened = try Journal(configuration: configuration)
        #expect(try reopened.entries().map { try $0.event() } == events)
        #expect(try reopened.state("policy.version") == Array("7".utf8))
        #expect(try reopened.append(makeEvent(4)) == 4)
    }

    @Test func makesItsFilesPrivate() throws {
        let journal = try Journal(configuration: configuration)
        try journal.append(makeEvent(1))
        #expect(fileMode(configuration.directory) == 0o700)
        #expect(fileMode(configuration.path) == 0o600)
        #expect(fileMode(configuration.path + "-wal") == 0o600)
        #expect(fileMode(configuration.path + "-shm") == 0o600)
    }

    @Test func usesWALMode() throws {
        let journal = try Journal(configuration: configuration)
        _ = journal
        let connection = try Connection(path: configuration.path)
        #expect(try connection.strings("PRAGMA journal_mode") == ["wal"])
    }

    @Test func refusesADatabaseOthersCanRead() throws {
        _ = try Journal(configuration: configuration)
        chmod(configuration.path, 0o644)
        let error = #expect(throws: StoreError.self) { try Journal(configuration: configuration) }
        #expect(error?.code == .insecureFile)
    }

    @Test func refusesAStateDirectoryOthersCanWrite() throws {
        try FileManager.default.createDirectory(atPath: configuration.directory, withIntermediateDirectories: true)
        chmod(configuration.directory, 0o777)
        let error = #expect(throws: StoreError.self) { try Journal(configuration: configuration) }
        #expect(error?.code == .insecureFile)
    }

    @Test func refusesASchemaFromANewerHoldfast() throws {
        do {
            let connection = try Connection(path: try { () throws -> String in
                _ = try Journal(configuration: configuration)
                return configuration.path
            }())
            try connection.execute("PRAGMA user_version = 99")
        }
        let error = #expect(throws: StoreError.self) { try Journal(configuration: configuration) }
        #expect(error?.code == .schemaTooNew)
    }

    @Test func refusesToRewriteAStoredEvent() throws {
        let journal = try Journal(configuration: configuration)
        try journal.append(makeEvent(1))
        let connection = try Connection(path: configuration.path)
        #expect(throws: StoreError.self) { try connection.execute("UPDATE events SET body = x'00' WHERE id = 1") }
        #expect(try journal.entries().first?.event().message == "event 1")
    }

    @Test func tracksUploads() throws {
        let journal = try Journal(configuration: configuration)
        try journal.append(contentsOf: (1...5).map { makeEvent($0) })
        #expect(try journal.pendingUpload(limit: 2).map(\.id) == [1, 2])
        #expect(try journal.markUploaded([1, 2]) == 2)
        #expect(try journal.markUploaded([2]) == 0)
        #expect(try journal.pendingUpload().map(\.id) == [3, 4, 5])
        #expect(try journal.pendingUpload(after: 3).map(\.id) == [4, 5])
        let stats = try journal.stats()
        #expect(stats.pendingUpload == 3)
        #expect(stats.lastID == 5)
    }

    @Test func storesAndRemovesState() throws {
        struct Lockdown: Codable, Equatable { var scopes: [String] }
        let journal = try Journal(configuration: configuration)
        try journal.setState("lockdown", encoding: Lockdown(scopes: ["usb", "print"]))
        #expect(try journal.state("lockdown", as: Lockdown.self) == Lockdown(scopes: ["usb", "print"]))
        try journal.setState("lockdown", encoding: Lockdown(scopes: []))
        #expect(try journal.state("lockdown", as: Lockdown.self) == Lockdown(scopes: []))
        #expect(try journal.stateKeys() == ["lockdown"])
        #expect(try journal.removeState("lockdown"))
        #expect(try journal.state("lockdown") == nil)
    }

    @Test func reportsIntegrity() throws {
        let journal = try Journal(configuration: configuration)
        try journal.append(makeEvent(1))
        #expect(try journal.integrityCheck() == ["ok"])
    }
}

@Suite struct JournalCapTests {
    let directory = TemporaryDirectory()

    /// A cap that holds about `events` test events.
    func journal(capEvents events: Int) throws -> (Journal, Int) {
        let size = try EventCoding.encode(makeEvent(1, message: String(repeating: "x", count: 200))).count
        let configuration = JournalConfiguration(directory: directory.file("state"), maximumEventBytes: size * events)
        return (try Journal(configuration: configuration), size)
    }

    func padded(_ number: Int) -> Event { makeEvent(number, message: String(repeating: "x", count: 200)) }

    @Test func evictsTheOldestUploadedEventsFirst() throws {
        let (journal, _) = try journal(capEvents: 20)
        try journal.append(contentsOf: (1...15).map(padded))
        try journal.markUploaded(Array(1...10))
        try journal.append(contentsOf: (16...25).map(padded))
        let stats = try journal.stats()
        #expect(stats.lostUnuploaded == 0)
        #expect(stats.evictedUploaded >= 5)
        // Every un-uploaded event (11–25) is still there; only uploaded ones went, oldest first.
        let ids = try journal.entries().map(\.id)
        #expect(Array(11...25).allSatisfy(ids.contains))
        #expect(ids.first == 1 + stats.evictedUploaded)
        #expect(try journal.entries().contains { $0.kind == "journal.overflow" } == false)
    }

    @Test func reportsTheLossWhenOnlyUnuploadedEventsAreLeft() throws {
        let (journal, _) = try journal(capEvents: 20)
        try journal.append(contentsOf: (1...20).map(padded))
        try journal.append(contentsOf: (21...25).map(padded))
        let stats = try journal.stats()
        #expect(stats.lostUnuploaded > 0)
        #expect(stats.evictedUploaded == 0)
        // The loss is an event, with the count and the ids that went…
        let overflow = try #require(try journal.entries().first { $0.kind == "journal.overflow" }?.event())
        #expect(overflow.severity == .high)
        #expect(overflow.eventClass == .eventLogActivity)
        #expect(overflow.details["lost_events"] == .int(stats.lostUnuploaded))
        #expect(overflow.details["first_lost_id"] == .int(1))
        #expect(overflow.details["last_lost_id"] == .int(stats.lostUnuploaded))
        // …and a state record the posture report reads.
        let loss = try #require(try journal.state(Journal.lossStateKey, as: JSONValue.self))
        #expect(loss["total_lost_events"] == .int(stats.lostUnuploaded))
        // The new batch survived whole.
        let ids = try journal.entries().map(\.id)
        #expect(Array(21...25).allSatisfy { ids.contains(Int64($0)) })
    }

    @Test func neverReusesAnIDAfterEviction() throws {
        let (journal, _) = try journal(capEvents: 10)
        try journal.append(contentsOf: (1...10).map(padded))
        try journal.markUploaded(Array(1...10))
        try journal.append(contentsOf: (11...20).map(padded))
        try journal.markUploaded(Array(11...20))
        let id = try journal.append(padded(21))
        #expect(id == 21)
    }

    @Test func staysUnderTheCap() throws {
        let (journal, size) = try journal(capEvents: 50)
        for batch in 0..<20 {
            let ids = try journal.append(contentsOf: (0..<10).map { padded(batch * 10 + $0) })
            try journal.markUploaded(ids)
        }
        let stats = try journal.stats()
        #expect(stats.eventBytes <= Int64(size * 50))
        #expect(stats.lostUnuploaded == 0)
        try journal.compact()
        #expect(try journal.integrityCheck() == ["ok"])
    }
}
