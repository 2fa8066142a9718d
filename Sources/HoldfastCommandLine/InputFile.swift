#if canImport(Glibc)
import Glibc
#endif

/// Reading a command's input: a file path, or `-` for standard input.
public enum InputFile {
    /// The bytes of `path` (a regular file), or of standard input when `path` is `-`; refuses more
    /// than `limit` bytes rather than reading without end (`/dev/zero`, a FIFO).
    public static func read(_ path: String, context: CommandContext, limit: Int = 16 << 20) throws(CommandFailure) -> [UInt8] {
        if path == "-" {
            guard let bytes = FileOutput.readAll(0, limit: limit) else {
                throw CommandFailure("standard input is larger than \(limit) bytes", exitCode: .dataError)
            }
            return bytes
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            throw CommandFailure("\(path): \(String(cString: strerror(errno)))", exitCode: .dataError)
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw CommandFailure("\(path): not a regular file", exitCode: .dataError)
        }
        guard let bytes = FileOutput.readAll(descriptor, limit: limit) else {
            throw CommandFailure("\(path): larger than \(limit) bytes", exitCode: .dataError)
        }
        return bytes
    }
}
