/// Shell-style wildcard matching (`*`, `?`, `[a-z]`, `[!x]`) as glob(3)/fnmatch(3) do for one path
/// component, in O(pattern × name) time: a hostile pattern cannot make it backtrack exponentially.
enum Wildcard {
    enum Token: Equatable {
        case any
        case one
        case set([ClosedRange<Character>], negated: Bool)
        case literal(Character)
    }

    static func tokens(_ pattern: String) -> [Token] {
        var tokens: [Token] = []
        let characters = Array(pattern)
        var index = 0
        while index < characters.count {
            let character = characters[index]
            switch character {
            case "*":
                if tokens.last != .any { tokens.append(.any) }
            case "?":
                tokens.append(.one)
            case "[":
                var cursor = index + 1
                var negated = false
                if cursor < characters.count, characters[cursor] == "!" || characters[cursor] == "^" {
                    negated = true
                    cursor += 1
                }
                var ranges: [ClosedRange<Character>] = []
                var first = true
                while cursor < characters.count, characters[cursor] != "]" || first {
                    // POSIX classes: [:digit:] and friends (what fnmatch(3) accepts in a set).
                    if characters[cursor] == "[", cursor + 1 < characters.count, characters[cursor + 1] == ":",
                       let close = (cursor + 2..<characters.count).first(where: { characters[$0] == ":" && $0 + 1 < characters.count && characters[$0 + 1] == "]" }) {
                        ranges += Self.posixClass(String(characters[(cursor + 2)..<close]))
                        cursor = close + 2
                        first = false
                        continue
                    }
                    let low = characters[cursor]
                    if cursor + 2 < characters.count, characters[cursor + 1] == "-", characters[cursor + 2] != "]" {
                        let high = characters[cursor + 2]
                        if low <= high { ranges.append(low...high) }
                        cursor += 3
                    } else {
                        ranges.append(low...low)
                        cursor += 1
                    }
                    first = false
                }
                if cursor < characters.count {
                    tokens.append(.set(ranges, negated: negated))
                    index = cursor
                } else {
                    tokens.append(.literal("["))  // no closing bracket: a literal, as fnmatch treats it
                }
            case "\\" where index + 1 < characters.count:
                index += 1
                tokens.append(.literal(characters[index]))
            default:
                tokens.append(.literal(character))
            }
            index += 1
        }
        return tokens
    }

    static func posixClass(_ name: String) -> [ClosedRange<Character>] {
        switch name {
        case "digit": ["0"..."9"]
        case "alpha": ["a"..."z", "A"..."Z"]
        case "alnum": ["a"..."z", "A"..."Z", "0"..."9"]
        case "upper": ["A"..."Z"]
        case "lower": ["a"..."z"]
        case "xdigit": ["0"..."9", "a"..."f", "A"..."F"]
        case "space": [" "..." ", "\t"..."\r"]
        case "blank": [" "..." ", "\t"..."\t"]
        case "punct": ["!"..."/", ":"..."@", "["..."`", "{"..."~"]
        default: []
        }
    }

    static func hasWildcard(_ text: String) -> Bool { text.contains { $0 == "*" || $0 == "?" || $0 == "[" } }

    static func matches(_ pattern: String, _ name: String) -> Bool {
        let tokens = tokens(pattern)
        let characters = Array(name)
        // reachable[j]: the tokens so far can match the first j characters.
        var reachable = [Bool](repeating: false, count: characters.count + 1)
        reachable[0] = true
        for token in tokens {
            var next = [Bool](repeating: false, count: characters.count + 1)
            switch token {
            case .any:
                var seen = false
                for j in 0...characters.count {
                    seen = seen || reachable[j]
                    next[j] = seen
                }
            default:
                for j in 0..<characters.count where reachable[j] {
                    let character = characters[j]
                    let ok: Bool
                    switch token {
                    case .one: ok = true
                    case .literal(let literal): ok = literal == character
                    case .set(let ranges, let negated): ok = ranges.contains { $0.contains(character) } != negated
                    case .any: ok = false
                    }
                    if ok { next[j + 1] = true }
                }
            }
            reachable = next
        }
        return reachable[characters.count]
    }

    /// Every existing path matching `pattern` (absolute; wildcards in any component), sorted as
    /// glob(3) returns them. A wildcard does not match a leading dot.
    static func glob(_ tree: RootTree, _ pattern: String) -> [String] {
        var paths = [""]
        for component in RootTree.components(pattern) {
            var next: [String] = []
            for base in paths {
                if hasWildcard(component) {
                    for name in tree.list(base.isEmpty ? "/" : base) ?? [] where !(name.hasPrefix(".") && !component.hasPrefix(".")) && matches(component, name) {
                        next.append(base + "/" + name)
                    }
                } else {
                    next.append(base + "/" + component)
                }
            }
            paths = next
            if paths.count > 4_096 { break }
        }
        return paths.filter { tree.exists($0) }.sorted()
    }
}
