import Foundation
import HoldfastCore
import HoldfastTestSupport
import PrintGuard
#if canImport(Glibc)
import Glibc
#endif

/// `make demo`'s print steps, for real: a private cupsd with a real IPP printer (never the
/// machine's own cupsd), holdfastd reconciling, hardening and gating it, a demo user printing.
enum PrintDemo {
    static let user = "hf-demo-printer"

    static func step(_ text: String) { Swift.print("\n\u{1B}[1m== \(text)\u{1B}[0m") }
    static func say(_ text: String) { Swift.print("   " + text) }

    static func run(binaries: String) -> Int32 {
        do {
            try demo(binaries)
            return 0
        } catch {
            Swift.print("print demo failed: \(error)")
            return 1
        }
    }

    static func demo(_ binaries: String) throws {
        let holdfast = binaries + "/holdfast"
        let work = TemporaryDirectory()
        chmod(work.path, 0o755)
        try FileManager.default.createDirectory(atPath: work.file("run"), withIntermediateDirectories: true)
        chmod(work.file("run"), 0o755)
        let socket = work.file("run/control.sock")
        let users = try TestUsers([user], group: "hf-demo-desk")
        defer { withExtendedLifetime(users) {} }

        step("17. A private cupsd with a real IPP printer (ippeveprinter); two queues, one of them not approved")
        let cups = try CupsTestbed(controlSocket: socket, backend: binaries + "/holdfast-cups-backend")
        _ = try cups.addQueue("office", uri: cups.printerURI)
        _ = try cups.addQueue("lobby-free", uri: cups.printerURI)
        for line in try cups.run("/usr/bin/lpstat", ["-v"]).stdout.split(separator: "\n") { say(String(line)) }
        let pattern = cups.printerURI.replacingOccurrences(of: "/ipp/print", with: "/*")
        try """
            {"print": {"approved": [{"id": "office", "name": "office", "uri": "\(pattern)"}],
                       "quota": {"pages_per_day": 3}, "unapproved": "remove", "hardening": "repair"}}
            """.writeReplacing(toFile: work.file("policy.json"))
        try """
            [agent]
            state_dir = \(work.file("state"))
            control_socket = \(socket)
            policy = \(work.file("policy.json"))
            [usb]
            enabled = no
            [print]
            cups_server = \(cups.socket)
            cups_server_root = \(cups.serverRoot)
            [filewatch]
            enabled = no
            [broker]
            policy_wait = 2s

            """.writeReplacing(toFile: work.file("agent.conf"))
        chmod(work.file("policy.json"), 0o644)
        chmod(work.file("agent.conf"), 0o644)
        say("policy: approve 'office' at \(pattern); 3 pages per user per day; remove the rest; harden cupsd")

        step("18. holdfastd starts: the approved queue is gated, the other removed, cupsd hardened")
        let agent = try SpawnedProcess([binaries + "/holdfastd", "--config", work.file("agent.conf")], environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], log: work.file("holdfastd.log"))
        defer { agent.stop() }
        let admin = CupsClient(server: cups.socket)
        guard waitUntil(30, { (try? admin.queues()).map { $0.count == 1 && $0[0].realURI.gated } == true }) else {
            throw CupsTestbed.Failure(message: "holdfastd did not reconcile the queues")
        }
        _ = waitUntil { (try? runProcess(holdfast, ["print", "status", "--json", "--socket", socket], environment: ["CUPS_SERVER": cups.socket]))?.stdout.contains(#""hardened":true"#) == true }
        _ = waitUntil { (try? admin.queues()) != nil }
        let status = try runProcess(holdfast, ["print", "status", "--socket", socket], environment: ["CUPS_SERVER": cups.socket])
        for line in status.stdout.split(separator: "\n") { say(String(line)) }

        step("19. \(user) prints a 2-page report to office: the gate counts the pages, allows it, the printer has it")
        let document = work.file("report.pdf")
        try simplePDF(pages: 2).writeReplacing(toFile: document)
        chmod(document, 0o644)
        let first = try cups.print(document, queue: "office", as: user, title: "Q3 report")
        let done = try finished(admin, first)
        _ = waitUntil(10) { !cups.printed(title: "Q3 report").isEmpty }
        say("job \(first): \(done.state == 9 ? "completed" : "state \(done.state)") — at the printer: \(cups.printed(title: "Q3 report").joined(separator: ", "))")

        step("20. An admin adds a queue holdfastd did not approve; it is gone almost at once")
        let start = Date()
        _ = try cups.addQueue("rogue-usb-printer", uri: cups.printerURI)
        _ = waitUntil { (try? admin.queues())?.contains { $0.name == "rogue-usb-printer" } == false }
        say(String(format: "lpadmin -p rogue-usb-printer … → removed %.0f ms after the add began", Date().timeIntervalSince(start) * 1000))

        step("21. The same report again would be 4 of 3 pages today: cancelled whole, with the reason")
        let second = try cups.print(document, queue: "office", as: user, title: "Q3 report again")
        let cancelled = try finished(admin, second)
        say("job \(second): \(cancelled.state == 7 ? "cancelled" : "state \(cancelled.state)") — \(cancelled.message)")
        let request = work.file("create-local.test")
        try """
            { NAME "CUPS-Create-Local-Printer" OPERATION CUPS-Create-Local-Printer
              GROUP operation-attributes-tag ATTR charset attributes-charset utf-8 ATTR naturalLanguage attributes-natural-language en
              ATTR uri printer-uri $uri ATTR name requesting-user-name $user
              GROUP printer-attributes-tag ATTR name printer-name my_own_queue ATTR uri device-uri \(cups.printerURI) STATUS successful-ok }
            """.writeReplacing(toFile: request)
        chmod(request, 0o644)
        let own = try cups.run("/usr/bin/ipptool", ["-t", "ipp://" + cups.socket.replacingOccurrences(of: "/", with: "%2F") + "/", request], as: user)
        say("\(user) tries to make a queue of their own (CUPS-Create-Local-Printer): \(own.stdout.contains("forbidden") ? "refused (client-error-forbidden)" : "exit \(own.status)")")
        let claimed = try cups.run("/usr/bin/lp", ["-U", "root", "-d", "office", "-t", "as root", document], as: user)
        say("\(user) claims to be root (lp -U root) to get a fresh quota: \(claimed.status != 0 ? "refused: " + claimed.stderr.trimmingCharacters(in: .whitespacesAndNewlines) : "accepted")")

        step("22. Lockdown: waiting jobs are cancelled, new ones refused; lifted, printing works again")
        let held = try cups.print(document, queue: "office", as: user, title: "held for later", options: ["-H", "indefinite"])
        let on = try runProcess(holdfast, ["print", "lockdown", "on", "--reason", "demo incident", "--socket", socket])
        say(on.stdout.trimmingCharacters(in: .whitespacesAndNewlines) + "; held job \(held): \(try finished(admin, held).state == 7 ? "cancelled" : "still there")")
        let during = try finished(admin, try cups.print(document, queue: "office", as: user, title: "during lockdown"))
        say("a new job during the lockdown: \(during.state == 7 ? "cancelled" : "state \(during.state)") — \(during.message)")
        _ = try runProcess(holdfast, ["print", "lockdown", "off", "--socket", socket])
        let page = work.file("note.pdf")
        try simplePDF(pages: 1).writeReplacing(toFile: page)
        chmod(page, 0o644)
        let after = try finished(admin, try cups.print(page, queue: "office", as: user, title: "after lockdown"))
        say("print lockdown off; a 1-page note (3 of 3 pages today): \(after.state == 9 ? "completed" : "state \(after.state): \(after.message)")")

        step("22b. Just in time: over the quota, \(user) asks; an approver on a broker grants pages; the job prints; the grant is revoked")
        let broker = try TestBroker()
        let enrolled = try runProcess(holdfast, ["enroll", "--token", try broker.token(), "--socket", socket])
        guard enrolled.status == 0 else { throw CupsTestbed.Failure(message: "enroll: \(enrolled.stderr)") }
        say("a broker on \(broker.url); this holdfastd enrolled with it")
        let over = try finished(admin, try cups.print(document, queue: "office", as: user, title: "statements"))
        say("2 more pages today: \(over.state == 7 ? "cancelled" : "state \(over.state)") — \(over.message)")
        let asked = try cups.run(holdfast, ["request", "print", "--queue", "office", "--pages", "4", "--for", "1h", "--reason", "month-end statements", "--socket", socket], as: user)
        say("\(user)$ holdfast request print --queue office --pages 4 --for 1h --reason \"month-end statements\"")
        for line in asked.stdout.split(separator: "\n") { say("  " + line) }
        var number = ""
        _ = waitUntil { number = (try? broker.requests().first { $0["status"] as? String == "pending" }?["number"] as? Int).map { String($0) } ?? ""; return !number.isEmpty }
        say("admin$ holdfast-broker requests")
        for line in try broker.cli(["requests"]).stdout.split(separator: "\n") { say("  " + line) }
        say("admin$ holdfast-broker approve \(number) --for 30m --note \"ok for month end\"")
        for line in try broker.cli(["approve", number, "--for", "30m", "--note", "ok for month end", "--dir", broker.etc]).stdout.split(separator: "\n") { say("  " + line) }
        _ = waitUntil { (try? cups.run(holdfast, ["requests", "--json", "--socket", socket], as: user))?.stdout.contains(#""status":"approved""#) == true }
        say("\(user)$ holdfast requests")
        for line in try cups.run(holdfast, ["requests", "--socket", socket], as: user).stdout.split(separator: "\n") { say("  " + line) }
        let granted = try finished(admin, try cups.print(document, queue: "office", as: user, title: "statements, approved"))
        say("the same 2 pages now: \(granted.state == 9 ? "completed, charged to the exception" : "state \(granted.state): \(granted.message)")")
        _ = try broker.cli(["revoke", number, "--note", "statements printed", "--dir", broker.etc])
        _ = waitUntil { (try? cups.run(holdfast, ["requests", "--json", "--socket", socket], as: user))?.stdout.contains(#""status":"revoked""#) == true }
        say("admin$ holdfast-broker revoke \(number) --note \"statements printed\" → \(user) sees: "
            + ((try? cups.run(holdfast, ["requests", "--socket", socket], as: user).stdout.split(separator: "\n").dropFirst().first.map(String.init)) ?? "?").trimmingCharacters(in: .whitespaces))
        let again = try finished(admin, try cups.print(document, queue: "office", as: user, title: "statements, after"))
        say("2 more pages after the revocation: \(again.state == 7 ? "cancelled" : "state \(again.state)") — \(again.message)")
        broker.stop()

        step("23. The journal: every job with its verdict, the removed queues, the hardening, the request and its decisions")
        agent.stop()
        let journal = try runProcess(holdfast, ["journal", "tail", "--lines", "80", "--state-dir", work.file("state")])
        for line in journal.stdout.split(separator: "\n") where line.contains("\tprint.") || line.contains("\trequest.") {
            let fields = line.split(separator: "\t")
            if fields.count >= 6 { say("\(fields[3])  \(fields[5].prefix(150))") }
        }
        cups.stop()
    }

    static func waitUntil(_ timeout: Double = 30, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() > deadline { return false }
            usleep(20_000)
        }
        return true
    }

    static func finished(_ admin: CupsClient, _ id: Int) throws -> (state: Int32, message: String) {
        var last = (state: Int32(0), message: "")
        _ = waitUntil {
            last = (try? admin.job(Int32(id))) ?? last
            return last.state >= 7
        }
        return last
    }
}
