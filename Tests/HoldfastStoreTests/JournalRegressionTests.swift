import Foundation
import Glibc
import HoldfastCore
import HoldfastStore
import HoldfastTestSupport
import Testing

/// Cases found by review, kept so they stay fixed.
@Suite struct JournalRegressionTests {
    let directory = TemporaryDirectory()
    var configuration: JournalConfiguration { JournalConfiguration(directory: directory.file("state")) }

    @Test func aRepeatedAppendLeavesNoStaleSnapshotForOtherWriters() throws {
        let first = try Journal(configuration: configuration)
        let second = try Journal(configuration: configuration)
        let event = makeEvent(1)
        try first.append(event)
        try first.append(event)  // the duplicate path
        try second.append(makeEvent(2))
        #expect(try first.entries().map(\.id) == [1, 2])
        #expect(try first.append(makeEvent(3)) == 3)
    }

    @Test func repeatedAppendsConsumeNoIDs() throws {
        let journal = try Journal(configuration: configuration)
        let event = makeEvent(1)
        #expect(try journal.append(contentsOf: [event, event, makeEvent(2)]) == [1, 1, 2])
        #expect(try journal.append(makeEvent(3)) == 3)
    }

    @Test func aBatchWithAnOldEventStillEnforcesTheCap() throws {
        let size = try EventCoding.encode(makeEvent(1, message: String(repeating: "x", count: 200))).count
        let journal = try Journal(configuration: JournalConfiguration(directory: directory.file("capped"), maximumEventBytes: size * 20))
        let old = (1...19).map { makeEvent($0, message: String(repeating: "x", count: 200)) }
        try journal.append(contentsOf: old)
        try journal.markUploaded(Array(1...19))
        try journal.append(contentsOf: [old[0]] + (20...30).map { makeEvent($0, message: String(repeating: "x", count: 200)) })
        #expect(try journal.stats().eventBytes <= Int64(size * 20))
    }

    @Test func readOnlyOpeningNeverCreatesAJournal() throws {
        let error = #expect(throws: StoreError.self) {
            try Journal(configuration: JournalConfiguration(directory: directory.file("typo/a/b")), create: false)
        }
        #expect(error?.code == .notFound)
        #expect(!FileManager.default.fileExists(atPath: directory.file("typo")))
    }

    @Test func refusesAStateDirectoryOwnedBySomeoneElse() throws {
        let state = directory.file("foreign")
        mkdir(state, 0o755)
        chown(state, 65_534, 65_534)
        let error = #expect(throws: StoreError.self) { try Journal(configuration: JournalConfiguration(directory: state)) }
        #expect(error?.code == .insecureFile)
        #expect(error?.message.contains("owned by uid 65534") == true)
    }

    @Test func refusesASymlinkedStateDirectoryAndSaysSo() throws {
        mkdir(directory.file("real"), 0o700)
        symlink(directory.file("real"), directory.file("link"))
        let error = #expect(throws: StoreError.self) { try Journal(configuration: JournalConfiguration(directory: directory.file("link"))) }
        #expect(error?.message.contains("symbolic link") == true)
    }

    @Test func theIntegrityCheckReportsADamagedFile() throws {
        do {
            let journal = try Journal(configuration: configuration)
            try journal.append(contentsOf: (1...200).map { makeEvent($0) })
            try journal.compact()
        }
        #expect(Journal.integrityCheck(path: configuration.path) == ["ok"])
        truncate(configuration.path, 4_096)
        let findings = Journal.integrityCheck(path: configuration.path)
        #expect(findings != ["ok"])
        #expect(!findings.isEmpty)
    }

    @Test func refusesAnEventTimeOutsideTheRepresentableYears() throws {
        let journal = try Journal(configuration: configuration)
        var event = makeEvent(1)
        event.time = Date(timeIntervalSince1970: 1e300)
        let error = #expect(throws: StoreError.self) { try journal.append(event) }
        #expect(error?.code == .encoding)
        #expect(try journal.stats().events == 0)
    }
}
