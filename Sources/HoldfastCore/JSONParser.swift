/// A strict JSON reader (RFC 8259) straight from bytes into `JSONValue`, in one pass.
///
/// Signed documents and requests are read on the broker's hot path; Foundation's `JSONDecoder`
/// into `JSONValue` tries every type in turn (each failure an allocated error) and needed a second
/// pass for duplicate names, and was most of the broker's time per attestation. This reader
/// accepts a subset of what `JSONDecoder` accepts and reads it to the same value (a test compares
/// them on generated and mutated documents):
/// - one value, white space (space, tab, LF, CR) only around tokens, nothing after it;
/// - no duplicate member name in any object (names compared after unescaping, as Swift compares
///   strings — see `JSONDuplicateKeys` for why duplicates are refused at all);
/// - strings are valid UTF-8 with control characters escaped; `\u` escapes pair surrogates, and
///   a lone surrogate is refused;
/// - a number written as an integer in Int64 range is `.int`; one written with a fraction or
///   exponent is `.int` when it is a whole number below 2^53 (`5.0`, `1e3`, as `JSONDecoder`
///   reads it), else `.double`, as is an integer past Int64; one that overflows a Double is
///   refused;
/// - at most `maximumDepth` nested containers;
/// - no byte-order mark, no comments, no JSON5.
public enum JSONParser {
    public static let maximumDepth = 512

    /// Why a text is not accepted, and where (a byte offset).
    public struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: Sendable, Equatable { case syntax, duplicateName(String), tooDeep, invalidUTF8, number }
        public let code: Code
        public let offset: Int

        public var description: String {
            switch code {
            case .syntax: "not JSON at byte \(offset)"
            case .duplicateName(let name): "the name \"\(name)\" appears twice in one object"
            case .tooDeep: "more than \(JSONParser.maximumDepth) nested containers"
            case .invalidUTF8: "a string at byte \(offset) is not valid UTF-8"
            case .number: "the number at byte \(offset) cannot be represented"
            }
        }

        /// The duplicated name, when that is the failure.
        public var duplicateName: String? {
            if case .duplicateName(let name) = code { return name }
            return nil
        }
    }

    /// Parses `bytes` as one JSON value.
    public static func parse(_ bytes: some Collection<UInt8>) throws(Failure) -> JSONValue {
        let result: Result<JSONValue, Failure>? = bytes.withContiguousStorageIfAvailable { buffer in
            var reader = Reader(buffer)
            return Result { () throws(Failure) in try reader.document() }
        }
        if let result { return try result.get() }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { buffer throws(Failure) in
            var reader = Reader(buffer)
            return try reader.document()
        }
    }

    struct Reader {
        let input: UnsafeBufferPointer<UInt8>
        var index = 0
        var depth = 0

        init(_ input: UnsafeBufferPointer<UInt8>) { self.input = input }

        func fail(_ code: Failure.Code, at offset: Int? = nil) -> Failure { Failure(code: code, offset: offset ?? index) }

        mutating func document() throws(Failure) -> JSONValue {
            skipSpace()
            let value = try self.value()
            skipSpace()
            guard index == input.count else { throw fail(.syntax) }
            return value
        }

        mutating func skipSpace() {
            while index < input.count {
                switch input[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func expect(_ literal: StaticString) throws(Failure) {
            let count = literal.utf8CodeUnitCount
            guard input.count - index >= count else { throw fail(.syntax) }
            let start = literal.utf8Start
            for offset in 0..<count where input[index + offset] != start[offset] { throw fail(.syntax, at: index + offset) }
            index += count
        }

        mutating func value() throws(Failure) -> JSONValue {
            guard index < input.count else { throw fail(.syntax) }
            switch input[index] {
            case UInt8(ascii: "{"): return try object()
            case UInt8(ascii: "["): return try array()
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try expect("true"); return .bool(true)
            case UInt8(ascii: "f"): try expect("false"); return .bool(false)
            case UInt8(ascii: "n"): try expect("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw fail(.syntax)
            }
        }

        mutating func enter() throws(Failure) {
            depth += 1
            guard depth <= JSONParser.maximumDepth else { throw fail(.tooDeep) }
        }

        mutating func object() throws(Failure) -> JSONValue {
            try enter()
            index += 1
            var members: [String: JSONValue] = [:]
            skipSpace()
            if index < input.count, input[index] == UInt8(ascii: "}") {
                index += 1
                depth -= 1
                return .object(members)
            }
            while true {
                skipSpace()
                guard index < input.count, input[index] == UInt8(ascii: "\"") else { throw fail(.syntax) }
                let nameOffset = index
                let name = try string()
                skipSpace()
                guard index < input.count, input[index] == UInt8(ascii: ":") else { throw fail(.syntax) }
                index += 1
                skipSpace()
                let member = try value()
                guard members.updateValue(member, forKey: name) == nil else { throw fail(.duplicateName(name), at: nameOffset) }
                skipSpace()
                guard index < input.count else { throw fail(.syntax) }
                if input[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard input[index] == UInt8(ascii: "}") else { throw fail(.syntax) }
                index += 1
                depth -= 1
                return .object(members)
            }
        }

        mutating func array() throws(Failure) -> JSONValue {
            try enter()
            index += 1
            var elements: [JSONValue] = []
            skipSpace()
            if index < input.count, input[index] == UInt8(ascii: "]") {
                index += 1
                depth -= 1
                return .array(elements)
            }
            while true {
                skipSpace()
                elements.append(try value())
                skipSpace()
                guard index < input.count else { throw fail(.syntax) }
                if input[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard input[index] == UInt8(ascii: "]") else { throw fail(.syntax) }
                index += 1
                depth -= 1
                return .array(elements)
            }
        }

        /// A string starting at its opening quote; leaves `index` after the closing one.
        mutating func string() throws(Failure) -> String {
            let start = index
            index += 1
            // The common case: no escapes; the bytes between the quotes are the string.
            var scan = index
            while scan < input.count {
                let byte = input[scan]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                scan += 1
            }
            guard scan < input.count else { throw fail(.syntax, at: start) }
            if input[scan] == UInt8(ascii: "\"") {
                guard let text = String(validating: UnsafeBufferPointer(rebasing: input[index..<scan]), as: UTF8.self) else { throw fail(.invalidUTF8, at: start) }
                index = scan + 1
                return text
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(scan - index + 16)
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: input[index..<scan]))
            index = scan
            while true {
                guard index < input.count else { throw fail(.syntax, at: start) }
                let byte = input[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    guard let text = String(validating: bytes, as: UTF8.self) else { throw fail(.invalidUTF8, at: start) }
                    return text
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < input.count else { throw fail(.syntax) }
                    let escape = input[index]
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): bytes.append(escape)
                    case UInt8(ascii: "b"): bytes.append(0x08)
                    case UInt8(ascii: "f"): bytes.append(0x0C)
                    case UInt8(ascii: "n"): bytes.append(0x0A)
                    case UInt8(ascii: "r"): bytes.append(0x0D)
                    case UInt8(ascii: "t"): bytes.append(0x09)
                    case UInt8(ascii: "u"): appendScalar(try unicodeEscape(), to: &bytes)
                    default: throw fail(.syntax, at: index - 1)
                    }
                default:
                    guard byte >= 0x20 else { throw fail(.syntax) }
                    bytes.append(byte)
                    index += 1
                }
            }
        }

        /// After `\u`: four hex digits, and a second `\uXXXX` for a surrogate pair.
        mutating func unicodeEscape() throws(Failure) -> Unicode.Scalar {
            let at = index - 2
            let first = try hex4()
            if (0xDC00...0xDFFF).contains(first) { throw fail(.syntax, at: at) }
            if (0xD800...0xDBFF).contains(first) {
                guard input.count - index >= 2, input[index] == UInt8(ascii: "\\"), input[index + 1] == UInt8(ascii: "u") else { throw fail(.syntax, at: at) }
                index += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw fail(.syntax, at: at) }
                let combined = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
                guard let scalar = Unicode.Scalar(combined) else { throw fail(.syntax, at: at) }
                return scalar
            }
            guard let scalar = Unicode.Scalar(first) else { throw fail(.syntax, at: at) }
            return scalar
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            guard input.count - index >= 4 else { throw fail(.syntax) }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = input[index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw fail(.syntax)
                }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            return value
        }

        func appendScalar(_ scalar: Unicode.Scalar, to bytes: inout [UInt8]) {
            UTF8.encode(scalar) { bytes.append($0) }
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
        mutating func number() throws(Failure) -> JSONValue {
            let start = index
            var negative = false
            if input[index] == UInt8(ascii: "-") {
                negative = true
                index += 1
            }
            guard index < input.count, isDigit(input[index]) else { throw fail(.syntax) }
            // Integer digits, accumulated as a negative magnitude so Int64.min fits.
            var magnitude: Int64 = 0
            var overflow = false
            if input[index] == UInt8(ascii: "0") {
                index += 1
            } else {
                while index < input.count, isDigit(input[index]) {
                    let digit = Int64(input[index] - UInt8(ascii: "0"))
                    let (times, timesOverflow) = magnitude.multipliedReportingOverflow(by: 10)
                    let (next, minusOverflow) = times.subtractingReportingOverflow(digit)
                    if timesOverflow || minusOverflow { overflow = true } else { magnitude = next }
                    index += 1
                }
            }
            var integral = true
            if index < input.count, input[index] == UInt8(ascii: ".") {
                integral = false
                index += 1
                guard index < input.count, isDigit(input[index]) else { throw fail(.syntax) }
                while index < input.count, isDigit(input[index]) { index += 1 }
            }
            if index < input.count, input[index] == UInt8(ascii: "e") || input[index] == UInt8(ascii: "E") {
                integral = false
                index += 1
                if index < input.count, input[index] == UInt8(ascii: "+") || input[index] == UInt8(ascii: "-") { index += 1 }
                guard index < input.count, isDigit(input[index]) else { throw fail(.syntax) }
                while index < input.count, isDigit(input[index]) { index += 1 }
            }
            if integral, !overflow {
                if negative { return .int(magnitude) }
                let (positive, negateOverflow) = Int64(0).subtractingReportingOverflow(magnitude)
                if !negateOverflow { return .int(positive) }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: input[start..<index]), as: UTF8.self)
            guard let double = Double(text), double.isFinite else { throw fail(.number, at: start) }
            // As JSONDecoder reads a whole number written with a fraction or exponent (`5.0`, `1e3`)
            // into Int64 — but only below 2^53, where the Double is the decimal text exactly; above
            // it (or after an integer overflow) the readers could disagree on which integer, so
            // such a number stays a Double (and an integer field refuses it).
            if double.magnitude < 9_007_199_254_740_992, let exact = Int64(exactly: double) { return .int(exact) }
            return .double(double)
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    }
}

extension JSONValue {
    /// Parses JSON text strictly (see `JSONParser`): one pass, duplicate names refused.
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONParser.Failure) -> JSONValue {
        try JSONParser.parse(bytes)
    }
}
