import Foundation
import HoldfastCore
import PrintGuard
import Testing

/// An approved print exception at the gate: it takes what the daily quota cannot, for its user on
/// its queue, up to its pages; never more, never for another user or queue, never past a lockdown,
/// never admitting a user the rule does not name.
extension GateTests {
    static func exception(user: String = "alice", queue: String = "OFFICE", pages: Int64 = 10, used: Int64 = 0, id: String = "rq-0000000000000001") -> PrintException {
        PrintException(id: id, number: 12, user: user, queue: queue, pages: pages, used: used, created: Date(), until: Date().addingTimeInterval(3_600), reason: "month end", grantedBy: "bob")
    }

    func decide(_ request: GateRequest, _ policy: PrintPolicy, ledger: QuotaLedger, exceptions: [PrintException], lockdown: String? = nil) -> GateVerdict {
        PrintGate.decide(request, policy: policy, ledger: ledger, today: Self.today, lockdown: lockdown, exceptions: exceptions) { _, _ in false }
    }

    @Test func theQuotaFirstThenTheExceptionUpToItsPages() throws {
        var ledger = QuotaLedger(day: Self.today)
        ledger.charge(user: "alice", pages: 9, on: Self.today)
        // Within the quota: charged to the day, the exception untouched.
        let small = decide(request(pages: 1), try policy(), ledger: ledger, exceptions: [Self.exception()])
        #expect(small.allowed)
        #expect(small.exception == nil)
        // Over the quota: charged whole to the exception (queue names are case-insensitive).
        let over = decide(request(pages: 3, copies: 2), try policy(), ledger: ledger, exceptions: [Self.exception()])
        #expect(over.allowed)
        #expect(over.exception == "rq-0000000000000001")
        #expect(over.chargedPages == 6)
        #expect(over.reason.contains("charged to exception #12 (4 of 10 pages left after it)"))
        // More than is left: refused, saying what is left.
        let big = decide(request(pages: 5), try policy(), ledger: ledger, exceptions: [Self.exception(used: 6)])
        #expect(!big.allowed)
        #expect(big.reason == "page quota: this job has 5 pages, 9 of 10 used today; exception #12 has 4 of 10 pages left and this job has 5")
        // A spent exception does not hide one with room.
        let second = decide(request(pages: 5), try policy(), ledger: ledger, exceptions: [Self.exception(used: 10), Self.exception(id: "rq-0000000000000002")])
        #expect(second.exception == "rq-0000000000000002")
    }

    @Test func nothingForAnotherUserOrQueueNorPastALockdownOrTheRule() throws {
        var ledger = QuotaLedger(day: Self.today)
        ledger.charge(user: "carol", pages: 10, on: Self.today)
        ledger.charge(user: "alice", pages: 10, on: Self.today)
        #expect(!decide(request(user: "carol", pages: 1), try policy(), ledger: ledger, exceptions: [Self.exception()]).allowed)
        #expect(!decide(request(pages: 1), try policy(), ledger: ledger, exceptions: [Self.exception(queue: "lobby")]).allowed)
        let locked = decide(request(pages: 1), try policy(), ledger: ledger, exceptions: [Self.exception()], lockdown: "incident 42")
        #expect(locked.reason == "printing is locked down: incident 42")
        let restricted = try policy(users: #", "users": ["bob"]"#)
        let unnamed = decide(request(pages: 1), restricted, ledger: QuotaLedger(day: Self.today), exceptions: [Self.exception()])
        #expect(!unnamed.allowed)
        #expect(unnamed.reason == "user alice may not print to this printer (rule office)")
    }

    @Test func aDamagedStoredExceptionIsRefused() throws {
        let good = try JSONEncoder().encode([Self.exception()])
        #expect(try JSONDecoder().decode([PrintException].self, from: good).count == 1)
        var bad = Self.exception()
        bad.used = -5
        #expect(throws: (any Error).self) { try JSONDecoder().decode([PrintException].self, from: try JSONEncoder().encode([bad])) }
        let forever = PrintException(id: "rq-0000000000000003", number: 1, user: "alice", queue: "office", pages: 10, created: Date(), until: Date().addingTimeInterval(400 * 86_400), reason: "x", grantedBy: "bob")
        #expect(throws: (any Error).self) { try JSONDecoder().decode([PrintException].self, from: try JSONEncoder().encode([forever])) }
    }
}
