import HoldfastCore

/// `holdfast audit parse --json`: one JSON object per event, keys in a fixed order (documented in
/// docs/audit-format.md), written straight into bytes (this is the hot path of a replay).
extension AuditEventSummary {
    public func writeJSON(into out: inout [UInt8]) {
        JSONObjectWriter.object(into: &out) { writer in
            writer.number("serial", serial)
            writer.raw("time", Self.timeText(seconds: seconds, milliseconds: milliseconds))
            writer.string("node", node)
            writer.strings("types", types)
            writer.string("arch", arch)
            writer.number("syscall", syscall.map(Int64.init))
            writer.string("syscall_name", syscallName)
            writer.bool("success", success)
            writer.number("exit", exit)
            writer.key("args")
            writer.array(arguments) { writer, value in writer.out.append(contentsOf: (value.map { String($0) } ?? "null").utf8) }
            writer.number("auid", auid.map(Int64.init))
            writer.string("auid_name", auidName)
            writer.number("uid", uid.map(Int64.init))
            writer.string("uid_name", uidName)
            writer.number("pid", pid)
            writer.number("ppid", ppid)
            writer.number("ses", session.map(Int64.init))
            writer.string("exe", exe)
            writer.string("comm", comm)
            writer.string("cwd", cwd)
            writer.key("paths")
            writer.array(paths) { writer, path in
                JSONObjectWriter.object(into: &writer.out) { item in
                    item.number("item", path.item.map(Int64.init))
                    item.string("name", path.name)
                    if let hex = path.nameHex { item.string("name_hex", hex) }
                    item.string("nametype", path.nametype)
                    item.number("inode", path.inode)
                    item.string("mode", path.mode)
                    item.string("dev", path.dev)
                    item.number("ouid", path.ouid)
                }
            }
            writer.string("key", key)
            writer.strings("keys", keys)
            if let proctitle { writer.strings("proctitle", proctitle) } else { writer.raw("proctitle", "null") }
            if let argv {
                writer.key("argv")
                writer.array(argv) { writer, value in JSONObjectWriter.quote(value, into: &writer.out) }
            } else {
                writer.raw("argv", "null")
            }
            writer.number("argc", argc.map(Int64.init))
            writer.string("op", operation)
            writer.string("acct", account)
        }
    }

    /// `1700000000.101`: exact, from the integers (no floating-point rounding).
    static func timeText(seconds: Int64, milliseconds: Int) -> String {
        let fraction = String(milliseconds)
        return "\(seconds)." + String(repeating: "0", count: max(0, 3 - fraction.count)) + fraction
    }

    /// One line for people: time, serial, who, what, paths.
    public var line: String {
        var parts = [Self.timeText(seconds: seconds, milliseconds: milliseconds), "#\(serial)"]
        if let node { parts.append("node=\(Self.visible(node))") }
        if let syscallName { parts.append(Self.visible(syscallName)) } else if let syscall { parts.append("syscall \(syscall)") } else { parts.append(Self.visible(types.first ?? "?")) }
        if let operation { parts.append(Self.visible(operation)) }
        if let success { parts.append(success ? "ok" : "failed" + (exit.map { " (\($0))" } ?? "")) }
        parts.append("auid=" + (auid.map(String.init) ?? "unset"))
        if let uid, uid != auid { parts.append("uid=\(uid)") }
        if let exe { parts.append(Self.visible(exe)) }
        for path in paths {
            parts.append(Self.visible(path.nametype ?? "?") + " " + (path.name.map(Self.visible) ?? "(null)"))
        }
        if let key { parts.append("key=\(Self.visible(key))") }
        return parts.joined(separator: " ")
    }

    /// Safe for one terminal line: control and invisible formatting characters escaped, a
    /// backslash doubled (`Printable.escape`); a value with a space or a quote is put in quotes
    /// with its quotes escaped, so a crafted name cannot forge a line or pass for two paths.
    public static func visible(_ text: String) -> String {
        let escaped = Printable.escape(text)
        // Quoted when it holds any space (U+2003 too), a quote, or could pass for `(null)` or nothing.
        let ambiguous = escaped.isEmpty || escaped == "(null)" || escaped.unicodeScalars.contains { $0.properties.isWhitespace || $0 == "\"" }
        guard ambiguous else { return escaped }
        var quoted = "\""
        for character in escaped.unicodeScalars {
            if character == "\"" { quoted += "\\\"" } else { quoted.unicodeScalars.append(character) }
        }
        return quoted + "\""
    }
}

/// A JSON object written member by member into bytes.
struct JSONObjectWriter {
    var out: [UInt8] = []
    private var first = true

    /// `{…}` appended to `out` in place (the buffer is moved in and out, never copied).
    static func object(into out: inout [UInt8], _ body: (inout JSONObjectWriter) -> Void) {
        var writer = JSONObjectWriter()
        swap(&writer.out, &out)
        writer.out.append(UInt8(ascii: "{"))
        body(&writer)
        writer.out.append(UInt8(ascii: "}"))
        swap(&writer.out, &out)
    }

    mutating func key(_ name: StaticString) {
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        out.append(contentsOf: "\":".utf8)
    }

    mutating func raw(_ name: StaticString, _ text: String) {
        key(name)
        out.append(contentsOf: text.utf8)
    }

    mutating func number(_ name: StaticString, _ value: Int64?) {
        key(name)
        if let value { out.append(contentsOf: String(value).utf8) } else { out.append(contentsOf: "null".utf8) }
    }

    mutating func number(_ name: StaticString, _ value: UInt64) {
        key(name)
        out.append(contentsOf: String(value).utf8)
    }

    mutating func bool(_ name: StaticString, _ value: Bool?) {
        key(name)
        out.append(contentsOf: (value.map { $0 ? "true" : "false" } ?? "null").utf8)
    }

    mutating func string(_ name: StaticString, _ value: String?) {
        key(name)
        Self.quote(value, into: &out)
    }

    mutating func strings(_ name: StaticString, _ values: [String]) {
        key(name)
        array(values) { writer, value in Self.quote(value, into: &writer.out) }
    }

    mutating func array<T>(_ values: [T], _ element: (inout JSONObjectWriter, T) -> Void) {
        out.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            element(&self, value)
        }
        out.append(UInt8(ascii: "]"))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// RFC 8259 string: quote, backslash and control characters escaped; the text is valid UTF-8.
    /// Runs that need no escape are copied whole.
    static func quote(_ value: String?, into out: inout [UInt8]) {
        guard var value else {
            out.append(contentsOf: "null".utf8)
            return
        }
        out.append(UInt8(ascii: "\""))
        value.withUTF8 { bytes in
            var runStart = 0
            for index in 0..<bytes.count {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                if index > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index])) }
                runStart = index + 1
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
                case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
                case UInt8(ascii: "\n"): out.append(contentsOf: "\\n".utf8)
                case UInt8(ascii: "\t"): out.append(contentsOf: "\\t".utf8)
                case UInt8(ascii: "\r"): out.append(contentsOf: "\\r".utf8)
                default:
                    out.append(contentsOf: "\\u00".utf8)
                    out.append(hexDigits[Int(byte >> 4)])
                    out.append(hexDigits[Int(byte & 0x0F)])
                }
            }
            if bytes.count > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count])) }
        }
        out.append(UInt8(ascii: "\""))
    }
}
