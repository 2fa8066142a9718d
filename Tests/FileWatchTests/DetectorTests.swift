@testable import FileWatch
import HoldfastCore
import Foundation
import Testing

/// Monday 2026-11-02 00:00 UTC: the generated histories start here.
let monday: Int64 = 1_793_577_600_000
let hourMS: Int64 = 3_600_000

func write(_ auid: UInt32, _ path: String, at time: Int64, target: TargetClass = .watchedRoot, operation: FileOperation = .create) -> FileActivity {
    FileActivity(
        time: time, node: nil, serial: 0, auid: auid, userName: "agent\(auid)", uid: auid, pid: 4242, exe: "/usr/bin/cp", comm: "cp",
        operation: operation, path: path, sourcePath: nil, device: nil, target: target, key: "holdfast-write"
    )
}

/// Feeds `perHour` distinct files in every working hour (Monday to Friday, 09:00 to 17:00) for
/// `weeks` weeks from `monday`; returns every output.
@discardableResult
func warm(_ detector: inout FileWatchDetector, _ auid: UInt32, weeks: Int, perHour: Int) -> [DetectorOutput] {
    var outputs: [DetectorOutput] = []
    for day in 0..<(weeks * 7) where day % 7 < 5 {
        for hour in 9..<17 {
            let start = monday + Int64(day) * 24 * hourMS + Int64(hour) * hourMS
            for file in 0..<perHour {
                outputs += detector.observe(write(auid, "/home/agent\(auid)/d\(day)/h\(hour)/f\(file).csv", at: start + Int64(file) * (hourMS / Int64(perHour))))
            }
        }
    }
    return outputs
}

func decisions(_ outputs: [DetectorOutput]) -> [FileDecision] {
    outputs.compactMap { if case .decision(let decision) = $0 { decision } else { nil } }
}

func summaries(_ outputs: [DetectorOutput]) -> [BurstSummary] {
    outputs.compactMap { if case .burstEnded(let summary) = $0 { summary } else { nil } }
}

@Suite struct DetectorTests {
    static func policy() throws -> FileWatchPolicy {
        var policy = try FileWatchPolicy(section: nil)
        policy.thresholds = [
            FileThreshold(id: "bulk", metric: .filesWritten, relative: 10, minimum: 200, action: .alert),
            FileThreshold(id: "bulk-block", metric: .filesWritten, absolute: 5_000, action: .block),
            FileThreshold(id: "removable", metric: .removableFilesWritten, minimum: 1, absolute: 1, action: .alert),
        ]
        return policy
    }

    @Test func fiftyAnHourThenFiveThousandAlertsAtTenTimesAndBlocksAtTheAbsolute() throws {
        var detector = FileWatchDetector(policy: try Self.policy())
        let quiet = warm(&detector, 1001, weeks: 4, perHour: 50)
        #expect(decisions(quiet).isEmpty)
        // Monday of week 5, 10:00: a 5,000-file copy in ten minutes.
        let start = monday + 28 * 24 * hourMS + 10 * hourMS
        var outputs: [DetectorOutput] = []
        for file in 0..<5_000 {
            outputs += detector.observe(write(1001, "/home/agent1001/export/f\(file).csv", at: start + Int64(file) * 120))
        }
        let found = decisions(outputs)
        #expect(found.map(\.threshold.id) == ["bulk", "bulk-block"])
        let alert = try #require(found.first)
        #expect(alert.observed == 500)
        #expect(alert.baseline == 50)
        #expect(alert.limit == 500)
        #expect(alert.basis == "relative")
        #expect(alert.auid == 1001)
        #expect(alert.samplePaths.last == "/home/agent1001/export/f499.csv")
        #expect(alert.samplePaths.count == 5)
        let block = try #require(found.last)
        #expect(block.threshold.action == .block)
        #expect(block.observed == 5_000)
        #expect(block.basis == "absolute")
        // The burst is one alert: when it is over, the count says how many writes were past it.
        let ended = summaries(detector.tick(now: start + 2 * hourMS))
        #expect(ended.map(\.threshold.id).sorted() == ["bulk", "bulk-block"])
        #expect(ended.first { $0.threshold.id == "bulk" }?.count == 4_501)
        #expect(ended.first { $0.threshold.id == "bulk" }?.alerts == 1)
        #expect(ended.first { $0.threshold.id == "bulk" }?.peak == 5_000)
    }

    @Test func aBurstDoesNotBecomeItsOwnBaseline() throws {
        var detector = FileWatchDetector(policy: try Self.policy())
        warm(&detector, 1001, weeks: 4, perHour: 50)
        let burst = monday + 28 * 24 * hourMS + 10 * hourMS
        for file in 0..<3_000 { _ = detector.observe(write(1001, "/home/agent1001/x/f\(file)", at: burst + Int64(file))) }
        // The next Monday at 10:00, the same 3,000 is as unusual as it was.
        let next = burst + 7 * 24 * hourMS
        var outputs: [DetectorOutput] = []
        for file in 0..<3_000 { outputs += detector.observe(write(1001, "/home/agent1001/y/f\(file)", at: next + Int64(file))) }
        #expect(decisions(outputs).first?.baseline == 50)
        #expect(decisions(outputs).first?.observed == 500)
    }

    @Test func aJobThatRecursEveryNightBecomesNormal() throws {
        var policy = try Self.policy()
        policy.thresholds = [FileThreshold(id: "bulk", metric: .filesWritten, relative: 10, minimum: 200, action: .alert)]
        var detector = FileWatchDetector(policy: policy)
        warm(&detector, 1001, weeks: 2, perHour: 50)
        var alertsPerNight: [Int] = []
        for night in 14..<35 {
            let start = monday + Int64(night) * 24 * hourMS + 2 * hourMS
            var outputs: [DetectorOutput] = []
            for file in 0..<1_000 { outputs += detector.observe(write(1001, "/home/agent1001/backup/n\(night)/f\(file)", at: start + Int64(file) * 1_000)) }
            alertsPerNight.append(decisions(outputs).count)
        }
        // The first nights are news, one alert each; within the day slot's memory it is normal.
        #expect(alertsPerNight.prefix(3) == [1, 1, 1])
        #expect(alertsPerNight.suffix(10).allSatisfy { $0 == 0 }, "\(alertsPerNight)")
    }

    @Test func relativeThresholdsWaitForTheWarmUpAbsoluteOnesDoNot() throws {
        var detector = FileWatchDetector(policy: try Self.policy())
        var outputs: [DetectorOutput] = []
        for file in 0..<1_000 { outputs += detector.observe(write(2002, "/home/agent2002/f\(file)", at: monday + Int64(file))) }
        #expect(decisions(outputs).isEmpty)
        for file in 0..<4_500 { outputs += detector.observe(write(2002, "/home/agent2002/g\(file)", at: monday + 10_000 + Int64(file))) }
        #expect(decisions(outputs).map(\.threshold.id) == ["bulk-block"])
        #expect(decisions(outputs).first?.baseline == nil)
    }

    @Test func aRemovableWriteAlertsOnItsOwnAndRepeatsFoldIntoOneAlert() throws {
        var detector = FileWatchDetector(policy: try Self.policy())
        var outputs: [DetectorOutput] = []
        for file in 0..<20 {
            outputs += detector.observe(write(1001, "/media/agent1001/STICK/f\(file)", at: monday + Int64(file) * 60_000, target: .removable))
        }
        let found = decisions(outputs)
        #expect(found.map(\.threshold.id) == ["removable"])
        #expect(found.first?.observed == 1)
        // An hour and a minute later the next write is a new alert that says how many were folded.
        outputs = detector.observe(write(1001, "/media/agent1001/STICK/late", at: monday + 61 * 60_000, target: .removable))
        #expect(decisions(outputs).map(\.folded) == [19])
    }

    @Test func theSlidingHourCrossesClockHours() throws {
        var detector = FileWatchDetector(policy: try Self.policy())
        warm(&detector, 1001, weeks: 2, perHour: 10)
        // 150 at 10:50-10:59 and 150 at 11:00-11:09 on a working day: 300 within an hour.
        let day = monday + 14 * 24 * hourMS
        var outputs: [DetectorOutput] = []
        for file in 0..<300 {
            outputs += detector.observe(write(1001, "/home/agent1001/z/f\(file)", at: day + 10 * hourMS + 50 * 60_000 + Int64(file) * 4_000))
        }
        #expect(decisions(outputs).first?.observed == 200)
        #expect(decisions(outputs).first?.baseline == 10)
    }

    @Test func rewritingOneFileCountsOnce() throws {
        var detector = FileWatchDetector(policy: try Self.policy())
        for index in 0..<1_000 { _ = detector.observe(write(1001, "/home/agent1001/log.txt", at: monday + Int64(index), operation: .writeOpen)) }
        #expect(detector.current(1001, .filesWritten).observed == 1)
        #expect(detector.current(1001, .directoriesTouched).observed == 1)
    }

    @Test func theBaselineExportsAndImportsWhole() throws {
        var detector = FileWatchDetector(policy: try Self.policy())
        warm(&detector, 1001, weeks: 3, perHour: 40)
        let bytes = detector.snapshot.encoded()
        let decoded = try BaselineSnapshot.decode(bytes)
        #expect(decoded == detector.snapshot)
        var fresh = FileWatchDetector(policy: try Self.policy())
        try fresh.importBaseline(decoded)
        let start = monday + 21 * 24 * hourMS + 10 * hourMS
        var outputs: [DetectorOutput] = []
        for file in 0..<500 { outputs += fresh.observe(write(1001, "/home/agent1001/q/f\(file)", at: start + Int64(file))) }
        #expect(decisions(outputs).first?.baseline == 40)
        #expect(decisions(outputs).first?.observed == 400)
        var elsewhere = try Self.policy()
        elsewhere.timeZone = "Asia/Manila"
        var shifted = FileWatchDetector(policy: elsewhere)
        #expect(throws: FileWatchPolicyError.self) { try shifted.importBaseline(decoded) }
        #expect(throws: FileWatchPolicyError.self) { try BaselineSnapshot.decode(Array(#"{"format":1,"time_zone":"UTC","users":{"root":{"first_seen":0,"last_folded_hour":0,"metrics":{}}}}"#.utf8)) }
    }

    @Test func hoursOfTheWeekAreCountedInThePolicysZone() throws {
        var manila = LocalHour(timeZone: try #require(TimeZone(identifier: "Asia/Manila")))
        // Monday 2026-11-02 00:00 UTC is Monday 08:00 in Manila.
        #expect(LocalHour.hourOfWeek(manila.hour(milliseconds: monday)) == 8)
        var utc = LocalHour(timeZone: try #require(TimeZone(identifier: "UTC")))
        #expect(LocalHour.hourOfWeek(utc.hour(milliseconds: monday)) == 0)
        #expect(LocalHour.hourOfWeek(utc.hour(milliseconds: monday - 1)) == 167)
        // New York's clocks went back on 2026-11-01: 00:00 UTC Monday is 19:00 Sunday there.
        var newYork = LocalHour(timeZone: try #require(TimeZone(identifier: "America/New_York")))
        #expect(LocalHour.hourOfWeek(newYork.hour(milliseconds: monday)) == 6 * 24 + 19)
    }
}

@Suite struct SerialGapTrackerTests {
    @Test func inOrderAndSlightlyShuffledSerialsAreComplete() {
        var tracker = SerialGapTracker()
        var serials = Array(UInt64(1_000)...UInt64(6_000))
        for index in stride(from: 0, to: serials.count - 8, by: 8) { serials[index..<(index + 8)].reverse() }
        for serial in serials { tracker.saw(node: nil, serial: serial) }
        #expect(tracker.missing == 0)
    }

    @Test func holesAreCountedOnceTheyLeaveTheWindow() {
        var tracker = SerialGapTracker()
        for serial in UInt64(1)...UInt64(3_000) where serial % 100 != 0 { tracker.saw(node: nil, serial: serial) }
        // 1…2999 without 100, 200, …, 2900: the window holds 1976…2999, so 100…1900 are out.
        #expect(tracker.missing == 19)
        tracker.saw(node: nil, serial: 10_000)
        // The window now holds 8977…10000: all 29 holes are out, and 3000…8976 were skipped;
        // 8977…9999 may still come.
        #expect(tracker.missing == 29 + 5_977)
    }

    @Test func aRebootOrAnotherNodeIsNotALoss() {
        var tracker = SerialGapTracker()
        for serial in UInt64(50_000)...UInt64(52_000) { tracker.saw(node: "ws1", serial: serial) }
        for serial in UInt64(1)...UInt64(2_000) { tracker.saw(node: "ws1", serial: serial) }
        for serial in UInt64(10)...UInt64(20) { tracker.saw(node: "ws2", serial: serial) }
        #expect(tracker.missing == 0)
        #expect(tracker.restarts == 1)
    }
}

/// What an adversarial review found, kept as tests.
@Suite struct DetectorEvasionTests {
    static func absolute(_ limit: Int, _ metric: FileMetric = .filesWritten) -> FileWatchPolicy {
        var policy = FileWatchPolicy()
        policy.thresholds = [FileThreshold(id: "bulk", metric: metric, absolute: limit, action: .alert)]
        return policy
    }

    @Test func oneNameUnderManyDirectoryDescriptorsIsManyFiles() {
        var detector = FileWatchDetector(policy: Self.absolute(100))
        var outputs: [DetectorOutput] = []
        for index in 0..<300 {
            // cwd "/", name "f": every record resolves to /f; the inodes tell the files apart.
            let activity = write(1001, "/f", at: monday + Int64(index)).identified(file: "fd:01:\(1_000 + index)", directory: "fd:01:\(5_000 + index)")
            outputs += detector.observe(activity)
        }
        #expect(decisions(outputs).first?.observed == 100)
        #expect(detector.current(1001, .directoriesTouched).observed == 300)
    }

    @Test func aPaceThatHoversAtTheLimitIsOneAlertPerInterval() {
        var detector = FileWatchDetector(policy: Self.absolute(500))
        var alerts = 0
        var ended = 0
        var time = monday
        for index in 0..<3_000 {  // six hours at a hair under 500 an hour
            for output in detector.observe(write(1001, "/home/a/f\(index)", at: time)) {
                if case .decision = output { alerts += 1 } else { ended += 1 }
            }
            time += hourMS / 500 + 5
            for output in detector.tick(now: time - 1) { if case .burstEnded = output { ended += 1 } }
        }
        #expect(alerts <= 6)
        #expect(ended <= 6)
    }

    @Test func aLongPathCostsNoMoreThanAShortOne() {
        var detector = FileWatchDetector(policy: Self.absolute(1_000_000))
        let deep = "/home/a/" + String(repeating: "d", count: 3_900)
        for index in 0..<20_000 { _ = detector.observe(write(1001, deep + "/\(index)", at: monday + Int64(index))) }
        #expect(detector.current(1001, .filesWritten).observed == 20_000)
    }

    @Test func anImportedBaselineOutsideSaneTimesIsRefused() {
        let extreme = #"{"format":1,"time_zone":"UTC","users":{"1001":{"first_seen":0,"last_folded_hour":9223372036854775807,"metrics":{}}}}"#
        #expect(throws: FileWatchPolicyError.self) { try BaselineSnapshot.decode(Array(extreme.utf8)) }
    }

    @Test func theWindowHoldsExactlyOneHour() {
        var detector = FileWatchDetector(policy: Self.absolute(1_000_000))
        _ = detector.observe(write(1001, "/home/a/first", at: monday))
        _ = detector.observe(write(1001, "/home/a/second", at: monday + hourMS))
        // (now - 1 h, now]: the first is exactly an hour old and out.
        #expect(detector.current(1001, .filesWritten).observed == 1)
    }
}

@Suite struct ClassifierEvasionTests {
    let classifier = FileActivityClassifier()

    @Test func namesThatAreNotUTF8StayDistinct() throws {
        func event(_ hex: String) throws -> AuditEventSummary {
            try summary([
                "type=SYSCALL msg=audit(1700000000.300:800): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=0 a2=241 a3=0 items=2 ppid=1 pid=2 auid=1001 uid=1001 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=1 comm=\"cp\" exe=\"/usr/bin/cp\" key=\"holdfast-write\"",
                "type=CWD msg=audit(1700000000.300:800): cwd=\"/home/a\"",
                "type=PATH msg=audit(1700000000.300:800): item=0 name=\"/home/a/\" inode=2 dev=fd:01 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT",
                "type=PATH msg=audit(1700000000.300:800): item=1 name=\(hex) inode=3 dev=fd:01 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=CREATE",
                "type=EOE msg=audit(1700000000.300:800):",
            ])
        }
        let first = try #require(classifier.classify(try event("788080")))
        let second = try #require(classifier.classify(try event("788081")))
        #expect(first.path == "/home/a/x\\x80\\x80")
        #expect(second.path == "/home/a/x\\x80\\x81")
        #expect(first.fileIdentity == "fd:01:3")
        #expect(first.directoryIdentity == "fd:01:2")
    }

    @Test func anOTmpfileOpenIsNotAWriteItsLinkatIsTheCreate() throws {
        let open = try syscallEvent(257, paths: [("/home/agent01/", "NORMAL", "fd:01")])
        // (syscallEvent writes regular-file modes; a directory item is what O_TMPFILE logs.)
        var directory = open
        directory.paths[0].mode = "040755"
        #expect(classifier.classify(directory) == nil)
        let link = try syscallEvent(265, paths: [("/home/agent01/", "PARENT", "fd:01"), ("/home/agent01/report.csv", "CREATE", "fd:01")])
        #expect(link.syscallName == "linkat")
        #expect(classifier.classify(link)?.operation == .create)
    }

    @Test func aMountByUdisksCountsThoughItHasNoLoginUid() throws {
        let mount = try syscallEvent(165, auid: "4294967295", paths: [("/media/alice/STICK", "NORMAL", "08:11")])
        #expect(classifier.classify(mount)?.operation == .mount)
        let open = try syscallEvent(257, auid: "4294967295", paths: [("/home/agent01/x", "NORMAL", "fd:01")])
        #expect(classifier.classify(open) == nil)
    }

    @Test func anEmptyThresholdListIsRefused() throws {
        #expect(throws: FileWatchPolicyError.self) { try FileWatchPolicy(section: .object(["thresholds": .array([])])) }
    }
}

@Suite struct BlockHoldTests {
    @Test func aBlockStillBeingCrossedAsksEveryTenSecondsWhetherItHolds() {
        var policy = FileWatchPolicy()
        policy.thresholds = [FileThreshold(id: "stop", metric: .filesWritten, absolute: 10, action: .block)]
        var detector = FileWatchDetector(policy: policy)
        var outputs: [DetectorOutput] = []
        for index in 0..<40 { outputs += detector.observe(write(1001, "/home/a/f\(index)", at: monday + Int64(index) * 1_000)) }
        #expect(decisions(outputs).count == 1)
        // The decision at the 10th file (9 s); the next crossing asks at once, then every 10 s.
        let held = outputs.compactMap { if case .blockHeld(let decision) = $0 { decision.time } else { nil } }
        #expect(held == [monday + 10_000, monday + 20_000, monday + 30_000])
    }

    @Test func aFirstWeekBurstIsNotTheBaselineOfItsHour() {
        var history = MetricBaseline()
        // Tuesday 10:00: 3,000 in the first week, 50 in the second.
        let tuesdayTen: Int64 = 24 * 4 + 34
        history.fold(3_000, hour: tuesdayTen, memoryWeeks: 6)
        history.fold(50, hour: tuesdayTen + 168, memoryWeeks: 6)
        // Two week samples do not speak yet, and the day slot's lower median is the 50.
        #expect(history.expected(hour: tuesdayTen + 336).level == 50)
    }
}

@Suite struct WindowMemoryTests {
    /// A rewrite loop on one file, and a delete flood, cost entries per minute and per second,
    /// not per event; the counts stay exact.
    @Test func floodsCostBoundedMemoryAndCountRight() {
        var distinct = SlidingWindow(distinct: true)
        for index in 0..<100_000 { _ = distinct.add("fd:01:42", at: monday + Int64(index) * 10) }  // 1,000 s
        #expect(distinct.count == 1)
        #expect(distinct.entries <= 17)
        var plain = SlidingWindow(distinct: false)
        for index in 0..<100_000 { _ = plain.add("", at: monday + Int64(index) * 10) }
        #expect(plain.count == 100_000)
        #expect(plain.entries == 1_000)
        plain.expire(through: monday + 500_000 - 1)
        #expect(plain.count == 50_000)
    }
}
