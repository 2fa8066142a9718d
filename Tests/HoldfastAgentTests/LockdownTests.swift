import Foundation
import HoldfastCore
import HoldfastCrypto
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
        #expect(throws: LockdownScope.UnknownScope.self) { try LockdownScope.parseList("usb,camera") }
    }
}

/// Broker commands through the controller: only this device's, newer, unexpired ones apply;
/// every other one is refused and journaled with its reason.
@Suite struct LockdownCommandTests {
    static let device = "hf-00000000000000aa"
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    static func command(_ sequence: Int64, _ action: RemoteCommand.Action = .lockdown, scopes: [LockdownScope] = [.usb], device: String = device, expires: Int64 = 3_600) -> RemoteCommand {
        let issued = Int64(start.timeIntervalSince1970)
        return RemoteCommand(device: device, sequence: sequence, issuedAt: issued, expiresAt: issued + expires, action: action, scopes: scopes, reason: "incident \(sequence)", admin: "alice")
    }

    static func refusals(_ journal: Journal) throws -> [String] {
        try journal.entries().map { try $0.event() }.filter { $0.kind == "lockdown.command_refused" }.compactMap { $0.details["reason"]?.stringValue }
    }

    @Test func aCommandAppliesOnceInOrderAndTheSequenceSurvivesARestart() async throws {
        let directory = TemporaryDirectory()
        let journal = try LockdownControllerTests.journal(directory)
        let clock = ManualTimeSource(Self.start)
        let controller = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }
        let usb = RecordingEnforcer()
        await controller.attach(usb, for: .usb)

        #expect(await controller.apply(Self.command(1), device: Self.device) == .applied(changed: [.usb]))
        #expect(await controller.entry(.usb)?.source == "broker")
        #expect(await controller.entry(.usb)?.by == "alice (broker command 1)")
        #expect(await usb.calls.last??.reason == "incident 1")
        #expect(await controller.lastCommandSequence(for: Self.device) == 1)
        #expect(await controller.reportedState() == .object(["locked": .array(["usb"]), "enforced": .array(["usb"])]))

        // The same command again (a replay) and an older one: refused, nothing changes.
        #expect(await controller.apply(Self.command(1, .release), device: Self.device) == .refused(reason: "replayed", message: "command 1 is not newer than command 1 applied before"))
        #expect(await controller.entry(.usb) != nil)

        // A restart keeps the sequence: the replay is still refused.
        let restarted = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }
        #expect(await restarted.lastCommandSequence(for: Self.device) == 1)
        if case .applied = await restarted.apply(Self.command(1, .release), device: Self.device) { Issue.record("a replayed release applied after a restart") }
        #expect(await restarted.apply(Self.command(2, .release), device: Self.device) == .applied(changed: [.usb]))
        #expect(await restarted.entry(.usb) == nil)
        #expect(try Self.refusals(journal) == ["replayed", "replayed"])
        // Enrolled again as another device: the broker numbers its commands from 1 again.
        #expect(await restarted.lastCommandSequence(for: "hf-00000000000000cc") == 0)
        #expect(await restarted.apply(Self.command(1, device: "hf-00000000000000cc"), device: "hf-00000000000000cc") == .applied(changed: [.usb]))
        #expect(try journal.entries().map { try $0.event().kind }.filter { $0 == "lockdown.command_applied" }.count == 3)
    }

    @Test func anotherDevicesOrAnExpiredCommandIsRefusedAndNeverApplied() async throws {
        let directory = TemporaryDirectory()
        let journal = try LockdownControllerTests.journal(directory)
        let clock = ManualTimeSource(Self.start)
        let controller = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }

        if case .applied = await controller.apply(Self.command(1, device: "hf-00000000000000bb"), device: Self.device) { Issue.record("another device's command applied") }
        clock.advance(by: 3_600)
        if case .applied = await controller.apply(Self.command(2), device: Self.device) { Issue.record("an expired command applied") }
        #expect(await controller.entry(.usb) == nil)
        // An expired command of this device is done with; another device's is not counted.
        #expect(await controller.lastCommandSequence(for: Self.device) == 2)
        await controller.refuseCommand("bad-signature", "forged", sequence: 3)
        #expect(try Self.refusals(journal) == ["other-device", "expired", "bad-signature"])
    }
}

/// Break-glass through the controller: offline, once per code, for its window; a newer order
/// shuts the scope again.
@Suite struct BreakGlassTests {
    static let secret = Array(repeating: UInt8(3), count: 32)
    static let device = "hf-00000000000000aa"
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    static func code(_ scopes: [LockdownScope], duration: Int64 = 3_600, at time: Date = start) throws -> String {
        try BreakGlassCode.issue(secret: secret, device: device, scopes: scopes, duration: duration, at: Int64(time.timeIntervalSince1970)).text
    }

    @Test func aCodeLiftsItsLockedScopesOnceUntilItsWindowEnds() async throws {
        let directory = TemporaryDirectory()
        let journal = try LockdownControllerTests.journal(directory)
        let clock = ManualTimeSource(Self.start)
        let controller = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }
        let usb = RecordingEnforcer()
        await controller.attach(usb, for: .usb)
        try await controller.engage([.usb, .print], reason: "incident", by: "alice (broker command 1)", source: "broker")
        let code = try Self.code([.usb, .network])

        let used = await controller.breakGlass(code, secret: Self.secret, device: Self.device, by: "uid 0 (root)")
        #expect(try used.get().lifted == [.usb])
        #expect(await controller.inForce(.usb) == nil)
        #expect(await controller.entry(.usb) != nil)
        #expect(await controller.inForce(.print) != nil)
        #expect(await usb.calls.last == .some(nil))
        #expect(await controller.reportedState()["suspended_until"]?["usb"] == .int(Int64(Self.start.timeIntervalSince1970) / 60 * 60 + 3_600))

        // Once: the same code again is refused, also after a restart.
        #expect(await controller.breakGlass(code, secret: Self.secret, device: Self.device, by: "uid 0 (root)").failureReason == "used")
        let restarted = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }
        #expect(await restarted.inForce(.usb) == nil)
        #expect(await restarted.breakGlass(code, secret: Self.secret, device: Self.device, by: "uid 0 (root)").failureReason == "used")

        // The window ends: locked again.
        clock.advance(by: 3_601)
        await controller.expireSuspensions()
        #expect(await controller.inForce(.usb) != nil)
        #expect(await usb.calls.last??.reason == "incident")
        let kinds = try journal.entries().map { try $0.event().kind }
        #expect(kinds.filter { $0 == "lockdown.breakglass_used" }.count == 1)
        #expect(kinds.filter { $0 == "lockdown.breakglass_refused" }.count == 2)
        #expect(kinds.last == "lockdown.breakglass_ended")
    }

    @Test func aNewerOrderShutsTheScopeAgainAnOlderOneDoesNot() async throws {
        let directory = TemporaryDirectory()
        let journal = try LockdownControllerTests.journal(directory)
        let clock = ManualTimeSource(Self.start)
        let controller = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }
        try await controller.engage([.usb, .network], reason: "incident", by: "alice", source: "broker")
        clock.advance(by: 60)
        #expect(try await controller.breakGlass(try Self.code([.usb, .network], at: clock.now()), secret: Self.secret, device: Self.device, by: "root").get().lifted == [.usb, .network])
        // A broker command issued before the code was used (delivered late): the code holds.
        let earlier = RemoteCommand(device: Self.device, sequence: 1, issuedAt: Int64(Self.start.timeIntervalSince1970), expiresAt: Int64(Self.start.timeIntervalSince1970) + 3_600,
                                    action: .lockdown, scopes: [.usb], reason: "queued before", admin: "alice")
        #expect(await controller.apply(earlier, device: Self.device) == .applied(changed: []))
        #expect(await controller.inForce(.usb) == nil)
        // A FileWatch block now: USB is shut again; the network stays lifted.
        clock.advance(by: 60)
        #expect(try await controller.engage([.usb], reason: "bulk copy", by: "filewatch", source: "filewatch") == [.usb])
        #expect(await controller.inForce(.usb)?.source == "filewatch")
        #expect(await controller.inForce(.network) == nil)
    }

    @Test func wrongCodesAreCountedAndFiveCloseTheVerb() async throws {
        let directory = TemporaryDirectory()
        let journal = try LockdownControllerTests.journal(directory)
        let clock = ManualTimeSource(Self.start)
        let controller = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }
        try await controller.engage([.usb], reason: "incident", by: "alice", source: "broker")
        let other = try BreakGlassCode.issue(secret: Self.secret, device: "hf-00000000000000bb", scopes: [.usb], duration: 3_600, at: Int64(Self.start.timeIntervalSince1970)).text
        #expect(await controller.breakGlass(other, secret: Self.secret, device: Self.device, by: "root").failureReason == "wrong")
        #expect(await controller.breakGlass("hello", secret: Self.secret, device: Self.device, by: "root").failureReason == "malformed")
        #expect(await controller.breakGlass(try Self.code([.usb]), secret: nil, device: nil, by: "root").failureReason == "no-secret")
        // A garbled code is no try (guessing needs codes that decode); four more wrong ones make five.
        for _ in 0..<4 { _ = await controller.breakGlass(other, secret: Self.secret, device: Self.device, by: "root") }
        // Five wrong from this caller: even the right code waits; another user may still try.
        #expect(await controller.breakGlass(try Self.code([.usb]), secret: Self.secret, device: Self.device, by: "root").failureReason == "too-many-tries")
        #expect(await controller.breakGlass(other, secret: Self.secret, device: Self.device, by: "uid 1000").failureReason == "wrong")
        clock.advance(by: 901)
        #expect(try await controller.breakGlass(try Self.code([.usb], at: clock.now()), secret: Self.secret, device: Self.device, by: "root").get().lifted == [.usb])
    }
}

extension Result where Failure == LockdownController.BreakGlassRefusal {
    var failureReason: String? { if case .failure(let refusal) = self { refusal.reason } else { nil } }
}

extension BreakGlassTests {
    /// A code kept unused opens only the lockdown it was made for, not one for a later incident.
    @Test func aCodeDoesNotOpenALockdownThatBeganAfterIt() async throws {
        let directory = TemporaryDirectory()
        let journal = try LockdownControllerTests.journal(directory)
        let clock = ManualTimeSource(Self.start)
        let controller = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }
        let code = try Self.code(LockdownScope.allCases, duration: 604_800)
        clock.advance(by: 3 * 86_400)
        try await controller.engage([.network, .usb], reason: "another incident", by: "alice", source: "broker")
        #expect(await controller.breakGlass(code, secret: Self.secret, device: Self.device, by: "uid 1000").failureReason == "nothing-locked")
        #expect(await controller.inForce(.network) != nil)
    }

    @Test func aRecordOfUsedCodesThatCannotBeReadRefusesEveryCode() async throws {
        let directory = TemporaryDirectory()
        let journal = try LockdownControllerTests.journal(directory)
        let clock = ManualTimeSource(Self.start)
        let controller = LockdownController(journal: journal, clock: clock) { _ = try? journal.append($0) }
        try await controller.engage([.usb], reason: "incident", by: "alice", source: "broker")
        try journal.setState("lockdown.breakglass_used", Array("damaged".utf8))
        #expect(await controller.breakGlass(try Self.code([.usb]), secret: Self.secret, device: Self.device, by: "uid 1000").failureReason == "storage")
        #expect(await controller.inForce(.usb) != nil)
    }
}

extension LockdownControllerTests {
    /// A scope no enforcer runs for: locked, it is said not to be in effect; released, it carries
    /// no failure (posture's lockdown-consistent passes again without a restart).
    @Test func aReleasedScopeWithoutAnEnforcerIsConsistentAgain() async throws {
        let directory = TemporaryDirectory()
        let journal = try Self.journal(directory)
        let controller = LockdownController(journal: journal) { _ = try? journal.append($0) }
        try await controller.engage([.print], reason: "incident", by: "alice", source: "broker")
        #expect(await controller.enforcement()[.print] == LockdownEnforcementState(locked: true, inEffect: false, failure: "no print enforcement runs on this agent"))
        try await controller.release([.print], reason: "clear", by: "alice")
        #expect(await controller.enforcement()[.print] == LockdownEnforcementState(locked: false, inEffect: false, failure: nil))
        #expect(await controller.reportedState() == .object(["locked": .array([]), "enforced": .array([])]))
    }
}
