import Foundation
import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

/// The login check as PAM runs it: a test PAM service (its own file in /etc/pam.d, removed after)
/// whose account phase is pam_exec of `holdfast-login-check` (what the shipped profile runs), or of
/// `holdfast login-check`, driven with pamtester; a real broker and holdfastd on loopback. The PAM
/// file is machine-wide, but its name is this test's alone.
@Suite(.serialized) struct LoginCheckTests {
    /// A PAM service that runs the login check against this rig's socket and config: the thin
    /// binary the profile ships, or the same command in the full CLI.
    final class PAMService {
        let name = "holdfast-test-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        var path: String { "/etc/pam.d/" + name }

        init(socket: String, config: String, fullCLI: Bool = false) throws {
            let command = fullCLI ? Products.path("holdfast") + " login-check" : Products.path("holdfast-login-check")
            try """
                # Holdfast test service (Tests/ExecutableTests/LoginCheckTests.swift); removed by the test.
                auth	required	pam_permit.so
                account	required	pam_exec.so quiet stdout \(command) --socket \(socket) --config \(config)

                """.writeReplacing(toFile: path)
        }

        deinit { unlink(path) }

        /// pamtester's account phase for `user`, with PAM_TTY set: (allowed, what the user saw).
        func account(_ user: String, tty: String = "pts/7") throws -> (allowed: Bool, output: String) {
            let result = try runProcess("/usr/bin/pamtester", ["-I", "tty=\(tty)", "-v", name, user, "acct_mgmt"])
            return (result.status == 0, result.stdout + result.stderr)
        }
    }

    @Test func compliantNonCompliantOfflineWithinAndBeyondGraceAndTheDaemonDown() async throws {
        let rig = try await BrokerServeTests.Rig(extraConfig: "[login]\noffline_grace = 10s\ntimeout = 1s\n")
        try await rig.startAgent()
        _ = try await rig.enroll()
        let pam = try PAMService(socket: rig.socket, config: rig.directory.file("agent.conf"))

        // Compliant (no compliance policy yet): allowed, from a fresh attestation.
        let compliant = try pam.account("nobody")
        #expect(compliant.allowed, "\(compliant.output)")
        let journal = { (try? runProcess(Products.path("holdfast"), ["journal", "tail", "--state-dir", rig.directory.file("state"), "--lines", "200"]).stdout) ?? "" }
        #expect(journal().contains("login of nobody (\(pam.name)) allowed [fresh]"))

        // Non-compliant: denied, and the user sees which check and what to do.
        try #"{"checks": {"no-such-check": "block"}}"#.writeReplacing(toFile: rig.directory.file("compliance.json"))
        #expect(try rig.brokerCLI(["policy", "set", rig.directory.file("compliance.json")]).status == 0)
        let denied = try pam.account("nobody")
        #expect(!denied.allowed)
        #expect(denied.output.contains("Holdfast: login refused: access denied until these checks pass: no-such-check"), "\(denied.output)")

        // Compliant again, then the broker goes away: the recent verdict lets the login on.
        try #"{"checks": {"no-such-check": "report"}}"#.writeReplacing(toFile: rig.directory.file("compliance.json"))
        #expect(try rig.brokerCLI(["policy", "set", rig.directory.file("compliance.json")]).status == 0)
        #expect(try pam.account("nobody").allowed)
        rig.brokerProcess?.stop()
        let cached = try pam.account("nobody")
        #expect(cached.allowed, "\(cached.output)")
        #expect(journal().contains("allowed [cached]"))

        // Beyond the grace window: denied.
        try await Task.sleep(for: .seconds(11))
        let beyond = try pam.account("nobody")
        #expect(!beyond.allowed)
        #expect(beyond.output.contains("the broker did not answer and the last verdict is"), "\(beyond.output)")
        #expect(journal().contains("denied [offline-deny]"))

        // The daemon down: denied, except root on a local console (the default exemption).
        rig.agentProcess?.stop()
        let down = try pam.account("nobody")
        #expect(!down.allowed)
        #expect(down.output.contains("the Holdfast agent does not answer"))
        #expect(try pam.account("root", tty: "tty1").allowed)
        #expect(!(try pam.account("root", tty: "pts/3").allowed), "root over a pseudo-terminal is not the local console")
    }

    /// The thin binary is the command: its usage names it alone, and it knows --version.
    @Test func theThinBinarysUsageIsItsOwn() throws {
        let help = try runProcess(Products.path("holdfast-login-check"), ["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.hasPrefix("Usage: holdfast-login-check [OPTIONS]"), "\(help.stdout)")
        let version = try runProcess(Products.path("holdfast-login-check"), ["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("holdfast-login-check "))
        let bad = try runProcess(Products.path("holdfast-login-check"), ["--bogus"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("see 'holdfast-login-check --help'"), "\(bad.stderr)")
    }

    /// `holdfast login-check` is the same command: the same answers, allowed and denied.
    @Test func theFullCLIAnswersAsTheThinBinaryDoes() async throws {
        let rig = try await BrokerServeTests.Rig(extraConfig: "[login]\noffline_grace = 1h\ntimeout = 1s\n")
        try await rig.startAgent()
        _ = try await rig.enroll()
        let thin = try PAMService(socket: rig.socket, config: rig.directory.file("agent.conf"))
        let full = try PAMService(socket: rig.socket, config: rig.directory.file("agent.conf"), fullCLI: true)
        #expect(try thin.account("nobody").allowed)
        #expect(try full.account("nobody").allowed)
        // A directory user (winbind's DOMAIN\user form) is checked like any other.
        let directoryUser = try thin.account(#"CORP\alice"#)
        #expect(directoryUser.allowed, "\(directoryUser.output)")
        try #"{"checks": {"no-such-check": "block"}}"#.writeReplacing(toFile: rig.directory.file("compliance.json"))
        #expect(try rig.brokerCLI(["policy", "set", rig.directory.file("compliance.json")]).status == 0)
        let reason = "Holdfast: login refused: access denied until these checks pass: no-such-check"
        let thinDenied = try thin.account("nobody")
        let fullDenied = try full.account("nobody")
        #expect(!thinDenied.allowed && thinDenied.output.contains(reason), "\(thinDenied.output)")
        #expect(!fullDenied.allowed && fullDenied.output.contains(reason), "\(fullDenied.output)")
    }

    /// A broker that accepts connections and never answers (packets into a void): the login is
    /// decided within the bound anyway, from the last verdict.
    @Test func aBrokerThatNeverAnswersStillGetsTheUserAnAnswerInTime() async throws {
        let rig = try await BrokerServeTests.Rig(extraConfig: "[login]\noffline_grace = 1h\ntimeout = 2s\n")
        try await rig.startAgent()
        _ = try await rig.enroll()
        let pam = try PAMService(socket: rig.socket, config: rig.directory.file("agent.conf"))
        #expect(try pam.account("nobody").allowed)
        // The broker's port now belongs to a listener that completes TCP handshakes (the kernel
        // does) and never reads: TLS waits forever.
        rig.brokerProcess?.stop()
        let sink = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(sink) }
        var reuse: Int32 = 1
        setsockopt(sink, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(rig.port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sink, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(bound == 0 && listen(sink, 64) == 0)
        let started = Date()
        let answer = try pam.account("nobody")
        let elapsed = Date().timeIntervalSince(started)
        #expect(answer.allowed, "\(answer.output)")
        // Not a speed assertion: the bound is the design (2 s + the CLI's margin), checked generously.
        #expect(elapsed < 10, "took \(elapsed) s")
    }
}
