import HoldfastCrypto

/// Holdfast's own files: the binaries as the package recorded them, config and keys with safe
/// owners and modes.
enum IntegrityChecks {
    static func packageFiles(_ context: PostureContext) -> CheckResult {
        let id = "holdfast-integrity"
        let fix = "apt-get install --reinstall \(context.settings.packageName) (and find out who changed the files)"
        let tree = context.tree
        let name = context.settings.packageName
        // dpkg names the file `PACKAGE:ARCH.md5sums` only for Multi-Arch: same packages, which
        // holdfast is not; listing /var/lib/dpkg/info (thousands of files) would cost more than the check.
        let listPath = "/var/lib/dpkg/info/\(name).md5sums"
        guard let list = tree.text(listPath) else {
            if tree.exists(listPath) { return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(listPath)", fix: fix) }
            return PostureCheck.result(id, .unknown, .selfReported, "\(name) is not installed from a package (no dpkg md5sums): nothing to compare the binaries with", fix: "install Holdfast from its .deb")
        }
        var checked = 0
        var changed: [String] = []
        var unreadable: [String] = []
        for line in TextLines.of(list) {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let path = "/" + parts[1].trimmed(" ")
            checked += 1
            guard let bytes = tree.read(path, limit: 1 << 28) else {
                if let info = tree.info(path, followLink: false) {
                    if info.kind != .file && info.kind != .link { changed.append("\(path) is not a regular file") } else if info.size > 1 << 28 { changed.append("\(path) modified (\(info.size) bytes)") } else { unreadable.append(path) }
                } else {
                    changed.append("\(path) missing")
                }
                continue
            }
            if DpkgMD5.hex(bytes) != parts[0].lowercased() { changed.append("\(path) modified") }
        }
        guard checked > 0 else {
            return PostureCheck.result(id, .fail, .selfReported, "\(listPath) lists no file: the package's record was emptied", fix: fix)
        }
        if changed.isEmpty, !unreadable.isEmpty {
            return PostureCheck.result(id, .unknown, .selfReported, "\(unreadable.count) of \(checked) packaged file(s) unreadable here: " + unreadable.prefix(4).joined(separator: ", "), fix: "run as root")
        }
        guard changed.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, "\(changed.count) of \(checked) packaged file(s) differ: " + changed.prefix(4).joined(separator: ", "), fix: fix)
        }
        return PostureCheck.result(id, .pass, .selfReported, "\(checked) packaged file(s) match dpkg's checksums")
    }

    static func permissions(_ context: PostureContext) -> CheckResult {
        let id = "holdfast-permissions"
        let fix = "chown root:root the config and state; chmod 0644 (or stricter) agent.conf, 0700 the state directory, 0600 keys and state files"
        let tree = context.tree
        var problems: [String] = []
        var seen: [String] = []
        var unreadable: [String] = []
        /// The directories above a path: none may be writable by anyone but root, or the file
        /// can be swapped for another.
        func checkParents(_ path: String) {
            var parent = RootTree.parent(path)
            while parent != "/" {
                if let info = tree.info(parent, followLink: false) {
                    if info.kind == .link { problems.append("\(parent) is a symlink") }
                    if info.uid != 0 { problems.append("\(parent) owned by uid \(info.uid)") }
                    if info.mode & 0o022 != 0, info.mode & 0o1000 == 0 { problems.append("\(parent) mode \(info.octalMode) is group/world-writable") }
                }
                parent = RootTree.parent(parent)
            }
        }
        let configuration = context.settings.configurationFile
        if let info = tree.info(configuration, followLink: false) {
            if info.kind == .link { problems.append("\(configuration) is a symlink") }
            if info.uid != 0 { problems.append("\(configuration) owned by uid \(info.uid)") }
            if info.mode & 0o022 != 0 { problems.append("\(configuration) mode \(info.octalMode) is group/world-writable") }
            checkParents(configuration)
            seen.append("agent.conf \(info.octalMode)")
        }
        let state = context.settings.stateDirectory
        if let info = tree.info(state, followLink: false) {
            if info.kind == .link { problems.append("\(state) is a symlink") }
            if info.uid != 0 { problems.append("\(state) owned by uid \(info.uid)") }
            if info.mode & 0o077 != 0 { problems.append("\(state) mode \(info.octalMode) (want 0700)") }
            checkParents(state)
            seen.append("state \(info.octalMode)")
            var keys = 0
            // Everything in the state directory, one level of subdirectories down.
            var pending = [(state, 0)]
            while let (directory, depth) = pending.popLast() {
                guard let names = tree.list(directory) else {
                    unreadable.append(directory)
                    continue
                }
                for name in names {
                    let path = directory + "/" + name
                    guard let file = tree.info(path, followLink: false) else { continue }
                    if file.kind == .link { problems.append("\(path) is a symlink") }
                    if file.uid != 0 { problems.append("\(path) owned by uid \(file.uid)") }
                    if file.kind == .directory {
                        if file.mode & 0o022 != 0 { problems.append("\(path) mode \(file.octalMode) is group/world-writable") }
                        if depth < 1 { pending.append((path, depth + 1)) }
                        continue
                    }
                    guard file.kind == .file else { continue }
                    if name.hasSuffix(".key") {
                        keys += 1
                        if file.mode & 0o077 != 0 { problems.append("\(path) mode \(file.octalMode) (a key must be 0600)") }
                    } else if file.mode & 0o022 != 0 {
                        problems.append("\(path) mode \(file.octalMode) is group/world-writable")
                    }
                }
            }
            seen.append("\(keys) key(s)")
        }
        if problems.isEmpty, !unreadable.isEmpty {
            return PostureCheck.result(id, .unknown, .selfReported, "cannot list \(unreadable.joined(separator: ", ")) (root only)", fix: "run as root")
        }
        guard problems.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, problems.prefix(4).joined(separator: "; "), fix: fix)
        }
        return PostureCheck.result(id, .pass, .selfReported, seen.isEmpty ? "no agent.conf and no state directory yet" : seen.joined(separator: ", ") + ", owned by root")
    }
}
