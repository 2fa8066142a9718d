import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

/// A filesystem root the checks read from: `/` on a machine, or a directory laid out like one
/// (the fixture trees the tests build, an image mounted for inspection). Every path a check names
/// is absolute and is resolved inside the tree: an absolute symlink target is taken relative to
/// the tree's root, never the host's, so a fixture cannot make a check read the machine it runs on.
public struct RootTree: Sendable {
    /// The tree's root without a trailing slash ("" for `/`).
    public let prefix: String

    public init(_ root: String = "/") {
        var trimmed = root
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        prefix = trimmed == "/" ? "" : trimmed
    }

    /// Whether this is the machine's own root.
    public var isHost: Bool { prefix.isEmpty }

    /// The host path of `path` inside the tree, without following symlinks.
    public func hostPath(_ path: String) -> String { prefix + path }

    /// The file's bytes, or nil when it is missing, unreadable or larger than `limit`.
    public func read(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
        guard let resolved = resolve(path) else { return nil }
        return Self.readFile(prefix + resolved, limit: limit)
    }

    /// The file as text (invalid UTF-8 repaired), or nil.
    public func text(_ path: String, limit: Int = 1 << 20) -> String? {
        read(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The first line of a small file (sysfs attributes), trimmed; nil when missing.
    public func attribute(_ path: String) -> String? {
        guard let bytes = read(path, limit: 4_096) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        return String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            .trimmed(" \t\r\0")
    }

    /// The names in a directory (no `.`/`..`), sorted; nil when it is not a readable directory.
    public func list(_ path: String) -> [String]? {
        guard let resolved = resolve(path), let directory = opendir(prefix + resolved) else { return nil }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// What `lstat` says about the path's last component (after resolving the directories above it).
    public func info(_ path: String, followLink: Bool = true) -> FileInfo? {
        let target: String
        if followLink {
            guard let resolved = resolve(path) else { return nil }
            target = resolved
        } else {
            guard let parent = resolve(Self.parent(path)) else { return nil }
            target = (parent == "/" ? "" : parent) + "/" + Self.lastComponent(path)
        }
        var buffer = stat()
        guard lstat(prefix + target, &buffer) == 0 else { return nil }
        return FileInfo(
            uid: buffer.st_uid, gid: buffer.st_gid, mode: buffer.st_mode & 0o7777, kind: FileInfo.Kind(buffer.st_mode),
            size: Int64(buffer.st_size), modified: Double(buffer.st_mtim.tv_sec) + Double(buffer.st_mtim.tv_nsec) / 1e9)
    }

    /// Whether anything exists at the path (following symlinks).
    public func exists(_ path: String) -> Bool { info(path) != nil }

    /// The path with every symlink followed inside the tree (absolute targets re-rooted); nil when
    /// a component is missing or the links loop.
    public func resolve(_ path: String) -> String? {
        var pending = Self.components(path)
        var resolved: [String] = []
        var hops = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component == "." || component.isEmpty { continue }
            if component == ".." {
                if !resolved.isEmpty { resolved.removeLast() }
                continue
            }
            let candidate = "/" + (resolved + [component]).joined(separator: "/")
            var buffer = stat()
            guard lstat(prefix + candidate, &buffer) == 0 else { return nil }
            guard buffer.st_mode & S_IFMT == S_IFLNK else {
                resolved.append(component)
                continue
            }
            hops += 1
            guard hops <= 40, let target = Self.readLink(prefix + candidate) else { return nil }
            if target.hasPrefix("/") { resolved = [] }
            pending = Self.components(target) + pending
        }
        return "/" + resolved.joined(separator: "/")
    }

    /// The target of a symlink inside the tree, as written; nil when it is not a link.
    public func linkTarget(_ path: String) -> String? {
        guard let parent = resolve(Self.parent(path)) else { return nil }
        return Self.readLink(prefix + (parent == "/" ? "" : parent) + "/" + Self.lastComponent(path))
    }

    static func components(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }

    static func parent(_ path: String) -> String {
        var parts = components(path)
        if !parts.isEmpty { parts.removeLast() }
        return "/" + parts.joined(separator: "/")
    }

    static func lastComponent(_ path: String) -> String { components(path).last ?? "" }

    static func readLink(_ hostPath: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(hostPath, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// SmallFile's plain open/read (`O_NONBLOCK`: a FIFO put where a file should be never hangs a
    /// check; a directory reads as nil).
    static func readFile(_ hostPath: String, limit: Int) -> [UInt8]? {
        SmallFile.read(hostPath, limit: limit)
    }
}

/// The parts of `stat(2)` the checks use.
public struct FileInfo: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file, directory, link, other

        init(_ mode: mode_t) {
            switch mode & S_IFMT {
            case S_IFREG: self = .file
            case S_IFDIR: self = .directory
            case S_IFLNK: self = .link
            default: self = .other
            }
        }
    }

    public let uid: UInt32
    public let gid: UInt32
    /// Permission bits (including setuid/setgid/sticky).
    public let mode: UInt32
    public let kind: Kind
    public let size: Int64
    /// Modification time, seconds since 1970.
    public let modified: Double

    /// `0640`-style text.
    public var octalMode: String { "0" + String(mode, radix: 8) }
}

extension StringProtocol {
    /// The text without the given characters at either end.
    func trimmed(_ set: String) -> String {
        let characters = Set(set)
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice.removeFirst() }
        while let last = slice.last, characters.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
