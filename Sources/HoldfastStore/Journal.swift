public import FoundationEssentials
public import HoldfastCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the journal lives and how large it may grow.
public struct JournalConfiguration: Sendable {
    /// The state directory (default `/var/lib/holdfast`); created 0700 if missing.
    public var directory: String
    /// The database file name inside `directory`.
    public var fileName: String
    /// The cap on stored event bytes (JSON bodies). Past it, the oldest uploaded events go first.
    public var maximumEventBytes: Int
    /// The workstation every event is about: set on each appended event that names none.
    public var device: DeviceIdentity?

    public static let defaultDirectory = "/var/lib/holdfast"
    public static let defaultMaximumEventBytes = 256 << 20

    public init(
        directory: String = JournalConfiguration.defaultDirectory,
        fileName: String = "journal.sqlite",
        maximumEventBytes: Int = JournalConfiguration.defaultMaximumEventBytes,
        device: DeviceIdentity? = nil
    ) {
        self.directory = directory
        self.fileName = fileName
        self.maximumEventBytes = maximumEventBytes
        self.device = device
    }

    /// The database file's path.
    public var path: String { directory + "/" + fileName }
}

/// One stored event.
public struct JournalEntry: Sendable, Equatable {
    /// Monotonic id, never reused (SQLite AUTOINCREMENT), in commit order.
    public let id: Int64
    /// The event's stable UUID (`metadata.uid`).
    public let uuid: UUID
    public let time: Date
    public let kind: String
    public let uploaded: Bool
    /// The event's JSON, exactly as stored and as it will be uploaded.
    public let body: [UInt8]

    /// The decoded event.
    public func event() throws(StoreError) -> Event {
        do {
            return try EventCoding.decode(body)
        } catch {
            throw StoreError(.encoding, "event \(id) does not decode: \(error)")
        }
    }
}

/// Counters a status line or a posture check reads.
public struct JournalStats: Sendable, Equatable, Codable {
    /// Events stored now.
    public var events: Int64
    /// Bytes of stored event JSON.
    public var eventBytes: Int64
    /// Stored events not yet acknowledged by the broker.
    public var pendingUpload: Int64
    /// The newest event id (0 when none was ever written).
    public var lastID: Int64
    /// Uploaded events removed to stay under the cap (harmless).
    public var evictedUploaded: Int64
    /// Un-uploaded events removed to stay under the cap (a loss, reported as an event and a finding).
    public var lostUnuploaded: Int64
    /// The schema version of the database.
    public var schemaVersion: Int64

    enum CodingKeys: String, CodingKey {
        case events, eventBytes = "event_bytes", pendingUpload = "pending_upload", lastID = "last_id"
        case evictedUploaded = "evicted_uploaded", lostUnuploaded = "lost_unuploaded"
        case schemaVersion = "schema_version"
    }
}

/// The agent's durable memory: an append-only event journal and a key/value state table in one
/// SQLite database (WAL mode, `synchronous=FULL`, files 0600 in a 0700 directory).
///
/// Nothing is acknowledged upstream before it is committed here. The journal is bounded: when
/// stored events pass `maximumEventBytes`, the oldest *uploaded* events are removed first; if
/// un-uploaded events must go, their loss is itself journaled (`journal.overflow`) and recorded in
/// state (`journal.loss`) for the posture report — never silent.
public final class Journal: Sendable {
    /// The schema versions this build understands, applied in order.
    static let migrations: [String] = [
        // 1: events, state, counters kept by triggers, append-only guard.
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            uuid TEXT NOT NULL UNIQUE,
            time_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            class_uid INTEGER NOT NULL,
            severity_id INTEGER NOT NULL,
            body BLOB NOT NULL,
            uploaded INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX events_pending ON events(id) WHERE uploaded = 0;
        CREATE TABLE state (
            key TEXT PRIMARY KEY,
            value BLOB NOT NULL,
            updated_ms INTEGER NOT NULL
        );
        CREATE TABLE journal_meta (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            event_bytes INTEGER NOT NULL,
            events INTEGER NOT NULL,
            evicted_uploaded INTEGER NOT NULL,
            lost_unuploaded INTEGER NOT NULL
        );
        INSERT INTO journal_meta VALUES (1, 0, 0, 0, 0);
        CREATE TRIGGER events_count_insert AFTER INSERT ON events BEGIN
            UPDATE journal_meta SET event_bytes = event_bytes + length(NEW.body), events = events + 1;
        END;
        CREATE TRIGGER events_count_delete AFTER DELETE ON events BEGIN
            UPDATE journal_meta SET event_bytes = event_bytes - length(OLD.body), events = events - 1;
        END;
        CREATE TRIGGER events_append_only BEFORE UPDATE OF id, uuid, time_ms, kind, class_uid, severity_id, body ON events
        BEGIN
            SELECT RAISE(ABORT, 'journal events are append-only');
        END;
        """,
    ]

    /// The state key holding the record of events lost to the size cap.
    public static let lossStateKey = "journal.loss"

    public let configuration: JournalConfiguration
    private let clock: any TimeSource
    private let connection: Mutex<Connection>

    /// Opens the journal, checks its files are private, and migrates it. With `create` (the
    /// daemon's case) a missing directory and database are made; without it (read-only tools) a
    /// missing journal is an error, so a mistyped path never passes for an empty journal.
    public init(configuration: JournalConfiguration, clock: any TimeSource = SystemTimeSource(), create: Bool = true) throws(StoreError) {
        self.configuration = configuration
        self.clock = clock
        if create {
            do {
                try SecureFile.ensurePrivateDirectory(configuration.directory)
            } catch {
                throw StoreError(.insecureFile, error.description)
            }
        } else {
            var info = stat()
            guard lstat(configuration.path, &info) == 0 else {
                throw StoreError(.notFound, "no journal at \(configuration.path)")
            }
            do {
                try SecureFile.checkPrivateDirectory(configuration.directory)
            } catch {
                throw StoreError(.insecureFile, error.description)
            }
        }
        try Self.createOrCheckFiles(configuration.path)
        let connection = try Connection(path: configuration.path)
        try Self.configure(connection)
        try Self.migrate(connection)
        self.connection = Mutex(connection)
    }

    static func createOrCheckFiles(_ path: String) throws(StoreError) {
        // Create the database file ourselves so it is 0600 from the first byte; SQLite gives the
        // -wal and -shm files the database file's mode.
        let descriptor = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if descriptor < 0 {
            throw StoreError(.insecureFile, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        close(descriptor)
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            guard lstat(file, &info) == 0 else { continue }
            if info.st_mode & S_IFMT != S_IFREG {
                throw StoreError(.insecureFile, "\(file) is not a regular file")
            }
            if info.st_uid != geteuid() {
                throw StoreError(.insecureFile, "\(file) is owned by uid \(info.st_uid), not uid \(geteuid())")
            }
            if info.st_mode & 0o077 != 0 {
                throw StoreError(
                    .insecureFile,
                    "\(file) has mode \(String(info.st_mode & 0o777, radix: 8)); it must be 0600"
                )
            }
        }
    }

    static func configure(_ connection: Connection) throws(StoreError) {
        // auto_vacuum only takes effect before the first table exists.
        if try connection.int64("PRAGMA user_version") == 0 {
            try connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        }
        let mode = try connection.strings("PRAGMA journal_mode = WAL")
        guard mode.first == "wal" else {
            throw StoreError(.sqlite, "cannot switch \(connection.path) to WAL mode (got \(mode.first ?? "nothing"))")
        }
        // FULL: a commit survives power loss, not only a crash of the process.
        try connection.execute("PRAGMA synchronous = FULL")
        try connection.execute("PRAGMA foreign_keys = ON")
        try connection.execute("PRAGMA journal_size_limit = 16777216")
    }

    private static func migrate(_ connection: Connection) throws(StoreError) {
        // Read the version inside the write transaction, so two processes opening a new journal at
        // once cannot both run the same migration.
        try connection.transaction { () throws(StoreError) in
            let version = try connection.int64("PRAGMA user_version")
            guard version <= Int64(migrations.count) else {
                throw StoreError(
                    .schemaTooNew,
                    "\(connection.path) has schema version \(version); this Holdfast knows up to \(migrations.count)"
                )
            }
            for index in Int(version)..<migrations.count {
                try connection.execute(migrations[index])
                try connection.execute("PRAGMA user_version = \(index + 1)")
            }
        }
    }

    /// `PRAGMA integrity_check` on a journal file without opening it as a journal: works on a
    /// damaged file that `init` would refuse, and reports what is wrong instead of failing.
    public static func integrityCheck(path: String) -> [String] {
        var info = stat()
        guard lstat(path, &info) == 0 else { return ["no journal at \(path)"] }
        do {
            let connection = try Connection(path: path, readOnly: true)
            return try connection.strings("PRAGMA integrity_check")
        } catch {
            return [error.description]
        }
    }

    // MARK: Events

    /// Appends one event and returns its id. Appending an event whose UUID is already stored
    /// returns the stored id and changes nothing (retries are idempotent).
    @discardableResult
    public func append(_ event: Event) throws(StoreError) -> Int64 {
        let ids = try append(contentsOf: [event])
        return ids[0]
    }

    /// Appends events in one transaction (one fsync) and returns their ids in order.
    @discardableResult
    public func append(contentsOf events: [Event]) throws(StoreError) -> [Int64] {
        let device = configuration.device
        let events = events.map { event in
            guard event.device == nil, let device else { return event }
            var stamped = event
            stamped.device = device
            return stamped
        }
        let encoded: [(Event, [UInt8])]
        do {
            encoded = try events.map { ($0, try EventCoding.encode($0)) }
        } catch {
            throw StoreError(.encoding, "an event cannot be encoded: \(error)")
        }
        for (event, _) in encoded where !EventCoding.isRepresentable(event.time) {
            throw StoreError(.encoding, "event \(event.id) has a time outside the years 1970–9999")
        }
        let maximum = configuration.maximumEventBytes
        let now = clock.now()
        return try connection.withLock { (connection) throws(StoreError) -> [Int64] in
            try connection.transaction { () throws(StoreError) -> [Int64] in
                var ids: [Int64] = []
                var firstNew: Int64?
                for (event, body) in encoded {
                    let (id, inserted) = try Self.insert(event, body: body, into: connection)
                    ids.append(id)
                    if inserted, firstNew == nil { firstNew = id }
                }
                if let firstNew {
                    try Self.enforceCap(maximum, protectingFrom: firstNew, now: now, in: connection)
                }
                return ids
            }
        }
    }

    /// Inserts an event unless its UUID is stored already; returns its id and whether it is new.
    /// The lookup comes first so a repeated append never consumes an id (AUTOINCREMENT would).
    private static func insert(_ event: Event, body: [UInt8], into connection: Connection) throws(StoreError) -> (Int64, Bool) {
        let uuid = event.id.uuidString.lowercased()
        let existing = try connection.withStatement("SELECT id FROM events WHERE uuid = ?") { (select) throws(StoreError) -> Int64? in
            select.bind(1, uuid)
            return try select.step() ? select.int64(0) : nil
        }
        if let existing { return (existing, false) }
        let id = try connection.withStatement(
            "INSERT INTO events (uuid, time_ms, kind, class_uid, severity_id, body) VALUES (?, ?, ?, ?, ?, ?) RETURNING id"
        ) { (insert) throws(StoreError) -> Int64 in
            insert.bind(1, uuid)
            insert.bind(2, EventCoding.milliseconds(event.time))
            insert.bind(3, event.kind)
            insert.bind(4, Int64(event.eventClass.uid))
            insert.bind(5, Int64(event.severity.rawValue))
            insert.bind(6, body)
            guard try insert.step() else { throw StoreError(.sqlite, "insert returned no id") }
            let id = insert.int64(0)
            try insert.run()
            return id
        }
        return (id, true)
    }

    /// Brings stored bytes back under 90% of the cap: oldest uploaded events first, then — as a
    /// reported loss — the oldest un-uploaded ones older than this batch.
    private static func enforceCap(
        _ maximum: Int, protectingFrom firstNewID: Int64, now: Date, in connection: Connection
    ) throws(StoreError) {
        var bytes = try connection.int64("SELECT event_bytes FROM journal_meta")
        guard bytes > Int64(maximum) else { return }
        let target = Int64(maximum) - Int64(maximum) / 10

        let evicted = try evict(uploaded: true, before: firstNewID, bytes: &bytes, target: target, in: connection)
        if evicted.count > 0 {
            try connection.execute("UPDATE journal_meta SET evicted_uploaded = evicted_uploaded + \(evicted.count)")
        }
        guard bytes > target else { return }

        let lost = try evict(uploaded: false, before: firstNewID, bytes: &bytes, target: target, in: connection)
        guard lost.count > 0 else { return }
        try connection.execute("UPDATE journal_meta SET lost_unuploaded = lost_unuploaded + \(lost.count)")
        let totalLost = try connection.int64("SELECT lost_unuploaded FROM journal_meta")
        let details: [String: JSONValue] = [
            "lost_events": .int(Int64(lost.count)),
            "first_lost_id": .int(lost.firstID),
            "last_lost_id": .int(lost.lastID),
            "oldest_lost_time_ms": .int(lost.oldestTime),
            "newest_lost_time_ms": .int(lost.newestTime),
            "cap_bytes": .int(Int64(maximum)),
            "total_lost_events": .int(totalLost),
        ]
        let event = Event(
            kind: "journal.overflow",
            eventClass: .eventLogActivity,
            activityID: 2,
            activityName: "Delete",
            time: now,
            severity: .high,
            status: .failure,
            message: "journal full: \(lost.count) events were removed before they were uploaded (ids \(lost.firstID)–\(lost.lastID))",
            details: details
        )
        let body: [UInt8]
        do {
            body = try EventCoding.encode(event)
        } catch {
            throw StoreError(.encoding, "the overflow event cannot be encoded: \(error)")
        }
        _ = try insert(event, body: body, into: connection)
        do {
            let record = try JSONEncoder().encode(JSONValue.object(details.merging(["at_ms": .int(EventCoding.milliseconds(now))]) { $1 }))
            try setState(lossStateKey, Array(record), now: now, in: connection)
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(.encoding, "the loss record cannot be encoded: \(error)")
        }
    }

    private struct Evicted {
        var count = 0
        var firstID: Int64 = 0
        var lastID: Int64 = 0
        var oldestTime: Int64 = 0
        var newestTime: Int64 = 0
    }

    private static func evict(
        uploaded: Bool, before limitID: Int64, bytes: inout Int64, target: Int64, in connection: Connection
    ) throws(StoreError) -> Evicted {
        var remaining = bytes
        let evicted = try connection.withStatement(
            "SELECT id, length(body), time_ms FROM events WHERE uploaded = ? AND id < ? ORDER BY id"
        ) { (select) throws(StoreError) -> Evicted in
            select.bind(1, uploaded ? 1 : 0)
            select.bind(2, limitID)
            var evicted = Evicted()
            while remaining > target, try select.step() {
                let id = select.int64(0)
                if evicted.count == 0 {
                    evicted.firstID = id
                    evicted.oldestTime = select.int64(2)
                }
                evicted.lastID = id
                evicted.newestTime = select.int64(2)
                evicted.count += 1
                remaining -= select.int64(1)
            }
            return evicted
        }
        guard evicted.count > 0 else { return evicted }
        try connection.withStatement("DELETE FROM events WHERE uploaded = ? AND id BETWEEN ? AND ?") { (delete) throws(StoreError) in
            delete.bind(1, uploaded ? 1 : 0)
            delete.bind(2, evicted.firstID)
            delete.bind(3, evicted.lastID)
            try delete.run()
        }
        bytes = remaining
        return evicted
    }

    /// Events with id greater than `id`, oldest first.
    public func entries(after id: Int64 = 0, limit: Int = 1_000) throws(StoreError) -> [JournalEntry] {
        try query("SELECT id, uuid, time_ms, kind, uploaded, body FROM events WHERE id > ? ORDER BY id LIMIT ?", id, limit)
    }

    /// The newest `limit` events, oldest first.
    public func tail(_ limit: Int) throws(StoreError) -> [JournalEntry] {
        try query(
            "SELECT * FROM (SELECT id, uuid, time_ms, kind, uploaded, body FROM events WHERE id > ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            0, limit
        )
    }

    /// The oldest events not yet acknowledged by the broker, after `id`.
    public func pendingUpload(after id: Int64 = 0, limit: Int = 500) throws(StoreError) -> [JournalEntry] {
        try query(
            "SELECT id, uuid, time_ms, kind, uploaded, body FROM events WHERE uploaded = 0 AND id > ? ORDER BY id LIMIT ?",
            id, limit
        )
    }

    private func query(_ sql: String, _ after: Int64, _ limit: Int) throws(StoreError) -> [JournalEntry] {
        try connection.withLock { (connection) throws(StoreError) -> [JournalEntry] in
            try connection.withStatement(sql) { (statement) throws(StoreError) -> [JournalEntry] in
                statement.bind(1, after)
                statement.bind(2, Int64(limit))
                var entries: [JournalEntry] = []
                while try statement.step() {
                    let uuidText = statement.text(1) ?? ""
                    guard let uuid = UUID(uuidString: uuidText) else {
                        throw StoreError(.encoding, "event \(statement.int64(0)) has a malformed uuid \(uuidText)")
                    }
                    entries.append(
                        JournalEntry(
                            id: statement.int64(0),
                            uuid: uuid,
                            time: Date(timeIntervalSince1970: Double(statement.int64(2)) / 1000),
                            kind: statement.text(3) ?? "",
                            uploaded: statement.int64(4) != 0,
                            body: statement.blob(5)
                        )
                    )
                }
                return entries
            }
        }
    }

    /// Marks events as acknowledged by the broker; returns how many changed state.
    @discardableResult
    public func markUploaded(_ ids: [Int64]) throws(StoreError) -> Int {
        guard !ids.isEmpty else { return 0 }
        return try connection.withLock { (connection) throws(StoreError) -> Int in
            try connection.transaction { () throws(StoreError) -> Int in
                var changed = 0
                for id in ids {
                    changed += try connection.withStatement("UPDATE events SET uploaded = 1 WHERE id = ? AND uploaded = 0") {
                        (update) throws(StoreError) -> Int in
                        update.bind(1, id)
                        try update.run()
                        return update.changes
                    }
                }
                return changed
            }
        }
    }

    /// Counters for status and posture.
    public func stats() throws(StoreError) -> JournalStats {
        try connection.withLock { (connection) throws(StoreError) -> JournalStats in
            let schemaVersion = try connection.int64("PRAGMA user_version")
            return try connection.withStatement(
                "SELECT events, event_bytes, evicted_uploaded, lost_unuploaded, "
                    + "(SELECT count(*) FROM events WHERE uploaded = 0), "
                    + "(SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events') FROM journal_meta"
            ) { (meta) throws(StoreError) -> JournalStats in
                guard try meta.step() else { throw StoreError(.sqlite, "journal_meta is empty") }
                return JournalStats(
                    events: meta.int64(0),
                    eventBytes: meta.int64(1),
                    pendingUpload: meta.int64(4),
                    lastID: meta.int64(5),
                    evictedUploaded: meta.int64(2),
                    lostUnuploaded: meta.int64(3),
                    schemaVersion: schemaVersion
                )
            }
        }
    }

    /// `PRAGMA integrity_check`: `["ok"]` for a sound database, else SQLite's findings.
    public func integrityCheck() throws(StoreError) -> [String] {
        try connection.withLock { (connection) throws(StoreError) -> [String] in
            try connection.strings("PRAGMA integrity_check")
        }
    }

    /// Returns free pages to the file system after evictions.
    public func compact() throws(StoreError) {
        try connection.withLock { (connection) throws(StoreError) in
            try connection.execute("PRAGMA incremental_vacuum")
            try connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    // MARK: State

    /// The stored value for `key`, or nil.
    public func state(_ key: String) throws(StoreError) -> [UInt8]? {
        try connection.withLock { (connection) throws(StoreError) -> [UInt8]? in
            try connection.withStatement("SELECT value FROM state WHERE key = ?") { (select) throws(StoreError) -> [UInt8]? in
                select.bind(1, key)
                return try select.step() ? select.blob(0) : nil
            }
        }
    }

    /// Stores `value` under `key`, replacing any previous value, in its own transaction.
    public func setState(_ key: String, _ value: [UInt8]) throws(StoreError) {
        let now = clock.now()
        try connection.withLock { (connection) throws(StoreError) in
            try connection.transaction { () throws(StoreError) in
                try Self.setState(key, value, now: now, in: connection)
            }
        }
    }

    /// Removes `key`; returns whether it was there.
    @discardableResult
    public func removeState(_ key: String) throws(StoreError) -> Bool {
        try connection.withLock { (connection) throws(StoreError) -> Bool in
            try connection.withStatement("DELETE FROM state WHERE key = ?") { (delete) throws(StoreError) -> Bool in
                delete.bind(1, key)
                try delete.run()
                return delete.changes > 0
            }
        }
    }

    /// Every state key, sorted.
    public func stateKeys() throws(StoreError) -> [String] {
        try connection.withLock { (connection) throws(StoreError) -> [String] in
            try connection.strings("SELECT key FROM state ORDER BY key")
        }
    }

    /// Decodes a JSON state value.
    public func state<Value: Decodable>(_ key: String, as type: Value.Type) throws(StoreError) -> Value? {
        guard let bytes = try state(key) else { return nil }
        do {
            return try JSONDecoder().decode(Value.self, from: Data(bytes))
        } catch {
            throw StoreError(.encoding, "state \(key) does not decode as \(Value.self): \(error)")
        }
    }

    /// Encodes a value as JSON and stores it.
    public func setState(_ key: String, encoding value: some Encodable) throws(StoreError) {
        let bytes: Data
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            bytes = try encoder.encode(value)
        } catch {
            throw StoreError(.encoding, "state \(key) cannot be encoded: \(error)")
        }
        try setState(key, Array(bytes))
    }

    private static func setState(_ key: String, _ value: [UInt8], now: Date, in connection: Connection) throws(StoreError) {
        try connection.withStatement(
            "INSERT INTO state (key, value, updated_ms) VALUES (?, ?, ?) "
                + "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms"
        ) { (upsert) throws(StoreError) in
            upsert.bind(1, key)
            upsert.bind(2, value)
            upsert.bind(3, EventCoding.milliseconds(now))
            try upsert.run()
        }
    }
}
