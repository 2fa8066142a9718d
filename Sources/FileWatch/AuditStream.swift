#if canImport(Glibc)
import Glibc
#endif

/// What a stream saw besides events: every line is accounted for.
public struct AuditStreamStatistics: Sendable, Equatable {
    /// Lines that parsed as records.
    public var records = 0
    /// Events emitted.
    public var events = 0
    /// Lines that are not records, by reason (`noType`, `noHeader`, `badHeader`, `tooLong`).
    public var malformed: [AuditParseError: Int] = [:]
    /// Records of events already emitted (reported, never attached to another event).
    public var late = 0
    /// Records of types this build has no name for (`UNKNOWN[N]`); kept as records.
    public var unknownTypes = 0
    /// Empty lines (skipped, not counted as malformed).
    public var blank = 0
    /// Events ended before their end because too many were open (`AuditAssembler.maximumPending`).
    public var endedByLimit = 0

    public var malformedTotal: Int { malformed.values.reduce(0, +) }

    public init() {}
}

/// auditd's text stream → events: splits bytes into lines (in chunks of any size, as they come
/// from a file, a pipe or auditd's plugin stdin), parses each line and assembles events. Lines that
/// are not records are counted by reason and skipped; a line longer than
/// `AuditRecord.maximumLineLength` is skipped up to its newline without being buffered.
public struct AuditStream: Sendable {
    public private(set) var statistics = AuditStreamStatistics()
    private var assembler: AuditAssembler
    /// A line split across chunks.
    private var carry: [UInt8] = []
    /// Skipping the rest of an over-long line.
    private var discarding = false
    /// Field spans of the line being parsed, reused from line to line.
    private var scratch: [AuditRecord.FieldSpan] = []

    public init(maximumAgeMilliseconds: Int64 = 2_000) {
        assembler = AuditAssembler(maximumAgeMilliseconds: maximumAgeMilliseconds)
    }

    /// Feeds bytes; every completed event or late record goes to `emit`, in order.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer, emit: (AuditAssembler.Output) throws -> Void) rethrows {
        let bytes = chunk.bindMemory(to: UInt8.self)
        guard let base = bytes.baseAddress else { return }
        var start = 0
        while start < bytes.count {
            let remaining = bytes.count - start
            guard let found = memchr(base + start, 0x0A, remaining) else {
                keep(UnsafeBufferPointer(start: base + start, count: remaining))
                return
            }
            let newline = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
            let piece = UnsafeBufferPointer(start: base + start, count: newline - start)
            if discarding {
                discarding = false
            } else if carry.isEmpty {
                try line(piece, emit: emit)
            } else {
                keep(piece)
                if discarding {
                    discarding = false
                } else {
                    let whole = carry
                    carry.removeAll(keepingCapacity: true)
                    try whole.withUnsafeBufferPointer { try line($0, emit: emit) }
                }
            }
            start = newline + 1
        }
    }

    public mutating func feed(_ chunk: [UInt8], emit: (AuditAssembler.Output) throws -> Void) rethrows {
        try chunk.withUnsafeBytes { try feed($0, emit: emit) }
    }

    /// End of input: the last line even without its newline (it may be truncated), then every
    /// pending event.
    public mutating func finish(emit: (AuditAssembler.Output) throws -> Void) rethrows {
        try endOfFile(emit: emit)
        try flush(emit: emit)
    }

    /// The end of one file of several: a last line without its newline ends there (it never
    /// joins the next file's first line); events stay open, they may continue in the next file.
    public mutating func endOfFile(emit: (AuditAssembler.Output) throws -> Void) rethrows {
        if discarding {
            discarding = false
        } else if !carry.isEmpty {
            let whole = carry
            carry.removeAll()
            try whole.withUnsafeBufferPointer { try line($0, emit: emit) }
        }
    }

    /// The input went idle: ends every pending event (a partial line stays buffered).
    public mutating func flush(emit: (AuditAssembler.Output) throws -> Void) rethrows {
        var count = 0
        try assembler.flush { event in
            count += 1
            try emit(.event(event))
        }
        statistics.events += count
    }

    private mutating func keep(_ piece: UnsafeBufferPointer<UInt8>) {
        guard !discarding else { return }
        if carry.count + piece.count > AuditRecord.maximumLineLength {
            carry.removeAll()
            discarding = true
            statistics.malformed[.tooLong, default: 0] += 1
            return
        }
        carry.append(contentsOf: piece)
    }

    private mutating func line(_ bytes: UnsafeBufferPointer<UInt8>, emit: (AuditAssembler.Output) throws -> Void) rethrows {
        if bytes.isEmpty || (bytes.count == 1 && bytes[0] == 0x0D) {
            statistics.blank += 1
            return
        }
        var error = AuditParseError.noType
        guard let record = AuditRecord.parse(bytes, scratch: &scratch, error: &error) else {
            statistics.malformed[error, default: 0] += 1
            return
        }
        statistics.records += 1
        if record.kind == .other || record.kind == .single, record.type.hasPrefix("UNKNOWN[") { statistics.unknownTypes += 1 }
        var events = 0
        var late = 0
        try assembler.add(record) { output in
            switch output {
            case .event: events += 1
            case .late: late += 1
            }
            try emit(output)
        }
        statistics.events += events
        statistics.late += late
        statistics.endedByLimit = assembler.endedByLimit
    }
}
