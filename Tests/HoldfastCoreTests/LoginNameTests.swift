import HoldfastCore
import Testing

@Suite struct LoginNameTests {
    @Test(arguments: ["alice", "root", "alice@corp.example", #"CORP\alice"#, "John Smith@corp.example", "ölaf", "user$", "a.b-c_d", String(repeating: "x", count: 256)])
    func directoryNamesAreLoginNames(_ name: String) {
        #expect(LoginName.isValid(name))
    }

    @Test(arguments: [
        "", "-rf", "a/b", " alice", "alice ", "a\nb", "a\u{0}b", "a\u{7F}", "a\u{85}b", "\t", String(repeating: "x", count: 257),
        "-\u{301}rf", "a/\u{338}b", "root\u{200B}", "\u{FEFF}root", "alice\u{202E}nimda", "a\u{2028}b", "alice, root",
    ])
    func whatCouldMisleadIsNot(_ name: String) {
        #expect(!LoginName.isValid(name))
    }
}
