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
        let seconds = try arguments.duration("max-age", allowZero: true) ?? 2
        guard seconds <= 86_400 else { throw UsageError("--max-age is at most 1d") }
        maximumAge = seconds * 1_000
        if json, countOnly { throw UsageError("--json and --count exclude each other") }
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        var stream = AuditStream(maximumAgeMilliseconds: maximumAge)
        var output: [UInt8] = []
        output.reserveCapacity(1 << 17)
        var closed = false
        var lateShown = 0
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
                // Reported beside the counts (the first 100; the rest only counted), never mixed
                // into the events on stdout.
                lateShown += 1
                if !json, lateShown <= 100 {
                    context.error("holdfast audit parse: late record \(Printable.escape(record.type)) for event \(record.serial)" + (record.node.map { " on node \(AuditEventSummary.visible($0))" } ?? "") + " (its event was already printed)" + (lateShown == 100 ? "; further late records are only counted" : ""))
                }
            }
            if output.count >= 1 << 16, !closed {
                if !context.out(bytes: output) { closed = true }
                output.removeAll(keepingCapacity: true)
            }
        }
        // Every file opens before anything is printed: a typo in the last name costs no output.
        var inputs: [(name: String, descriptor: Int32)] = []
        defer { for input in inputs where input.descriptor != 0 { close(input.descriptor) } }
        for file in files {
            let descriptor = file == "-" ? 0 : open(file, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                throw CommandFailure("\(file): \(String(cString: strerror(errno)))", exitCode: .dataError)
            }
            inputs.append((file, descriptor))
        }
        func write() {
            guard !output.isEmpty, !closed else { return }
            if !context.out(bytes: output) { closed = true }
            output.removeAll(keepingCapacity: true)
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var failure: CommandFailure?
        reading: for input in inputs {
            var info = stat()
            // A pipe, FIFO or terminal is live input (`tail -f audit.log | holdfast audit parse`):
            // output goes out after every read, and when nothing arrives for a second the open
            // events are ended (the idle flush) instead of waiting for the end of input.
            let live = fstat(input.descriptor, &info) == 0 && info.st_mode & S_IFMT != S_IFREG
            while !closed {
                if live {
                    var poller = pollfd(fd: input.descriptor, events: Int16(POLLIN), revents: 0)
                    let ready = poll(&poller, 1, 1_000)
                    if ready < 0, errno == EINTR { continue }
                    if ready == 0 {
                        stream.flush(emit: emit)
                        write()
                        continue
                    }
                }
                let count = chunk.withUnsafeMutableBytes { read(input.descriptor, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count >= 0 else {
                    failure = CommandFailure("\(input.name): \(String(cString: strerror(errno)))", exitCode: .dataError)
                    break reading
                }
                if count == 0 { break }
                chunk.withUnsafeBytes { stream.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count]), emit: emit) }
                if live { write() }
            }
            // A last line without its newline ends with its file.
            stream.endOfFile(emit: emit)
        }
        // What was read is printed and counted even when a later read failed.
        stream.finish(emit: emit)
        write()
        let statistics = stream.statistics
        let malformed = statistics.malformed.sorted { "\($0.key)" < "\($1.key)" }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let counts = "records \(statistics.records), events \(statistics.events), malformed \(statistics.malformedTotal)"
            + (malformed.isEmpty ? "" : " (\(malformed))") + ", late \(statistics.late), unknown types \(statistics.unknownTypes), blank \(statistics.blank)"
            + (statistics.endedByLimit > 0 ? ", ended early with \(AuditAssembler.maximumPending) open \(statistics.endedByLimit)" : "")
        if countOnly {
            if !context.out(bytes: Array((counts + "\n").utf8)) { closed = true }
        } else {
            context.error("holdfast audit parse: " + counts)
        }
        if let failure { throw failure }
        if closed { throw CommandFailure("cannot write to standard output: \(String(cString: strerror(errno)))") }
        return .success
    }
}

/// `holdfast audit rules`: the kernel audit rules FileWatch needs, as a rules file for augenrules.
struct AuditRules: Subcommand {
    static let path = ["audit", "rules"]
    static let summary = "print FileWatch's kernel audit rules (the file /etc/audit/rules.d/holdfast.rules holds)"
    static let options = [
        OptionSpec("roots", value: "DIR,DIR…", help: "the watched roots, which must exist when the rules load (default \(AuditRuleSet.packagedRoots.joined(separator: ",")), the shipped file's)"),
    ]

    let rules: AuditRuleSet

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        let roots = arguments.value("roots").map { $0.split(separator: ",").map(String.init) } ?? AuditRuleSet.packagedRoots
        do {
            rules = try AuditRuleSet(roots: roots)
        } catch {
            switch error {
            case .empty: throw UsageError("--roots names no directory")
            case .notAbsolute(let root): throw UsageError("--roots: \(Printable.escape(root)) is not an absolute path")
            case .unwritable(let root): throw UsageError("--roots: \(Printable.escape(root)) holds white space or a quote, which an audit rules file cannot hold")
            }
        }
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        context.out(rules.file)
        return .success
    }
}
