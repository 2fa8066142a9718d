import FileWatch
import Foundation
import HoldfastTestSupport
import Testing

@Suite struct AuditRulesTests {
    @Test func theShippedRulesFileIsTheDefaultSet() throws {
        let shipped = try String(contentsOfFile: Products.packageRoot() + "/Packaging/audit/holdfast.rules", encoding: .utf8)
        #expect(shipped == (try AuditRuleSet()).file)
    }

    @Test func everyRootGetsScopedWriteRulesForBothABIsAndMountsAreWatched() throws {
        let set = try AuditRuleSet(roots: ["/home/", "/srv/exports", "/home"])
        #expect(set.roots == ["/home", "/srv/exports"])
        let writes = set.rules.filter { $0.last == "holdfast-write" }
        #expect(writes.count == 4)
        #expect(writes.allSatisfy { $0.contains("auid>=1000") && $0.contains("auid!=unset") && $0.contains("perm=wa") })
        #expect(writes.map { $0[3] } == ["arch=b64", "arch=b32", "arch=b64", "arch=b32"])
        #expect(writes.filter { $0.contains("dir=/srv/exports") }.count == 2)
        let mounts = set.rules.filter { $0.last == "holdfast-mount" }
        #expect(mounts.count == 2)
        // udisksd mounts removable media with auid unset: the mount rules do not filter on it.
        #expect(mounts.allSatisfy { !$0.contains("auid>=1000") })
    }

    @Test(arguments: [
        ("relative/dir", AuditRuleSet.Problem.notAbsolute("relative/dir")),
        ("/home/with space", .unwritable("/home/with space")),
        ("/tmp/quote\"d", .unwritable("/tmp/quote\"d")),
    ])
    func rootsARulesFileCannotHoldAreRefused(root: String, problem: AuditRuleSet.Problem) {
        #expect(throws: problem) { try AuditRuleSet(roots: [root]) }
    }
}
