import CAudit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// libauparse's reading of a log, as a reference to check FileWatch's own parser against (tests
/// compare event boundaries and decoded names on generated logs). Never on the hot path.
public enum AuparseReference {
    public struct Event: Sendable, Equatable {
        public var serial: UInt64
        public var node: String?
        /// Record types in order (libauparse drops EOE records).
        public var types: [String]
        /// PATH records' `name`, as auparse interprets it (`(null)` stays a string there).
        public var names: [String]
    }

    /// libauparse 3.0.9 ends an event at a kernel `LOGIN` record although the write(2) that caused
    /// it logs its SYSCALL and PROCTITLE under the same serial right after: the later event with a
    /// lone LOGIN's node and serial is joined to it. Nothing else is merged.
    public static func mergedBySerial(_ events: [Event]) -> [Event] {
        var merged: [Event] = []
        var loneLogins: [String: Int] = [:]
        for event in events {
            let key = "\(event.node ?? "")\u{0}\(event.serial)"
            if let index = loneLogins.removeValue(forKey: key) {
                merged[index].types += event.types
                merged[index].names += event.names
                continue
            }
            if event.types == ["LOGIN"] { loneLogins[key] = merged.count }
            merged.append(event)
        }
        return merged
    }

    /// libauparse keeps global state (its interpretation tables): two parsers at once in one
    /// process abort. Every use is serialized.
    private static let lock = Mutex(())

    /// Every event libauparse assembles from `log` (the whole text at once).
    public static func events(_ log: [UInt8]) -> [Event] {
        lock.withLock { _ in unlockedEvents(log) }
    }

    private static func unlockedEvents(_ log: [UInt8]) -> [Event] {
        var text = log
        text.append(0)
        return text.withUnsafeBufferPointer { buffer -> [Event] in
            guard let base = buffer.baseAddress,
                  let state = auparse_init(AUSOURCE_BUFFER, UnsafeRawPointer(base))
            else { return [] }
            defer { auparse_destroy(state) }
            var events: [Event] = []
            while auparse_next_event(state) > 0 {
                var event = Event(serial: UInt64(auparse_get_serial(state)), node: nil, types: [], names: [])
                if let node = auparse_get_node(state) {
                    event.node = String(cString: node)
                    free(UnsafeMutableRawPointer(mutating: node))
                }
                if auparse_first_record(state) > 0 {
                    repeat {
                        let type = auparse_get_type_name(state).map { String(cString: $0) } ?? "?"
                        event.types.append(type)
                        if type == "PATH", auparse_find_field(state, "name") != nil, let name = auparse_interpret_field(state) {
                            event.names.append(String(cString: name))
                        }
                    } while auparse_next_record(state) > 0
                }
                events.append(event)
            }
            return events
        }
    }
}
