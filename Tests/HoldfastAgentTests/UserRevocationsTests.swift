import Foundation
import HoldfastAgent
import HoldfastCore
import HoldfastStore
import HoldfastTestSupport
import Lockdown
import Synchronization
import Testing

/// Offboarding on the agent over a real journal, with the sessions' end recorded instead of sent
/// to logind (the logind side runs against python3-dbusmock in SessionLockdownTests): kept before
/// anything else, matched by name, folded case or account, kept across restarts and in a copy,
/// fail-closed when neither copy can be read.
@Suite struct UserRevocationsTests {
    final class Ender: Sendable {
        let calls = Mutex<[[String]]>([])
        var ender: UserRevocations.SessionEnder {
            { users, _ in
                self.calls.withLock { $0.append(users.entries.map(\.user)) }
                return (1, nil)
            }
        }
    }

    static func command(_ action: RemoteCommand.Action, _ user: String, sequence: Int64 = 1, expiresAt: Int64? = nil) -> RemoteCommand {
        let now = Int64(Date().timeIntervalSince1970)
        return RemoteCommand(
            device: "hf-0123456789abcdef", sequence: sequence, issuedAt: now - 10, expiresAt: expiresAt ?? now + 3_600, action: action, user: user,
            reason: "left (HR-1)", admin: "carol")
    }

    func make(_ directory: TemporaryDirectory, _ ender: Ender) throws -> (Journal, UserRevocations) {
        let journal = try Journal(configuration: JournalConfiguration(directory: directory.file("state")))
        let revocations = UserRevocations(
            journal: journal, stateDirectory: directory.file("state"), logger: Logger(handler: MemoryLogHandler()), record: { _ = try? journal.append($0) },
            endSessions: ender.ender)
        return (journal, revocations)
    }

    @Test func anOffboardingIsKeptMatchedAndSurvivesARestartAndAReinstatementLiftsIt() async throws {
        let directory = TemporaryDirectory()
        let ender = Ender()
        let (journal, revocations) = try make(directory, ender)
        let applied = await revocations.handle(Self.command(.offboard, "maria"))
        #expect(applied == .applied("maria revoked here: 1 session ended, 0 exceptions ended, 0 requests withdrawn"))
        #expect(ender.calls.withLock { $0 } == [["maria"]])
        #expect(await revocations.revocation("maria")?.by == "carol")
        #expect(await revocations.revocation("MARIA")?.user == "maria")
        #expect(await revocations.revocation("mario") == nil)
        // The account NSS knows: nobody's uid is kept with it.
        _ = await revocations.handle(Self.command(.offboard, "nobody", sequence: 2))
        #expect(await revocations.revocation("nobody")?.uid == OffboardedUsers.account("nobody")?.uid)
        #expect(try journal.entries().compactMap { try? $0.event().kind }.filter { $0 == "user.revoked" }.count == 2)
        // The copy the login check reads: root's, 0600, the same list.
        #expect(fileMode(directory.file("state/offboarded-users")) == 0o600)
        guard case .list(let copy) = OffboardedUsers.load(stateDirectory: directory.file("state")) else { Issue.record("no copy"); return }
        #expect(copy.entries.map(\.user).sorted() == ["maria", "nobody"])

        // Restarted: still there; the sweep asks once for both.
        let (_, restarted) = try make(directory, ender)
        #expect(await restarted.revocation("maria") != nil)
        await restarted.reassert()
        #expect(ender.calls.withLock { $0.last?.sorted() } == ["maria", "nobody"])
        // A reinstatement past its command's end still applies (the broker's order decides).
        // … and whatever case it writes the name in.
        let late = await restarted.handle(Self.command(.reinstate, "Maria", sequence: 3, expiresAt: Int64(Date().timeIntervalSince1970) - 60))
        #expect(late == .applied("Maria reinstated here"))
        #expect(await restarted.revocation("maria") == nil)
        #expect(await restarted.revocation("nobody") != nil)
    }

    @Test(arguments: ["root", "ROOT", "Root"])
    func rootIsNeverOffboardedHoweverItIsWritten(_ name: String) async throws {
        let directory = TemporaryDirectory()
        let (_, revocations) = try make(directory, Ender())
        let refused = await revocations.handle(Self.command(.offboard, name))
        guard case .refused(let reason, message: _) = refused else { Issue.record("\(name) was offboarded: \(refused)"); return }
        #expect(reason == "untouchable")
        #expect(await revocations.revocation("root") == nil)
        // Even a list that names it (written by hand, or by an older holdfastd) never matches root.
        #expect(OffboardedUsers([.init(user: "ROOT", uid: 0)]).match("root") == nil)
    }

    @Test func aDamagedListFallsBackToItsCopyAndWithoutEitherDeniesAllButRootUntilEnrolledAgain() async throws {
        let directory = TemporaryDirectory()
        let (journal, revocations) = try make(directory, Ender())
        _ = await revocations.handle(Self.command(.offboard, "maria"))
        try journal.setState("users.revoked", Array("not json".utf8))
        // The journal's list is damaged: the copy is used.
        let (_, fromCopy) = try make(directory, Ender())
        #expect(await fromCopy.revocation("maria") != nil)
        #expect(await fromCopy.unreadable == nil)
        // Both damaged: nobody can be told apart; every login but root's is denied (the agent
        // asks `unreadable`), until a new enrollment starts the list over.
        try SecureFile.write(Array("garbage".utf8), to: directory.file("state/offboarded-users"))
        let (_, lost) = try make(directory, Ender())
        #expect(await lost.unreadable?.contains("every login but root's is denied") == true)
        // Still lost after a later command saved a list of one, and after a restart; the copy
        // says so too (the login check then lets only root in).
        _ = await lost.handle(Self.command(.offboard, "ana", sequence: 5))
        let (_, stillLost) = try make(directory, Ender())
        #expect(await stillLost.unreadable != nil)
        guard case .unreadable = OffboardedUsers.load(stateDirectory: directory.file("state")) else { Issue.record("the copy reads as a list while the list is lost"); return }
        await stillLost.startOver()
        #expect(await stillLost.unreadable == nil)
        await lost.startOver()
        #expect(await lost.unreadable == nil)
        let (_, fresh) = try make(directory, Ender())
        #expect(await fresh.unreadable == nil)
        #expect(await fresh.revocation("maria") == nil)
    }
}

extension UserRevocationsTests {
    /// Offboarding commands take the lockdown's command path: one sequence per device, a replay
    /// (an old or repeated sequence) refused before the handler sees it, another device's refused.
    @Test func aReplayedOrMisaddressedOffboardingCommandIsRefused() async throws {
        let directory = TemporaryDirectory()
        let ender = Ender()
        let (journal, revocations) = try make(directory, ender)
        let controller = LockdownController(journal: journal) { _ = try? journal.append($0) }
        await controller.attach(users: revocations)
        let device = "hf-0123456789abcdef"
        #expect(await controller.apply(Self.command(.offboard, "maria", sequence: 5), device: device) == .done(detail: "maria revoked here: 1 session ended, 0 exceptions ended, 0 requests withdrawn"))
        // The reinstatement replayed at an old sequence: refused, maria stays offboarded.
        guard case .refused(let reason, _) = await controller.apply(Self.command(.reinstate, "maria", sequence: 5), device: device) else { Issue.record("a replay was applied"); return }
        #expect(reason == "replayed")
        #expect(await revocations.revocation("maria") != nil)
        // For another device: refused.
        guard case .refused(let other, _) = await controller.apply(Self.command(.reinstate, "maria", sequence: 6), device: "hf-fedcba9876543210") else { Issue.record("another device's command was applied"); return }
        #expect(other == "other-device")
        #expect(await revocations.revocation("maria") != nil)
        #expect(try journal.entries().compactMap { try? $0.event().kind }.filter { $0 == "lockdown.command_refused" }.count == 2)
    }
}

extension UserRevocationsTests {
    /// logind away at the offboarding: the user manager's ending (linger off, TerminateUser) is
    /// tried again with the sweeps until logind answers, then no more.
    @Test func theUserManagersEndIsRetriedUntilLogindAnswers() async throws {
        final class Flaky: Sendable {
            let calls = Mutex<[(users: [String], ending: Bool)]>([])
            let down = Mutex(true)
            var ender: UserRevocations.SessionEnder {
                { users, ending in
                    self.calls.withLock { $0.append((users.entries.map(\.user), ending)) }
                    return self.down.withLock { $0 } ? (0, "logind does not answer") : (0, nil)
                }
            }
        }
        let directory = TemporaryDirectory()
        let flaky = Flaky()
        let journal = try Journal(configuration: JournalConfiguration(directory: directory.file("state")))
        let revocations = UserRevocations(
            journal: journal, stateDirectory: directory.file("state"), logger: Logger(handler: MemoryLogHandler()), record: { _ = try? journal.append($0) },
            endSessions: flaky.ender)
        _ = await revocations.handle(Self.command(.offboard, "maria"))
        await revocations.reassert()
        // Still down: the offboarding's ending was asked for again, and the sweep too.
        #expect(flaky.calls.withLock { $0.filter(\.ending).count } == 2)
        flaky.down.withLock { $0 = false }
        await revocations.reassert()
        await revocations.reassert()
        // Answered once: not asked for again.
        #expect(flaky.calls.withLock { $0.filter(\.ending).count } == 3)
        #expect(flaky.calls.withLock { $0.last?.ending } == false)
    }
}

