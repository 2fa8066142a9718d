/// Lines as the C tools that own these files split them: on `\n` bytes only, a trailing `\r`
/// dropped. (Swift's `split(separator: "\n")` works on Characters, and `"\r\n"` is one Character:
/// a CRLF file would be read as one line, hiding everything after the first.)
enum TextLines {
    static func of(_ text: String) -> [String] {
        text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
        }
    }
}
