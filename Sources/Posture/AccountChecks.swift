/// Local accounts: a second UID 0, an account with no password at all.
enum AccountChecks {
    static func extraRoot(_ context: PostureContext) -> CheckResult {
        let id = "accounts-uid0"
        guard let passwd = context.tree.text("/etc/passwd") else {
            return PostureCheck.result(id, .unknown, .selfReported, "cannot read /etc/passwd", fix: "restore /etc/passwd")
        }
        var extra: [String] = []
        for line in passwd.split(separator: "\n") where !line.hasPrefix("+") && !line.hasPrefix("-") && !line.hasPrefix("#") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 4 else { continue }
            if fields[2] == "0", fields[0] != "root" { extra.append(String(fields[0])) }
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
            for line in passwd.split(separator: "\n") {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                if fields.count >= 2, fields[1].isEmpty, !fields[0].hasPrefix("+") { empty.append(String(fields[0]) + " (in passwd)") }
            }
        }
        guard let shadow = context.tree.text("/etc/shadow") else {
            if !empty.isEmpty { return PostureCheck.result(id, .fail, .selfReported, "empty password: " + empty.joined(separator: ", "), fix: fix) }
            return PostureCheck.result(id, .unknown, .selfReported, "cannot read /etc/shadow (root only)", fix: fix)
        }
        for line in shadow.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 2, fields[1].isEmpty { empty.append(String(fields[0])) }
        }
        guard empty.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, "empty password: " + empty.joined(separator: ", "), fix: fix)
        }
        return PostureCheck.result(id, .pass, .selfReported, "no account has an empty password hash")
    }
}
