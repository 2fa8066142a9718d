/// One record of auditd's text format, as written to audit.log and fed to plugins:
/// `[node=NAME ]type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): field=value …[0x1D interpreted fields]`.
///
/// Pure Swift over bytes (no libauparse). Values stay raw (`"quoted"`, hex or bare) in `fields`;
/// `text(_:)` decodes the fields the kernel encodes as untrusted strings.
public struct AuditRecord: Sendable, Equatable {
    /// The `node=` prefix (auditd's `name_format`), which may contain spaces; nil when absent.
    public let node: String?
    /// The record type's name (`SYSCALL`, `PATH`, `UNKNOWN[1337]` as written).
    public let type: String
    /// Seconds since the epoch with milliseconds, as the record says.
    public let seconds: Int64
    public let milliseconds: Int
    public let serial: UInt64
    /// Raw fields in order (a record may repeat a name; the first wins in `field(_:)`).
    public let fields: [(name: String, value: String)]
    /// The ENRICHED format's interpreted fields (after the 0x1D byte), in order.
    public let interpreted: [(name: String, value: String)]

    public static func == (lhs: AuditRecord, rhs: AuditRecord) -> Bool {
        lhs.node == rhs.node && lhs.type == rhs.type && lhs.seconds == rhs.seconds && lhs.milliseconds == rhs.milliseconds
            && lhs.serial == rhs.serial && lhs.fields.map(\.name) == rhs.fields.map(\.name) && lhs.fields.map(\.value) == rhs.fields.map(\.value)
            && lhs.interpreted.map(\.name) == rhs.interpreted.map(\.name) && lhs.interpreted.map(\.value) == rhs.interpreted.map(\.value)
    }

    /// The raw value of the first field called `name`.
    public func field(_ name: String) -> String? { fields.first { $0.name == name }?.value }

    /// The fields the kernel writes with `audit_log_untrustedstring`: quoted when printable, hex
    /// otherwise, `(null)` when absent. Other fields (`a0=ffffff9c`) are never hex-decoded.
    public static let encodedFields: Set<String> = [
        "name", "cwd", "proctitle", "exe", "comm", "path", "key", "dir", "new", "old", "root_dir", "cmd", "data", "acct",
    ]

    /// The decoded bytes of an encoded field (`name`, `cwd`, `proctitle`, …): quoted → the text
    /// inside the quotes, hex → its bytes, `(null)` → nil. nil too when the field is absent or
    /// its value is neither.
    public func bytes(_ name: String) -> [UInt8]? {
        guard let raw = field(name) else { return nil }
        return Self.decode(raw)
    }

    /// `bytes(name)` as text (invalid UTF-8 repaired with U+FFFD).
    public func text(_ name: String) -> String? { bytes(name).map { String(decoding: $0, as: UTF8.self) } }

    /// Quoted → literal; `(null)` → nil; even-length hex → bytes; anything else nil.
    public static func decode(_ raw: String) -> [UInt8]? {
        let utf8 = Array(raw.utf8)
        if utf8.count >= 2, utf8.first == UInt8(ascii: "\""), utf8.last == UInt8(ascii: "\"") { return Array(utf8.dropFirst().dropLast()) }
        if raw == "(null)" || raw.isEmpty { return nil }
        guard utf8.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = hexDigit(utf8[index]), let low = hexDigit(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }
}

/// Why a line is not a record.
public enum AuditParseError: Error, Equatable, Sendable {
    case noType
    case noHeader
    case badHeader
}

extension AuditRecord {
    /// Parses one line (without its newline).
    public static func parse(_ line: some Collection<UInt8>) -> Result<AuditRecord, AuditParseError> {
        var bytes = Array(line)
        if bytes.last == 0x0D { bytes.removeLast() }
        // ENRICHED: raw fields, 0x1D, interpreted fields.
        var interpretedPart: ArraySlice<UInt8> = []
        if let separator = bytes.firstIndex(of: 0x1D) {
            interpretedPart = bytes[(separator + 1)...]
            bytes = Array(bytes[..<separator])
        }
        var cursor = 0
        var node: String?
        if bytes.starts(with: Array("node=".utf8)) {
            // The node name may contain spaces: it ends at " type=".
            guard let typeAt = find(bytes, Array(" type=".utf8), from: 5) else { return .failure(.noType) }
            node = String(decoding: bytes[5..<typeAt], as: UTF8.self)
            cursor = typeAt + 1
        }
        guard bytes[cursor...].starts(with: Array("type=".utf8)) else { return .failure(.noType) }
        cursor += 5
        let typeStart = cursor
        while cursor < bytes.count, bytes[cursor] != 0x20 { cursor += 1 }
        let type = String(decoding: bytes[typeStart..<cursor], as: UTF8.self)
        guard !type.isEmpty else { return .failure(.noType) }
        while cursor < bytes.count, bytes[cursor] == 0x20 { cursor += 1 }
        guard bytes[cursor...].starts(with: Array("msg=audit(".utf8)) else { return .failure(.noHeader) }
        cursor += 10
        func number(_ terminator: UInt8) -> UInt64? {
            var value: UInt64 = 0
            var digits = 0
            while cursor < bytes.count, (0x30...0x39).contains(bytes[cursor]), digits < 20 {
                let (product, overflow) = value.multipliedReportingOverflow(by: 10)
                guard !overflow else { return nil }
                value = product + UInt64(bytes[cursor] - 0x30)
                cursor += 1
                digits += 1
            }
            guard digits > 0, cursor < bytes.count, bytes[cursor] == terminator else { return nil }
            cursor += 1
            return value
        }
        guard let seconds = number(UInt8(ascii: ".")), seconds <= UInt64(Int64.max) else { return .failure(.badHeader) }
        let millisStart = cursor
        guard let millis = number(UInt8(ascii: ":")), cursor - millisStart - 1 <= 3 else { return .failure(.badHeader) }
        guard let serial = number(UInt8(ascii: ")")) else { return .failure(.badHeader) }
        // "):" or ") : ".
        while cursor < bytes.count, bytes[cursor] == 0x20 { cursor += 1 }
        guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: ":") else { return .failure(.badHeader) }
        cursor += 1
        return .success(AuditRecord(
            node: node, type: type, seconds: Int64(seconds), milliseconds: Int(millis), serial: serial,
            fields: fields(bytes[cursor...]), interpreted: fields(interpretedPart)
        ))
    }

    /// `name=value` pairs separated by spaces. A value is `"quoted"` (kept with its quotes),
    /// `'single quoted'` (the `msg='…'` of user-space records, kept whole), or runs to the next space.
    static func fields(_ bytes: ArraySlice<UInt8>) -> [(name: String, value: String)] {
        var result: [(name: String, value: String)] = []
        var cursor = bytes.startIndex
        let end = bytes.endIndex
        while cursor < end {
            while cursor < end, bytes[cursor] == 0x20 { cursor += 1 }
            guard cursor < end else { break }
            let nameStart = cursor
            while cursor < end, bytes[cursor] != UInt8(ascii: "="), bytes[cursor] != 0x20 { cursor += 1 }
            let name = String(decoding: bytes[nameStart..<cursor], as: UTF8.self)
            guard cursor < end, bytes[cursor] == UInt8(ascii: "=") else {
                // A bare word (no '='): kept as a field without a value.
                if !name.isEmpty { result.append((name, "")) }
                continue
            }
            cursor += 1
            let valueStart = cursor
            if cursor < end, bytes[cursor] == UInt8(ascii: "\"") || bytes[cursor] == UInt8(ascii: "'") {
                let quote = bytes[cursor]
                cursor += 1
                while cursor < end, bytes[cursor] != quote { cursor += 1 }
                if cursor < end { cursor += 1 }
            } else {
                while cursor < end, bytes[cursor] != 0x20 { cursor += 1 }
            }
            result.append((name, String(decoding: bytes[valueStart..<cursor], as: UTF8.self)))
        }
        return result
    }

    static func find(_ bytes: [UInt8], _ needle: [UInt8], from start: Int) -> Int? {
        guard needle.count <= bytes.count else { return nil }
        var index = start
        while index + needle.count <= bytes.count {
            if bytes[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}
