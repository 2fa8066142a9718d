/// An idle screen lock on desktops, configured system-wide and locked so users cannot turn it off.
/// GNOME (Debian's default desktop) keeps it in dconf: keyfiles under /etc/dconf/db/*.d/ and
/// lock lists under /etc/dconf/db/*.d/locks/.
enum ScreenLock {
    static let sessionDirectories = ["/usr/share/xsessions", "/usr/share/wayland-sessions"]

    /// dconf keyfile groups: `[org/gnome/desktop/session]` → key → value.
    static func keyfile(_ text: String, into values: inout [String: String]) {
        var group = ""
        for line in TextLines.of(text) {
            let trimmed = line.trimmed(" \t")
            if trimmed.hasPrefix("#") || trimmed.isEmpty { continue }
            if trimmed.hasPrefix("["), trimmed.hasSuffix("]") {
                group = String(trimmed.dropFirst().dropLast()).trimmed("/")
                continue
            }
            guard let equals = trimmed.firstIndex(of: "=") else { continue }
            let key = trimmed[..<equals].trimmed(" \t"), value = trimmed[trimmed.index(after: equals)...].trimmed(" \t")
            values["/" + group + "/" + key] = value
        }
    }

    static func check(_ context: PostureContext) -> CheckResult {
        let id = "screen-lock"
        let fix = "in /etc/dconf/db/local.d/00-holdfast: [org/gnome/desktop/session] idle-delay=uint32 300, [org/gnome/desktop/screensaver] lock-enabled=true lock-delay=uint32 0, [org/gnome/desktop/lockdown] disable-lock-screen=false; list the four keys in /etc/dconf/db/local.d/locks/holdfast; system-db:local in /etc/dconf/profile/user; run dconf update"
        let tree = context.tree
        let sessions = sessionDirectories.flatMap { directory in (tree.list(directory) ?? []).filter { $0.hasSuffix(".desktop") } }
        guard !sessions.isEmpty else {
            return PostureCheck.result(id, .unknown, .selfReported, "no desktop session installed (no /usr/share/xsessions or wayland-sessions entries)", fix: "nothing to lock without a desktop; if one is installed later: " + fix)
        }
        let names = Set(sessions.map { String($0.dropLast(".desktop".count)) })
        let isGnome = { (name: String) in name.hasPrefix("gnome") || name == "ubuntu" || name.hasPrefix("ubuntu-") }
        let others = names.filter { !isGnome($0) }.sorted()
        guard names.contains(where: isGnome) else {
            return PostureCheck.result(id, .unknown, .selfReported, "desktop sessions \(names.sorted().joined(separator: ", ")): only GNOME's dconf lock settings are read", fix: fix)
        }
        // The system databases a user session reads are the ones its dconf profile names
        // (`system-db:local`); gdm.d is the login screen's, and without a profile none is read.
        let profilePath = ["/etc/dconf/profile/user", "/usr/share/dconf/profile/user"].first { tree.exists($0) }
        if let profilePath, tree.text(profilePath) == nil {
            return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(profilePath)", fix: fix)
        }
        let profile = profilePath.flatMap { tree.text($0) }.map(TextLines.of) ?? []
        let databases = profile.compactMap { line -> String? in
            // dconf drops `#` comments and surrounding blanks in a profile.
            let trimmed = String(line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").trimmed(" \t")
            return trimmed.hasPrefix("system-db:") ? String(trimmed.dropFirst("system-db:".count)) : nil
        }
        guard !databases.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, "GNOME: no /etc/dconf/profile/user naming a system database, so no system setting reaches users' sessions", fix: "printf 'user-db:user\\nsystem-db:local\\n' > /etc/dconf/profile/user; " + fix)
        }
        var values: [String: String] = [:]
        var locks: Set<String> = []
        var unreadable: [String] = []
        var stale: [String] = []
        // Earlier databases in the profile win; read them last.
        for database in databases.reversed() {
            let base = "/etc/dconf/db/" + database + ".d"
            // GNOME reads the compiled database, not the keyfiles: one older than a keyfile
            // means `dconf update` has not run since the change.
            let compiled = tree.info("/etc/dconf/db/" + database)?.modified
            // dconf update skips hidden files (and an editor's backups start with a dot too).
            for file in tree.list(base) ?? [] where file != "locks" && !file.hasPrefix(".") && !file.hasSuffix("~") {
                guard let text = tree.text(base + "/" + file, limit: 16 << 20) else {
                    unreadable.append(base + "/" + file)
                    continue
                }
                keyfile(text, into: &values)
                if let modified = tree.info(base + "/" + file)?.modified, modified > (compiled ?? 0) { stale.append(database) }
            }
            for file in tree.list(base + "/locks") ?? [] where !file.hasPrefix(".") {
                guard let text = tree.text(base + "/locks/" + file, limit: 16 << 20) else {
                    unreadable.append(base + "/locks/" + file)
                    continue
                }
                for line in TextLines.of(text) {
                    let trimmed = line.trimmed(" \t")
                    if trimmed.hasPrefix("/") { locks.insert(trimmed) }
                }
            }
        }
        let idleKey = "/org/gnome/desktop/session/idle-delay", lockKey = "/org/gnome/desktop/screensaver/lock-enabled"
        let delayKey = "/org/gnome/desktop/screensaver/lock-delay", activationKey = "/org/gnome/desktop/screensaver/idle-activation-enabled"
        let number = { (key: String) in values[key].flatMap { Int($0.split(separator: " ").last ?? "") } }
        let idle = number(idleKey)
        let delay = number(delayKey) ?? 0
        let enabled = values[lockKey]
        var problems: [String] = []
        if let idle {
            if idle == 0 || idle + delay > context.settings.maximumIdleLock { problems.append("idle-delay \(idle) s + lock-delay \(delay) s (limit \(context.settings.maximumIdleLock) s, 0 = never)") }
        } else {
            problems.append("no system idle-delay")
        }
        if enabled != "true" { problems.append("lock-enabled \(enabled ?? "unset")") }
        if values[activationKey] == "false" { problems.append("idle-activation-enabled false") }
        let disableKey = "/org/gnome/desktop/lockdown/disable-lock-screen"
        if values[disableKey] == "true" { problems.append("disable-lock-screen true") }
        // Unlocked, a user can raise lock-delay or switch the lock screen off with gsettings.
        let required = [idleKey, lockKey, delayKey, disableKey]
        if !Set(stale).isEmpty { problems.append("dconf update not run since the keyfiles changed (\(Set(stale).sorted().joined(separator: ", ")))") }
        let unlocked = required.filter { !locks.contains($0) }
        if !unlocked.isEmpty { problems.append("not locked: " + unlocked.map { RootTree.lastComponent($0) }.joined(separator: ", ")) }
        var evidence = "GNOME (dconf \(databases.joined(separator: ","))): idle-delay \(idle.map { "\($0) s" } ?? "unset"), lock-enabled \(enabled ?? "unset"), \(required.count - unlocked.count) of \(required.count) locked"
        if !problems.isEmpty {
            if !unreadable.isEmpty { return PostureCheck.result(id, .unknown, .selfReported, evidence + "; cannot read " + unreadable.joined(separator: ", "), fix: fix) }
            return PostureCheck.result(id, .fail, .selfReported, evidence + " (" + problems.joined(separator: "; ") + ")", fix: fix)
        }
        // Users may pick another installed session at the login screen, which ignores GNOME's settings.
        if !others.isEmpty {
            evidence += "; other sessions installed (\(others.joined(separator: ", "))) are not checked"
            return PostureCheck.result(id, .unknown, .selfReported, evidence, fix: "remove the other desktop sessions, or lock them down too")
        }
        return PostureCheck.result(id, .pass, .selfReported, evidence)
    }
}
