import FileWatch
import Foundation
import HoldfastTestSupport
import Testing

/// The six lines: one cp of a customer list onto a stick (Tests/Fixtures, also the demo's).
let copyEvent: [String] = ((try? String(contentsOfFile: Products.packageRoot() + "/Tests/Fixtures/audit/cp-to-stick.log", encoding: .utf8)) ?? "")
    .split(separator: "\n").map(String.init)

func events(_ outputs: [AuditAssembler.Output]) -> [AuditEvent] {
    outputs.compactMap { if case .event(let event) = $0 { event } else { nil } }
}

@Suite struct AuditAssemblerTests {
    @Test func theCopyIsOneEventEndedByProctitle() throws {
        var assembler = AuditAssembler()
        var outputs: [AuditAssembler.Output] = []
        for line in copyEvent { outputs += assembler.add(try record(line)) }
        let assembled = events(outputs)
        #expect(assembled.count == 1)
        #expect(assembled.first?.serial == 500)
        #expect(assembled.first?.types == ["SYSCALL", "CWD", "PATH", "PATH", "PROCTITLE"])
        #expect(assembled.first?.records[3].text("name") == "/media/agent01/STICK/customer list.csv")
        // The EOE after PROCTITLE belongs to the event already out: absorbed, not a new event.
        #expect(outputs.count == 1)
        #expect(assembler.flush().isEmpty)
        // Any other record for it is reported as late, never attached elsewhere.
        let late = try record("type=PATH msg=audit(1700000000.101:500): item=2 name=\"/tmp/x\" nametype=DELETE")
        #expect(assembler.add(late) == [.late(late)])
    }

    @Test func interleavedEventsComeOutWhole() throws {
        var assembler = AuditAssembler()
        let other = copyEvent.map { $0.replacingSerial(500, with: 501) }
        var outputs: [AuditAssembler.Output] = []
        for (first, second) in zip(copyEvent.dropLast(), other.dropLast()) {
            outputs += assembler.add(try record(first))
            outputs += assembler.add(try record(second))
        }
        let assembled = events(outputs)
        #expect(assembled.map(\.serial) == [500, 501])
        #expect(assembled.allSatisfy { $0.types == ["SYSCALL", "CWD", "PATH", "PATH", "PROCTITLE"] })
    }

    @Test func anEventWithoutItsEndComesOutAtTheEndOfInputOrWhenTooOld() throws {
        var assembler = AuditAssembler(maximumAgeMilliseconds: 1_000)
        #expect(events(assembler.add(try record(copyEvent[0]))).isEmpty)
        #expect(events(assembler.add(try record(copyEvent[1]))).isEmpty)
        // A record 1.5 s later ends the stale event.
        let later = try record("type=SYSCALL msg=audit(1700000001.601:600): syscall=87 success=yes exit=0 items=1 auid=1001")
        let aged = events(assembler.add(later))
        #expect(aged.map(\.serial) == [500])
        #expect(aged.first?.types == ["SYSCALL", "CWD"])
        #expect(assembler.flush().map(\.serial) == [600])
    }

    /// As a real auditd logged it: writing /proc/self/loginuid gives LOGIN, then the write's
    /// SYSCALL and PROCTITLE under the same serial (libauparse 3.0.9 splits these).
    @Test func aKernelLoginJoinsTheSyscallThatCausedIt() throws {
        var assembler = AuditAssembler()
        var outputs: [AuditAssembler.Output] = []
        outputs += assembler.add(try record("type=LOGIN msg=audit(1796351835.927:33): pid=30751 uid=0 old-auid=4294967295 auid=1001 tty=(none) old-ses=4294967295 ses=9 res=1"))
        outputs += assembler.add(try record("type=SYSCALL msg=audit(1796351835.927:33): arch=c000003e syscall=1 success=yes exit=4 items=0 pid=30751 auid=1001 uid=0"))
        outputs += assembler.add(try record("type=PROCTITLE msg=audit(1796351835.927:33): proctitle=\"python3\""))
        #expect(events(outputs).map(\.types) == [["LOGIN", "SYSCALL", "PROCTITLE"]])
        #expect(!AuditAssembler.singleRecordTypes.contains("LOGIN"))
        #expect(!AuditAssembler.singleRecordTypes.contains("CONFIG_CHANGE"))
        #expect(AuditAssembler.singleRecordTypes.isSuperset(of: ["USER_LOGIN", "USER_START", "CRED_ACQ", "DAEMON_START", "SERVICE_START", "ANOM_LOGIN_FAILURES"]))
        #expect(AuditAssembler.isSingleRecordType(1112))
        #expect(!AuditAssembler.isSingleRecordType(1300))
    }

    /// Serials start again after a reboot: the time tells the events apart.
    @Test func aRepeatedSerialAtAnotherTimeIsAnotherEvent() throws {
        var assembler = AuditAssembler()
        var outputs: [AuditAssembler.Output] = []
        for line in copyEvent { outputs += assembler.add(try record(line)) }
        for line in copyEvent { outputs += assembler.add(try record(line.replacingOccurrences(of: "1700000000.101:500", with: "1700086400.101:500"))) }
        #expect(events(outputs).map(\.time) == [1_700_000_000_101, 1_700_086_400_101])
        #expect(!outputs.contains { if case .late = $0 { true } else { false } })
    }

    /// One record from the future (a clock stepped forward and back) cuts at most the events
    /// open at that moment; the ones after it assemble normally.
    @Test func oneFutureRecordDoesNotEndEveryEventAfterIt() throws {
        var assembler = AuditAssembler(maximumAgeMilliseconds: 2_000)
        var outputs: [AuditAssembler.Output] = []
        outputs += assembler.add(try record("type=DAEMON_ABORT msg=audit(1900000000.000:5): op=x res=failed"))
        for line in copyEvent { outputs += assembler.add(try record(line)) }
        #expect(events(outputs).map(\.types) == [["DAEMON_ABORT"], ["SYSCALL", "CWD", "PATH", "PATH", "PROCTITLE"]])
    }

    @Test func aProctitleThatComesFirstEndsItsEventAtOnce() throws {
        var assembler = AuditAssembler()
        let outputs = assembler.add(try record("type=PROCTITLE msg=audit(2.000:9): proctitle=\"x\""))
        #expect(events(outputs).map(\.types) == [["PROCTITLE"]])
        let late = try record("type=SYSCALL msg=audit(2.000:9): syscall=2")
        #expect(assembler.add(late) == [.late(late)])
    }

    /// A flood of events that never end: the oldest go once too many are open.
    @Test func openEventsAreBounded() throws {
        var assembler = AuditAssembler(maximumAgeMilliseconds: 60_000)
        var emitted = 0
        for serial in 1...(AuditAssembler.maximumPending + 100) {
            emitted += events(assembler.add(try record("type=SYSCALL msg=audit(1700000000.000:\(serial)): syscall=2"))).count
        }
        #expect(assembler.pendingCount == AuditAssembler.maximumPending)
        #expect(emitted == 100)
        #expect(assembler.endedByLimit == 100)
    }

    /// An open event from the future (a clock stepped back since) is stale too: it must not hold
    /// up the events behind it.
    @Test func anOpenEventFromTheFutureEndsWhenTheClockIsBack() throws {
        var assembler = AuditAssembler(maximumAgeMilliseconds: 2_000)
        #expect(events(assembler.add(try record("type=SYSCALL msg=audit(1800000000.000:1): syscall=2"))).isEmpty)
        let ended = events(assembler.add(try record("type=SYSCALL msg=audit(1700000000.000:2): syscall=2")))
        #expect(ended.map(\.serial) == [1])
        #expect(events(assembler.add(try record("type=SYSCALL msg=audit(1700000003.000:3): syscall=2"))).map(\.serial) == [2])
    }

    /// One event that never ends and takes record after record: ended at its byte bound.
    @Test func anEventsBytesAreBounded() throws {
        var assembler = AuditAssembler()
        let big = "type=PATH msg=audit(1700000000.000:7): item=0 name=\"" + String(repeating: "a", count: 60_000) + "\" nametype=NORMAL"
        var outputs = assembler.add(try record("type=SYSCALL msg=audit(1700000000.000:7): syscall=2"))
        for _ in 0..<150 { outputs += assembler.add(try record(big)) }
        let ended = events(outputs)
        #expect(ended.count == 1)
        #expect((ended.first?.records.count ?? 0) < 150)
        #expect(assembler.endedByLimit == 1)
        #expect(outputs.contains { if case .late = $0 { true } else { false } })
    }

    @Test func nodeNamesThatAreNotUTF8StayApart() throws {
        let first = try AuditRecord.parse(Array("node=h".utf8) + [0xFF] + Array(" type=EOE msg=audit(1.000:1):".utf8)).get()
        let second = try AuditRecord.parse(Array("node=h".utf8) + [0xFE] + Array(" type=EOE msg=audit(1.000:1):".utf8)).get()
        #expect(first.node == "h\\xFF")
        #expect(first.node != second.node)
    }

    @Test func userSpaceMessagesAreWholeEventsAndNodesKeepSerialsApart() throws {
        var assembler = AuditAssembler()
        let login = events(assembler.add(try record("type=USER_LOGIN msg=audit(1700000000.200:77): pid=1 uid=0 auid=1001 msg='op=login res=success'")))
        #expect(login.map(\.types) == [["USER_LOGIN"]])
        _ = assembler.add(try record("node=a type=SYSCALL msg=audit(1700000000.300:9): syscall=2"))
        _ = assembler.add(try record("node=b type=SYSCALL msg=audit(1700000000.300:9): syscall=2"))
        let endA = events(assembler.add(try record("node=a type=EOE msg=audit(1700000000.300:9):")))
        #expect(endA.map(\.node) == ["a"])
        #expect(assembler.flush().map(\.node) == ["b"])
    }
}

extension String {
    func replacingSerial(_ old: Int, with new: Int) -> String {
        var result = self
        if let range = result.range(of: ":\(old))") { result.replaceSubrange(range, with: ":\(new))") }
        return result
    }
}
