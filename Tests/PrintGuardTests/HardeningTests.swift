import PrintGuard
import Testing

/// The operation policy Debian 12's cupsd.conf ships (shortened to the parts that matter here).
let debianCupsdConf = """
    LogLevel warn
    Listen /run/cups/cups.sock
    <Location />
      Order allow,deny
    </Location>
    <Policy default>
      JobPrivateAccess default
      <Limit Create-Job Print-Job Print-URI Validate-Job>
        Order deny,allow
      </Limit>
      <Limit Send-Document Send-URI Hold-Job Release-Job Restart-Job Purge-Jobs Set-Job-Attributes Create-Job-Subscription Renew-Subscription Cancel-Subscription Get-Notifications Reprocess-Job Cancel-Current-Job Suspend-Current-Job Resume-Job Cancel-My-Jobs Close-Job CUPS-Move-Job>
        Require user @OWNER @SYSTEM
        Order deny,allow
      </Limit>
      <Limit CUPS-Add-Modify-Printer CUPS-Delete-Printer CUPS-Add-Modify-Class CUPS-Delete-Class CUPS-Set-Default CUPS-Get-Devices>
        AuthType Default
        Require user @SYSTEM
        Order deny,allow
      </Limit>
      <Limit Cancel-Job CUPS-Authenticate-Job>
        Require user @OWNER @SYSTEM
        Order deny,allow
      </Limit>
      <Limit All>
        Order deny,allow
      </Limit>
    </Policy>
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
        #expect(fixed.contains("  <Limit Create-Job Print-Job Print-URI Validate-Job>"))
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
        #expect(CupsdHardening.findings(cupsdConf: conf) == ["policy default: Release-Job is open to any authenticated user"])
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
