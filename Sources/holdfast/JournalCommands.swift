import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore
import HoldfastStore
#if canImport(Glibc)
import Glibc
#endif

/// Options every journal verb shares.
enum JournalOptions {
    static let stateDirectory = OptionSpec(
        "state-dir", value: "DIR", help: "the agent's state directory (default \(JournalConfiguration.defaultDirectory))"
    )
    static let json = OptionSpec("json", help: "print JSON")

    /// Opens an existing journal; only `journal note` may create one.
    static func open(_ arguments: String?, create: Bool = false) throws -> Journal {
        let directory = arguments ?? JournalConfiguration.defaultDirectory
        do {
            return try Journal(configuration: JournalConfiguration(directory: directory, device: DeviceIdentity.local()), create: create)
        } catch {
            throw CommandFailure("cannot open the journal in \(directory): \(error)", exitCode: .unavailable)
        }
    }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

/// `holdfast journal tail`: the newest events.
struct JournalTail: Subcommand {
    static let path = ["journal", "tail"]
    static let summary = "print the newest journal events (oldest first)"
    static let options = [
        JournalOptions.stateDirectory,
        OptionSpec("lines", value: "N", help: "how many events (default 20)"),
        JournalOptions.json,
    ]

    let stateDirectory: String?
    let lines: Int
    let json: Bool

    init(_ arguments: ParsedArguments) throws(UsageError) {
        stateDirectory = arguments.value("state-dir")
        lines = try arguments.positiveInteger("lines") ?? 20
        json = arguments.flag("json")
        try arguments.noPositionals()
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let journal = try JournalOptions.open(stateDirectory)
        for entry in try journal.tail(lines) {
            if json {
                // The stored body is the event exactly as it will be uploaded; add the journal's own fields.
                var object = try JSONDecoder().decode([String: JSONValue].self, from: Data(entry.body))
                object["journal"] = .object(["id": .int(entry.id), "uploaded": .bool(entry.uploaded)])
                context.line(String(decoding: try JournalOptions.encoder().encode(object), as: UTF8.self))
            } else {
                let event = try entry.event()
                let time = event.time.formatted(.iso8601)
                let mark = entry.uploaded ? "uploaded" : "pending"
                // Messages come from users and devices: escape control characters so one event
                // cannot print as several, or drive the terminal.
                context.line("\(entry.id)\t\(time)\t\(event.severity.name)\t\(Printable.escape(event.kind))\t\(mark)\t\(Printable.escape(event.message))")
            }
        }
        return .success
    }
}

/// `holdfast journal stats`: counts, bytes, pending uploads, losses.
struct JournalStatsCommand: Subcommand {
    static let path = ["journal", "stats"]
    static let summary = "print journal counters: events, bytes, pending upload, evicted, lost"
    static let options = [JournalOptions.stateDirectory, JournalOptions.json]

    let stateDirectory: String?
    let json: Bool

    init(_ arguments: ParsedArguments) throws(UsageError) {
        stateDirectory = arguments.value("state-dir")
        json = arguments.flag("json")
        try arguments.noPositionals()
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let stats = try JournalOptions.open(stateDirectory).stats()
        if json {
            context.line(String(decoding: try JournalOptions.encoder().encode(stats), as: UTF8.self))
        } else {
            context.line("events            \(stats.events)")
            context.line("event bytes       \(stats.eventBytes)")
            context.line("pending upload    \(stats.pendingUpload)")
            context.line("last id           \(stats.lastID)")
            context.line("evicted uploaded  \(stats.evictedUploaded)")
            context.line("lost un-uploaded  \(stats.lostUnuploaded)")
            context.line("schema version    \(stats.schemaVersion)")
        }
        return .success
    }
}

/// `holdfast journal check`: SQLite's integrity check.
struct JournalCheck: Subcommand {
    static let path = ["journal", "check"]
    static let summary = "check the journal database's integrity (exit 1 if damaged)"
    static let options = [JournalOptions.stateDirectory]

    let stateDirectory: String?

    init(_ arguments: ParsedArguments) throws(UsageError) {
        stateDirectory = arguments.value("state-dir")
        try arguments.noPositionals()
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        // Checked without opening it as a journal, so a damaged file is reported, not refused.
        let directory = stateDirectory ?? JournalConfiguration.defaultDirectory
        let path = JournalConfiguration(directory: directory).path
        guard access(path, F_OK) == 0 else {
            throw CommandFailure("no journal at \(path)", exitCode: .unavailable)
        }
        let findings = Journal.integrityCheck(path: path)
        for finding in findings { context.line(finding) }
        return findings == ["ok"] ? .success : .failure
    }
}

/// `holdfast journal note`: an operator's annotation, journaled like any event.
struct JournalNote: Subcommand {
    static let path = ["journal", "note"]
    static let summary = "append an operator's note to the journal (e.g. 'maintenance window start')"
    static let positionals = "MESSAGE"
    static let options = [JournalOptions.stateDirectory]

    let stateDirectory: String?
    let message: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        stateDirectory = arguments.value("state-dir")
        guard arguments.positionals.count == 1, !arguments.positionals[0].isEmpty else {
            throw UsageError("give the note as one argument")
        }
        message = arguments.positionals[0]
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let journal = try JournalOptions.open(stateDirectory, create: true)
        let uid = getuid()
        let name = getpwuid(uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } }
        let event = Event(
            kind: "operator.note",
            eventClass: .base,
            activityID: 99,
            activityName: "Note",
            time: Date(),
            severity: .informational,
            message: message,
            actor: Actor(user: .init(uid: String(uid), name: name), process: .init(pid: Int(getpid()), name: "holdfast"))
        )
        let id = try journal.append(event)
        context.line("journaled as event \(id) (\(event.id.uuidString.lowercased()))")
        return .success
    }
}

