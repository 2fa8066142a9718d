#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock(2)` on a file, held for the life of the value: one holdfastd per state
/// directory and per control socket. The kernel drops the lock when the process dies, so a crash
/// never leaves a stale lock behind (unlike a pid file).
public final class ProcessLock: Sendable {
    public let path: String
    private let descriptor: Int32

    /// Takes the lock or throws, naming the pid that holds it.
    public init(path: String) throws(SecureFileError) {
        self.path = path
        let descriptor = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o600)
        guard descriptor >= 0 else {
            throw SecureFileError(code: .system, path: path, message: "cannot open lock file: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid() else {
            close(descriptor)
            throw SecureFileError(code: .wrongOwner, path: path, message: "lock file is not a regular file owned by uid \(geteuid())")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
            let holder = count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self).filter(\.isNumber) : "?"
            close(descriptor)
            throw SecureFileError(code: .system, path: path, message: "held by another holdfastd (pid \(holder))")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }
}
