/// What a user did to a file, as FileWatch counts it: one per successful audited syscall.
public enum FileOperation: String, Sendable, Codable, CaseIterable {
    case create
    /// An existing file opened for writing (overwritten or appended to).
    case writeOpen = "write-open"
    case rename
    case delete
    case truncate
    case mount
}

/// Where the file is, as far as exfiltration goes.
public enum TargetClass: String, Sendable, Codable {
    /// A USB stick, an SD card, anything mounted from a removable device (or, offline, under a
    /// configured removable prefix).
    case removable
    /// Under one of the watched roots.
    case watchedRoot = "watched-root"
    case other
}

/// One file activity: who, with which program, what, on which path, and where that path is.
public struct FileActivity: Sendable, Equatable {
    /// Milliseconds since the epoch: the event's own time, the clock baselines run on.
    public var time: Int64
    public var node: String?
    public var serial: UInt64
    /// The login uid (the person, whatever `sudo` or `su` made of the process).
    public var auid: UInt32
    /// The login name when the log says it (ENRICHED) or the local passwd does.
    public var userName: String?
    public var uid: UInt32?
    public var pid: Int64?
    public var exe: String?
    public var comm: String?
    public var operation: FileOperation
    /// The file: absolute when the event lets us tell (the name, or the cwd and a relative name);
    /// as logged otherwise. For a rename, the destination.
    public var path: String
    /// For a rename, the source.
    public var sourcePath: String?
    /// `MAJOR:MINOR` of the file's filesystem, as the PATH record says.
    public var device: String?
    /// `dev:inode` of the file, when the PATH record gives both: what tells files apart (a name
    /// can be made to repeat, relative to many directory descriptors).
    public var fileIdentity: String?
    /// `dev:inode` of the directory it is in (the PARENT record), when given.
    public var directoryIdentity: String?
    public var target: TargetClass
    /// The audit rule key that recorded it.
    public var key: String?

    public init(
        time: Int64, node: String?, serial: UInt64, auid: UInt32, userName: String?, uid: UInt32?, pid: Int64?, exe: String?, comm: String?,
        operation: FileOperation, path: String, sourcePath: String?, device: String?, target: TargetClass, key: String?
    ) {
        self.time = time
        self.node = node
        self.serial = serial
        self.auid = auid
        self.userName = userName
        self.uid = uid
        self.pid = pid
        self.exe = exe
        self.comm = comm
        self.operation = operation
        self.path = path
        self.sourcePath = sourcePath
        self.device = device
        self.target = target
        self.key = key
    }

    /// With the identities the PATH records give.
    public func identified(file: String?, directory: String?) -> FileActivity {
        var copy = self
        copy.fileIdentity = file
        copy.directoryIdentity = directory
        return copy
    }

    /// The directory holding `path`.
    public var directory: String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        if slash == path.utf8.startIndex { return "/" }
        return String(path[..<slash])
    }
}

extension String {
    /// Two hex digits.
    var leftPadded: String { count < 2 ? "0" + self : self }
}

/// Tells whether a file sits on removable media. Live: the mount table and sysfs; offline (replay,
/// tests): configured prefixes.
public protocol RemovableMediaLocator: Sendable {
    func isRemovable(path: String, device: String?) -> Bool
}

/// The offline rule: a path under one of the prefixes is on removable media.
public struct RemovablePrefixes: RemovableMediaLocator, Equatable {
    public static let defaults = ["/media", "/run/media"]
    public let prefixes: [String]

    public init(_ prefixes: [String] = Self.defaults) {
        self.prefixes = prefixes.map { prefix in
            var trimmed = prefix
            while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
            return trimmed
        }
    }

    public func isRemovable(path: String, device: String?) -> Bool {
        prefixes.contains { Self.isUnder(path, $0) }
    }

    /// `path` is `root` or below it (`/media2` is not under `/media`).
    public static func isUnder(_ path: String, _ root: String) -> Bool {
        if root == "/" { return path.hasPrefix("/") }
        guard path.hasPrefix(root) else { return false }
        let rest = path.utf8.dropFirst(root.utf8.count)
        return rest.isEmpty || rest.first == UInt8(ascii: "/")
    }
}

/// Turns assembled audit events into file activity (docs/filewatch.md, "Classification").
///
/// Only successful syscalls count: a refused open wrote nothing. Events without a login uid, or
/// from a syscall FileWatch does not count, give nil.
public struct FileActivityClassifier: Sendable {
    public let roots: [String]
    public let media: any RemovableMediaLocator

    public init(roots: [String] = AuditRuleSet.defaultRoots, media: any RemovableMediaLocator = RemovablePrefixes()) {
        self.roots = roots
        self.media = media
    }

    /// `open(2)` flags (x86_64 and i386 share them).
    static let createFlag: UInt64 = 0o100

    public func classify(_ event: AuditEventSummary) -> FileActivity? {
        guard event.success == true, let name = event.syscallName else { return nil }
        // Mounts count whoever makes them: udisksd mounts sticks with no login uid.
        let isMount = ["mount", "umount", "umount2", "move_mount", "fsmount"].contains(name)
        guard let auid = event.auid ?? (isMount ? UInt32.max : nil) else { return nil }
        let operation: FileOperation
        var item: AuditEventSummary.PathItem?
        var source: AuditEventSummary.PathItem?
        switch name {
        case "creat":
            operation = .create
            item = event.paths.last { $0.nametype == "CREATE" } ?? event.paths.last { $0.nametype != "PARENT" }
        case "open", "openat", "openat2":
            // The kernel writes a CREATE item only when O_CREAT made the file; an existing file
            // opened with O_CREAT is a NORMAL item, an overwrite.
            if let created = event.paths.last(where: { $0.nametype == "CREATE" }) {
                operation = .create
                item = created
            } else {
                operation = .writeOpen
                item = event.paths.last { $0.nametype != "PARENT" }
                // O_TMPFILE opens the directory; the file appears with the linkat that names it.
                if item?.mode?.hasPrefix("04") == true { return nil }
            }
        case "link", "linkat", "symlink", "symlinkat":
            operation = .create
            item = event.paths.last { $0.nametype == "CREATE" } ?? event.paths.last { $0.nametype != "PARENT" }
        case "rename", "renameat", "renameat2":
            operation = .rename
            item = event.paths.last { $0.nametype == "CREATE" } ?? event.paths.last { $0.nametype != "PARENT" && $0.nametype != "DELETE" }
            source = event.paths.first { $0.nametype == "DELETE" }
        case "unlink", "unlinkat", "rmdir":
            operation = .delete
            item = event.paths.last { $0.nametype == "DELETE" } ?? event.paths.last { $0.nametype != "PARENT" }
        case "truncate", "ftruncate", "truncate64", "ftruncate64":
            operation = .truncate
            item = event.paths.last { $0.nametype != "PARENT" }
        case "mount", "umount", "umount2", "move_mount", "fsmount":
            operation = .mount
            item = event.paths.first
        default:
            return nil
        }
        let path = Self.resolve(item.map(Self.name) ?? "", cwd: event.cwd)
        let sourcePath = source.map { Self.resolve(Self.name($0), cwd: event.cwd) }
        let device = item?.dev
        let target: TargetClass =
            if media.isRemovable(path: path, device: device) { .removable }
            else if roots.contains(where: { RemovablePrefixes.isUnder(path, $0) }) { .watchedRoot }
            else { .other }
        // ENRICHED writes `unknown(1001)` for a uid the passwd database does not know.
        let userName = event.auidName.flatMap { $0.hasPrefix("unknown(") ? nil : $0 }
        let parent = event.paths.last { $0.nametype == "PARENT" }
        return FileActivity(
            time: event.seconds &* 1_000 &+ Int64(event.milliseconds), node: event.node, serial: event.serial,
            auid: auid, userName: userName, uid: event.uid, pid: event.pid, exe: event.exe, comm: event.comm,
            operation: operation, path: path, sourcePath: sourcePath, device: device, target: target, key: event.key
        ).identified(file: Self.identity(item), directory: Self.identity(parent))
    }

    /// `dev:inode`, when the record gives both.
    static func identity(_ item: AuditEventSummary.PathItem?) -> String? {
        guard let item, let inode = item.inode, let dev = item.dev else { return nil }
        return dev + ":" + String(inode)
    }

    /// The name as logged; bytes that are not UTF-8 written `\xHH` (so two such names stay two).
    static func name(_ item: AuditEventSummary.PathItem) -> String {
        guard let hex = item.nameHex else { return item.name ?? "" }
        var text = ""
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex), let byte = UInt8(hex[index..<next], radix: 16) {
            bytes.append(byte)
            index = next
        }
        for byte in bytes {
            if byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") { text.unicodeScalars.append(Unicode.Scalar(byte)) } else { text += "\\x" + String(byte, radix: 16, uppercase: true).leftPadded }
        }
        return text
    }

    /// An absolute name as is; a relative one joined to the cwd (the kernel logs the name as the
    /// program gave it). `.` and `..` components are folded; a name relative to a directory
    /// descriptor other than the cwd cannot be resolved from the event and stays relative.
    /// No `//`, no `/.` (so no `.` or `..` component), no trailing slash.
    static func isClean(_ path: String) -> Bool {
        var previousSlash = false
        var count = 0
        for byte in path.utf8 {
            if previousSlash, byte == UInt8(ascii: "/") || byte == UInt8(ascii: ".") { return false }
            previousSlash = byte == UInt8(ascii: "/")
            count += 1
        }
        return !previousSlash || count == 1
    }

    static func resolve(_ name: String, cwd: String?) -> String {
        let joined: String
        if name.hasPrefix("/") {
            // The common case, already clean: no components to fold (one pass over the bytes).
            if isClean(name) { return name }
            joined = name
        } else if let cwd, cwd.hasPrefix("/") {
            joined = cwd + "/" + name
        } else {
            return name
        }
        var parts: [Substring] = []
        for part in joined.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }
}
