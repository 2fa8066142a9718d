import FileWatch
import HoldfastTestSupport
import Testing

/// Runs `log` through a stream fed in chunks of `sizes` (cycled), returning events and counters.
func stream(_ log: [UInt8], chunks sizes: [Int] = [65_536], maximumAge: Int64 = 2_000) -> (events: [AuditEvent], late: [AuditRecord], statistics: AuditStreamStatistics) {
    var stream = AuditStream(maximumAgeMilliseconds: maximumAge)
    var events: [AuditEvent] = []
    var late: [AuditRecord] = []
    let collect: (AuditAssembler.Output) -> Void = { output in
        switch output {
        case .event(let event): events.append(event)
        case .late(let record): late.append(record)
        }
    }
    var offset = 0
    var index = 0
    while offset < log.count {
        let size = max(1, sizes[index % sizes.count])
        let end = min(log.count, offset + size)
        stream.feed(Array(log[offset..<end]), emit: collect)
        offset = end
        index += 1
    }
    stream.finish(emit: collect)
    return (events, late, stream.statistics)
}

@Suite struct AuditStreamTests {
    @Test func theGeneratorIsDeterministicBySeed() {
        let first = AuditLogGenerator.generate(.init(seed: 42, records: 2_000))
        let again = AuditLogGenerator.generate(.init(seed: 42, records: 2_000))
        let other = AuditLogGenerator.generate(.init(seed: 43, records: 2_000))
        #expect(first.log == again.log)
        #expect(first.log != other.log)
        #expect(first.summary.records >= 2_000)
        #expect(first.summary.bytes == first.log.count)
    }

    @Test func everyGeneratedEventComesOutWholeWhateverTheChunking() {
        var options = AuditLogGenerator.Options(seed: 7, records: 20_000)
        options.interleave = 0.3
        let (log, written) = AuditLogGenerator.generate(options)
        let whole = stream(log)
        #expect(whole.statistics.records == written.records)
        #expect(whole.statistics.events == written.events)
        #expect(whole.events.count == written.events)
        #expect(whole.statistics.malformedTotal == 0)
        #expect(whole.late.isEmpty)
        // Syscall events end at PROCTITLE with all their records; logins are one record.
        let syscalls = whole.events.filter { $0.types.first == "SYSCALL" }
        #expect(!syscalls.isEmpty)
        #expect(syscalls.allSatisfy { $0.types.last == "PROCTITLE" && $0.types.contains("CWD") })
        let logins = whole.events.filter { $0.types.count == 1 || $0.types.first == "LOGIN" }
        #expect(logins.count == written.byKind["login"])
        #expect(logins.filter { $0.types.first == "LOGIN" }.allSatisfy { $0.types == ["LOGIN", "SYSCALL", "PROCTITLE"] })
        // A rename has four PATH records.
        let renames = whole.events.map(AuditEventSummary.init).filter { $0.syscallName == "renameat2" }
        #expect(renames.count == written.byKind["rename"])
        #expect(renames.allSatisfy { $0.paths.map(\.nametype) == ["PARENT", "PARENT", "DELETE", "CREATE"] })
        // Chunks of odd sizes (lines split anywhere) change nothing.
        let chopped = stream(log, chunks: [1, 7, 300, 4_093, 2, 65_536])
        #expect(chopped.events == whole.events)
        #expect(chopped.statistics == whole.statistics)
    }

    @Test func execveFragmentsFromTheGeneratorReassemble() {
        let (log, _) = AuditLogGenerator.generate(.init(seed: 11, records: 30_000))
        let summaries = stream(log).events.map(AuditEventSummary.init)
        let long = summaries.filter { ($0.argv?.count ?? 0) == 3 && $0.argv?.first == "python3" }
        #expect(!long.isEmpty)
        let scripts = long.compactMap { $0.argv?[2] }
        #expect(scripts.count == long.count)
        #expect(scripts.allSatisfy { $0.hasPrefix("print('customer record'); ") && $0.utf8.count > 9_000 })
        #expect(long.allSatisfy { $0.types.filter { $0 == "EXECVE" }.count >= 2 })
    }

    @Test func garbageLinesAreCountedByReasonAndSkipped() {
        var options = AuditLogGenerator.Options(seed: 3, records: 5_000)
        options.garbageEvery = 10
        let (log, written) = AuditLogGenerator.generate(options)
        let result = stream(log)
        #expect(written.garbage > 0)
        #expect(result.statistics.malformedTotal == written.garbage)
        #expect(result.statistics.events == written.events)
        #expect(result.statistics.records == written.records)
    }

    @Test func overlongLinesAreSkippedWithoutBufferingThem() {
        var log = Array(repeating: UInt8(ascii: "a"), count: 200_000)
        log.append(0x0A)
        log += Array((copyEvent.joined(separator: "\n") + "\n").utf8)
        let result = stream(log, chunks: [10_000])
        #expect(result.statistics.malformed[.tooLong] == 1)
        #expect(result.events.map(\.serial) == [500])
    }

    @Test func theLastLineNeedsNoNewlineAndCarriageReturnsAndBlankLinesAreHarmless() {
        let text = "\r\n\n" + copyEvent.dropLast(2).joined(separator: "\r\n")
        let result = stream(Array(text.utf8))
        #expect(result.statistics.blank == 2)
        #expect(result.events.count == 1)
        #expect(result.events.first?.types == ["SYSCALL", "CWD", "PATH", "PATH"])
        #expect(AuditEventSummary(result.events[0]).paths.last?.name == "/media/agent01/STICK/customer list.csv")
    }

    @Test func unknownTypesAreKeptAndCounted() {
        let result = stream(Array("type=UNKNOWN[1999] msg=audit(1700000000.000:1): x=1\ntype=EOE msg=audit(1700000000.000:1):\ntype=UNKNOWN[2500] msg=audit(1700000000.000:2): x=1\n".utf8))
        #expect(result.statistics.unknownTypes == 2)
        // 2500 is in the user-space range: a whole event by itself, like libauparse says.
        #expect(result.events.map(\.types) == [["UNKNOWN[1999]", "EOE"], ["UNKNOWN[2500]"]])
    }

    @Test func aLastLineWithoutNewlineEndsWithItsFile() {
        var stream = AuditStream()
        var events: [AuditEvent] = []
        stream.feed(Array("type=SYSCALL msg=audit(1.000:1): syscall=2".utf8)) { if case .event(let event) = $0 { events.append(event) } }
        stream.endOfFile { if case .event(let event) = $0 { events.append(event) } }
        stream.feed(Array("type=PATH msg=audit(1.000:1): item=0 name=\"/etc/shadow\" nametype=NORMAL\ntype=PROCTITLE msg=audit(1.000:1): proctitle=\"x\"\n".utf8)) { if case .event(let event) = $0 { events.append(event) } }
        #expect(stream.statistics.records == 3)
        #expect(events.map(\.types) == [["SYSCALL", "PATH", "PROCTITLE"]])
    }

    /// Mutated logs (bytes flipped, inserted, deleted; lines cut): never a crash, and every line
    /// is accounted for as a record, a malformed line or a blank one. `make fuzz` runs the same
    /// property under libFuzzer.
    @Test func mutatedLogsAreAccountedForLineByLine() {
        let (log, _) = AuditLogGenerator.generate(.init(seed: 5, records: 3_000))
        var random = SplitMix64(seed: 99)
        for round in 0..<20 {
            var mutated = log
            for _ in 0..<(50 + round * 20) {
                let at = random.below(mutated.count)
                switch random.below(4) {
                case 0: mutated[at] = UInt8(truncatingIfNeeded: random.next())
                case 1: mutated.insert(UInt8(truncatingIfNeeded: random.next()), at: at)
                case 2: mutated.remove(at: at)
                default: mutated[at] = [0x0A, 0x20, 0x22, 0x27, 0x3D, 0x1D, 0x28, 0x3A][random.below(8)]
                }
            }
            let lines = mutated.split(separator: 0x0A, omittingEmptySubsequences: false).count - (mutated.last == 0x0A ? 1 : 0)
            let result = stream(mutated, chunks: [random.below(5_000) + 1])
            let accounted = result.statistics.records + result.statistics.malformedTotal + result.statistics.blank
            #expect(accounted == lines)
            for event in result.events { _ = AuditEventSummary(event) }
        }
    }
}

/// libauparse, the parser ausearch and auditd plugins use, as the reference: same events, same
/// records, same decoded names, on generated logs with interleaving and ENRICHED fields.
@Suite struct AuparseAgreementTests {
    @Test(arguments: [false, true])
    func eventsAndNamesMatchLibauparse(enriched: Bool) {
        var options = AuditLogGenerator.Options(seed: enriched ? 21 : 22, records: 6_000)
        options.enriched = enriched
        options.interleave = 0.2
        options.node = enriched ? nil : "desk-07"
        let (log, _) = AuditLogGenerator.generate(options)
        let ours = stream(log).events
        // libauparse 3.0.9 splits a kernel LOGIN from the SYSCALL sharing its serial: merged back.
        let reference = AuparseReference.mergedBySerial(AuparseReference.events(log))
        #expect(ours.contains { $0.types.prefix(3) == ["LOGIN", "SYSCALL", "PROCTITLE"] })
        #expect(ours.count == reference.count)
        let byKey = Dictionary(reference.map { ("\($0.node ?? "")/\($0.serial)", $0) }, uniquingKeysWith: { first, _ in first })
        var compared = 0
        for event in ours {
            guard let theirs = byKey["\(event.node ?? "")/\(event.serial)"] else {
                Issue.record("libauparse has no event \(event.serial)")
                continue
            }
            #expect(event.types.filter { $0 != "EOE" } == theirs.types)
            let names = AuditEventSummary(event).paths.map { $0.name ?? "(null)" }
            #expect(names == theirs.names)
            compared += 1
        }
        #expect(compared == reference.count)
    }
}
