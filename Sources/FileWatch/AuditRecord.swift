#if canImport(Glibc)
import Glibc
#endif

/// One record of auditd's text format, as written to audit.log and fed to plugins:
/// `[node=NAME ]type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): field=value …[0x1D interpreted fields]`.
///
/// Pure Swift over bytes (no libauparse). The record keeps its line's bytes and the spans of its
/// fields, so parsing costs two allocations; values are read raw (`"quoted"`, hex or bare) with
/// `field(_:)` or decoded with `bytes(_:)`/`text(_:)` for the fields the kernel encodes as
/// untrusted strings. See docs/audit-format.md.
public struct AuditRecord: Sendable, Equatable {
    /// The `node=` prefix (auditd's `name_format`), which may contain spaces; nil when absent.
    public let node: String?
    /// The record type's name (`SYSCALL`, `PATH`, `UNKNOWN[1337]` as written).
    public let type: String
    /// Seconds since the epoch with milliseconds, as the record says.
    public let seconds: Int64
    public let milliseconds: Int
    public let serial: UInt64
    /// The line's bytes after the header (raw fields, then 0x1D and interpreted fields if any).
    let body: [UInt8]
    /// Every field's span in `body`; raw fields first, then `interpreted` ones from `interpretedStart`.
    let spans: [FieldSpan]
    let interpretedStart: Int

    /// What the assembler needs to know about the type, decided once while parsing.
    public let kind: Kind

    public enum Kind: UInt8, Sendable {
        case syscall, path, cwd, execve, proctitle, eoe
        /// A type that is a whole event by itself (`AuditAssembler.singleRecordTypes`).
        case single
        case other
    }

    /// Offsets in `body` (lines are at most 64 KiB, so 16 bits each).
    struct FieldSpan: Sendable, Equatable {
        var nameStart: UInt16
        var nameEnd: UInt16
        var valueStart: UInt16
        var valueEnd: UInt16
    }

    public static func == (lhs: AuditRecord, rhs: AuditRecord) -> Bool {
        lhs.node == rhs.node && lhs.type == rhs.type && lhs.seconds == rhs.seconds && lhs.milliseconds == rhs.milliseconds
            && lhs.serial == rhs.serial && lhs.fields.elementsEqual(rhs.fields, by: ==) && lhs.interpreted.elementsEqual(rhs.interpreted, by: ==)
    }

    /// Milliseconds since the epoch.
    public var time: Int64 { seconds &* 1_000 &+ Int64(milliseconds) }

    /// Raw fields in order (a record may repeat a name; the first wins in `field(_:)`).
    public var fields: [(name: String, value: String)] {
        spans[..<interpretedStart].map { (string(name: $0), string(value: $0)) }
    }

    /// The ENRICHED format's interpreted fields (after the 0x1D byte), in order.
    public var interpreted: [(name: String, value: String)] {
        spans[interpretedStart...].map { (string(name: $0), string(value: $0)) }
    }

    /// The raw value of the first raw field called `name`.
    public func field(_ name: String) -> String? {
        rawValue(name).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The value of the first interpreted field called `name` (`AUID`, `SYSCALL`), quotes removed.
    public func interpretedField(_ name: String) -> String? {
        guard let index = spanIndex(name, in: interpretedStart..<spans.count) else { return nil }
        let value = body[Int(spans[index].valueStart)..<Int(spans[index].valueEnd)]
        return String(decoding: Self.unquoted(value), as: UTF8.self)
    }

    /// The fields the kernel writes with `audit_log_untrustedstring`: quoted when printable, hex
    /// otherwise, `(null)` when absent. Other fields (`a0=ffffff9c`) are never hex-decoded.
    public static let encodedFields: Set<String> = [
        "name", "cwd", "proctitle", "exe", "comm", "path", "key", "dir", "new", "old", "root_dir", "cmd", "data", "acct",
    ]

    /// The decoded bytes of an encoded field (`name`, `cwd`, `proctitle`, …): quoted → the text
    /// inside the quotes, hex → its bytes, `(null)` → nil. nil too when the field is absent or
    /// its value is neither.
    public func bytes(_ name: String) -> [UInt8]? {
        guard let raw = rawValue(name) else { return nil }
        return Self.decode(raw)
    }

    /// `bytes(name)` as text (invalid UTF-8 repaired with U+FFFD).
    public func text(_ name: String) -> String? { bytes(name).map { String(decoding: $0, as: UTF8.self) } }

    /// A decimal field as an integer (`pid`, `exit=-2`); nil when absent or not decimal.
    public func integer(_ name: String) -> Int64? {
        rawValue(name).flatMap { Self.decimal($0) }
    }

    /// Quoted → literal; `(null)` → nil; even-length hex → bytes; anything else nil.
    public static func decode(_ raw: String) -> [UInt8]? { decode(Array(raw.utf8)[...]) }

    static func decode(_ raw: ArraySlice<UInt8>) -> [UInt8]? {
        if raw.count >= 2, raw.first == UInt8(ascii: "\""), raw.last == UInt8(ascii: "\"") {
            return Array(raw.dropFirst().dropLast())
        }
        if raw.isEmpty || raw.elementsEqual("(null)".utf8) { return nil }
        guard raw.count % 2 == 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: raw.count / 2)
        var index = raw.startIndex
        var out = 0
        while index < raw.endIndex {
            guard let high = hexDigit(raw[index]), let low = hexDigit(raw[index + 1]) else { return nil }
            bytes[out] = high << 4 | low
            out += 1
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

    /// `-12`, `4294967295` → the number; nil for anything else (and on overflow).
    static func decimal(_ raw: ArraySlice<UInt8>) -> Int64? {
        var index = raw.startIndex
        var negative = false
        if index < raw.endIndex, raw[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < raw.endIndex, raw.endIndex - index <= 19 else { return nil }
        var value: Int64 = 0
        while index < raw.endIndex {
            let digit = raw[index] &- 0x30
            guard digit < 10 else { return nil }
            value = value &* 10 &+ Int64(digit)
            index += 1
        }
        guard value >= 0 else { return nil }
        return negative ? -value : value
    }

    static func unquoted(_ raw: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        if raw.count >= 2, raw.first == UInt8(ascii: "\""), raw.last == UInt8(ascii: "\"") { return raw.dropFirst().dropLast() }
        return raw
    }

    /// Visits every raw field's name and value bytes in order, without allocating (the value raw:
    /// quotes kept, hex not decoded).
    public func forEachField(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        try self.body.withUnsafeBufferPointer { bytes in
            for span in spans[..<interpretedStart] {
                try body(
                    UnsafeBufferPointer(rebasing: bytes[Int(span.nameStart)..<Int(span.nameEnd)]),
                    UnsafeBufferPointer(rebasing: bytes[Int(span.valueStart)..<Int(span.valueEnd)])
                )
            }
        }
    }

    // MARK: Spans

    /// The raw value bytes of the first raw field called `name`.
    func rawValue(_ name: String) -> ArraySlice<UInt8>? {
        guard let index = spanIndex(name, in: 0..<interpretedStart) else { return nil }
        return value(at: index)
    }

    func value(at index: Int) -> ArraySlice<UInt8> {
        body[Int(spans[index].valueStart)..<Int(spans[index].valueEnd)]
    }

    func name(at index: Int) -> ArraySlice<UInt8> {
        body[Int(spans[index].nameStart)..<Int(spans[index].nameEnd)]
    }

    var rawFieldCount: Int { interpretedStart }

    func spanIndex(_ name: String, in range: Range<Int>) -> Int? {
        var name = name
        return name.withUTF8 { wanted in
            body.withUnsafeBufferPointer { bytes in
                for index in range {
                    let span = spans[index]
                    let length = Int(span.nameEnd - span.nameStart)
                    guard length == wanted.count else { continue }
                    var equal = true
                    var offset = 0
                    while offset < length {
                        if bytes[Int(span.nameStart) + offset] != wanted[offset] {
                            equal = false
                            break
                        }
                        offset += 1
                    }
                    if equal { return index }
                }
                return nil
            }
        }
    }

    private func string(name span: FieldSpan) -> String {
        String(decoding: body[Int(span.nameStart)..<Int(span.nameEnd)], as: UTF8.self)
    }

    private func string(value span: FieldSpan) -> String {
        String(decoding: body[Int(span.valueStart)..<Int(span.valueEnd)], as: UTF8.self)
    }
}

/// Why a line is not a record.
public enum AuditParseError: Error, Equatable, Sendable {
    case noType
    case noHeader
    case badHeader
    /// Longer than `AuditRecord.maximumLineLength` (the kernel's records are under 9 KiB).
    case tooLong
}

extension AuditRecord {
    /// Lines longer than this are refused (auditd's own limit is MAX_AUDIT_MESSAGE_LENGTH, 8970).
    public static let maximumLineLength = 65_535

    /// Parses one line (without its newline).
    public static func parse(_ line: some Collection<UInt8>) -> Result<AuditRecord, AuditParseError> {
        let bytes = Array(line)
        return bytes.withUnsafeBufferPointer { parse($0) }
    }

    /// Parses one line (without its newline) from a buffer; the record copies what it keeps.
    public static func parse(_ line: UnsafeBufferPointer<UInt8>) -> Result<AuditRecord, AuditParseError> {
        var end = line.count
        guard end <= maximumLineLength else { return .failure(.tooLong) }
        if end > 0, line[end - 1] == 0x0D { end -= 1 }
        var cursor = 0
        guard let base = line.baseAddress else { return .failure(.noType) }
        @inline(__always) func starts(with literal: StaticString, at position: Int) -> Bool {
            let count = literal.utf8CodeUnitCount
            return position + count <= end && memcmp(base + position, literal.utf8Start, count) == 0
        }
        var node: String?
        if end > 0, base[0] == UInt8(ascii: "n"), starts(with: "node=", at: 0) {
            // The node name may contain spaces: it ends at the first " type=".
            var at = 5
            while at < end, !(line[at] == 0x20 && starts(with: " type=", at: at)) { at += 1 }
            guard at < end else { return .failure(.noType) }
            node = String(decoding: UnsafeBufferPointer(rebasing: line[5..<at]), as: UTF8.self)
            cursor = at + 1
        }
        guard starts(with: "type=", at: cursor) else { return .failure(.noType) }
        cursor += 5
        let typeStart = cursor
        while cursor < end, line[cursor] != 0x20 { cursor += 1 }
        guard cursor > typeStart else { return .failure(.noType) }
        let (type, kind) = classify(UnsafeBufferPointer(rebasing: line[typeStart..<cursor]))
        while cursor < end, line[cursor] == 0x20 { cursor += 1 }
        guard starts(with: "msg=audit(", at: cursor) else { return .failure(.noHeader) }
        cursor += 10
        func number(_ terminator: UInt8, maximumDigits: Int) -> UInt64? {
            var value: UInt64 = 0
            var digits = 0
            while cursor < end, line[cursor] &- 0x30 < 10 {
                guard digits < maximumDigits else { return nil }
                let (product, overflow) = value.multipliedReportingOverflow(by: 10)
                let (sum, carry) = product.addingReportingOverflow(UInt64(line[cursor] - 0x30))
                guard !overflow, !carry else { return nil }
                value = sum
                cursor += 1
                digits += 1
            }
            guard digits > 0, cursor < end, line[cursor] == terminator else { return nil }
            cursor += 1
            return value
        }
        guard let seconds = number(UInt8(ascii: "."), maximumDigits: 18) else { return .failure(.badHeader) }
        guard let millis = number(UInt8(ascii: ":"), maximumDigits: 3) else { return .failure(.badHeader) }
        guard let serial = number(UInt8(ascii: ")"), maximumDigits: 20) else { return .failure(.badHeader) }
        // "):" or ") : ".
        while cursor < end, line[cursor] == 0x20 { cursor += 1 }
        guard cursor < end, line[cursor] == UInt8(ascii: ":") else { return .failure(.badHeader) }
        cursor += 1
        // Keep the body only: the header is in the stored properties.
        let body = Array(UnsafeBufferPointer(rebasing: line[cursor..<end]))
        var spans: [FieldSpan] = []
        var interpretedStart = 0
        body.withUnsafeBufferPointer { bytes in
            // A SYSCALL record has about 27 fields, with ENRICHED names about 37.
            spans.reserveCapacity(40)
            var separator = bytes.count
            if let base = bytes.baseAddress, let found = memchr(base, 0x1D, bytes.count) {
                separator = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
            }
            tokenize(bytes, from: 0, to: separator, into: &spans)
            interpretedStart = spans.count
            if separator < bytes.count { tokenize(bytes, from: separator + 1, to: bytes.count, into: &spans) }
        }
        return .success(AuditRecord(
            node: node, type: type, seconds: Int64(seconds), milliseconds: Int(millis), serial: serial,
            body: body, spans: spans, interpretedStart: interpretedStart, kind: kind
        ))
    }

    /// `name=value` pairs separated by spaces. A value is `"quoted"` (kept with its quotes),
    /// `'single quoted'` (the `msg='…'` of user-space records, kept whole), or runs to the next
    /// space. A bare word without `=` is a field with an empty value.
    static func tokenize(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, into spans: inout [FieldSpan]) {
        guard let base = bytes.baseAddress, start < end else { return }
        let space: UInt8 = 0x20
        let equals = UInt8(ascii: "=")
        var cursor = start
        while cursor < end {
            while cursor < end, base[cursor] == space { cursor += 1 }
            guard cursor < end else { break }
            let nameStart = cursor
            cursor = Scan.next(base, from: cursor, to: end, space, or: equals)
            let nameEnd = cursor
            guard cursor < end, base[cursor] == equals else {
                spans.append(FieldSpan(nameStart: UInt16(truncatingIfNeeded: nameStart), nameEnd: UInt16(truncatingIfNeeded: nameEnd), valueStart: UInt16(truncatingIfNeeded: nameEnd), valueEnd: UInt16(truncatingIfNeeded: nameEnd)))
                continue
            }
            cursor += 1
            let valueStart = cursor
            // The value ends at its closing quote, or at the next space.
            if cursor < end, base[cursor] == UInt8(ascii: "\"") || base[cursor] == UInt8(ascii: "'") {
                let quote = base[cursor]
                cursor += 1
                if cursor < end, let found = memchr(base + cursor, Int32(quote), end - cursor) {
                    cursor = base.distance(to: found.assumingMemoryBound(to: UInt8.self)) + 1
                } else {
                    cursor = end
                }
            } else {
                cursor = Scan.next(base, from: cursor, to: end, space, or: space)
            }
            spans.append(FieldSpan(nameStart: UInt16(truncatingIfNeeded: nameStart), nameEnd: UInt16(truncatingIfNeeded: nameEnd), valueStart: UInt16(truncatingIfNeeded: valueStart), valueEnd: UInt16(truncatingIfNeeded: cursor)))
        }
    }

    /// The type's name and kind; the common types use static strings (no allocation, no hashing).
    static func classify(_ type: UnsafeBufferPointer<UInt8>) -> (String, Kind) {
        func equals(_ literal: StaticString) -> Bool {
            guard literal.utf8CodeUnitCount == type.count, let base = type.baseAddress else { return false }
            return memcmp(base, literal.utf8Start, type.count) == 0
        }
        switch type.count {
        case 3 where equals("EOE"): return ("EOE", .eoe)
        case 3 where equals("CWD"): return ("CWD", .cwd)
        case 4 where equals("PATH"): return ("PATH", .path)
        case 6 where equals("EXECVE"): return ("EXECVE", .execve)
        case 7 where equals("SYSCALL"): return ("SYSCALL", .syscall)
        case 9 where equals("PROCTITLE"): return ("PROCTITLE", .proctitle)
        default:
            let name = String(decoding: type, as: UTF8.self)
            return (name, AuditAssembler.singleRecordTypes.contains(name) ? .single : .other)
        }
    }

    /// The subfields of a user-space record's `msg='…'` (`op=`, `acct=`, `exe=`, `res=`), parsed
    /// like a record's fields; empty when the record has none.
    public var messageFields: AuditRecord? {
        guard let raw = rawValue("msg"), raw.count >= 2, raw.first == UInt8(ascii: "'"), raw.last == UInt8(ascii: "'") else { return nil }
        let inner = Array(raw.dropFirst().dropLast())
        guard inner.count <= Self.maximumLineLength else { return nil }
        var spans: [FieldSpan] = []
        inner.withUnsafeBufferPointer { Self.tokenize($0, from: 0, to: $0.count, into: &spans) }
        return AuditRecord(
            node: node, type: type, seconds: seconds, milliseconds: milliseconds, serial: serial,
            body: inner, spans: spans, interpretedStart: spans.count, kind: kind
        )
    }
}

/// Finding the next of two bytes eight at a time (SWAR: the bytes of a 64-bit word compared at
/// once), which is where a tokenizer spends its time.
enum Scan {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let low7: UInt64 = 0x7F7F_7F7F_7F7F_7F7F

    /// The high bit of each byte of `word` that is zero, exactly (no false positives).
    @inline(__always) static func zeroBytes(_ word: UInt64) -> UInt64 {
        ~(((word & low7) &+ low7) | word | low7)
    }

    /// The index of the first `a` or `b` in `base[from..<end]`, or `end`.
    @inline(__always) static func next(_ base: UnsafePointer<UInt8>, from start: Int, to end: Int, _ a: UInt8, or b: UInt8) -> Int {
        var cursor = start
        let raw = UnsafeRawPointer(base)
        let patternA = ones &* UInt64(a)
        let patternB = ones &* UInt64(b)
        while cursor + 8 <= end {
            let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: cursor, as: UInt64.self))
            let hits = zeroBytes(word ^ patternA) | zeroBytes(word ^ patternB)
            if hits != 0 { return cursor + hits.trailingZeroBitCount >> 3 }
            cursor += 8
        }
        while cursor < end, base[cursor] != a, base[cursor] != b { cursor += 1 }
        return cursor
    }
}
