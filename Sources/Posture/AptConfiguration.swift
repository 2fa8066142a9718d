/// apt's configuration syntax (apt.conf(5)) read far enough for posture: `A::B "v";` and the
/// nested `A { B "v"; };` form, `//`, `#` and `/* */` comments. Keys are case-insensitive; a
/// later assignment wins, as apt reads `/etc/apt/apt.conf.d/*` in lexical order then
/// `/etc/apt/apt.conf`.
public struct AptConfiguration: Sendable, Equatable {
    /// Lower-cased `A::B::C` → value.
    public private(set) var values: [String: String] = [:]

    public init() {}

    /// The value of `key` (any case), or nil.
    public subscript(key: String) -> String? { values[key.lowercased()] }

    /// Reads one file's assignments over the ones already read.
    public mutating func read(_ text: String) {
        var scope: [String] = []
        var tokens = Self.tokens(text)[...]
        var pendingName: String?
        while let token = tokens.popFirst() {
            switch token {
            case .open:
                scope.append(pendingName ?? "")
                pendingName = nil
            case .close:
                if !scope.isEmpty { scope.removeLast() }
                pendingName = nil
            case .semicolon:
                pendingName = nil
            case .word(let word):
                if let name = pendingName {
                    // `Name value;` where the value is an unquoted word.
                    assign(scope + [name], word)
                    pendingName = nil
                } else if word.hasPrefix("#") {
                    // `#clear` / `#include` directives: skip to the end of the statement.
                    while let next = tokens.first, next != .semicolon { tokens.removeFirst() }
                } else {
                    pendingName = word
                }
            case .string(let value):
                if let name = pendingName {
                    assign(scope + [name], value)
                    pendingName = nil
                } else if !scope.isEmpty {
                    // A list element inside `Name { "a"; "b"; };`: keep the last.
                    values[scope.joined(separator: "::").lowercased()] = value
                }
            }
        }
    }

    private mutating func assign(_ path: [String], _ value: String) {
        values[path.filter { !$0.isEmpty }.joined(separator: "::").lowercased()] = value
    }

    enum Token: Equatable {
        case word(String), string(String), open, close, semicolon
    }

    static func tokens(_ text: String) -> [Token] {
        var result: [Token] = []
        let bytes = Array(text.utf8)
        var i = 0
        var lineStart = true
        while i < bytes.count {
            let byte = bytes[i]
            if byte == 0x0A { lineStart = true; i += 1; continue }
            if byte == 0x20 || byte == 0x09 || byte == 0x0D { i += 1; continue }
            if byte == UInt8(ascii: "/"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "/") {
                while i < bytes.count && bytes[i] != 0x0A { i += 1 }
                continue
            }
            if byte == UInt8(ascii: "/"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "*") {
                i += 2
                while i + 1 < bytes.count && !(bytes[i] == UInt8(ascii: "*") && bytes[i + 1] == UInt8(ascii: "/")) { i += 1 }
                i += 2
                continue
            }
            if byte == UInt8(ascii: "#"), lineStart {
                // A comment, unless it is a `#clear`/`#include` directive.
                let rest = String(decoding: bytes[i..<min(bytes.count, i + 8)], as: UTF8.self)
                if !rest.hasPrefix("#clear") && !rest.hasPrefix("#include") {
                    while i < bytes.count && bytes[i] != 0x0A { i += 1 }
                    continue
                }
            }
            lineStart = false
            switch byte {
            case UInt8(ascii: "{"): result.append(.open); i += 1
            case UInt8(ascii: "}"): result.append(.close); i += 1
            case UInt8(ascii: ";"): result.append(.semicolon); i += 1
            case UInt8(ascii: "\""):
                var end = i + 1
                while end < bytes.count && bytes[end] != UInt8(ascii: "\"") { end += 1 }
                result.append(.string(String(decoding: bytes[(i + 1)..<min(end, bytes.count)], as: UTF8.self)))
                i = end + 1
            default:
                var end = i
                while end < bytes.count, ![0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: ";"), UInt8(ascii: "\"")].contains(bytes[end]) { end += 1 }
                result.append(.word(String(decoding: bytes[i..<end], as: UTF8.self)))
                i = end
            }
        }
        return result
    }

    /// apt's configuration as the tree has it: `apt.conf.d/*` (names apt accepts: letters,
    /// digits, `_-.`, no extension or `.conf`) in order, then `apt.conf`.
    public static func load(from tree: RootTree) -> AptConfiguration {
        var configuration = AptConfiguration()
        for name in tree.list("/etc/apt/apt.conf.d") ?? [] where isAptPart(name) {
            if let text = tree.text("/etc/apt/apt.conf.d/" + name, limit: 1 << 20) { configuration.read(text) }
        }
        if let text = tree.text("/etc/apt/apt.conf", limit: 1 << 20) { configuration.read(text) }
        return configuration
    }

    /// apt ignores parts with other extensions (`.dpkg-old`, `.ucf-dist`, editor backups).
    static func isAptPart(_ name: String) -> Bool {
        guard !name.hasPrefix("."), name.allSatisfy({ $0.isLetter || $0.isNumber || "_-.".contains($0) }) else { return false }
        guard let dot = name.lastIndex(of: ".") else { return true }
        return name[name.index(after: dot)...] == "conf"
    }
}
