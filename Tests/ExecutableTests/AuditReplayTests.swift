import Foundation
import HoldfastCore
import HoldfastTestSupport
import Testing

/// `holdfast audit replay` over generated history with known behaviour: no root, no daemon.
@Suite struct AuditReplayTests {
    let holdfast = Products.path("holdfast")
    /// Monday 2026-11-02 00:00 UTC.
    static let monday: Int64 = 1_793_577_600

    /// One successful create by login uid 1001, as auditd writes it (RAW).
    static func create(_ path: String, at milliseconds: Int64, serial: Int, inode: Int) -> String {
        let stamp = "audit(\(milliseconds / 1_000).\(String(format: "%03d", Int(milliseconds % 1_000))):\(serial))"
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        return """
            type=SYSCALL msg=\(stamp): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=1 a2=241 a3=1b6 items=2 ppid=1 pid=4242 auid=1001 uid=1001 gid=1001 euid=1001 suid=1001 fsuid=1001 egid=1001 sgid=1001 fsgid=1001 tty=pts0 ses=1 comm="cp" exe="/usr/bin/cp" key="holdfast-write"
            type=CWD msg=\(stamp): cwd="/home/agent"
            type=PATH msg=\(stamp): item=0 name="\(directory)/" inode=2 dev=fd:01 mode=040755 ouid=1001 ogid=1001 rdev=00:00 nametype=PARENT
            type=PATH msg=\(stamp): item=1 name="\(path)" inode=\(inode) dev=fd:01 mode=0100644 ouid=1001 ogid=1001 rdev=00:00 nametype=CREATE
            type=PROCTITLE msg=\(stamp): proctitle=6370

            """
    }

    /// Eight days of 20 files in each working hour (09:00-17:00 UTC, weekdays), then, when
    /// `burst`, 5,000 files onto a stick on the ninth day at 10:00.
    static func log(burst: Bool) -> String {
        var text = ""
        var serial = 100
        for day in 0..<8 where day % 7 < 5 {
            for hour in 9..<17 {
                for file in 0..<20 {
                    serial += 1
                    let time = (monday + Int64(day) * 86_400 + Int64(hour) * 3_600) * 1_000 + Int64(file) * 60_000
                    text += create("/home/agent/d\(day)/h\(hour)/f\(file).csv", at: time, serial: serial, inode: serial)
                }
            }
        }
        if burst {
            let start = (monday + 8 * 86_400 + 10 * 3_600) * 1_000
            for file in 0..<5_000 {
                serial += 1
                text += create("/media/agent/STICK/customer-\(file).csv", at: start + Int64(file) * 100, serial: serial, inode: serial)
            }
        }
        return text
    }

    static let policy = """
        {"filewatch": {"timezone": "UTC", "warm_up": "7d", "thresholds": [
          {"id": "bulk", "metric": "files_written", "relative": 10, "minimum": 100, "action": "alert"},
          {"id": "stick-block", "metric": "removable_files_written", "absolute": 1000, "action": "block"}]}}
        """

    func replay(_ log: String, _ extra: [String] = []) throws -> ProcessResult {
        let directory = TemporaryDirectory()
        try log.writeReplacing(toFile: directory.file("audit.log"))
        try Self.policy.writeReplacing(toFile: directory.file("policy.json"))
        return try runProcess(holdfast, ["audit", "replay", "--json", "--policy", directory.file("policy.json")] + extra + [directory.file("audit.log")])
    }

    func lines(_ result: ProcessResult) -> [JSONValue] {
        result.stdout.split(separator: "\n").compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
    }

    @Test func aSteadyUserProducesNoDecision() throws {
        let result = try replay(Self.log(burst: false))
        #expect(result.status == 0, "\(result.stderr)")
        let output = lines(result)
        #expect(output.map { $0["type"]?.stringValue } == ["summary"])
        // Six weekdays in the eight days, eight hours each, 20 files an hour.
        #expect(output.last?["users"]?["1001"]?["files_written"]?.intValue == Int64(6 * 8 * 20))
        #expect(output.last?["totals"]?["alerts"]?.intValue == 0)
    }

    @Test func aBurstToAStickAfterAWeekIsBlockedWithinTheBurstAndTheRunRepeatsExactly() throws {
        let log = Self.log(burst: true)
        let first = try replay(log)
        #expect(first.status == 0, "\(first.stderr)")
        let decisions = lines(first).filter { $0["type"]?.stringValue == "decision" }
        let block = try #require(decisions.first { $0["action"]?.stringValue == "block" })
        #expect(block["auid"]?.intValue == 1001)
        #expect(block["metric"]?.stringValue == "removable_files_written")
        #expect(block["observed"]?.intValue == 1_000)
        #expect(block["sample_paths"] == .array((995..<1_000).map { .string("/media/agent/STICK/customer-\($0).csv") }))
        // Within the burst: the 1,000th file, 99.9 s after it began.
        #expect(block["time"]?.stringValue == "2026-11-10T10:01:39.900Z")
        // The relative alert: 10 × the 20 files this hour of the day has seen.
        let alert = try #require(decisions.first { $0["threshold"]?.stringValue == "bulk" })
        #expect(alert["baseline"]?.intValue == 20)
        #expect(alert["observed"]?.intValue == 200)
        let summary = try #require(lines(first).last)
        #expect(summary["users"]?["1001"]?["blocks"]?.intValue == 1)
        #expect(summary["totals"]?["files_written"]?.intValue == Int64(960 + 5_000))
        // Same input, same policy: the same bytes.
        let second = try replay(log)
        #expect(second.stdout == first.stdout)
    }

    /// logrotate's compressed rotations are read as they are, and give what the plain file gives;
    /// a rotation split over two members (`cat a.gz b.gz`) too.
    @Test func aGzipRotationReplaysLikeThePlainLog() throws {
        let directory = TemporaryDirectory()
        let log = Self.log(burst: true)
        try log.writeReplacing(toFile: directory.file("audit.log"))
        try Self.policy.writeReplacing(toFile: directory.file("policy.json"))
        let plain = try runProcess(holdfast, ["audit", "replay", "--json", "--policy", directory.file("policy.json"), directory.file("audit.log")])
        #expect(try runProcess("/usr/bin/gzip", ["-k", directory.file("audit.log")]).status == 0)
        let zipped = try runProcess(holdfast, ["audit", "replay", "--json", "--policy", directory.file("policy.json"), directory.file("audit.log.gz")])
        #expect(zipped.status == 0, "\(zipped.stderr)")
        #expect(zipped.stdout == plain.stdout)
        // Two members: the first half of the lines and the rest, compressed apart and joined.
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false)
        let half = lines.count / 2
        try (lines[..<half].joined(separator: "\n") + "\n").writeReplacing(toFile: directory.file("a"))
        try lines[half...].joined(separator: "\n").writeReplacing(toFile: directory.file("b"))
        #expect(try runProcess("/usr/bin/gzip", [directory.file("a"), directory.file("b")]).status == 0)
        let joined = FileManager.default.contents(atPath: directory.file("a.gz")).map { Array($0) } ?? []
        let rest = FileManager.default.contents(atPath: directory.file("b.gz")).map { Array($0) } ?? []
        try Data(joined + rest).write(to: URL(fileURLWithPath: directory.file("joined.gz")))
        let members = try runProcess(holdfast, ["audit", "replay", "--json", "--policy", directory.file("policy.json"), directory.file("joined.gz")])
        #expect(members.stdout == plain.stdout)
        // A truncated file: what was read is replayed, and it is said.
        try Data(joined.prefix(joined.count / 2)).write(to: URL(fileURLWithPath: directory.file("cut.gz")))
        let cut = try runProcess(holdfast, ["audit", "replay", "--json", "--policy", directory.file("policy.json"), directory.file("cut.gz")])
        #expect(cut.status == 0)
        #expect(cut.stderr.contains("truncated"), "\(cut.stderr)")
    }

    /// A nightly job of 1,500 files at 02:00 from the first day, over two weeks of a 20-files-an-hour
    /// working day: learned, never blocked (its own hour of the day holds it); a 5,000-file copy at
    /// 10:00 on the last day is. Replayed as an unprivileged user, twice: the same bytes.
    @Test func aNightlyJobIsLearnedAndABurstIsNotAndNobodyCanReplayIt() throws {
        var text = ""
        var serial = 10
        for day in 0..<14 {
            let midnight = (Self.monday + Int64(day) * 86_400) * 1_000
            for file in 0..<1_500 {
                serial += 1
                text += Self.create("/home/agent/backup/n\(day)/f\(file)", at: midnight + 2 * 3_600_000 + Int64(file) * 1_000, serial: serial, inode: serial)
            }
            for hour in 9..<17 where day % 7 < 5 {
                for file in 0..<20 {
                    serial += 1
                    text += Self.create("/home/agent/d\(day)/h\(hour)/f\(file)", at: midnight + Int64(hour) * 3_600_000 + Int64(file) * 60_000, serial: serial, inode: serial)
                }
            }
        }
        let burst = (Self.monday + 13 * 86_400 + 10 * 3_600) * 1_000
        for file in 0..<5_000 {
            serial += 1
            text += Self.create("/home/agent/export/c\(file).csv", at: burst + Int64(file) * 100, serial: serial, inode: serial)
        }
        let directory = TemporaryDirectory()
        chmod(directory.path, 0o755)
        try text.writeReplacing(toFile: directory.file("audit.log"))
        try """
            {"filewatch": {"timezone": "UTC", "thresholds": [
              {"id": "bulk-block", "metric": "files_written", "relative": 10, "minimum": 2000, "action": "block"}]}}
            """.writeReplacing(toFile: directory.file("policy.json"))
        chmod(directory.file("audit.log"), 0o644)
        chmod(directory.file("policy.json"), 0o644)
        let argv = [holdfast, "audit", "replay", "--json", "--policy", directory.file("policy.json"), directory.file("audit.log")]
        let asNobody = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "nobody", "--"] : []
        let first = try runProcess(asNobody.first ?? holdfast, Array((asNobody + argv).dropFirst()))
        #expect(first.status == 0, "\(first.stderr)")
        let blocks = lines(first).filter { $0["type"]?.stringValue == "decision" && $0["action"]?.stringValue == "block" }
        // One block, on the last day's copy: never on the nightly job.
        #expect(blocks.count == 1, "\(blocks.map { ($0["time"]?.stringValue ?? "", $0["observed"]?.intValue ?? 0, $0["limit"]?.intValue ?? 0) })")
        #expect(blocks.first?["time"]?.stringValue?.hasPrefix("2026-11-15T10:") == true)
        #expect(blocks.first?["observed"]?.intValue == 2_000)
        #expect(blocks.first?["baseline"]?.intValue == 20)
        if case .array(let samples)? = blocks.first?["sample_paths"] { #expect(samples.last == .string("/home/agent/export/c1999.csv")) }
        let second = try runProcess(asNobody.first ?? holdfast, Array((asNobody + argv).dropFirst()))
        #expect(second.stdout == first.stdout)
    }

    @Test func garbageAndATruncatedLastLineAreSkippedAndCounted() throws {
        let log = "this is not an audit record\n" + Self.log(burst: false) + "type=SYSCALL msg=audit(17935"
        let result = try replay(log)
        #expect(result.status == 0)
        #expect(lines(result).map { $0["type"]?.stringValue } == ["summary"])
        #expect(result.stderr.contains("skipped 2 malformed line(s)"), "\(result.stderr)")
    }

    @Test func theLearnedBaselineIsSavedAndStartsTheNextReplay() throws {
        let directory = TemporaryDirectory()
        let saved = directory.file("baseline.json")
        let first = try replay(Self.log(burst: false), ["--save-baseline", saved])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(fileMode(saved) == 0o600)
        let baseline = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: saved)))
        #expect(baseline["users"]?["1001"] != nil)
        let elsewhere = try replay("", ["--load-baseline", saved, "--tz", "Asia/Manila"])
        #expect(elsewhere.status != 0)
        #expect(elsewhere.stderr.contains("learned in UTC"))
    }
}

extension AuditReplayTests {
    /// `--since` narrows what is reported, not what is learned: the relative alert of the burst
    /// still has its week of baseline.
    @Test func sinceReportsLessButLearnsFromEverything() throws {
        let burstDay = Self.monday + 8 * 86_400
        let narrowed = try replay(Self.log(burst: true), ["--since", String(burstDay)])
        #expect(narrowed.status == 0, "\(narrowed.stderr)")
        let decisions = lines(narrowed).filter { $0["type"]?.stringValue == "decision" }
        #expect(decisions.first { $0["threshold"]?.stringValue == "bulk" }?["baseline"]?.intValue == 20)
        #expect(lines(narrowed).last?["users"]?["1001"]?["events"]?.intValue == 5_000)
        let backwards = try runProcess(holdfast, ["audit", "replay", "--since", "200", "--until", "100", "-"])
        #expect(backwards.status == 64)
        let unwritable = try replay(Self.log(burst: false), ["--save-baseline", "/nonexistent-\(getpid())/b.json"])
        #expect(unwritable.status == 1)
        #expect(unwritable.stdout.isEmpty)
    }
}
