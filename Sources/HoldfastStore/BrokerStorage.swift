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
    func device(id: String) throws(StoreError) -> EnrolledDevice?
    /// Unenrolls: the device's key is no longer accepted. False when there was no such device.
    func removeDevice(id: String, at time: Int64) throws(StoreError) -> Bool
    /// Stores a challenge for a device.
    func addNonce(_ nonce: String, device: String, expires: Int64) throws(StoreError)
    /// Spends a challenge: exactly one report per nonce, from its device, before it expires.
    func consumeNonce(_ nonce: String, device: String, at time: Int64) throws(StoreError) -> NonceOutcome
}

/// Why a token was or was not accepted.
public enum TokenOutcome: String, Sendable, Equatable {
    case accepted, unknown, used, expired
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
    private let connection: Mutex<Connection>
    public let path: String

    static let schemaVersion: Int64 = 1

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
        }
        self.connection = Mutex(connection)
    }

    public func addAdmin(name: String, tokenHash: [UInt8], at time: Int64) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("INSERT OR IGNORE INTO admins (name, token_hash, created) VALUES (?, ?, ?)") { statement throws(StoreError) in
                statement.bind(1, name)
                statement.bind(2, tokenHash)
                statement.bind(3, time)
                try statement.run()
                return statement.changes == 1
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

    public func recordAdminAction(admin: String, verb: String, detail: String, at time: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("INSERT INTO admin_actions (time, admin, verb, detail) VALUES (?, ?, ?, ?)") { statement throws(StoreError) in
                statement.bind(1, time)
                statement.bind(2, admin)
                statement.bind(3, verb)
                statement.bind(4, detail)
                try statement.run()
            }
        }
    }

    public func addEnrollmentToken(id: String, tokenHash: [UInt8], label: String, expires: Int64, createdBy: String, at time: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
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

    public func consumeEnrollmentToken(tokenHash: [UInt8], device: String, at time: Int64) throws(StoreError) -> TokenOutcome {
        try connection.withLock { connection throws(StoreError) in
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

    public func device(id: String) throws(StoreError) -> EnrolledDevice? {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT id, public_key, facts, enrolled_at, removed_at FROM devices WHERE id = ?") { statement throws(StoreError) -> EnrolledDevice? in
                statement.bind(1, id)
                guard try statement.step() else { return nil }
                return EnrolledDevice(
                    id: statement.text(0) ?? "", publicKey: statement.blob(1), facts: statement.text(2) ?? "{}", enrolledAt: statement.int64(3),
                    removedAt: statement.isNull(4) ? nil : statement.int64(4))
            }
        }
    }

    public func removeDevice(id: String, at time: Int64) throws(StoreError) -> Bool {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("UPDATE devices SET removed_at = ? WHERE id = ? AND removed_at IS NULL") { statement throws(StoreError) in
                statement.bind(1, time)
                statement.bind(2, id)
                try statement.run()
                return statement.changes == 1
            }
        }
    }

    public func addNonce(_ nonce: String, device: String, expires: Int64) throws(StoreError) {
        try connection.withLock { connection throws(StoreError) in
            // Spent and expired challenges older than a day are of no further use.
            try connection.withStatement("DELETE FROM nonces WHERE expires < ?") { statement throws(StoreError) in
                let (cutoff, overflow) = expires.subtractingReportingOverflow(86_400)
                statement.bind(1, overflow ? Int64.min : cutoff)
                try statement.run()
            }
            try connection.withStatement("INSERT INTO nonces (nonce, device, expires) VALUES (?, ?, ?)") { statement throws(StoreError) in
                statement.bind(1, nonce)
                statement.bind(2, device)
                statement.bind(3, expires)
                try statement.run()
            }
        }
    }

    public func consumeNonce(_ nonce: String, device: String, at time: Int64) throws(StoreError) -> NonceOutcome {
        try connection.withLock { connection throws(StoreError) in
            try connection.transaction { () throws(StoreError) -> NonceOutcome in
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
        }
    }
}
