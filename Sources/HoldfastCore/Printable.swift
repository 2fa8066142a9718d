/// Text from devices, users and events made safe for one terminal line.
public enum Printable {
    /// Control characters (C0, DEL, C1) written as `\u{XX}` escapes, so a crafted string cannot
    /// print as several lines or drive the terminal; everything else as is.
    public static func escape(_ text: String) -> String {
        var output = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                output += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                output.unicodeScalars.append(scalar)
            }
        }
        return output
    }
}
