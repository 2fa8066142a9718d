#if canImport(Glibc)
import Glibc
#endif

/// Reading a small file whole through plain libc: sysfs attributes, logind's seat files,
/// `/etc/machine-id`. Plain `open`/`read`, so umockdev's preload library can redirect sysfs paths
/// into a testbed; `O_NONBLOCK`, so a FIFO put in a file's place never hangs the reader. For files
/// whose owner or mode matters, `SecureFile` is the one to use.
public enum SmallFile {
    /// The file's bytes; nil when it cannot be opened or read, or holds more than `limit` bytes.
    public static func read(_ path: String, limit: Int = 4_096) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        while result.count <= limit {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count < 0 { return nil }
            if count == 0 { break }
            result += chunk[0..<count]
        }
        return result.count > limit ? nil : result
    }

    /// Whether something exists at `path`.
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}
