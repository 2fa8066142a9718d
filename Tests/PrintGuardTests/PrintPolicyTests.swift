import HoldfastCore
import PrintGuard
import Testing

func printPolicy(_ json: String) throws -> PrintPolicy {
    try PrintPolicy(section: Policy.parse(Array("{\"print\": \(json)}".utf8)).sections["print"])
}

@Suite struct PrintPolicyTests {
    @Test func aFullSectionParses() throws {
        let policy = try printPolicy("""
            {"approved": [{"id": "floor-7", "name": "floor7-*", "uri": "ipps://print-07.example.internal/*", "users": ["alice", "@desk"]}],
             "unapproved": "reject", "hardening": "report", "title": "hashed",
             "quota": {"pages_per_day": 200, "jobs_per_day": 40, "unknown_pages": 5}}
            """)
        #expect(policy.unapproved == .reject)
        #expect(policy.hardening == .report)
        #expect(policy.title == .hashed)
        #expect(policy.quota == PrintQuota(pagesPerDay: 200, jobsPerDay: 40, unknownPageCharge: 5))
        #expect(policy.approved.count == 1)
        #expect(policy.approved[0].users == ["alice", "@desk"])
    }

    @Test func theDefaultsAreStrict() throws {
        let policy = try PrintPolicy(section: nil)
        #expect(policy.approved.isEmpty)
        #expect(policy.unapproved == .remove)
        #expect(policy.hardening == .repair)
        #expect(policy.quota.unknownPageCharge == nil)
    }

    @Test(arguments: [
        (#"{"approvd": []}"#, "unknown member \"approvd\""),
        (#"{"approved": [{"id": "a", "uri": "file:/tmp/*"}]}"#, "file: queues are never approved"),
        (#"{"approved": [{"id": "a", "uri": "cups-pdf:/"}]}"#, "cups-pdf: queues are never approved"),
        (#"{"approved": [{"id": "a", "name": "*"}]}"#, "does not match everything"),
        (#"{"approved": [{"id": "a", "name": "**"}]}"#, "does not match everything"),
        (#"{"approved": [{"id": "a", "name": "x", "comment": 7}]}"#, "comment must be a string"),
        (#"{"approved": [{"id": "a"}]}"#, "needs \"name\", \"uri\" or both"),
        (#"{"approved": [{"id": "a", "name": "x"}, {"id": "a", "name": "y"}]}"#, "used twice"),
        (#"{"approved": [{"id": "a", "name": "x", "users": []}]}"#, "non-empty list"),
        (#"{"approved": [{"id": "a", "name": "x y"}]}"#, "without spaces"),
        (#"{"unapproved": "delete"}"#, "\"remove\" or \"reject\""),
        (#"{"quota": {"pages_per_day": -1}}"#, "whole number"),
        (#"{"quota": {"pages_per_day": "10"}}"#, "whole number"),
        (#"{"quota": {"unknown_pages": 0}}"#, "\"refuse\" or a page charge"),
        (#"{"approved": [{"id": "a", "uri": "ipp://10.0.0.5*"}]}"#, "wildcard at the end of the host"),
        (#"{"approved": [{"id": "a", "uri": "ipp://10.0.0.5?*"}]}"#, "wildcard at the end of the host"),
        (#"{"approved": [{"id": "a", "uri": "beh:/1/3/5/*"}]}"#, "beh: queues are never approved"),
    ])
    func badSectionsAreRefusedWithThePlace(json: String, expected: String) {
        #expect {
            _ = try printPolicy(json)
        } throws: { error in
            (error as? PrintPolicyError)?.message.contains(expected) == true
        }
    }

    @Test func globsMatchWholeStrings() {
        #expect(GlobPattern("ipps://print-07.example.internal/*").matches("ipps://print-07.example.internal/ipp/print"))
        #expect(!GlobPattern("ipps://print-07.example.internal/*").matches("ipps://print-07.example.internal.evil.com/ipp"))
        #expect(GlobPattern("floor?-*").matches("floor7-west"))
        #expect(!GlobPattern("floor?-*").matches("floor-west"))
        #expect(GlobPattern("a*b*c").matches("aXXbYYc"))
        #expect(!GlobPattern("a*b*c").matches("aXXbYY"))
        #expect(GlobPattern("*").matches(""))
    }
}

@Suite struct ApprovalTests {
    let policy: PrintPolicy

    init() throws {
        policy = try printPolicy("""
            {"approved": [{"id": "office", "name": "office", "uri": "ipp://127.0.0.1:8632/*"},
                          {"id": "any-07", "uri": "ipps://print-07.example.internal/*"},
                          {"id": "floor", "name": "floor-*"}]}
            """)
    }

    @Test func nameAndURIMustBothMatch() {
        let approved = policy.approval(for: PrintQueue(name: "Office", deviceURI: "ipp://127.0.0.1:8632/ipp/print"))
        #expect(approved.approved)
        #expect(approved.rule?.id == "office")
        #expect(!policy.approval(for: PrintQueue(name: "office", deviceURI: "ipp://10.0.0.9/ipp/print")).approved)
    }

    @Test func aGatedURIIsDecidedOnTheRealOne() {
        let queue = PrintQueue(name: "lobby", deviceURI: "holdfast:ipps://print-07.example.internal/ipp/print")
        #expect(queue.realURI.gated)
        #expect(policy.approval(for: queue).rule?.id == "any-07")
    }

    @Test func printToFileIsNeverApprovedEvenByName() {
        let refused = policy.approval(for: PrintQueue(name: "floor-pdf", deviceURI: "file:///tmp/out.pdf"))
        #expect(!refused.approved)
        #expect(refused.reason.contains("never approved"))
        #expect(!policy.approval(for: PrintQueue(name: "floor-pdf", deviceURI: "cups-pdf:/")).approved)
        #expect(!policy.approval(for: PrintQueue(name: "floor-2", deviceURI: "holdfast:holdfast:ipp://x/")).approved)
        #expect(!policy.approval(for: PrintQueue(name: "floor-2", deviceURI: "")).approved)
    }

    @Test func aRuleByNameAloneApprovesNetworkPrintersOnly() {
        #expect(policy.approval(for: PrintQueue(name: "floor-1", deviceURI: "socket://10.1.2.3:9100")).approved)
        #expect(policy.approval(for: PrintQueue(name: "floor-1", deviceURI: "ipps://printer.example.internal/ipp/print")).approved)
        for uri in ["usb://HP/LaserJet?serial=1", "serial:/dev/ttyS0", "parallel:/dev/lp0", "cups-brf:/", "beh:/1/3/5/cups-pdf:/", "implicitclass://x/"] {
            #expect(!policy.approval(for: PrintQueue(name: "floor-1", deviceURI: uri)).approved, "\(uri)")
        }
    }

    @Test func hostAndPathWildcardsStayInTheirPart() throws {
        let policy = try printPolicy(#"{"approved": [{"id": "corp", "uri": "ipp://*.corp.example/*"}]}"#)
        #expect(policy.approval(for: PrintQueue(name: "q", deviceURI: "ipp://p7.corp.example/ipp/print")).approved)
        #expect(!policy.approval(for: PrintQueue(name: "q", deviceURI: "ipp://evil.example/.corp.example/")).approved)
        #expect(!policy.approval(for: PrintQueue(name: "q", deviceURI: "ipps://p7.corp.example/ipp/print")).approved)
    }

    @Test func aRuleByNameAloneDoesNotApproveThisMachine() {
        for uri in ["ipp://localhost/printers/x", "ipp://127.0.0.1:8631/ipp/print", "ipp://[::1]:631/", "ipp://%2Frun%2Fcups%2Fcups.sock/printers/x"] {
            #expect(!policy.approval(for: PrintQueue(name: "floor-1", deviceURI: uri)).approved, "\(uri)")
        }
    }

    @Test func userInfoInTheURIDoesNotPassForTheHost() throws {
        let policy = try printPolicy(#"{"approved": [{"id": "p", "uri": "ipp://10.0.0.5:*/ipp/print"}]}"#)
        #expect(policy.approval(for: PrintQueue(name: "q", deviceURI: "ipp://10.0.0.5:631/ipp/print")).approved)
        #expect(!policy.approval(for: PrintQueue(name: "q", deviceURI: "ipp://10.0.0.5:631@203.0.113.9/ipp/print")).approved)
    }

    @Test func classesAreApprovedByNameOnly() {
        #expect(policy.approval(for: PrintQueue(name: "floor-all", deviceURI: "", isClass: true, members: ["a"])).approved)
        #expect(!policy.approval(for: PrintQueue(name: "office", deviceURI: "", isClass: true)).approved)
    }

    @Test func anEmptyPolicyApprovesNothing() {
        let refused = PrintPolicy.empty.approval(for: PrintQueue(name: "office", deviceURI: "ipp://127.0.0.1/ipp/print"))
        #expect(!refused.approved)
        #expect(refused.reason == "the policy approves no printer")
    }
}
