/// What counts as a login name where one travels (PAM_USER → holdfastd → broker → grant).
///
/// Not only POSIX names: directory-backed workstations (sssd, winbind) log users in as
/// `alice@corp.example`, `CORP\alice`, even with spaces or non-ASCII letters, and such a user
/// must not be locked out by a character class. Refused are what could mislead a reader or a
/// header: control characters (C0, DEL, C1), invisible format characters (zero-width spaces,
/// bidirectional overrides, the byte-order mark: `root\u{200B}` must not pass for `root`), line
/// and paragraph separators, a comma (a header list, the exempt list), a leading `-` byte (an
/// option to some tool), a `/` byte (a path), white space at either end, and more than 256 bytes.
/// Bytes, not characters: `-` followed by a combining mark is still a leading `-`.
public enum LoginName {
    public static let maximumBytes = 256

    public static func isValid(_ name: String) -> Bool {
        let bytes = name.utf8
        guard !bytes.isEmpty, bytes.count <= maximumBytes, bytes.first != UInt8(ascii: "-"), !bytes.contains(UInt8(ascii: "/")), !bytes.contains(UInt8(ascii: ",")) else {
            return false
        }
        guard let first = name.unicodeScalars.first, let last = name.unicodeScalars.last,
            !first.properties.isWhitespace, !last.properties.isWhitespace
        else { return false }
        return !hidesText(name)
    }

    /// Whether `text` holds what could mislead a reader: control characters, invisible format
    /// characters (bidirectional overrides, zero-width spaces), line or paragraph separators.
    public static func hidesText(_ text: String) -> Bool {
        text.unicodeScalars.contains { scalar in
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate: true
            default: false
            }
        }
    }
}
