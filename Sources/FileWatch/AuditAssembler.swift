/// Records of one event: same node, same serial.
public struct AuditEvent: Sendable, Equatable {
    public let node: String?
    public let serial: UInt64
    public let seconds: Int64
    public let milliseconds: Int
    /// In arrival order (EOE included when it came).
    public internal(set) var records: [AuditRecord]
    /// The records' stored bytes (kept by the assembler, for its memory bounds).
    var bytes = 0

    init(node: String?, serial: UInt64, seconds: Int64, milliseconds: Int, records: [AuditRecord]) {
        self.node = node
        self.serial = serial
        self.seconds = seconds
        self.milliseconds = milliseconds
        self.records = records
        bytes = records.reduce(0) { $0 + $1.byteCount }
    }

    public static func == (lhs: AuditEvent, rhs: AuditEvent) -> Bool {
        lhs.node == rhs.node && lhs.serial == rhs.serial && lhs.seconds == rhs.seconds && lhs.milliseconds == rhs.milliseconds && lhs.records == rhs.records
    }

    public var types: [String] { records.map(\.type) }
    /// Milliseconds since the epoch.
    public var time: Int64 { seconds &* 1_000 &+ Int64(milliseconds) }
}

/// Groups records into events by node, serial and time. Records of different events may
/// interleave. An event ends at `EOE`, at `PROCTITLE` (the kernel's last record of a syscall
/// event), when it is a single-record type (user-space messages), when it is older than
/// `maximumAge` against the record just added, or when more than `maximumPending` are open (the
/// oldest goes); `flush()` ends the rest. A record for an event already emitted is never
/// attached to another: it comes back as `.late` (the EOE that follows a PROCTITLE is absorbed).
///
/// Every operation is O(1) amortised: pending events sit in a dictionary and a queue in arrival
/// order (entries of events already ended are skipped when they reach the head).
public struct AuditAssembler: Sendable {
    public enum Output: Sendable, Equatable {
        case event(AuditEvent)
        /// A record whose event was already emitted (a PROCTITLE after EOE, say).
        case late(AuditRecord)
    }

    /// The kernel stamps every record of an event with the same time and serial; the time also
    /// tells apart events whose serials repeat (after a reboot, or from two nodes' logs merged).
    struct Key: Hashable, Sendable {
        let node: String?
        let serial: UInt64
        let time: Int64
    }

    /// Types that are a whole event by themselves: libauparse's rule over the type numbers
    /// (`isSingleRecordType`), applied to every name libaudit knows. User-space messages (`USER_*`,
    /// `CRED_*`, `DAEMON_*`, `SERVICE_*`, …) are; kernel records that accompany a syscall (`LOGIN`,
    /// `CONFIG_CHANGE`, `AVC`, …) are not — they share the serial of the SYSCALL that follows.
    public static let singleRecordTypes: Set<String> = Set((1_000..<3_000).compactMap { number in
        isSingleRecordType(number) ? AuditNames.recordTypeName(number) : nil
    })

    /// libauparse's `audit_is_last_record` less PROCTITLE and EOE (which end the event they belong
    /// to): AUDIT_USER (1005); after LOGIN (1006) and before the first kernel event type (1300):
    /// the user-space and daemon messages; AUDIT_KERNEL (2000); NetLabel's 1406–1419; from the
    /// first user-space anomaly (2100) on.
    public static func isSingleRecordType(_ number: Int) -> Bool {
        number == 1_005 || (number > 1_006 && number < 1_300) || number == 2_000 || (1_406...1_419).contains(number) || number >= 2_100
    }

    /// Milliseconds an event may wait for its end, measured against the time of the record just
    /// added (not the newest ever seen: one record from the future must not end every event).
    public let maximumAge: Int64
    /// The event the last record went to: records of one event mostly arrive together, so this
    /// one is kept out of the dictionary and most records cost no hashing.
    private var current: AuditEvent?
    private var currentKey = Key(node: nil, serial: 0, time: 0)
    /// The other pending events.
    private var pending: [Key: AuditEvent] = [:]
    /// Keys in arrival order from `head`; entries whose event already ended are skipped.
    private var order: [Key] = []
    private var head = 0
    /// The time of the record just added: the clock events age against.
    private var latest = Int64.min
    /// More open events than this and the oldest is ended (a flood of events that never end must
    /// not grow memory without bound).
    public static let maximumPending = 8_192
    /// An event holding more than this many bytes of records is ended (a real one — an execve at
    /// ARG_MAX, hex-encoded — stays well under), and all open events together at most
    /// `maximumPendingBytes`: crafted input cannot grow memory without bound.
    public static let maximumEventBytes = 8 << 20
    public static let maximumPendingBytes = 64 << 20
    private var pendingBytes = 0
    /// Events ended early because of `maximumPending`, `maximumEventBytes` or `maximumPendingBytes`.
    public private(set) var endedByLimit = 0
    /// Recently emitted keys, so a late record is reported instead of starting a new event: a
    /// direct-mapped table indexed by serial (mixed with the node's hash), so remembering costs
    /// one store and no hashing. It starts at 256 slots and grows fourfold as events are emitted,
    /// up to `rememberEmitted`; an event is forgotten only when a later one lands in its slot —
    /// for one node, after at least `rememberEmitted` more serials.
    private var emitted: [Key?] = []
    private var emittedCount = 0
    /// No key with a higher serial was ever emitted: newer records skip the lookup.
    private var highestEmitted: UInt64 = 0
    public static let rememberEmitted = 16_384
    private var lastNode: String?
    private var lastNodeHash: UInt64 = 0

    public init(maximumAgeMilliseconds: Int64 = 2_000) {
        maximumAge = max(0, maximumAgeMilliseconds)
    }

    public var pendingCount: Int { pending.count + (current == nil ? 0 : 1) }

    /// Adds one record; returns what it completed.
    public mutating func add(_ record: AuditRecord) -> [Output] {
        var output: [Output] = []
        add(record) { output.append($0) }
        return output
    }

    /// Adds one record and hands every completed event (and a late record) to `emit`, in order.
    public mutating func add(_ record: AuditRecord, emit: (Output) throws -> Void) rethrows {
        let time = record.time
        latest = time
        let ends = record.kind == .eoe || record.kind == .proctitle
        if current != nil, record.serial == currentKey.serial, time == currentKey.time, record.node == currentKey.node {
            current?.records.append(record)
            current?.bytes += record.byteCount
            pendingBytes += record.byteCount
            if ends {
                try emit(.event(finishCurrent()))
            } else if (current?.bytes ?? 0) > Self.maximumEventBytes {
                endedByLimit += 1
                try emit(.event(finishCurrent()))
            }
        } else {
            let key = Key(node: record.node, serial: record.serial, time: time)
            if let open = current { pending[currentKey] = open }
            current = nil
            if !pending.isEmpty, var event = pending.removeValue(forKey: key) {
                event.records.append(record)
                event.bytes += record.byteCount
                pendingBytes += record.byteCount
                current = event
                currentKey = key
                if ends {
                    try emit(.event(finishCurrent()))
                } else if event.bytes > Self.maximumEventBytes {
                    endedByLimit += 1
                    try emit(.event(finishCurrent()))
                }
            } else if record.serial <= highestEmitted, !emitted.isEmpty, emitted[slot(key)] == key {
                // The EOE after a PROCTITLE-ended event is expected and carries nothing.
                if record.kind != .eoe { try emit(.late(record)) }
            } else {
                var event = AuditEvent(node: record.node, serial: record.serial, seconds: record.seconds, milliseconds: record.milliseconds, records: [])
                event.records.reserveCapacity(8)
                event.records.append(record)
                event.bytes = record.byteCount
                // PROCTITLE is the last record of its event: one that comes first has lost the rest.
                if record.kind == .eoe || record.kind == .single || record.kind == .proctitle {
                    remember(key)
                    try emit(.event(event))
                } else {
                    current = event
                    currentKey = key
                    order.append(key)
                    pendingBytes += record.byteCount
                }
            }
        }
        try expire(emit: emit)
    }

    /// Ends every pending event (end of input, or the input went idle), oldest first.
    public mutating func flush() -> [AuditEvent] {
        var events: [AuditEvent] = []
        flush { events.append($0) }
        return events
    }

    public mutating func flush(emit: (AuditEvent) throws -> Void) rethrows {
        while head < order.count {
            let key = order[head]
            head += 1
            if let event = take(key) { try emit(event) }
        }
        order.removeAll(keepingCapacity: true)
        head = 0
    }

    /// Ends events older than `maximumAge` against the record just added, oldest first, and the
    /// oldest while more than `maximumPending` are open.
    private mutating func expire(emit: (Output) throws -> Void) rethrows {
        while head < order.count {
            let key = order[head]
            let time: Int64
            if let current, key == currentKey {
                time = current.time
            } else if !pending.isEmpty, let event = pending[key] {
                time = event.time
            } else {
                head += 1
                continue
            }
            // Too old — or too far ahead: an event from the future (a clock stepped back since)
            // must not hold up every event behind it.
            let stale = latest &- time > maximumAge || time &- latest > maximumAge
            guard stale || pendingCount > Self.maximumPending || pendingBytes > Self.maximumPendingBytes else { break }
            if !stale { endedByLimit += 1 }
            head += 1
            if let event = take(key) { try emit(.event(event)) }
        }
        // Compact the queue once its dead prefix dominates.
        if head > 1_024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    /// Removes a pending event (current or stashed) and remembers it as emitted.
    private mutating func take(_ key: Key) -> AuditEvent? {
        if let event = current, key == currentKey {
            current = nil
            remember(key)
            pendingBytes -= event.bytes
            return event
        }
        guard let event = pending.removeValue(forKey: key) else { return nil }
        remember(key)
        pendingBytes -= event.bytes
        return event
    }

    private mutating func finishCurrent() -> AuditEvent {
        let event = current ?? AuditEvent(node: currentKey.node, serial: currentKey.serial, seconds: currentKey.time / 1_000, milliseconds: Int(currentKey.time % 1_000), records: [])
        current = nil
        remember(currentKey)
        pendingBytes -= event.bytes
        return event
    }

    private mutating func remember(_ key: Key) {
        if key.serial > highestEmitted { highestEmitted = key.serial }
        if emittedCount >= emitted.count, emitted.count < Self.rememberEmitted {
            let old = emitted
            emitted = Array(repeating: nil, count: max(256, min(Self.rememberEmitted, emitted.count * 4)))
            for case let kept? in old { emitted[slot(kept)] = kept }
        }
        emittedCount += 1
        emitted[slot(key)] = key
    }

    private mutating func slot(_ key: Key) -> Int {
        var mixed = key.serial
        if let node = key.node {
            if node != lastNode {
                // FNV-1a over the node's bytes; remembered for the next record of the same node.
                var hash: UInt64 = 0xCBF2_9CE4_8422_2325
                for byte in node.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
                lastNode = node
                lastNodeHash = hash
            }
            mixed ^= lastNodeHash
        }
        return Int(truncatingIfNeeded: mixed) & (emitted.count - 1)
    }
}
