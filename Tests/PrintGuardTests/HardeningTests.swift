import Foundation
import HoldfastTestSupport
import PrintGuard
import Testing

/// Debian 12's cupsd.conf: its default operation policy (shared with the cupsd testbed) and a
/// second policy a queue could be pointed at.
let debianCupsdConf = """
    LogLevel warn
    Listen /run/cups/cups.sock
    <Location />
      Order allow,deny
    </Location>
    \(CupsTestbed.debianOperationPolicy)
    <Policy kerberos>
      <Limit All>
        Order deny,allow
      </Limit>
    </Policy>
    """

@Suite struct HardeningTests {
    @Test func debiansDefaultLetsUsersAroundTheGate() {
        let findings = CupsdHardening.findings(cupsdConf: debianCupsdConf)
        #expect(findings.contains("policy default: CUPS-Create-Local-Printer is open to anyone"))
        #expect(findings.contains("policy default: Release-Job is open to @OWNER @SYSTEM"))
        #expect(findings.contains("policy default: CUPS-Move-Job is open to @OWNER @SYSTEM"))
        #expect(!findings.contains { $0.hasPrefix("policy default: CUPS-Add-Modify-Printer") })
        // Every policy counts: a queue can use any of them.
        #expect(findings.contains("policy kerberos: CUPS-Add-Modify-Printer is open to anyone"))
    }

    @Test func theRepairClosesEveryFindingAndKeepsTheRest() throws {
        let fixed = try #require(CupsdHardening.repaired(cupsdConf: debianCupsdConf))
        #expect(CupsdHardening.findings(cupsdConf: fixed) == [])
        // Submitting a job needs an authenticated user (PeerCred over the socket): no `lp -U other`.
        #expect(fixed.contains("  <Limit Print-Job Print-URI Validate-Job Create-Job>\n    AuthType Default\n    Require valid-user"))
        #expect(!fixed.contains("<Limit Create-Job Print-Job Print-URI Validate-Job>"))
        #expect(fixed.contains("<Limit Send-Document Send-URI Hold-Job Restart-Job Purge-Jobs Create-Job-Subscription"))
        #expect(fixed.contains("  <Limit Cancel-Job>"))
        #expect(fixed.contains("Listen /run/cups/cups.sock"))
        // Owners still cancel their own jobs.
        #expect(fixed.contains("<Limit Cancel-Job>\n    Require user @OWNER @SYSTEM"))
        #expect(CupsdHardening.repaired(cupsdConf: fixed) == fixed)
    }

    @Test func aDuplicateOpenLimitIsStillAFinding() {
        let conf = """
            <Policy default>
              <Limit CUPS-Create-Local-Printer Release-Job Set-Job-Attributes CUPS-Move-Job CUPS-Authenticate-Job CUPS-Add-Modify-Printer CUPS-Delete-Printer CUPS-Add-Modify-Class CUPS-Delete-Class>
                Require user @SYSTEM
              </Limit>
              <Limit Release-Job>
                Require valid-user
              </Limit>
            </Policy>
            """
        #expect(CupsdHardening.findings(cupsdConf: conf).filter { !$0.contains("takes the user name") } == ["policy default: Release-Job is open to any authenticated user"])
    }

    @Test func debiansDefaultTakesWhateverUserNameTheClientClaims() {
        #expect(CupsdHardening.findings(cupsdConf: debianCupsdConf).contains(
            "policy default: Print-Job takes the user name the client claims (no Require): users can print as someone else"
        ))
    }

    /// cupsd reads operation codes in hex, comments after a tag and `Satisfy any`; so does the check.
    @Test(arguments: [
        ("<Limit 0x4028>\n    Order deny,allow\n  </Limit>", "CUPS-Create-Local-Printer is open to anyone"),
        ("<Limit CUPS-Create-Local-Printer>\n    Require user @SYSTEM\n    Satisfy any\n    Allow from all\n  </Limit>", "CUPS-Create-Local-Printer is open to anyone (Satisfy any)"),
        ("<Limit CUPS-Create-Local-Printer>\n    Require user @SYSTEM\n    AuthClass Anonymous\n  </Limit>", "CUPS-Create-Local-Printer is open to whoever authclass lets through"),
    ])
    func cupsdsOwnReadingsAreFollowed(block: String, expected: String) throws {
        let hardened = try #require(CupsdHardening.repaired(cupsdConf: debianCupsdConf))
        // An open block put in front of the hardened ones (first match wins in the check as well).
        let conf = hardened.replacingOccurrences(of: "<Policy default>\n", with: "<Policy default>\n  \(block)\n")
        #expect(CupsdHardening.findings(cupsdConf: conf).contains("policy default: \(expected)"))
        #expect(CupsdHardening.findings(cupsdConf: try #require(CupsdHardening.repaired(cupsdConf: conf))) == [])
    }

    @Test func authTypeNoneAuthenticatesNoOne() throws {
        let inLimit = try #require(CupsdHardening.repaired(cupsdConf: debianCupsdConf)).replacingOccurrences(
            of: "<Policy default>\n", with: "<Policy default>\n  <Limit Print-Job>\n    AuthType None\n    Require valid-user\n  </Limit>\n"
        )
        #expect(CupsdHardening.findings(cupsdConf: inLimit).contains { $0.hasPrefix("policy default: Print-Job takes the user name") })
        // DefaultAuthType None: the repair names Basic (PeerCred over the socket), not Default.
        let global = "DefaultAuthType None\n" + debianCupsdConf
        #expect(CupsdHardening.findings(cupsdConf: global).contains { $0.hasPrefix("policy default: Print-Job takes the user name") })
        let fixed = try #require(CupsdHardening.repaired(cupsdConf: global))
        #expect(fixed.contains("    AuthType Basic\n    Require valid-user"))
        #expect(fixed.contains("    AuthType Basic\n    Require user @SYSTEM"))
        #expect(CupsdHardening.findings(cupsdConf: fixed) == [])
    }

    @Test func theRepairNeverLoosensAnAdminsStricterLimit() throws {
        let conf = debianCupsdConf.replacingOccurrences(
            of: "<Limit Create-Job Print-Job Print-URI Validate-Job>\n    Order deny,allow",
            with: "<Limit Create-Job Print-Job Print-URI Validate-Job>\n    AuthType Default\n    Require user @printusers\n    Order deny,allow"
        )
        let fixed = try #require(CupsdHardening.repaired(cupsdConf: conf))
        #expect(fixed.contains("<Limit Create-Job Print-Job Print-URI Validate-Job>\n    AuthType Default\n    Require user @printusers"))
        let defaultPolicy = fixed.components(separatedBy: "<Policy kerberos>")[0]
        #expect(!defaultPolicy.contains("Require valid-user"))
        #expect(CupsdHardening.findings(cupsdConf: fixed) == [])
    }

    @Test func aCommentAfterAPolicyTagDoesNotHideThePolicy() {
        let conf = debianCupsdConf.replacingOccurrences(of: "<Policy default>", with: "<Policy default> # the desk's policy")
        #expect(CupsdHardening.findings(cupsdConf: conf).contains("policy default: CUPS-Create-Local-Printer is open to anyone"))
    }

    @Test func noPolicyAtAllIsAFindingThatCannotBeRepairedByRewriting() {
        #expect(CupsdHardening.findings(cupsdConf: "Listen /run/cups/cups.sock\n").count == 1)
        #expect(CupsdHardening.repaired(cupsdConf: "Listen /run/cups/cups.sock\n") == nil)
    }

    @Test func fileDeviceIsReadFromCupsFilesConf() {
        #expect(CupsdHardening.fileDevice(cupsFilesConf: "SystemGroup lpadmin\n#FileDevice Yes\n") == nil)
        #expect(CupsdHardening.fileDevice(cupsFilesConf: "FileDevice Yes\n") == true)
        #expect(CupsdHardening.fileDevice(cupsFilesConf: "FileDevice yes\nFileDevice No\n") == false)
    }
}
