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
public func runProcess(
    _ executable: String,
    _ arguments: [String],
    stdin: String? = nil,
    environment: [String: String]? = nil
) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    let errors = Pipe()
    let input = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Read both pipes to the end before waiting, so a chatty child never blocks on a full pipe.
    let errorBox = DataBox()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        errorBox.data = errors.fileHandleForReading.readDataToEndOfFile()
        done.signal()
    }
    let outData = output.fileHandleForReading.readDataToEndOfFile()
    done.wait()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errorBox.data, as: UTF8.self)
    )
}

/// Runs a program with `stdin` and returns its standard output as bytes; a failure throws.
public func runProcessBytes(_ executable: String, _ arguments: [String], stdin: [UInt8]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    let input = Pipe()
    process.standardOutput = output
    process.standardInput = input
    try process.run()
    input.fileHandleForWriting.write(Data(stdin))
    try input.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw CocoaError(.executableLoad) }
    return Array(data)
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
