import Foundation
import HoldfastTestSupport
@testable import Posture
import Testing

@Suite struct DebianVersionTests {
    @Test(arguments: [
        ("1.0", "1.0", 0), ("1.0", "1.1", -1), ("1.10", "1.9", 1), ("1:1.0", "2.0", 1), ("1.0~rc1", "1.0", -1),
        ("1.0-1", "1.0-1+deb12u1", -1), ("3.0.15-1~deb12u1", "3.0.17-1~deb12u2", -1), ("2.36-9+deb12u9", "2.36-9+deb12u10", -1),
        ("1.0a", "1.0", 1), ("1.0", "1.0+", -1), ("0:1.0", "1.0", 0), ("1.0-0", "1.0", 0), ("1.01", "1.1", 0), ("~~", "~~a", -1), ("~", "", -1),
    ])
    func ordering(_ a: String, _ b: String, _ expected: Int) {
        #expect(DebianVersion.compare(a, b) == expected)
        #expect(DebianVersion.compare(b, a) == -expected)
    }

    @Test func controlStanzasKeepOnlyTheAskedFields() {
        var seen: [[String: String]] = []
        DebianControl.stanzas(Array("Package: a\nVersion: 1\nDescription: x\n more\n\nPackage: b\nVersion: 2\n".utf8), fields: ["Package", "Version"]) { seen.append($0) }
        #expect(seen == [["Package": "a", "Version": "1"], ["Package": "b", "Version": "2"]])
        let status = Array(FixtureTree.dpkgStatus([("x", "1", "amd64"), ("unattended-upgrades", "2.9.1+nmu3", "all")]).utf8)
        #expect(DebianControl.stanza(of: "unattended-upgrades", in: status, fields: ["Version"]) == ["Version": "2.9.1+nmu3"])
        #expect(DebianControl.stanza(of: "unattended", in: status, fields: ["Version"]) == nil)
    }
}

@Suite struct OSCheckTests {
    @Test func debianTwelveIsSupported() {
        let tree = FixtureTree.debian()
        let result = run("os-version", .fixture(tree.root))
        #expect(result?.status == .pass)
        #expect(result?.evidence == "Debian GNU/Linux 12 (bookworm) (debian_version 12.8); minimum 12")
        #expect(result?.strength == .selfReported)
    }

    @Test func anOlderReleaseFailsWithTheMinimum() {
        let tree = FixtureTree.debian(version: "11")
        let result = run("os-version", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence.hasSuffix("debian 11 is older than the minimum 12") == true)
        #expect(result?.remediation == "upgrade to debian 12 or later")
    }

    @Test func ubuntuAndUnknownDistributions() {
        let tree = FixtureTree.debian()
        tree.write("/etc/os-release", "ID=ubuntu\nVERSION_ID=\"22.04\"\nPRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n")
        #expect(run("os-version", .fixture(tree.root))?.status == .pass)
        tree.write("/etc/os-release", "ID=arch\nPRETTY_NAME=\"Arch Linux\"\n")
        let arch = run("os-version", .fixture(tree.root))
        #expect(arch?.status == .fail)
        #expect(arch?.evidence == "Arch Linux; ID arch is not a supported distribution (debian 12, ubuntu 22.04)")
        tree.remove("/etc/os-release")
        #expect(run("os-version", .fixture(tree.root))?.status == .unknown)
    }

    @Test func aNewerInstalledKernelMeansAReboot() {
        let tree = FixtureTree.debian(kernel: "6.1.0-26-amd64")
        #expect(run("kernel", .fixture(tree.root))?.evidence == "running 6.1.0-26-amd64, the newest installed")
        tree.write("/boot/vmlinuz-6.1.0-28-amd64", "newer")
        tree.write("/boot/vmlinuz-6.1.0-30-rt-amd64", "another flavour")
        let result = run("kernel", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence == "running 6.1.0-26-amd64; newer 6.1.0-28-amd64 installed in /boot, not running")
        #expect(result?.strength == .attested)
    }

    @Test func rebootRequiredFails() {
        let tree = FixtureTree.debian()
        tree.write("/run/reboot-required", "*** System restart required ***\n")
        tree.write("/run/reboot-required.pkgs", "linux-image-6.1.0-28-amd64\n")
        #expect(run("kernel", .fixture(tree.root))?.evidence == "running 6.1.0-28-amd64; /run/reboot-required is set by linux-image-6.1.0-28-amd64")
    }
}

@Suite struct PatchCheckTests {
    static let lists = "/var/lib/apt/lists"
    static let securityPrefix = "deb.debian.org_debian-security_dists_bookworm-security"
    static let mainPrefix = "deb.debian.org_debian_dists_bookworm"

    static func aptLists(_ tree: FixtureTree, compress: Bool) throws {
        tree.write("\(lists)/\(securityPrefix)_InRelease", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\nLabel: Debian-Security\nSuite: oldstable-security\nCodename: bookworm-security\n")
        tree.write("\(lists)/\(mainPrefix)_InRelease", "Origin: Debian\nLabel: Debian\nSuite: oldstable\nCodename: bookworm\n")
        let security = FixtureTree.dpkgStatus([("openssl", "3.0.17-1~deb12u2", "amd64"), ("libc6", "2.36-9+deb12u9", "amd64"), ("tzdata", "2025a-0+deb12u1", "all"), ("notinstalled", "9", "amd64")])
        // A newer libc6 in the main suite is a point-release update, not a security one.
        tree.write("\(lists)/\(mainPrefix)_main_binary-amd64_Packages", FixtureTree.dpkgStatus([("libc6", "2.36-9+deb12u10", "amd64")]))
        let name = "\(lists)/\(securityPrefix)_main_binary-amd64_Packages"
        guard compress else {
            tree.write(name, security)
            return
        }
        tree.write(name, security)
        let result = try runProcess("/usr/bin/lz4", ["-q", "-f", tree.root + name, tree.root + name + ".lz4"])
        #expect(result.status == 0, "lz4: \(result.stderr)")
        tree.remove(name)
    }

    @Test(arguments: [false, true])
    func pendingSecurityUpdatesAreCountedFromTheSecurityListsOnly(compressed: Bool) throws {
        let tree = FixtureTree.debian()
        try Self.aptLists(tree, compress: compressed)
        let result = run("security-updates", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence == "2 pending security update(s): openssl 3.0.15-1~deb12u1 → 3.0.17-1~deb12u2, tzdata 2024a-0+deb12u1 → 2025a-0+deb12u1 (1 security list)")
    }

    @Test func upToDateAndMissingSecuritySuite() throws {
        let tree = FixtureTree.debian()
        try Self.aptLists(tree, compress: false)
        tree.write("/var/lib/dpkg/status", FixtureTree.dpkgStatus([("openssl", "3.0.17-1~deb12u2", "amd64"), ("tzdata", "2025a-0+deb12u1", "all")]))
        #expect(run("security-updates", .fixture(tree.root))?.evidence == "no pending security updates (1 security list)")
        tree.remove("\(Self.lists)/\(Self.securityPrefix)_InRelease")
        let result = run("security-updates", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence.hasPrefix("no security suite in apt's lists") == true)
    }

    @Test func aDamagedLZ4ListIsUnknownNotFail() throws {
        let tree = FixtureTree.debian()
        try Self.aptLists(tree, compress: true)
        let name = "\(Self.lists)/\(Self.securityPrefix)_main_binary-amd64_Packages.lz4"
        let bytes = try #require(FileManager.default.contents(atPath: tree.root + name))
        tree.write(name, bytes: Array(bytes.prefix(bytes.count / 2)))
        let result = run("security-updates", .fixture(tree.root))
        #expect(result?.status == .unknown)
        #expect(result?.evidence == "\(Self.securityPrefix)_main_binary-amd64_Packages.lz4: the LZ4 data ends inside a frame (truncated)")
    }

    @Test func theUpdateStampAge() {
        let tree = FixtureTree.debian()
        tree.write("/var/lib/apt/periodic/update-success-stamp", "")
        var times = [timeval(tv_sec: 1_800_000_000 - 3 * 86_400, tv_usec: 0), timeval(tv_sec: 1_800_000_000 - 3 * 86_400, tv_usec: 0)]
        utimes(tree.root + "/var/lib/apt/periodic/update-success-stamp", &times)
        let fresh = run("apt-updated", .fixture(tree.root, now: 1_800_000_000))
        #expect(fresh?.status == .pass)
        #expect(fresh?.evidence == "last update 3 d ago, from /var/lib/apt/periodic/update-success-stamp")
        let stale = run("apt-updated", .fixture(tree.root, now: 1_800_000_000 + 6 * 86_400))
        #expect(stale?.status == .fail)
        #expect(stale?.evidence == "last update 9 d ago, from /var/lib/apt/periodic/update-success-stamp; limit 7 d")
    }

    @Test func unattendedUpgradesNeedsThePackageAndThePeriodicSetting() {
        let tree = FixtureTree.debian()
        #expect(run("unattended-upgrades", .fixture(tree.root))?.evidence == "the unattended-upgrades package is not installed")
        tree.write("/var/lib/dpkg/status", FixtureTree.dpkgStatus([("openssl", "3.0.15-1~deb12u1", "amd64"), ("unattended-upgrades", "2.9.1+nmu3", "all")]))
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .fail)
        tree.write("/etc/apt/apt.conf.d/20auto-upgrades", "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n")
        // apt ignores parts with other extensions: this one does not switch it off.
        tree.write("/etc/apt/apt.conf.d/99off.dpkg-old", "APT::Periodic::Unattended-Upgrade \"0\";\n")
        let result = run("unattended-upgrades", .fixture(tree.root))
        #expect(result?.status == .pass)
        #expect(result?.evidence == "installed; APT::Periodic::Unattended-Upgrade \"1\", Update-Package-Lists \"1\"")
        tree.write("/etc/apt/apt.conf.d/99local", "APT { Periodic { Unattended-Upgrade \"0\"; }; };  // nested form\n")
        #expect(run("unattended-upgrades", .fixture(tree.root))?.status == .fail)
    }

    /// The cache serves only the machine's own tree (a fixture is always computed), so the
    /// persistence is tested on the cache itself; the key covers every file's size and mtime.
    @Test func theCacheSurvivesTheProcessAndIsPrivate() {
        let directory = TemporaryDirectory()
        let cache = PatchCache(file: directory.file("cache.json"))
        cache.store(["k"], [PendingUpdate(package: "p", installed: "1", candidate: "2")], ["l"])
        let reloaded = PatchCache(file: directory.file("cache.json"))
        #expect(reloaded.lookup(["k"])?.pending == [PendingUpdate(package: "p", installed: "1", candidate: "2")])
        #expect(reloaded.lookup(["other"]) == nil)
        #expect(fileMode(directory.file("cache.json")) == 0o600)
    }
}
