/// Why the journal or the state store refused or failed.
public struct StoreError: Error, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The database file or its directory is not private to its owner.
        case insecureFile
        /// There is no journal where one was expected.
        case notFound
        /// The database was written by a newer Holdfast (its schema version is unknown here).
        case schemaTooNew
        /// An event or state value could not be encoded or decoded.
        case encoding
        /// SQLite reported an error.
        case sqlite
    }

    public let code: Code
    public let message: String
    /// SQLite's extended result code, when SQLite failed.
    public let sqliteCode: Int32?

    public init(_ code: Code, _ message: String, sqliteCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.sqliteCode = sqliteCode
    }

    public var description: String {
        if let sqliteCode { return "\(message) (SQLite \(sqliteCode))" }
        return message
    }
}
