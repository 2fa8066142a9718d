import HoldfastCore
import PrintGuard
import Testing

@Suite struct GateTests {
    static let today = "2026-12-03"

    func request(user: String = "alice", queue: String = "office", uri: String = "ipp://192.0.2.10/ipp/print", pages: Int64? = 2, copies: Int64 = 1) -> GateRequest {
        GateRequest(
            job: 7, user: user, title: "q3 report", copies: copies, queue: queue, deviceURI: uri, contentType: "application/pdf",
            pages: pages, format: "application/pdf", pageNote: pages == nil ? "compressed page tree" : nil, bytes: 1_024
        )
    }

    func policy(quota: String = #"{"pages_per_day": 10, "jobs_per_day": 3}"#, users: String = "") throws -> PrintPolicy {
        try printPolicy(#"{"approved": [{"id": "office", "name": "office"\#(users)}], "quota": \#(quota)}"#)
    }

    func decide(_ request: GateRequest, _ policy: PrintPolicy, ledger: QuotaLedger = QuotaLedger(day: today), lockdown: String? = nil) -> GateVerdict {
        PrintGate.decide(request, policy: policy, ledger: ledger, today: Self.today, lockdown: lockdown) { user, group in
            group == "desk" && user == "bob"
        }
    }

    @Test func anApprovedJobWithinQuotaIsAllowedAndChargedPerCopy() throws {
        let verdict = decide(request(copies: 3), try policy())
        #expect(verdict.allowed)
        #expect(verdict.chargedPages == 6)
        #expect(verdict.rule == "office")
    }

    @Test func lockdownComesFirst() throws {
        let verdict = decide(request(), try policy(), lockdown: "incident 42")
        #expect(!verdict.allowed)
        #expect(verdict.reason == "printing is locked down: incident 42")
    }

    @Test func anUnapprovedQueueOrAFileURIIsRefusedAtTheGateToo() throws {
        #expect(!decide(request(queue: "rogue"), try policy()).allowed)
        let file = decide(request(uri: "file:///tmp/x.pdf"), try policy())
        #expect(!file.allowed)
        #expect(file.reason.contains("never approved"))
    }

    @Test func onlyTheNamedUsersAndGroupsMayPrint() throws {
        let restricted = try policy(users: #", "users": ["alice", "@desk"]"#)
        #expect(decide(request(user: "alice"), restricted).allowed)
        #expect(decide(request(user: "bob"), restricted).allowed)
        let carol = decide(request(user: "carol"), restricted)
        #expect(!carol.allowed)
        #expect(carol.reason == "user carol may not print to this printer (rule office)")
    }

    @Test func aJobThatWouldCrossThePageLimitIsCancelledWhole() throws {
        var ledger = QuotaLedger(day: Self.today)
        ledger.charge(user: "alice", pages: 9, on: Self.today)
        let verdict = decide(request(pages: 2), try policy(), ledger: ledger)
        #expect(!verdict.allowed)
        #expect(verdict.reason == "page quota: this job has 2 pages, 9 of 10 used today")
        // Another user's day is untouched.
        #expect(decide(request(user: "bob", pages: 2), try policy(), ledger: ledger).allowed)
    }

    @Test func theJobLimitCounts() throws {
        var ledger = QuotaLedger(day: Self.today)
        for _ in 0..<3 { ledger.charge(user: "alice", pages: 1, on: Self.today) }
        #expect(decide(request(pages: 1), try policy(), ledger: ledger).reason == "job quota reached: 3 of 3 jobs today")
    }

    @Test func aNewDayStartsFromZero() throws {
        var ledger = QuotaLedger(day: "2026-12-02")
        ledger.charge(user: "alice", pages: 10, on: "2026-12-02")
        #expect(ledger.use(of: "alice", on: Self.today).pages == 0)
        #expect(decide(request(pages: 10), try policy(), ledger: ledger).allowed)
        ledger.charge(user: "alice", pages: 3, on: Self.today)
        #expect(ledger.day == Self.today)
        #expect(ledger.use(of: "alice", on: Self.today) == QuotaLedger.Use(pages: 3, jobs: 1))
    }

    @Test func uncountablePagesAreRefusedUnderAPageQuotaUnlessThePolicyCharges() throws {
        let refused = decide(request(pages: nil), try policy())
        #expect(!refused.allowed)
        #expect(refused.reason.contains("pages cannot be counted (compressed page tree)"))
        let charged = decide(request(pages: nil, copies: 2), try policy(quota: #"{"pages_per_day": 10, "unknown_pages": 4}"#))
        #expect(charged.allowed)
        #expect(charged.chargedPages == 8)
        #expect(decide(request(pages: nil), try policy(quota: #"{"jobs_per_day": 10}"#)).allowed)
    }

    @Test func declaredPagesAreBelievedOnlyWhenThePolicySaysSo() throws {
        let declared = GateRequest(
            job: 9, user: "alice", title: "t", copies: 1, queue: "office", deviceURI: "ipp://x/", contentType: "application/postscript",
            pages: 1, format: "application/postscript", pageNote: nil, pagesDeclared: true, bytes: 10
        )
        let refused = decide(declared, try policy())
        #expect(!refused.allowed)
        #expect(refused.reason.hasPrefix("the document only declares its pages"))
        #expect(decide(declared, try policy(quota: #"{"pages_per_day": 10, "unknown_pages": 5}"#)).chargedPages == 5)
        #expect(decide(declared, try policy(quota: #"{"pages_per_day": 10, "declared_pages": "trust"}"#)).chargedPages == 1)
    }

    @Test func theRequestRoundTripsThroughTheControlArguments() {
        let original = request(pages: nil, copies: 2)
        #expect(GateRequest(arguments: original.arguments) == original)
        var bad = original.arguments
        bad["copies"] = .int(0)
        #expect(GateRequest(arguments: bad) == nil)
        bad = original.arguments
        bad["pages"] = .string("many")
        #expect(GateRequest(arguments: bad) == nil)
    }
}
