// holdfast-testkit: child processes for tests that need a real process to kill. Not shipped.
//
//   holdfast-testkit journal-append-loop DIR BATCH
//     Appends events to the journal in DIR, BATCH per transaction, and writes each committed id
//     to stdout (one per line) only after its commit returned. Runs until killed, or 60 s.
//
//   holdfast-testkit audit-log --records N [--seed S] [--plain] [--node NAME] [--interleave P] [--garbage-every N]
//     Writes a realistic audit log (AuditLogGenerator: deterministic by seed) to stdout and a
//     summary line (records, events, garbage lines, bytes) to stderr.
//
//   holdfast-testkit baseline --auid N [--weeks W] [--per-hour P] [--tz ZONE] [--root DIR]
//     Writes a FileWatch baseline export to stdout: the user wrote P distinct files in every hour
//     of the last W weeks (defaults 4 and 50, UTC), as `holdfast filewatch baseline import` reads it.
//
//   holdfast-testkit posture-tree luks|plain DIR
//     Writes a directory tree laid out like a Debian 12 root filesystem for `holdfast posture
//     --root DIR`: `luks` with / on LVM on LUKS2 (vda2_crypt), `plain` with / on a partition.
//
//   holdfast-testkit print-demo BIN-DIR
//     `make demo`'s print steps: a private cupsd and IPP printer, holdfastd gating them, a demo
//     user printing; stops everything it started.
import FoundationEssentials
import HoldfastCore
import HoldfastStore
import HoldfastTestSupport
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    let line = "holdfast-testkit: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

let arguments = CommandLine.arguments
if arguments.count == 3, arguments[1] == "print-demo" {
    exit(PrintDemo.run(binaries: arguments[2]))
}
if arguments.count == 4, arguments[1] == "posture-tree", ["luks", "plain"].contains(arguments[2]) {
    guard mkdir(arguments[3], 0o755) == 0 || errno == EEXIST else { fail("cannot create \(arguments[3]): \(String(cString: strerror(errno)))") }
    _ = arguments[2] == "luks" ? FixtureTree.luksRoot(at: arguments[3]) : FixtureTree.debian(at: arguments[3])
    exit(0)
}
if arguments.count >= 2, arguments[1] == "baseline" {
    var options: [String: String] = [:]
    var index = 2
    while index + 1 < arguments.count, arguments[index].hasPrefix("--") {
        options[String(arguments[index].dropFirst(2))] = arguments[index + 1]
        index += 2
    }
    guard index == arguments.count, let auid = options["auid"].flatMap({ UInt32($0) }),
        let weeks = Int(options["weeks"] ?? "4"), (1...52).contains(weeks), let perHour = Int(options["per-hour"] ?? "50"), (0...100_000).contains(perHour)
    else { fail("usage: holdfast-testkit baseline --auid N [--weeks 1-52] [--per-hour P] [--tz ZONE] [--root DIR]") }
    var bytes = BaselineHistory.export(
        auid: auid, weeks: weeks, perHour: perHour, timeZone: options["tz"] ?? "UTC",
        until: Int64(Date().timeIntervalSince1970 * 1_000), root: options["root"] ?? "/home/user"
    )
    bytes.append(UInt8(ascii: "\n"))
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    exit(0)
}
if arguments.count >= 2, arguments[1] == "audit-log" {
    exit(AuditLogCommand.run(Array(arguments.dropFirst(2))))
}
// journal-fill DIR COUNT KIND: appends COUNT events of KIND (100 per transaction) to an existing
// journal — beside a running holdfastd, as `holdfast journal note` does — and prints the count.
// journal-fill DIR COUNT KIND finding: detection findings of High severity by user "maria" (alerts).
if arguments.count >= 5, arguments[1] == "journal-fill", let count = Int(arguments[3]), count > 0 {
    let finding = arguments.count == 6 && arguments[5] == "finding"
    do {
        let journal = try Journal(configuration: JournalConfiguration(directory: arguments[2]), create: false)
        var sequence = 0
        while sequence < count {
            var events: [Event] = []
            while events.count < 100, sequence < count {
                sequence += 1
                events.append(Event(
                    kind: arguments[4], eventClass: finding ? .detectionFinding : .base, activityID: finding ? 1 : 99, time: Date(),
                    severity: finding ? .high : .informational, message: "filled event \(sequence) of \(count)",
                    actor: finding ? Actor(user: .init(uid: "1001", name: "maria")) : nil,
                    details: ["sequence": .int(Int64(sequence))]))
            }
            _ = try journal.append(contentsOf: events)
        }
        print(sequence)
        exit(0)
    } catch {
        fail("journal-fill: \(error)")
    }
}
guard arguments.count == 4, arguments[1] == "journal-append-loop", let batch = Int(arguments[3]), batch > 0 else {
    fail("usage: holdfast-testkit journal-append-loop DIR BATCH | journal-fill DIR COUNT KIND | audit-log --records N [--seed S] … | print-demo BIN-DIR")
}

let journal: Journal
do {
    journal = try Journal(configuration: JournalConfiguration(directory: arguments[2]))
} catch {
    fail("cannot open journal: \(error)")
}

let deadline = Date().addingTimeInterval(60)
var sequence = 0
while Date() < deadline {
    var events: [Event] = []
    for _ in 0..<batch {
        sequence += 1
        events.append(
            Event(
                kind: "test.crash",
                eventClass: .base,
                activityID: 99,
                time: Date(),
                severity: .informational,
                message: "append \(sequence) from pid \(getpid())",
                details: ["sequence": .int(Int64(sequence))]
            )
        )
    }
    do {
        let ids = try journal.append(contentsOf: events)
        let text = ids.map(String.init).joined(separator: "\n") + "\n"
        _ = text.withCString { write(1, $0, strlen($0)) }
    } catch {
        fail("append failed: \(error)")
    }
}
exit(0)
