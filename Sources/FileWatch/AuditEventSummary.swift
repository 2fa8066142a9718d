import HoldfastCore

/// The values of one assembled event, decoded: who (auid, uid, pid), what (syscall, success,
/// exit), with what (exe, comm, cwd, proctitle, EXECVE argv) and on which paths. This is what
/// `holdfast audit parse --json` prints and what FileWatch classifies. See docs/audit-format.md.
public struct AuditEventSummary: Sendable, Equatable {
    /// One PATH record.
    public struct PathItem: Sendable, Equatable {
        public var item: Int?
        /// The decoded name; nil for `(null)` (an anonymous or unreachable object).
        public var name: String?
        /// The name's bytes in hex when they are not valid UTF-8 (`name` then holds U+FFFD).
        public var nameHex: String?
        /// `NORMAL`, `PARENT`, `CREATE`, `DELETE`, `UNKNOWN`.
        public var nametype: String?
        public var inode: Int64?
        /// Octal, as the kernel writes it (`0100644`).
        public var mode: String?
        public var dev: String?
        public var ouid: Int64?
    }

    public var node: String?
    public var serial: UInt64
    public var seconds: Int64
    public var milliseconds: Int
    public var types: [String]

    public var arch: String?
    public var syscall: Int?
    public var syscallName: String?
    public var success: Bool?
    public var exit: Int64?
    /// `a0`…`a3` of the SYSCALL record, in place: numbers written in hex, never decoded as text;
    /// nil where the field is absent or not hex. Empty without a SYSCALL record.
    public var arguments: [UInt64?] = []
    /// nil when unset (4294967295).
    public var auid: UInt32?
    public var uid: UInt32?
    /// The ENRICHED format's names for them (`AUID="agent01"`), when the log carries them.
    public var auidName: String?
    public var uidName: String?
    public var pid: Int64?
    public var ppid: Int64?
    public var session: UInt32?
    public var exe: String?
    public var comm: String?
    public var cwd: String?
    public var paths: [PathItem] = []
    /// Rule keys; a rule with several keys reaches the log as one hex value joined by 0x01.
    public var keys: [String] = []
    /// The process title split on NUL (the kernel truncates it at 128 bytes).
    public var proctitle: [String]?
    /// EXECVE's arguments, fragments (`a1[0]`, `a1[1]` with `a1_len`) reassembled across records,
    /// up to the highest one that arrived; one that never arrived or cannot be decoded is nil.
    /// nil when the event has no EXECVE record.
    public var argv: [String?]?
    /// EXECVE's `argc`: more than `argv` holds when the tail was lost.
    public var argc: Int?
    /// User-space records (`msg='op=… acct=… exe=… res=…'`).
    public var operation: String?
    public var account: String?

    public var key: String? { keys.first }
    /// Seconds since the epoch with the milliseconds as a fraction.
    public var time: Double { Double(seconds) + Double(milliseconds) / 1_000 }

    static let unset: Int64 = 4_294_967_295

    public init(_ event: AuditEvent) {
        node = event.node
        serial = event.serial
        seconds = event.seconds
        milliseconds = event.milliseconds
        types = event.types
        var execve = ExecveArguments()
        var sawExecve = false
        var subject: AuditRecord?
        for record in event.records {
            switch record.type {
            case "SYSCALL":
                readSyscall(record)
                subject = record
            case "CWD":
                cwd = record.text("cwd")
            case "PATH":
                paths.append(PathItem(record))
            case "PROCTITLE":
                proctitle = record.bytes("proctitle").map(Self.splitArguments)
            case "EXECVE":
                sawExecve = true
                execve.add(record)
            default:
                if subject == nil, record.rawValue("pid") != nil || record.rawValue("auid") != nil {
                    readSubject(record)
                    subject = record
                }
            }
        }
        if sawExecve {
            argv = execve.arguments
            argc = execve.count
        }
        // The kernel writes PATH records in item order; a log that lost that order is sorted back
        // (stable; entries without an item last).
        if paths.count > 1 {
            paths = paths.enumerated().sorted { ($0.element.item ?? Int.max, $0.offset) < ($1.element.item ?? Int.max, $1.offset) }.map(\.element)
        }
    }

    private mutating func readSyscall(_ record: AuditRecord) {
        readSubject(record)
        arch = record.field("arch")
        if let number = record.integer("syscall"), let small = Int(exactly: number) { syscall = small }
        syscallName = record.interpretedField("SYSCALL") ?? syscall.flatMap { SyscallNames.name(arch: arch, number: $0) }
        if let raw = record.rawValue("success") {
            success = raw.elementsEqual("yes".utf8) ? true : raw.elementsEqual("no".utf8) ? false : nil
        }
        exit = record.integer("exit")
        ppid = record.integer("ppid")
        arguments = ["a0", "a1", "a2", "a3"].map { name in record.rawValue(name).flatMap(Self.hexNumber) }
        comm = record.text("comm")
        exe = record.text("exe")
        if let raw = record.rawValue("key"), let decoded = AuditRecord.decode(raw) {
            keys = decoded.split(separator: 0x01).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// pid, uid, auid, ses: SYSCALL and user-space records carry them alike.
    private mutating func readSubject(_ record: AuditRecord) {
        pid = record.integer("pid")
        uid = Self.identity(record.integer("uid"))
        auid = Self.identity(record.integer("auid"))
        session = Self.identity(record.integer("ses"))
        auidName = record.interpretedField("AUID")
        uidName = record.interpretedField("UID")
        if record.type != "SYSCALL", let message = record.messageFields {
            operation = message.text("op") ?? message.field("op")
            account = message.text("acct")
            exe = message.text("exe")
            if let result = message.field("res") {
                success = result == "success" || result == "1" ? true : result == "failed" || result == "0" ? false : nil
            }
        }
    }

    static func identity(_ value: Int64?) -> UInt32? {
        guard let value, value != unset, value >= 0, let identity = UInt32(exactly: value) else { return nil }
        return identity
    }

    static func hexNumber(_ raw: ArraySlice<UInt8>) -> UInt64? {
        guard !raw.isEmpty, raw.count <= 16 else { return nil }
        var value: UInt64 = 0
        for byte in raw {
            guard let digit = AuditRecord.hexDigit(byte) else { return nil }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    /// argv from a NUL-separated title: a trailing NUL ends the last argument, it does not add one.
    static func splitArguments(_ bytes: [UInt8]) -> [String] {
        var parts = bytes.split(separator: 0, omittingEmptySubsequences: false)
        if parts.count > 1, parts.last?.isEmpty == true { parts.removeLast() }
        return parts.map { String(decoding: $0, as: UTF8.self) }
    }
}

extension AuditEventSummary.PathItem {
    init(_ record: AuditRecord) {
        item = record.integer("item").flatMap { Int(exactly: $0) }
        if let raw = record.rawValue("name"), !raw.elementsEqual("(null)".utf8) {
            // Quoted or hex as the kernel writes it; anything else is kept as written.
            let decoded = AuditRecord.decode(raw) ?? Array(raw)
            if let valid = String(validating: decoded, as: UTF8.self) {
                name = valid
            } else {
                name = String(decoding: decoded, as: UTF8.self)
                nameHex = Hex.encode(decoded, uppercase: true)
            }
        }
        nametype = record.field("nametype")
        inode = record.integer("inode")
        mode = record.field("mode")
        dev = record.field("dev")
        ouid = record.integer("ouid")
    }
}

/// EXECVE's `argc=N a0=… a1_len=L a1[0]=… a1[1]=…`, possibly spread over several records.
struct ExecveArguments {
    var count: Int?
    /// nil values: the argument arrived but could not be decoded.
    var whole: [Int: [UInt8]?] = [:]
    var fragments: [Int: [Int: [UInt8]?]] = [:]
    var highest = -1

    mutating func add(_ record: AuditRecord) {
        for index in 0..<record.rawFieldCount {
            let name = record.name(at: index)
            if name.elementsEqual("argc".utf8) {
                count = AuditRecord.decimal(record.value(at: index)).flatMap { Int(exactly: $0) }
                continue
            }
            guard name.first == UInt8(ascii: "a") else { continue }
            if name.count > 5, name.suffix(4).elementsEqual("_len".utf8) {
                if let (argument, fragment) = Self.argumentName(name.dropFirst().dropLast(4)), fragment == nil {
                    lengths[argument] = AuditRecord.decimal(record.value(at: index)).flatMap { Int(exactly: $0) }
                }
                continue
            }
            guard let (argument, fragment) = Self.argumentName(name.dropFirst()) else { continue }
            highest = max(highest, argument)
            let value = AuditRecord.decode(record.value(at: index))
            if let fragment {
                fragments[argument, default: [:]][fragment] = value
            } else {
                whole[argument] = value
            }
        }
    }

    /// `12` → (12, nil); `12[3]` → (12, 3); `12_len`, `012` and anything else → nil.
    static func argumentName(_ name: ArraySlice<UInt8>) -> (Int, Int?)? {
        var index = name.startIndex
        // The kernel writes no leading zeros: `a00` is not `a0`.
        if name.count > 1, name.first == UInt8(ascii: "0"), name[name.startIndex + 1] &- 0x30 < 10 { return nil }
        var argument = 0
        var digits = 0
        while index < name.endIndex, name[index] &- 0x30 < 10, digits < 7 {
            argument = argument * 10 + Int(name[index] - 0x30)
            index += 1
            digits += 1
        }
        guard digits > 0 else { return nil }
        if index == name.endIndex { return (argument, nil) }
        guard name[index] == UInt8(ascii: "["), name.last == UInt8(ascii: "]") else { return nil }
        index += 1
        var fragment = 0
        var fragmentDigits = 0
        while index < name.endIndex - 1, name[index] &- 0x30 < 10, fragmentDigits < 7 {
            fragment = fragment * 10 + Int(name[index] - 0x30)
            index += 1
            fragmentDigits += 1
        }
        guard fragmentDigits > 0, index == name.endIndex - 1 else { return nil }
        return (argument, fragment)
    }

    /// Capped so a forged `argc=99999999` cannot make a huge array.
    static let maximumArguments = 65_536

    /// `aN_len` per argument, to check reassembled fragments against.
    var lengths: [Int: Int] = [:]

    /// Up to the highest argument that arrived, and never past `argc` (an index beyond it is not
    /// an argument); without `argc`, at most 64 missing arguments are padded. A forged `argc` or
    /// index adds nothing.
    var arguments: [String?] {
        let seen = whole.count + fragments.count
        var total = min(highest + 1, Self.maximumArguments)
        if let count { total = min(total, max(0, count)) } else { total = min(total, seen + 64) }
        return (0..<total).map { index in
            if let value = whole[index] { return value.map { String(decoding: $0, as: UTF8.self) } }
            guard let parts = fragments[index] else { return nil }
            // Fragments 0, 1, 2, … all there and as long as `aN_len` says, or the argument is lost.
            var joined: [UInt8] = []
            for (expected, key) in parts.keys.sorted().enumerated() {
                guard key == expected, let part = parts[key] ?? nil else { return nil }
                joined += part
            }
            if let length = lengths[index], length != joined.count { return nil }
            return String(decoding: joined, as: UTF8.self)
        }
    }
}
