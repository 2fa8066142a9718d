import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A private print stack for tests, the benchmark and the demo: a real `cupsd` (as root, its own
/// ServerRoot, listening only on its own Unix socket), a real IPP printer (`ippeveprinter` on a
/// loopback port, finishing jobs at once and keeping their files), and the private D-Bus it wants.
/// The machine's own cupsd and /etc/cups are never touched.
///
/// The `holdfast:` backend is the built binary, copied into this cupsd's ServerBin. cupsd gives
/// backends a fixed environment, so a two-line wrapper tells it this testbed's holdfastd socket.
public final class CupsTestbed {
    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
        public init(message: String) { self.message = message }
    }

    public let directory = TemporaryDirectory()
    public let printerPort: Int
    /// The queue-facing URI of the IPP printer.
    public var printerURI: String { "ipp://127.0.0.1:\(printerPort)/ipp/print" }
    public var socket: String { directory.file("cups.sock") }
    public var serverRoot: String { directory.file("root") }
    /// Where the printer keeps each finished job's document (`JOB-TITLE.EXT`).
    public var printedDirectory: String { directory.file("printed") }
    public var cupsdLog: String { directory.file("log/error_log") }
    private var processes: [(name: String, process: SpawnedProcess)] = []

    /// Starts D-Bus, the printer and cupsd; `controlSocket` is the holdfastd the backend asks.
    /// `installGate: false` leaves the `holdfast` backend out of ServerBin (a workstation where the
    /// package's backend link is missing).
    public init(
        controlSocket: String, fileDevice: Bool = false, installGate: Bool = true, backend: String = Products.path("holdfast-cups-backend")
    ) throws {
        printerPort = try Self.freePort()
        let root = directory.path
        chmod(root, 0o755)
        for name in ["root", "bin", "bin/backend", "cache", "state", "log", "printed", "dbus"] {
            try FileManager.default.createDirectory(atPath: directory.file(name), withIntermediateDirectories: true)
            chmod(directory.file(name), 0o755)
        }
        // cupsd's spool and temp directories, as the Debian package sets them up.
        let lp = getgrnam("lp").map { $0.pointee.gr_gid } ?? 7
        for (name, mode) in [("spool", mode_t(0o710)), ("tmp", mode_t(0o1770))] {
            try FileManager.default.createDirectory(atPath: directory.file(name), withIntermediateDirectories: true)
            chown(directory.file(name), 0, lp)
            chmod(directory.file(name), mode)
        }
        for (link, target) in [
            ("bin/daemon", "/usr/lib/cups/daemon"), ("bin/notifier", "/usr/lib/cups/notifier"), ("bin/filter", "/usr/lib/cups/filter"),
            ("bin/backend/ipp", "/usr/lib/cups/backend/ipp"),
        ] {
            try FileManager.default.createSymbolicLink(atPath: directory.file(link), withDestinationPath: target)
        }
        try FileManager.default.copyItem(atPath: backend, toPath: directory.file("bin/holdfast-cups-backend"))
        chmod(directory.file("bin/holdfast-cups-backend"), 0o755)
        if installGate { try Self.write(
            "#!/bin/sh\n# The testbed's holdfastd socket; everything else is the real holdfast: backend.\nHOLDFAST_CONTROL_SOCKET='\(controlSocket)' exec '\(directory.file("bin/holdfast-cups-backend"))' \"$@\"\n",
            to: directory.file("bin/backend/holdfast"), mode: 0o755
        ) }
        try Self.write("""
            ServerBin \(root)/bin
            ServerRoot \(root)/root
            RequestRoot \(root)/spool
            CacheDir \(root)/cache
            StateDir \(root)/state
            TempDir \(root)/tmp
            AccessLog \(root)/log/access_log
            ErrorLog \(root)/log/error_log
            PageLog \(root)/log/page_log
            SystemGroup root
            FileDevice \(fileDevice ? "Yes" : "No")
            User lp
            Group lp

            """, to: directory.file("root/cups-files.conf"), mode: 0o640)
        // Debian's default operation policy, unhardened: holdfastd is the one that hardens it.
        try Self.write(Self.cupsdConf(socket: socket), to: directory.file("root/cupsd.conf"), mode: 0o640)
        try Self.write("""
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <listen>unix:path=\(root)/dbus/bus</listen>
              <auth>EXTERNAL</auth>
              <policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
            </busconfig>

            """, to: directory.file("dbus/bus.conf"), mode: 0o644)

        try start("dbus", "/usr/bin/dbus-daemon", ["--config-file=\(directory.file("dbus/bus.conf"))", "--nofork", "--nopidfile"])
        try waitFor("the private D-Bus") { access(self.directory.file("dbus/bus"), F_OK) == 0 }
        try start(
            "ippeveprinter", "/usr/sbin/ippeveprinter",
            ["-r", "off", "-n", "localhost", "-p", String(printerPort), "-c", "/bin/true", "-d", printedDirectory, "-k",
             "-f", "application/pdf,application/postscript,text/plain,image/jpeg,image/pwg-raster,application/octet-stream",
             "-m", "Holdfast Test Printer", "holdfast-test-printer"],
            environment: ["DBUS_SYSTEM_BUS_ADDRESS": "unix:path=\(directory.file("dbus/bus"))"]
        )
        try waitFor("ippeveprinter on port \(printerPort)") { Self.canConnect(port: self.printerPort) }
        try start("cupsd", "/usr/sbin/cupsd", ["-f", "-c", directory.file("root/cupsd.conf"), "-s", directory.file("root/cups-files.conf")])
        try waitFor("cupsd on \(socket)") { (try? self.run("/usr/bin/lpstat", ["-r"]))?.stdout.contains("scheduler is running") == true }
    }

    deinit { stop() }

    /// Stops everything it started (SIGTERM, then SIGKILL after 5 s) and waits for each.
    public func stop() {
        for (_, process) in processes.reversed() { process.signal(SIGTERM) }
        for (_, process) in processes.reversed() { process.stop() }
        processes = []
    }

    /// Runs a CUPS client against this cupsd, as root or as `user` (via runuser).
    public func run(_ tool: String, _ arguments: [String], as user: String? = nil) throws -> ProcessResult {
        var environment = ["CUPS_SERVER": socket, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"]
        if let user {
            environment["HOME"] = "/"
            return try runProcess("/usr/sbin/runuser", ["-u", user, "--", "/usr/bin/env", "CUPS_SERVER=\(socket)", tool] + arguments, environment: environment)
        }
        return try runProcess(tool, arguments, environment: environment)
    }

    /// `lp` as `user`: the job id on success.
    public func print(_ file: String, queue: String, as user: String, title: String = "test job", options: [String] = []) throws -> Int {
        let result = try run("/usr/bin/lp", ["-d", queue, "-t", title] + options + [file], as: user)
        // "request id is office-12 (1 file(s))"
        guard result.status == 0, let word = result.stdout.split(separator: " ").first(where: { $0.hasPrefix(queue + "-") }),
            let id = Int(word.dropFirst(queue.count + 1))
        else {
            throw Failure(message: "lp as \(user) failed (\(result.status)): \(result.stdout) \(result.stderr)")
        }
        return id
    }

    /// Adds a queue as root (`lpadmin -p NAME -v URI -E`).
    public func addQueue(_ name: String, uri: String) throws -> ProcessResult {
        try run("/usr/sbin/lpadmin", ["-p", name, "-v", uri, "-E"])
    }

    /// The queue names cupsd lists.
    public func queueNames() throws -> [String] {
        try run("/usr/bin/lpstat", ["-v"]).stdout.split(separator: "\n").compactMap { line in
            // "device for office: ipp://…"
            guard line.hasPrefix("device for "), let colon = line.firstIndex(of: ":") else { return nil }
            return String(line[line.index(line.startIndex, offsetBy: 11)..<colon])
        }
    }

    /// How many documents the printer received (each finished job leaves one file with `-k`).
    public func printedCount() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: printedDirectory)) ?? []).filter { !$0.hasSuffix(".prn") }.count
    }

    /// The printed files whose name carries `title` (ippeveprinter writes JOB-title.EXT, lower-cased,
    /// spaces as underscores).
    public func printed(title: String) -> [String] {
        let needle = title.lowercased().replacingOccurrences(of: " ", with: "_")
        return ((try? FileManager.default.contentsOfDirectory(atPath: printedDirectory)) ?? []).filter { $0.lowercased().contains(needle) && !$0.hasSuffix(".prn") }
    }

    // MARK: Plumbing

    private func start(_ name: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        var merged = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"]
        merged.merge(environment) { $1 }
        processes.append((name, try SpawnedProcess([executable] + arguments, environment: merged, log: directory.file("log/\(name).log"))))
    }

    private func waitFor(_ what: String, timeout: Double = 30, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if let dead = processes.first(where: { $0.process.exitStatus() != nil }) {
                let log = (try? String(contentsOfFile: directory.file("log/\(dead.name).log"), encoding: .utf8)) ?? ""
                throw Failure(message: "\(dead.name) exited (\(dead.process.exitStatus() ?? -1)) before \(what) was ready: \(log)")
            }
            guard Date() < deadline else { throw Failure(message: "\(what) was not ready within \(Int(timeout)) s") }
            usleep(20_000)
        }
    }

    static func write(_ text: String, to path: String, mode: mode_t) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode)
    }

    static func freePort() throws -> Int {
        let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else { throw Failure(message: "no free loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func canConnect(port: Int) -> Bool {
        let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// The `<Policy default>` block Debian 12's cupsd.conf ships: the unhardened starting point.
    public static let debianOperationPolicy = """
        <Policy default>
          JobPrivateAccess default
          JobPrivateValues default
          SubscriptionPrivateAccess default
          SubscriptionPrivateValues default
          <Limit Create-Job Print-Job Print-URI Validate-Job>
            Order deny,allow
          </Limit>
          <Limit Send-Document Send-URI Hold-Job Release-Job Restart-Job Purge-Jobs Set-Job-Attributes Create-Job-Subscription Renew-Subscription Cancel-Subscription Get-Notifications Reprocess-Job Cancel-Current-Job Suspend-Current-Job Resume-Job Cancel-My-Jobs Close-Job CUPS-Move-Job>
            Require user @OWNER @SYSTEM
            Order deny,allow
          </Limit>
          <Limit CUPS-Get-Document>
            AuthType Default
            Require user @OWNER @SYSTEM
            Order deny,allow
          </Limit>
          <Limit CUPS-Add-Modify-Printer CUPS-Delete-Printer CUPS-Add-Modify-Class CUPS-Delete-Class CUPS-Set-Default CUPS-Get-Devices>
            AuthType Default
            Require user @SYSTEM
            Order deny,allow
          </Limit>
          <Limit Pause-Printer Resume-Printer Enable-Printer Disable-Printer Pause-Printer-After-Current-Job Hold-New-Jobs Release-Held-New-Jobs Deactivate-Printer Activate-Printer Restart-Printer Shutdown-Printer Startup-Printer Promote-Job Schedule-Job-After Cancel-Jobs CUPS-Accept-Jobs CUPS-Reject-Jobs>
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
        """

    /// cupsd.conf: only this testbed's socket, no browsing, no web interface, and the operation
    /// policy Debian 12 ships (so hardening has something to do).
    static func cupsdConf(socket: String) -> String {
        """
        LogLevel debug
        MaxLogSize 0
        Listen \(socket)
        Browsing No
        WebInterface No
        DefaultAuthType Basic
        MaxJobs 0
        PreserveJobHistory Yes
        <Location />
          Order allow,deny
          Allow from all
        </Location>
        <Location /admin>
          Order allow,deny
          Allow from all
        </Location>
        <Location /admin/conf>
          AuthType Default
          Require user @SYSTEM
          Order allow,deny
          Allow from all
        </Location>
        \(debianOperationPolicy)

        """
    }
}

/// Ordinary local users for print tests, created with `useradd` and removed again (machine-wide:
/// the suites that use them are serialized). A group holds the first one.
public final class TestUsers {
    public let names: [String]
    public let group: String
    private var created: [String] = []
    private var createdGroup = false

    public init(_ names: [String], group: String) throws {
        self.names = names
        self.group = group
        if getgrnam(group) == nil {
            let result = try runProcess("/usr/sbin/groupadd", ["--system", group])
            guard result.status == 0 else { throw CupsTestbed.Failure(message: "groupadd \(group): \(result.stderr)") }
            createdGroup = true
        }
        for (index, name) in names.enumerated() where getpwnam(name) == nil {
            var arguments = ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            if index == 0 { arguments += ["--groups", group] }
            let result = try runProcess("/usr/sbin/useradd", arguments + [name])
            guard result.status == 0 else { throw CupsTestbed.Failure(message: "useradd \(name): \(result.stderr)") }
            created.append(name)
        }
    }

    deinit {
        for name in created { _ = try? runProcess("/usr/sbin/userdel", [name]) }
        if createdGroup { _ = try? runProcess("/usr/sbin/groupdel", [group]) }
    }
}

/// A child process started with posix_spawn, with every signal unblocked and at its default:
/// Foundation's Process passes on the test runner's blocked signals, so a daemon started through it
/// ignores SIGTERM. Output goes to a log file. Not Sendable: one owner stops it.
public final class SpawnedProcess {
    public let pid: Int32
    private var status: Int32?

    public init(_ argv: [String], environment: [String: String], log: String) throws {
        let output = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw CupsTestbed.Failure(message: "cannot open \(log)") }
        defer { close(output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, output, 2)
        // Nothing else: a pipe another test holds open (Foundation's pipes are not close-on-exec)
        // must not stay open in a daemon that outlives that test's reader.
        if let closeFrom = GNU.closeFrom { _ = closeFrom(&actions, 3) }
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
        let arguments = argv.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            arguments.forEach { free($0) }
            variables.forEach { free($0) }
        }
        var child = pid_t()
        let result = posix_spawn(&child, argv[0], &actions, &attributes, arguments, variables)
        guard result == 0 else { throw CupsTestbed.Failure(message: "cannot start \(argv[0]): \(String(cString: strerror(result)))") }
        pid = child
    }

    deinit { stop() }

    public func signal(_ signal: Int32) {
        if status == nil { kill(pid, signal) }
    }

    /// The exit status once it has exited (reaped here), else nil.
    public func exitStatus() -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
        status = raw
        return raw
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; waits for the exit.
    public func stop(grace: Double = 5) {
        guard exitStatus() == nil else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while exitStatus() == nil, Date() < deadline { usleep(5_000) }
        if exitStatus() == nil {
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            _ = waitpid(pid, &raw, 0)
            status = raw
        }
    }
}
