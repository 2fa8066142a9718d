import Foundation
import HoldfastCore
import Testing

/// The strict reader against the reference it replaces on the hot paths (`JSONDecoder` into
/// `JSONValue` after the duplicate-name scan): the same value on every document both accept, and
/// never a document the reference refuses.
@Suite struct JSONParserTests {
    static func reference(_ bytes: [UInt8]) -> JSONValue? {
        guard JSONDuplicateKeys.first(in: bytes) == nil else { return nil }
        return try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    @Test(arguments: [
        (#"{"a":1,"b":[true,false,null],"c":"x"}"#, JSONValue.object(["a": 1, "b": .array([true, false, .null]), "c": "x"])),
        (" \t\r\n[ 1 , -2 ]\n", .array([1, -2])),
        ("5.0", .int(5)),
        ("1e3", .int(1_000)),
        ("-0", .int(0)),
        ("1.5", .double(1.5)),
        ("-9223372036854775808", .int(Int64.min)),
        ("9223372036854775807", .int(Int64.max)),
        ("9223372036854775808", .double(9_223_372_036_854_775_808)),
        ("-9223372036854775809", .double(-9_223_372_036_854_775_808)),
        ("9007199254740991.0", .int(9_007_199_254_740_991)),
        (#""\u00e9\n\t\"\\\/\b\f\r""#, .string("é\n\t\"\\/\u{08}\u{0C}\r")),
        (#""\ud83d\ude00""#, .string("😀")),
        (#""\u0000""#, .string("\u{0}")),
        ("\"😀 ü\"", .string("😀 ü")),
        ("{}", .object([:])),
        ("[]", .array([])),
    ])
    func readsWhatJSONDecoderReads(_ text: String, _ expected: JSONValue) throws {
        let bytes = Array(text.utf8)
        #expect(try JSONValue.parse(bytes) == expected)
        #expect(Self.reference(bytes) == expected)
    }

    /// Where Foundation reads an integer exactly from digits that a Double cannot hold, this
    /// reader gives a Double (an integer field then refuses it): never a different integer.
    @Test(arguments: ["9007199254740993.0", "1234567890123456789e0", "12345678901234567.0", "-9223372036854775808.5", "-9223372036854775810"])
    func neverADifferentInteger(_ text: String) throws {
        let mine = try JSONValue.parse(Array(text.utf8))
        #expect(mine.intValue == nil, "\(mine)")
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "[1 2]", "01", "1.", ".5", "1e", "+1", "-", "tru", "nul", "NaN", "Infinity",
        "\"a", "\"\\x\"", "\"\\u12\"", "\"\u{01}\"", "[1]]", "{\"a\" 1}", "{a:1}", "'a'", "1 2", "// x\n1", "1e400",
        #""\udc00""#, #""\ud800""#, #""\ud800\u0041""#,
    ])
    func refusesWhatIsNotStrictJSON(_ text: String) {
        #expect(throws: JSONParser.Failure.self) { try JSONValue.parse(Array(text.utf8)) }
    }

    @Test func refusesInvalidUTF8AndAByteOrderMark() {
        #expect(throws: JSONParser.Failure.self) { try JSONValue.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONParser.Failure.self) { try JSONValue.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }  // an encoded surrogate
        #expect(throws: JSONParser.Failure.self) { try JSONValue.parse([0xEF, 0xBB, 0xBF] + Array("{}".utf8)) }
    }

    @Test(arguments: [
        (#"{"a":1,"a":2}"#, "a"),
        (#"{"x":{"b":1,"b":2}}"#, "b"),
        (#"{"alg":1,"\u0061lg":2}"#, "alg"),
        (#"[{"k":1},{"k":2,"k":3}]"#, "k"),
        (#"{"\ud83d\ude00":1,"😀":2}"#, "😀"),
    ])
    func refusesDuplicateNamesAtAnyDepth(_ text: String, _ name: String) {
        do {
            _ = try JSONValue.parse(Array(text.utf8))
            Issue.record("accepted a duplicate name")
        } catch {
            #expect(error.duplicateName == name)
        }
    }

    @Test func nestingIsBounded() throws {
        let deep = String(repeating: "[", count: JSONParser.maximumDepth) + String(repeating: "]", count: JSONParser.maximumDepth)
        #expect(throws: Never.self) { try JSONValue.parse(Array(deep.utf8)) }
        let tooDeep = "[" + deep + "]"
        do {
            _ = try JSONValue.parse(Array(tooDeep.utf8))
            Issue.record("parsed \(JSONParser.maximumDepth + 1) levels")
        } catch {
            #expect(error.code == .tooDeep)
        }
    }

    // MARK: Differential

    /// A small deterministic generator (SplitMix64), so a failure reproduces.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
        mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

        mutating func space() -> String { below(4) == 0 ? pick([" ", "\n", "\t", "\r\n", "  "]) : "" }

        mutating func string() -> String {
            var text = "\""
            for _ in 0..<below(8) {
                switch below(10) {
                case 0: text += pick(["\\n", "\\t", "\\\"", "\\\\", "\\/", "\\b", "\\f", "\\r"])
                case 1: text += String(format: "\\u%04x", below(0xD800))
                case 2: text += pick(["\\ud83d\\ude00", "😀", "é", "ü", "中", "e\u{301}"])
                case 3: text += pick(["a", "b", "k"])  // to make duplicate names likely
                default: text += String(UnicodeScalar(UInt8(0x61 + below(26))))
                }
            }
            return text + "\""
        }

        mutating func number() -> String {
            switch below(8) {
            case 0: return String(Int64(bitPattern: next()))
            case 1: return "\(below(100)).\(below(100))"
            case 2: return "\(below(10))e\(below(5))"
            case 3: return "-\(below(1_000))"
            case 4: return "\(below(10)).0"
            case 5: return "\(below(10))E-\(below(3))"
            case 6: return "-0"
            default: return String(below(1_000_000))
            }
        }

        mutating func value(depth: Int = 0) -> String {
            switch depth > 3 ? below(4) : below(7) {
            case 0: return pick(["true", "false", "null"])
            case 1: return number()
            case 2, 3: return string()
            case 4:
                return "[" + space() + (0..<below(4)).map { _ in value(depth: depth + 1) }.joined(separator: space() + "," + space()) + space() + "]"
            default:
                return "{" + space() + (0..<below(4)).map { _ in string() + space() + ":" + space() + value(depth: depth + 1) }.joined(separator: "," + space()) + space() + "}"
            }
        }

        /// One random edit: a byte changed, removed, inserted or duplicated.
        mutating func mutate(_ bytes: [UInt8]) -> [UInt8] {
            guard !bytes.isEmpty else { return [UInt8(below(256))] }
            var copy = bytes
            let at = below(copy.count)
            let interesting: [UInt8] = Array("{}[],:\"\\0123456789-+.eE tfn".utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xED, 0xFF]
            switch below(4) {
            case 0: copy[at] = below(2) == 0 ? pick(interesting) : UInt8(below(256))
            case 1: copy.remove(at: at)
            case 2: copy.insert(pick(interesting), at: at)
            default: copy.insert(contentsOf: copy[at..<min(copy.count, at + 1 + below(6))], at: at)
            }
            return copy
        }
    }

    @Test func agreesWithJSONDecoderOnGeneratedAndMutatedDocuments() {
        var generator = Generator(state: 0x4F1B_5EED)
        var agreed = 0
        var stricter = 0
        for _ in 0..<4_000 {
            let document = Array(generator.value().utf8)
            var candidates = [document]
            for _ in 0..<6 { candidates.append(generator.mutate(candidates.last ?? document)) }
            for candidate in candidates {
                let mine = try? JSONValue.parse(candidate)
                let theirs = Self.reference(candidate)
                switch (mine, theirs) {
                case (let mine?, let theirs?):
                    #expect(mine == theirs, "\(String(decoding: candidate, as: UTF8.self))")
                    agreed += 1
                case (let mine?, nil):
                    Issue.record("accepted what JSONDecoder refuses: \(String(decoding: candidate, as: UTF8.self)) → \(mine)")
                case (nil, .some):
                    stricter += 1
                case (nil, nil):
                    break
                }
            }
            // Every generated document (before mutation) is accepted by both.
            if (try? JSONValue.parse(document)) == nil, Self.reference(document) != nil {
                Issue.record("refused a generated document: \(String(decoding: document, as: UTF8.self))")
            }
        }
        #expect(agreed > 4_000)
        // Lone surrogates written as \u escapes in mutated text are the expected strict cases.
        #expect(stricter < agreed / 20, "refused \(stricter) documents JSONDecoder reads")
    }
}

/// `compactText` against the encoder it stands in for.
@Suite struct JSONCompactTextTests {
    static func encoded(_ value: JSONValue) -> String? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test(arguments: [
        JSONValue.object(["b": 1, "a": .array([true, .null, .double(1.5)]), "B": "x/y", "é": "\u{7F}\u{2028}", "e\u{301}x": "q", "10": 1, "9": 2, "ﬁ": 3, "😀": 4, "\u{FFFD}": 5]),
        .string("\"\\\n\r\t\u{08}\u{0C}\u{01}\u{1F}😀"),
        .double(0.1), .double(1e100), .double(-2.5e-8), .double(123456789.125), .int(Int64.min), .double(1e21), .double(.leastNonzeroMagnitude),
        .double(2.0), .double(-0.0), .double(12.0), .double(1e15), .double(1e16), .double(-3e20), .array([.double(100.0), .double(0.5)]),
    ])
    func writesWhatJSONEncoderWrites(_ value: JSONValue) {
        #expect(value.compactText == Self.encoded(value))
    }

    @Test func nonFiniteNumbersAreWrittenAsNull() {
        #expect(JSONValue.array([.double(.nan), .double(.infinity)]).compactText == "[null,null]")
    }

    @Test func agreesOnGeneratedDocuments() throws {
        var generator = JSONParserTests.Generator(state: 0xC0FF_EE11)
        for _ in 0..<3_000 {
            guard let value = try? JSONValue.parse(Array(generator.value().utf8)) else { continue }
            #expect(value.compactText == Self.encoded(value))
            #expect(try JSONValue.parse(Array(value.compactText.utf8)) == value)
        }
    }
}
