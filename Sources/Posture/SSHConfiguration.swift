/// sshd_config as sshd reads it (sshd_config(5), OpenSSH 9): keywords case-insensitive,
/// `Keyword value` or `Keyword=value`, arguments quoted with `"` or `'`, a `#` word ends the line
/// (OpenSSH ≥ 8.7), the first value obtained wins, `Include` expands globs in place (relative
/// paths under /etc/ssh; no match is not an error), and `Match` (even `Match all`) makes what
/// follows conditional until the next `Match` or the end of the file it appears in — settings
/// there override the global ones for the connections they match.
struct SSHConfiguration {
    /// Canonical lower-cased keyword → the first global value.
    var global: [String: String] = [:]
    /// Settings inside Match blocks: (the Match criteria, canonical keyword, value).
    var conditional: [(match: String, keyword: String, value: String)] = []
    /// Included files that exist but could not be read.
    var unreadable: [String] = []

    /// sshd's alternative spellings of one option (servconf.c's keyword table, OpenSSH 9.2).
    static let aliases = ["challengeresponseauthentication": "kbdinteractiveauthentication", "skeyauthentication": "kbdinteractiveauthentication"]
    /// sshd refuses a configuration that includes deeper than this (servconf.c SSH_MAX_INCLUDE_DEPTH).
    static let maximumDepth = 16
    /// More files than this is not a configuration, it is a fan-out: the answer is unknown.
    static let maximumFiles = 256

    private var filesRead = 0

    static func load(_ tree: RootTree, path: String = "/etc/ssh/sshd_config") -> SSHConfiguration? {
        guard let text = tree.text(path) else { return nil }
        var configuration = SSHConfiguration()
        // Debian's ssh.service passes $SSHD_OPTS from /etc/default/ssh: its `-o` options come
        // before the file, so they win; another file (`-f`) means this one is not the one read.
        if let defaults = tree.text("/etc/default/ssh") { configuration.readCommandLine(defaults) }
        configuration.read(text, tree: tree, match: nil, depth: 0)
        return configuration
    }

    mutating func readCommandLine(_ defaults: String) {
        for line in TextLines.of(defaults) {
            let trimmed = line.trimmed(" \t")
            guard trimmed.hasPrefix("SSHD_OPTS=") else { continue }
            // The shell's quotes around the value first, then the words inside.
            let words = Self.words(Self.words(String(trimmed.dropFirst("SSHD_OPTS=".count))).joined(separator: " "))
            var index = 0
            while index < words.count {
                let word = words[index]
                if word == "-f" || word.hasPrefix("-f") {
                    unreadable.append("SSHD_OPTS in /etc/default/ssh names another config file (-f)")
                } else if word == "-o", index + 1 < words.count {
                    option(words[index + 1])
                    index += 1
                } else if word.hasPrefix("-o") {
                    option(String(word.dropFirst(2)))
                }
                index += 1
            }
        }
    }

    private mutating func option(_ text: String) {
        let (keyword, arguments) = Self.split(text)
        guard let value = arguments.first else { return }
        let canonical = Self.aliases[keyword] ?? keyword
        if global[canonical] == nil { global[canonical] = value }
    }

    mutating func read(_ text: String, tree: RootTree, match inherited: String?, depth: Int) {
        var match = inherited
        filesRead += 1
        guard filesRead <= Self.maximumFiles else {
            if filesRead == Self.maximumFiles + 1 { unreadable.append("more than \(Self.maximumFiles) included files") }
            return
        }
        for whole in TextLines.of(text) {
            // sshd stops a line at a NUL byte, and strips leading and trailing white space (CR
            // and form feed included).
            let raw = whole.split(separator: "\0", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let line = raw.trimmed(" \t\r\u{0C}\u{0B}")
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            let (keyword, arguments) = Self.split(line)
            switch keyword {
            case "match":
                match = arguments.isEmpty ? "(empty)" : arguments.joined(separator: " ")
            case "include":
                guard depth < Self.maximumDepth else {
                    // sshd itself refuses to start here; the configuration in force is unknown.
                    if !unreadable.contains("Include nested more than \(Self.maximumDepth) deep") { unreadable.append("Include nested more than \(Self.maximumDepth) deep") }
                    continue
                }
                for pattern in arguments {
                    let absolute = pattern.hasPrefix("/") ? pattern : "/etc/ssh/" + pattern
                    for file in Wildcard.glob(tree, absolute) {
                        guard let included = tree.text(file) else {
                            unreadable.append(file)
                            continue
                        }
                        read(included, tree: tree, match: match, depth: depth + 1)
                    }
                }
            default:
                guard let value = arguments.first else { continue }
                let canonical = Self.aliases[keyword] ?? keyword
                if let match {
                    conditional.append((match, canonical, value))
                } else if global[canonical] == nil {
                    global[canonical] = value
                }
            }
        }
    }

    /// The keyword (lower-cased) and its arguments, as sshd splits them (misc.c argv_split with
    /// comments): white space (space, tab, CR, LF) separates; `=` may separate the keyword; `"`
    /// and `'` quote parts of a word (`y"es"` is `yes`); a backslash escapes a quote, a backslash
    /// or a space; a word beginning with `#` ends the line.
    static func split(_ line: String) -> (String, [String]) {
        let scalars = Array(line.unicodeScalars)
        var index = 0
        let separators: Set<Unicode.Scalar> = [" ", "\t", "\r", "\n"]
        while index < scalars.count, !separators.contains(scalars[index]), scalars[index] != "=" { index += 1 }
        let keyword = String(String.UnicodeScalarView(scalars[0..<index])).lowercased()
        while index < scalars.count, separators.contains(scalars[index]) { index += 1 }
        if index < scalars.count, scalars[index] == "=" { index += 1 }
        let rest = String(String.UnicodeScalarView(scalars[index...]))
        return (keyword, words(rest))
    }

    static func words(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        let separators: Set<Unicode.Scalar> = [" ", "\t", "\r", "\n"]
        var words: [String] = []
        var index = 0
        while index < scalars.count {
            while index < scalars.count, separators.contains(scalars[index]) { index += 1 }
            guard index < scalars.count else { break }
            if scalars[index] == "#" { break }
            var word = String.UnicodeScalarView()
            var quote: Unicode.Scalar?
            while index < scalars.count {
                let scalar = scalars[index]
                if quote == nil, separators.contains(scalar) { break }
                if scalar == "\\", index + 1 < scalars.count, ["\"", "'", "\\", " "].contains(scalars[index + 1]) {
                    word.append(scalars[index + 1])
                    index += 2
                    continue
                }
                if let open = quote {
                    if scalar == open { quote = nil } else { word.append(scalar) }
                } else if scalar == "\"" || scalar == "'" {
                    quote = scalar
                } else {
                    word.append(scalar)
                }
                index += 1
            }
            words.append(String(word))
        }
        return words
    }

    /// The global value of a keyword (lower-cased), else sshd's compiled-in default.
    func value(_ keyword: String, default fallback: String) -> String {
        global[keyword]?.lowercased() ?? fallback
    }
}

/// The sshd checks: password logins and root logins off.
enum SSHChecks {
    static func installed(_ tree: RootTree) -> Bool { tree.exists("/usr/sbin/sshd") }

    static func passwordLogin(_ context: PostureContext) -> CheckResult {
        let id = "ssh-password-login"
        let fix = "PasswordAuthentication no and KbdInteractiveAuthentication no in /etc/ssh/sshd_config.d/holdfast.conf (read before the main file's defaults), then systemctl reload ssh"
        guard installed(context.tree) else { return PostureCheck.result(id, .pass, .selfReported, "sshd is not installed") }
        guard let configuration = SSHConfiguration.load(context.tree) else {
            return PostureCheck.result(id, .unknown, .selfReported, "sshd is installed but /etc/ssh/sshd_config is not readable", fix: fix)
        }
        let password = configuration.value("passwordauthentication", default: "yes")
        let keyboard = configuration.value("kbdinteractiveauthentication", default: "yes")
        let pam = configuration.value("usepam", default: "no")
        var evidence = "PasswordAuthentication \(password), KbdInteractiveAuthentication \(keyboard), UsePAM \(pam)"
        if !configuration.unreadable.isEmpty { evidence += "; unreadable: " + configuration.unreadable.joined(separator: ", ") }
        // Keyboard-interactive through PAM asks for the password: it is a password login too.
        if password == "yes" || (keyboard == "yes" && pam == "yes") {
            return PostureCheck.result(id, .fail, .selfReported, evidence + "; passwords are accepted", fix: fix)
        }
        let pamInMatch = pam == "yes" || configuration.conditional.contains { $0.keyword == "usepam" && $0.value.lowercased() == "yes" }
        if let first = configuration.conditional.first(where: { $0.value.lowercased() == "yes" && ($0.keyword == "passwordauthentication" || ($0.keyword == "kbdinteractiveauthentication" && pamInMatch)) }) {
            return PostureCheck.result(id, .fail, .selfReported, evidence + "; but Match \(first.match) sets \(first.keyword) yes", fix: fix)
        }
        if !configuration.unreadable.isEmpty { return PostureCheck.result(id, .unknown, .selfReported, evidence, fix: fix) }
        return PostureCheck.result(id, .pass, .selfReported, evidence)
    }

    static func rootLogin(_ context: PostureContext) -> CheckResult {
        let id = "ssh-root-login"
        let fix = "PermitRootLogin no in /etc/ssh/sshd_config.d/holdfast.conf, then systemctl reload ssh"
        guard installed(context.tree) else { return PostureCheck.result(id, .pass, .selfReported, "sshd is not installed") }
        guard let configuration = SSHConfiguration.load(context.tree) else {
            return PostureCheck.result(id, .unknown, .selfReported, "sshd is installed but /etc/ssh/sshd_config is not readable", fix: fix)
        }
        let value = configuration.value("permitrootlogin", default: "prohibit-password")
        var evidence = "PermitRootLogin \(value)" + (configuration.global["permitrootlogin"] == nil ? " (sshd's default)" : "")
        if !configuration.unreadable.isEmpty { evidence += "; unreadable: " + configuration.unreadable.joined(separator: ", ") }
        guard value == "no" else { return PostureCheck.result(id, .fail, .selfReported, evidence, fix: fix) }
        if let reopened = configuration.conditional.first(where: { $0.keyword == "permitrootlogin" && $0.value.lowercased() != "no" }) {
            return PostureCheck.result(id, .fail, .selfReported, evidence + "; but Match \(reopened.match) sets PermitRootLogin \(reopened.value)", fix: fix)
        }
        if !configuration.unreadable.isEmpty { return PostureCheck.result(id, .unknown, .selfReported, evidence, fix: fix) }
        return PostureCheck.result(id, .pass, .selfReported, evidence)
    }
}
