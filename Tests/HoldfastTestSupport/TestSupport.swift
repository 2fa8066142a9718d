// Helpers shared by the test targets: temporary directories, running built products, the repo root.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A private temporary directory (mode 0700), removed when the value is released.
public final class TemporaryDirectory {
    public let path: String

    public init() {
        // NSTemporaryDirectory() ends in "/" ("/tmp/"): no doubled slash in the paths tests print.
        var base = NSTemporaryDirectory()
        while base.count > 1, base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/holdfast-test-XXXXXX").utf8CString)
        let created = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard let created else { preconditionFailure("mkdtemp failed: \(String(cString: strerror(errno)))") }
        path = String(cString: created)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A path inside the directory.
    public func file(_ name: String) -> String { path + "/" + name }
}

/// What a finished process left behind.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Where SwiftPM put the built products (the test bundle sits beside them).
public enum Products {
    public static var directory: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
        // On some layouts the test binary lives inside a bundle directory.
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("holdfast").path), url.path != "/" {
            url.deleteLastPathComponent()
        }
        return url.path
    }

    /// The path of a built executable product.
    public static func path(_ name: String) -> String { directory + "/" + name }

    /// The package's root directory (where Package.swift is).
    public static func packageRoot(file: String = #filePath) -> String {
        var url = URL(fileURLWithPath: file)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        preconditionFailure("no Package.swift above \(file)")
    }
}

/// Runs a program to completion with arguments (never through a shell) and optional stdin.
///
/// posix_spawn and waitpid(2), not Foundation's `Process`: its `waitUntilExit()` polls the run
/// loop every 50 ms on Linux, which every test that runs a command paid (docs/platform.md).
public func runProcess(
    _ executable: String,
    _ arguments: [String],
    stdin: String? = nil,
    environment: [String: String]? = nil
) throws -> ProcessResult {
    let (status, output, errors) = try spawnCollecting(executable, arguments, stdin: stdin.map { Array($0.utf8) } ?? [], environment: environment)
    return ProcessResult(status: status, stdout: String(decoding: output, as: UTF8.self), stderr: String(decoding: errors, as: UTF8.self))
}

/// Runs a program with `stdin` and returns its standard output as bytes; a failure throws.
public func runProcessBytes(_ executable: String, _ arguments: [String], stdin: [UInt8]) throws -> [UInt8] {
    let (status, output, _) = try spawnCollecting(executable, arguments, stdin: stdin, environment: nil)
    guard status == 0 else { throw CocoaError(.executableLoad) }
    return output
}

/// The child gets fresh pipes as 0, 1 and 2 and no other descriptor (the pipes are close-on-exec
/// and everything from 3 up is closed), so a command running in parallel never holds another's
/// pipe open. Standard input is written from its own thread while both outputs are read, so no
/// side blocks on a full pipe.
func spawnCollecting(_ executable: String, _ arguments: [String], stdin: [UInt8], environment: [String: String]?) throws -> (Int32, [UInt8], [UInt8]) {
    guard let pipe2 = GNU.pipe2, let closeFrom = GNU.closeFrom else { throw CocoaError(.featureUnsupported) }
    var input: [Int32] = [-1, -1], output: [Int32] = [-1, -1], errors: [Int32] = [-1, -1]
    guard pipe2(&input, O_CLOEXEC) == 0 else { throw CocoaError(.executableLoad) }
    guard pipe2(&output, O_CLOEXEC) == 0 else { close(input[0]); close(input[1]); throw CocoaError(.executableLoad) }
    guard pipe2(&errors, O_CLOEXEC) == 0 else { [input[0], input[1], output[0], output[1]].forEach { close($0) }; throw CocoaError(.executableLoad) }
    let (outputRead, errorsRead) = (output[0], errors[0])
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, input[0], 0)
    posix_spawn_file_actions_adddup2(&actions, output[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
    _ = closeFrom(&actions, 3)
    // As SpawnedProcess: no blocked signals and default dispositions in the child (the test
    // runner blocks SIGTERM; this process ignores SIGPIPE).
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t()
    sigemptyset(&none)
    var all = sigset_t()
    sigfillset(&all)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
    defer { envp?.forEach { free($0) } }
    var child = pid_t()
    let spawned = envp.map { envp in posix_spawn(&child, executable, &actions, &attributes, argv, envp) } ?? posix_spawn(&child, executable, &actions, &attributes, argv, environ)
    // The child's ends are the child's now.
    close(input[0])
    close(output[1])
    close(errors[1])
    guard spawned == 0 else {
        [input[1], outputRead, errorsRead].forEach { close($0) }
        throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "cannot run \(executable): \(String(cString: strerror(spawned)))"])
    }
    _ = GNU.ignoreBrokenPipes
    let writer = Thread { [descriptor = input[1]] in
        // A child that exits without reading gets EPIPE here (SIGPIPE is ignored), not a crash.
        var offset = 0
        while offset < stdin.count {
            let written = stdin.withUnsafeBytes { write(descriptor, $0.baseAddress.map { $0 + offset }, stdin.count - offset) }
            if written < 0 { if errno == EINTR { continue } else { break } }
            offset += written
        }
        close(descriptor)
    }
    let errorBox = DataBox()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        errorBox.data = Data(readAll(errorsRead))
        done.signal()
    }
    writer.start()
    let out = readAll(outputRead)
    done.wait()
    var status: Int32 = 0
    while waitpid(child, &status, 0) < 0 {
        // Without the child's status there is no result: never a silent pass.
        guard errno == EINTR else { throw CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: "waitpid for \(executable): \(String(cString: strerror(errno)))"]) }
    }
    // WIFEXITED / WEXITSTATUS; killed by a signal reads as 128 + the signal, as a shell says.
    let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return (code, out, Array(errorBox.data))
}

/// glibc functions the Glibc module hides behind `_GNU_SOURCE`, looked up once.
enum GNU {
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    static let pipe2: Pipe2? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pipe2").map { unsafeBitCast($0, to: Pipe2.self) }
    // glibc 2.34+: the child closes every descriptor from 3 up.
    /// Writing to a pipe its reader closed raises SIGPIPE; the test process takes EPIPE instead.
    static let ignoreBrokenPipes: Void = { signal(SIGPIPE, SIG_IGN) }()
    static let closeFrom: CloseFrom? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np").map { unsafeBitCast($0, to: CloseFrom.self) }
}

/// Reads a descriptor to end of file and closes it.
private func readAll(_ descriptor: Int32) -> [UInt8] {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count > 0 { bytes.append(contentsOf: buffer[0..<count]); continue }
        if count < 0, errno == EINTR { continue }
        break
    }
    close(descriptor)
    return bytes
}

/// Hands bytes from a reader thread back; the semaphore orders the write before the read.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}

/// File mode bits (permissions only) of a path.
public func fileMode(_ path: String) -> UInt32 {
    var info = stat()
    guard lstat(path, &info) == 0 else { return 0 }
    return UInt32(info.st_mode) & 0o7777
}

/// A small valid PDF with `pages` empty pages in one flat page tree (what most generators write).
public func simplePDF(pages: Int) -> String {
    let count = max(1, pages)
    var text = "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    let kids = (0..<count).map { "\($0 + 3) 0 R" }.joined(separator: " ")
    text += "2 0 obj << /Type /Pages /Kids [\(kids)] /Count \(count) >> endobj\n"
    for page in 0..<count {
        text += "\(page + 3) 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\n"
    }
    return text + "trailer << /Root 1 0 R >>\n%%EOF\n"
}

extension String {
    /// Writes the text to `path` through a temporary file in the same directory and a rename:
    /// atomic like `write(toFile:atomically: true)`, without the item-replacement directory that
    /// swift-corelibs-foundation leaves behind in /tmp for every such write (docs/platform.md).
    public func writeReplacing(toFile path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        try write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, path) == 0 else {
            let error = String(cString: strerror(errno))
            unlink(temporary)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "rename to \(path): \(error)"])
        }
    }
}

/// Polls `condition` every 100 ms until it holds or `timeout` seconds pass, without holding a
/// thread while it waits: the 2-core box has two cooperative threads, and a test that sleeps on
/// one starves every async test beside it (an in-process server among them).
public func eventually(_ timeout: Double = 30, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return try condition()
}
