import FileWatch
import Foundation
import Testing

/// The issue's six lines: one cp of a customer list onto a stick.
let copyEvent = [
    #"type=SYSCALL msg=audit(1700000000.101:500): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=55d0 a2=241 a3=1b6 items=2 ppid=900 pid=901 auid=1001 uid=1001 gid=1001 euid=1001 suid=1001 fsuid=1001 egid=1001 sgid=1001 fsgid=1001 tty=pts0 ses=3 comm="cp" exe="/usr/bin/cp" key="holdfast-write""#,
    #"type=CWD msg=audit(1700000000.101:500): cwd="/home/agent01""#,
    #"type=PATH msg=audit(1700000000.101:500): item=0 name="/media/agent01/STICK/" inode=2 dev=08:11 mode=040755 ouid=1001 ogid=1001 rdev=00:00 nametype=PARENT"#,
    "type=PATH msg=audit(1700000000.101:500): item=1 name=2F6D656469612F6167656E7430312F535449434B2F637573746F6D6572206C6973742E637376 inode=12 dev=08:11 mode=0100644 ouid=1001 ogid=1001 rdev=00:00 nametype=CREATE",
    "type=PROCTITLE msg=audit(1700000000.101:500): proctitle=6370002F686F6D652F6167656E7430312F637573746F6D6572206C6973742E637376002F6D656469612F6167656E7430312F535449434B2F",
    "type=EOE msg=audit(1700000000.101:500):",
]

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
