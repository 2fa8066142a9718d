import Foundation
import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

@Suite struct ConfigurationTests {
    func parse(_ text: String) throws(ConfigError) -> AgentConfiguration {
        try AgentConfigurationParser.parse(Array(text.utf8), path: "agent.conf")
    }

    func refusal(_ text: String) -> ConfigError? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func parsesEveryKey() throws {
        let configuration = try parse("""
            # Holdfast agent configuration
            ; another comment style

            [agent]
            state_dir = /srv/holdfast/state
            control_socket = /run/hf/control.sock
            policy = "/etc/holdfast/site policy.json"
            log_level = debug

            [journal]
            max_size = 64M
            """)
        #expect(configuration.stateDirectory == "/srv/holdfast/state")
        #expect(configuration.controlSocket == "/run/hf/control.sock")
        #expect(configuration.policyFile == "/etc/holdfast/site policy.json")
        #expect(configuration.logLevel == .debug)
        #expect(configuration.journalMaximumBytes == 64 << 20)
    }

    @Test func parsesTheFileWatchSection() throws {
        let configuration = try parse("""
            [agent]
            control_socket = /run/hf/control.sock
            [filewatch]
            enabled = yes
            roots = /home, /srv/desk
            rules = check
            rule_key = site-fw
            """)
        #expect(configuration.fileWatchEnabled)
        #expect(configuration.fileWatchRoots == ["/home", "/srv/desk"])
        #expect(configuration.fileWatchRules == "check")
        #expect(configuration.fileWatchRuleKey == "site-fw")
        // The intake socket sits next to the control socket unless configured.
        #expect(configuration.fileWatchIntakePath == "/run/hf/audit.sock")
        #expect(try parse("[filewatch]\nintake_socket = /run/x/intake.sock\n").fileWatchIntakePath == "/run/x/intake.sock")
        #expect(AgentConfiguration().fileWatchIntakePath == "/run/holdfast/audit.sock")
    }

    @Test func parsesThePostureSection() throws {
        let configuration = try parse("[posture]\nenabled = yes\ninterval = 2m\nsupported = debian 11, ubuntu 24.04\nmax_update_age = 3d\nmax_idle_lock = 10m\n")
        #expect(configuration.postureIntervalSeconds == 120)
        #expect(configuration.postureSupported == ["debian": "11", "ubuntu": "24.04"])
        #expect(configuration.postureMaximumUpdateAge == 3 * 86_400)
        #expect(configuration.postureMaximumIdleLock == 600)
        #expect(refusal("[posture]\nsupported = debian\n")?.message == "supported lists ID VERSION pairs, comma-separated (e.g. debian 12, ubuntu 22.04)")
        #expect(refusal("[posture]\nmax_update_age = 5m\n")?.message == "max_update_age must be a duration from 1h to 90d (e.g. 7d)")
        #expect(AgentConfiguration().postureSupported == ["debian": "12", "ubuntu": "22.04"])
    }

    @Test func anEmptyFileMeansTheDefaults() throws {
        #expect(try parse("") == AgentConfiguration())
        #expect(try parse("# only comments\n\n") == AgentConfiguration())
    }

    @Test func namesTheLineOfAnUnknownKey() {
        let error = refusal("[agent]\nstat_dir = /var/lib/holdfast\n")
        #expect(error?.line == 2)
        #expect(error?.description == "agent.conf:2: unknown key 'stat_dir' in [agent]")
    }

    @Test(arguments: [
        ("duplicate key", "[agent]\nlog_level = info\nlog_level = debug\n", 3, "duplicate key 'log_level' (first set on line 2)"),
        ("unknown section", "[printer]\nmode = enforce\n", 1, "unknown section [printer] (known: agent, broker, filewatch, journal, lockdown, login, posture, print, usb)"),
        ("unknown print key", "[print]\nmode = enforce\n", 2, "unknown key 'mode' in [print]"),
        ("bad cups_server", "[print]\ncups_server = relative/cups.sock\n", 2, "cups_server must be a socket path or host:port"),
        ("bad filewatch rules", "[filewatch]\nrules = sometimes\n", 2, "rules must be manage, check or off"),
        ("a root with a space", "[filewatch]\nroots = /home,/srv/my desk\n", 2, "roots: '/srv/my desk' has a space or a quote; auditd's rules cannot name it"),
        ("a relative root", "[filewatch]\nroots = home\n", 2, "roots must be an absolute path"),
        ("key outside a section", "log_level = info\n", 1, "'log_level' is outside a section; put it under a [section]"),
        ("relative path", "[agent]\nstate_dir = var/lib/holdfast\n", 2, "state_dir must be an absolute path"),
        ("dot-dot path", "[agent]\npolicy = /etc/holdfast/../shadow\n", 2, "policy must not contain '..' (write the path it leads to)"),
        ("bad log level", "[agent]\nlog_level = loud\n", 2, "log_level must be one of error, warning, notice, info, debug"),
        ("tiny journal", "[journal]\nmax_size = 10K\n", 2, "max_size must be a size of at least 1M (e.g. 256M, 1G)"),
        ("garbage size", "[journal]\nmax_size = lots\n", 2, "max_size must be a size of at least 1M (e.g. 256M, 1G)"),
        ("empty value", "[agent]\nlog_level =\n", 2, "'log_level' has no value"),
        ("not a key line", "[agent]\njust words\n", 2, "expected 'key = value', a [section] or a # comment"),
        ("unclosed section", "[agent\n", 1, "section header must end with ]"),
    ])
    func refusesWithTheLine(_ name: String, _ text: String, _ line: Int, _ message: String) {
        let error = refusal(text)
        #expect(error?.line == line, "\(name)")
        #expect(error?.message == message, "\(name)")
    }

    @Test func refusesInvalidUTF8() {
        let error = #expect(throws: ConfigError.self) {
            try AgentConfigurationParser.parse(Array("[agent]\n".utf8) + [0xFF, 0xFE, 0x0A], path: "agent.conf")
        }
        #expect(error?.line == 2)
    }

    @Test func refusesASocketPathTooLongForSunPath() {
        let error = refusal("[agent]\ncontrol_socket = /" + String(repeating: "s", count: 120) + "\n")
        #expect(error?.line == 2)
    }

    @Test func loadsAFileOwnedByRootAndRefusesOthersWriting() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("agent.conf")
        try "[agent]\nlog_level = notice\n".write(toFile: path)
        chmod(path, 0o644)
        #expect(try AgentConfigurationParser.load(path, requireRootOwned: true).logLevel == .notice)

        chmod(path, 0o664)
        let groupWritable = #expect(throws: ConfigError.self) { try AgentConfigurationParser.load(path, requireRootOwned: true) }
        #expect(groupWritable?.line == 0)
        #expect(groupWritable?.message.contains("lets group or others write it") == true)

        chmod(path, 0o644)
        chown(path, 65_534, 65_534)
        let foreign = #expect(throws: ConfigError.self) { try AgentConfigurationParser.load(path, requireRootOwned: true) }
        #expect(foreign?.message == "owned by uid 65534; it must be owned by root")
        // Offline tools may read a file they own.
        #expect(try AgentConfigurationParser.load(path, requireRootOwned: false).logLevel == .notice)
    }

    @Test func refusesASymbolicLink() throws {
        let directory = TemporaryDirectory()
        try "[agent]\n".write(toFile: directory.file("real.conf"))
        symlink(directory.file("real.conf"), directory.file("agent.conf"))
        let error = #expect(throws: ConfigError.self) { try AgentConfigurationParser.load(directory.file("agent.conf"), requireRootOwned: true) }
        #expect(error?.message == "is a symbolic link; refusing it")
    }
}

@Suite struct PolicyTests {
    @Test func parsesSectionsAndVersion() throws {
        let policy = try Policy.parse(Array(#"{"version":4,"usb":{"default":"block"},"print":{}}"#.utf8))
        #expect(policy.version == 4)
        #expect(policy.sections["usb"]?["default"] == "block")
        #expect(Set(policy.sections.keys) == ["usb", "print"])
    }

    @Test(arguments: [
        ("not JSON", "{usb:", "not valid JSON"),
        ("an array", "[]", "the policy must be a JSON object"),
        ("unknown section", #"{"usbb":{}}"#, #"unknown section "usbb""#),
        ("section not an object", #"{"usb":"block"}"#, #"section "usb" must be a JSON object"#),
        ("negative version", #"{"version":-1}"#, #""version" must be a non-negative integer"#),
        ("string version", #"{"version":"3"}"#, #""version" must be a non-negative integer"#),
    ])
    func refusesMalformedPolicies(_ name: String, _ text: String, _ message: String) {
        let error = #expect(throws: PolicyError.self, "\(name)") { try Policy.parse(Array(text.utf8)) }
        #expect(error?.message.hasPrefix(message) == true, "\(name): \(error?.message ?? "")")
    }
}

@Suite struct LoggerTests {
    @Test func writesJournaldPriorityLinesWithMetadata() {
        let memory = MemoryLogHandler()
        let logger = Logger(level: .info, handler: memory).with("device.id", "1-2")
        logger.warning("blocked device", ("rule.id", "storage default"), ("vid", "0781"))
        #expect(memory.records.map(\.line) == [#"<4>blocked device device.id=1-2 rule.id="storage default" vid=0781"#])
    }

    @Test func dropsRecordsBelowTheThresholdAndSharesLevelChanges() {
        let memory = MemoryLogHandler()
        let logger = Logger(level: .notice, handler: memory)
        let tagged = logger.with("service", "control")
        tagged.info("hidden")
        logger.level = .debug
        tagged.debug("shown")
        #expect(memory.records.map(\.message) == ["shown"])
    }

    @Test func keepsOneRecordOnOneLine() {
        let record = LogRecord(level: .error, message: "two\nlines", metadata: [("error", "a\nb")])
        #expect(record.line == #"<3>two lines error="a\nb""#)
    }
}

@Suite struct ControlMessageTests {
    @Test func adminVerbsAreForRootOnly() {
        #expect(VerbClass.admin.permits(uid: 0))
        #expect(!VerbClass.admin.permits(uid: 1000))
        #expect(VerbClass.read.permits(uid: 65_534))
        #expect(VerbClass.request.permits(uid: 1000))
    }
}

extension String {
    func write(toFile path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw SystemCallError(call: "open", subject: path, errno: errno) }
        defer { close(descriptor) }
        _ = withCString { Glibc.write(descriptor, $0, strlen($0)) }
    }
}

@Suite struct RateLimiterTests {
    @Test func admitsABurstThenCountsWhatItRefuses() {
        let clock = ManualTimeSource(Date(timeIntervalSince1970: 1_800_000_000))
        let limiter = RateLimiter(burst: 3, perSecond: 0.5, clock: clock)
        #expect((0..<3).map { _ in limiter.admit("u").allowed } == [true, true, true])
        #expect(limiter.admit("u").allowed == false)
        #expect(limiter.admit("u").allowed == false)
        #expect(limiter.admit("other").allowed)  // keys are independent
        clock.advance(by: 2)  // one token back
        let next = limiter.admit("u")
        #expect(next.allowed)
        #expect(next.suppressed == 2)
        #expect(limiter.admit("u").allowed == false)
    }
}

/// `[login] exempt`: who the login check lets on without asking the broker.
@Suite struct LoginExemptionTests {
    @Test(arguments: [
        ("root", "tty1", nil, true), ("root", "/dev/tty3", nil, true), ("root", "tty1", "10.0.0.5", false), ("root", "pts/0", nil, false),
        ("root", nil, nil, false), ("root", "ttyS0", nil, false), ("alice", "tty1", nil, false), ("backup", "pts/4", "10.0.0.9", true),
    ] as [(String, String?, String?, Bool)])
    func exemptions(_ user: String, _ tty: String?, _ remote: String?, _ exempt: Bool) throws {
        var configuration = AgentConfiguration()
        configuration.loginExempt = ["root@console", "backup"]
        #expect(configuration.loginIsExempt(user: user, tty: tty, remoteHost: remote) == exempt)
    }

    @Test func theLoginSectionParsesAndRefusesNonsense() throws {
        let good = try AgentConfigurationParser.parse(Array("[login]\ntimeout = 500ms\noffline_grace = 0\nexempt = root@console, ops\n".utf8), path: "agent.conf")
        #expect(good.loginTimeoutMilliseconds == 500)
        #expect(good.loginOfflineGraceSeconds == 0)
        #expect(good.loginExempt == ["root@console", "ops"])
        #expect(throws: (any Error).self) { try AgentConfigurationParser.parse(Array("[login]\ntimeout = 50ms\n".utf8), path: "agent.conf") }
        for bad in ["-root", "ops/x", "@console"] {
            #expect(throws: (any Error).self, "\(bad)") { try AgentConfigurationParser.parse(Array("[login]\nexempt = \(bad)\n".utf8), path: "agent.conf") }
        }
        // Directory names as the login check takes them; a space inside a name stays.
        let directory = try AgentConfigurationParser.parse(Array("[login]\nexempt = CORP\\admin, ops@corp.example@console ,  Help Desk \n".utf8), path: "agent.conf")
        #expect(directory.loginExempt == [#"CORP\admin"#, "ops@corp.example@console", "Help Desk"])
        #expect(directory.loginIsExempt(user: "ops@corp.example", tty: "tty2", remoteHost: nil))
        #expect(!directory.loginIsExempt(user: "ops@corp.example", tty: "pts/1", remoteHost: nil))
    }
}
