import FileWatch
import Foundation
import HoldfastCompression
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

/// `holdfast audit replay`: FileWatch over historical audit logs — what would have been flagged.
struct AuditReplay: Subcommand {
    static let path = ["audit", "replay"]
    static let summary = "replay audit logs through FileWatch's classifier and baselines: every decision it would have made, then a per-user summary"
    static let positionals = "FILE…|-"
    static let options = [
        OptionSpec("policy", value: "FILE", help: "a policy document whose filewatch section is used (default: FileWatch's defaults)"),
        OptionSpec("tz", value: "ZONE", help: "the time zone hours of the week are counted in (default: the policy's)"),
        OptionSpec("json", help: "one JSON object per decision, then a summary object (fields in docs/filewatch.md)"),
        OptionSpec("since", value: "TIME", help: "only events at or after TIME (epoch seconds, or 2026-11-02T00:00:00Z)"),
        OptionSpec("until", value: "TIME", help: "only events before TIME"),
        OptionSpec("load-baseline", value: "FILE", help: "start from a baseline export"),
        OptionSpec("save-baseline", value: "FILE", help: "write what was learned as a baseline export (0600)"),
    ]

    let arguments: ParsedArguments
    let files: [String]
    let since: Int64?
    let until: Int64?

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard !arguments.positionals.isEmpty else { throw UsageError("name the log files (or - for stdin)") }
        files = arguments.positionals
        since = try Self.time(arguments.value("since"), "--since")
        until = try Self.time(arguments.value("until"), "--until")
        if let since, let until, since >= until { throw UsageError("--since must be before --until") }
        self.arguments = arguments
    }

    static func time(_ text: String?, _ name: String) throws(UsageError) -> Int64? {
        guard let text else { return nil }
        if let seconds = Int64(text), seconds >= 0, seconds < 253_402_300_800 { return seconds * 1_000 }
        if let date = try? Date(text, strategy: .iso8601) { return Int64(date.timeIntervalSince1970 * 1_000) }
        throw UsageError("\(name) must be whole epoch seconds or a full ISO 8601 time with its zone, such as 2026-11-02T00:00:00Z or 2026-11-02T08:00:00+08:00")
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        var policy = FileWatchPolicy()
        if let file = arguments.value("policy") {
            let bytes = try InputFile.read(file, context: context, limit: 4 << 20)
            do {
                let document = try Policy.parse(bytes)
                policy = try FileWatchPolicy(section: document.sections["filewatch"])
            } catch let error as PolicyError {
                throw CommandFailure("\(file): \(error.message)", exitCode: .dataError)
            } catch let error as FileWatchPolicyError {
                throw CommandFailure("\(file): \(error.message)", exitCode: .dataError)
            }
        }
        if let zone = arguments.value("tz") {
            guard TimeZone(identifier: zone) != nil else { throw CommandFailure("--tz: unknown time zone '\(zone)'", exitCode: .usage) }
            policy.timeZone = zone
        }
        var baseline: BaselineSnapshot?
        if let file = arguments.value("load-baseline") {
            do {
                baseline = try BaselineSnapshot.decode(try InputFile.read(file, context: context, limit: 64 << 20))
            } catch let error as FileWatchPolicyError {
                // The decoder's own words are for developers; the first line of them is enough.
                let first = error.message.split(separator: ":").prefix(2).joined(separator: ":")
                throw CommandFailure("\(file): \(first)", exitCode: .dataError)
            }
            if let loaded = baseline, loaded.timeZone != policy.timeZone {
                throw CommandFailure("\(file): learned in \(loaded.timeZone); this replay counts hours in \(policy.timeZone)", exitCode: .dataError)
            }
        }
        // Where the baseline goes must be writable before hours of replay, not after.
        if let file = arguments.value("save-baseline") {
            let directory = file.contains("/") ? String(file[..<(file.lastIndex(of: "/") ?? file.endIndex)]) : "."
            guard access(directory.isEmpty ? "/" : directory, W_OK) == 0 else {
                throw CommandFailure("--save-baseline \(file): \(directory.isEmpty ? "/" : directory) is not writable (\(String(cString: strerror(errno))))", exitCode: .failure)
            }
        }
        var replay = Replay(policy: policy, baseline: baseline, since: since, until: until)
        let json = arguments.flag("json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var output: [UInt8] = []
        var closed = false
        func emit(_ lines: [JSONValue]) {
            for line in lines {
                if json {
                    output.append(contentsOf: (try? encoder.encode(line)) ?? Data())
                } else {
                    output.append(contentsOf: Replay.text(line).utf8)
                }
                output.append(0x0A)
            }
            if output.count >= 1 << 16, !closed {
                if !context.out(bytes: output) { closed = true }
                output.removeAll(keepingCapacity: true)
            }
        }
        var stream = AuditStream()
        func assembled(_ result: AuditAssembler.Output) {
            if case .event(let event) = result { emit(replay.feed(event)) }
        }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        for file in files {
            let descriptor = file == "-" ? 0 : open(file, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw CommandFailure("\(file): \(String(cString: strerror(errno)))", exitCode: .dataError) }
            defer { if descriptor != 0 { close(descriptor) } }
            // logrotate's compressed rotations (audit.log.2.gz) are read as they are: told by
            // their first bytes, inflated as a stream.
            var gzip: GzipReader?
            var first = true
            while !closed {
                let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count >= 0 else { throw CommandFailure("\(file): \(String(cString: strerror(errno)))", exitCode: .dataError) }
                if count == 0 { break }
                if first {
                    first = false
                    if GzipReader.isGzip(chunk[0..<count]) { gzip = GzipReader() }
                }
                chunk.withUnsafeBytes { bytes in
                    let read = UnsafeRawBufferPointer(rebasing: bytes[0..<count])
                    if let gzip {
                        gzip.feed(read) { inflated in stream.feed(inflated, emit: assembled) }
                    } else {
                        stream.feed(read, emit: assembled)
                    }
                }
                if let failure = gzip?.failure { throw CommandFailure("\(file): not valid gzip data: \(failure)", exitCode: .dataError) }
            }
            stream.endOfFile(emit: assembled)
            if let problem = gzip?.finish() { context.error("holdfast audit replay: \(file): \(problem); what was read is replayed") }
        }
        stream.finish(emit: assembled)
        emit(replay.finish())
        let summary = replay.summaryLine
        if json {
            emit([summary])
        } else {
            if case .object(let users)? = summary["users"] {
                for (auid, user) in users.sorted(by: { (UInt32($0.key) ?? 0) < (UInt32($1.key) ?? 0) }) {
                    let name = user["user"]?.stringValue.map { " (\(Printable.escape($0)))" } ?? ""
                    output.append(contentsOf: "user \(auid)\(name): events \(user["events"]?.intValue ?? 0), files written \(user["files_written"]?.intValue ?? 0), alerts \(user["alerts"]?.intValue ?? 0), blocks \(user["blocks"]?.intValue ?? 0)\n".utf8)
                }
            }
            emit([summary])
        }
        if !closed, !output.isEmpty, !context.out(bytes: output) { closed = true }
        let statistics = stream.statistics
        if statistics.malformedTotal > 0 || statistics.late > 0 {
            context.error("holdfast audit replay: skipped \(statistics.malformedTotal) malformed line(s) and \(statistics.late) late record(s); \(statistics.records) record(s) read in all")
        }
        if let file = arguments.value("save-baseline") {
            do {
                try SecureFile.write(replay.detector.snapshot.encoded() + [0x0A], to: file)
            } catch {
                throw CommandFailure("cannot write \(file): \(error)")
            }
        }
        if closed { throw CommandFailure("cannot write to standard output: \(String(cString: strerror(errno)))") }
        return .success
    }
}
