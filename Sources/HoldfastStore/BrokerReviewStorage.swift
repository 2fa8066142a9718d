import HoldfastCore
import Synchronization

/// A value (a rule id, an exception id) the events of one device showed, and when last.
public struct ReviewUse: Sendable, Equatable {
    public var device: String
    public var value: String
    public var timeMilliseconds: Int64
}

/// What the access review reads (`holdfast-broker review`, docs/offboarding.md): when uploaded
/// events last showed a rule or an exception in use, and the privileges with a window.
extension SQLiteBrokerStorage {
    public func lastUses(kind: String, jsonPath: String) throws(StoreError) -> [ReviewUse] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("""
                SELECT device, json_extract(body, ?) AS used, max(time_ms) FROM device_events WHERE kind = ? AND json_valid(body)
                GROUP BY device, used HAVING used IS NOT NULL
                """) { statement throws(StoreError) in
                statement.bind(1, jsonPath)
                statement.bind(2, kind)
                var uses: [ReviewUse] = []
                while try statement.step() {
                    if let key = statement.text(1) { uses.append(ReviewUse(device: statement.text(0) ?? "", value: key, timeMilliseconds: statement.int64(2))) }
                }
                return uses
            }
        }
    }

    public func eventBodies(kind: String, sinceMilliseconds: Int64, limit: Int) throws(StoreError) -> [(device: String, timeMilliseconds: Int64, body: String)] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT device, time_ms, body FROM device_events WHERE kind = ? AND time_ms >= ? ORDER BY time_ms DESC LIMIT ?") { statement throws(StoreError) in
                statement.bind(1, kind)
                statement.bind(2, sinceMilliseconds)
                statement.bind(3, Int64(limit))
                var all: [(device: String, timeMilliseconds: Int64, body: String)] = []
                while try statement.step() { all.append((statement.text(0) ?? "", statement.int64(1), statement.text(2) ?? "")) }
                return all
            }
        }
    }

    public func openBreakglassCodes(at time: Int64) throws(StoreError) -> [IssuedBreakglassCode] {
        try connection.withLock { connection throws(StoreError) in
            try connection.withStatement("SELECT \(Self.breakglassColumns) FROM breakglass_codes WHERE ends_at > ? ORDER BY starts_at") { statement throws(StoreError) in
                statement.bind(1, time)
                var all: [IssuedBreakglassCode] = []
                while try statement.step() { all.append(Self.breakglassCode(statement)) }
                return all
            }
        }
    }
}
