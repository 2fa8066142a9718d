import HoldfastCore
import Testing

@Suite struct RemoteCommandTests {
    static let device = "hf-0123456789abcdef"
    static let command = RemoteCommand(
        device: device, sequence: 3, issuedAt: 1_000, expiresAt: 2_000, action: .lockdown, scopes: [.network, .usb], reason: "incident 12: bulk copy", admin: "alice")

    static func text(_ command: RemoteCommand) -> [UInt8] { Array(command.payload.compactText.utf8) }

    static func changed(_ change: (inout [String: JSONValue]) -> Void) -> [UInt8] {
        guard case .object(var members) = command.payload else { return [] }
        change(&members)
        return Array(JSONValue.object(members).compactText.utf8)
    }

    @Test func aPayloadParsesBackToTheSameCommand() throws {
        #expect(try RemoteCommand.parse(Self.text(Self.command)) == Self.command)
        #expect(Self.command.payload["type"] == "holdfast.command")
    }

    @Test func aPayloadCarriesNothingButItsMembers() {
        // A command cannot carry a script, a path or anything else: any extra member refuses it whole.
        for extra in ["script", "path", "exec", "rules"] {
            #expect(throws: CommandError.self) { try RemoteCommand.parse(Self.changed { $0[extra] = "rm -rf /" }) }
        }
    }

    @Test(arguments: [
        ("type", JSONValue.string("holdfast.policy")), ("device", "hf-XYZ"), ("seq", 0), ("seq", "3"), ("iat", 0), ("exp", 900), ("exp", .int(1_000 + 31 * 86_400)),
        ("action", "format"), ("scopes", .array([])), ("scopes", .array(["usb", "usb"])), ("scopes", .array(["camera"])), ("scopes", "usb"),
        ("reason", ""), ("reason", "a\u{0}b"), ("reason", "hidden\u{202E}text"), ("reason", .string(String(repeating: "x", count: 513))), ("admin", ""),
    ])
    func aBadMemberRefusesTheCommand(_ name: String, _ value: JSONValue) {
        #expect(throws: CommandError.self) { try RemoteCommand.parse(Self.changed { $0[name] = value }) }
    }

    @Test(arguments: ["type", "device", "seq", "iat", "exp", "action", "scopes", "reason", "admin"])
    func aMissingMemberRefusesTheCommand(_ name: String) {
        #expect(throws: CommandError.self) { try RemoteCommand.parse(Self.changed { $0[name] = nil }) }
    }

    @Test func aRepeatedKeyOrNotJSONIsRefused() {
        #expect(throws: CommandError.self) { try RemoteCommand.parse(Array(#"{"seq":1,"seq":2}"#.utf8)) }
        #expect(throws: CommandError.self) { try RemoteCommand.parse(Array("[1]".utf8)) }
        #expect(throws: CommandError.self) { try RemoteCommand.parse(Array("lockdown usb".utf8)) }
    }
}
