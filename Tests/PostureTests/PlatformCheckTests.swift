import FileWatch
import Foundation
import HoldfastTestSupport
import PrintGuard
@testable import Posture
import Testing

@Suite struct PlatformCheckTests {
    static let efivars = "/sys/firmware/efi/efivars"

    @Test func secureBootFromEfivars() {
        let tree = FixtureTree.debian()
        #expect(run("secure-boot", .fixture(tree.root))?.status == .unknown)
        tree.write("\(Self.efivars)/SecureBoot-\(PlatformChecks.globalGUID)", bytes: [6, 0, 0, 0, 1])
        tree.write("\(Self.efivars)/SetupMode-\(PlatformChecks.globalGUID)", bytes: [6, 0, 0, 0, 0])
        let on = run("secure-boot", .fixture(tree.root))
        #expect(on?.status == .pass)
        #expect(on?.evidence == "SecureBoot=1, SetupMode=0")
        tree.write("\(Self.efivars)/SetupMode-\(PlatformChecks.globalGUID)", bytes: [6, 0, 0, 0, 1])
        #expect(run("secure-boot", .fixture(tree.root))?.status == .fail)
        tree.write("\(Self.efivars)/SecureBoot-\(PlatformChecks.globalGUID)", bytes: [6, 0, 0, 0, 0])
        #expect(run("secure-boot", .fixture(tree.root))?.evidence == "SecureBoot=0 (off)")
    }

    @Test func appArmorNeedsAnEnforcingProfile() {
        let tree = FixtureTree.debian()
        tree.write("/sys/kernel/security/lsm", "lockdown,capability,landlock,yama\n")
        #expect(run("mac", .fixture(tree.root))?.evidence == "neither AppArmor nor SELinux is active (LSMs: lockdown,capability,landlock,yama)")
        tree.write("/sys/module/apparmor/parameters/enabled", "Y\n")
        tree.write("/sys/kernel/security/apparmor/profiles", "/usr/sbin/cupsd (complain)\n")
        #expect(run("mac", .fixture(tree.root))?.status == .fail)
        tree.write("/sys/kernel/security/apparmor/profiles", "/usr/sbin/cupsd (enforce)\nnvidia_modprobe (enforce)\nman_groff (complain)\n")
        let result = run("mac", .fixture(tree.root))
        #expect(result?.status == .pass)
        #expect(result?.evidence == "AppArmor enabled: 2 profile(s) enforcing, 1 complaining")
    }

    @Test func selinuxPermissiveFails() {
        let tree = FixtureTree.debian()
        tree.write("/sys/fs/selinux/enforce", "0\n")
        #expect(run("mac", .fixture(tree.root))?.evidence == "SELinux permissive (enforce=0)")
    }

    @Test(arguments: [
        (ClockState(state: 0, status: 0x2001, maximumError: 12_000, estimatedError: 500), CheckStatus.pass, "synchronized; maxerror 12 ms, esterror 0 ms"),
        (ClockState(state: 5, status: 0x0041, maximumError: 16_000_000, estimatedError: 16_000_000), .fail, "the kernel clock is unsynchronized (STA_UNSYNC; no NTP client disciplines it); maxerror 16000 ms, esterror 16000 ms"),
        (ClockState(state: 0, status: 0x2001, maximumError: 3_000_000, estimatedError: 1_000), .fail, "synchronized, but maxerror 3000 ms, esterror 1 ms exceeds 1000 ms"),
    ])
    func clockFromAdjtimex(_ state: ClockState, _ status: CheckStatus, _ evidence: String) {
        let tree = FixtureTree.debian()
        let result = run("clock-sync", .fixture(tree.root, system: TestSystem(clockState: .success(state))))
        #expect(result?.status == status)
        #expect(result?.evidence == evidence)
    }

    @Test func ioUringSwitch() {
        let tree = FixtureTree.debian()
        #expect(run("io-uring", .fixture(tree.root))?.status == .unknown)
        tree.write("/proc/sys/kernel/io_uring_disabled", "0\n")
        #expect(run("io-uring", .fixture(tree.root))?.status == .fail)
        tree.write("/proc/sys/kernel/io_uring_disabled", "2\n")
        #expect(run("io-uring", .fixture(tree.root))?.status == .pass)
    }

    @Test func rootTreeSymlinksNeverLeaveTheTree() {
        let tree = FixtureTree.debian()
        // An absolute link inside the tree means the tree's /etc/passwd, not the machine's.
        tree.write("/etc/real-passwd", "root:x:0:0::/root:/bin/sh\ntoor:x:0:0::/root:/bin/sh\n")
        tree.link("/etc/passwd", to: "/etc/real-passwd")
        #expect(run("accounts-uid0", .fixture(tree.root))?.evidence == "UID 0 besides root: toor")
        tree.link("/etc/passwd", to: "../../../../../../../../etc/real-passwd")
        #expect(run("accounts-uid0", .fixture(tree.root))?.evidence == "UID 0 besides root: toor")
    }
}

@Suite struct AuditCheckTests {
    @Test func enabledDaemonRulesAndLost() {
        let tree = FixtureTree.debian()
        tree.write("/proc/4242/comm", "auditd\n")
        let context = PostureContext.fixture(tree.root)
        #expect(run("audit-enabled", context)?.status == .pass)
        #expect(run("auditd-running", context)?.evidence == "auditd pid 4242 registered with the kernel")
        #expect(run("audit-rules", context)?.evidence == "all 12 Holdfast audit rules loaded (key holdfast)")
        #expect(run("audit-lost", context)?.evidence == "no records lost since boot; backlog 0/8192")
    }

    @Test func failuresSayWhat() {
        let tree = FixtureTree.debian()
        tree.write("/proc/77/comm", "fake\n")
        let system = TestSystem(audit: .success(KernelAuditStatus(enabled: 0, pid: 77, lost: 15, backlog: 3, backlogLimit: 64)), missingRules: 2)
        let agent = AgentFacts(auditRules: try? AuditRuleSet(), lostAtLastReport: 10, printPolicy: nil, printQueues: nil, usbEnforced: true, lockdown: [:])
        let context = PostureContext.fixture(tree.root, system: system, agent: agent)
        #expect(run("audit-enabled", context)?.evidence == "kernel audit disabled (enabled=0)")
        #expect(run("auditd-running", context)?.evidence == "the kernel sends audit records to pid 77 (fake), not auditd")
        #expect(run("audit-rules", context)?.evidence.hasPrefix("2 of 12 Holdfast audit rules missing (first: -a always,exit -F arch=b64") == true)
        #expect(run("audit-lost", context)?.evidence == "5 record(s) lost since the last report (kernel counter 15); backlog 3/64")
        let noPrevious = PostureContext.fixture(tree.root, system: system)
        #expect(run("audit-lost", noPrevious)?.status == .unknown)
    }

    @Test func aDetachedTreeHasNoKernelAnswers() {
        let tree = FixtureTree.debian()
        let context = PostureContext(tree: RootTree(tree.root), system: DetachedSystem(), now: 0)
        for id in ["audit-enabled", "auditd-running", "audit-rules", "audit-lost", "firewall", "clock-sync"] {
            let result = run(id, context)
            #expect(result?.status == .unknown, "\(id)")
            #expect(result?.evidence == "kernel state is not read for a --root tree (it belongs to the running machine)", "\(id)")
        }
    }
}

@Suite struct EnforcementCheckTests {
    @Test func usbRootHubsAndTheUdevRule() {
        let tree = FixtureTree.debian()
        tree.write("/sys/bus/usb/devices/usb1/interface_authorized_default", "0\n")
        tree.write("/sys/bus/usb/devices/usb2/interface_authorized_default", "1\n")
        tree.write("/sys/bus/usb/devices/1-1/authorized", "1\n")
        let open = run("usb-default-deny", .fixture(tree.root))
        #expect(open?.status == .fail)
        #expect(open?.evidence == "1 of 2 root hub(s) default-deny; udev rule 70-holdfast-usb.rules missing (usb2 interface_authorized_default=1)")
        tree.write("/sys/bus/usb/devices/usb2/interface_authorized_default", "0\n")
        tree.write("/usr/lib/udev/rules.d/70-holdfast-usb.rules", "ACTION==\"add\", KERNEL==\"usb[0-9]*\", ATTR{interface_authorized_default}=\"0\"\n")
        let closed = run("usb-default-deny", .fixture(tree.root))
        #expect(closed?.status == .pass)
        #expect(closed?.evidence == "2 of 2 root hub(s) default-deny; udev rule /usr/lib/udev/rules.d/70-holdfast-usb.rules")
    }

    @Test func printQueuesMustBeGatedAndApproved() throws {
        let tree = FixtureTree.debian()
        #expect(run("print-restricted", .fixture(tree.root))?.evidence == "CUPS is not installed (no /etc/cups)")
        tree.write("/etc/cups/printers.conf", "<DefaultPrinter office>\nDeviceURI holdfast:ipp://printer.corp.example/ipp/print\n</DefaultPrinter>\n<Printer pdf>\nDeviceURI cups-pdf:/\n</Printer>\n", mode: 0o600)
        tree.write("/etc/cups/cups-files.conf", "FileDevice Yes\n")
        let result = run("print-restricted", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence == "2 queue(s): queue pdf is not behind the holdfast: gate; cups-files.conf sets FileDevice Yes (print-to-file)")
        tree.write("/etc/cups/printers.conf", "<DefaultPrinter office>\nDeviceURI holdfast:ipp://printer.corp.example/ipp/print\n</DefaultPrinter>\n")
        tree.write("/etc/cups/cups-files.conf", "FileDevice No\n")
        #expect(run("print-restricted", .fixture(tree.root))?.evidence == "1 queue(s), all gated; cupsd.conf hardened")
    }

    @Test func lockdownNeedsTheAgentAndMustBeEnforced() {
        let tree = FixtureTree.debian()
        #expect(run("lockdown-consistent", .fixture(tree.root))?.status == .unknown)
        let agent = AgentFacts(auditRules: nil, lostAtLastReport: nil, printPolicy: nil, printQueues: nil, usbEnforced: true, lockdown: [
            "usb": LockdownFact(recorded: true, enforced: false, detail: "writing authorized failed"), "print": LockdownFact(recorded: false, enforced: false),
        ])
        let result = run("lockdown-consistent", .fixture(tree.root, agent: agent))
        #expect(result?.status == .fail)
        #expect(result?.evidence == "usb recorded locked but not enforced (writing authorized failed)")
        let fine = AgentFacts(auditRules: nil, lostAtLastReport: nil, printPolicy: nil, printQueues: nil, usbEnforced: true, lockdown: ["usb": LockdownFact(recorded: true, enforced: true), "print": LockdownFact(recorded: false, enforced: false)])
        #expect(run("lockdown-consistent", .fixture(tree.root, agent: fine))?.evidence == "print open, usb locked, as recorded")
    }
}
