import Foundation
import HoldfastTestSupport
import Testing

/// The files Holdfast ships besides its binaries, checked with the tools that read them.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze"), "needs systemd-analyze"))
struct PackagingTests {
    let unit = Products.packageRoot() + "/systemd/holdfastd.service"

    @Test func theUnitVerifiesApartFromTheBinaryNotBeingInstalledHere() throws {
        let result = try runProcess("/usr/bin/systemd-analyze", ["verify", "--man=no", unit])
        let problems = (result.stdout + result.stderr).split(separator: "\n").filter { !$0.contains("/usr/sbin/holdfastd is not executable") }
        #expect(problems.isEmpty, "\(problems)")
    }

    @Test func theUnitIsConfinedBeyondSystemdsDefault() throws {
        let result = try runProcess("/usr/bin/systemd-analyze", ["security", "--offline=true", "--threshold=50", unit])
        #expect(result.status == 0, "exposure above 5.0: \(result.stdout.split(separator: "\n").last ?? "")")
        #expect(result.stdout.contains("Overall exposure level for holdfastd.service: 4."))
    }

    @Test func theUnitWaitsForReadyAndIsWatched() throws {
        let text = try String(contentsOfFile: unit, encoding: .utf8)
        for line in ["Type=notify", "WatchdogSec=30s", "Restart=always", "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectoryMode=0700"] {
            #expect(text.split(separator: "\n").contains(Substring(line)), "\(line)")
        }
    }
}
