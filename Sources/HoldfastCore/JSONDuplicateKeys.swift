/// Finding duplicate member names in JSON objects.
///
/// RFC 8259 §4 leaves duplicate names undefined, and parsers disagree (first wins, last wins,
/// error). Two parties reading one signed document differently is how signature checks get
/// bypassed, so Holdfast refuses any signed header, claims set, policy or request with a
/// duplicate name at any depth (RFC 7515 §5.2 and RFC 7519 §4 allow exactly this).
public enum JSONDuplicateKeys {
    /// The first duplicated member name, or nil. Meant for text that already parsed as JSON.
    public static func first(in bytes: some Collection<UInt8>) -> String? {
        let input = Array(bytes)
        // One entry per open container: nil for arrays, the names seen so far for objects.
        var stack: [Set<String>?] = []
        var expectingKey = false
        var index = 0
        while index < input.count {
            let byte = input[index]
            switch byte {
            case UInt8(ascii: "{"):
                stack.append([])
                expectingKey = true
            case UInt8(ascii: "["):
                stack.append(nil)
                expectingKey = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = stack.popLast()
                expectingKey = false
            case UInt8(ascii: ":"):
                expectingKey = false
            case UInt8(ascii: ","):
                expectingKey = stack.last.map { $0 != nil } ?? false
            case UInt8(ascii: "\""):
                let (text, end) = string(input, from: index + 1)
                index = end
                if expectingKey, let last = stack.indices.last, var names = stack[last] {
                    if names.contains(text) { return text }
                    names.insert(text)
                    stack[last] = names
                }
            default:
                break
            }
            index += 1
        }
        return nil
    }

    /// Decodes a JSON string body starting after its opening quote; returns the text and the index
    /// of the closing quote.
    private static func string(_ input: [UInt8], from start: Int) -> (String, Int) {
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        var index = start
        func flush() {
            if !raw.isEmpty {
                scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
                raw.removeAll()
            }
        }
        while index < input.count {
            let byte = input[index]
            if byte == UInt8(ascii: "\"") { break }
            if byte != UInt8(ascii: "\\") {
                raw.append(byte)
                index += 1
                continue
            }
            flush()
            index += 1
            guard index < input.count else { break }
            let escape = input[index]
            switch escape {
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var value = hex4(input, index + 1) ?? 0xFFFD
                index += 4
                // A high surrogate followed by \u low surrogate is one scalar.
                if (0xD800...0xDBFF).contains(value), index + 6 < input.count,
                    input[index + 1] == UInt8(ascii: "\\"), input[index + 2] == UInt8(ascii: "u"),
                    let low = hex4(input, index + 3), (0xDC00...0xDFFF).contains(low)
                {
                    value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                    index += 6
                }
                scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            default:
                scalars.append(Unicode.Scalar(escape))
            }
            index += 1
        }
        flush()
        return (String(scalars), index)
    }

    private static func hex4(_ input: [UInt8], _ start: Int) -> UInt32? {
        guard start + 4 <= input.count else { return nil }
        var value: UInt32 = 0
        for byte in input[start..<(start + 4)] {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }
}
