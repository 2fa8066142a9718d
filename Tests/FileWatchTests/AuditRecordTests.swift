import FileWatch
import Testing

func record(_ line: String) throws -> AuditRecord {
    try AuditRecord.parse(Array(line.utf8)).get()
}

@Suite struct AuditRecordTests {
    @Test func aSyscallRecordParses() throws {
        let parsed = try record(#"type=SYSCALL msg=audit(1700000000.101:500): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c items=2 auid=1001 comm="cp" exe="/usr/bin/cp" key="holdfast-write""#)
        #expect(parsed.node == nil)
        #expect(parsed.type == "SYSCALL")
        #expect(parsed.seconds == 1_700_000_000)
        #expect(parsed.milliseconds == 101)
        #expect(parsed.serial == 500)
        #expect(parsed.field("syscall") == "257")
        #expect(parsed.field("a0") == "ffffff9c")
        #expect(parsed.text("exe") == "/usr/bin/cp")
        #expect(parsed.text("key") == "holdfast-write")
        #expect(parsed.fields.map(\.name) == ["arch", "syscall", "success", "exit", "a0", "items", "auid", "comm", "exe", "key"])
    }

    @Test func hexNamesAreDecodedAndNullIsNil() throws {
        let path = try record("type=PATH msg=audit(1700000000.101:500): item=1 name=2F6D656469612F6167656E7430312F535449434B2F637573746F6D6572206C6973742E637376 inode=12 nametype=CREATE")
        #expect(path.text("name") == "/media/agent01/STICK/customer list.csv")
        let null = try record("type=PATH msg=audit(1700000000.101:500): item=0 name=(null) inode=12 nametype=UNKNOWN")
        #expect(null.bytes("name") == nil)
        #expect(null.field("name") == "(null)")
        let title = try record("type=PROCTITLE msg=audit(1700000000.101:500): proctitle=6370002F686F6D65")
        #expect(title.bytes("proctitle") == Array("cp\0/home".utf8))
    }

    @Test func nodePrefixesMayHoldSpacesAndTheColonMayStandApart() throws {
        let parsed = try record("node=desk 07 wing type=EOE msg=audit(1700000000.101:500) : ")
        #expect(parsed.node == "desk 07 wing")
        #expect(parsed.type == "EOE")
        #expect(parsed.fields.isEmpty)
        #expect(try record("type=UNKNOWN[1337] msg=audit(1.002:3): x=1").type == "UNKNOWN[1337]")
    }

    @Test func enrichedFieldsAreKeptApart() throws {
        let parsed = try record("type=SYSCALL msg=audit(1700000000.101:500): syscall=257 auid=1001\u{1D}SYSCALL=openat AUID=\"agent01\"")
        #expect(parsed.field("auid") == "1001")
        #expect(parsed.interpreted.map(\.name) == ["SYSCALL", "AUID"])
        #expect(parsed.interpreted.map(\.value) == ["openat", "\"agent01\""])
    }

    @Test func userSpaceMessagesKeepTheirSingleQuotedPart() throws {
        let parsed = try record("type=USER_LOGIN msg=audit(1700000000.200:77): pid=1 uid=0 auid=1001 ses=3 msg='op=login id=1001 exe=\"/usr/sbin/sshd\" res=success'")
        #expect(parsed.field("msg") == "'op=login id=1001 exe=\"/usr/sbin/sshd\" res=success'")
    }

    @Test(arguments: [
        ("", AuditParseError.noType),
        ("garbage", .noType),
        ("node=only a node", .noType),
        ("type=SYSCALL", .noHeader),
        ("type=SYSCALL msg=audit(abc:1): x=1", .badHeader),
        ("type=SYSCALL msg=audit(1.2345:1): x=1", .badHeader),
        ("type=SYSCALL msg=audit(1.1:99999999999999999999999): x=1", .badHeader),
        ("type=SYSCALL msg=audit(1.1:5) x=1", .badHeader),
        // More than 11 digits of seconds (past year 5138): never a time that overflows.
        ("type=SYSCALL msg=audit(100000000000.000:5): x=1", .badHeader),
    ])
    func garbageIsRefusedWithTheReason(line: String, error: AuditParseError) {
        #expect(throws: error) { try AuditRecord.parse(Array(line.utf8)).get() }
    }

    @Test func theLengthLimitCountsWithoutTheCarriageReturn() {
        let header = Array("type=PATH msg=audit(1.000:1): name=".utf8)
        let line = header + Array(repeating: UInt8(ascii: "a"), count: AuditRecord.maximumLineLength - header.count)
        #expect((try? AuditRecord.parse(line + [0x0D]).get()) != nil)
        #expect(throws: AuditParseError.tooLong) { try AuditRecord.parse(line + [0x61]).get() }
    }

    @Test func hexLookalikesAndOddHexAreNotDecoded() {
        #expect(AuditRecord.decode("ABC") == nil)
        #expect(AuditRecord.decode("zz") == nil)
        #expect(AuditRecord.decode("\"quoted\"") == Array("quoted".utf8))
    }
}
