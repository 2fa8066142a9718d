import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

/// Process exit codes shared by every Holdfast executable (documented in `docs/cli.md`).
public struct ExitCode: Error, Equatable, Sendable {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// Done; for checks, the answer is "yes" (valid, allowed).
    public static let success = ExitCode(0)
    /// The answer is "no" (invalid signature, refused, denied), or the operation failed.
    public static let failure = ExitCode(1)
    /// The command line is wrong (EX_USAGE).
    public static let usage = ExitCode(64)
    /// Input data is malformed (EX_DATAERR).
    public static let dataError = ExitCode(65)
    /// A service it needs is not there (EX_UNAVAILABLE): the daemon, the broker.
    public static let unavailable = ExitCode(69)
    /// Not permitted for this user (EX_NOPERM).
    public static let noPermission = ExitCode(77)
}

/// A wrong command line: printed as one line with a hint to `--help`, exit 64.
public struct UsageError: Error, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// A command that cannot do what it was asked: printed as one line, with its exit code.
public struct CommandFailure: Error {
    public let message: String
    public let exitCode: ExitCode
    public init(_ message: String, exitCode: ExitCode = .failure) {
        self.message = message
        self.exitCode = exitCode
    }
}

/// An option a subcommand accepts.
public struct OptionSpec: Sendable {
    /// The long name without dashes, e.g. `state-dir`.
    public let name: String
    /// Placeholder for the value (`DIR`), or nil for a flag.
    public let value: String?
    public let help: String

    public init(_ name: String, value: String? = nil, help: String) {
        self.name = name
        self.value = value
        self.help = help
    }
}

/// A subcommand: a small struct that validates its arguments in `init` and then runs.
public protocol Subcommand {
    /// The words that select it, e.g. `["key", "generate"]`.
    static var path: [String] { get }
    /// One line for the command list.
    static var summary: String { get }
    /// Positional arguments as shown in help, e.g. `[TOKEN|-]`.
    static var positionals: String { get }
    /// Options it accepts.
    static var options: [OptionSpec] { get }
    /// Validates the parsed arguments.
    init(_ arguments: ParsedArguments) throws(UsageError)
    /// Does the work. Throws `CommandFailure` for a clean one-line error.
    func run(_ context: CommandContext) throws -> ExitCode
}

extension Subcommand {
    public static var positionals: String { "" }
    public static var options: [OptionSpec] { [] }
}

/// Parsed options and positional arguments, checked against the subcommand's `OptionSpec`s.
public struct ParsedArguments: Sendable {
    public private(set) var values: [String: String] = [:]
    public private(set) var flags: Set<String> = []
    public private(set) var positionals: [String] = []

    /// Parses `--name value`, `--name=value`, flags, `--` and positional arguments.
    public init(_ arguments: [String], options: [OptionSpec]) throws(UsageError) {
        let known = Dictionary(options.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var index = 0
        var optionsEnded = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if optionsEnded || argument == "-" || !argument.hasPrefix("-") {
                positionals.append(argument)
                continue
            }
            if argument == "--" {
                optionsEnded = true
                continue
            }
            guard argument.hasPrefix("--") else {
                throw UsageError("unknown option \(argument) (options are spelled --name)")
            }
            var name = String(argument.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let spec = known[name] else { throw UsageError("unknown option --\(name)") }
            if spec.value == nil {
                if inlineValue != nil { throw UsageError("--\(name) takes no value") }
                flags.insert(name)
                continue
            }
            if values[name] != nil { throw UsageError("--\(name) given twice") }
            let value: String
            if let inlineValue {
                value = inlineValue
            } else {
                guard index < arguments.count else { throw UsageError("--\(name) needs a value (\(spec.value ?? ""))") }
                // `--for --reason x`: the next word is an option of this command, not a value.
                let next = arguments[index]
                if next.hasPrefix("--"), known[String(next.dropFirst(2).split(separator: "=").first ?? "")] != nil {
                    throw UsageError("--\(name) needs a value (\(spec.value ?? "")) before \(next)")
                }
                value = next
                index += 1
            }
            guard !value.isEmpty else { throw UsageError("--\(name) needs a non-empty value (\(spec.value ?? ""))") }
            values[name] = value
        }
    }

    /// An option's value, or nil.
    public func value(_ name: String) -> String? { values[name] }

    /// Whether a flag was given.
    public func flag(_ name: String) -> Bool { flags.contains(name) }

    /// A required option's value.
    public func required(_ name: String) throws(UsageError) -> String {
        guard let value = values[name] else { throw UsageError("--\(name) is required") }
        return value
    }

    /// Refuses positional arguments, for commands that take none.
    public func noPositionals() throws(UsageError) {
        if let first = positionals.first { throw UsageError("unexpected argument '\(first)'") }
    }

    /// A positive duration option (`10m`, `2h`) in seconds; `allowZero` also takes `0`/`0s`.
    public func duration(_ name: String, allowZero: Bool = false) throws(UsageError) -> Int64? {
        guard let text = values[name] else { return nil }
        if allowZero, text == "0" || text == "0s" { return 0 }
        guard let seconds = DurationText.seconds(text) else {
            throw UsageError("--\(name) \(text) is not a duration (e.g. 90s, 10m, 2h, 1d)")
        }
        return seconds
    }

    /// A positive integer option.
    public func positiveInteger(_ name: String) throws(UsageError) -> Int? {
        guard let text = values[name] else { return nil }
        guard let value = Int(text), value > 0 else { throw UsageError("--\(name) \(text) is not a positive integer") }
        return value
    }
}

/// What a running subcommand may touch: its output streams and environment.
public struct CommandContext: Sendable {
    public let toolName: String
    public let environment: [String: String]

    public init(toolName: String, environment: [String: String]) {
        self.toolName = toolName
        self.environment = environment
    }

    /// Writes to standard output (write(2): `stdout` is not concurrency-safe in Swift 6).
    public func out(_ text: String) { FileOutput.write(1, text) }
    /// Writes one line to standard output.
    public func line(_ text: String) { FileOutput.write(1, text + "\n") }
    /// Writes bytes to standard output; false once it cannot (a closed pipe).
    @discardableResult
    public func out(bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { FileOutput.write(1, $0) } }
    /// Writes one line to standard error.
    public func error(_ text: String) { FileOutput.write(2, text + "\n") }

    /// Reads all of standard input (nil past `limit` bytes).
    public func readStandardInput(limit: Int = 16 << 20) -> [UInt8]? { FileOutput.readAll(0, limit: limit) }
}

/// Raw writes to file descriptors, retrying short writes and EINTR.
enum FileOutput {
    static func write(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, base + offset, bytes.count - offset)
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }

    static func write(_ descriptor: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let start = offset
            let written = bytes.withUnsafeMutableBytes { buffer in
                Glibc.write(descriptor, buffer.baseAddress.map { $0 + start }, buffer.count - start)
            }
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
        bytes.removeAll()
    }

    /// Everything up to EOF, or nil once more than `limit` bytes arrived.
    static func readAll(_ descriptor: Int32, limit: Int) -> [UInt8]? {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count <= 0 { return result }
            result.append(contentsOf: chunk[0..<count])
            if result.count > limit { return nil }
        }
    }
}
