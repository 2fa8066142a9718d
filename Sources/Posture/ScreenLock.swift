/// An idle screen lock on desktops, configured system-wide and locked so users cannot turn it off.
/// GNOME (Debian's default desktop) keeps it in dconf: keyfiles under /etc/dconf/db/*.d/ and
/// lock lists under /etc/dconf/db/*.d/locks/.
enum ScreenLock {
    static let sessionDirectories = ["/usr/share/xsessions", "/usr/share/wayland-sessions"]

    /// dconf keyfile groups: `[org/gnome/desktop/session]` → key → value.
    static func keyfile(_ text: String, into values: inout [String: String]) {
        var group = ""
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmed(" \t\r")
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
        let fix = "in /etc/dconf/db/local.d/00-holdfast: [org/gnome/desktop/session] idle-delay=uint32 300 and [org/gnome/desktop/screensaver] lock-enabled=true lock-delay=uint32 0; list both keys in /etc/dconf/db/local.d/locks/holdfast; run dconf update"
        let tree = context.tree
        let sessions = sessionDirectories.flatMap { directory in (tree.list(directory) ?? []).filter { $0.hasSuffix(".desktop") } }
        guard !sessions.isEmpty else {
            return PostureCheck.result(id, .unknown, .selfReported, "no desktop session installed (no /usr/share/xsessions or wayland-sessions entries)", fix: "nothing to lock without a desktop; if one is installed later: " + fix)
        }
        let names = Set(sessions.map { String($0.dropLast(".desktop".count)) })
        let gnome = names.contains { $0.hasPrefix("gnome") || $0 == "ubuntu" || $0.hasPrefix("ubuntu-") }
        guard gnome else {
            return PostureCheck.result(id, .unknown, .selfReported, "desktop sessions \(names.sorted().joined(separator: ", ")): only GNOME's dconf lock settings are read", fix: fix)
        }
        var values: [String: String] = [:]
        var locks: Set<String> = []
        for database in (tree.list("/etc/dconf/db") ?? []).filter({ $0.hasSuffix(".d") }) {
            let base = "/etc/dconf/db/" + database
            for file in tree.list(base) ?? [] where file != "locks" {
                if let text = tree.text(base + "/" + file, limit: 1 << 20) { keyfile(text, into: &values) }
            }
            for file in tree.list(base + "/locks") ?? [] {
                for line in (tree.text(base + "/locks/" + file, limit: 1 << 20) ?? "").split(separator: "\n") {
                    let trimmed = line.trimmed(" \t\r")
                    if trimmed.hasPrefix("/") { locks.insert(trimmed) }
                }
            }
        }
        let idleKey = "/org/gnome/desktop/session/idle-delay", lockKey = "/org/gnome/desktop/screensaver/lock-enabled"
        let idle = values[idleKey].flatMap { Int($0.split(separator: " ").last ?? "") }
        let enabled = values[lockKey]
        var problems: [String] = []
        if let idle {
            if idle == 0 || idle > context.settings.maximumIdleLock { problems.append("idle-delay \(idle) s (limit \(context.settings.maximumIdleLock) s, 0 = never)") }
        } else {
            problems.append("no system idle-delay")
        }
        if enabled != "true" { problems.append("lock-enabled \(enabled ?? "unset")") }
        let unlocked = [idleKey, lockKey].filter { !locks.contains($0) }
        if !unlocked.isEmpty { problems.append("not locked: " + unlocked.map { RootTree.lastComponent($0) }.joined(separator: ", ")) }
        let evidence = "GNOME: idle-delay \(idle.map { "\($0) s" } ?? "unset"), lock-enabled \(enabled ?? "unset"), \(2 - unlocked.count) of 2 locked"
        return problems.isEmpty
            ? PostureCheck.result(id, .pass, .selfReported, evidence)
            : PostureCheck.result(id, .fail, .selfReported, evidence + " (" + problems.joined(separator: "; ") + ")", fix: fix)
    }
}
