import HoldfastTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `holdfast-testkit audit-log`: the generator on stdout.
enum AuditLogCommand {
    static let usage = """
        usage: holdfast-testkit audit-log --records N [--seed S] [--plain] [--node NAME] [--interleave P] [--garbage-every N]
          Writes a realistic audit log to stdout (deterministic by seed; stops after the event that
          reaches N records) and a summary line to stderr.
          --seed S           the generator's seed (default 1)
          --plain            auditd's RAW format (no 0x1D and interpreted fields; default ENRICHED)
          --node NAME        prefix every record with node=NAME
          --interleave P     share of events (0-1) whose records interleave with the next event's (default 0.05)
          --garbage-every N  one malformed line after every N-th event (default: none)

        """

    static func run(_ arguments: [String]) -> Int32 {
        if arguments.contains("--help") || arguments.contains("-h") {
            _ = usage.withCString { Glibc.write(1, $0, strlen($0)) }
            return 0
        }
        var options = AuditLogGenerator.Options(seed: 1, records: 0)
        var index = 0
        func value() -> String? {
            index += 1
            return index < arguments.count ? arguments[index] : nil
        }
        while index < arguments.count {
            switch arguments[index] {
            case "--records": options.records = value().flatMap { Int($0) } ?? -1
            case "--seed": options.seed = value().flatMap { UInt64($0) } ?? 0
            case "--plain": options.enriched = false
            case "--node": options.node = value()
            case "--interleave": options.interleave = value().flatMap { Double($0) } ?? -1
            case "--garbage-every": options.garbageEvery = value().flatMap { Int($0) } ?? -1
            default: fail("audit-log: unknown argument \(arguments[index]); see 'holdfast-testkit audit-log --help'")
            }
            index += 1
        }
        guard options.records > 0, options.interleave >= 0, options.garbageEvery >= 0 else {
            fail("audit-log: --records N (N > 0) is required; --interleave P and --garbage-every N take numbers")
        }
        var generator = AuditLogGenerator(options)
        var failed = false
        generator.write { chunk in
            guard !failed else { return }
            var offset = 0
            chunk.withUnsafeBytes { raw in
                while offset < raw.count, let base = raw.baseAddress {
                    let written = Glibc.write(1, base + offset, raw.count - offset)
                    if written < 0, errno == EINTR { continue }
                    guard written > 0 else {
                        failed = true
                        return
                    }
                    offset += written
                }
            }
        }
        guard !failed else { fail("audit-log: cannot write to stdout") }
        let summary = generator.summary
        let line = "records \(summary.records) events \(summary.events) garbage \(summary.garbage) bytes \(summary.bytes)\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
        return 0
    }
}
