import Foundation
import HoldfastCore
import HoldfastTestSupport
import Testing

/// `holdfast posture` as an admin runs it: on this machine, on a fixture tree, and against a real
/// nftables ruleset inside a network namespace the test creates.
@Suite struct PostureCLITests {
    let holdfast = Products.path("holdfast")

    func json(_ text: String) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    /// The acceptance run on a plain machine: at least 15 checks, each with a status and evidence.
    @Test func everyCheckAnswersOnThisMachine() throws {
        let result = try runProcess(holdfast, ["posture", "--local", "--json"])
        #expect(result.status == 0 || result.status == 1, "\(result.stderr)")
        let report = try #require(json(result.stdout))
        let checks = try #require(report["checks"] as? [[String: Any]])
        #expect(checks.count >= 15)
        for check in checks {
            let id = check["id"] as? String ?? "?"
            #expect(["pass", "fail", "unknown"].contains(check["status"] as? String ?? ""), "\(id)")
            #expect(["attested", "self-reported"].contains(check["strength"] as? String ?? ""), "\(id)")
            #expect(!((check["evidence"] as? String) ?? "").isEmpty, "\(id)")
            if check["status"] as? String != "pass" { #expect(!((check["remediation"] as? String) ?? "").isEmpty, "\(id)") }
        }
        // This machine's facts, as the kernel gives them: the checks read the running system.
        let release = try String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect((checks.first { $0["id"] as? String == "kernel" }?["evidence"] as? String)?.hasPrefix("running \(release)") == true)
        let table = try runProcess(holdfast, ["posture", "--local"])
        #expect(table.stdout.hasPrefix("CHECK"))
        #expect(table.stdout.contains("\nstatus "))
    }

    @Test func aLUKSRootTreePassesDiskEncryptionWithTheMappingName() throws {
        let tree = FixtureTree.luksRoot()
        let result = try runProcess(holdfast, ["posture", "--root", tree.root, "--json", "--only", "disk-encryption,os-version,firewall"])
        let report = try #require(json(result.stdout), "\(result.stderr)")
        let checks = try #require(report["checks"] as? [[String: Any]])
        let disk = try #require(checks.first { $0["id"] as? String == "disk-encryption" })
        #expect(disk["status"] as? String == "pass")
        // A --root tree has no device-mapper to ask which target the mapping is: uuid only.
        #expect(disk["strength"] as? String == "self-reported")
        #expect(disk["evidence"] as? String == "/ on dm-1 → dm-crypt vda2_crypt (LUKS2) [target type not verified: uuid only]")
        #expect(checks.first { $0["id"] as? String == "firewall" }?["status"] as? String == "unknown")
        #expect(report["status"] as? String == "unknown")
        #expect(result.status == 0)
        let plain = FixtureTree.debian()
        let failing = try runProcess(holdfast, ["posture", "--root", plain.root, "--only", "disk-encryption"])
        #expect(failing.status == 1)
        #expect(failing.stdout.contains("/ on vda1 (ext4), not encrypted"))
    }

    /// The supported-release policy comes from agent.conf: requiring a newer Debian fails this machine.
    @Test func theSupportedReleasesComeFromAgentConf() throws {
        let directory = TemporaryDirectory()
        try "[posture]\nsupported = debian 99\n".writeReplacing(toFile: directory.file("agent.conf"))
        let result = try runProcess(holdfast, ["posture", "--local", "--json", "--only", "os-version"], environment: ["HOLDFAST_CONFIG": directory.file("agent.conf"), "PATH": "/usr/bin:/bin"])
        let check = (json(result.stdout)?["checks"] as? [[String: Any]])?.first
        #expect(check?["status"] as? String == "fail")
        #expect((check?["evidence"] as? String)?.hasSuffix("is older than the minimum 99") == true)
    }

    @Test func unknownChecksAndBadRootsAreUsageErrors() throws {
        #expect(try runProcess(holdfast, ["posture", "--only", "no-such-check"]).status == 64)
        #expect(try runProcess(holdfast, ["posture", "--only", ","]).status == 64)
        #expect(try runProcess(holdfast, ["posture", "--root", "/nonexistent-root-tree"]).status == 64)
    }

    /// The firewall check reads the kernel's ruleset through libnftables: in a fresh network
    /// namespace there is none (fail), after loading an inet table with policy drop it passes.
    @Test func theFirewallCheckReadsTheLiveRulesetOfItsNetworkNamespace() throws {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft"), FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") else {
            Issue.record("needs root, nft and ip (make test installs nftables and iproute2)")
            return
        }
        let namespace = "hf-posture-\(getpid())"
        #expect(try runProcess("/usr/sbin/ip", ["netns", "add", namespace]).status == 0)
        defer { _ = try? runProcess("/usr/sbin/ip", ["netns", "delete", namespace]) }
        func firewall() throws -> [String: Any]? {
            let result = try runProcess("/usr/sbin/ip", ["netns", "exec", namespace, holdfast, "posture", "--local", "--json", "--only", "firewall"])
            return (json(result.stdout)?["checks"] as? [[String: Any]])?.first
        }
        let empty = try firewall()
        #expect(empty?["status"] as? String == "fail")
        #expect((empty?["evidence"] as? String)?.hasPrefix("no input-hook chain in the nftables ruleset") == true)
        let directory = TemporaryDirectory()
        let rules = directory.file("rules.nft")
        try "table inet filter {\n  chain input {\n    type filter hook input priority 0; policy drop;\n    iif lo accept\n    ct state established,related accept\n  }\n}\n".write(toFile: rules, atomically: false, encoding: .utf8)
        let loaded = try runProcess("/usr/sbin/ip", ["netns", "exec", namespace, "/usr/sbin/nft", "-f", rules])
        #expect(loaded.status == 0, "\(loaded.stderr)")
        let dropping = try firewall()
        #expect(dropping?["status"] as? String == "pass")
        #expect((dropping?["evidence"] as? String)?.hasPrefix("inet filter/input policy drop") == true)
    }
}

/// Staging a compliance policy against a real report: `holdfast posture --json` piped into
/// `holdfast-broker policy check`.
@Suite struct PolicyCheckCLITests {
    @Test func aPolicyDecidesAboutARealReport() throws {
        let tree = FixtureTree.luksRoot()
        let directory = TemporaryDirectory()
        let report = try runProcess(Products.path("holdfast"), ["posture", "--root", tree.root, "--json"])
        try report.stdout.write(toFile: directory.file("report.json"), atomically: false, encoding: .utf8)
        try #"{"version": 1, "checks": {"disk-encryption": "block", "os-version": "block"}}"#.write(toFile: directory.file("ok.json"), atomically: false, encoding: .utf8)
        let ok = try runProcess(Products.path("holdfast-broker"), ["policy", "check", directory.file("ok.json"), directory.file("report.json")])
        #expect(ok.status == 0, "\(ok.stdout) \(ok.stderr)")
        #expect(ok.stdout.hasPrefix("compliant under policy version 1"))
        // A --root tree has no kernel to ask: audit-enabled is unknown, which a block rule refuses.
        try #"{"checks": {"disk-encryption": "block", "audit-enabled": "block", "firewall": "warn"}}"#.write(toFile: directory.file("strict.json"), atomically: false, encoding: .utf8)
        let strict = try runProcess(Products.path("holdfast-broker"), ["policy", "check", "--json", directory.file("strict.json"), directory.file("report.json")])
        #expect(strict.status == 1)
        let verdict = try JSONDecoder().decode(JSONValue.self, from: Data(strict.stdout.utf8))
        #expect(verdict["decision"]?.stringValue == "noncompliant")
        #expect(verdict["blocking"]?.arrayIDs == ["audit-enabled"])
        #expect(verdict["warnings"]?.arrayIDs == ["firewall"])
        #expect(verdict["denial"]?.stringValue?.hasPrefix("access denied until these checks pass: audit-enabled (unknown)") == true)
        try #"{"checks": {"disk": "nope"}}"#.write(toFile: directory.file("bad.json"), atomically: false, encoding: .utf8)
        #expect(try runProcess(Products.path("holdfast-broker"), ["policy", "check", directory.file("bad.json"), directory.file("report.json")]).status == 65)
    }
}

extension JSONValue {
    var arrayIDs: [String] {
        guard case .array(let items) = self else { return [] }
        return items.compactMap { $0["id"]?.stringValue }
    }
}
