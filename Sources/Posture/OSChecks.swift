/// os-release(5) and the running kernel.
enum OSChecks {
    /// `KEY=value` pairs of os-release, quotes and backslash escapes removed.
    static func osRelease(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in TextLines.of(text) {
            let trimmed = line.trimmed(" \t\r")
            guard !trimmed.hasPrefix("#"), let equals = trimmed.firstIndex(of: "=") else { continue }
            let key = String(trimmed[..<equals])
            var value = Substring(trimmed[trimmed.index(after: equals)...])
            if let quote = value.first, quote == "\"" || quote == "'", value.count >= 2, value.last == quote {
                value = value.dropFirst().dropLast()
            }
            var unescaped = ""
            var escaping = false
            for character in value {
                if escaping || character != "\\" {
                    unescaped.append(character)
                    escaping = false
                } else {
                    escaping = true
                }
            }
            result[key] = unescaped
        }
        return result
    }

    /// Dotted numeric versions compared part by part ("22.04" < "24.04", "12" < "12.1").
    static func compareDotted(_ a: String, _ b: String) -> Int {
        let left = a.split(separator: ".").map { Int($0) ?? 0 }, right = b.split(separator: ".").map { Int($0) ?? 0 }
        for index in 0..<max(left.count, right.count) {
            let x = index < left.count ? left[index] : 0, y = index < right.count ? right[index] : 0
            if x != y { return x < y ? -1 : 1 }
        }
        return 0
    }

    static func osVersion(_ context: PostureContext) -> CheckResult {
        let id = "os-version"
        guard let text = context.tree.text("/etc/os-release") ?? context.tree.text("/usr/lib/os-release") else {
            return PostureCheck.result(id, .unknown, .selfReported, "no /etc/os-release or /usr/lib/os-release", fix: "install base-files (it ships os-release)")
        }
        let fields = osRelease(text)
        let distribution = fields["ID"] ?? "linux"
        let name = fields["PRETTY_NAME"] ?? distribution
        var evidence = "\(name)"
        if distribution == "debian", let point = context.tree.attribute("/etc/debian_version") { evidence += " (debian_version \(point))" }
        let minimums = context.settings.minimumVersions
        let supported = minimums.keys.sorted().map { "\($0) \(minimums[$0] ?? "")" }.joined(separator: ", ")
        guard let minimum = minimums[distribution] else {
            return PostureCheck.result(id, .fail, .selfReported, evidence + "; ID \(distribution) is not a supported distribution (\(supported))", fix: "install a supported release")
        }
        guard let version = fields["VERSION_ID"] else {
            return PostureCheck.result(id, .fail, .selfReported, evidence + "; no VERSION_ID (testing or unstable), not a supported release", fix: "install a \(distribution) stable release, \(minimum) or later")
        }
        guard compareDotted(version, minimum) >= 0 else {
            return PostureCheck.result(id, .fail, .selfReported, evidence + "; \(distribution) \(version) is older than the minimum \(minimum)", fix: "upgrade to \(distribution) \(minimum) or later")
        }
        return PostureCheck.result(id, .pass, .selfReported, evidence + "; minimum \(minimum)")
    }

    /// The running kernel, and whether a newer one waits for a reboot.
    static func kernel(_ context: PostureContext) -> CheckResult {
        let id = "kernel"
        let fix = "reboot into the newest installed kernel"
        guard let release = context.tree.attribute("/proc/sys/kernel/osrelease"), !release.isEmpty else {
            return PostureCheck.result(id, .unknown, .attested, "cannot read /proc/sys/kernel/osrelease", fix: fix)
        }
        var evidence = "running \(release)"
        if context.tree.exists("/run/reboot-required") {
            let packages = (context.tree.text("/run/reboot-required.pkgs") ?? "").split(separator: "\n").prefix(3).map { $0.trimmed("\r") }.joined(separator: ", ")
            return PostureCheck.result(id, .fail, .attested, evidence + "; /run/reboot-required is set" + (packages.isEmpty ? "" : " by \(packages)"), fix: fix)
        }
        let installed = (context.tree.list("/boot") ?? []).filter { $0.hasPrefix("vmlinuz-") }.map { String($0.dropFirst("vmlinuz-".count)) }
        // Only kernels of the same flavour compare (6.1.0-28-amd64 vs 6.1.0-26-amd64, not -rt-amd64).
        let flavour = { (version: String) -> String in version.split(separator: "-").filter { Int($0) == nil && !$0.contains(".") }.joined(separator: "-") }
        let comparable = installed.filter { flavour($0) == flavour(release) }
        if let newest = comparable.max(by: { DebianVersion.compare($0, $1) < 0 }), DebianVersion.compare(newest, release) > 0 {
            return PostureCheck.result(id, .fail, .attested, evidence + "; newer \(newest) installed in /boot, not running", fix: fix)
        }
        evidence += installed.isEmpty ? " (no kernel in /boot to compare with)" : installed.contains(release) ? ", the newest installed" : " (not one of /boot's \(installed.count) kernel(s))"
        return PostureCheck.result(id, .pass, .attested, evidence)
    }
}
