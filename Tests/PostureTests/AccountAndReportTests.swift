import Foundation
import HoldfastCore
import HoldfastCrypto
import HoldfastTestSupport
@testable import Posture
import Testing

@Suite struct AccountCheckTests {
    @Test func anExtraUIDZeroAndAnEmptyHash() {
        let tree = FixtureTree.debian()
        #expect(run("accounts-uid0", .fixture(tree.root))?.status == .pass)
        #expect(run("accounts-empty-password", .fixture(tree.root))?.status == .pass)
        // `+` lines are NIS compat entries only with `compat` in nsswitch.conf.
        tree.write("/etc/nsswitch.conf", "passwd: compat\nshadow: compat\n")
        tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/bash\n+::::::\n")
        tree.write("/etc/shadow", "root:$y$j9T$a$b:19000::::::\ntoor::19000::::::\nlocked:!:19000::::::\n", mode: 0o640)
        let extra = run("accounts-uid0", .fixture(tree.root))
        #expect(extra?.status == .fail)
        #expect(extra?.evidence == "UID 0 besides root: toor")
        #expect(run("accounts-empty-password", .fixture(tree.root))?.evidence == "empty password: toor")
        tree.remove("/etc/shadow")
        #expect(run("accounts-empty-password", .fixture(tree.root))?.status == .unknown)
    }
}

@Suite struct SSHCheckTests {
    static func tree(_ main: String, dropIns: [String: String] = [:]) -> FixtureTree {
        let tree = FixtureTree.debian()
        tree.write("/usr/sbin/sshd", "binary", mode: 0o755)
        tree.write("/etc/ssh/sshd_config", main)
        for (name, text) in dropIns { tree.write("/etc/ssh/sshd_config.d/" + name, text) }
        return tree
    }

    @Test func notInstalledPasses() {
        let tree = FixtureTree.debian()
        #expect(run("ssh-password-login", .fixture(tree.root))?.evidence == "sshd is not installed")
    }

    @Test func debianDefaultsAcceptPasswordsAndRootKeys() {
        let tree = Self.tree("Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n")
        let password = run("ssh-password-login", .fixture(tree.root))
        #expect(password?.status == .fail)
        #expect(password?.evidence == "PasswordAuthentication yes, KbdInteractiveAuthentication no, UsePAM yes; passwords are accepted")
        let root = run("ssh-root-login", .fixture(tree.root))
        #expect(root?.status == .fail)
        #expect(root?.evidence == "PermitRootLogin prohibit-password (sshd's default)")
    }

    @Test func theFirstValueWinsSoADropInBeatsTheMainFile() {
        let tree = Self.tree("Include sshd_config.d/*.conf\nPasswordAuthentication yes\nPermitRootLogin yes\nKbdInteractiveAuthentication no\n", dropIns: [
            "10-holdfast.conf": "PasswordAuthentication no\nPermitRootLogin=no\n", "20-later.conf": "PasswordAuthentication yes\n", "README": "PermitRootLogin yes\n",
        ])
        #expect(run("ssh-password-login", .fixture(tree.root))?.status == .pass)
        #expect(run("ssh-root-login", .fixture(tree.root))?.evidence == "PermitRootLogin no")
    }

    @Test func aMatchBlockThatReopensPasswordsFails() {
        let tree = Self.tree("PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\nMatch Address 10.0.0.0/8\n  PasswordAuthentication yes\n  PermitRootLogin yes\n")
        #expect(run("ssh-password-login", .fixture(tree.root))?.evidence == "PasswordAuthentication no, KbdInteractiveAuthentication no, UsePAM no; but Match Address 10.0.0.0/8 sets passwordauthentication yes")
        #expect(run("ssh-root-login", .fixture(tree.root))?.evidence == "PermitRootLogin no; but Match Address 10.0.0.0/8 sets PermitRootLogin yes")
    }

    @Test func keyboardInteractiveThroughPAMIsAPasswordLogin() {
        let tree = Self.tree("PasswordAuthentication no\nChallengeResponseAuthentication yes\nUsePAM yes\n")
        #expect(run("ssh-password-login", .fixture(tree.root))?.status == .fail)
    }
}

@Suite struct ScreenLockTests {
    @Test func gnomeNeedsTheDelayTheLockAndTheirLocks() {
        let tree = FixtureTree.debian()
        #expect(run("screen-lock", .fixture(tree.root))?.status == .unknown)
        tree.write("/usr/share/xsessions/gnome.desktop", "[Desktop Entry]\n")
        tree.write("/etc/dconf/profile/user", "user-db:user\nsystem-db:local\n")
        tree.write("/etc/dconf/db/local.d/00-holdfast", "[org/gnome/desktop/session]\nidle-delay=uint32 300\n\n[org/gnome/desktop/screensaver]\nlock-enabled=true\nlock-delay=uint32 0\n")
        tree.write("/etc/dconf/db/local", "compiled by dconf update")
        let unlocked = run("screen-lock", .fixture(tree.root))
        #expect(unlocked?.status == .fail)
        #expect(unlocked?.evidence == "GNOME (dconf local): idle-delay 300 s, lock-enabled true, 0 of 4 locked (not locked: idle-delay, lock-enabled, lock-delay, disable-lock-screen)")
        tree.write("/etc/dconf/db/local.d/locks/holdfast", "/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-enabled\n/org/gnome/desktop/screensaver/lock-delay\n/org/gnome/desktop/lockdown/disable-lock-screen\n")
        let locked = run("screen-lock", .fixture(tree.root))
        #expect(locked?.status == .pass)
        #expect(locked?.evidence == "GNOME (dconf local): idle-delay 300 s, lock-enabled true, 4 of 4 locked")
        tree.write("/etc/dconf/db/local.d/00-holdfast", "[org/gnome/desktop/session]\nidle-delay=uint32 0\n[org/gnome/desktop/screensaver]\nlock-enabled=true\n")
        tree.write("/etc/dconf/db/local", "compiled again")
        #expect(run("screen-lock", .fixture(tree.root))?.status == .fail)
    }

    @Test func otherDesktopsAreUnknown() {
        let tree = FixtureTree.debian()
        tree.write("/usr/share/xsessions/xfce.desktop", "[Desktop Entry]\n")
        #expect(run("screen-lock", .fixture(tree.root))?.evidence == "desktop sessions xfce: only GNOME's dconf lock settings are read")
    }
}

@Suite struct IntegrityCheckTests {
    @Test func packagedFilesAgainstDpkgsChecksums() throws {
        let tree = FixtureTree.debian()
        #expect(run("holdfast-integrity", .fixture(tree.root))?.status == .unknown)
        tree.write("/usr/sbin/holdfastd", "daemon bytes", mode: 0o755)
        tree.write("/usr/bin/holdfast", "cli bytes", mode: 0o755)
        tree.write("/var/lib/dpkg/info/holdfast.md5sums", "\(DpkgMD5.hex(Array("daemon bytes".utf8)))  usr/sbin/holdfastd\n\(DpkgMD5.hex(Array("cli bytes".utf8)))  usr/bin/holdfast\n")
        #expect(run("holdfast-integrity", .fixture(tree.root))?.evidence == "2 packaged file(s) match dpkg's checksums")
        tree.write("/usr/bin/holdfast", "patched", mode: 0o755)
        let changed = run("holdfast-integrity", .fixture(tree.root))
        #expect(changed?.status == .fail)
        #expect(changed?.evidence == "1 of 2 packaged file(s) differ: /usr/bin/holdfast modified")
    }

    @Test func md5MatchesTheReference() {
        #expect(DpkgMD5.hex(Array("abc".utf8)) == "900150983cd24fb0d6963f7d28e17f72")
    }

    @Test func keysMustBePrivate() throws {
        let tree = FixtureTree.debian()
        tree.write("/etc/holdfast/agent.conf", "[agent]\n", mode: 0o644)
        tree.makeDirectory("/var/lib/holdfast", mode: 0o700)
        tree.write("/var/lib/holdfast/device.key", "k", mode: 0o600)
        let uid = geteuid()
        let fine = run("holdfast-permissions", .fixture(tree.root))
        if uid == 0 {
            #expect(fine?.evidence == "agent.conf 0644, state 0700, 1 key(s), owned by root")
        }
        tree.write("/var/lib/holdfast/device.key", "k", mode: 0o644)
        tree.write("/etc/holdfast/agent.conf", "[agent]\n", mode: 0o666)
        let result = run("holdfast-permissions", .fixture(tree.root))
        #expect(result?.status == .fail)
        #expect(result?.evidence.contains("/etc/holdfast/agent.conf mode 0666 is group/world-writable") == true)
        #expect(result?.evidence.contains("/var/lib/holdfast/device.key mode 0644 (a key must be 0600)") == true)
    }
}

@Suite struct PostureReportTests {
    @Test func theCatalogHasStableUniqueIds() {
        let ids = PostureCatalog.checks.map(\.id)
        #expect(ids.count >= 15)
        #expect(Set(ids).count == ids.count)
        #expect(ids.contains("disk-encryption") && ids.contains("secure-boot") && ids.contains("firewall"))
    }

    @Test func everyCheckAnswersOnAnEmptyTree() {
        let tree = FixtureTree()
        let results = PostureCatalog.run(.fixture(tree.root))
        #expect(results.count == PostureCatalog.checks.count)
        for result in results {
            #expect(!result.evidence.isEmpty, "\(result.id)")
            #expect(result.status != .pass || result.remediation.isEmpty, "\(result.id)")
        }
    }

    @Test func aSignedReportVerifiesAndCarriesTheNonce() throws {
        let key = try SigningKey.generate()
        let tree = FixtureTree.luksRoot()
        let results = PostureCatalog.run(.fixture(tree.root), only: ["disk-encryption", "os-version"])
        let report = PostureReport(device: key.publicKey.thumbprint, time: Date(timeIntervalSince1970: 1_800_000_000), nonce: "n-123", checks: results, durationMilliseconds: 1.5)
        let compact = try report.signed(with: key)
        let verified = try JWS.verify(compact, key: key.publicKey)
        #expect(verified.header.type == PostureReport.documentType)
        let payload = try JSONDecoder().decode(JSONValue.self, from: Data(verified.payload))
        #expect(payload["nonce"]?.stringValue == "n-123")
        #expect(payload["device"]?.stringValue == key.publicKey.thumbprint)
        #expect(payload["status"]?.stringValue == "pass")
        #expect(payload["iat"]?.intValue == 1_800_000_000)
        guard case .array(let checks)? = payload["checks"] else { Issue.record("no checks"); return }
        #expect(checks.map { $0["id"]?.stringValue } == ["os-version", "disk-encryption"])
        #expect(checks[1]["evidence"]?.stringValue == "/ on dm-1 → dm-crypt vda2_crypt (LUKS2, aes-xts-plain64)")
        #expect(throws: CryptoError.self) { try JWS.verify(compact, key: try SigningKey.generate().publicKey) }
    }

    static func result(_ status: CheckStatus) -> CheckResult { CheckResult(id: "c", status: status, strength: .attested, evidence: status.rawValue) }

    @Test func oneTransientUnknownIsHeldAndARepeatIsNot() {
        var history = PostureHistory()
        let first = history.apply([Self.result(.pass)])
        #expect(first.changes == [PostureHistory.Change(id: "c", from: nil, to: .pass, evidence: "pass")])
        let blip = history.apply([Self.result(.unknown)])
        #expect(blip.reported.first?.status == .pass)
        #expect(blip.reported.first?.held == true)
        #expect(blip.changes.isEmpty)
        let repeated = history.apply([Self.result(.unknown)])
        #expect(repeated.reported.first?.status == .unknown)
        #expect(repeated.changes.map(\.to) == [.unknown])
        let failing = history.apply([Self.result(.fail)])
        #expect(failing.changes.map(\.to) == [.fail])
        // A failure that turns unknown once is still a failure for one more run.
        #expect(history.apply([Self.result(.unknown)]).reported.first?.status == .fail)
    }

    @Test func overallStatus() {
        #expect(PostureCatalog.overall([Self.result(.pass), Self.result(.unknown)]) == .unknown)
        #expect(PostureCatalog.overall([Self.result(.fail), Self.result(.unknown)]) == .fail)
        #expect(PostureCatalog.overall([Self.result(.pass)]) == .pass)
    }
}
