#if canImport(Glibc)
import Glibc
#endif

/// Reading a command's input: a file path, or `-` for standard input.
public enum InputFile {
    /// The bytes of `path`, or of standard input when `path` is `-`.
    public static func read(_ path: String, context: CommandContext) throws(CommandFailure) -> [UInt8] {
        if path == "-" { return context.readStandardInput() }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw CommandFailure("\(path): \(String(cString: strerror(errno)))", exitCode: .dataError)
        }
        defer { close(descriptor) }
        return FileOutput.readAll(descriptor)
    }
}
