/// What counts as a login name where one travels (PAM_USER → holdfastd → broker → grant).
///
/// Not only POSIX names: directory-backed workstations (sssd, winbind) log users in as
/// `alice@corp.example`, `CORP\alice`, even with spaces or non-ASCII letters, and such a user
/// must not be locked out by a character class. Refused are what could mislead a reader or a
/// header: control characters (C0, DEL, C1), a leading `-` (an option to some tool), a `/`
/// (a path), white space at either end, and more than 256 bytes.
public enum LoginName {
    public static let maximumBytes = 256

    public static func isValid(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= maximumBytes, name.first != "-", !name.contains("/") else { return false }
        guard let first = name.unicodeScalars.first, let last = name.unicodeScalars.last,
            !first.properties.isWhitespace, !last.properties.isWhitespace
        else { return false }
        return !name.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }
}
