import Foundation
import HoldfastCore
import HoldfastTestSupport
import PrintGuard
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Just-in-time print exceptions end to end (docs/exceptions.md): the private cupsd and IPP
/// printer of the print tests, a holdfastd enrolled with a real broker on loopback. Part of the
/// serialized print suite (its test users are machine-wide).
extension PrintEnforcementTests {
    @Test func aUserOverTheQuotaAsksAnApproverGrantsPagesThenTheQuotaIsBack() async throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        let broker = try TestBroker()
        let agent = try agent(quota: #"{"pages_per_day": 5}"#, extra: TestBroker.agentSection)
        let cups = try agent.testbed
        let enrolled = try agent.holdfast(["enroll", "--token", try broker.token()])
        try #require(enrolled.status == 0, "\(enrolled.stderr)")
        let document = try agent.document(pages: 2)
        #expect(try await agent.finishedWaiting(try cups.print(document, queue: "office", as: Self.ann, title: "day one")).state == JobState.completed)
        // 2 + 4 > 5: over the quota.
        let over = try await agent.finishedWaiting(try cups.print(document, queue: "office", as: Self.ann, title: "too much", options: ["-n", "2"]))
        #expect(over.state == JobState.canceled)

        // No exception for a queue that does not exist, or without a reason: refused on the spot.
        let nowhere = try agent.holdfast(["request", "print", "--queue", "basement", "--pages", "10", "--for", "1h", "--reason", "x"], as: Self.ann)
        #expect(nowhere.status != 0)
        #expect(nowhere.stderr.contains("there is no print queue basement"))

        let asked = try agent.holdfast(["request", "print", "--queue", "office", "--pages", "10", "--for", "1h", "--reason", "quarterly statements"], as: Self.ann)
        #expect(asked.status == 0, "\(asked.stderr)")
        var number: Int?
        #expect(try await eventually { number = try broker.requests().first { $0["status"] as? String == "pending" }?["number"] as? Int; return number != nil })
        let request = try #require(try broker.requests().first)
        #expect(request["user"] as? String == Self.ann)
        #expect((request["match"] as? [String: Any])?["queue"] as? String == "office")
        #expect((request["match"] as? [String: Any])?["pages"] as? Int == 10)

        #expect(try broker.cli(["approve", String(try #require(number)), "--for", "12s", "--note", "month end", "--dir", broker.etc]).status == 0)
        #expect(try await eventually {
            let mine = try agent.holdfast(["requests", "--json"], as: Self.ann)
            return mine.stdout.contains(#""status":"approved""#)
        }, "\(agent.logText)")
        // The same four pages print now, charged to the exception, not the quota.
        let id = try cups.print(document, queue: "office", as: Self.ann, title: "statements", options: ["-n", "2"])
        #expect(try await agent.finishedWaiting(id).state == JobState.completed)
        let allowed = try #require(try agent.events("print.job").last?["holdfast"]?["details"])
        #expect(allowed["verdict"]?.stringValue == "allow")
        #expect(allowed["exception"]?["number"]?.intValue == Int64(number ?? 0))
        #expect(allowed["exception"]?["used"]?.intValue == 4)
        let status = try JSONDecoder().decode(JSONValue.self, from: Data(try agent.holdfast(["print", "status", "--json"]).stdout.utf8))
        #expect(status["quota"]?["users"]?[Self.ann]?["pages"]?.intValue == 2)
        if case .array(let exceptions)? = status["quota"]?["exceptions"] { #expect(exceptions.first?["used"]?.intValue == 4) } else { Issue.record("no exceptions in print status") }
        // Another user gains nothing from ann's exception.
        #expect(try await agent.finishedWaiting(try cups.print(try agent.document(pages: 6, name: "six.pdf"), queue: "office", as: Self.bob, title: "bob six")).state == JobState.canceled)

        // At the approval's end the quota is back.
        #expect(try await eventually(40) { try !agent.events("request.expired").isEmpty })
        let after = try await agent.finishedWaiting(try cups.print(document, queue: "office", as: Self.ann, title: "after the end", options: ["-n", "2"]))
        #expect(after.state == JobState.canceled)
        #expect(after.message.contains("page quota"))
        let ended = try #require(try agent.events("print.exception_expired").last?["holdfast"]?["details"])
        #expect(ended["used"]?.intValue == 4)
        #expect(ended["granted_by"]?.stringValue?.hasPrefix("alice (broker, request #") == true)
    }
}
