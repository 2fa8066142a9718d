/// apt's configuration syntax (apt.conf(5)) read far enough for posture: `A::B "v";` and the
/// nested `A { B "v"; };` form, `//`, `#` and `/* */` comments, and the `#clear` and `#include`
/// directives. Keys are case-insensitive; a later assignment wins, as apt reads
/// `/etc/apt/apt.conf.d/*` in lexical order then `/etc/apt/apt.conf`.
public struct AptConfiguration: Sendable, Equatable {
    /// Lower-cased `A::B::C` → value.
    public private(set) var values: [String: String] = [:]
    /// Files apt would read that could not be read here (the answer is then not known).
    public private(set) var unreadable: [String] = []
    private var filesRead = 0
    /// More files than this (an `#include` of its own directory) is a fan-out, not a configuration.
    static let maximumFiles = 256

    public init() {}

    /// The value of `key` (any case), or nil.
    public subscript(key: String) -> String? { values[key.lowercased()] }

    /// The largest part read; apt has no limit, so a larger one makes the answer unknown.
    static let maximumPart = 16 << 20

    /// Reads one file's assignments over the ones already read. `tree` and `directory` resolve
    /// `#include` (relative paths are relative to the including file's directory).
    public mutating func read(_ text: String, tree: RootTree? = nil, directory: String = "/etc/apt", depth: Int = 0) {
        filesRead += 1
        if filesRead == Self.maximumFiles { unreadable.append("more than \(Self.maximumFiles) configuration files (an #include loop?)") }
        guard filesRead < Self.maximumFiles else { return }
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
            case .directive(let name):
                var argument: String?
                while let next = tokens.first, next != .semicolon {
                    tokens.removeFirst()
                    if argument == nil, case .word(let word) = next { argument = word }
                    if argument == nil, case .string(let string) = next { argument = string }
                }
                guard let argument else { continue }
                if name == "clear" {
                    let prefix = argument.lowercased()
                    values = values.filter { $0.key != prefix && !$0.key.hasPrefix(prefix + "::") }
                } else if name == "include", let tree, depth < 8, filesRead < Self.maximumFiles {
                    let path = argument.hasPrefix("/") ? argument : directory + "/" + argument
                    if let info = tree.info(path), info.kind == .directory {
                        readParts(tree, directory: path, depth: depth + 1)
                    } else if let included = tree.text(path, limit: Self.maximumPart) {
                        read(included, tree: tree, directory: RootTree.parent(path), depth: depth + 1)
                    } else {
                        unreadable.append(path)
                    }
                }
            case .word(let word):
                if let name = pendingName {
                    // `Name value;` where the value is an unquoted word.
                    assign(scope + [name], word)
                    pendingName = nil
                } else {
                    pendingName = word
                }
            case .string(let value):
                if let next = tokens.first, next == .open {
                    // `Name "x" { … };`: the string is the block's value; the block is still Name's.
                    if pendingName == nil { pendingName = value }
                    continue
                }
                if let name = pendingName {
                    assign(scope + [name], value)
                    pendingName = nil
                } else if let next = tokens.first, case .string = next {
                    // A quoted tag: `"APT::Periodic::X" "0";` names the option like a bare one.
                    pendingName = value
                } else if !scope.isEmpty {
                    // A list element inside `Name { "a"; "b"; };`: keep the last.
                    values[scope.joined(separator: "::").lowercased()] = value
                }
            }
        }
    }

    private mutating func assign(_ path: [String], _ value: String) {
        values[Self.decode(path.filter { !$0.isEmpty }.joined(separator: "::")).lowercased()] = value
    }

    /// apt's tags may spell characters as `%2d`; and quotes inside a tag (`APT::"X"`) are dropped.
    static func decode(_ tag: String) -> String {
        var bytes: [UInt8] = []
        let raw = Array(tag.utf8)
        var index = 0
        while index < raw.count {
            if raw[index] == UInt8(ascii: "%"), index + 2 < raw.count, let value = UInt8(String(decoding: raw[(index + 1)...(index + 2)], as: UTF8.self), radix: 16) {
                bytes.append(value)
                index += 3
            } else {
                if raw[index] != UInt8(ascii: "\"") { bytes.append(raw[index]) }
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    enum Token: Equatable {
        case word(String), string(String), open, close, semicolon, directive(String)
    }

    static func tokens(_ text: String) -> [Token] {
        var result: [Token] = []
        let bytes = Array(text.utf8)
        var i = 0
        // A directive may only begin a statement; anywhere else `#` starts a comment.
        var statementStart = true
        while i < bytes.count {
            let byte = bytes[i]
            if byte == 0x0A || byte == 0x20 || byte == 0x09 || byte == 0x0D { i += 1; continue }
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
            if byte == UInt8(ascii: "#") {
                let rest = String(decoding: bytes[(i + 1)..<min(bytes.count, i + 9)], as: UTF8.self)
                let name = rest.hasPrefix("clear") ? "clear" : rest.hasPrefix("include") ? "include" : nil
                if statementStart, let name {
                    result.append(.directive(name))
                    i += 1 + name.count
                    statementStart = false
                } else {
                    while i < bytes.count && bytes[i] != 0x0A { i += 1 }
                }
                continue
            }
            statementStart = false
            switch byte {
            case UInt8(ascii: "{"): result.append(.open); i += 1; statementStart = true
            case UInt8(ascii: "}"): result.append(.close); i += 1; statementStart = true
            case UInt8(ascii: ";"): result.append(.semicolon); i += 1; statementStart = true
            case UInt8(ascii: "\""):
                var end = i + 1
                while end < bytes.count && bytes[end] != UInt8(ascii: "\"") { end += 1 }
                result.append(.string(String(decoding: bytes[(i + 1)..<min(end, bytes.count)], as: UTF8.self)))
                i = end + 1
            default:
                var end = i
                while end < bytes.count, ![0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: ";"), UInt8(ascii: "#")].contains(bytes[end]) {
                    if bytes[end] == UInt8(ascii: "/"), end + 1 < bytes.count, bytes[end + 1] == UInt8(ascii: "/") || bytes[end + 1] == UInt8(ascii: "*") { break }
                    // A quote inside a tag (`APT::"X"`) is part of the tag; one after `::` or at
                    // the start of a value begins a string.
                    if bytes[end] == UInt8(ascii: "\"") {
                        guard end > i, bytes[end - 1] == UInt8(ascii: ":") else { break }
                        end += 1
                        while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += 1 }
                    }
                    end += 1
                }
                result.append(.word(String(decoding: bytes[i..<end], as: UTF8.self)))
                i = max(end, i + 1)
            }
        }
        return result
    }

    /// The parts of a configuration directory apt reads, in order.
    mutating func readParts(_ tree: RootTree, directory: String, depth: Int) {
        for name in tree.list(directory) ?? [] where Self.isAptPart(name) {
            let path = directory + "/" + name
            guard tree.info(path)?.kind == .file else { continue }
            if let text = tree.text(path, limit: Self.maximumPart) {
                read(text, tree: tree, directory: directory, depth: depth)
            } else {
                unreadable.append(path)
            }
        }
    }

    /// apt's configuration as the tree has it: `apt.conf.d/*`, then `apt.conf`.
    public static func load(from tree: RootTree) -> AptConfiguration {
        var configuration = AptConfiguration()
        configuration.readParts(tree, directory: "/etc/apt/apt.conf.d", depth: 0)
        if tree.exists("/etc/apt/apt.conf") {
            if let text = tree.text("/etc/apt/apt.conf", limit: maximumPart) {
                configuration.read(text, tree: tree, directory: "/etc/apt", depth: 0)
            } else {
                configuration.unreadable.append("/etc/apt/apt.conf")
            }
        }
        return configuration
    }

    /// apt's run-parts rule (fileutl.cc): ASCII letters, digits, `_`, `-`, `:`; then no
    /// extension or `.conf`. Anything else (`.dpkg-old`, editor backups, `é`) is ignored by apt.
    static func isAptPart(_ name: String) -> Bool {
        let base: Substring
        if let dot = name.lastIndex(of: ".") {
            guard name[name.index(after: dot)...] == "conf" else { return false }
            base = name[..<dot]
        } else {
            base = Substring(name)
        }
        return !base.isEmpty && base.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-:.".unicodeScalars.contains($0)) }
    }
}
