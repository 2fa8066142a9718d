import Foundation
import HoldfastCore
import Testing

@Suite struct AccessRequestTests {
    static let device = "hf-0123456789abcdef"
    static let usb = ExceptionMatch.usb(vendor: 0x0781, product: 0x5567, serial: "4C53", hash: "sha256:" + String(repeating: "a", count: 64))
    static let grant = RemoteCommand(
        device: device, sequence: 4, issuedAt: 1_000, expiresAt: 8_200, action: .grant,
        exception: GrantedException(request: "rq-0123456789abcdef", number: 12, match: usb, user: "alice", uid: 1000, until: 8_200, asked: "TICKET-81"),
        reason: "ok", admin: "bob")

    static func changed(_ command: RemoteCommand, _ change: (inout [String: JSONValue]) -> Void) -> [UInt8] {
        guard case .object(var members) = command.payload else { return [] }
        change(&members)
        return Array(JSONValue.object(members).compactText.utf8)
    }

    @Test func grantsDenialsAndRevocationsParseBack() throws {
        #expect(try RemoteCommand.parse(Array(Self.grant.payload.compactText.utf8)) == Self.grant)
        let print = RemoteCommand(
            device: Self.device, sequence: 5, issuedAt: 1_000, expiresAt: 2_000, action: .grant,
            exception: GrantedException(request: "rq-0123456789abcdef", number: 13, match: .print(queue: "office", pages: 200), user: "alice", uid: 1000, until: 2_000, asked: "month end"),
            reason: "ok", admin: "bob")
        #expect(try RemoteCommand.parse(Array(print.payload.compactText.utf8)) == print)
        for action in [RemoteCommand.Action.deny, .revoke] {
            let command = RemoteCommand(
                device: Self.device, sequence: 6, issuedAt: 1_000, expiresAt: 2_000, action: action, request: RequestReference(request: "rq-0123456789abcdef", number: 12),
                reason: "no", admin: "bob")
            #expect(try RemoteCommand.parse(Array(command.payload.compactText.utf8)) == command)
        }
    }

    @Test(arguments: [
        // A grant carries its exception, nothing else: no scopes, no request, no extra member.
        ("scopes", JSONValue.array(["usb"])), ("request", .object(["request": "rq-0123456789abcdef", "number": 12])), ("exception", .null), ("exception", "usb"),
    ])
    func aGrantWithTheWrongMembersIsRefused(_ name: String, _ value: JSONValue) {
        #expect(throws: CommandError.self) { try RemoteCommand.parse(Self.changed(Self.grant) { $0[name] = value }) }
    }

    @Test(arguments: [
        ("kind", JSONValue.string("camera")), ("queue", "office"), ("pages", 10), ("script", "x"), ("vendor", "781"), ("vendor", "07g1"), ("hash", "sha256:00"),
        ("serial", "a\u{0}b"), ("user", ""), ("user", "-root"), ("uid", -1), ("until", 0), ("number", 0), ("request", "rq-1"), ("asked", ""),
    ])
    func anExceptionWithABadMemberIsRefused(_ name: String, _ value: JSONValue) {
        #expect(throws: CommandError.self) {
            try RemoteCommand.parse(Self.changed(Self.grant) { members in
                guard case .object(var exception)? = members["exception"] else { return }
                exception[name] = value
                members["exception"] = .object(exception)
            })
        }
    }

    @Test func aRequestParsesStrictlyAndRoundTrips() throws {
        let request = AccessRequestSubmission(id: "rq-00000000000000ff", match: .print(queue: "office", pages: 200), user: "alice", uid: 1000, seconds: 86_400, reason: "month end", created: 1_000)
        #expect(try AccessRequestSubmission.parse(request.body) == request)
        guard case .object(var members) = request.body else { return }
        members["vendor"] = "0781"
        #expect(throws: CommandError.self) { try AccessRequestSubmission.parse(.object(members)) }
        for (name, value) in [("seconds", JSONValue.int(0)), ("seconds", .int(31 * 86_400)), ("pages", .int(0)), ("queue", "a/b"), ("queue", "two words")] {
            guard case .object(var bad) = request.body else { return }
            bad[name] = value
            #expect(throws: CommandError.self) { try AccessRequestSubmission.parse(.object(bad)) }
        }
    }

    @Test func aMatchSurvivesStorage() throws {
        let encoded = try JSONEncoder().encode(Self.usb)
        #expect(try JSONDecoder().decode(ExceptionMatch.self, from: encoded) == Self.usb)
        #expect(throws: (any Error).self) { try JSONDecoder().decode(ExceptionMatch.self, from: Data(#"{"kind":"usb","vendor":"0781"}"#.utf8)) }
    }
}

@Suite struct OffboardCommandTests {
    static let offboard = RemoteCommand(
        device: AccessRequestTests.device, sequence: 9, issuedAt: 1_000, expiresAt: 2_000, action: .offboard, user: "maria", reason: "left (HR-1)", admin: "carol")

    @Test func offboardAndReinstateParseBack() throws {
        #expect(try RemoteCommand.parse(Array(Self.offboard.payload.compactText.utf8)) == Self.offboard)
        var reinstate = Self.offboard
        reinstate.action = .reinstate
        #expect(try RemoteCommand.parse(Array(reinstate.payload.compactText.utf8)) == reinstate)
    }

    @Test(arguments: [
        // An offboarding names its user and nothing else: no scopes, no exception, no request, no extra member.
        ("user", JSONValue.null), ("user", ""), ("user", "-root"), ("user", "a/b"), ("user", "a\u{7}b"), ("user", .int(1000)),
        ("scopes", .array(["usb"])), ("request", .object(["request": "rq-0123456789abcdef", "number": 12])), ("script", "x"),
    ])
    func anOffboardWithTheWrongMembersIsRefused(_ name: String, _ value: JSONValue) {
        #expect(throws: CommandError.self) { try RemoteCommand.parse(AccessRequestTests.changed(Self.offboard) { $0[name] = value }) }
    }

    @Test func aLockdownOrGrantCarryingAUserIsRefused() {
        #expect(throws: CommandError.self) { try RemoteCommand.parse(AccessRequestTests.changed(AccessRequestTests.grant) { $0["user"] = "maria" }) }
    }
}
