import Foundation
import HoldfastCore
import HoldfastTestSupport
import PrintGuard
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// holdfastd enforcing print on a real private cupsd with a real IPP printer (ippeveprinter),
/// clients run as ordinary local users. Serialized: the test users are machine-wide.
@Suite(.serialized) struct PrintEnforcementTests {
    static let ann = PrintAgent.users[0]
    static let bob = PrintAgent.users[1]

    /// The office printer is approved by name and URI; ann (and the desk group) may use it.
    static func policy(_ printerURI: String, quota: String = #"{"pages_per_day": 5}"#, users: String = "", unapproved: String = "remove") -> String {
        """
        {"print": {"approved": [{"id": "office", "name": "office", "uri": "\(printerURI.replacingOccurrences(of: "/ipp/print", with: "/*"))"\(users)}],
                   "quota": \(quota), "unapproved": "\(unapproved)"}}
        """
    }

    /// A started agent with the office queue added (by root, ungated) before holdfastd starts.
    func agent(quota: String = #"{"pages_per_day": 5}"#, users: String = "", unapproved: String = "remove", fileDevice: Bool = false, extra: String = "") throws -> PrintAgent {
        let agent = try PrintAgent(policy: "{}", fileDevice: fileDevice, extra: extra)
        let cups = try agent.testbed
        try agent.setPolicy(Self.policy(cups.printerURI, quota: quota, users: users, unapproved: unapproved))
        #expect(try cups.addQueue("office", uri: cups.printerURI).status == 0)
        try agent.start()
        // Start-up reconciliation points the approved queue at the gate and hardens cupsd (which
        // then reloads; lpadmin during that reload would fail).
        #expect(try agent.eventually { try cups.run("/usr/bin/lpstat", ["-v", "office"]).stdout.contains("holdfast:ipp://") })
        #expect(try agent.eventually { try !agent.events("print.hardening_repaired").isEmpty })
        #expect(try agent.eventually { try cups.run("/usr/bin/lpstat", ["-r"]).stdout.contains("scheduler is running") })
        return agent
    }

    @Test func anApprovedJobPassesTheGateAndCompletesAtThePrinter() throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        let agent = try agent()
        let cups = try agent.testbed
        let id = try cups.print(try agent.document(pages: 2), queue: "office", as: Self.ann, title: "approved report")
        let finished = try agent.finished(id)
        #expect(finished.state == JobState.completed)
        #expect(cups.printed(title: "approved report").count == 1)
        #expect(try agent.eventually { try !agent.events("print.job").isEmpty })
        let event = try #require(try agent.events("print.job").last)
        let details = event["holdfast"]?["details"]
        #expect(details?["verdict"]?.stringValue == "allow")
        #expect(details?["user"]?.stringValue == Self.ann)
        #expect(details?["queue"]?.stringValue == "office")
        #expect(details?["pages"]?.intValue == 2)
        #expect(details?["format"]?.stringValue == "application/pdf")
        #expect(details?["title"]?.stringValue == "approved report")
        #expect(details?["device_uri"]?.stringValue == cups.printerURI)
        #expect(event["actor"]?["user"]?["name"]?.stringValue == Self.ann)
    }

    @Test func anUnapprovedQueueAddedWithLpadminIsRemovedAndStatusSaysWhy() throws {
        let agent = try agent()
        let cups = try agent.testbed
        #expect(try cups.addQueue("rogue", uri: cups.printerURI).status == 0)
        #expect(try agent.eventually { try !cups.queueNames().contains("rogue") })
        #expect(try cups.queueNames() == ["office"])
        #expect(try agent.eventually { try agent.events("print.queue_removed").contains { $0["holdfast"]?["details"]?["queue"]?.stringValue == "rogue" } })

        // The acceptance command: every queue with its approved flag, read through libcups.
        #expect(try cups.addQueue("lobby", uri: "ipp://127.0.0.1:9/ipp/print").status == 0)
        let status = try agent.holdfast(["print", "status", "--json"])
        #expect(status.status == 0)
        let document = try JSONDecoder().decode(JSONValue.self, from: Data(status.stdout.utf8))
        guard case .array(let queues)? = document["queues"] else {
            Issue.record("no queues in \(status.stdout)")
            return
        }
        let office = queues.first { $0["name"]?.stringValue == "office" }
        #expect(office?["approved"]?.boolValue == true)
        #expect(office?["gated"]?.boolValue == true)
        #expect(office?["device_uri"]?.stringValue == cups.printerURI)
        // lobby may already be gone; while it is listed it is not approved.
        if let lobby = queues.first(where: { $0["name"]?.stringValue == "lobby" }) {
            #expect(lobby["approved"]?.boolValue == false)
            #expect(lobby["reason"]?.stringValue?.hasPrefix("no approved rule matches queue lobby") == true)
        }
        #expect(document["hardening"]?["hardened"]?.boolValue != nil)
        #expect(try agent.eventually { try !cups.queueNames().contains("lobby") })
    }

    @Test func aFileQueueIsRemovedEvenWhereCupsdAllowsFileDevices() throws {
        let agent = try agent(fileDevice: true)
        let cups = try agent.testbed
        // This cupsd has FileDevice Yes: lpadmin takes the file: queue, holdfastd removes it.
        #expect(try cups.addQueue("to-disk", uri: "file:///tmp/holdfast-print-to-file.out").status == 0)
        #expect(try agent.eventually { try !cups.queueNames().contains("to-disk") })
        let removed = try #require(try agent.events("print.queue_removed").first { $0["holdfast"]?["details"]?["queue"]?.stringValue == "to-disk" })
        #expect(removed["holdfast"]?["details"]?["reason"]?.stringValue?.contains("never approved") == true)
        // And the FileDevice setting itself is a hardening finding.
        #expect(try agent.eventually {
            try agent.events("print.hardening_drift").contains { $0["message"]?.stringValue?.contains("FileDevice Yes") == true }
        })
    }

    @Test func aUsersCreateLocalPrinterIsRefusedOnceHardened() throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        let agent = try agent()
        let cups = try agent.testbed
        let request = agent.directory.file("create-local.test")
        try """
            {
              NAME "CUPS-Create-Local-Printer"
              OPERATION CUPS-Create-Local-Printer
              GROUP operation-attributes-tag
              ATTR charset attributes-charset utf-8
              ATTR naturalLanguage attributes-natural-language en
              ATTR uri printer-uri $uri
              ATTR name requesting-user-name $user
              GROUP printer-attributes-tag
              ATTR name printer-name users_own_queue
              ATTR uri device-uri \(cups.printerURI)
              STATUS successful-ok
            }
            """.writeReplacing(toFile: request)
        chmod(request, 0o644)
        let socketURI = "ipp://" + cups.socket.replacingOccurrences(of: "/", with: "%2F") + "/"
        let result = try cups.run("/usr/bin/ipptool", ["-tv", socketURI, request], as: Self.ann)
        #expect(result.status != 0)
        #expect(result.stdout.contains("client-error-forbidden") || result.stdout.contains("client-error-not-authorized"))
        #expect(try !cups.queueNames().contains("users_own_queue"))
    }

    @Test func aJobThatWouldCrossTheQuotaIsCancelledWithTheReason() throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        let agent = try agent(quota: #"{"pages_per_day": 5}"#)
        let cups = try agent.testbed
        let document = try agent.document(pages: 2)
        let first = try cups.print(document, queue: "office", as: Self.ann, title: "quota one")
        #expect(try agent.finished(first).state == JobState.completed)
        // Two copies of two pages: 2 + 4 > 5, cancelled whole.
        let second = try cups.print(document, queue: "office", as: Self.ann, title: "quota two", options: ["-n", "2"])
        let cancelled = try agent.finished(second)
        #expect(cancelled.state == JobState.canceled)
        #expect(cancelled.message.contains("page quota: this job has 4 pages, 2 of 5 used today"))
        #expect(cups.printed(title: "quota two").isEmpty)
        #expect(try agent.eventually { try agent.events("print.job").count == 2 })
        let denied = try #require(try agent.events("print.job").last?["holdfast"]?["details"])
        #expect(denied["verdict"]?.stringValue == "deny")
        #expect(denied["reason"]?.stringValue == "page quota: this job has 4 pages, 2 of 5 used today")
        #expect(denied["copies"]?.intValue == 2)
        // The ledger is per user: bob's day is untouched, and the status shows ann's use.
        let status = try JSONDecoder().decode(JSONValue.self, from: Data(try agent.holdfast(["print", "status", "--json"]).stdout.utf8))
        #expect(status["quota"]?["users"]?[Self.ann]?["pages"]?.intValue == 2)
        #expect(status["quota"]?["users"]?[Self.ann]?["jobs"]?.intValue == 1)
        #expect(try agent.finished(try cups.print(document, queue: "office", as: Self.bob, title: "bob one")).state == JobState.completed)
    }

    @Test func aUserCannotPrintUnderAnotherName() throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        // Only ann (the desk group) may print; bob claims to be ann.
        let agent = try agent(users: #", "users": ["@hf-print-desk"]"#)
        let cups = try agent.testbed
        let document = try agent.document(pages: 1)
        let claimed = try cups.run("/usr/bin/lp", ["-U", Self.ann, "-d", "office", "-t", "as ann", document], as: Self.bob)
        #expect(claimed.status != 0)
        #expect(cups.printed(title: "as ann").isEmpty)
        // Under their own name the gate decides as usual.
        let own = try agent.finished(try cups.print(document, queue: "office", as: Self.bob, title: "bob own"))
        #expect(own.state == JobState.canceled)
        #expect(try agent.finished(try cups.print(document, queue: "office", as: Self.ann, title: "ann own")).state == JobState.completed)
    }

    @Test func aGateQuestionAboutNoRealJobIsRefused() throws {
        let agent = try agent()
        let cups = try agent.testbed
        let forged = GateRequest(
            job: 4242, user: "somebody", title: "forged", copies: 1, queue: "office", deviceURI: cups.printerURI,
            contentType: "application/pdf", pages: 1, format: "application/pdf", pageNote: nil, bytes: 100
        )
        let answer = try ControlClient(socketPath: agent.socket).call("print.gate", forged.arguments)
        #expect(answer.result?["verdict"]?.stringValue == "deny")
        #expect(answer.result?["reason"]?.stringValue == "the question does not match cupsd's job: cupsd has no job 4242")
        #expect(try agent.eventually { try !agent.events("print.gate_mismatch").isEmpty })
        #expect(try agent.events("print.job").isEmpty)
    }

    @Test func everyDocumentOfAMultiDocumentJobCounts() throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        let agent = try agent(quota: #"{"pages_per_day": 3}"#)
        let cups = try agent.testbed
        let first = try agent.document(pages: 2, name: "first.pdf")
        let second = try agent.document(pages: 2, name: "second.pdf")
        let result = try cups.run("/usr/bin/lp", ["-d", "office", "-t", "two documents", first, second], as: Self.ann)
        #expect(result.status == 0)
        let id = try #require(result.stdout.split(separator: " ").first { $0.hasPrefix("office-") }.flatMap { Int($0.dropFirst(7)) })
        let finished = try agent.finished(id)
        // 2 + 2 pages > 3: the second document must not print on the first one's verdict.
        #expect(try agent.eventually { try agent.events("print.job").count >= 1 })
        let charged = try agent.events("print.job").compactMap { $0["holdfast"]?["details"]?["charged_pages"]?.intValue }.reduce(0, +)
        #expect(charged <= 3)
        #expect(finished.state == JobState.canceled)
        if finished.state != JobState.canceled {
            let log = (try? String(contentsOfFile: cups.cupsdLog, encoding: .utf8)) ?? ""
            Issue.record("cupsd log: \(log.split(separator: "\n").filter { $0.contains("[Job \(id)]") }.suffix(40).joined(separator: "\n"))")
        }
    }

    @Test func withHoldfastdStoppedAGatedJobIsCancelled() throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        let agent = try agent()
        let cups = try agent.testbed
        agent.stop(SIGKILL)
        let id = try cups.print(try agent.document(pages: 1), queue: "office", as: Self.ann, title: "while down")
        let finished = try agent.finished(id)
        #expect(finished.state == JobState.canceled)
        #expect(finished.message.contains("fail closed"))
        #expect(cups.printed(title: "while down").isEmpty)
    }

    @Test func noHoldAndReleasingAHeldJobDoNotGetAroundTheGate() throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        // Only the desk group (ann) may print to office; bob may not.
        let agent = try agent(users: #", "users": ["@hf-print-desk"]"#)
        let cups = try agent.testbed
        let document = try agent.document(pages: 1)
        let direct = try cups.print(document, queue: "office", as: Self.bob, title: "bob no hold", options: ["-H", "no-hold"])
        let refused = try agent.finished(direct)
        #expect(refused.state == JobState.canceled)
        #expect(refused.message.contains("user \(Self.bob) may not print to this printer"))

        let held = try cups.print(document, queue: "office", as: Self.bob, title: "bob held", options: ["-H", "indefinite"])
        #expect(try agent.job(held).state == JobState.held)
        // bob's own Release-Job is refused by the hardened policy; the job stays held.
        let release = try cups.run("/usr/bin/lp", ["-i", String(held), "-H", "resume"], as: Self.bob)
        #expect(release.status != 0)
        #expect(try agent.job(held).state == JobState.held)
        // Released by root, it still meets the gate.
        #expect(try cups.run("/usr/bin/lp", ["-i", String(held), "-H", "resume"]).status == 0)
        let gated = try agent.finished(held)
        #expect(gated.state == JobState.canceled)
        #expect(cups.printed(title: "bob").isEmpty)
        #expect(try agent.finished(try cups.print(document, queue: "office", as: Self.ann, title: "ann ok")).state == JobState.completed)
    }

    @Test func lockdownCancelsWaitingJobsRefusesNewOnesAndSurvivesARestart() throws {
        let users = try TestUsers(PrintAgent.users, group: PrintAgent.group)
        defer { withExtendedLifetime(users) {} }
        let agent = try agent()
        let cups = try agent.testbed
        let document = try agent.document(pages: 1)
        let waiting = try cups.print(document, queue: "office", as: Self.ann, title: "waiting", options: ["-H", "indefinite"])
        #expect(try agent.job(waiting).state == JobState.held)
        let on = try agent.holdfast(["print", "lockdown", "on", "--reason", "incident 7"])
        #expect(on.status == 0)
        #expect(on.stdout.contains("1 job(s) cancelled"))
        #expect(try agent.finished(waiting).state == JobState.canceled)
        let during = try agent.finished(try cups.print(document, queue: "office", as: Self.ann, title: "during"))
        #expect(during.state == JobState.canceled)
        #expect(during.message.contains("printing is locked down: incident 7"))
        // A user cannot lift it.
        #expect(try agent.holdfast(["print", "lockdown", "off"], as: Self.ann).status != 0)

        agent.stop()
        try agent.start()
        let afterRestart = try agent.finished(try cups.print(document, queue: "office", as: Self.ann, title: "after restart"))
        #expect(afterRestart.state == JobState.canceled)
        #expect(afterRestart.message.contains("locked down"))

        #expect(try agent.holdfast(["print", "lockdown", "off"]).status == 0)
        #expect(try agent.finished(try cups.print(document, queue: "office", as: Self.ann, title: "released")).state == JobState.completed)
        #expect(cups.printed(title: "released").count == 1)
        #expect(cups.printed(title: "during").isEmpty)
    }

    @Test func anApprovedQueueThatCannotBeGatedIsStoppedNotLeftPrinting() throws {
        let agent = try PrintAgent(policy: "{}", installGate: false)
        let cups = try agent.testbed
        try agent.setPolicy(Self.policy(cups.printerURI))
        #expect(try cups.addQueue("office", uri: cups.printerURI).status == 0)
        try agent.start()
        #expect(try agent.eventually { try !agent.events("print.queue_failed").isEmpty })
        let failed = try #require(try agent.events("print.queue_failed").first?["holdfast"]?["details"])
        #expect(failed["queue"]?.stringValue == "office")
        #expect(failed["stopped"]?.boolValue == true)
        #expect(try cups.run("/usr/bin/lpstat", ["-a", "office"]).stdout.contains("not accepting"))
        #expect(try cups.run("/usr/bin/lpstat", ["-v", "office"]).stdout.contains("holdfast:") == false)
    }

    @Test func rejectModeKeepsTheQueueButStopsIt() throws {
        let agent = try agent(unapproved: "reject")
        let cups = try agent.testbed
        #expect(try cups.addQueue("side", uri: cups.printerURI).status == 0)
        #expect(try agent.eventually { try cups.run("/usr/bin/lpstat", ["-a", "side"]).stdout.contains("not accepting") })
        #expect(try cups.queueNames().contains("side"))
        #expect(try cups.run("/usr/bin/lpstat", ["-v", "side"]).stdout.contains("holdfast:") == false)
        #expect(try agent.eventually { try !agent.events("print.queue_rejected").isEmpty })
        // Turned back on by an admin: rejected and stopped again (printer-state-changed is watched).
        #expect(try cups.run("/usr/sbin/cupsaccept", ["side"]).status == 0)
        #expect(try cups.run("/usr/sbin/cupsenable", ["side"]).status == 0)
        #expect(try agent.eventually { try agent.events("print.queue_rejected").count >= 2 })
        #expect(try agent.eventually { try cups.run("/usr/bin/lpstat", ["-a", "side"]).stdout.contains("not accepting") })
    }
}
