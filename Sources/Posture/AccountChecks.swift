/// Local accounts: a second UID 0, an account with no password at all. Lines and fields are
/// read as glibc's fgetpwent/fgetspent read them: split on `\n` only, NIS compat lines (`+`/`-`)
/// skipped, the uid parsed like strtoul (leading blanks, `+`, zeros).
enum AccountChecks {
    static func uid(_ field: String) -> UInt64? {
        var digits = Substring(field)
        // strtoul(3): leading isspace() characters, then an optional sign.
        while let first = digits.first, " \t\n\u{0B}\u{0C}\r".contains(first) { digits.removeFirst() }
        if digits.first == "+" || digits.first == "-" {
            let negative = digits.first == "-"
            digits.removeFirst()
            if negative { return digits.allSatisfy({ $0 == "0" }) && !digits.isEmpty ? 0 : nil }
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let trimmed = digits.drop { $0 == "0" }
        return trimmed.isEmpty ? 0 : (trimmed.count > 19 ? UInt64.max : UInt64(trimmed))
    }

    /// `+`/`-` lines are NIS compat entries only when nsswitch.conf says `compat` for the
    /// database; with `files` (Debian's default) `+toor` is an ordinary account named `+toor`.
    static func compatLines(_ tree: RootTree, _ database: String) -> Bool {
        for line in TextLines.of(tree.text("/etc/nsswitch.conf") ?? "") {
            let trimmed = line.trimmed(" \t")
            guard trimmed.hasPrefix(database + ":") else { continue }
            return trimmed.dropFirst(database.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).contains("compat")
        }
        return false
    }

    static func isCompat(_ line: String) -> Bool { line.hasPrefix("+") || line.hasPrefix("-") }

    static func extraRoot(_ context: PostureContext) -> CheckResult {
        let id = "accounts-uid0"
        guard let passwd = context.tree.text("/etc/passwd") else {
            return PostureCheck.result(id, .unknown, .selfReported, "cannot read /etc/passwd", fix: "restore /etc/passwd")
        }
        var extra: [String] = []
        let compat = compatLines(context.tree, "passwd")
        for line in TextLines.of(passwd) where !(compat && isCompat(line)) && !line.hasPrefix("#") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 4 else { continue }
            if uid(fields[2]) == 0, fields[0] != "root" { extra.append(fields[0].isEmpty ? "(empty name)" : fields[0]) }
        }
        guard extra.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, "UID 0 besides root: " + extra.joined(separator: ", "), fix: "remove the extra UID 0 account(s) (userdel), or give them their own UID")
        }
        return PostureCheck.result(id, .pass, .selfReported, "root is the only UID 0 account")
    }

    static func emptyPasswords(_ context: PostureContext) -> CheckResult {
        let id = "accounts-empty-password"
        let fix = "passwd -l USER (lock) or set a password; never leave the hash field empty"
        var empty: [String] = []
        let compat = compatLines(context.tree, "passwd")
        let shadowCompat = compatLines(context.tree, "shadow")
        if let passwd = context.tree.text("/etc/passwd") {
            for line in TextLines.of(passwd) where !(compat && isCompat(line)) && !line.isEmpty {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                if fields.count >= 2, fields[1].isEmpty { empty.append(String(fields[0]) + " (in passwd)") }
            }
        }
        guard let shadow = context.tree.text("/etc/shadow") else {
            if !empty.isEmpty { return PostureCheck.result(id, .fail, .selfReported, "empty password: " + empty.joined(separator: ", "), fix: fix) }
            let why = context.tree.exists("/etc/shadow") ? "cannot read /etc/shadow (root only)" : "no /etc/shadow"
            return PostureCheck.result(id, .unknown, .selfReported, why, fix: fix)
        }
        for line in TextLines.of(shadow) where !(shadowCompat && isCompat(line)) && !line.isEmpty {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 2, fields[1].isEmpty { empty.append(String(fields[0])) }
        }
        guard empty.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, "empty password: " + empty.joined(separator: ", "), fix: fix)
        }
        return PostureCheck.result(id, .pass, .selfReported, "no account has an empty password hash")
    }
}
