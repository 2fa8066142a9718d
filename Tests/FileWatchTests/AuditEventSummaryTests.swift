import FileWatch
import Foundation
import Testing

/// Assembles `lines` and returns the one event they make.
func summary(_ lines: [String]) throws -> AuditEventSummary {
    var stream = AuditStream()
    var events: [AuditEvent] = []
    stream.feed(Array((lines.joined(separator: "\n") + "\n").utf8)) { if case .event(let event) = $0 { events.append(event) } }
    stream.finish { if case .event(let event) = $0 { events.append(event) } }
    #expect(events.count == 1)
    return try #require(events.first.map(AuditEventSummary.init))
}

func jsonObject(_ summary: AuditEventSummary) throws -> [String: Any] {
    var bytes: [UInt8] = []
    summary.writeJSON(into: &bytes)
    return try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

@Suite struct AuditEventSummaryTests {
    @Test func theIssuesCopyGivesTheDocumentedValues() throws {
        let event = try summary(copyEvent)
        let json = try jsonObject(event)
        #expect(json["serial"] as? Int == 500)
        #expect(json["time"] as? Double == 1_700_000_000.101)
        #expect(json["node"] is NSNull)
        #expect(json["types"] as? [String] == ["SYSCALL", "CWD", "PATH", "PATH", "PROCTITLE"])
        #expect(json["syscall"] as? Int == 257)
        #expect(json["syscall_name"] as? String == "openat")
        #expect(json["success"] as? Bool == true)
        #expect(json["exit"] as? Int == 3)
        #expect(json["auid"] as? Int == 1001)
        #expect(json["uid"] as? Int == 1001)
        #expect(json["pid"] as? Int == 901)
        #expect(json["ppid"] as? Int == 900)
        #expect(json["exe"] as? String == "/usr/bin/cp")
        #expect(json["comm"] as? String == "cp")
        #expect(json["cwd"] as? String == "/home/agent01")
        #expect(json["key"] as? String == "holdfast-write")
        let paths = try #require(json["paths"] as? [[String: Any]])
        #expect(paths.map { $0["name"] as? String } == ["/media/agent01/STICK/", "/media/agent01/STICK/customer list.csv"])
        #expect(paths.map { $0["nametype"] as? String } == ["PARENT", "CREATE"])
        #expect(paths.map { $0["inode"] as? Int } == [2, 12])
        #expect(paths.map { $0["mode"] as? String } == ["040755", "0100644"])
        #expect(json["proctitle"] as? [String] == ["cp", "/home/agent01/customer list.csv", "/media/agent01/STICK/"])
        #expect(json["argv"] is NSNull)
        // a0=ffffff9c looks like hex text but is a number (AT_FDCWD as unsigned).
        #expect(json["args"] as? [Int] == [0xFFFF_FF9C, 0x55D0, 0x241, 0x1B6])
    }

    @Test func anUnsetLoginUIDIsNullAndAFailureKeepsItsErrno() throws {
        let event = try summary([
            "type=SYSCALL msg=audit(1700000001.000:7): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=1 a2=0 a3=0 items=1 ppid=1 pid=88 auid=4294967295 uid=0 comm=\"cron\" exe=\"/usr/sbin/cron\" key=(null)",
            "type=PATH msg=audit(1700000001.000:7): item=0 name=(null) inode=5 nametype=UNKNOWN",
            "type=EOE msg=audit(1700000001.000:7):",
        ])
        #expect(event.auid == nil)
        #expect(event.uid == 0)
        #expect(event.success == false)
        #expect(event.exit == -13)
        #expect(event.key == nil)
        #expect(event.paths.count == 1)
        #expect(event.paths.first?.name == nil)
        let json = try jsonObject(event)
        #expect(json["auid"] is NSNull)
        #expect(json["key"] is NSNull)
        #expect((json["paths"] as? [[String: Any]])?.first?["name"] is NSNull)
    }

    @Test func aRenameHasFourPathsInItemOrder() throws {
        let event = try summary([
            "type=SYSCALL msg=audit(1700000002.000:8): arch=c000003e syscall=316 success=yes exit=0 items=4 ppid=1 pid=9 auid=1001 uid=1001 comm=\"mv\" exe=\"/usr/bin/mv\"",
            "type=CWD msg=audit(1700000002.000:8): cwd=2F686F6D652F6167656E74203031",
            "type=PATH msg=audit(1700000002.000:8): item=0 name=\"/home/a/\" inode=1 nametype=PARENT",
            "type=PATH msg=audit(1700000002.000:8): item=1 name=\"/media/a/STICK/\" inode=2 nametype=PARENT",
            "type=PATH msg=audit(1700000002.000:8): item=2 name=\"/home/a/x.csv\" inode=3 nametype=DELETE",
            "type=PATH msg=audit(1700000002.000:8): item=3 name=\"/media/a/STICK/x.csv\" inode=3 nametype=CREATE",
            "type=PROCTITLE msg=audit(1700000002.000:8): proctitle=\"mv\"",
        ])
        #expect(event.syscallName == "renameat2")
        #expect(event.cwd == "/home/agent 01")
        #expect(event.paths.map(\.nametype) == ["PARENT", "PARENT", "DELETE", "CREATE"])
        #expect(event.paths.map(\.name) == ["/home/a/", "/media/a/STICK/", "/home/a/x.csv", "/media/a/STICK/x.csv"])
        #expect(event.proctitle == ["mv"])
    }

    @Test func execveArgumentsAndFragmentsAreReassembledAcrossRecords() throws {
        let long = String(repeating: "print('x'); ", count: 700)
        let hex = Array(long.utf8).map { String(format: "%02X", $0) }.joined()
        let half = hex.index(hex.startIndex, offsetBy: (hex.count / 4) * 2)
        let event = try summary([
            "type=SYSCALL msg=audit(1700000003.000:9): arch=c000003e syscall=59 success=yes exit=0 items=2 ppid=1 pid=10 auid=1002 uid=1002 comm=\"python3\" exe=\"/usr/bin/python3.11\"",
            "type=EXECVE msg=audit(1700000003.000:9): argc=4 a0=\"python3\" a1=\"-c\" a2_len=\(long.utf8.count) a2[0]=\(hex[..<half])",
            "type=EXECVE msg=audit(1700000003.000:9): a2[1]=\(hex[half...]) a3=2F746D702F6120622E637376",
            "type=PROCTITLE msg=audit(1700000003.000:9): proctitle=707974686F6E33002D63",
        ])
        #expect(event.argv == ["python3", "-c", long, "/tmp/a b.csv"])
        #expect(event.proctitle == ["python3", "-c"])
    }

    @Test func argumentsKeepTheirPlaces() throws {
        let event = try summary([
            "type=SYSCALL msg=audit(1700000003.000:20): arch=c000003e syscall=59 a0=10 a1=ffffffffffffffffff a2=1 a3=2 items=0",
            // argc claims millions; a0 cannot be decoded; a00 is not a0.
            "type=EXECVE msg=audit(1700000003.000:20): argc=9999999 a0=(null) a1=ABC a2=\"ok\" a00=45",
            "type=PROCTITLE msg=audit(1700000003.000:20): proctitle=\"x\"",
        ])
        #expect(event.arguments == [0x10, nil, 1, 2])
        #expect(event.argv == [nil, nil, "ok"])
        #expect(event.argc == 9_999_999)
    }

    @Test func anIndexPastArgcOrAGapInFragmentsAddsNothing() throws {
        let beyond = try summary([
            "type=EXECVE msg=audit(1700000003.000:23): argc=1 a0=\"ls\" a9999999=\"x\"",
            "type=EOE msg=audit(1700000003.000:23):",
        ])
        #expect(beyond.argv == ["ls"])
        let noArgc = try summary([
            "type=EXECVE msg=audit(1700000003.000:24): a0=\"ls\" a9999999=\"x\"",
            "type=EOE msg=audit(1700000003.000:24):",
        ])
        #expect((noArgc.argv?.count ?? 0) <= 2 + 64)
        let gap = try summary([
            "type=EXECVE msg=audit(1700000003.000:25): argc=3 a0=\"x\" a1_len=9 a1[0]=\"abc\" a1[2]=\"ghi\" a2_len=4 a2[0]=\"ab\" a2[1]=\"c\"",
            "type=EOE msg=audit(1700000003.000:25):",
        ])
        // a1 lost its middle fragment, a2 is shorter than its a2_len: both lost, not wrong.
        #expect(gap.argv == ["x", nil, nil])
    }

    @Test func oddNamesAreKeptAndPathsSortWithoutItemsLast() throws {
        let event = try summary([
            "type=SYSCALL msg=audit(1700000006.000:21): arch=c000003e syscall=257 success=yes exit=3 items=3 pid=12 auid=1001 uid=1001",
            "type=PATH msg=audit(1700000006.000:21): name=ABC inode=1 nametype=NORMAL",
            "type=PATH msg=audit(1700000006.000:21): item=1 name=\"/b\" inode=2 nametype=NORMAL",
            "type=PATH msg=audit(1700000006.000:21): item=0 name=\"/a\" inode=3 nametype=PARENT",
            "type=PROCTITLE msg=audit(1700000006.000:21): proctitle=\"x\"",
        ])
        #expect(event.paths.map(\.inode) == [3, 2, 1])
        // Neither quoted, hex nor (null): kept as written.
        #expect(event.paths.last?.name == "ABC")
    }

    @Test func aQuotedNameThatIsNotUTF8GetsTheHexOfItsBytes() throws {
        var stream = AuditStream()
        var found: [AuditEvent] = []
        var bytes = Array("type=PATH msg=audit(1700000006.000:22): item=0 name=\"".utf8) + [0xFF, 0x61] + Array("\" nametype=CREATE\n".utf8)
        bytes += Array("type=EOE msg=audit(1700000006.000:22):\n".utf8)
        stream.feed(bytes) { if case .event(let event) = $0 { found.append(event) } }
        let path = try #require(found.first.map(AuditEventSummary.init)?.paths.first)
        #expect(path.nameHex == "FF61")
        #expect(path.name == "\u{FFFD}a")
    }

    @Test func aMissingArgumentIsNullNotShifted() throws {
        let event = try summary([
            "type=EXECVE msg=audit(1700000003.000:19): argc=3 a0=\"ls\" a2=\"-l\"",
            "type=EOE msg=audit(1700000003.000:19):",
        ])
        #expect(event.argv == ["ls", nil, "-l"])
    }

    @Test func enrichedNamesAndSeveralKeysAreRead() throws {
        // Two rule keys reach the log as one hex value joined by 0x01.
        let keys = Array("holdfast-write\u{01}exfil".utf8).map { String(format: "%02X", $0) }.joined()
        let event = try summary([
            "type=SYSCALL msg=audit(1700000004.000:10): arch=c000003e syscall=257 success=yes exit=3 items=0 ppid=1 pid=11 auid=1001 uid=1001 comm=\"cp\" exe=\"/usr/bin/cp\" key=\(keys)\u{1D}ARCH=x86_64 SYSCALL=openat AUID=\"agent01\" UID=\"agent01\"",
            "type=EOE msg=audit(1700000004.000:10):",
        ])
        #expect(event.keys == ["holdfast-write", "exfil"])
        #expect(event.key == "holdfast-write")
        #expect(event.auidName == "agent01")
        #expect(event.syscallName == "openat")
    }

    @Test func aLoginIsOneEventWithItsMessageFields() throws {
        let event = try summary([
            "type=USER_LOGIN msg=audit(1700000005.000:11): pid=700 uid=0 auid=1001 ses=4 subj=unconfined msg='op=login acct=\"agent01\" exe=\"/usr/sbin/sshd\" hostname=10.0.0.5 addr=10.0.0.5 terminal=ssh res=failed'\u{1D}UID=\"root\" AUID=\"agent01\"",
        ])
        #expect(event.types == ["USER_LOGIN"])
        #expect(event.auid == 1001)
        #expect(event.uid == 0)
        #expect(event.operation == "login")
        #expect(event.account == "agent01")
        #expect(event.exe == "/usr/sbin/sshd")
        #expect(event.success == false)
        #expect(event.syscall == nil)
    }

    @Test func aNameThatIsNotUTF8KeepsItsBytesInHex() throws {
        let event = try summary([
            "type=SYSCALL msg=audit(1700000006.000:12): arch=c000003e syscall=257 success=yes exit=3 items=1 pid=12 auid=1001 uid=1001",
            "type=PATH msg=audit(1700000006.000:12): item=0 name=2F746D702FFF inode=3 nametype=CREATE",
            "type=EOE msg=audit(1700000006.000:12):",
        ])
        #expect(event.paths.first?.name == "/tmp/\u{FFFD}")
        #expect(event.paths.first?.nameHex == "2F746D702FFF")
        let json = try jsonObject(event)
        #expect((json["paths"] as? [[String: Any]])?.first?["name_hex"] as? String == "2F746D702FFF")
    }

    @Test func theTextLineEscapesControlCharacters() throws {
        let name = Array("/tmp/x\nFAKE".utf8).map { String(format: "%02X", $0) }.joined()
        let event = try summary([
            "type=SYSCALL msg=audit(1700000007.000:13): arch=c000003e syscall=257 success=yes exit=3 items=1 pid=12 auid=1001 uid=1001",
            "type=PATH msg=audit(1700000007.000:13): item=0 name=\(name) inode=3 nametype=CREATE",
            "type=EOE msg=audit(1700000007.000:13):",
        ])
        #expect(!event.line.contains("\n"))
        #expect(event.line.hasSuffix("CREATE /tmp/x\\u{a}FAKE"))
    }

    @Test func aNameCannotPassForTwoPathsOrForAnEscape() throws {
        func line(_ name: String) throws -> String {
            let hex = Array(name.utf8).map { String(format: "%02X", $0) }.joined()
            return try summary([
                "type=SYSCALL msg=audit(1700000008.000:14): arch=c000003e syscall=257 success=yes exit=3 items=1 pid=12 auid=1001 uid=1001",
                "type=PATH msg=audit(1700000008.000:14): item=0 name=\(hex) inode=3 nametype=NORMAL",
                "type=EOE msg=audit(1700000008.000:14):",
            ]).line
        }
        #expect(try line("/tmp/x\" CREATE \"/etc/shadow").hasSuffix(#"NORMAL "/tmp/x\" CREATE \"/etc/shadow""#))
        #expect(try line("/tmp/a\u{01}b") != (try line("/tmp/a\\u{1}b")))
        #expect(try line("/tmp/a\\u{1}b").hasSuffix(#"NORMAL /tmp/a\\u{1}b"#))
        #expect(try line("evil\u{202E}txt").hasSuffix(#"NORMAL evil\u{202e}txt"#))
        // Any kind of space quotes the name; so does a name that reads like null or nothing.
        #expect(try line("/tmp/a\u{2003}CREATE\u{2003}/etc/shadow").hasSuffix("NORMAL \"/tmp/a\u{2003}CREATE\u{2003}/etc/shadow\""))
        #expect(try line("(null)").hasSuffix(#"NORMAL "(null)""#))
    }
}
