/// sshd_config as sshd reads it (sshd_config(5)): keywords case-insensitive, `Keyword value` or
/// `Keyword=value`, the first value obtained wins, `Include` expands globs in place (relative
/// paths under /etc/ssh), and `Match` makes what follows conditional until the next `Match` or
/// the end of the file it appears in.
struct SSHConfiguration: Equatable {
    /// Lower-cased keyword → the first global value.
    var global: [String: String] = [:]
    /// Settings inside Match blocks: (the Match criteria, lower-cased keyword, value).
    var conditional: [(match: String, keyword: String, value: String)] = []
    /// Include patterns that matched nothing, and files that could not be read.
    var unreadable: [String] = []

    static func == (lhs: SSHConfiguration, rhs: SSHConfiguration) -> Bool {
        lhs.global == rhs.global && lhs.unreadable == rhs.unreadable && lhs.conditional.map { "\($0)" } == rhs.conditional.map { "\($0)" }
    }

    static func load(_ tree: RootTree, path: String = "/etc/ssh/sshd_config") -> SSHConfiguration? {
        guard let text = tree.text(path) else { return nil }
        var configuration = SSHConfiguration()
        configuration.read(text, tree: tree, match: nil, depth: 0)
        return configuration
    }

    mutating func read(_ text: String, tree: RootTree, match inherited: String?, depth: Int) {
        var match = inherited
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.trimmed(" \t")
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            let (keyword, value) = Self.split(line)
            switch keyword {
            case "match":
                match = value.lowercased() == "all" ? nil : value
            case "include":
                guard depth < 16 else {
                    unreadable.append("Include nested more than 16 deep")
                    continue
                }
                for pattern in value.split(separator: " ").map(String.init) {
                    let absolute = pattern.hasPrefix("/") ? pattern : "/etc/ssh/" + pattern
                    let files = Self.glob(tree, absolute)
                    if files.isEmpty, !absolute.contains("*") && !absolute.contains("?") { unreadable.append(absolute) }
                    for file in files {
                        guard let included = tree.text(file) else {
                            unreadable.append(file)
                            continue
                        }
                        read(included, tree: tree, match: match, depth: depth + 1)
                    }
                }
            default:
                if let match {
                    conditional.append((match, keyword, value))
                } else if global[keyword] == nil {
                    global[keyword] = value
                }
            }
        }
    }

    /// `Keyword value`, `Keyword=value`, `Keyword = value`; quotes around the value removed.
    static func split(_ line: String) -> (String, String) {
        guard let end = line.firstIndex(where: { $0 == " " || $0 == "\t" || $0 == "=" }) else { return (line.lowercased(), "") }
        var rest = line[end...].drop { $0 == " " || $0 == "\t" }
        if rest.first == "=" { rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" } }
        var value = String(rest).trimmed(" \t")
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
        return (line[..<end].lowercased(), value)
    }

    /// Files matching a pattern whose wildcards are in the last component (the form sshd
    /// configurations use: `/etc/ssh/sshd_config.d/*.conf`), sorted as glob(3) sorts them.
    static func glob(_ tree: RootTree, _ pattern: String) -> [String] {
        let directory = RootTree.parent(pattern)
        let name = RootTree.lastComponent(pattern)
        guard name.contains("*") || name.contains("?") else { return tree.exists(pattern) ? [pattern] : [] }
        return (tree.list(directory) ?? []).filter { !$0.hasPrefix(".") && Self.matches(Array(name), Array($0)) }.map { (directory == "/" ? "" : directory) + "/" + $0 }
    }

    static func matches(_ pattern: [Character], _ name: [Character]) -> Bool {
        if pattern.isEmpty { return name.isEmpty }
        switch pattern[0] {
        case "*": return (0...name.count).contains { matches(Array(pattern.dropFirst()), Array(name.dropFirst($0))) }
        case "?": return !name.isEmpty && matches(Array(pattern.dropFirst()), Array(name.dropFirst()))
        default: return !name.isEmpty && name[0] == pattern[0] && matches(Array(pattern.dropFirst()), Array(name.dropFirst()))
        }
    }

    /// The global value of a keyword (or its alias), else sshd's compiled-in default.
    func value(_ keyword: String, aliases: [String] = [], default fallback: String) -> String {
        for name in [keyword] + aliases { if let value = global[name] { return value.lowercased() } }
        return fallback
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
        let keyboard = configuration.value("kbdinteractiveauthentication", aliases: ["challengeresponseauthentication"], default: "yes")
        let pam = configuration.value("usepam", default: "no")
        var evidence = "PasswordAuthentication \(password), KbdInteractiveAuthentication \(keyboard), UsePAM \(pam)"
        let reopened = configuration.conditional.filter { ["passwordauthentication", "kbdinteractiveauthentication", "challengeresponseauthentication"].contains($0.keyword) && $0.value.lowercased() == "yes" }
        if !configuration.unreadable.isEmpty { evidence += "; unreadable: " + configuration.unreadable.joined(separator: ", ") }
        // Keyboard-interactive through PAM asks for the password: it is a password login too.
        if password == "yes" || (keyboard == "yes" && pam == "yes") {
            return PostureCheck.result(id, .fail, .selfReported, evidence + "; passwords are accepted", fix: fix)
        }
        if let first = reopened.first {
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
