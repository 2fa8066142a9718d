import HoldfastCore
import Synchronization

/// What the broker keeps: named admins, one-time enrollment tokens, enrolled devices, attestation
/// challenges and the admin audit trail. A protocol so PostgreSQL can stand where SQLite does;
/// every operation that must not happen twice (a token used, a nonce spent) is one conditional
/// write, so two broker processes over one database cannot both win.
public protocol BrokerStorage: Sendable {
    /// Adds an admin; false when the name exists.
    func addAdmin(name: String, tokenHash: [UInt8], at time: Int64) throws(StoreError) -> Bool
    /// The admin whose token hashes to this, if any.
    func admin(tokenHash: [UInt8]) throws(StoreError) -> String?
    /// How many admins exist (the first one is added without a token: the bootstrap).
    func adminCount() throws(StoreError) -> Int
    /// Adds the first admin, only while there is none, in one statement: of two racing
    /// bootstraps exactly one succeeds.
    func bootstrapAdmin(name: String, tokenHash: [UInt8], at time: Int64) throws(StoreError) -> Bool
    /// Records what an admin did (every admin verb).
    func recordAdminAction(admin: String, verb: String, detail: String, at time: Int64) throws(StoreError)
    /// Stores a new enrollment token (only its hash).
    func addEnrollmentToken(id: String, tokenHash: [UInt8], label: String, expires: Int64, createdBy: String, at time: Int64) throws(StoreError)
    /// Spends a token for a device: exactly one caller ever gets `.accepted`.
    func consumeEnrollmentToken(tokenHash: [UInt8], device: String, at time: Int64) throws(StoreError) -> TokenOutcome
    /// Enrolls a device; false when the id or the key is enrolled already.
    func addDevice(_ device: EnrolledDevice) throws(StoreError) -> Bool
    /// Enrollment in one transaction: a key enrolled now is refused without spending the token;
    /// otherwise the token is spent and the device added (a removed device's key may enroll again,
    /// as a new device). Exactly one caller per token gets `.accepted`.
    func enroll(_ device: EnrolledDevice, tokenHash: [UInt8]) throws(StoreError) -> EnrollOutcome
    /// Challenges issued to a device that are neither spent nor expired.
    func outstandingNonces(device: String, at time: Int64) throws(StoreError) -> Int
    /// Stores a challenge unless the device holds `limit` open ones at `time` already (false
    /// then): the count and the insert in one transaction, so concurrent requests cannot pass
    /// the limit together.
    func addNonce(_ nonce: String, device: String, expires: Int64, openAt time: Int64, limit: Int) throws(StoreError) -> Bool
    func device(id: String) throws(StoreError) -> EnrolledDevice?
    /// Unenrolls: the device's key is no longer accepted. False when there was no such device.
    func removeDevice(id: String, at time: Int64) throws(StoreError) -> Bool
    /// Stores a challenge for a device.
    func addNonce(_ nonce: String, device: String, expires: Int64) throws(StoreError)
    /// Spends a challenge: exactly one report per nonce, from its device, before it expires.
    func consumeNonce(_ nonce: String, device: String, at time: Int64) throws(StoreError) -> NonceOutcome

    /// Every device ever enrolled (removed ones too), oldest first.
    func devices() throws(StoreError) -> [EnrolledDevice]
    /// Records an accepted attestation: the report's payload as received, and the decision then.
    func recordAttestation(_ attestation: Attestation) throws(StoreError)
    /// Spends the report's challenge and, only when that is accepted, records the attestation
    /// and its trail entry: one transaction (no spent challenge without its attestation).
    func recordAttestation(_ attestation: Attestation, spending nonce: String, log entry: BrokerLogEntry) throws(StoreError) -> NonceOutcome
    /// The device's latest accepted attestation.
    func latestAttestation(device: String) throws(StoreError) -> Attestation?
    /// Notes that the device called in (any authenticated request).
    func markSeen(device: String, at time: Int64) throws(StoreError)
    /// Stores the device's latest heartbeat (and counts it as contact).
    func recordHeartbeat(device: String, at time: Int64, health: String) throws(StoreError)

    /// Stores a new version of a versioned document (the compliance policy, the agents' signed
    /// policy); false when `version` exists already (another admin won the race: re-read, retry).
    func addDocument(_ document: VersionedDocument) throws(StoreError) -> Bool
    /// The latest version of a kind of document.
    func latestDocument(kind: DocumentKind) throws(StoreError) -> VersionedDocument?
    /// Only the latest version number (cheap: callers cache the parsed document by it).
    func latestVersion(kind: DocumentKind) throws(StoreError) -> Int64?
    /// What a device said about the agent policy version it was sent.
    func acknowledgePolicy(device: String, version: Int64, status: String, detail: String, at time: Int64) throws(StoreError)

    /// Stores a batch of a device's events in one transaction; an event whose uuid the device sent
    /// before is counted as a duplicate and not stored again (uploads are retried).
    func storeEvents(_ events: [StoredEvent], device: String, at time: Int64) throws(StoreError) -> (stored: Int, duplicates: Int)
    /// The same, returning the events that were new; `alert` turns a new event into an alert
    /// candidate, recorded in the same transaction (an alert is never lost between the two).
    func storeNewEvents(_ events: [StoredEvent], device: String, at time: Int64, alertWindow: Int64, alert: @Sendable (StoredEvent) -> AlertCandidate?) throws(StoreError) -> [StoredEvent]
    /// Folds an alert candidate into the open alert with the same device, user and kind seen
    /// within `window` seconds (count + 1, highest score and severity kept), or opens a new one.
    /// Returns the alert's id.
    func recordAlert(_ candidate: AlertCandidate, window: Int64) throws(StoreError) -> Int64
    /// Open alerts (or all), highest risk first.
    func alerts(includeClosed: Bool, limit: Int) throws(StoreError) -> [Alert]
    /// Closes an open alert with the admin's name and note; false when there is no such open alert.
    func acknowledgeAlert(id: Int64, admin: String, note: String, at time: Int64) throws(StoreError) -> Bool
    /// Received events, newest first (optionally of one device, one kind).
    func events(device: String?, kind: String?, limit: Int) throws(StoreError) -> [StoredEvent]
    /// How many events a device uploaded (of a kind).
    func eventCount(device: String, kind: String?) throws(StoreError) -> Int

    /// The broker's own audit trail of what devices did and what was refused.
    func log(_ entry: BrokerLogEntry) throws(StoreError)
    /// The newest entries, newest first, optionally for one device.
    func logEntries(device: String?, limit: Int) throws(StoreError) -> [BrokerLogEntry]

    // Remote lockdown (BrokerLockdownStorage.swift).
    /// The highest sequence queued for a device (0: none).
    func latestCommandSequence(device: String) throws(StoreError) -> Int64
    /// Queues a signed command under its sequence; false when that sequence is taken (another
    /// admin queued one at the same moment: take the next and sign again).
    func addCommand(_ command: QueuedCommand) throws(StoreError) -> Bool
    /// A device's commands after `sequence`, oldest first.
    func commands(device: String, after sequence: Int64, limit: Int) throws(StoreError) -> [QueuedCommand]
    /// A device's latest commands, newest first (what `device ID` shows).
    func recentCommands(device: String, limit: Int) throws(StoreError) -> [QueuedCommand]
    /// What the agent made of a command: `applied` or `refused` (with why); only a queued command
    /// changes, and only once. True when it changed.
    func acknowledgeCommand(device: String, sequence: Int64, status: String, detail: String, at time: Int64) throws(StoreError) -> Bool
    /// Every command row after `row` as (device, highest sequence), and the newest row: one query
    /// tells the broker which held polls have news.
    func commandSequences(afterRow row: Int64) throws(StoreError) -> (row: Int64, latest: [String: Int64])
    /// The lockdown state the agent reports (its scopes in force, JSON), and when.
    func recordLockdownState(device: String, state: String, at time: Int64) throws(StoreError)
    /// The device's break-glass secret; with `orSet`, the given one is kept first when it has none
    /// (devices enrolled before break-glass). Nil for no such device.
    func breakglassSecret(device: String, orSet candidate: [UInt8]?) throws(StoreError) -> [UInt8]?
    /// Records a break-glass code made for a device (its digest, never the code).
    func recordBreakglassCode(_ code: IssuedBreakglassCode) throws(StoreError)
    /// A device's codes, newest first.
    func breakglassCodes(device: String, limit: Int) throws(StoreError) -> [IssuedBreakglassCode]

    // Just-in-time exceptions (BrokerRequestStorage.swift).
    /// Keeps a device's request, unless it has `limit` pending already (received within
    /// `shelfLife` seconds); the same request id sent again is the one stored before. Nil when
    /// over the limit.
    func addRequest(_ request: StoredRequest, pendingLimit limit: Int, shelfLife: Int64) throws(StoreError) -> (number: Int64, new: Bool)?
    func request(number: Int64) throws(StoreError) -> StoredRequest?
    /// Requests newest first: with `statuses`, only those; with `device`, only its.
    func requests(statuses: [String]?, device: String?, limit: Int) throws(StoreError) -> [StoredRequest]
    /// What needs an approver, newest first: requests waiting for a decision, and approvals the
    /// device refused (filtered before the limit: approved rows pile up, these must not drop out).
    func requestsNeedingAttention(device: String?, limit: Int) throws(StoreError) -> [StoredRequest]
    /// Decides a request whose status is `from` and queues the command that carries the decision,
    /// with its trail entry and the admin's action, in one transaction: two approvers racing
    /// decide it once, and no decision is queued without its record.
    func decideRequest(
        number: Int64, from: String, to status: String, by admin: String, note: String, until: Int64?, command: QueuedCommand, trail: BrokerLogEntry,
        adminAction: String, at time: Int64
    ) throws(StoreError) -> DecisionOutcome

    // Offboarding (BrokerOffboardingStorage.swift).
    /// Offboards (`record.action == "offboard"`) or reinstates a user, and queues a signed command
    /// for every enrolled device at its next sequence, in one transaction: every device or none.
    /// An offboarding also denies the user's pending requests and marks their approvals revoked
    /// (`requestNote` says why). `.already` when the user is in that state.
    func setOffboarded(_ record: OffboardingRecord, sign: CommandSigner, requestNote: String) throws(StoreError) -> OffboardingOutcome
    /// The users offboarded now (their latest record is an offboarding), oldest first.
    func offboardedUsers() throws(StoreError) -> [OffboardingRecord]
    /// Every offboarding and reinstatement of a user, oldest first.
    func offboardingHistory(user: String) throws(StoreError) -> [OffboardingRecord]
    /// A number that grows with every offboarding or reinstatement (the cache's key).
    func offboardingChange() throws(StoreError) -> Int64
    /// Every command about a user, by device and sequence.
    func userCommands(user: String) throws(StoreError) -> [QueuedCommand]
    /// Sends the latest word on a user (offboard or reinstate) again, signed afresh, to every
    /// enrolled device that has none applied or queued (none sent, or refused); nil when the
    /// user was never offboarded.
    func resendUserCommand(user: String, by admin: String, at time: Int64, sign: CommandSigner) throws(StoreError) -> (record: OffboardingRecord, devices: Int)?
    /// For a device enrolled now: an offboarding command for every user offboarded now that it
    /// has none for yet, at its next sequences. How many were queued.
    func queueOffboardings(device: String, sign: @Sendable (_ user: OffboardingRecord, _ sequence: Int64) throws(StoreError) -> QueuedCommand) throws(StoreError) -> Int

    // The access review (BrokerReviewStorage.swift).
    /// Per device and value at `jsonPath` in the uploaded events of `kind` (a rule id, an
    /// exception id), the newest event's time (ms).
    func lastUses(kind: String, jsonPath: String) throws(StoreError) -> [ReviewUse]
    /// Uploaded events of `kind` from `sinceMilliseconds` on, newest first, at most `limit`.
    func eventBodies(kind: String, sinceMilliseconds: Int64, limit: Int) throws(StoreError) -> [(device: String, timeMilliseconds: Int64, body: String)]
    /// Break-glass codes whose window has not ended at `time`, oldest first.
    func openBreakglassCodes(at time: Int64) throws(StoreError) -> [IssuedBreakglassCode]
}

/// An event a device uploaded, as the broker keeps it.
public struct StoredEvent: Sendable, Equatable {
    public var device: String
    public var uuid: String
    /// The event's own time (milliseconds since 1970).
    public var timeMilliseconds: Int64
    public var kind: String
    public var severity: Int64
    /// The event's JSON.
    public var body: String
    public var receivedAt: Int64

    public init(device: String, uuid: String, timeMilliseconds: Int64, kind: String, severity: Int64, body: String, receivedAt: Int64 = 0) {
        self.device = device
        self.uuid = uuid
        self.timeMilliseconds = timeMilliseconds
        self.kind = kind
        self.severity = severity
        self.body = body
        self.receivedAt = receivedAt
    }
}

/// One event that deserves a person's attention, before deduplication.
public struct AlertCandidate: Sendable, Equatable {
    public var device: String
    public var user: String
    public var kind: String
    /// Milliseconds since 1970 (the event's own time).
    public var time: Int64
    public var severity: Int64
    public var score: Int64
    public var summary: String
    public var eventUUID: String

    public init(device: String, user: String, kind: String, time: Int64, severity: Int64, score: Int64, summary: String, eventUUID: String) {
        self.device = device
        self.user = user
        self.kind = kind
        self.time = time
        self.severity = severity
        self.score = score
        self.summary = summary
        self.eventUUID = eventUUID
    }
}

/// A deduplicated alert.
public struct Alert: Sendable, Equatable {
    public var id: Int64
    public var device: String
    public var user: String
    public var kind: String
    public var firstSeen: Int64
    public var lastSeen: Int64
    public var count: Int64
    public var severity: Int64
    public var score: Int64
    public var summary: String
    public var eventUUID: String
    /// `open` or `acknowledged`.
    public var status: String
    public var acknowledgedBy: String?
    public var acknowledgedAt: Int64?
    public var note: String?
}

/// An accepted attestation as stored.
public struct Attestation: Sendable, Equatable {
    public var device: String
    public var at: Int64
    /// The report payload (JSON text) exactly as signed by the device.
    public var report: String
    /// `allow`, `warn` or `block` when it was evaluated.
    public var decision: String
    /// The compliance policy version it was evaluated under (nil: none set).
    public var policyVersion: Int64?
    public var user: String?
    /// When each failing check was first seen failing (JSON object id → seconds), for grace periods.
    public var firstFailures: String
    /// The storage's row id (0 before it is stored): tells two attestations in one second apart.
    public var sequence: Int64 = 0

    public init(device: String, at: Int64, report: String, decision: String, policyVersion: Int64?, user: String?, firstFailures: String = "{}") {
        self.firstFailures = firstFailures
        self.device = device
        self.at = at
        self.report = report
        self.decision = decision
        self.policyVersion = policyVersion
        self.user = user
    }
}

/// Kinds of versioned documents.
public enum DocumentKind: String, Sendable, Equatable {
    /// The compliance policy the broker evaluates reports against.
    case compliancePolicy = "compliance-policy"
    /// The agents' policy, as the signed JWS they receive.
    case agentPolicy = "agent-policy"
}

/// One version of a document, who set it and when.
public struct VersionedDocument: Sendable, Equatable {
    public var kind: DocumentKind
    public var version: Int64
    public var document: String
    public var setBy: String
    public var setAt: Int64

    public init(kind: DocumentKind, version: Int64, document: String, setBy: String, setAt: Int64) {
        self.kind = kind
        self.version = version
        self.document = document
        self.setBy = setBy
        self.setAt = setAt
    }
}

/// One line of the broker's trail: an enrollment, an attestation, a refusal and why.
public struct BrokerLogEntry: Sendable, Equatable {
    public var id: Int64
    public var time: Int64
    public var device: String
    /// e.g. `enroll`, `enroll.refused`, `attest`, `attest.refused`, `policy.ack`.
    public var kind: String
    public var detail: String

    public init(id: Int64 = 0, time: Int64, device: String, kind: String, detail: String) {
        self.id = id
        self.time = time
        self.device = device
        self.kind = kind
        self.detail = detail
    }
}

/// Why a token was or was not accepted.
public enum TokenOutcome: String, Sendable, Equatable {
    case accepted, unknown, used, expired
}

/// Why an enrollment was or was not accepted.
public enum EnrollOutcome: String, Sendable, Equatable {
    case accepted, unknown, used, expired, keyEnrolled = "key-enrolled"
}

/// Why a nonce was or was not accepted.
public enum NonceOutcome: String, Sendable, Equatable {
    case accepted, unknown, used, expired, otherDevice = "other-device"
}

/// An enrolled device: its id, its key, the facts it registered with.
public struct EnrolledDevice: Sendable, Equatable {
    public var id: String
    /// The raw Ed25519 public key (32 bytes).
    public var publicKey: [UInt8]
    /// Registration facts as JSON text (machine-id, DMI serial, hostname, OS).
    public var facts: String
    public var enrolledAt: Int64
    public var removedAt: Int64?
    /// The last authenticated request from it.
    public var lastSeen: Int64?
    /// The agent policy version it last acknowledged, and how (`applied` or `refused: …`).
    public var policyVersion: Int64?
    public var policyStatus: String?
    /// The last heartbeat (between attestations): when, and what the agent said of itself (JSON).
    public var heartbeatAt: Int64?
    public var heartbeat: String?
    /// The lockdown the agent last said it has in force (JSON), and when it said so.
    public var lockdownState: String?
    public var lockdownAt: Int64?
    /// The secret its break-glass codes derive from: written at enrollment, never read with the
    /// device (`breakglassSecret(device:)` reads it where a code is made).
    public var breakglassSecret: [UInt8]?

    public init(id: String, publicKey: [UInt8], facts: String, enrolledAt: Int64, removedAt: Int64? = nil) {
        self.id = id
        self.publicKey = publicKey
        self.facts = facts
        self.enrolledAt = enrolledAt
        self.removedAt = removedAt
    }
}

/// The broker's storage in one SQLite file (WAL, 0600, in a 0700 directory).
public final class SQLiteBrokerStorage: BrokerStorage {
    let connection: Mutex<Connection>
    public let path: String

    static let schemaVersion: Int64 = 9
    /// How long the broker's trail keeps entries: 90 days.
    public static let logRetention: Int64 = 90 * 86_400

    public init(directory: String) throws(StoreError) {
        do {
            try SecureFile.ensurePrivateDirectory(directory)
        } catch {
            throw StoreError(.insecureFile, error.description)
        }
        let path = directory + "/broker.sqlite"
        self.path = path
        try Journal.createOrCheckFiles(path)
        let connection = try Connection(path: path)
        try Journal.configure(connection)
        try connection.transaction { () throws(StoreError) in
            let version = try connection.int64("PRAGMA user_version")
            guard version <= Self.schemaVersion else {
                throw StoreError(.schemaTooNew, "\(path) has schema \(version); this broker knows up to \(Self.schemaVersion)")
            }
            if version == 0 {
                try connection.execute("""
                    CREATE TABLE admins (name TEXT PRIMARY KEY, token_hash BLOB NOT NULL UNIQUE, created INTEGER NOT NULL);
                    CREATE TABLE admin_actions (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, admin TEXT NOT NULL, verb TEXT NOT NULL, detail TEXT NOT NULL);
                    CREATE TABLE enrollment_tokens (id TEXT PRIMARY KEY, token_hash BLOB NOT NULL UNIQUE, label TEXT NOT NULL, created INTEGER NOT NULL,
                        created_by TEXT NOT NULL, expires INTEGER NOT NULL, used_at INTEGER, used_by TEXT);
                    CREATE TABLE devices (id TEXT PRIMARY KEY, public_key BLOB NOT NULL UNIQUE, facts TEXT NOT NULL, enrolled_at INTEGER NOT NULL, removed_at INTEGER);
                    CREATE TABLE nonces (nonce TEXT PRIMARY KEY, device TEXT NOT NULL, expires INTEGER NOT NULL, used_at INTEGER);
                    CREATE INDEX nonces_expires ON nonces (expires);
                    PRAGMA user_version = 1;
                    """)
            }
            if version <= 1 {
                try connection.execute("""
                    ALTER TABLE devices ADD COLUMN last_seen INTEGER;
                    ALTER TABLE devices ADD COLUMN policy_version INTEGER;
                    ALTER TABLE devices ADD COLUMN policy_status TEXT;
                    ALTER TABLE devices ADD COLUMN policy_at INTEGER;
                    CREATE TABLE attestations (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, at INTEGER NOT NULL, report TEXT NOT NULL,
                        decision TEXT NOT NULL, policy_version INTEGER, user TEXT, first_failures TEXT NOT NULL DEFAULT '{}');
                    CREATE INDEX attestations_device ON attestations (device, id);
                    CREATE TABLE documents (kind TEXT NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL, set_by TEXT NOT NULL, set_at INTEGER NOT NULL,
                        PRIMARY KEY (kind, version));
                    CREATE TABLE broker_log (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
                    CREATE INDEX broker_log_device ON broker_log (device, id);
                    PRAGMA user_version = 2;
                    """)
            }
            if version <= 2 {
                try connection.execute("""
                    CREATE TABLE device_events (device TEXT NOT NULL, uuid TEXT NOT NULL, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, severity INTEGER NOT NULL,
                        body TEXT NOT NULL, received INTEGER NOT NULL, PRIMARY KEY (device, uuid)) WITHOUT ROWID;
                    CREATE INDEX device_events_received ON device_events (received);
                    CREATE INDEX device_events_kind ON device_events (device, kind);
                    PRAGMA user_version = 3;
                    """)
            }
            if version <= 3 {
                try connection.execute("""
                    CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, user TEXT NOT NULL, kind TEXT NOT NULL,
                        first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, count INTEGER NOT NULL, severity INTEGER NOT NULL, score INTEGER NOT NULL,
                        summary TEXT NOT NULL, event_uuid TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open', acked_by TEXT, acked_at INTEGER, note TEXT);
                    CREATE INDEX alerts_open ON alerts (status, device, user, kind, last_seen);
                    PRAGMA user_version = 4;
                    """)
            }
            if version <= 4 {
                // A device's open challenges are counted on every challenge: by device, not by
                // scanning every unexpired nonce of the fleet.
                try connection.execute("""
                    CREATE INDEX nonces_open ON nonces (device, expires) WHERE used_at IS NULL;
                    PRAGMA user_version = 5;
                    """)
            }
            if version <= 5 {
                try connection.execute("""
                    ALTER TABLE devices ADD COLUMN heartbeat_at INTEGER;
                    ALTER TABLE devices ADD COLUMN heartbeat TEXT;
                    PRAGMA user_version = 6;
                    """)
            }
            if version <= 6 {
                // Remote lockdown: signed commands per device in sequence, what the agent made of
                // each, the state it reports, and the secret its break-glass codes derive from.
                try connection.execute("""
                    CREATE TABLE commands (device TEXT NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL, scopes TEXT NOT NULL, reason TEXT NOT NULL,
                        admin TEXT NOT NULL, issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, document TEXT NOT NULL,
                        status TEXT NOT NULL DEFAULT 'queued', status_at INTEGER, detail TEXT, PRIMARY KEY (device, seq));
                    ALTER TABLE devices ADD COLUMN lockdown_state TEXT;
                    ALTER TABLE devices ADD COLUMN lockdown_at INTEGER;
                    ALTER TABLE devices ADD COLUMN breakglass_secret BLOB;
                    CREATE TABLE breakglass_codes (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, code_sha256 TEXT NOT NULL UNIQUE,
                        scopes TEXT NOT NULL, starts_at INTEGER NOT NULL, ends_at INTEGER NOT NULL, admin TEXT NOT NULL, reason TEXT NOT NULL);
                    CREATE INDEX breakglass_codes_device ON breakglass_codes (device, id);
                    PRAGMA user_version = 7;
                    """)
            }
            if version <= 7 {
                // Just-in-time exceptions: users' requests, and what an approver decided (the
                // grant, deny or revoke travels as a command in the device's sequence).
                try connection.execute("""
                    CREATE TABLE requests (number INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, request TEXT NOT NULL, kind TEXT NOT NULL,
                        user TEXT NOT NULL, uid INTEGER NOT NULL, match TEXT NOT NULL, label TEXT, seconds INTEGER NOT NULL, reason TEXT NOT NULL, created INTEGER NOT NULL,
                        received_at INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending', decided_at INTEGER, decided_by TEXT, note TEXT, until INTEGER,
                        command_seq INTEGER, revoke_seq INTEGER, revoked_at INTEGER, revoked_by TEXT, revoke_note TEXT, UNIQUE (device, request));
                    CREATE INDEX requests_status ON requests (status, number);
                    PRAGMA user_version = 8;
                    """)
            }
            if version <= 8 {
                // Offboarding: every offboarding and reinstatement (the access review reads the
                // history), and the user a command is about (offboard-status reads it per device).
                try connection.execute("""
                    CREATE TABLE offboardings (id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL,
                        admin TEXT NOT NULL, at INTEGER NOT NULL);
                    CREATE INDEX offboardings_user ON offboardings (user, id);
                    ALTER TABLE commands ADD COLUMN subject TEXT;
                    CREATE INDEX commands_subject ON commands (subject, device, seq) WHERE subject IS NOT NULL;
                    CREATE INDEX requests_user ON requests (user, status);
                    CREATE INDEX device_events_kind_time ON device_events (kind, time_ms);
                    PRAGMA user_version = 9;
                    """)
            }
        }
        // Durability by what is at stake (docs/broker-protocol.md, "Durability"): attestation
        // state, challenges, last-seen times and the trail are synced at checkpoints only
        // (synchronous=NORMAL: a crash of the process loses nothing, a power cut the last moments
        // — devices attest again within minutes). What must survive a power cut because a device
        // acts on the answer — uploaded events (the agent then forgets them), enrollments, tokens,
        // admins, documents — is committed with synchronous=FULL (`durably`).
        try connection.execute("PRAGMA synchronous = NORMAL")
        self.connection = Mutex(connection)
    }

    /// Runs `body` with every commit fsynced (synchronous=FULL), then back to NORMAL.
    static func durably<Result>(_ connection: Connection, _ body: () throws(StoreError) -> Result) throws(StoreError) -> Result {
        try connection.execute("PRAGMA synchronous = FULL")
        defer { try? connection.execute("PRAGMA synchronous = NORMAL") }
        return try body()
    }

    public func addAdmin(name: String, tokenHash: [UInt8], at time: Int64) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.withStatement("INSERT OR IGNORE INTO admins (name, token_hash, created) VALUES (?, ?, ?)") { statement throws(StoreError) in
                    statement.bind(1, name)
                    statement.bind(2, tokenHash)
                    statement.bind(3, time)
                    try statement.run()
                    return statement.changes == 1
                }
            }
        }
    }

    public func admin(tokenHash: [UInt8]) throws(StoreError) -> String? {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT name FROM admins WHERE token_hash = ?") { statement throws(StoreError) in
                statement.bind(1, tokenHash)
                return try statement.step() ? statement.text(0) : nil
            }
        }
    }

    public func adminCount() throws(StoreError) -> Int {
        try connection.withLock { connection throws(StoreError) in Int(try connection.int64("SELECT count(*) FROM admins")) }
    }

    public func bootstrapAdmin(name: String, tokenHash: [UInt8], at time: Int64) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> Bool in
                    let added = try connection.withStatement("INSERT INTO admins (name, token_hash, created) SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM admins)") { statement throws(StoreError) in
                        statement.bind(1, name)
                        statement.bind(2, tokenHash)
                        statement.bind(3, time)
                        try statement.run()
                        return statement.changes == 1
                    }
                    if added {
                        try connection.withStatement("INSERT INTO admin_actions (time, admin, verb, detail) VALUES (?, '(bootstrap)', 'admin add', ?)") { statement throws(StoreError) in
                            statement.bind(1, time)
                            statement.bind(2, "name=" + name)
                            try statement.run()
                        }
                    }
                    return added
                }
            }
        }
    }

    public func recordAdminAction(admin: String, verb: String, detail: String, at time: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.withStatement("INSERT INTO admin_actions (time, admin, verb, detail) VALUES (?, ?, ?, ?)") { statement throws(StoreError) in
                    statement.bind(1, time)
                    statement.bind(2, admin)
                    statement.bind(3, verb)
                    statement.bind(4, detail)
                    try statement.run()
                }
            }
        }
    }

    public func addEnrollmentToken(id: String, tokenHash: [UInt8], label: String, expires: Int64, createdBy: String, at time: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.withStatement("INSERT INTO enrollment_tokens (id, token_hash, label, created, created_by, expires) VALUES (?, ?, ?, ?, ?, ?)") { statement throws(StoreError) in
                    statement.bind(1, id)
                    statement.bind(2, tokenHash)
                    statement.bind(3, label)
                    statement.bind(4, time)
                    statement.bind(5, createdBy)
                    statement.bind(6, expires)
                    try statement.run()
                }
            }
        }
    }

    public func consumeEnrollmentToken(tokenHash: [UInt8], device: String, at time: Int64) throws(StoreError) -> TokenOutcome {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> TokenOutcome in
                    // The spend is one conditional UPDATE: a second caller finds used_at set.
                    let spent = try connection.withStatement("UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE token_hash = ? AND used_at IS NULL AND expires > ?") { statement throws(StoreError) in
                        statement.bind(1, time)
                        statement.bind(2, device)
                        statement.bind(3, tokenHash)
                        statement.bind(4, time)
                        try statement.run()
                        return statement.changes == 1
                    }
                    if spent { return .accepted }
                    return try connection.withStatement("SELECT used_at IS NOT NULL, expires FROM enrollment_tokens WHERE token_hash = ?") { statement throws(StoreError) -> TokenOutcome in
                        statement.bind(1, tokenHash)
                        guard try statement.step() else { return .unknown }
                        return statement.int64(0) == 1 ? .used : .expired
                    }
                }
            }
        }
    }

    public func addDevice(_ device: EnrolledDevice) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("INSERT OR IGNORE INTO devices (id, public_key, facts, enrolled_at) VALUES (?, ?, ?, ?)") { statement throws(StoreError) in
                statement.bind(1, device.id)
                statement.bind(2, device.publicKey)
                statement.bind(3, device.facts)
                statement.bind(4, device.enrolledAt)
                try statement.run()
                return statement.changes == 1
            }
        }
    }

    public func enroll(_ device: EnrolledDevice, tokenHash: [UInt8]) throws(StoreError) -> EnrollOutcome {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> EnrollOutcome in
                    let active = try connection.withStatement("SELECT count(*) FROM devices WHERE public_key = ? AND removed_at IS NULL") { statement throws(StoreError) in
                        statement.bind(1, device.publicKey)
                        _ = try statement.step()
                        return statement.int64(0)
                    }
                    if active > 0 { return .keyEnrolled }
                    let spent = try connection.withStatement("UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE token_hash = ? AND used_at IS NULL AND expires > ?") { statement throws(StoreError) in
                        statement.bind(1, device.enrolledAt)
                        statement.bind(2, device.id)
                        statement.bind(3, tokenHash)
                        statement.bind(4, device.enrolledAt)
                        try statement.run()
                        return statement.changes == 1
                    }
                    guard spent else {
                        return try connection.withStatement("SELECT used_at IS NOT NULL FROM enrollment_tokens WHERE token_hash = ?") { statement throws(StoreError) -> EnrollOutcome in
                            statement.bind(1, tokenHash)
                            guard try statement.step() else { return .unknown }
                            return statement.int64(0) == 1 ? .used : .expired
                        }
                    }
                    // The key is UNIQUE: a removed device's row gives it up (the trail keeps the history).
                    try connection.withStatement("UPDATE devices SET public_key = X'00' || id WHERE public_key = ? AND removed_at IS NOT NULL") { statement throws(StoreError) in
                        statement.bind(1, device.publicKey)
                        try statement.run()
                    }
                    try connection.withStatement("INSERT INTO devices (id, public_key, facts, enrolled_at, breakglass_secret) VALUES (?, ?, ?, ?, ?)") { statement throws(StoreError) in
                        statement.bind(1, device.id)
                        statement.bind(2, device.publicKey)
                        statement.bind(3, device.facts)
                        statement.bind(4, device.enrolledAt)
                        if let secret = device.breakglassSecret { statement.bind(5, secret) }
                        try statement.run()
                    }
                    return .accepted
                }
            }
        }
    }

    public func outstandingNonces(device: String, at time: Int64) throws(StoreError) -> Int {
        try connection.withLock { connection throws(StoreError) in try Self.openNonces(device: device, at: time, connection) }
    }

    public func device(id: String) throws(StoreError) -> EnrolledDevice? {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.deviceColumns) FROM devices WHERE id = ?") { statement throws(StoreError) -> EnrolledDevice? in
                statement.bind(1, id)
                guard try statement.step() else { return nil }
                return Self.device(statement)
            }
        }
    }

    public func removeDevice(id: String, at time: Int64) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.withStatement("UPDATE devices SET removed_at = ? WHERE id = ? AND removed_at IS NULL") { statement throws(StoreError) in
                    statement.bind(1, time)
                    statement.bind(2, id)
                    try statement.run()
                    return statement.changes == 1
                }
            }
        }
    }

    public func addNonce(_ nonce: String, device: String, expires: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in try Self.insertNonce(nonce, device: device, expires: expires, connection) }
    }

    public func addNonce(_ nonce: String, device: String, expires: Int64, openAt time: Int64, limit: Int) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try connection.transaction { () throws(StoreError) -> Bool in
                guard try Self.openNonces(device: device, at: time, connection) < limit else { return false }
                try Self.insertNonce(nonce, device: device, expires: expires, connection)
                return true
            }
        }
    }

    static func openNonces(device: String, at time: Int64, _ connection: Connection) throws(StoreError) -> Int {
        try connection.withStatement("SELECT count(*) FROM nonces WHERE device = ? AND used_at IS NULL AND expires > ?") { statement throws(StoreError) in
            statement.bind(1, device)
            statement.bind(2, time)
            _ = try statement.step()
            return Int(statement.int64(0))
        }
    }

    static func insertNonce(_ nonce: String, device: String, expires: Int64, _ connection: Connection) throws(StoreError) {
        // Spent and expired challenges older than a day are of no further use (swept now and
        // then, not on every challenge).
        if UInt8.random(in: 0..<100) == 0 { try connection.withStatement("DELETE FROM nonces WHERE expires < ?") { statement throws(StoreError) in
            let (cutoff, overflow) = expires.subtractingReportingOverflow(86_400)
            statement.bind(1, overflow ? Int64.min : cutoff)
            try statement.run()
        } }
        try connection.withStatement("INSERT INTO nonces (nonce, device, expires) VALUES (?, ?, ?)") { statement throws(StoreError) in
            statement.bind(1, nonce)
            statement.bind(2, device)
            statement.bind(3, expires)
            try statement.run()
        }
    }

    public func consumeNonce(_ nonce: String, device: String, at time: Int64) throws(StoreError) -> NonceOutcome {
        try connection.withLock { connection throws(StoreError) in
            try connection.transaction { () throws(StoreError) -> NonceOutcome in try Self.spend(nonce, device: device, at: time, connection) }
        }
    }

    /// Inside a transaction: marks the nonce used if it is this device's, unused and unexpired;
    /// otherwise says why not.
    static func spend(_ nonce: String, device: String, at time: Int64, _ connection: Connection) throws(StoreError) -> NonceOutcome {
        let spent = try connection.withStatement("UPDATE nonces SET used_at = ? WHERE nonce = ? AND device = ? AND used_at IS NULL AND expires > ?") { statement throws(StoreError) in
            statement.bind(1, time)
            statement.bind(2, nonce)
            statement.bind(3, device)
            statement.bind(4, time)
            try statement.run()
            return statement.changes == 1
        }
        if spent { return .accepted }
        return try connection.withStatement("SELECT device, used_at IS NOT NULL, expires FROM nonces WHERE nonce = ?") { statement throws(StoreError) -> NonceOutcome in
            statement.bind(1, nonce)
            guard try statement.step() else { return .unknown }
            if statement.text(0) != device { return .otherDevice }
            return statement.int64(1) == 1 ? .used : .expired
        }
    }

    static let deviceColumns = "id, public_key, facts, enrolled_at, removed_at, last_seen, policy_version, policy_status, heartbeat_at, heartbeat, lockdown_state, lockdown_at"

    static func device(_ statement: Statement) -> EnrolledDevice {
        var device = EnrolledDevice(
            id: statement.text(0) ?? "", publicKey: statement.blob(1), facts: statement.text(2) ?? "{}", enrolledAt: statement.int64(3),
            removedAt: statement.isNull(4) ? nil : statement.int64(4))
        device.lastSeen = statement.isNull(5) ? nil : statement.int64(5)
        device.policyVersion = statement.isNull(6) ? nil : statement.int64(6)
        device.policyStatus = statement.text(7)
        device.heartbeatAt = statement.isNull(8) ? nil : statement.int64(8)
        device.heartbeat = statement.text(9)
        device.lockdownState = statement.text(10)
        device.lockdownAt = statement.isNull(11) ? nil : statement.int64(11)
        return device
    }

    public func devices() throws(StoreError) -> [EnrolledDevice] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.deviceColumns) FROM devices ORDER BY enrolled_at, id") { statement throws(StoreError) in
                var all: [EnrolledDevice] = []
                while try statement.step() { all.append(Self.device(statement)) }
                return all
            }
        }
    }

    public func recordAttestation(_ attestation: Attestation) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try connection.transaction { () throws(StoreError) in try Self.insertAttestation(attestation, connection) }
        }
    }

    public func recordAttestation(_ attestation: Attestation, spending nonce: String, log entry: BrokerLogEntry) throws(StoreError) -> NonceOutcome {
        try connection.withLock { connection throws(StoreError) in
            try connection.transaction { () throws(StoreError) -> NonceOutcome in
                let outcome = try Self.spend(nonce, device: attestation.device, at: attestation.at, connection)
                guard outcome == .accepted else { return outcome }
                try Self.insertAttestation(attestation, connection)
                try Self.insertLog(entry, connection)
                return outcome
            }
        }
    }

    static func insertAttestation(_ attestation: Attestation, _ connection: Connection) throws(StoreError) {
        try connection.withStatement("INSERT INTO attestations (device, at, report, decision, policy_version, user, first_failures) VALUES (?, ?, ?, ?, ?, ?, ?)") { statement throws(StoreError) in
            statement.bind(7, attestation.firstFailures)
            statement.bind(1, attestation.device)
            statement.bind(2, attestation.at)
            statement.bind(3, attestation.report)
            statement.bind(4, attestation.decision)
            statement.bind(5, attestation.policyVersion)
            statement.bind(6, attestation.user)
            try statement.run()
        }
        // Only the latest few per device are needed to decide; the broker log keeps the trail.
        try connection.withStatement("DELETE FROM attestations WHERE device = ? AND id NOT IN (SELECT id FROM attestations WHERE device = ? ORDER BY id DESC LIMIT 8)") { statement throws(StoreError) in
            statement.bind(1, attestation.device)
            statement.bind(2, attestation.device)
            try statement.run()
        }
    }

    public func latestAttestation(device: String) throws(StoreError) -> Attestation? {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT device, at, report, decision, policy_version, user, first_failures, id FROM attestations WHERE device = ? ORDER BY id DESC LIMIT 1") { statement throws(StoreError) -> Attestation? in
                statement.bind(1, device)
                guard try statement.step() else { return nil }
                var attestation = Attestation(
                    device: statement.text(0) ?? "", at: statement.int64(1), report: statement.text(2) ?? "{}", decision: statement.text(3) ?? "block",
                    policyVersion: statement.isNull(4) ? nil : statement.int64(4), user: statement.text(5), firstFailures: statement.text(6) ?? "{}")
                attestation.sequence = statement.int64(7)
                return attestation
            }
        }
    }

    public func recordHeartbeat(device: String, at time: Int64, health: String) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("UPDATE devices SET heartbeat_at = ?, heartbeat = ?, last_seen = max(coalesce(last_seen, 0), ?) WHERE id = ?") { statement throws(StoreError) in
                statement.bind(1, time)
                statement.bind(2, health)
                statement.bind(3, time)
                statement.bind(4, device)
                try statement.run()
            }
        }
    }

    public func markSeen(device: String, at time: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("UPDATE devices SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)") { statement throws(StoreError) in
                statement.bind(1, time)
                statement.bind(2, device)
                statement.bind(3, time)
                try statement.run()
            }
        }
    }

    public func addDocument(_ document: VersionedDocument) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.withStatement("INSERT OR IGNORE INTO documents (kind, version, document, set_by, set_at) VALUES (?, ?, ?, ?, ?)") { statement throws(StoreError) in
                    statement.bind(1, document.kind.rawValue)
                    statement.bind(2, document.version)
                    statement.bind(3, document.document)
                    statement.bind(4, document.setBy)
                    statement.bind(5, document.setAt)
                    try statement.run()
                    return statement.changes == 1
                }
            }
        }
    }

    public func latestDocument(kind: DocumentKind) throws(StoreError) -> VersionedDocument? {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT version, document, set_by, set_at FROM documents WHERE kind = ? ORDER BY version DESC LIMIT 1") { statement throws(StoreError) -> VersionedDocument? in
                statement.bind(1, kind.rawValue)
                guard try statement.step() else { return nil }
                return VersionedDocument(kind: kind, version: statement.int64(0), document: statement.text(1) ?? "", setBy: statement.text(2) ?? "", setAt: statement.int64(3))
            }
        }
    }

    public func latestVersion(kind: DocumentKind) throws(StoreError) -> Int64? {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT max(version) FROM documents WHERE kind = ?") { statement throws(StoreError) -> Int64? in
                statement.bind(1, kind.rawValue)
                guard try statement.step(), !statement.isNull(0) else { return nil }
                return statement.int64(0)
            }
        }
    }

    public func acknowledgePolicy(device: String, version: Int64, status: String, detail: String, at time: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("UPDATE devices SET policy_version = ?, policy_status = ?, policy_at = ? WHERE id = ?") { statement throws(StoreError) in
                statement.bind(1, version)
                statement.bind(2, detail.isEmpty ? status : status + ": " + detail)
                statement.bind(3, time)
                statement.bind(4, device)
                try statement.run()
            }
        }
    }

    public func storeEvents(_ events: [StoredEvent], device: String, at time: Int64) throws(StoreError) -> (stored: Int, duplicates: Int) {
        let new = try storeNewEvents(events, device: device, at: time, alertWindow: 0) { _ in nil }
        return (new.count, events.count - new.count)
    }

    public func storeNewEvents(_ events: [StoredEvent], device: String, at time: Int64, alertWindow: Int64, alert: @Sendable (StoredEvent) -> AlertCandidate?) throws(StoreError) -> [StoredEvent] {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.transaction { () throws(StoreError) -> [StoredEvent] in
                    var new: [StoredEvent] = []
                    for event in events {
                        let stored = try connection.withStatement(
                            "INSERT OR IGNORE INTO device_events (device, uuid, time_ms, kind, severity, body, received) VALUES (?, ?, ?, ?, ?, ?, ?)"
                        ) { statement throws(StoreError) -> Int in
                            statement.bind(1, device)
                            statement.bind(2, event.uuid)
                            statement.bind(3, event.timeMilliseconds)
                            statement.bind(4, event.kind)
                            statement.bind(5, event.severity)
                            statement.bind(6, event.body)
                            statement.bind(7, time)
                            try statement.run()
                            return statement.changes
                        }
                        if stored == 1 {
                            new.append(event)
                            if let candidate = alert(event) { _ = try Self.recordAlert(candidate, window: alertWindow, in: connection) }
                        }
                    }
                    return new
                }
            }
        }
    }

    public func recordAlert(_ candidate: AlertCandidate, window: Int64) throws(StoreError) -> Int64 {
        try connection.withLock { connection throws(StoreError) in
            try connection.transaction { () throws(StoreError) -> Int64 in
                try Self.recordAlert(candidate, window: window, in: connection)
            }
        }
    }

    /// The fold-or-open of `recordAlert`, inside the caller's transaction.
    /// Open alerts one device may hold; past it, its new ones fold into one flood alert, so one
    /// device cannot push every other device's alerts off the list.
    public static let maximumOpenAlertsPerDevice: Int64 = 100

    static func recordAlert(_ given: AlertCandidate, window: Int64, in connection: Connection) throws(StoreError) -> Int64 {
        var candidate = given
        let open = try connection.withStatement("SELECT count(*) FROM alerts WHERE status = 'open' AND device = ? AND NOT (user = ? AND kind = ?)") { statement throws(StoreError) in
            statement.bind(1, candidate.device)
            statement.bind(2, candidate.user)
            statement.bind(3, candidate.kind)
            _ = try statement.step()
            return statement.int64(0)
        }
        if open >= maximumOpenAlertsPerDevice {
            candidate.user = "*"
            candidate.kind = "alerts.flood"
            candidate.summary = "more than \(maximumOpenAlertsPerDevice) open alerts from this device; the rest fold here (latest: \(given.kind) by \(given.user))"
        }
        let existing = try connection.withStatement(
            "SELECT id FROM alerts WHERE status = 'open' AND device = ? AND user = ? AND kind = ? AND last_seen >= ? ORDER BY last_seen DESC LIMIT 1"
        ) { statement throws(StoreError) -> Int64? in
            statement.bind(1, candidate.device)
            statement.bind(2, candidate.user)
            statement.bind(3, candidate.kind)
            let (since, overflow) = candidate.time.subtractingReportingOverflow(window.multipliedReportingOverflow(by: 1_000).partialValue)
            statement.bind(4, overflow ? Int64.min : since)
            return try statement.step() ? statement.int64(0) : nil
        }
        if let existing {
            try connection.withStatement(
                "UPDATE alerts SET count = count + 1, last_seen = max(last_seen, ?), severity = max(severity, ?), score = max(score, ?), summary = CASE WHEN ? > score THEN ? ELSE summary END WHERE id = ?"
            ) { statement throws(StoreError) in
                statement.bind(1, candidate.time)
                statement.bind(2, candidate.severity)
                statement.bind(3, candidate.score)
                statement.bind(4, candidate.score)
                statement.bind(5, candidate.summary)
                statement.bind(6, existing)
                try statement.run()
            }
            return existing
        }
        return try connection.withStatement(
            "INSERT INTO alerts (device, user, kind, first_seen, last_seen, count, severity, score, summary, event_uuid) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)"
        ) { statement throws(StoreError) -> Int64 in
            statement.bind(1, candidate.device)
            statement.bind(2, candidate.user)
            statement.bind(3, candidate.kind)
            statement.bind(4, candidate.time)
            statement.bind(5, candidate.time)
            statement.bind(6, candidate.severity)
            statement.bind(7, candidate.score)
            statement.bind(8, candidate.summary)
            statement.bind(9, candidate.eventUUID)
            try statement.run()
            return statement.lastInsertID
        }
    }

    public func alerts(includeClosed: Bool, limit: Int) throws(StoreError) -> [Alert] {
        try connection.withLock { connection throws(StoreError) in
            let sql = "SELECT id, device, user, kind, first_seen, last_seen, count, severity, score, summary, event_uuid, status, acked_by, acked_at, note FROM alerts"
                + (includeClosed ? "" : " WHERE status = 'open'") + " ORDER BY score DESC, last_seen DESC LIMIT ?"
            return try connection.withStatement(sql) { statement throws(StoreError) in
                statement.bind(1, Int64(limit))
                var all: [Alert] = []
                while try statement.step() {
                    all.append(Alert(
                        id: statement.int64(0), device: statement.text(1) ?? "", user: statement.text(2) ?? "", kind: statement.text(3) ?? "",
                        firstSeen: statement.int64(4), lastSeen: statement.int64(5), count: statement.int64(6), severity: statement.int64(7), score: statement.int64(8),
                        summary: statement.text(9) ?? "", eventUUID: statement.text(10) ?? "", status: statement.text(11) ?? "open", acknowledgedBy: statement.text(12),
                        acknowledgedAt: statement.isNull(13) ? nil : statement.int64(13), note: statement.text(14)))
                }
                return all
            }
        }
    }

    public func acknowledgeAlert(id: Int64, admin: String, note: String, at time: Int64) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try Self.durably(connection) { () throws(StoreError) in
                try connection.withStatement("UPDATE alerts SET status = 'acknowledged', acked_by = ?, acked_at = ?, note = ? WHERE id = ? AND status = 'open'") { statement throws(StoreError) in
                    statement.bind(1, admin)
                    statement.bind(2, time)
                    statement.bind(3, note)
                    statement.bind(4, id)
                    try statement.run()
                    return statement.changes == 1
                }
            }
        }
    }

    public func events(device: String?, kind: String?, limit: Int) throws(StoreError) -> [StoredEvent] {
        try connection.withLock { connection throws(StoreError) in
            var clauses: [String] = []
            if device != nil { clauses.append("device = ?") }
            if kind != nil { clauses.append("kind = ?") }
            let sql = "SELECT device, uuid, time_ms, kind, severity, body, received FROM device_events"
                + (clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")) + " ORDER BY received DESC, time_ms DESC LIMIT ?"
            return try connection.withStatement(sql) { statement throws(StoreError) in
                var index: Int32 = 1
                if let device { statement.bind(index, device); index += 1 }
                if let kind { statement.bind(index, kind); index += 1 }
                statement.bind(index, Int64(limit))
                var all: [StoredEvent] = []
                while try statement.step() {
                    all.append(StoredEvent(
                        device: statement.text(0) ?? "", uuid: statement.text(1) ?? "", timeMilliseconds: statement.int64(2), kind: statement.text(3) ?? "",
                        severity: statement.int64(4), body: statement.text(5) ?? "{}", receivedAt: statement.int64(6)))
                }
                return all
            }
        }
    }

    public func eventCount(device: String, kind: String?) throws(StoreError) -> Int {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT count(*) FROM device_events WHERE device = ?" + (kind == nil ? "" : " AND kind = ?")) { statement throws(StoreError) in
                statement.bind(1, device)
                if let kind { statement.bind(2, kind) }
                _ = try statement.step()
                return Int(statement.int64(0))
            }
        }
    }

    public func log(_ entry: BrokerLogEntry) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in try Self.insertLog(entry, connection) }
    }

    static func insertLog(_ entry: BrokerLogEntry, _ connection: Connection) throws(StoreError) {
        let id = try connection.withStatement("INSERT INTO broker_log (time, device, kind, detail) VALUES (?, ?, ?, ?)") { statement throws(StoreError) in
            statement.bind(1, entry.time)
            statement.bind(2, entry.device)
            statement.bind(3, entry.kind)
            statement.bind(4, String(entry.detail.prefix(2_048)))
            try statement.run()
            return statement.lastInsertID
        }
        // Every thousandth entry prunes what is older than the retention (the trail is
        // for operators; the device's own journal is the record of what it did).
        if id % 1_000 == 0 {
            try connection.withStatement("DELETE FROM broker_log WHERE time < ?") { statement throws(StoreError) in
                let (cutoff, overflow) = entry.time.subtractingReportingOverflow(Self.logRetention)
                statement.bind(1, overflow ? Int64.min : cutoff)
                try statement.run()
            }
        }
    }

    public func logEntries(device: String?, limit: Int) throws(StoreError) -> [BrokerLogEntry] {
        try connection.withLock { connection throws(StoreError) in
            let sql = device == nil
                ? "SELECT id, time, device, kind, detail FROM broker_log ORDER BY id DESC LIMIT ?"
                : "SELECT id, time, device, kind, detail FROM broker_log WHERE device = ? ORDER BY id DESC LIMIT ?"
            return try connection.withStatement(sql) { statement throws(StoreError) in
                if let device {
                    statement.bind(1, device)
                    statement.bind(2, Int64(limit))
                } else {
                    statement.bind(1, Int64(limit))
                }
                var entries: [BrokerLogEntry] = []
                while try statement.step() {
                    entries.append(BrokerLogEntry(id: statement.int64(0), time: statement.int64(1), device: statement.text(2) ?? "", kind: statement.text(3) ?? "", detail: statement.text(4) ?? ""))
                }
                return entries
            }
        }
    }
}
