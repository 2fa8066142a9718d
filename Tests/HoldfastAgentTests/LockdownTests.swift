import Foundation
import HoldfastCore
import HoldfastStore
import HoldfastTestSupport
import Lockdown
import Testing

/// Records what the controller asks of it.
actor RecordingEnforcer: LockdownEnforcer {
    private(set) var calls: [LockdownEntry?] = []
    func enforceLockdown(_ entry: LockdownEntry?) async -> String? {
        calls.append(entry)
        return nil
    }
}

@Suite struct LockdownControllerTests {
    static func journal(_ directory: TemporaryDirectory) throws -> Journal {
        try Journal(configuration: JournalConfiguration(directory: directory.file("state")))
    }

    static func kinds(_ journal: Journal) throws -> [String] {
        try journal.entries().map { try $0.event().kind }
    }

    @Test func aLockdownIsSavedBeforeItIsEnforcedAndSurvivesARestart() async throws {
        let directory = TemporaryDirectory()
        let journal = try Self.journal(directory)
        let controller = LockdownController(journal: journal) { _ = try? journal.append($0) }
        let usb = RecordingEnforcer()
        await controller.attach(usb, for: .usb)
        #expect(await usb.calls == [nil])
        let changed = try await controller.engage([.usb, .print], reason: "bulk copy", by: "filewatch", source: "filewatch", cause: "e1")
        #expect(changed == [.usb, .print])
        #expect(await usb.calls.last??.reason == "bulk copy")
        // Engaging again changes nothing and keeps the first reason.
        #expect(try await controller.engage([.usb], reason: "again", by: "uid 0", source: "admin").isEmpty)
        #expect(await controller.entry(.usb)?.reason == "bulk copy")

        // A new holdfastd over the same journal starts locked, and tells its enforcer at once.
        let restarted = LockdownController(journal: journal) { _ = try? journal.append($0) }
        #expect(await restarted.entry(.usb)?.source == "filewatch")
        #expect(await restarted.entry(.print)?.cause == "e1")
        let after = RecordingEnforcer()
        await restarted.attach(after, for: .usb)
        #expect(await after.calls.first??.reason == "bulk copy")

        #expect(try await restarted.release([.usb], reason: "investigated", by: "uid 0 (root)") == [.usb])
        #expect(await after.calls.last == .some(nil))
        #expect(await restarted.entry(.usb) == nil)
        #expect(await restarted.entry(.print) != nil)
        let status = await restarted.status()
        #expect(status["locked"] == .array([.string("print")]))
        // print has no enforcer in this test: recorded, and said to be unenforced.
        #expect(try Self.kinds(journal) == ["lockdown.engaged", "lockdown.enforcement_failed", "lockdown.released"])
        #expect(try journal.entries()[1].event().details["scopes"] == .array([.string("print")]))
    }

    @Test func aStateThatCannotBeReadLocksEveryScope() async throws {
        let directory = TemporaryDirectory()
        let journal = try Self.journal(directory)
        try journal.setState("lockdown.scopes", Array("not json".utf8))
        let controller = LockdownController(journal: journal) { _ = try? journal.append($0) }
        #expect(await controller.entry(.usb)?.source == "recovery")
        #expect(await controller.entry(.print)?.source == "recovery")
        #expect(try Self.kinds(journal) == ["lockdown.state_unreadable"])
    }

    @Test func scopeListsParseAndRefuseUnknownNames() throws {
        #expect(try LockdownScope.parseList("usb, print,usb") == [.usb, .print])
        #expect(throws: LockdownScope.UnknownScope.self) { try LockdownScope.parseList("usb,network") }
    }
}
