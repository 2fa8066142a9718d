/// Records of one event: same node, same serial.
public struct AuditEvent: Sendable, Equatable {
    public let node: String?
    public let serial: UInt64
    public let seconds: Int64
    public let milliseconds: Int
    /// In arrival order (EOE included when it came).
    public internal(set) var records: [AuditRecord]

    public var types: [String] { records.map(\.type) }
}

/// Groups records into events by node and serial. Records of different events may interleave.
/// An event ends at `EOE`, at `PROCTITLE` (the kernel's last record of a syscall event), when it is
/// a single-record type (user-space messages, logins), or when it is older than `maximumAge` against
/// the newest record seen; `flush()` ends the rest. A record for an event already emitted is never
/// attached to another: it comes back as `.late` (the EOE that follows a PROCTITLE is absorbed).
public struct AuditAssembler: Sendable {
    public enum Output: Sendable, Equatable {
        case event(AuditEvent)
        /// A record whose event was already emitted (a PROCTITLE after EOE, say).
        case late(AuditRecord)
    }

    struct Key: Hashable, Sendable {
        let node: String?
        let serial: UInt64
    }

    /// Types that are a whole event by themselves.
    public static let singleRecordTypes: Set<String> = [
        "USER_AUTH", "USER_ACCT", "USER_MGMT", "CRED_ACQ", "CRED_DISP", "CRED_REFR", "USER_START", "USER_END", "USER_LOGIN",
        "USER_LOGOUT", "USER_ERR", "USER_CMD", "USER_CHAUTHTOK", "USER_AVC", "USER_TTY", "LOGIN", "DAEMON_START", "DAEMON_END",
        "DAEMON_ABORT", "DAEMON_CONFIG", "DAEMON_ROTATE", "DAEMON_RESUME", "SERVICE_START", "SERVICE_STOP", "SYSTEM_BOOT",
        "SYSTEM_SHUTDOWN", "SYSTEM_RUNLEVEL", "ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP", "ANOM_LOGIN_FAILURES",
    ]

    /// Milliseconds an event may wait for its end, measured against the newest record's time.
    public let maximumAge: Int64
    private var pending: [Key: AuditEvent] = [:]
    /// Arrival order of pending keys (for age and idle flushes).
    private var order: [Key] = []
    private var newest: Int64 = 0
    /// Recently emitted keys, so a late record is reported instead of starting a new event.
    private var emitted: Set<Key> = []
    private var emittedOrder: [Key] = []
    private let rememberEmitted = 8_192

    public init(maximumAgeMilliseconds: Int64 = 2_000) {
        maximumAge = maximumAgeMilliseconds
    }

    public var pendingCount: Int { pending.count }

    public mutating func add(_ record: AuditRecord) -> [Output] {
        var output: [Output] = []
        let key = Key(node: record.node, serial: record.serial)
        let time = record.seconds * 1_000 + Int64(record.milliseconds)
        newest = max(newest, time)
        if pending[key] == nil, emitted.contains(key) {
            // The EOE after a PROCTITLE-ended event is expected and carries nothing.
            if record.type != "EOE" { output.append(.late(record)) }
        } else if var event = pending[key] {
            event.records.append(record)
            pending[key] = event
            if record.type == "EOE" || record.type == "PROCTITLE" { output.append(.event(finish(key))) }
        } else {
            let event = AuditEvent(node: record.node, serial: record.serial, seconds: record.seconds, milliseconds: record.milliseconds, records: [record])
            pending[key] = event
            order.append(key)
            if record.type == "EOE" || Self.singleRecordTypes.contains(record.type) { output.append(.event(finish(key))) }
        }
        // Events too old against the newest record.
        while let first = order.first, let event = pending[first], newest - (event.seconds * 1_000 + Int64(event.milliseconds)) > maximumAge {
            output.append(.event(finish(first)))
        }
        return output
    }

    /// Ends every pending event (end of input, or the input went idle), oldest first.
    public mutating func flush() -> [AuditEvent] {
        var events: [AuditEvent] = []
        while let first = order.first { events.append(finish(first)) }
        return events
    }

    private mutating func finish(_ key: Key) -> AuditEvent {
        let event = pending.removeValue(forKey: key)
        order.removeAll { $0 == key }
        if emitted.insert(key).inserted {
            emittedOrder.append(key)
            if emittedOrder.count > rememberEmitted {
                emitted.remove(emittedOrder.removeFirst())
            }
        }
        return event ?? AuditEvent(node: key.node, serial: key.serial, seconds: 0, milliseconds: 0, records: [])
    }
}
