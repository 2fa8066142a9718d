import FileWatch
import HoldfastCommandLine
import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

/// `holdfast audit parse`: raw audit text in, one assembled event per line out.
struct AuditParse: Subcommand {
    static let path = ["audit", "parse"]
    static let summary = "assemble raw audit records (audit.log, or stdin) into events; one per line"
    static let positionals = "[FILE…|-]"
    static let options = [
        OptionSpec("json", help: "one JSON object per event (fields in docs/audit-format.md)"),
        OptionSpec("count", help: "print only the counts: records, events, malformed lines by reason, late records, unknown types, blank lines"),
        OptionSpec("max-age", value: "DURATION", help: "end an event with no EOE once newer records are this much later (whole seconds: 2s, 1m; default 2s; 0: at the next newer record)"),
    ]

    let files: [String]
    let json: Bool
    let countOnly: Bool
    let maximumAge: Int64

    init(_ arguments: ParsedArguments) throws(UsageError) {
        files = arguments.positionals.isEmpty ? ["-"] : arguments.positionals
        json = arguments.flag("json")
        countOnly = arguments.flag("count")
        maximumAge = (try arguments.duration("max-age", allowZero: true) ?? 2) * 1_000
        if json, countOnly { throw UsageError("--json and --count exclude each other") }
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        var stream = AuditStream(maximumAgeMilliseconds: maximumAge)
        var output: [UInt8] = []
        output.reserveCapacity(1 << 17)
        var closed = false
        // A nested function, not a closure value: its captures stay on the stack.
        func emit(_ result: AuditAssembler.Output) {
            guard !countOnly, !closed else { return }
            switch result {
            case .event(let event):
                let summary = AuditEventSummary(event)
                if json {
                    summary.writeJSON(into: &output)
                } else {
                    output.append(contentsOf: summary.line.utf8)
                }
                output.append(0x0A)
            case .late(let record):
                // Reported beside the counts, never mixed into the events on stdout.
                if !json { context.error("holdfast audit parse: late record \(Printable.escape(record.type)) for event \(record.serial)" + (record.node.map { " on node \(Printable.escape($0))" } ?? "") + " (its event was already printed)") }
            }
            if output.count >= 1 << 16 {
                if !context.out(bytes: output) { closed = true }
                output.removeAll(keepingCapacity: true)
            }
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        for file in files {
            let descriptor = file == "-" ? 0 : open(file, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                throw CommandFailure("\(file): \(String(cString: strerror(errno)))", exitCode: .dataError)
            }
            defer { if descriptor != 0 { close(descriptor) } }
            while !closed {
                let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count >= 0 else {
                    throw CommandFailure("\(file): \(String(cString: strerror(errno)))", exitCode: .dataError)
                }
                if count == 0 { break }
                chunk.withUnsafeBytes { stream.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count]), emit: emit) }
            }
        }
        stream.finish(emit: emit)
        if !output.isEmpty, !closed { context.out(bytes: output) }
        let statistics = stream.statistics
        let malformed = statistics.malformed.sorted { "\($0.key)" < "\($1.key)" }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let counts = "records \(statistics.records), events \(statistics.events), malformed \(statistics.malformedTotal)"
            + (malformed.isEmpty ? "" : " (\(malformed))") + ", late \(statistics.late), unknown types \(statistics.unknownTypes), blank \(statistics.blank)"
        if countOnly { context.line(counts) } else { context.error("holdfast audit parse: " + counts) }
        return .success
    }
}
