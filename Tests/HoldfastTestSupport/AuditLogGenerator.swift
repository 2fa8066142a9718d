import HoldfastCore

/// Writes realistic auditd logs, deterministic by seed: file creates, write-opens, renames (four
/// PATH records), deletes, truncates, failed opens, EXECVE (long arguments as `aN[i]` fragments
/// over several records), logins as single-record events; names with spaces or non-ASCII bytes
/// hex-encoded as the kernel does; optionally the ENRICHED format, a node prefix, interleaved
/// events and garbage lines. Used by the tests, the benchmarks and `holdfast-testkit audit-log`.
public struct AuditLogGenerator {
    public struct Options: Sendable {
        public var seed: UInt64
        /// Stops after the event that reaches this many records.
        public var records: Int
        public var start: Int64 = 1_700_000_000
        /// auditd's default `log_format = ENRICHED` (0x1D and interpreted fields).
        public var enriched = true
        public var node: String?
        /// Share of events whose records interleave line by line with the next event.
        public var interleave = 0.05
        /// One garbage line every N events (0: none).
        public var garbageEvery = 0
        public var users = 20

        public init(seed: UInt64, records: Int) {
            self.seed = seed
            self.records = records
        }
    }

    /// What was written, to check a parser against.
    public struct Summary: Sendable, Equatable {
        public var records = 0
        public var events = 0
        public var garbage = 0
        public var bytes = 0
        public var byKind: [String: Int] = [:]
        /// File paths (PATH names of CREATE items) written, in order: the first few.
        public var sampleCreates: [String] = []
    }

    var random: SplitMix64
    let options: Options
    var time: Int64
    var serial: UInt64 = 1_000
    public private(set) var summary = Summary()

    public init(_ options: Options) {
        self.options = options
        random = SplitMix64(seed: options.seed)
        time = options.start * 1_000
    }

    /// The whole log in memory (tests; the benchmark streams with `write(chunk:)`).
    public static func generate(_ options: Options) -> (log: [UInt8], summary: Summary) {
        var generator = AuditLogGenerator(options)
        var log: [UInt8] = []
        generator.write { log.append(contentsOf: $0) }
        return (log, generator.summary)
    }

    /// Writes the log in chunks of about 64 KiB.
    public mutating func write(chunk: ([UInt8]) throws -> Void) rethrows {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(80_000)
        while summary.records < options.records {
            var first = nextEvent()
            if random.chance(options.interleave), summary.records < options.records {
                let second = nextEvent()
                var merged: [[UInt8]] = []
                var left = first[...]
                var right = second[...]
                while !left.isEmpty || !right.isEmpty {
                    if let line = left.popFirst() { merged.append(line) }
                    if let line = right.popFirst() { merged.append(line) }
                }
                first = merged
            }
            for line in first {
                buffer.append(contentsOf: line)
                buffer.append(0x0A)
            }
            if options.garbageEvery > 0, summary.events % options.garbageEvery == 0 {
                buffer.append(contentsOf: garbageLine())
                buffer.append(0x0A)
                summary.garbage += 1
            }
            if buffer.count >= 65_536 {
                summary.bytes += buffer.count
                try chunk(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        summary.bytes += buffer.count
        if !buffer.isEmpty { try chunk(buffer) }
    }

    // MARK: Events

    struct User {
        let uid: Int
        let name: String
    }

    func user(_ index: Int) -> User { User(uid: 1_001 + index, name: String(format2("agent", index + 1))) }

    mutating func nextEvent() -> [[UInt8]] {
        time += Int64(random.below(20) + 1)
        serial += 1 + (random.chance(0.1) ? UInt64(random.below(50)) : 0)
        summary.events += 1
        let roll = random.below(100)
        let lines: [[UInt8]]
        let kind: String
        switch roll {
        case 0..<30: (kind, lines) = ("create", fileEvent(.create))
        case 30..<50: (kind, lines) = ("write", fileEvent(.write))
        case 50..<60: (kind, lines) = ("rename", fileEvent(.rename))
        case 60..<70: (kind, lines) = ("delete", fileEvent(.delete))
        case 70..<73: (kind, lines) = ("truncate", fileEvent(.truncate))
        case 73..<75: (kind, lines) = ("denied", fileEvent(.denied))
        case 75..<90: (kind, lines) = ("execve", execveEvent())
        default: (kind, lines) = ("login", loginEvent())
        }
        summary.byKind[kind, default: 0] += 1
        summary.records += lines.count
        return lines
    }

    enum FileOperation {
        case create, write, rename, delete, truncate, denied
    }

    static let directories = ["Documents", "Downloads", "exports", "crm", "Desktop"]
    static let stems = ["customer list", "accounts", "q3-report", "tickets", "invoice", "clients_export", "résumé", "notes", "payroll"]
    static let extensions = ["csv", "xlsx", "pdf", "txt", "docx"]
    static let programs = [("cp", "/usr/bin/cp"), ("rsync", "/usr/bin/rsync"), ("libreoffice", "/usr/lib/libreoffice/program/soffice.bin"), ("python3", "/usr/bin/python3.11"), ("bash", "/usr/bin/bash"), ("mv", "/usr/bin/mv")]

    mutating func path(for user: User) -> (directory: String, name: String) {
        let root: String
        switch random.below(10) {
        case 0..<6: root = "/home/\(user.name)/" + Self.directories[random.below(Self.directories.count)]
        case 6..<8: root = "/media/\(user.name)/STICK"
        case 8: root = "/tmp"
        default: root = "/var/tmp"
        }
        let name = Self.stems[random.below(Self.stems.count)] + "-\(random.below(10_000))." + Self.extensions[random.below(Self.extensions.count)]
        return (root, name)
    }

    mutating func fileEvent(_ operation: FileOperation) -> [[UInt8]] {
        let who = user(random.below(options.users))
        let program = Self.programs[random.below(Self.programs.count)]
        let pid = 2_000 + random.below(30_000)
        let (directory, file) = path(for: who)
        let full = directory + "/" + file
        var paths: [(name: String, inode: Int, mode: String, nametype: String)] = []
        let syscall: (number: Int, name: String)
        var success = true
        var exit = 3
        var arguments = ["ffffff9c", hex(random.next() & 0xFFFF_FFFF_FFFF), "241", "1b6"]
        let directoryInode = 1_000 + random.below(90_000)
        let fileInode = 100_000 + random.below(9_000_000)
        switch operation {
        case .create:
            syscall = (257, "openat")
            paths = [(directory + "/", directoryInode, "040755", "PARENT"), (full, fileInode, "0100644", "CREATE")]
        case .write:
            syscall = (257, "openat")
            arguments[2] = "201"
            paths = [(full, fileInode, "0100644", "NORMAL")]
        case .denied:
            syscall = (257, "openat")
            success = false
            exit = -13
            paths = [(full, fileInode, "0100600", "NORMAL")]
        case .truncate:
            syscall = (76, "truncate")
            exit = 0
            paths = [(full, fileInode, "0100644", "NORMAL")]
        case .delete:
            syscall = (263, "unlinkat")
            exit = 0
            arguments[2] = "0"
            paths = [(directory + "/", directoryInode, "040755", "PARENT"), (full, fileInode, "0100644", "DELETE")]
        case .rename:
            syscall = (316, "renameat2")
            exit = 0
            let (targetDirectory, targetFile) = path(for: who)
            let targetInode = 1_000 + random.below(90_000)
            paths = [
                (directory + "/", directoryInode, "040755", "PARENT"), (targetDirectory + "/", targetInode, "040755", "PARENT"),
                (full, fileInode, "0100644", "DELETE"), (targetDirectory + "/" + targetFile, fileInode, "0100644", "CREATE"),
            ]
        }
        if operation == .create, summary.sampleCreates.count < 32 { summary.sampleCreates.append(full) }
        var lines = [syscallRecord(syscall, success: success, exit: exit, arguments: arguments, items: paths.count, pid: pid, user: who, program: program)]
        lines.append(record("CWD", "cwd=" + encoded("/home/\(who.name)")))
        for (item, path) in paths.enumerated() {
            lines.append(pathRecord(item: item, name: path.name, inode: path.inode, mode: path.mode, nametype: path.nametype, owner: who))
        }
        lines.append(proctitle([program.0, "/home/\(who.name)/" + file, full]))
        lines.append(record("EOE", ""))
        return lines
    }

    mutating func execveEvent() -> [[UInt8]] {
        let who = user(random.below(options.users))
        let pid = 2_000 + random.below(30_000)
        var argv = ["rsync", "-a", "/home/\(who.name)/exports/", "/media/\(who.name)/STICK/backup \(random.below(100))/"]
        let long = random.chance(0.05)
        if long {
            // A long argument (a generated script, say) the kernel logs in fragments.
            argv = ["python3", "-c", String(repeating: "print('customer record'); ", count: 400 + random.below(200))]
        }
        let program = long ? ("python3", "/usr/bin/python3.11") : ("rsync", "/usr/bin/rsync")
        var lines = [syscallRecord((59, "execve"), success: true, exit: 0, arguments: [hex(random.next() & 0xFFFF_FFFF), "5621", "5630", "8"], items: 2, pid: pid, user: who, program: program)]
        // The kernel's packing: fields go into one EXECVE record until it would pass ~7.5 KB; an
        // argument longer than that goes out as `aN_len` and `aN[i]` fragments.
        var fields = ["argc=\(argv.count)"]
        for (index, argument) in argv.enumerated() {
            let bytes = Array(argument.utf8)
            guard bytes.count > 3_000 else {
                fields.append("a\(index)=" + encoded(bytes))
                continue
            }
            fields.append("a\(index)_len=\(bytes.count)")
            var offset = 0
            var fragment = 0
            while offset < bytes.count {
                let piece = Array(bytes[offset..<min(bytes.count, offset + 3_000)])
                fields.append("a\(index)[\(fragment)]=" + encoded(piece))
                offset += piece.count
                fragment += 1
            }
        }
        var body = ""
        for field in fields {
            if !body.isEmpty, body.utf8.count + field.utf8.count > 7_500 {
                lines.append(record("EXECVE", body))
                body = ""
            }
            body += (body.isEmpty ? "" : " ") + field
        }
        lines.append(record("EXECVE", body))
        lines.append(record("CWD", "cwd=" + encoded("/home/\(who.name)")))
        lines.append(pathRecord(item: 0, name: program.1, inode: 5_000 + random.below(1_000), mode: "0100755", nametype: "NORMAL", owner: nil))
        lines.append(pathRecord(item: 1, name: "/lib64/ld-linux-x86-64.so.2", inode: 4_200, mode: "0100755", nametype: "NORMAL", owner: nil))
        lines.append(proctitle(argv))
        lines.append(record("EOE", ""))
        return lines
    }

    mutating func loginEvent() -> [[UInt8]] {
        let who = user(random.below(options.users))
        let pid = 2_000 + random.below(30_000)
        if random.chance(0.25) {
            // pam_loginuid writing /proc/self/loginuid: the kernel's LOGIN record, then the
            // write(2) it came from, under one serial.
            let session = random.below(500) + 1
            var login = "pid=\(pid) uid=0 subj=unconfined old-auid=4294967295 auid=\(who.uid) tty=(none) old-ses=4294967295 ses=\(session) res=1"
            if options.enriched { login += "\u{1D}UID=\"root\" OLD-AUID=\"unset\" AUID=\"\(who.name)\"" }
            var write = "arch=c000003e syscall=1 success=yes exit=4 a0=3 a1=\(hex(random.next() & 0xFFFF_FFFF_FFFF)) a2=4 a3=0 items=0 ppid=\(pid - 1) pid=\(pid) auid=\(who.uid) uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=\(session) comm=\"sshd\" exe=\"/usr/sbin/sshd\" subj=unconfined key=(null)"
            if options.enriched { write += "\u{1D}ARCH=x86_64 SYSCALL=write AUID=\"\(who.name)\" UID=\"root\" GID=\"root\" EUID=\"root\" SUID=\"root\" FSUID=\"root\" EGID=\"root\" SGID=\"root\" FSGID=\"root\"" }
            return [record("LOGIN", login), record("SYSCALL", write), proctitle(["sshd: \(who.name) [priv]"]), record("EOE", "")]
        }
        let type = ["USER_LOGIN", "USER_START", "CRED_ACQ", "USER_END"][random.below(4)]
        let operation = ["login", "PAM:session_open", "PAM:setcred", "PAM:session_close"][random.below(4)]
        let result = random.chance(0.9) ? "success" : "failed"
        var body = "pid=\(pid) uid=0 auid=\(who.uid) ses=\(random.below(500) + 1) subj=unconfined msg='op=\(operation) acct=\"\(who.name)\" exe=\"/usr/sbin/sshd\" hostname=10.0.\(random.below(255)).\(random.below(255)) addr=10.0.\(random.below(255)).\(random.below(255)) terminal=ssh res=\(result)'"
        if options.enriched { body += "\u{1D}UID=\"root\" AUID=\"\(who.name)\"" }
        return [record(type, body)]
    }

    // MARK: Records

    mutating func syscallRecord(_ syscall: (number: Int, name: String), success: Bool, exit: Int, arguments: [String], items: Int, pid: Int, user: User, program: (String, String)) -> [UInt8] {
        let tty = random.chance(0.7) ? "pts\(random.below(8))" : "(none)"
        var body = "arch=c000003e syscall=\(syscall.number) success=\(success ? "yes" : "no") exit=\(exit)"
        for (index, argument) in arguments.enumerated() { body += " a\(index)=\(argument)" }
        body += " items=\(items) ppid=\(pid - 1 - random.below(50)) pid=\(pid) auid=\(user.uid) uid=\(user.uid) gid=\(user.uid) euid=\(user.uid) suid=\(user.uid) fsuid=\(user.uid) egid=\(user.uid) sgid=\(user.uid) fsgid=\(user.uid) tty=\(tty) ses=\(user.uid - 990) comm=" + encoded(program.0) + " exe=" + encoded(program.1) + " subj=unconfined key=" + (random.chance(0.8) ? "\"holdfast-write\"" : "(null)")
        if options.enriched {
            body += "\u{1D}ARCH=x86_64 SYSCALL=\(syscall.name) AUID=\"\(user.name)\" UID=\"\(user.name)\" GID=\"\(user.name)\" EUID=\"\(user.name)\" SUID=\"\(user.name)\" FSUID=\"\(user.name)\" EGID=\"\(user.name)\" SGID=\"\(user.name)\" FSGID=\"\(user.name)\""
        }
        return record("SYSCALL", body)
    }

    func pathRecord(item: Int, name: String, inode: Int, mode: String, nametype: String, owner: User?) -> [UInt8] {
        let uid = owner?.uid ?? 0
        var body = "item=\(item) name=" + encoded(name) + " inode=\(inode) dev=08:11 mode=\(mode) ouid=\(uid) ogid=\(uid) rdev=00:00 nametype=\(nametype) cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0"
        if options.enriched {
            let ownerName = owner?.name ?? "root"
            body += "\u{1D}OUID=\"\(ownerName)\" OGID=\"\(ownerName)\""
        }
        return record("PATH", body)
    }

    func proctitle(_ argv: [String]) -> [UInt8] {
        var bytes = Array(argv.joined(separator: "\0").utf8)
        if bytes.count > 128 { bytes = Array(bytes[..<128]) }
        return record("PROCTITLE", "proctitle=" + encoded(bytes))
    }

    func record(_ type: String, _ body: String) -> [UInt8] {
        let millis = String(time % 1_000)
        let stamp = "\(time / 1_000)." + String(repeating: "0", count: 3 - millis.count) + millis
        let prefix = options.node.map { "node=\($0) " } ?? ""
        return Array((prefix + "type=\(type) msg=audit(\(stamp):\(serial)):" + (body.isEmpty ? "" : " " + body)).utf8)
    }

    mutating func garbageLine() -> [UInt8] {
        switch random.below(4) {
        case 0: return Array("type=SYSCALL msg=audit(17000000".utf8)
        case 1: return Array("garbage \(random.next())".utf8)
        case 2: return [0xFF, 0xFE, 0x74, 0x79, 0x70, 0x65, 0x3D]
        default: return Array("type=PATH msg=audit(x.y:z): item=0".utf8)
        }
    }

    /// The kernel's rule: quoted unless a byte is a control character, space, `"`, or above 0x7E.
    func encoded(_ text: String) -> String { encoded(Array(text.utf8)) }

    func encoded(_ bytes: [UInt8]) -> String {
        let needsHex = bytes.contains { $0 < 0x21 || $0 > 0x7E || $0 == UInt8(ascii: "\"") }
        if !needsHex { return "\"" + String(decoding: bytes, as: UTF8.self) + "\"" }
        return Hex.encode(bytes, uppercase: true)
    }

    func hex(_ value: UInt64) -> String { String(value, radix: 16) }

    func format2(_ prefix: String, _ number: Int) -> String { prefix + (number < 10 ? "0" : "") + String(number) }
}

/// A small deterministic generator (Steele, Lea, Flood: SplitMix64), the same on every machine.
public struct SplitMix64: Sendable {
    var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound (bound > 0).
    public mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(max(1, bound))) }

    public mutating func chance(_ probability: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < probability }
}
