/// Writing JSON text by hand where the exact bytes matter (JOSE headers are signed as written).
public enum JSONText {
    /// Returns `value` as a JSON string literal, quotes included (RFC 8259 §7).
    public static func quote(_ value: String) -> String {
        // Most strings need no escape: copied whole (the broker quotes every answer's strings).
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            return "\"" + value + "\""
        }
        var output = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "\u{08}": output += "\\b"
            case "\u{0C}": output += "\\f"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                output.unicodeScalars.append(scalar)
            }
        }
        return output + "\""
    }
}

/// Hexadecimal: lower-case for digests and fingerprints, upper-case as the kernel's audit records write it.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)
    private static let upperDigits = Array("0123456789ABCDEF".utf8)

    /// Encodes bytes as lower-case hex.
    public static func encode(_ bytes: some Collection<UInt8>) -> String { encode(bytes, uppercase: false) }

    /// Encodes bytes as hex, upper-case if `uppercase`.
    public static func encode(_ bytes: some Collection<UInt8>, uppercase: Bool) -> String {
        let table = uppercase ? upperDigits : digits
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            output.append(table[Int(byte >> 4)])
            output.append(table[Int(byte & 0x0F)])
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes hex (either case, optionally with `:` between bytes); `nil` if it is not hex.
    public static func decode(_ text: String) -> [UInt8]? {
        let nibbles = text.utf8.filter { $0 != UInt8(ascii: ":") }
        guard nibbles.count % 2 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(nibbles.count / 2)
        var high: UInt8?
        for character in nibbles {
            let value: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = character - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = character - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let first = high {
                output.append(first << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return output
    }
}

extension JSONValue {
    /// Compact JSON text with members in sorted order — byte for byte what `JSONEncoder` writes
    /// with `.sortedKeys` and `.withoutEscapingSlashes` (a test holds them equal), without its
    /// cost on the broker's answers.
    public var compactText: String {
        var output = ""
        write(to: &output)
        return output
    }

    func write(to output: inout String) {
        switch self {
        case .null: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .int(let value): output += String(value)
        case .double(let value):
            // JSONEncoder's spelling: `2` not `2.0`, `-0` not `-0.0`. A non-finite number has no
            // JSON form (the encoder throws; the reader never makes one): written as null.
            guard value.isFinite else {
                output += "null"
                return
            }
            let text = value.description
            output += text.hasSuffix(".0") ? String(text.dropLast(2)) : text
        case .string(let text): output += JSONText.quote(text)
        case .array(let elements):
            output += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { output += "," }
                element.write(to: &output)
            }
            output += "]"
        case .object(let members):
            output += "{"
            // By UTF-8 bytes, as JSONEncoder sorts (not Swift's `<`, which compares normalized).
            for (index, name) in members.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
                if index > 0 { output += "," }
                output += JSONText.quote(name)
                output += ":"
                members[name]?.write(to: &output)
            }
            output += "}"
        }
    }
}
