#if canImport(Glibc)
import Glibc
#endif

/// Why a private file (a key, a state file) was refused.
public struct SecureFileError: Error, Equatable, CustomStringConvertible {
    public enum Code: Equatable, Sendable {
        /// The file does not exist.
        case notFound
        /// Group or others may read or write it.
        case insecurePermissions
        /// It belongs to another user.
        case wrongOwner
        /// It is a link, a directory or a device, not a regular file.
        case notRegularFile
        /// Larger than such a file can reasonably be.
        case tooLarge
        /// A system call failed.
        case system
    }

    public let code: Code
    public let path: String
    public let message: String
    public let cause: SystemCallError?

    public init(code: Code, path: String, message: String, cause: SystemCallError? = nil) {
        self.code = code
        self.path = path
        self.message = message
        self.cause = cause
    }

    public var description: String { "\(path): \(message)" }
}

/// Reading and writing files that only their owner may see: keys and state.
///
/// Writes are atomic (temporary file in the same directory, `fsync`, `rename`, `fsync` of the
/// directory), so a crash leaves the old file or the new one, never half of one. Reads refuse
/// links, files readable or writable by group or others, and files owned by anyone but the
/// expected owner.
public enum SecureFile {
    /// Writes `bytes` to `path` with mode 0600, replacing any existing file atomically.
    public static func write(_ bytes: [UInt8], to path: String, mode: UInt32 = 0o600) throws(SecureFileError) {
        // A random suffix: another user cannot pre-create the name in a shared directory.
        let temporary = path + ".tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let descriptor: Int32
        do {
            descriptor = try Syscall.retrying("open", temporary) {
                open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            }
        } catch {
            throw SecureFileError(code: .system, path: path, message: "cannot create: \(error)", cause: error)
        }
        do {
            // The umask may have taken bits away; set exactly what was asked for.
            try Syscall.retrying("fchmod", temporary) { fchmod(descriptor, mode) }
            try writeAll(descriptor, bytes, subject: temporary)
            try Syscall.retrying("fsync", temporary) { fsync(descriptor) }
            close(descriptor)
            try Syscall.retrying("rename", path) { rename(temporary, path) }
        } catch {
            close(descriptor)
            unlink(temporary)
            throw SecureFileError(code: .system, path: path, message: "cannot write: \(error)", cause: error)
        }
        syncDirectory(containing: path)
    }

    /// Reads a private file, refusing it unless it is a regular file, owned by `owner`
    /// (default: the effective user) and not accessible to group or others.
    public static func readPrivate(
        _ path: String, owner: UInt32? = nil, maximumSize: Int = 1 << 20
    ) throws(SecureFileError) -> [UInt8] {
        let owner = owner ?? geteuid()
        let descriptor: Int32
        do {
            // O_NONBLOCK: a FIFO planted at the path must not hang the open; fstat refuses it next.
            descriptor = try Syscall.retrying("open", path) { open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK) }
        } catch {
            if error.errno == ENOENT { throw SecureFileError(code: .notFound, path: path, message: "no such file") }
            if error.errno == ELOOP {
                throw SecureFileError(code: .notRegularFile, path: path, message: "is a symbolic link; refusing it")
            }
            throw SecureFileError(code: .system, path: path, message: "cannot open: \(error)", cause: error)
        }
        defer { close(descriptor) }
        var info = stat()
        do {
            try Syscall.retrying("fstat", path) { fstat(descriptor, &info) }
        } catch {
            throw SecureFileError(code: .system, path: path, message: "cannot stat: \(error)", cause: error)
        }
        if info.st_mode & S_IFMT != S_IFREG {
            throw SecureFileError(code: .notRegularFile, path: path, message: "is not a regular file")
        }
        if info.st_mode & 0o077 != 0 {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw SecureFileError(
                code: .insecurePermissions, path: path,
                message: "mode \(mode) lets group or others read or write it; it must be 0600 (chmod 600)"
            )
        }
        if info.st_uid != owner {
            throw SecureFileError(
                code: .wrongOwner, path: path,
                message: "owned by uid \(info.st_uid), expected uid \(owner)"
            )
        }
        if info.st_size > maximumSize {
            throw SecureFileError(code: .tooLarge, path: path, message: "is \(info.st_size) bytes; at most \(maximumSize) expected")
        }
        do {
            let bytes = try readAll(descriptor, subject: path)
            guard bytes.count <= maximumSize else {
                throw SecureFileError(code: .tooLarge, path: path, message: "grew past \(maximumSize) bytes while being read")
            }
            return bytes
        } catch let error as SecureFileError {
            throw error
        } catch {
            throw SecureFileError(code: .system, path: path, message: "cannot read: \(error)", cause: error as? SystemCallError)
        }
    }

    /// Creates a directory (and its parents) with mode 0700 unless it exists; an existing one
    /// must pass `checkPrivateDirectory`.
    public static func ensurePrivateDirectory(_ path: String) throws(SecureFileError) {
        var info = stat()
        if lstat(path, &info) == 0 {
            return try checkPrivateDirectory(path)
        }
        let parent = parentDirectory(of: path)
        if parent != path, !parent.isEmpty, access(parent, F_OK) != 0 {
            try ensurePrivateDirectory(parent)
        }
        do {
            try Syscall.retrying("mkdir", path) { mkdir(path, 0o700) }
        } catch {
            if error.errno == EEXIST { return try checkPrivateDirectory(path) }
            throw SecureFileError(code: .system, path: path, message: "cannot create directory: \(error)", cause: error)
        }
    }

    /// Refuses a directory that is a link, is owned by another user, or that group or others may
    /// write: whoever can write a directory can replace the files in it.
    public static func checkPrivateDirectory(_ path: String) throws(SecureFileError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw SecureFileError(code: .notFound, path: path, message: "no such directory")
        }
        if info.st_mode & S_IFMT == S_IFLNK {
            throw SecureFileError(code: .notRegularFile, path: path, message: "is a symbolic link; refusing it")
        }
        if info.st_mode & S_IFMT != S_IFDIR {
            throw SecureFileError(code: .notRegularFile, path: path, message: "exists and is not a directory")
        }
        if info.st_uid != geteuid() {
            throw SecureFileError(code: .wrongOwner, path: path, message: "directory owned by uid \(info.st_uid), expected uid \(geteuid())")
        }
        if info.st_mode & 0o022 != 0 {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw SecureFileError(
                code: .insecurePermissions, path: path,
                message: "directory mode \(mode) lets group or others write it"
            )
        }
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    private static func syncDirectory(containing path: String) {
        let directory = parentDirectory(of: path)
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        // Best effort: the rename is already done; this makes it survive power loss.
        _ = fsync(descriptor)
        close(descriptor)
    }

    private static func writeAll(_ descriptor: Int32, _ bytes: [UInt8], subject: String) throws(SystemCallError) {
        var offset = 0
        while offset < bytes.count {
            let start = offset
            offset += try Syscall.retrying("write", subject) {
                bytes.withUnsafeBytes { buffer in
                    Glibc.write(descriptor, buffer.baseAddress.map { $0 + start }, buffer.count - start)
                }
            }
        }
    }

    private static func readAll(_ descriptor: Int32, subject: String) throws(SystemCallError) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = try Syscall.retrying("read", subject) {
                chunk.withUnsafeMutableBytes { buffer in read(descriptor, buffer.baseAddress, buffer.count) }
            }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
        }
    }
}
