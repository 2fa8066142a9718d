import Foundation
import HoldfastTestSupport
@testable import Posture
import Testing

/// Cases a review found that passed although the machine was not compliant, hung, or failed
/// where the check could not read its input. Each states the right answer.
@Suite struct SSHRegressionTests {
    static func tree(_ main: String, dropIns: [String: String] = [:]) -> FixtureTree {
        let tree = SSHCheckTests.tree(main, dropIns: dropIns)
        return tree
    }

    @Test(arguments: [
        ("crlf", "PasswordAuthentication yes\r\nPermitRootLogin yes\r\n"),
        ("trailing comment", "PasswordAuthentication yes # temporary\n"),
        ("single quotes", "PasswordAuthentication 'yes'\n"),
        ("alias first", "ChallengeResponseAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM yes\nPasswordAuthentication no\n"),
        ("match all", "PasswordAuthentication no\nKbdInteractiveAuthentication no\nMatch all\nPasswordAuthentication yes\n"),
    ])
    func passwordsAreSeen(_ name: String, _ dropIn: String) {
        let tree = Self.tree("Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n", dropIns: ["10-x.conf": dropIn])
        #expect(run("ssh-password-login", .fixture(tree.root))?.status == .fail, "\(name)")
    }

    @Test func crlfDoesNotHideTheRootLine() {
        let tree = Self.tree("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n", dropIns: ["10-x.conf": "PasswordAuthentication no\r\nPermitRootLogin yes\r\n"])
        #expect(run("ssh-root-login", .fixture(tree.root))?.evidence == "PermitRootLogin yes")
    }

    @Test func includesWithBracketsAndDirectoryWildcardsAreRead() {
        let tree = Self.tree("Include /etc/ssh/sshd_config.d/[0-9]*.conf /etc/ssh/conf/*/*.conf\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n")
        tree.write("/etc/ssh/sshd_config.d/50-open.conf", "PasswordAuthentication yes\n")
        tree.write("/etc/ssh/conf/a/root.conf", "PermitRootLogin yes\n")
        #expect(run("ssh-password-login", .fixture(tree.root))?.status == .fail)
        #expect(run("ssh-root-login", .fixture(tree.root))?.evidence == "PermitRootLogin yes")
    }

    /// A pattern that made a backtracking matcher take minutes: answered at once now.
    @Test func aHostileGlobIsLinear() {
        let name = String(repeating: "a", count: 40)
        #expect(!Wildcard.matches("*a*a*a*a*a*a*a*a*a*a*b", name))
        #expect(Wildcard.matches("*a*a*a*a*a*a*a*a*a*a", name))
        #expect(Wildcard.matches("[0-9]*.conf", "50-x.conf") && !Wildcard.matches("[!0-9]*.conf", "50-x.conf") && Wildcard.matches("?x", "ax"))
    }
}

@Suite struct AccountAndAptRegressionTests {
    @Test(arguments: ["toor:x:00:0::/root:/bin/bash", "toor:x:+0:0::/root:/bin/bash", "toor:x: 0:0::/root:/bin/bash"])
    func uidZeroSpelledDifferently(_ line: String) {
        let tree = FixtureTree.debian()
        tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n" + line + "\n")
        #expect(run("accounts-uid0", .fixture(tree.root))?.evidence == "UID 0 besides root: toor")
    }

    @Test func crlfDoesNotHideAnAccount() {
        let tree = FixtureTree.debian()
        tree.write("/etc/nsswitch.conf", "passwd: files\nshadow: compat\n")
        tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\r\nhid:x:0:0::/:/bin/sh\n")
        tree.write("/etc/shadow", "root:$y$a:19000::::::\r\neve::19000::::::\n+::::::::\n", mode: 0o640)
        #expect(run("accounts-uid0", .fixture(tree.root))?.evidence == "UID 0 besides root: hid")
        #expect(run("accounts-empty-password", .fixture(tree.root))?.evidence == "empty password: eve")
    }

    static func unattendedTree() -> FixtureTree {
        let tree = FixtureTree.debian()
        tree.write("/var/lib/dpkg/status", FixtureTree.dpkgStatus([("unattended-upgrades", "2.9.1+nmu3", "all")]))
        tree.write("/etc/apt/apt.conf.d/20auto-upgrades", "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n")
        return tree
    }

    @Test(arguments: [
        ("99local", "APT::Periodic::Update-Package-Lists \"1\"; # keep fresh\nAPT::Periodic::Unattended-Upgrade \"0\";\n"),
        ("99clear", "#clear APT::Periodic::Unattended-Upgrade;\n"),
        ("99enable", "APT::Periodic::Enable \"0\";\n"),
        ("99:local", "APT::Periodic::Unattended-Upgrade \"0\";\n"),
    ])
    func aptSwitchesUpgradesOff(_ name: String, _ text: String) {
        let tree = Self.unattendedTree()
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .pass)
        tree.write("/etc/apt/apt.conf.d/" + name, text)
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .fail, "\(name)")
    }

    @Test func includeAndMaskedTimers() {
        let tree = Self.unattendedTree()
        tree.write("/etc/apt/off.conf", "APT::Periodic::Unattended-Upgrade \"0\";\n")
        tree.write("/etc/apt/apt.conf.d/99inc", "#include \"/etc/apt/off.conf\";\n")
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .fail)
        tree.remove("/etc/apt/apt.conf.d/99inc")
        // apt ignores a part whose name is not ASCII: it does not count either way.
        tree.write("/etc/apt/apt.conf.d/99été", "APT::Periodic::Unattended-Upgrade \"0\";\n")
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .pass)
        tree.link("/etc/systemd/system/apt-daily-upgrade.timer", to: "/dev/null")
        let masked = run("unattended-upgrades", .fixture(tree.root))
        #expect(masked?.status == .fail)
        #expect(masked?.evidence.hasSuffix("masked: apt-daily-upgrade.timer") == true)
    }

    @Test func halfConfiguredPackagesStillCountAndEmptyListsAreUnknown() throws {
        let tree = FixtureTree.debian()
        try PatchCheckTests.aptLists(tree, compress: false)
        tree.write("/var/lib/dpkg/status", FixtureTree.dpkgStatus([("openssl", "3.0.11-1~deb12u1", "amd64")]).replacingOccurrences(of: "install ok installed", with: "install ok triggers-pending"))
        #expect(run("security-updates", .fixture(tree.root))?.evidence.hasPrefix("1 pending security update(s): openssl 3.0.11-1~deb12u1") == true)
        tree.write("\(PatchCheckTests.lists)/\(PatchCheckTests.securityPrefix)_main_binary-amd64_Packages", "garbage without stanzas\n")
        #expect(run("security-updates", .fixture(tree.root))?.status == .unknown)
    }

    @Test func gzipListsAreReadAndXZIsUnknown() throws {
        let tree = FixtureTree.debian()
        try PatchCheckTests.aptLists(tree, compress: false)
        let name = tree.root + "\(PatchCheckTests.lists)/\(PatchCheckTests.securityPrefix)_main_binary-amd64_Packages"
        #expect(try runProcess("/usr/bin/gzip", ["-n", name]).status == 0)
        #expect(run("security-updates", .fixture(tree.root))?.status == .fail)
        #expect(try runProcess("/usr/bin/mv", [name + ".gz", name + ".xz"]).status == 0)
        #expect(run("security-updates", .fixture(tree.root))?.status == .unknown)
    }

    @Test func aStampFromTheFutureIsUnknown() {
        let tree = FixtureTree.debian()
        tree.write("/var/lib/apt/periodic/update-success-stamp", "")
        var times = [timeval(tv_sec: 1_800_000_000 + 86_400, tv_usec: 0), timeval(tv_sec: 1_800_000_000 + 86_400, tv_usec: 0)]
        utimes(tree.root + "/var/lib/apt/periodic/update-success-stamp", &times)
        #expect(run("apt-updated", .fixture(tree.root, now: 1_800_000_000))?.status == .unknown)
    }
}

@Suite struct DiskRegressionTests {
    @Test func integrityOnlyAndFakeCryptMappingsAreNotEncryption() {
        let integrity = FixtureTree.debian()
        integrity.deviceMapper(0, name: "data", uuid: "CRYPT-INTEGRITY-abc-data", slaves: ["/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1"])
        integrity.mountRoot(on: "253:0", source: "/dev/mapper/data")
        #expect(run("disk-encryption", .fixture(integrity.root))?.evidence == "/ on vda1 (ext4), not encrypted")
        let tree = FixtureTree.luksRoot()
        let linear = run("disk-encryption", .fixture(tree.root, system: TestSystem(tables: ["vda2_crypt": [DeviceMapperTarget(type: "linear", firstWord: "254:2")]])))
        #expect(linear?.status == .fail)
        #expect(linear?.evidence == "/ on dm-0 (vda2_crypt: uuid CRYPT-LUKS2 but its table is linear) (ext4), not encrypted")
        let null = run("disk-encryption", .fixture(tree.root, system: TestSystem(tables: ["vda2_crypt": [DeviceMapperTarget(type: "crypt", firstWord: "cipher_null-ecb")]])))
        #expect(null?.status == .fail)
    }

    @Test func aReadOnlyRootAndAPlainDiskHiddenUnderATmpfsAreNotSkippedAsPasses() {
        let readOnly = FixtureTree.debian()
        readOnly.mountRoot(on: "254:1", source: "/dev/vda1")
        readOnly.write("/proc/self/mountinfo", "22 1 254:1 / / ro,relatime - ext4 /dev/vda1 ro\n")
        #expect(run("disk-encryption", .fixture(readOnly.root))?.status == .unknown)
        let hidden = FixtureTree.luksRoot()
        hidden.blockDevice("vdb", partition: "vdb1", major: 254, minor: 17)
        hidden.mountRoot(on: "253:1", source: "/dev/mapper/vg-root", extra: ["31 22 254:17 / /home rw - ext4 /dev/vdb1 rw", "32 31 0:50 / /home rw - tmpfs tmpfs rw"])
        #expect(run("disk-encryption", .fixture(hidden.root))?.status == .fail)
    }

    @Test func otherDataDisksAndSwapAreChecked() {
        let tree = FixtureTree.luksRoot()
        tree.blockDevice("vdb", partition: "vdb1", major: 254, minor: 17)
        tree.mountRoot(on: "253:1", source: "/dev/mapper/vg-root", extra: ["31 22 254:17 / /srv rw - ext4 /dev/vdb1 rw"])
        #expect(run("disk-encryption", .fixture(tree.root))?.evidence.contains("/srv on vdb1 (ext4), not encrypted") == true)
        let swap = FixtureTree.luksRoot()
        swap.blockDevice("vdc", partition: "vdc1", major: 254, minor: 33)
        swap.write("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/vdc1 partition 1048572 0 -2\n/dev/zram0 partition 1048572 0 100\n")
        let result = run("disk-encryption", .fixture(swap.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence.hasSuffix("swap on vdc1, not encrypted") == true)
    }

    @Test func aMultiDeviceBtrfsNeedsEveryDeviceEncrypted() {
        let tree = FixtureTree.luksRoot()
        tree.blockDevice("vdb", partition: "vdb1", major: 254, minor: 17)
        tree.link("/sys/fs/btrfs/1234/devices/dm-0", to: "../../../../devices/virtual/block/dm-0")
        tree.link("/sys/fs/btrfs/1234/devices/vdb1", to: "../../../../devices/pci0000:00/0000:00:04.0/virtio1/block/vdb/vdb1")
        tree.mountRoot(on: "0:31", source: "/dev/mapper/vda2_crypt", fileSystem: "btrfs")
        #expect(run("disk-encryption", .fixture(tree.root))?.evidence == "/ on vdb1 (btrfs), not encrypted")
    }

    @Test func aLoopInTheSlavesEndsAtOnce() {
        let tree = FixtureTree.debian()
        tree.deviceMapper(0, name: "loop", uuid: "LVM-x", slaves: [])
        for name in ["s1", "s2", "s3"] { tree.link("/sys/devices/virtual/block/dm-0/slaves/" + name, to: "../../dm-0") }
        tree.mountRoot(on: "253:0", source: "/dev/mapper/loop")
        let result = run("disk-encryption", .fixture(tree.root))
        #expect(result?.status == .unknown)
        #expect(result?.evidence == "/ on dm-0: the block device stack has no bottom (its slaves loop)")
    }
}

@Suite struct FirewallRegressionTests {
    func check(_ items: String) -> CheckResult? {
        let tree = FixtureTree.debian()
        tree.write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0\n")
        tree.write("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", "0\n")
        return run("firewall", .fixture(tree.root, system: TestSystem(ruleset: .success(FirewallTests.ruleset(items)))))
    }

    @Test func aDormantTableFiltersNothing() {
        let result = check(#"{"table": {"family": "inet", "name": "filter", "handle": 1, "flags": "dormant"}}, {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}"#)
        #expect(result?.status == .fail)
    }

    @Test func anUnconditionalAcceptBeforeTheDropOpensTheChain() {
        let result = check(FirewallTests.inetDrop + #", {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2, "expr": [{"accept": null}]}}"#)
        #expect(result?.status == .fail)
        #expect(result?.evidence.hasPrefix("inet filter/input an unconditional accept before any drop") == true)
    }

    /// firewalld's shape: the input chain jumps to its zones and rejects what they return.
    @Test func jumpsAreFollowed() {
        let base = #"{"table": {"family": "inet", "name": "firewalld", "handle": 1}}, {"chain": {"family": "inet", "table": "firewalld", "name": "filter_INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 10, "policy": "accept"}}, {"chain": {"family": "inet", "table": "firewalld", "name": "zones", "handle": 2}}"#
        let zoneAccepts = #", {"rule": {"family": "inet", "table": "firewalld", "chain": "zones", "handle": 3, "expr": [{"accept": null}]}}"#
        let jump = #", {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_INPUT", "handle": 4, "expr": [{"jump": {"target": "zones"}}]}}, {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_INPUT", "handle": 5, "expr": [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]}}"#
        #expect(check(base + jump)?.status == .pass)
        #expect(check(base + zoneAccepts + jump)?.status == .fail)
    }

    @Test func ipv6IsOffOnlyWhenEveryInterfaceHasItOff() {
        let tree = FixtureTree.debian()
        tree.write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1\n")
        tree.write("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", "0\n")
        let ipOnly = FirewallTests.ruleset(FirewallTests.ipAccept + ", " + FirewallTests.ipDropRule)
        #expect(run("firewall", .fixture(tree.root, system: TestSystem(ruleset: .success(ipOnly))))?.status == .fail)
        tree.write("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", "1\n")
        #expect(run("firewall", .fixture(tree.root, system: TestSystem(ruleset: .success(ipOnly))))?.status == .pass)
    }
}

@Suite struct OtherRegressionTests {
    @Test func aMaskedOrForeignUdevRuleIsNotTheRule() {
        let tree = FixtureTree.debian()
        tree.write("/sys/bus/usb/devices/usb1/interface_authorized_default", "0\n")
        tree.write("/usr/lib/udev/rules.d/70-holdfast-usb.rules", "ATTR{interface_authorized_default}=\"0\"\n")
        #expect(run("usb-default-deny", .fixture(tree.root))?.status == .pass)
        tree.link("/etc/udev/rules.d/70-holdfast-usb.rules", to: "/dev/null")
        let masked = run("usb-default-deny", .fixture(tree.root))
        #expect(masked?.status == .fail)
        #expect(masked?.evidence == "1 of 1 root hub(s) default-deny; udev rule /etc/udev/rules.d/70-holdfast-usb.rules masked (a link to /dev/null)")
        tree.remove("/etc/udev/rules.d/70-holdfast-usb.rules")
        tree.write("/etc/udev/rules.d/70-holdfast-usb.rules", "")
        #expect(run("usb-default-deny", .fixture(tree.root))?.status == .fail)
    }

    @Test func shimValidationOffAndAMissingSetupMode() {
        let tree = FixtureTree.debian()
        let efivars = PlatformCheckTests.efivars
        tree.write("\(efivars)/SecureBoot-\(PlatformChecks.globalGUID)", bytes: [6, 0, 0, 0, 1])
        #expect(run("secure-boot", .fixture(tree.root))?.status == .unknown)
        tree.write("\(efivars)/SetupMode-\(PlatformChecks.globalGUID)", bytes: [6, 0, 0, 0, 0])
        tree.write("\(efivars)/MokSBStateRT-605dab50-e046-4300-abb6-3dd810dd8b23", bytes: [6, 0, 0, 0, 1])
        #expect(run("secure-boot", .fixture(tree.root))?.status == .fail)
    }

    @Test func screenLockSettingsMustReachUserSessions() {
        let tree = FixtureTree.debian()
        tree.write("/usr/share/xsessions/gnome.desktop", "[Desktop Entry]\n")
        tree.write("/etc/dconf/db/gdm.d/00-lock", "[org/gnome/desktop/session]\nidle-delay=uint32 300\n[org/gnome/desktop/screensaver]\nlock-enabled=true\n")
        tree.write("/etc/dconf/db/gdm.d/locks/lock", "/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-enabled\n/org/gnome/desktop/screensaver/lock-delay\n/org/gnome/desktop/lockdown/disable-lock-screen\n")
        tree.write("/etc/dconf/db/gdm", "compiled")
        #expect(run("screen-lock", .fixture(tree.root))?.status == .fail)
        tree.write("/etc/dconf/profile/user", "user-db:user\nsystem-db:gdm\n")
        #expect(run("screen-lock", .fixture(tree.root))?.status == .pass)
        tree.write("/etc/dconf/db/gdm.d/01-delay", "[org/gnome/desktop/screensaver]\nlock-delay=uint32 86400\n")
        tree.write("/etc/dconf/db/gdm", "compiled")
        #expect(run("screen-lock", .fixture(tree.root))?.status == .fail)
        tree.remove("/etc/dconf/db/gdm.d/01-delay")
        tree.write("/etc/dconf/db/gdm", "compiled")
        tree.write("/usr/share/xsessions/xfce.desktop", "[Desktop Entry]\n")
        #expect(run("screen-lock", .fixture(tree.root))?.status == .unknown)
    }

    @Test func permissionsOfParentsAndSymlinksAndAnEmptyChecksumList() {
        let tree = FixtureTree.debian()
        tree.makeDirectory("/etc/holdfast", mode: 0o777)
        tree.write("/etc/holdfast/agent.conf", "[agent]\n")
        #expect(run("holdfast-permissions", .fixture(tree.root))?.evidence.contains("/etc/holdfast mode 0777 is group/world-writable") == true)
        let linked = FixtureTree.debian()
        linked.makeDirectory("/srv/state", mode: 0o700)
        linked.link("/var/lib/holdfast", to: "/srv/state")
        #expect(run("holdfast-permissions", .fixture(linked.root))?.evidence.contains("/var/lib/holdfast is a symlink") == true)
        linked.write("/var/lib/dpkg/info/holdfast.md5sums", "")
        #expect(run("holdfast-integrity", .fixture(linked.root))?.status == .fail)
    }

    @Test func aHeldFailureKeepsItsRemediation() {
        var history = PostureHistory()
        _ = history.apply([CheckResult(id: "c", status: .fail, strength: .attested, evidence: "bad", remediation: "fix it")])
        let held = history.apply([CheckResult(id: "c", status: .unknown, strength: .attested, evidence: "?", remediation: "fix it")])
        #expect(held.reported.first?.status == .fail)
        #expect(held.reported.first?.remediation == "fix it")
    }
}

@Suite struct SecondReviewRegressionTests {
    @Test(arguments: ["PasswordAuthentication y\"es\"", "PasswordAuthentication ''yes", "PasswordAuthentication yes\u{0C}", "PasswordAuthentication\ryes", "\rPasswordAuthentication yes", "SkeyAuthentication yes\nUsePAM yes", "PasswordAuthentication yes\0junk"])
    func sshdsTokenizer(_ line: String) {
        let tree = SSHCheckTests.tree("Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n", dropIns: ["10-x.conf": line + "\n"])
        #expect(run("ssh-password-login", .fixture(tree.root))?.status == .fail, "\(line.debugDescription)")
    }

    @Test func sshdOptionsFromDefaultsWinAndPosixClassesMatch() {
        let tree = SSHCheckTests.tree("PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nInclude /etc/ssh/sshd_config.d/[[:digit:]]*.conf\n")
        tree.write("/etc/default/ssh", "SSHD_OPTS=\"-o PasswordAuthentication=yes\"\n")
        #expect(run("ssh-password-login", .fixture(tree.root))?.status == .fail)
        tree.write("/etc/ssh/sshd_config", "PermitRootLogin no\nInclude /etc/ssh/sshd_config.d/[[:digit:]]*.conf\n")
        tree.write("/etc/ssh/sshd_config.d/00-first.conf", "PermitRootLogin yes\n")
        tree.write("/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/[[:digit:]]*.conf\nPermitRootLogin no\n")
        #expect(run("ssh-root-login", .fixture(tree.root))?.evidence == "PermitRootLogin yes")
    }

    @Test func anIncludeFanOutEndsAndIsUnknown() {
        let tree = SSHCheckTests.tree("Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n")
        for name in ["a", "b", "c"] { tree.write("/etc/ssh/sshd_config.d/\(name).conf", "Include /etc/ssh/sshd_config.d/*.conf\n") }
        let result = run("ssh-password-login", .fixture(tree.root))
        #expect(result?.status == .unknown)
        #expect((result?.evidence.count ?? 0) < 1_000)
    }

    @Test(arguments: ["\"APT::Periodic::Unattended-Upgrade\" \"0\";", "APT::Periodic::\"Unattended-Upgrade\" \"0\";", "APT::Periodic::Unattended%2dUpgrade \"0\";", "APT::Periodic \"x\" { Unattended-Upgrade \"0\"; };"])
    func aptTagSpellings(_ text: String) {
        let tree = AccountAndAptRegressionTests.unattendedTree()
        tree.write("/etc/apt/apt.conf.d/99off", text + "\n")
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .fail, "\(text)")
    }

    @Test func aptPartNamesUseTheLastDotAndAnIncludeLoopEnds() {
        #expect(!AptConfiguration.isAptPart("99off.local.conf") == false)
        #expect(AptConfiguration.isAptPart("99off.local.conf"))
        #expect(!AptConfiguration.isAptPart("99off.conf.bak"))
        let tree = AccountAndAptRegressionTests.unattendedTree()
        for index in 0..<6 { tree.write("/etc/apt/apt.conf.d/5\(index)loop", "#include \"/etc/apt/apt.conf.d/\";\n") }
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .unknown)
    }

    @Test(arguments: ["always", "1d", "00"])
    func aptEnableValuesAreText(_ value: String) {
        let tree = AccountAndAptRegressionTests.unattendedTree()
        tree.write("/etc/apt/apt.conf.d/20auto-upgrades", "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"\(value)\";\n")
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .pass, "\(value)")
    }

    @Test func timersMaskedRelativelyOrNotEnabled() {
        let tree = AccountAndAptRegressionTests.unattendedTree()
        tree.write("/lib/systemd/system/apt-daily-upgrade.timer", "[Timer]\n")
        #expect(run("unattended-upgrades", .fixture(tree.root))?.evidence.hasSuffix("not enabled: apt-daily-upgrade.timer") == true)
        tree.link("/etc/systemd/system/timers.target.wants/apt-daily-upgrade.timer", to: "/lib/systemd/system/apt-daily-upgrade.timer")
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .pass)
        tree.link("/etc/systemd/system/apt-daily-upgrade.service", to: "../../../dev/null")
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .fail)
    }

    @Test(arguments: ["toor:x:-0:0::/:/bin/sh", "toor:x:\u{0B}0:0::/:/bin/sh", "+toor:x:0:0::/:/bin/sh"])
    func moreUIDZeroSpellings(_ line: String) {
        let tree = FixtureTree.debian()
        tree.write("/etc/nsswitch.conf", "passwd: files systemd\n")
        tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n" + line + "\n")
        #expect(run("accounts-uid0", .fixture(tree.root))?.status == .fail, "\(line.debugDescription)")
    }

    @Test func statementsBeforeAnAcceptDoNotMakeItConditional() {
        let tree = FixtureTree.debian()
        tree.write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0\n")
        let rule = #", {"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2, "expr": [{"mangle": {"key": {"meta": {"key": "mark"}}, "value": 1}}, {"accept": null}]}}"#
        let result = run("firewall", .fixture(tree.root, system: TestSystem(ruleset: .success(FirewallTests.ruleset(FirewallTests.inetDrop + rule)))))
        #expect(result?.status == .fail)
    }

    /// Eight unconditional jumps per chain, eight chains deep: each chain is evaluated once.
    @Test func aWebOfJumpsIsEvaluatedOncePerChain() {
        var items = [#"{"table": {"family": "inet", "name": "t", "handle": 1}}"#, #"{"chain": {"family": "inet", "table": "t", "name": "c0", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}"#]
        for level in 1...8 { items.append(#"{"chain": {"family": "inet", "table": "t", "name": "c\#(level)", "handle": \#(level + 1)}}"#) }
        for level in 0..<8 {
            for _ in 0..<8 { items.append(#"{"rule": {"family": "inet", "table": "t", "chain": "c\#(level)", "expr": [{"jump": {"target": "c\#(level + 1)"}}]}}"#) }
        }
        let tree = FixtureTree.debian()
        tree.write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1\n")
        let result = run("firewall", .fixture(tree.root, system: TestSystem(ruleset: .success(FirewallTests.ruleset(items.joined(separator: ", "))))))
        #expect(result?.status == .pass)
    }

    @Test func superblockOptionsDecideReadOnlyAndRaidPartitionsAreFollowed() {
        // systemd's ProtectSystem makes every mount read-only in holdfastd's view; the superblock stays rw.
        let tree = FixtureTree.debian()
        tree.write("/proc/self/mountinfo", "22 1 254:1 / / ro,relatime - ext4 /dev/vda1 rw,errors=remount-ro\n")
        #expect(run("disk-encryption", .fixture(tree.root))?.evidence == "/ on vda1 (ext4), not encrypted")
        let raid = FixtureTree.debian()
        raid.blockDevice("vda", partition: "vda2", major: 254, minor: 2)
        let partition = "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda2"
        raid.deviceMapper(0, name: "vda2_crypt", uuid: "CRYPT-LUKS2-abc-vda2_crypt", slaves: [partition])
        raid.write("/sys/devices/virtual/block/md0/md0p1/partition", "1\n")
        raid.link("/sys/devices/virtual/block/md0/slaves/dm-0", to: "../../dm-0")
        raid.link("/sys/dev/block/259:1", to: "../../devices/virtual/block/md0/md0p1")
        raid.mountRoot(on: "259:1", source: "/dev/md0p1")
        #expect(run("disk-encryption", .fixture(raid.root))?.status == .pass)
    }
}

@Suite struct SwapFileTests {
    @Test func aSwapFileOnAPlainBootIsNotEncrypted() {
        let tree = FixtureTree.luksRoot()
        tree.write("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/boot/swapfile file 1048572 0 -2\n/swapfile file 1048572 0 -3\n")
        let result = run("disk-encryption", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence.hasSuffix("swap file /boot/swapfile on /boot (vda1), not encrypted") == true, "\(result?.evidence ?? "")")
    }
}
