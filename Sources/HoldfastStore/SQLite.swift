import CSQLite

/// One SQLite connection. Not thread-safe by itself: the owner serializes every use (the
/// journal holds it inside a `Mutex`), and SQLite is opened in multi-thread mode (NOMUTEX),
/// which allows a connection to move between threads as long as no two use it at once.
final class Connection {
    let handle: OpaquePointer
    let path: String
    private var statements: [String: Statement] = [:]

    init(path: String, readOnly: Bool = false) throws(StoreError) {
        self.path = path
        var db: OpaquePointer?
        let access = readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
        let flags = access | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW
        let result = sqlite3_open_v2(path, &db, flags, nil)
        guard result == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            // "Whether or not an error occurs when it is opened, resources associated with the
            // database connection handle should be released by passing it to sqlite3_close()."
            if let db { sqlite3_close_v2(db) }
            throw StoreError(.sqlite, "cannot open \(path): \(message)", sqliteCode: result)
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, 5_000)
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws(StoreError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let result = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if result != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(result))
            sqlite3_free(errorMessage)
            throw StoreError(.sqlite, message, sqliteCode: result)
        }
    }

    /// Runs `body` with a prepared statement (cached per SQL text) and resets it afterwards,
    /// whatever happens: a statement left mid-result holds a read transaction open, which pins a
    /// stale snapshot (SQLITE_BUSY_SNAPSHOT on the next write) and blocks WAL checkpoints.
    func withStatement<Result>(_ sql: String, _ body: (Statement) throws(StoreError) -> Result) throws(StoreError) -> Result {
        let statement: Statement
        if let cached = statements[sql] {
            statement = cached
        } else {
            var prepared: OpaquePointer?
            let result = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil)
            guard result == SQLITE_OK, let prepared else { throw error(result, "prepare") }
            statement = Statement(handle: prepared, connection: self)
            statements[sql] = statement
        }
        defer { statement.reset() }
        return try body(statement)
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back if it throws.
    func transaction<Result>(_ body: () throws(StoreError) -> Result) throws(StoreError) -> Result {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Every row of a single-column text query (PRAGMA answers).
    func strings(_ sql: String) throws(StoreError) -> [String] {
        try withStatement(sql) { (statement) throws(StoreError) -> [String] in
            var rows: [String] = []
            while try statement.step() { rows.append(statement.text(0) ?? "") }
            return rows
        }
    }

    func int64(_ sql: String) throws(StoreError) -> Int64 {
        try withStatement(sql) { (statement) throws(StoreError) -> Int64 in
            guard try statement.step() else { throw StoreError(.sqlite, "no row for \(sql)") }
            return statement.int64(0)
        }
    }

    func error(_ result: Int32, _ what: String) -> StoreError {
        StoreError(.sqlite, "\(what): \(String(cString: sqlite3_errmsg(handle)))", sqliteCode: result)
    }
}

/// A prepared statement owned by its connection's cache.
final class Statement {
    let handle: OpaquePointer
    unowned let connection: Connection

    init(handle: OpaquePointer, connection: Connection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { sqlite3_finalize(handle) }

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(handle, index, value) }

    func bind(_ index: Int32, _ value: Int64?) {
        if let value { sqlite3_bind_int64(handle, index, value) } else { sqlite3_bind_null(handle, index) }
    }

    func bind(_ index: Int32, _ value: String?) {
        if let value { bind(index, value) } else { sqlite3_bind_null(handle, index) }
    }

    func bind(_ index: Int32, _ value: String) {
        sqlite3_bind_text(handle, index, value, -1, holdfast_sqlite_transient())
    }

    func bind(_ index: Int32, _ value: [UInt8]) {
        value.withUnsafeBytes { buffer in
            // A zero-length blob still needs a non-NULL pointer to be a blob and not NULL.
            let pointer = buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1)
            _ = sqlite3_bind_blob(handle, index, pointer, Int32(buffer.count), holdfast_sqlite_transient())
        }
    }

    /// Steps once: true when a row is available, false when done.
    func step() throws(StoreError) -> Bool {
        let result = sqlite3_step(handle)
        switch result {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let error = connection.error(result, "step")
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Steps a statement that returns no rows.
    func run() throws(StoreError) {
        while try step() {}
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    func text(_ column: Int32) -> String? {
        guard let pointer = sqlite3_column_text(handle, column) else { return nil }
        return String(cString: pointer)
    }

    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let pointer = sqlite3_column_blob(handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    var changes: Int { Int(sqlite3_changes(connection.handle)) }

    var lastInsertID: Int64 { sqlite3_last_insert_rowid(connection.handle) }
}
