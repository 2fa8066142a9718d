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

    /// sshd's alternative spellings of one option (servconf.c's keyword table).
    static let aliases = ["challengeresponseauthentication": "kbdinteractiveauthentication"]

    static func load(_ tree: RootTree, path: String = "/etc/ssh/sshd_config") -> SSHConfiguration? {
        guard let text = tree.text(path) else { return nil }
        var configuration = SSHConfiguration()
        configuration.read(text, tree: tree, match: nil, depth: 0)
        return configuration
    }

    mutating func read(_ text: String, tree: RootTree, match inherited: String?, depth: Int) {
        var match = inherited
        for raw in TextLines.of(text) {
            let line = raw.trimmed(" \t")
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            let (keyword, arguments) = Self.split(line)
            switch keyword {
            case "match":
                match = arguments.isEmpty ? "(empty)" : arguments.joined(separator: " ")
            case "include":
                guard depth < 16 else {
                    unreadable.append("Include nested more than 16 deep")
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

    /// The keyword (lower-cased) and its arguments: split at spaces, tabs and the first `=`,
    /// quotes removed, stopping at a word that begins with `#`.
    static func split(_ line: String) -> (String, [String]) {
        let characters = Array(line)
        var index = 0
        while index < characters.count, !" \t=".contains(characters[index]) { index += 1 }
        let keyword = String(characters[0..<index]).lowercased()
        while index < characters.count, " \t".contains(characters[index]) { index += 1 }
        if index < characters.count, characters[index] == "=" { index += 1 }
        var arguments: [String] = []
        while index < characters.count {
            while index < characters.count, " \t".contains(characters[index]) { index += 1 }
            guard index < characters.count else { break }
            if characters[index] == "#" { break }
            var word = ""
            if characters[index] == "\"" || characters[index] == "'" {
                let quote = characters[index]
                index += 1
                while index < characters.count, characters[index] != quote {
                    word.append(characters[index])
                    index += 1
                }
                index += 1
            } else {
                while index < characters.count, !" \t".contains(characters[index]) {
                    word.append(characters[index])
                    index += 1
                }
            }
            arguments.append(word)
        }
        return (keyword, arguments)
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
