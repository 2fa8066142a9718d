import Foundation
import HoldfastTestSupport
import Testing

/// `holdfast audit parse` as an analyst runs it: raw audit text on stdin or in files.
@Suite struct AuditParseTests {
    let holdfast = Products.path("holdfast")

    /// The six lines: a cp of a customer list onto a stick.
    static let copy = """
        type=SYSCALL msg=audit(1700000000.101:500): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=55d0 a2=241 a3=1b6 items=2 ppid=900 pid=901 auid=1001 uid=1001 gid=1001 euid=1001 suid=1001 fsuid=1001 egid=1001 sgid=1001 fsgid=1001 tty=pts0 ses=3 comm="cp" exe="/usr/bin/cp" key="holdfast-write"
        type=CWD msg=audit(1700000000.101:500): cwd="/home/agent01"
        type=PATH msg=audit(1700000000.101:500): item=0 name="/media/agent01/STICK/" inode=2 dev=08:11 mode=040755 ouid=1001 ogid=1001 rdev=00:00 nametype=PARENT
        type=PATH msg=audit(1700000000.101:500): item=1 name=2F6D656469612F6167656E7430312F535449434B2F637573746F6D6572206C6973742E637376 inode=12 dev=08:11 mode=0100644 ouid=1001 ogid=1001 rdev=00:00 nametype=CREATE
        type=PROCTITLE msg=audit(1700000000.101:500): proctitle=6370002F686F6D652F6167656E7430312F637573746F6D6572206C6973742E637376002F6D656469612F6167656E7430312F535449434B2F
        type=EOE msg=audit(1700000000.101:500):

        """

    func objects(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
    }

    @Test func theAcceptanceLinesPrintOneEventWithTheirValues() throws {
        let result = try runProcess(holdfast, ["audit", "parse", "--json"], stdin: Self.copy)
        #expect(result.status == 0)
        let events = try objects(result.stdout)
        #expect(events.count == 1)
        let event = try #require(events.first)
        #expect(event["serial"] as? Int == 500)
        #expect(event["auid"] as? Int == 1001)
        #expect(event["exe"] as? String == "/usr/bin/cp")
        let paths = try #require(event["paths"] as? [[String: Any]])
        #expect(paths.map { $0["name"] as? String } == ["/media/agent01/STICK/", "/media/agent01/STICK/customer list.csv"])
        #expect(paths.map { $0["nametype"] as? String } == ["PARENT", "CREATE"])
        #expect(event["proctitle"] as? [String] == ["cp", "/home/agent01/customer list.csv", "/media/agent01/STICK/"])
        #expect(result.stderr.contains("records 6, events 1, malformed 0"))
    }

    @Test func interleavedEventsAndAnEventWithoutEOEComeOutRight() throws {
        let lines = Self.copy.split(separator: "\n").map(String.init)
        let other = lines.map { $0.replacingOccurrences(of: ":500)", with: ":501)").replacingOccurrences(of: "pid=901", with: "pid=902") }
        // Line by line: 500, 501, 500, 501, …; the last event loses its PROCTITLE and EOE.
        var mixed: [String] = []
        for (first, second) in zip(lines, other) {
            mixed.append(first)
            mixed.append(second)
        }
        mixed.append("type=SYSCALL msg=audit(1700000000.900:502): arch=c000003e syscall=87 success=yes exit=0 items=0 ppid=1 pid=903 auid=1002 uid=1002")
        let result = try runProcess(holdfast, ["audit", "parse", "--json"], stdin: mixed.joined(separator: "\n") + "\n")
        let events = try objects(result.stdout)
        #expect(events.map { $0["serial"] as? Int } == [500, 501, 502])
        #expect(events.map { $0["pid"] as? Int } == [901, 902, 903])
        #expect(events.prefix(2).allSatisfy { ($0["paths"] as? [Any])?.count == 2 })
        #expect(events.last?["syscall_name"] as? String == "unlink")
    }

    @Test func countsAndTheTextViewWorkOnFilesAndGarbage() throws {
        let directory = TemporaryDirectory()
        let file = directory.file("audit.log")
        try (Self.copy + "garbage line\ntype=PATH msg=audit(x:y): nope\n").write(toFile: file, atomically: true, encoding: .utf8)
        let counted = try runProcess(holdfast, ["audit", "parse", "--count", file])
        #expect(counted.status == 0)
        #expect(counted.stdout == "records 6, events 1, malformed 2 (badHeader 1, noType 1), late 0, unknown types 0\n")
        let text = try runProcess(holdfast, ["audit", "parse", file])
        #expect(text.stdout.hasPrefix("1700000000.101 #500 openat ok auid=1001 /usr/bin/cp PARENT /media/agent01/STICK/ CREATE \"/media/agent01/STICK/customer list.csv\""))
        let missing = try runProcess(holdfast, ["audit", "parse", directory.file("absent.log")])
        #expect(missing.status == 65)
        let both = try runProcess(holdfast, ["audit", "parse", "--json", "--count"])
        #expect(both.status == 64)
    }
}
