import Foundation
@testable import HoldfastAgent
import HoldfastCore
import Testing

/// What the person at the seat is told, and whom a decision on a request is for.
@Suite struct SeatNotifierTests {
    static func requestEvent(_ kind: String, uid: String = "1000") -> Event {
        Event(
            kind: kind, eventClass: .deviceConfigStateChange, activityID: 1, activityName: "Create", time: Date(), severity: .medium, status: .success,
            message: "", actor: Actor(user: .init(uid: uid, name: "alice")),
            details: ["summary": "200 pages on print queue office", "number": 12, "approver": "bob", "note": "month end", "until": "2026-12-05T10:00:00Z"])
    }

    @Test func aDecisionIsToldToItsRequesterOnly() throws {
        let approved = try #require(SeatNotifier.message(for: Self.requestEvent("request.approved")))
        #expect(approved.summary == "Holdfast: request #12 approved")
        #expect(approved.body == "200 pages on print queue office until 2026-12-05T10:00:00Z, by bob: month end")
        #expect(SeatNotifier.message(for: Self.requestEvent("request.denied"))?.summary == "Holdfast: request #12 denied")
        #expect(SeatNotifier.message(for: Self.requestEvent("request.expired"))?.body.contains("its time is up") == true)
        // Submitted and sent are the user's own doing: nothing to tell.
        #expect(SeatNotifier.message(for: Self.requestEvent("request.submitted")) == nil)
        #expect(SeatNotifier.isFor(Self.requestEvent("request.approved"), seatUID: 1000))
        #expect(!SeatNotifier.isFor(Self.requestEvent("request.approved"), seatUID: 1001))
        // A lockdown is the machine's: whoever sits there is told.
        let lockdown = Event(kind: "lockdown.engaged", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Lock", time: Date(), severity: .high, status: .success, message: "")
        #expect(SeatNotifier.isFor(lockdown, seatUID: 1001))
    }
}
