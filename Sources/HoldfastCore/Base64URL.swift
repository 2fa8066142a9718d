/// Base64url without padding (RFC 4648 §5, as JOSE uses it: RFC 7515 §2).
///
/// Decoding is strict: only the 64 URL-safe characters, no padding, no white space, and no
/// non-zero bits left over in the last character (a non-canonical encoding is refused, so one
/// signature has exactly one spelling).
public enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    private static let alphabetText: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    /// Encodes bytes as unpadded base64url text.
    public static func encode<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        if let text = bytes.withContiguousStorageIfAvailable({ encode(buffer: $0) }) { return text }
        return Array(bytes).withUnsafeBufferPointer { encode(buffer: $0) }
    }

    /// Three bytes to four characters at a time, straight into the string's storage (the
    /// signing path encodes every report and grant).
    static func encode(buffer input: UnsafeBufferPointer<UInt8>) -> String {
        let length = (input.count * 4 + 2) / 3
        guard length > 0 else { return "" }
        let table = alphabetText.utf8Start
        return String(unsafeUninitializedCapacity: length) { output in
            var from = 0
            var to = 0
            while input.count - from >= 3 {
                let word = UInt32(input[from]) << 16 | UInt32(input[from + 1]) << 8 | UInt32(input[from + 2])
                output[to] = table[Int(word >> 18)]
                output[to + 1] = table[Int(word >> 12 & 0x3F)]
                output[to + 2] = table[Int(word >> 6 & 0x3F)]
                output[to + 3] = table[Int(word & 0x3F)]
                from += 3
                to += 4
            }
            switch input.count - from {
            case 2:
                let word = UInt32(input[from]) << 16 | UInt32(input[from + 1]) << 8
                output[to] = table[Int(word >> 18)]
                output[to + 1] = table[Int(word >> 12 & 0x3F)]
                output[to + 2] = table[Int(word >> 6 & 0x3F)]
                to += 3
            case 1:
                let word = UInt32(input[from]) << 16
                output[to] = table[Int(word >> 18)]
                output[to + 1] = table[Int(word >> 12 & 0x3F)]
                to += 2
            default:
                break
            }
            return to
        }
    }

    /// Decodes unpadded base64url text; `nil` when the text is not canonical base64url.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        decode(utf8: Array(text.utf8))
    }

    /// Decodes unpadded base64url bytes; `nil` when they are not canonical base64url.
    public static func decode(utf8 input: [UInt8]) -> [UInt8]? {
        if input.count % 4 == 1 { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in input {
            let value = decodeTable[Int(byte)]
            if value == 0xFF { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // Leftover bits must be zero, or the same bytes would have two spellings.
        if accumulator != 0 { return nil }
        return output
    }
}
