import Foundation
import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

/// The sessions scope against logind's real D-Bus interface — provided here by python3-dbusmock's
/// logind template on a private system bus, because systemd is not PID 1 on this machine and no
/// logind runs — and the user told why through a notification daemon (dbusmock's
/// notification_daemon template) on a private session bus. A real holdfastd, real sd-bus calls,
/// real PAM (pamtester) for the login denial.
@Suite(.serialized, .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/dbus-daemon"), "needs root and dbus-daemon"))
struct SessionLockdownTests {
    final class Rig {
        let directory = TemporaryDirectory()
        var children: [BrokerServeTests.Child] = []
        var agent: BrokerServeTests.Child?
        var systemBus: String { "unix:path=" + directory.file("system_bus") }
        var sessionBus: String { directory.file("run-user/0/bus") }
        var socket: String { directory.file("run/control.sock") }
        var logind: String { directory.file("logind.log") }
        var notifications: String { directory.file("notifications.log") }

        /// `broker`: agent.conf lines for one (posture then runs: enrollment needs it).
        init(action: String, withLogind: Bool = true, broker: String? = nil) async throws {
            chmod(directory.path, 0o755)
            try FileManager.default.createDirectory(atPath: directory.file("run-user/0"), withIntermediateDirectories: true)
            for (name, type, listen) in [("system", "system", directory.file("system_bus")), ("session", "session", sessionBus)] {
                try """
                    <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
                    <busconfig>
                      <type>\(type)</type>
                      <listen>unix:path=\(listen)</listen>
                      <auth>EXTERNAL</auth>
                      <policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
                    </busconfig>

                    """.writeReplacing(toFile: directory.file("\(name).conf"))
                children.append(try BrokerServeTests.Child("/usr/bin/dbus-daemon", ["--config-file=\(directory.file("\(name).conf"))", "--nofork", "--nopidfile"],
                                                           log: directory.file("\(name)-bus.log")))
                try #require(await BrokerServeTests.poll { access(listen, F_OK) == 0 }, "the private \(name) bus did not start")
            }
            let environment = ["DBUS_SYSTEM_BUS_ADDRESS": systemBus, "DBUS_SESSION_BUS_ADDRESS": "unix:path=" + sessionBus, "PATH": "/usr/bin:/bin"]
            if withLogind {
                children.append(try BrokerServeTests.Child("/usr/bin/python3", ["-m", "dbusmock", "--system", "--template", "logind", "-l", logind],
                                                           log: directory.file("logind-mock.log"), environment: environment))
                try #require(await BrokerServeTests.poll { self.busCall(["--dest=org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager.ListSessions"]) })
                // Alice and Bob at the desk, root on a console, Carol (exempt) over ssh.
                for (id, seat, uid, name) in [("c1", "seat0", 1000, "alice"), ("c2", "seat0", 1001, "bob"), ("c3", "seat0", 0, "root"), ("c4", "seat0", 1002, "carol")] {
                    try #require(busCall([
                        "--dest=org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.DBus.Mock.AddSession",
                        "string:\(id)", "string:\(seat)", "uint32:\(uid)", "string:\(name)", "boolean:true",
                    ]))
                }
            }
            children.append(try BrokerServeTests.Child("/usr/bin/python3", ["-m", "dbusmock", "--template", "notification_daemon", "-l", notifications],
                                                       log: directory.file("notify-mock.log"), environment: environment))
            try #require(await BrokerServeTests.poll { self.busCall(["--session", "--dest=org.freedesktop.Notifications", "/org/freedesktop/Notifications", "org.freedesktop.Notifications.GetCapabilities"]) })
            try "ACTIVE=c3\nACTIVE_UID=0\n".writeReplacing(toFile: directory.file("seat0"))
            try TestAgentConfiguration.write(
                in: directory.path, extra: (broker ?? "[posture]\nenabled = no") + "\n[login]\nexempt = root@console, carol\n[lockdown]\nsessions = \(action)")
            agent = try BrokerServeTests.Child(BrokerServeTests.daemon, ["--config", directory.file("agent.conf")], log: directory.file("agent.log"), environment: [
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DBUS_SYSTEM_BUS_ADDRESS": systemBus, "HOLDFAST_SEAT_FILE": directory.file("seat0"),
                "HOLDFAST_USER_RUNTIME_DIR": directory.file("run-user"),
            ])
            try #require(await BrokerServeTests.poll { (try? self.holdfast(["status"]).status) == 0 }, "holdfastd did not start: \(agent?.output ?? "")")
        }

        func busCall(_ arguments: [String]) -> Bool {
            let bus = arguments.first == "--session" ? ["--bus=unix:path=" + sessionBus] + arguments.dropFirst() : ["--bus=" + systemBus] + arguments
            return (try? runProcess("/usr/bin/dbus-send", ["--print-reply"] + bus))?.status == 0
        }

        func holdfast(_ arguments: [String]) throws -> ProcessResult { try runProcess(BrokerServeTests.holdfast, ["--socket", socket] + arguments) }

        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

        deinit {
            agent?.stop()
            for child in children.reversed() { child.stop() }
        }
    }

    @Test func aSessionsLockdownEndsTheUsersSessionsTellsThemWhyAndDeniesLogins() async throws {
        let rig = try await Rig(action: "terminate")
        let engaged = try rig.holdfast(["lockdown", "on", "--scope", "sessions", "--reason", "incident 5: account misuse"])
        #expect(engaged.status == 0, "\(engaged.stderr)")
        // The right methods: TerminateSession for Alice's and Bob's sessions, nothing for root's or the exempt Carol's.
        #expect(await BrokerServeTests.poll { rig.text(rig.logind).contains(#"TerminateSession "c1""#) && rig.text(rig.logind).contains(#"TerminateSession "c2""#) },
                "\(rig.text(rig.logind))\n\(rig.agent?.output ?? "")")
        #expect(!rig.text(rig.logind).contains(#"TerminateSession "c3""#))
        #expect(!rig.text(rig.logind).contains(#"TerminateSession "c4""#))
        #expect(!rig.text(rig.logind).contains("LockSession"))
        // The seat user is told why, on their session bus.
        #expect(await BrokerServeTests.poll { rig.text(rig.notifications).contains("Notify") }, "\(rig.text(rig.notifications)) \(rig.agent?.output ?? "")")
        #expect(rig.text(rig.notifications).contains("sessions locked on this computer"))
        #expect(rig.text(rig.notifications).contains("incident 5: account misuse"))
        let status = try rig.holdfast(["lockdown", "status", "--json"]).stdout
        #expect(status.contains(#""locked":["sessions"]"#), "\(status)")
        #expect(!status.contains("last_failure"), "\(status)")

        // Logins are denied while it is in force, with the reason; the exempt still get in.
        let pam = try LoginCheckTests.PAMService(socket: rig.socket, config: rig.directory.file("agent.conf"))
        let denied = try pam.account("alice")
        #expect(!denied.allowed)
        #expect(denied.output.contains("Holdfast: login refused: this computer is locked down by uid 0 (root): incident 5: account misuse"), "\(denied.output)")
        #expect(try pam.account("carol").allowed)
        #expect(try pam.account("root", tty: "tty1").allowed)

        // Released: logins are up to the usual checks again (here: no broker, so the unenrolled path).
        #expect(try rig.holdfast(["lockdown", "release", "--scope", "sessions", "--reason", "cleared"]).status == 0)
        let after = try pam.account("alice")
        #expect(!after.output.contains("locked down"), "\(after.output)")
        #expect(await BrokerServeTests.poll { rig.text(rig.notifications).components(separatedBy: "Notify").count == 3 })
    }

    @Test func lockModeLocksAndWithoutLogindTheScopeIsUnavailableButLoginsStayDenied() async throws {
        let lock = try await Rig(action: "lock")
        #expect(try lock.holdfast(["lockdown", "on", "--scope", "sessions", "--reason", "lunch"]).status == 0)
        #expect(await BrokerServeTests.poll { lock.text(lock.logind).contains(#"LockSession "c1""#) && lock.text(lock.logind).contains(#"LockSession "c2""#) })
        #expect(!lock.text(lock.logind).contains("TerminateSession"))

        let bare = try await Rig(action: "terminate", withLogind: false)
        #expect(try bare.holdfast(["lockdown", "on", "--scope", "sessions", "--reason", "no logind"]).status == 0)
        let status = try bare.holdfast(["lockdown", "status", "--json"]).stdout
        #expect(status.contains("unavailable: logind does not answer"), "\(status)")
        let pam = try LoginCheckTests.PAMService(socket: bare.socket, config: bare.directory.file("agent.conf"))
        #expect(!(try pam.account("alice").allowed))
    }

    /// Offboarding through logind's real interface: the broker's signed `offboard bob` ends Bob's
    /// session only (TerminateSession "c2"), PAM denies him with who and why, and the exempt
    /// Carol is denied too once offboarded — an exemption does not outlive an offboarding.
    @Test func anOffboardingEndsOnlyThatUsersSessionsAndPAMDeniesThem() async throws {
        let broker = try TestBroker()
        let rig = try await Rig(action: "terminate", broker: TestBroker.agentSection)
        let enrolled = try rig.holdfast(["enroll", "--token", try broker.token()])
        try #require(enrolled.status == 0, "\(enrolled.stderr)")
        let offboarded = try broker.cli(["offboard", "bob", "--reason", "left the company (HR-7)", "--dir", broker.etc])
        try #require(offboarded.status == 0, "\(offboarded.stderr)")
        #expect(await BrokerServeTests.poll { rig.text(rig.logind).contains(#"TerminateSession "c2""#) }, "\(rig.text(rig.logind))\n\(rig.agent?.output ?? "")")
        for other in ["c1", "c3", "c4"] { #expect(!rig.text(rig.logind).contains("TerminateSession \"\(other)\"")) }
        // What runs outside the sessions too: the user's manager (uid 1001), linger off first.
        #expect(await BrokerServeTests.poll { rig.text(rig.logind).contains("TerminateUser 1001") }, "\(rig.text(rig.logind))")
        #expect(!rig.text(rig.logind).contains("TerminateUser 1000"))
        let pam = try LoginCheckTests.PAMService(socket: rig.socket, config: rig.directory.file("agent.conf"))
        let denied = try pam.account("bob")
        #expect(!denied.allowed)
        #expect(denied.output.contains("Holdfast: login refused: bob's access was revoked by alice"), "\(denied.output)")
        #expect(denied.output.contains("left the company (HR-7)"))

        // The exempt Carol offboarded at the broker before this device has the command (the
        // record written straight into the broker's store, as if the device had not polled yet):
        // her exemption does not skip the question, and the broker refuses her.
        #expect(try pam.account("carol").allowed)
        let now = Int(Date().timeIntervalSince1970)
        let recorded = try runProcess("/usr/bin/sqlite3", ["-cmd", ".timeout 10000", broker.database,
            "INSERT INTO offboardings (user, action, reason, admin, at) VALUES ('carol', 'offboard', 'contract ended', 'alice', \(now))"])
        #expect(recorded.status == 0, "\(recorded.stderr)")
        let asked = try pam.account("carol")
        #expect(!asked.allowed)
        #expect(asked.output.contains("(offboarded)"), "\(asked.output)")
        #expect(!rig.text(rig.logind).contains(#"TerminateSession "c4""#))
        // The command then comes (sent again to the devices without it), and ends her session.
        #expect(try broker.cli(["offboard", "carol", "--resend", "--dir", broker.etc]).status == 0)
        #expect(await BrokerServeTests.poll { rig.text(rig.logind).contains(#"TerminateSession "c4""#) }, "\(rig.text(rig.logind))")
        #expect(await BrokerServeTests.poll { !((try? pam.account("carol").allowed) ?? true) })
        #expect(!rig.text(rig.logind).contains(#"TerminateSession "c1""#))
    }
}
