import Dispatch
import FoundationEssentials
import HoldfastCore
import HoldfastDBus
#if canImport(Glibc)
import Glibc
#endif

/// Tells the person at the workstation why (docs/lockdown.md, "Telling the user"): a desktop
/// notification on the seat user's session bus (`org.freedesktop.Notifications`) when a lockdown
/// is engaged or released, and to a requester when an approver decided their exception request
/// or it ended (only when the requester is the seat user). A session bus takes only its own user (EXTERNAL authentication), so
/// holdfastd starts itself as a helper (`holdfastd --notify-user UID …`, posix_spawn, no shell)
/// that drops to the user before it connects. No seat user, no bus, no notification daemon:
/// nothing is shown (the reason is in `holdfast status` and the login check's denial all the same).
struct SeatNotifier: Sendable {
    let seat: SeatUser
    /// Where users' runtime directories are (`/run/user`; `UID/bus` is the session bus).
    let runtimeBase: String
    /// This holdfastd binary (resolved at start: an upgrade replacing the file does not matter).
    let executable: String
    let logger: Logger

    /// What the user reads for a lockdown event; nil for other events.
    static func message(for event: Event) -> (summary: String, body: String)? {
        let scopes = (event.details["scopes"].flatMap { value -> [String]? in
            guard case .array(let items) = value else { return nil }
            return items.compactMap(\.stringValue)
        } ?? []).joined(separator: ", ")
        let reason = event.details["reason"]?.stringValue ?? ""
        let by = event.details["by"]?.stringValue ?? "an administrator"
        switch event.kind {
        case "lockdown.engaged":
            return ("Holdfast: \(scopes) locked on this computer", "\(reason)\n\nBy \(by). Ask your security team if you need it back.")
        case "lockdown.released":
            return ("Holdfast: \(scopes) released", "\(reason)\n\nBy \(by).")
        case "lockdown.breakglass_used":
            return ("Holdfast: \(scopes) open for now (break-glass)", "\(reason); locked again after that.")
        case "lockdown.breakglass_ended":
            return ("Holdfast: \(scopes) locked again", "The break-glass window ended.")
        case "request.approved", "request.denied", "request.revoked", "request.expired":
            let what = event.details["summary"]?.stringValue ?? "your exception"
            let number = event.details["number"]?.intValue.map { " #\($0)" } ?? ""
            let approver = event.details["approver"]?.stringValue ?? "an approver"
            let note = event.details["note"]?.stringValue.map { ": \($0)" } ?? ""
            switch event.kind {
            case "request.approved":
                return ("Holdfast: request\(number) approved", "\(what) until \(event.details["until"]?.stringValue ?? "?"), by \(approver)\(note)")
            case "request.denied":
                return ("Holdfast: request\(number) denied", "\(what), by \(approver)\(note)")
            case "request.revoked":
                return ("Holdfast: exception\(number) ended early", "\(what), by \(approver)\(note)")
            default:
                return ("Holdfast: exception\(number) ended", "\(what): its time is up. Ask again if you still need it (holdfast request).")
            }
        default:
            return nil
        }
    }

    /// Whether the seat user `seatUID` is the one to tell: anyone for a lockdown (it is the
    /// machine's), only the requester for a decision on a request (never another user's words).
    static func isFor(_ event: Event, seatUID: UInt32) -> Bool {
        !event.kind.hasPrefix("request.") || event.actor?.user?.uid == String(seatUID)
    }

    /// Shows the notification in the background (never waits for the user's session).
    func notify(_ event: Event) {
        guard let message = Self.message(for: event), let uid = seat.current()?.user?.uid.flatMap({ UInt32($0) }) else { return }
        guard Self.isFor(event, seatUID: uid) else { return }
        let bus = "\(runtimeBase)/\(uid)/bus"
        guard access(bus, F_OK) == 0 else { return }
        let arguments = [executable, "--notify-user", String(uid), "--bus", "unix:path=" + bus]
        // The words travel in the environment, not the command line: /proc/PID/cmdline is readable
        // by every user, /proc/PID/environ only by the process's own.
        let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOLDFAST_NOTIFY_SUMMARY=" + message.summary, "HOLDFAST_NOTIFY_BODY=" + message.body]
        let executable = executable
        let logger = logger
        DispatchQueue.global().async {
            let status = Self.spawnAndWait(executable, arguments, environment: environment)
            if status != 0 { logger.warning("the desktop notification could not be shown", ("uid", String(uid)), ("status", String(status))) }
        }
    }

    /// posix_spawn(3) with an argument vector (no shell, nothing interpolated), only the given
    /// environment, every signal unblocked and at its default; waits for the exit status at most
    /// `timeout` seconds (the helper runs as the user, who could stop it), then kills it.
    static func spawnAndWait(_ path: String, _ arguments: [String], environment variables: [String], timeout: Double = 15) -> Int32 {
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var environment: [UnsafeMutablePointer<CChar>?] = variables.map { strdup($0) } + [nil]
        defer { for pointer in environment { free(pointer) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        guard posix_spawn(&pid, path, nil, &attributes, &argv, &environment) == 0 else { return -1 }
        var status: Int32 = 0
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1_000))
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped < 0, errno != EINTR { return -1 }
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
                break
            }
            usleep(20_000)
        }
        // WIFEXITED / WEXITSTATUS (the macros Swift does not see).
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}

/// `holdfastd --notify-user UID --bus ADDRESS` (the words in `HOLDFAST_NOTIFY_SUMMARY` and
/// `HOLDFAST_NOTIFY_BODY`): the helper side. Drops to
/// the user (supplementary groups, group, user — and checks it cannot go back) before connecting
/// to the user's bus, so nothing of root's reaches it.
public enum UserNotification {
    public static func run(uid: UInt32, bus address: String, summary: String, body: String) -> Int32 {
        guard uid != 0 || getuid() == 0 else { return 77 }
        guard let entry = getpwuid(uid) else { return 67 }
        let gid = entry.pointee.pw_gid
        closeInherited()
        if getuid() == 0, uid != 0 {
            guard setgroups(0, nil) == 0, setgid(gid) == 0, setuid(uid) == 0, getuid() == uid, geteuid() == uid, setuid(0) != 0 else { return 77 }
        }
        do {
            let bus = try DBusConnection(address: address)
            _ = try DesktopNotification.send(bus, application: "Holdfast", summary: escape(summary), body: escape(body))
            return 0
        } catch {
            let text = "holdfastd --notify-user: \(error)\n"
            _ = text.withCString { write(2, $0, strlen($0)) }
            return 1
        }
    }

    /// Closes every descriptor above standard error before the helper becomes the user: what
    /// holdfastd had open without close-on-exec (its store, sockets, the audit netlink) is none of
    /// the user's process's business.
    static func closeInherited() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for descriptor in names.compactMap(Int32.init) where descriptor > 2 { close(descriptor) }
    }

    /// The body may be rendered as markup (the spec's `body-markup`): `&`, `<`, `>` as entities.
    static func escape(_ text: String) -> String {
        var output = ""
        for character in text {
            switch character {
            case "&": output += "&amp;"
            case "<": output += "&lt;"
            case ">": output += "&gt;"
            default: output.append(character)
            }
        }
        return output
    }
}
