import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Log levels, mapped to syslog priorities for journald's `<N>` stderr prefixes (sd-daemon(3)).
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case error = 3, warning = 4, notice = 5, info = 6, debug = 7

    /// The level's name as written in config and on the command line.
    public var name: String {
        switch self {
        case .error: "error"
        case .warning: "warning"
        case .notice: "notice"
        case .info: "info"
        case .debug: "debug"
        }
    }

    /// Parses a level name.
    public init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = level
    }

    /// More severe levels compare lower, as syslog numbers them.
    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One formatted log record.
public struct LogRecord: Sendable, Equatable {
    public let level: LogLevel
    public let message: String
    public let metadata: [(String, String)]

    public init(level: LogLevel, message: String, metadata: [(String, String)]) {
        self.level = level
        self.message = message
        self.metadata = metadata
    }

    public static func == (lhs: LogRecord, rhs: LogRecord) -> Bool {
        lhs.level == rhs.level && lhs.message == rhs.message
            && lhs.metadata.map(\.0) == rhs.metadata.map(\.0) && lhs.metadata.map(\.1) == rhs.metadata.map(\.1)
    }

    /// `<6>message key=value key="value with spaces"` — one line, as journald reads stderr.
    public var line: String {
        var text = "<\(level.rawValue)>" + message.replacing("\n", with: " ")
        for (key, value) in metadata {
            text += " " + key + "=" + Self.quoteIfNeeded(value)
        }
        return text
    }

    static func quoteIfNeeded(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }
        guard needsQuotes else { return value }
        return "\"" + value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"")
            .replacing("\n", with: "\\n") + "\""
    }
}

/// Where log records go.
public protocol LogHandler: Sendable {
    func write(_ record: LogRecord)
}

/// Writes each record as one line to stderr with write(2) (journald adds time and unit).
public struct StandardErrorLogHandler: LogHandler {
    public init() {}
    public func write(_ record: LogRecord) {
        let line = record.line + "\n"
        var bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let start = offset
            let written = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress.map { $0 + start }, $0.count - start) }
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
        bytes.removeAll()
    }
}

/// Keeps records in memory, for tests.
public final class MemoryLogHandler: LogHandler {
    private let storage = Mutex<[LogRecord]>([])
    public init() {}
    public func write(_ record: LogRecord) { storage.withLock { $0.append(record) } }
    /// Everything written so far.
    public var records: [LogRecord] { storage.withLock { $0 } }
}

/// A small structured logger: a level threshold, dotted metadata keys, one handler.
///
/// `Logger` is a value: `with(_:_:)` returns a copy that adds metadata (`device.id`, `rule.id`),
/// so a service hands a tagged logger to the code it calls.
public struct Logger: Sendable {
    private let threshold: SharedValue<LogLevel>
    public let handler: any LogHandler
    public let metadata: [(String, String)]

    public init(level: LogLevel = .info, handler: any LogHandler = StandardErrorLogHandler()) {
        threshold = .init(level)
        self.handler = handler
        metadata = []
    }

    private init(threshold: SharedValue<LogLevel>, handler: any LogHandler, metadata: [(String, String)]) {
        self.threshold = threshold
        self.handler = handler
        self.metadata = metadata
    }

    /// The current threshold; shared by every copy made with `with`, so a reload changes them all.
    public var level: LogLevel {
        get { threshold.value }
        nonmutating set { threshold.value = newValue }
    }

    /// A copy that adds `key=value` to every record.
    public func with(_ key: String, _ value: String) -> Logger {
        Logger(threshold: threshold, handler: handler, metadata: metadata + [(key, value)])
    }

    public func log(_ level: LogLevel, _ message: String, _ extra: [(String, String)] = []) {
        guard level <= threshold.value else { return }
        handler.write(LogRecord(level: level, message: message, metadata: metadata + extra))
    }

    public func error(_ message: String, _ extra: (String, String)...) { log(.error, message, extra) }
    public func warning(_ message: String, _ extra: (String, String)...) { log(.warning, message, extra) }
    public func notice(_ message: String, _ extra: (String, String)...) { log(.notice, message, extra) }
    public func info(_ message: String, _ extra: (String, String)...) { log(.info, message, extra) }
    public func debug(_ message: String, _ extra: (String, String)...) { log(.debug, message, extra) }
}

/// A shared, mutable, lock-protected cell.
public final class SharedValue<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public var value: Value {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }
}
