import FileWatch
import Foundation
import HoldfastTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The audit row: FileWatch's parser and assembler against libauparse on the same generated log,
/// each in its own process so the peak RSS is its own.
enum AuditBench {
    /// `holdfast-bench audit-child FILE`: parse + assemble FILE read in 64 KiB chunks, visiting
    /// every raw field's name and value of every event (what the C anchor does with auparse).
    static func child(_ path: String) -> Int32 {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return 1 }
        defer { close(descriptor) }
        var stream = AuditStream()
        var fields = 0
        var touched = 0
        var records = 0
        // A nested function, not a closure value: its captures stay on the stack.
        func visit(_ output: AuditAssembler.Output) {
            guard case .event(let event) = output else { return }
            for record in event.records {
                records += 1
                record.forEachField { name, value in
                    fields += 1
                    touched &+= Int(name.first ?? 0) &+ Int(value.first ?? 0)
                }
            }
        }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            chunk.withUnsafeBytes { stream.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count]), emit: visit) }
        }
        stream.finish(emit: visit)
        print("records \(records) events \(stream.statistics.events) fields \(fields) touched \(touched) vmhwm_kib \(highWaterMark(getpid()) ?? -1)")
        return 0
    }

    struct Run {
        var seconds: Double
        var maxRSSKiB: Int
        var output: String
    }

    /// VmHWM (peak resident set) of a process, in KiB. Not ru_maxrss: posix_spawn's vfork carries
    /// the spawning parent's high-water mark across exec into the child's.
    static func highWaterMark(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        return status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.flatMap { line in
            line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        }
    }

    /// Runs argv to completion with stdout to a file; wall time measured here. The peak RSS is
    /// what the child reports (`vmhwm_kib K`), else its VmHWM sampled every 5 ms until it exits.
    static func measure(_ argv: [String], stdout: String) throws -> Run {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let arguments = argv.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        var child = pid_t()
        let start = ContinuousClock.now
        guard posix_spawn(&child, argv[0], &actions, nil, arguments, environ) == 0 else { throw CocoaError(.executableLoad) }
        var status: Int32 = 0
        var sampled = 0
        while true {
            let done = waitpid(child, &status, WNOHANG)
            if done == child { break }
            if done < 0, errno != EINTR { throw CocoaError(.executableLoad) }
            if let mark = highWaterMark(child) { sampled = max(sampled, mark) }
            usleep(5_000)
        }
        let seconds = (ContinuousClock.now - start).seconds
        guard status == 0 else { throw CocoaError(.executableLoad) }
        let output = (try? String(contentsOfFile: stdout, encoding: .utf8)) ?? ""
        let reported = output.split(separator: " ").split(separator: "vmhwm_kib").dropFirst().first?.first.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        return Run(seconds: seconds, maxRSSKiB: reported ?? sampled, output: output)
    }

    static func rows(records: Int) throws -> [Row] {
        let directory = TemporaryDirectory()
        let log = directory.file("audit.log")
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let anchor = here.appendingPathComponent("auparse-feed").path
        let holdfast = here.appendingPathComponent("holdfast").path
        guard FileManager.default.isExecutableFile(atPath: anchor) else {
            print("note: skipping the audit row (no auparse-feed beside holdfast-bench; `make bench` compiles it)")
            return []
        }
        // The log: written once, streamed to disk.
        let descriptor = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw CocoaError(.fileWriteUnknown) }
        var generator = AuditLogGenerator(.init(seed: 1, records: records))
        generator.write { chunk in _ = chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) } }
        close(descriptor)
        let written = generator.summary
        let selfPath = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var ours: [Run] = []
        var theirs: [Run] = []
        var json: [Run] = []
        var replay: [Run] = []
        // Alternate the three, five rounds each. The best run of each is compared (the least
        // disturbed by other load on a shared machine); the medians are printed beside.
        for _ in 0..<5 {
            ours.append(try measure([selfPath, "audit-child", log], stdout: directory.file("ours.out")))
            theirs.append(try measure([anchor, log], stdout: directory.file("theirs.out")))
            if FileManager.default.isExecutableFile(atPath: holdfast) {
                json.append(try measure([holdfast, "audit", "parse", "--json", log], stdout: "/dev/null"))
                replay.append(try measure([holdfast, "audit", "replay", "--json", log], stdout: directory.file("replay.out")))
            }
        }
        // The same child on an empty log: the process's own footprint (Swift runtime, libraries).
        let empty = directory.file("empty.log")
        try "".writeReplacing(toFile: empty)
        let idle = try measure([selfPath, "audit-child", empty], stdout: directory.file("idle.out"))
        func median(_ runs: [Run]) -> Run { runs.sorted { $0.seconds < $1.seconds }[runs.count / 2] }
        func best(_ runs: [Run]) -> Run { runs.min { $0.seconds < $1.seconds } ?? runs[0] }
        let mine = best(ours)
        let anchorRun = best(theirs)
        func seconds(_ runs: [Run]) -> String { String(format: "best %.2f s, median %.2f s", best(runs).seconds, median(runs).seconds) }
        // libauparse drops EOE records; both sides see the same events.
        let events = mine.output.split(separator: " ").dropFirst(3).first.map(String.init) ?? "?"
        let anchorEvents = anchorRun.output.split(separator: " ").dropFirst(3).first.map(String.init) ?? "?"
        if events != anchorEvents { print("note: event counts differ: Holdfast \(events), libauparse \(anchorEvents)") }
        let megabytes = Double(written.bytes) / 1_048_576
        func mib(_ kib: Int) -> String { String(format: "%.1f MiB", Double(kib) / 1024) }
        var result = [Row(
            name: "audit parse + assemble, visiting every field (generated log: \(written.records) records, \(written.events) events, \(String(format: "%.0f", megabytes)) MiB)",
            holdfast: "\(rate(Double(written.records) / mine.seconds)) records (\(seconds(ours))), peak RSS \(mib(ours.map(\.maxRSSKiB).max() ?? 0)) (\(mib(idle.maxRSSKiB)) on an empty log)",
            anchorName: "libauparse auparse_feed + callback walking every field (C, Benchmarks/auparse)",
            anchor: "\(rate(Double(written.records) / anchorRun.seconds)) records (\(seconds(theirs))), peak RSS \(mib(theirs.map(\.maxRSSKiB).max() ?? 0))",
            ratio: String(format: "%.2f× the anchor's time (%.2f× its throughput; goal ≥ 2×)", mine.seconds / anchorRun.seconds, anchorRun.seconds / mine.seconds)
        )]
        if !json.isEmpty {
            let full = best(json)
            result.append(Row(
                name: "holdfast audit parse --json on the same log (decode every value, write JSON)",
                holdfast: "\(rate(Double(written.records) / full.seconds)) records (\(seconds(json))), peak RSS \(mib(json.map(\.maxRSSKiB).max() ?? 0))",
                anchorName: "the libauparse row above (parse only, no decoding or output)",
                anchor: "\(rate(Double(written.records) / anchorRun.seconds)) records",
                ratio: String(format: "%.2f× the anchor's time (%.2f× its throughput)", full.seconds / anchorRun.seconds, anchorRun.seconds / full.seconds)
            ))
        }
        if !json.isEmpty, !replay.isEmpty {
            let full = best(json)
            let backtest = best(replay)
            let summary = (try? String(contentsOfFile: directory.file("replay.out"), encoding: .utf8))?.split(separator: "\n").last.map(String.init) ?? ""
            let decisions = ((try? String(contentsOfFile: directory.file("replay.out"), encoding: .utf8)) ?? "").split(separator: "\n").count - 1
            if !summary.contains("\"summary\"") { print("note: the replay did not end with its summary") }
            result.append(Row(
                name: "holdfast audit replay --json on the same log (classify, baselines, decisions; \(decisions) lines before the summary)",
                holdfast: "\(rate(Double(written.records) / backtest.seconds)) records (\(seconds(replay))), peak RSS \(mib(replay.map(\.maxRSSKiB).max() ?? 0))",
                anchorName: "holdfast audit parse --json, same runs (the issue: at least as fast)",
                anchor: "\(rate(Double(written.records) / full.seconds)) records",
                ratio: String(format: "%.2f× the anchor's time", backtest.seconds / full.seconds)
            ))
        }
        return result
    }
}
