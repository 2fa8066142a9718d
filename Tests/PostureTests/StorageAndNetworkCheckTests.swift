import Foundation
import HoldfastTestSupport
@testable import Posture
import Testing

@Suite struct DiskEncryptionTests {
    @Test func luksUnderLVMPassesWithTheMappingName() throws {
        let tree = FixtureTree.luksRoot()
        let result = try #require(run("disk-encryption", .fixture(tree.root)))
        #expect(result.status == .pass)
        #expect(result.strength == .attested)
        #expect(result.evidence == "/ on dm-1 → dm-crypt vda2_crypt (LUKS2, aes-xts-plain64)")
    }

    @Test func aPlainRootFails() {
        let tree = FixtureTree.debian()
        let result = run("disk-encryption", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence == "/ on vda1 (ext4), not encrypted")
    }

    @Test func aSeparatePlainHomeFailsEvenOnAnEncryptedRoot() {
        let tree = FixtureTree.luksRoot()
        tree.blockDevice("vdb", partition: "vdb1", major: 254, minor: 17)
        tree.mountRoot(on: "253:1", source: "/dev/mapper/vg-root", extra: ["31 22 254:17 / /home rw,relatime - ext4 /dev/vdb1 rw", "32 22 0:40 / /var/tmp rw - tmpfs tmpfs rw"])
        let result = run("disk-encryption", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence == "/ on dm-1 → dm-crypt vda2_crypt (LUKS2, aes-xts-plain64); /home on vdb1 (ext4), not encrypted")
    }

    @Test func lvmWithoutCryptFails() {
        let tree = FixtureTree.debian()
        tree.deviceMapper(0, name: "vg-root", uuid: "LVM-abc", slaves: ["/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1"])
        tree.mountRoot(on: "253:0", source: "/dev/mapper/vg-root")
        #expect(run("disk-encryption", .fixture(tree.root))?.evidence == "/ on vda1 (ext4), not encrypted")
    }

    @Test func btrfsOnAnAnonymousDeviceIsFoundThroughItsSource() {
        let tree = FixtureTree.luksRoot()
        tree.mountRoot(on: "0:31", source: "/dev/mapper/vda2_crypt", fileSystem: "btrfs")
        #expect(run("disk-encryption", .fixture(tree.root))?.evidence == "/ on dm-0 → dm-crypt vda2_crypt (LUKS2, aes-xts-plain64)")
    }

    @Test func whatCannotBeSeenIsUnknownNotFail() {
        let overlay = FixtureTree.debian()
        overlay.mountRoot(on: "0:45", source: "overlay", fileSystem: "overlay")
        let result = run("disk-encryption", .fixture(overlay.root))
        #expect(result?.status == .unknown)
        #expect(result?.evidence == "/ is overlay: its backing store is not a local block device")
        let noSysfs = FixtureTree.debian()
        noSysfs.remove("/sys/dev/block/254:1")
        noSysfs.remove("/sys/class/block/vda1")
        let missing = run("disk-encryption", .fixture(noSysfs.root))
        #expect(missing?.status == .unknown)
        #expect(missing?.evidence == "/ ext4 on 254:1: no block device in /sys")
        let noMountinfo = FixtureTree()
        #expect(run("disk-encryption", .fixture(noMountinfo.root))?.status == .unknown)
    }

    @Test func readOnlyAndInMemoryMountsAreSkipped() {
        let tree = FixtureTree.luksRoot()
        tree.mountRoot(on: "253:1", source: "/dev/mapper/vg-root", extra: ["31 22 0:50 / /home rw - tmpfs tmpfs rw", "32 22 7:0 / /var rw - squashfs /dev/loop0 ro"])
        #expect(run("disk-encryption", .fixture(tree.root))?.evidence == "/ on dm-1 → dm-crypt vda2_crypt (LUKS2, aes-xts-plain64); /home tmpfs (in memory, skipped); /var read-only (skipped)")
    }

    @Test func mountinfoEscapesAreDecoded() {
        let mounts = DiskEncryption.parse(mountinfo: "40 22 8:1 / /mnt/my\\040disk rw - ext4 /dev/sda1 rw\n")
        #expect(mounts.first?.mountPoint == "/mnt/my disk")
    }
}

@Suite struct FirewallTests {
    static func ruleset(_ items: String) -> [UInt8] {
        Array(#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, \#(items)]}"#.utf8)
    }

    static let inetDrop = #"{"table": {"family": "inet", "name": "filter", "handle": 1}}, {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}"#
    static let ipAccept = #"{"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}"#
    static let ipDropRule = #"{"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 4, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"reject": null}]}}"#
    static let ipConditionalDrop = #"{"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 5, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}, {"drop": null}]}}"#

    func check(_ json: [UInt8], ipv6Off: Bool = false) -> CheckResult? {
        let tree = FixtureTree.debian()
        tree.write("/proc/sys/net/ipv6/conf/all/disable_ipv6", ipv6Off ? "1\n" : "0\n")
        return run("firewall", .fixture(tree.root, system: TestSystem(ruleset: .success(json))))
    }

    @Test func anInetChainWithPolicyDropPasses() {
        let result = check(Self.ruleset(Self.inetDrop))
        #expect(result?.status == .pass)
        #expect(result?.evidence == "inet filter/input policy drop")
        #expect(result?.strength == .attested)
    }

    @Test func anIPv4OnlyChainLeavesIPv6Open() {
        let rules = Self.ruleset(Self.ipAccept + ", " + Self.ipDropRule)
        let result = check(rules)
        #expect(result?.status == .fail)
        #expect(result?.evidence == "ip filter/INPUT ends in reject; inbound IPv6 not default-deny")
        #expect(check(rules, ipv6Off: true)?.status == .pass)
    }

    @Test func aConditionalLastRuleDoesNotCount() {
        let result = check(Self.ruleset(Self.ipAccept + ", " + Self.ipConditionalDrop), ipv6Off: true)
        #expect(result?.status == .fail)
        #expect(result?.evidence == "ip filter/INPUT accepts by default; IPv6 off; inbound IPv4 not default-deny")
    }

    @Test func anEmptyRulesetFailsAndAnUnreadableOneIsUnknown() {
        #expect(check(Self.ruleset(#"{"table": {"family": "inet", "name": "x", "handle": 1}}"#))?.evidence == "no input-hook chain in the nftables ruleset; inbound IPv4 and IPv6 not default-deny")
        let tree = FixtureTree.debian()
        let unreadable = run("firewall", .fixture(tree.root, system: TestSystem(ruleset: .failure(ProbeError("nft list ruleset: Operation not permitted")))))
        #expect(unreadable?.status == .unknown)
        #expect(unreadable?.evidence == "nft list ruleset: Operation not permitted")
        #expect(check(Array("not json".utf8))?.status == .unknown)
    }
}
