import Foundation
import HoldfastTestSupport
import Testing

/// `holdfast audit parse` as an analyst runs it: raw audit text on stdin or in files.
@Suite struct AuditParseTests {
    let holdfast = Products.path("holdfast")

    /// The six lines: a cp of a customer list onto a stick (also the demo's).
    static let copy = (try? String(contentsOfFile: Products.packageRoot() + "/Tests/Fixtures/audit/cp-to-stick.log", encoding: .utf8)) ?? ""

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
        try (Self.copy + "garbage line\ntype=PATH msg=audit(x:y): nope\n").writeReplacing(toFile: file)
        let counted = try runProcess(holdfast, ["audit", "parse", "--count", file])
        #expect(counted.status == 0)
        #expect(counted.stdout == "records 6, events 1, malformed 2 (badHeader 1, noType 1), late 0, unknown types 0, blank 0\n")
        let text = try runProcess(holdfast, ["audit", "parse", file])
        #expect(text.stdout.hasPrefix("1700000000.101 #500 openat ok auid=1001 /usr/bin/cp PARENT /media/agent01/STICK/ CREATE \"/media/agent01/STICK/customer list.csv\""))
        // Every file opens before anything prints: a missing last one costs no half output.
        let missing = try runProcess(holdfast, ["audit", "parse", file, directory.file("absent.log")])
        #expect(missing.status == 65)
        #expect(missing.stdout.isEmpty)
        let tooOld = try runProcess(holdfast, ["audit", "parse", "--max-age", "10000000000000000s", file])
        #expect(tooOld.status == 64)
        let both = try runProcess(holdfast, ["audit", "parse", "--json", "--count"])
        #expect(both.status == 64)
    }

    @Test func aLateRecordIsReportedOnStderrNotAmongTheEvents() throws {
        let late = "type=PATH msg=audit(1700000000.101:500): item=2 name=\"/tmp/x\" nametype=DELETE\n"
        let result = try runProcess(holdfast, ["audit", "parse"], stdin: Self.copy + late)
        #expect(result.stdout.split(separator: "\n").count == 1)
        #expect(result.stderr.contains("late record PATH for event 500 (its event was already printed)"))
        #expect(result.stderr.contains("late 1"))
    }

    @Test func theGroupHelpAndAnUnknownSubcommandSayWhereTheyAre() throws {
        let help = try runProcess(holdfast, ["audit", "--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("Usage: holdfast audit COMMAND"))
        let unknown = try runProcess(holdfast, ["audit", "frob"])
        #expect(unknown.status == 64)
        #expect(unknown.stderr.contains("unknown subcommand 'frob'"))
    }
}
