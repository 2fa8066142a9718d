/// Local accounts: a second UID 0, an account with no password at all. Lines and fields are
/// read as glibc's fgetpwent/fgetspent read them: split on `\n` only, NIS compat lines (`+`/`-`)
/// skipped, the uid parsed like strtoul (leading blanks, `+`, zeros).
enum AccountChecks {
    static func uid(_ field: String) -> UInt64? {
        var digits = Substring(field)
        while let first = digits.first, first == " " || first == "\t" { digits.removeFirst() }
        if digits.first == "+" { digits.removeFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let trimmed = digits.drop { $0 == "0" }
        return trimmed.isEmpty ? 0 : (trimmed.count > 19 ? UInt64.max : UInt64(trimmed))
    }

    static func isCompat(_ line: String) -> Bool { line.hasPrefix("+") || line.hasPrefix("-") }

    static func extraRoot(_ context: PostureContext) -> CheckResult {
        let id = "accounts-uid0"
        guard let passwd = context.tree.text("/etc/passwd") else {
            return PostureCheck.result(id, .unknown, .selfReported, "cannot read /etc/passwd", fix: "restore /etc/passwd")
        }
        var extra: [String] = []
        for line in TextLines.of(passwd) where !isCompat(line) && !line.hasPrefix("#") {
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
        if let passwd = context.tree.text("/etc/passwd") {
            for line in TextLines.of(passwd) where !isCompat(line) && !line.isEmpty {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                if fields.count >= 2, fields[1].isEmpty { empty.append(String(fields[0]) + " (in passwd)") }
            }
        }
        guard let shadow = context.tree.text("/etc/shadow") else {
            if !empty.isEmpty { return PostureCheck.result(id, .fail, .selfReported, "empty password: " + empty.joined(separator: ", "), fix: fix) }
            let why = context.tree.exists("/etc/shadow") ? "cannot read /etc/shadow (root only)" : "no /etc/shadow"
            return PostureCheck.result(id, .unknown, .selfReported, why, fix: fix)
        }
        for line in TextLines.of(shadow) where !isCompat(line) && !line.isEmpty {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 2, fields[1].isEmpty { empty.append(String(fields[0])) }
        }
        guard empty.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, "empty password: " + empty.joined(separator: ", "), fix: fix)
        }
        return PostureCheck.result(id, .pass, .selfReported, "no account has an empty password hash")
    }
}
