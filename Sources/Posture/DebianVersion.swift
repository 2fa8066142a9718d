#if canImport(Glibc)
import Glibc
#endif

/// Debian version ordering (deb-version(7)): `[epoch:]upstream[-revision]`, compared part by
/// part, where `~` sorts before everything (even the end) and digit runs compare as numbers.
public enum DebianVersion {
    /// Negative, zero or positive as `a` sorts before, equal to, or after `b`.
    public static func compare(_ a: String, _ b: String) -> Int {
        let left = split(a), right = split(b)
        if left.epoch != right.epoch { return left.epoch < right.epoch ? -1 : 1 }
        let upstream = compareFragment(left.upstream, right.upstream)
        if upstream != 0 { return upstream }
        return compareFragment(left.revision, right.revision)
    }

    static func split(_ version: String) -> (epoch: Int, upstream: [UInt8], revision: [UInt8]) {
        var bytes = Array(version.utf8)
        var epoch = 0
        if let colon = bytes.firstIndex(of: UInt8(ascii: ":")) {
            epoch = Int(String(decoding: bytes[..<colon], as: UTF8.self)) ?? 0
            bytes = Array(bytes[(colon + 1)...])
        }
        if let dash = bytes.lastIndex(of: UInt8(ascii: "-")) {
            return (epoch, Array(bytes[..<dash]), Array(bytes[(dash + 1)...]))
        }
        return (epoch, bytes, [])
    }

    /// dpkg's `order()`: digits 0, letters themselves, `~` −1, the end 0, anything else after letters.
    static func order(_ byte: UInt8?) -> Int {
        guard let byte else { return 0 }
        if isDigit(byte) { return 0 }
        if (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z") { return Int(byte) }
        if byte == UInt8(ascii: "~") { return -1 }
        return Int(byte) + 256
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// dpkg's `verrevcmp()`: alternate non-digit and digit runs.
    static func compareFragment(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var i = 0, j = 0
        func at(_ bytes: [UInt8], _ index: Int) -> UInt8? { index < bytes.count ? bytes[index] : nil }
        while i < a.count || j < b.count {
            while (at(a, i).map { !isDigit($0) } ?? false) || (at(b, j).map { !isDigit($0) } ?? false) {
                let left = order(at(a, i)), right = order(at(b, j))
                if left != right { return left < right ? -1 : 1 }
                i += 1
                j += 1
            }
            while at(a, i) == UInt8(ascii: "0") { i += 1 }
            while at(b, j) == UInt8(ascii: "0") { j += 1 }
            var firstDifference = 0
            while let x = at(a, i), let y = at(b, j), isDigit(x), isDigit(y) {
                if firstDifference == 0 { firstDifference = Int(x) - Int(y) }
                i += 1
                j += 1
            }
            if let x = at(a, i), isDigit(x) { return 1 }
            if let y = at(b, j), isDigit(y) { return -1 }
            if firstDifference != 0 { return firstDifference < 0 ? -1 : 1 }
        }
        return 0
    }
}

/// Debian control-file stanzas (dpkg's status file, apt's Packages lists): `Field: value` lines,
/// continuation lines starting with a space, stanzas separated by blank lines. Only the asked-for
/// fields are kept, so a 50 MB list parses without building a dictionary per stanza.
public enum DebianControl {
    /// The wanted fields of the stanza whose `Package:` is `name` (the first one), found by a byte
    /// search instead of parsing every stanza: dpkg's status file is megabytes.
    public static func stanza(of name: String, in bytes: [UInt8], fields: [String]) -> [String: String]? {
        let needle = Array("Package: \(name)\n".utf8)
        guard needle.count > 10, bytes.count >= needle.count else { return nil }
        // Line by line with memchr(3), comparing each line's start with memcmp(3).
        let start: Int? = bytes.withUnsafeBytes { haystack in
            needle.withUnsafeBytes { pattern in
                guard let base = haystack.baseAddress, let wanted = pattern.baseAddress else { return nil }
                var offset = 0
                while offset + pattern.count <= haystack.count {
                    if memcmp(base + offset, wanted, pattern.count) == 0 { return offset }
                    guard let newline = memchr(base + offset, 0x0A, haystack.count - offset) else { return nil }
                    offset = base.distance(to: UnsafeRawPointer(newline)) + 1
                }
                return nil
            }
        }
        if let index = start {
            var end = index
            while end + 1 < bytes.count, !(bytes[end] == 0x0A && bytes[end + 1] == 0x0A) { end += 1 }
            var found: [String: String]?
            stanzas(Array(bytes[index..<min(bytes.count, end + 1)]), fields: fields) { found = $0 }
            return found
        }
        return nil
    }

    /// Calls `body` with the wanted fields of each stanza (values trimmed; continuation lines
    /// dropped, which the fields read here never have).
    public static func stanzas(_ bytes: [UInt8], fields: [String], _ body: ([String: String]) -> Void) {
        let wanted = fields.map { Array($0.utf8) }
        var current: [String: String] = [:]
        bytes.withUnsafeBufferPointer { buffer in
            var start = 0
            let count = buffer.count
            while start <= count {
                var end = start
                while end < count && buffer[end] != 0x0A { end += 1 }
                if end == start || (end == start + 1 && buffer[start] == 0x0D) {
                    if !current.isEmpty { body(current) }
                    current = [:]
                } else if buffer[start] != 0x20 && buffer[start] != 0x09 {
                    for (index, name) in wanted.enumerated() where end - start > name.count && buffer[start + name.count] == UInt8(ascii: ":") {
                        var same = true
                        for k in 0..<name.count where buffer[start + k] != name[k] {
                            same = false
                            break
                        }
                        guard same else { continue }
                        var valueStart = start + name.count + 1
                        var valueEnd = end
                        while valueStart < valueEnd && (buffer[valueStart] == 0x20 || buffer[valueStart] == 0x09) { valueStart += 1 }
                        while valueEnd > valueStart && (buffer[valueEnd - 1] == 0x20 || buffer[valueEnd - 1] == 0x0D) { valueEnd -= 1 }
                        current[fields[index]] = String(decoding: UnsafeBufferPointer(rebasing: buffer[valueStart..<valueEnd]), as: UTF8.self)
                        break
                    }
                }
                if end >= count { break }
                start = end + 1
            }
        }
        if !current.isEmpty { body(current) }
    }
}
