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

    /// The directory holding `path`.
    public var directory: String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        if slash == path.utf8.startIndex { return "/" }
        return String(path[..<slash])
    }
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
        guard event.success == true, let auid = event.auid, let name = event.syscallName else { return nil }
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
            }
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
        let path = Self.resolve(item?.name ?? item?.nameHex.map { "\\x" + $0 } ?? "", cwd: event.cwd)
        let sourcePath = source.map { Self.resolve($0.name ?? "", cwd: event.cwd) }
        let device = item?.dev
        let target: TargetClass =
            if media.isRemovable(path: path, device: device) { .removable }
            else if roots.contains(where: { RemovablePrefixes.isUnder(path, $0) }) { .watchedRoot }
            else { .other }
        return FileActivity(
            time: event.seconds &* 1_000 &+ Int64(event.milliseconds), node: event.node, serial: event.serial,
            auid: auid, userName: event.auidName, uid: event.uid, pid: event.pid, exe: event.exe, comm: event.comm,
            operation: operation, path: path, sourcePath: sourcePath, device: device, target: target, key: event.key
        )
    }

    /// An absolute name as is; a relative one joined to the cwd (the kernel logs the name as the
    /// program gave it). `.` and `..` components are folded; a name relative to a directory
    /// descriptor other than the cwd cannot be resolved from the event and stays relative.
    static func resolve(_ name: String, cwd: String?) -> String {
        let joined: String
        if name.hasPrefix("/") {
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
