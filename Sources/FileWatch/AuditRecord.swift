#if canImport(Glibc)
import Glibc
#endif

/// One record of auditd's text format, as written to audit.log and fed to plugins:
/// `[node=NAME ]type=TYPE msg=audit(SECONDS.MILLIS:SERIAL): field=value …[0x1D interpreted fields]`.
///
/// Pure Swift over bytes (no libauparse). The record keeps its line's bytes and the spans of its
/// raw fields in one allocation; values are read raw (`"quoted"`, hex or bare) with
/// `field(_:)` or decoded with `bytes(_:)`/`text(_:)` for the fields the kernel encodes as
/// untrusted strings. See docs/audit-format.md.
public struct AuditRecord: Sendable, Equatable {
    /// The `node=` prefix (auditd's `name_format`), which may contain spaces; nil when absent.
    public let node: String?
    /// The record type's name (`SYSCALL`, `PATH`, `UNKNOWN[1337]` as written).
    public var type: String {
        switch kind {
        case .syscall: "SYSCALL"
        case .path: "PATH"
        case .cwd: "CWD"
        case .execve: "EXECVE"
        case .proctitle: "PROCTITLE"
        case .eoe: "EOE"
        case .single, .other: otherType ?? ""
        }
    }
    /// The type's name when it is not one of the common kinds (those need no string per record).
    let otherType: String?
    /// Seconds since the epoch with milliseconds, as the record says.
    public let seconds: Int64
    public let milliseconds: Int
    public let serial: UInt64
    /// The line's bytes after the header (raw fields, then 0x1D and interpreted fields if any).
    /// One allocation per record: the body's bytes (the line after the header: raw fields, then
    /// 0x1D and interpreted fields if any), followed by the raw fields' spans, 8 bytes each.
    /// The interpreted fields (from byte `interpretedOffset`) are tokenized only when asked for:
    /// most readers never need them.
    @usableFromInline let storage: [UInt8]
    @usableFromInline let bodyCount: Int
    /// The number of raw fields (all spans stored).
    @usableFromInline let interpretedStart: Int
    let interpretedOffset: Int

    /// The bytes this record keeps (for memory bounds).
    public var byteCount: Int { storage.count }

    @inlinable func span(_ index: Int) -> FieldSpan {
        storage.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: bodyCount + index * MemoryLayout<FieldSpan>.stride, as: FieldSpan.self) }
    }

    init(node: String?, type: String, seconds: Int64, milliseconds: Int, serial: UInt64, body: UnsafeBufferPointer<UInt8>, spans: UnsafeBufferPointer<FieldSpan>, interpretedOffset: Int, kind: Kind) {
        self.node = node
        otherType = kind == .single || kind == .other ? type : nil
        self.seconds = seconds
        self.milliseconds = milliseconds
        self.serial = serial
        self.kind = kind
        interpretedStart = spans.count
        self.interpretedOffset = interpretedOffset
        bodyCount = body.count
        let spanBytes = spans.count * MemoryLayout<FieldSpan>.stride
        // (Not `init(unsafeUninitializedCapacity:)`: it looks up generic metadata on every call.)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(body.count + spanBytes)
        bytes.append(contentsOf: body)
        bytes.append(contentsOf: UnsafeRawBufferPointer(spans))
        storage = bytes
    }

    /// What the assembler needs to know about the type, decided once while parsing.
    public let kind: Kind

    public enum Kind: UInt8, Sendable {
        case syscall, path, cwd, execve, proctitle, eoe
        /// A type that is a whole event by itself (`AuditAssembler.singleRecordTypes`).
        case single
        case other
    }

    /// Offsets in `body` (lines are at most 64 KiB, so 16 bits each).
    @usableFromInline
    struct FieldSpan: Sendable, Equatable {
        @usableFromInline var nameStart: UInt16
        @usableFromInline var nameEnd: UInt16
        @usableFromInline var valueStart: UInt16
        @usableFromInline var valueEnd: UInt16
    }

    public static func == (lhs: AuditRecord, rhs: AuditRecord) -> Bool {
        lhs.node == rhs.node && lhs.type == rhs.type && lhs.seconds == rhs.seconds && lhs.milliseconds == rhs.milliseconds
            && lhs.serial == rhs.serial && lhs.fields.elementsEqual(rhs.fields, by: ==) && lhs.interpreted.elementsEqual(rhs.interpreted, by: ==)
    }

    /// Milliseconds since the epoch.
    public var time: Int64 { seconds &* 1_000 &+ Int64(milliseconds) }

    /// Raw fields in order (a record may repeat a name; the first wins in `field(_:)`).
    public var fields: [(name: String, value: String)] {
        (0..<interpretedStart).map { (string(name: span($0)), string(value: span($0))) }
    }

    /// The ENRICHED format's interpreted fields (after the 0x1D byte), in order.
    public var interpreted: [(name: String, value: String)] {
        withInterpretedSpans { spans in spans.map { (string(name: $0), string(value: $0)) } }
    }

    /// The interpreted fields' spans (in `storage`), tokenized on the spot into temporary memory.
    func withInterpretedSpans<T>(_ body: (UnsafeBufferPointer<FieldSpan>) -> T) -> T {
        let length = bodyCount - interpretedOffset
        return withUnsafeTemporaryAllocation(of: FieldSpan.self, capacity: length / 2 + 2) { spans in
            let count = storage.withUnsafeBufferPointer { bytes in
                Self.tokenize(UnsafeBufferPointer(rebasing: bytes[0..<bodyCount]), from: interpretedOffset, to: bodyCount, into: spans, at: 0)
            }
            return body(UnsafeBufferPointer(rebasing: spans[0..<count]))
        }
    }

    /// The raw value of the first raw field called `name`.
    public func field(_ name: String) -> String? {
        rawValue(name).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The value of the first interpreted field called `name` (`AUID`, `SYSCALL`), quotes removed.
    public func interpretedField(_ name: String) -> String? {
        guard interpretedOffset < bodyCount else { return nil }
        let wanted = Array(name.utf8)
        return withInterpretedSpans { spans in
            guard let span = spans.first(where: { storage[Int($0.nameStart)..<Int($0.nameEnd)].elementsEqual(wanted) }) else { return nil }
            return String(decoding: Self.unquoted(storage[Int(span.valueStart)..<Int(span.valueEnd)]), as: UTF8.self)
        }
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
    @inlinable
    public func forEachField(_ visit: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        let spansAt = bodyCount
        let stride = MemoryLayout<FieldSpan>.stride
        let count = interpretedStart
        try storage.withUnsafeBytes { raw in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            for index in 0..<count {
                let span = raw.loadUnaligned(fromByteOffset: spansAt + index * stride, as: FieldSpan.self)
                try visit(
                    UnsafeBufferPointer(start: base + Int(span.nameStart), count: Int(span.nameEnd &- span.nameStart)),
                    UnsafeBufferPointer(start: base + Int(span.valueStart), count: Int(span.valueEnd &- span.valueStart))
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
        let span = span(index)
        return storage[Int(span.valueStart)..<Int(span.valueEnd)]
    }

    func name(at index: Int) -> ArraySlice<UInt8> {
        let span = span(index)
        return storage[Int(span.nameStart)..<Int(span.nameEnd)]
    }

    var rawFieldCount: Int { interpretedStart }

    func spanIndex(_ name: String, in range: Range<Int>) -> Int? {
        var name = name
        return name.withUTF8 { wanted in
            storage.withUnsafeBufferPointer { bytes in
                for index in range {
                    let span = span(index)
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
        String(decoding: storage[Int(span.nameStart)..<Int(span.nameEnd)], as: UTF8.self)
    }

    private func string(value span: FieldSpan) -> String {
        String(decoding: storage[Int(span.valueStart)..<Int(span.valueEnd)], as: UTF8.self)
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
        var scratch: [FieldSpan] = []
        var error = AuditParseError.noType
        guard let record = parse(line, scratch: &scratch, error: &error) else { return .failure(error) }
        return .success(record)
    }

    /// `parse(_:)` with the caller's span buffer, reused from line to line (the stream's); nil
    /// with `error` set when the line is not a record. (No `Result` on the hot path: its
    /// generic value witnesses cost more than the parse of a short record.)
    static func parse(_ line: UnsafeBufferPointer<UInt8>, scratch: inout [FieldSpan], error: inout AuditParseError) -> AuditRecord? {
        func failure(_ reason: AuditParseError) -> AuditRecord? {
            error = reason
            return nil
        }
        var end = line.count
        if end > 0, line[end - 1] == 0x0D { end -= 1 }
        guard end <= maximumLineLength else { return failure(.tooLong) }
        var cursor = 0
        guard let base = line.baseAddress else { return failure(.noType) }
        @inline(__always) func starts(with literal: StaticString, at position: Int) -> Bool {
            let count = literal.utf8CodeUnitCount
            return position + count <= end && memcmp(base + position, literal.utf8Start, count) == 0
        }
        var node: String?
        if end > 0, base[0] == UInt8(ascii: "n"), starts(with: "node=", at: 0) {
            // The node name may contain spaces: it ends at the first " type=".
            var at = 5
            while at < end, !(line[at] == 0x20 && starts(with: " type=", at: at)) { at += 1 }
            guard at < end else { return failure(.noType) }
            node = Self.exactText(UnsafeBufferPointer(rebasing: line[5..<at]))
            cursor = at + 1
        }
        guard starts(with: "type=", at: cursor) else { return failure(.noType) }
        cursor += 5
        let typeStart = cursor
        while cursor < end, line[cursor] != 0x20 { cursor += 1 }
        guard cursor > typeStart else { return failure(.noType) }
        let (type, kind) = classify(UnsafeBufferPointer(rebasing: line[typeStart..<cursor]))
        while cursor < end, line[cursor] == 0x20 { cursor += 1 }
        guard starts(with: "msg=audit(", at: cursor) else { return failure(.noHeader) }
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
        // At most 11 digits of seconds (year 5138): times in milliseconds never overflow.
        guard let seconds = number(UInt8(ascii: "."), maximumDigits: 11) else { return failure(.badHeader) }
        guard let millis = number(UInt8(ascii: ":"), maximumDigits: 3) else { return failure(.badHeader) }
        guard let serial = number(UInt8(ascii: ")"), maximumDigits: 20) else { return failure(.badHeader) }
        // "):" or ") : ".
        while cursor < end, line[cursor] == 0x20 { cursor += 1 }
        guard cursor < end, line[cursor] == UInt8(ascii: ":") else { return failure(.badHeader) }
        cursor += 1
        // Keep the body only: the header is in the stored properties.
        let body = UnsafeBufferPointer(rebasing: line[cursor..<end])
        // A field takes at least two bytes ("a " or "a="): this many spans always suffice.
        let most = body.count / 2 + 2
        if scratch.count < most { scratch = Array(repeating: FieldSpan(nameStart: 0, nameEnd: 0, valueStart: 0, valueEnd: 0), count: max(most, 64)) }
        return scratch.withUnsafeMutableBufferPointer { spans in
            // The raw fields end at the ENRICHED separator (0x1D) or the end of the line.
            var separator = body.count
            let count = tokenize(body, from: 0, to: body.count, into: spans, at: 0, stoppingAt: &separator)
            return AuditRecord(
                node: node, type: type, seconds: Int64(seconds), milliseconds: Int(millis), serial: serial,
                body: body, spans: UnsafeBufferPointer(rebasing: spans[0..<count]), interpretedOffset: min(separator + 1, body.count), kind: kind
            )
        }
    }

    /// `name=value` pairs separated by spaces. A value is `"quoted"` (kept with its quotes),
    /// `'single quoted'` (the `msg='…'` of user-space records, kept whole), or runs to the next
    /// space. A bare word without `=` is a field with an empty value.
    /// Writes the spans into `spans` from index `first` (which must have room: one span per two
    /// bytes) and returns the index after the last.
    static func tokenize(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, into spans: UnsafeMutableBufferPointer<FieldSpan>, at first: Int) -> Int {
        var ignored = end
        return tokenize(bytes, from: start, to: end, into: spans, at: first, stoppingAt: &ignored, separator: 0x20)
    }

    /// The same, stopping at the first `separator` byte outside a quoted value (0x1D for the raw
    /// fields of an ENRICHED record), whose index goes to `stop` (else `stop` is left as is).
    static func tokenize(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, into spans: UnsafeMutableBufferPointer<FieldSpan>, at first: Int, stoppingAt stop: inout Int, separator: UInt8 = 0x1D) -> Int {
        var next = first
        guard let base = bytes.baseAddress, start < end else { return next }
        let space: UInt8 = 0x20
        let equals = UInt8(ascii: "=")
        var cursor = start
        while cursor < end {
            while cursor < end, base[cursor] == space { cursor += 1 }
            guard cursor < end else { break }
            if base[cursor] == separator {
                stop = cursor
                break
            }
            let nameStart = cursor
            cursor = Scan.next(base, from: cursor, to: end, space, equals, separator)
            let nameEnd = cursor
            guard cursor < end, base[cursor] == equals else {
                spans[next] = FieldSpan(nameStart: UInt16(truncatingIfNeeded: nameStart), nameEnd: UInt16(truncatingIfNeeded: nameEnd), valueStart: UInt16(truncatingIfNeeded: nameEnd), valueEnd: UInt16(truncatingIfNeeded: nameEnd))
                next += 1
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
                cursor = Scan.next(base, from: cursor, to: end, space, separator, separator)
            }
            spans[next] = FieldSpan(nameStart: UInt16(truncatingIfNeeded: nameStart), nameEnd: UInt16(truncatingIfNeeded: nameEnd), valueStart: UInt16(truncatingIfNeeded: valueStart), valueEnd: UInt16(truncatingIfNeeded: cursor))
            next += 1
        }
        return next
    }

    /// Text that keeps bytes apart: valid UTF-8 as is, else each invalid byte as `\xHH` (so two
    /// different node names never become one through U+FFFD).
    static func exactText(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        if let valid = String(validating: bytes, as: UTF8.self) { return valid }
        let digits = Array("0123456789ABCDEF")
        var output = ""
        var index = 0
        while index < bytes.count {
            // The longest valid sequence starting here, else one escaped byte.
            var taken = 0
            for length in (1...min(4, bytes.count - index)).reversed() {
                if let piece = String(validating: UnsafeBufferPointer(rebasing: bytes[index..<(index + length)]), as: UTF8.self) {
                    output += piece
                    taken = length
                    break
                }
            }
            if taken == 0 {
                output += "\\x" + String(digits[Int(bytes[index] >> 4)]) + String(digits[Int(bytes[index] & 0x0F)])
                taken = 1
            }
            index += taken
        }
        return output
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
            if AuditAssembler.singleRecordTypes.contains(name) { return (name, .single) }
            // `UNKNOWN[1999]`: a number auditd had no name for; the same rule by number.
            if name.hasPrefix("UNKNOWN["), name.hasSuffix("]"), let number = Int(name.dropFirst(8).dropLast()), AuditAssembler.isSingleRecordType(number) {
                return (name, .single)
            }
            return (name, .other)
        }
    }

    /// The subfields of a user-space record's `msg='…'` (`op=`, `acct=`, `exe=`, `res=`), parsed
    /// like a record's fields; empty when the record has none.
    public var messageFields: AuditRecord? {
        guard let raw = rawValue("msg"), raw.count >= 2, raw.first == UInt8(ascii: "'"), raw.last == UInt8(ascii: "'") else { return nil }
        let inner = Array(raw.dropFirst().dropLast())
        guard inner.count <= Self.maximumLineLength else { return nil }
        var spans = Array(repeating: FieldSpan(nameStart: 0, nameEnd: 0, valueStart: 0, valueEnd: 0), count: inner.count / 2 + 2)
        return inner.withUnsafeBufferPointer { bytes in
            spans.withUnsafeMutableBufferPointer { spans in
                let count = Self.tokenize(bytes, from: 0, to: bytes.count, into: spans, at: 0)
                return AuditRecord(
                    node: node, type: type, seconds: seconds, milliseconds: milliseconds, serial: serial,
                    body: bytes, spans: UnsafeBufferPointer(rebasing: spans[0..<count]), interpretedOffset: bytes.count, kind: kind
                )
            }
        }
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

    /// The index of the first `a`, `b` or `c` in `base[from..<end]`, or `end`.
    @inline(__always) static func next(_ base: UnsafePointer<UInt8>, from start: Int, to end: Int, _ a: UInt8, _ b: UInt8, _ c: UInt8) -> Int {
        var cursor = start
        let raw = UnsafeRawPointer(base)
        let patternA = ones &* UInt64(a)
        let patternB = ones &* UInt64(b)
        let patternC = ones &* UInt64(c)
        while cursor + 8 <= end {
            let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: cursor, as: UInt64.self))
            let hits = zeroBytes(word ^ patternA) | zeroBytes(word ^ patternB) | zeroBytes(word ^ patternC)
            if hits != 0 { return cursor + hits.trailingZeroBitCount >> 3 }
            cursor += 8
        }
        while cursor < end, base[cursor] != a, base[cursor] != b, base[cursor] != c { cursor += 1 }
        return cursor
    }
}
