/// Text from devices, users and events made safe for one terminal line.
public enum Printable {
    /// Control characters (C0, DEL, C1) and the invisible formatting characters that reorder or
    /// hide text (bidirectional overrides, isolates and the Arabic letter mark, zero-width
    /// characters, U+2028/2029)
    /// written as `\u{XX}` escapes, so a crafted string cannot print as several lines, drive the
    /// terminal or show other text than it holds; a backslash doubled, so an escape in the output
    /// is never text that was in the input; everything else as is.
    public static func escape(_ text: String) -> String {
        var output = ""
        for scalar in text.unicodeScalars {
            let value = scalar.value
            if scalar == "\\" {
                output += "\\\\"
            } else if value < 0x20 || (0x7F...0x9F).contains(value) || (0x200B...0x200F).contains(value) || (0x2028...0x202E).contains(value)
                || (0x2066...0x2069).contains(value) || value == 0xFEFF || value == 0x061C
            {
                output += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                output.unicodeScalars.append(scalar)
            }
        }
        return output
    }
}
