import FoundationEssentials
import HoldfastCompression
import HoldfastCore
import Synchronization

/// A package with a newer version in a security list than the one installed.
public struct PendingUpdate: Sendable, Equatable, Codable {
    public var package: String
    public var installed: String
    public var candidate: String
}

/// The pending-security-update answer, kept between runs while neither dpkg's status nor the
/// security lists changed (size and modification time of each); a run then costs a few `stat`s.
/// With a `file`, the answer also survives the process (0600, refused unless private to this
/// user), so `holdfast posture` run from a shell is as fast as the daemon's second run.
public final class PatchCache: Sendable {
    struct Entry: Sendable, Codable {
        var key: [String]
        var pending: [PendingUpdate]
        var lists: [String]
    }

    private let entry = Mutex<Entry?>(nil)
    private let file: String?

    public init(file: String? = nil) {
        self.file = file
        if let file, let bytes = try? SecureFile.readPrivate(file, maximumSize: 1 << 22),
           let stored = try? JSONDecoder().decode(Entry.self, from: Data(bytes)) {
            entry.withLock { $0 = stored }
        }
    }

    func lookup(_ key: [String]) -> (pending: [PendingUpdate], lists: [String])? {
        entry.withLock { current in
            guard let current, current.key == key else { return nil }
            return (current.pending, current.lists)
        }
    }

    func store(_ key: [String], _ pending: [PendingUpdate], _ lists: [String]) {
        let stored = Entry(key: key, pending: pending, lists: lists)
        entry.withLock { $0 = stored }
        // A cache that cannot be written only costs the next run its speed.
        if let file, let bytes = try? JSONEncoder().encode(stored) { try? SecureFile.write(Array(bytes), to: file) }
    }
}

/// The apt and dpkg checks: pending security updates, the age of the last update, unattended upgrades.
enum PatchChecks {
    static let listsDirectory = "/var/lib/apt/lists"
    static let statusFile = "/var/lib/dpkg/status"

    /// The security suites' Packages lists: those whose Release/InRelease says `Suite: *-security`
    /// or `Label: *Security*` (Debian-Security, Ubuntu's jammy-security), found by the lists'
    /// shared file-name prefix. Names alone are not trusted; the Release file says what a list is.
    static func securityLists(_ tree: RootTree) -> (lists: [String], unreadable: [String])? {
        guard let names = tree.list(listsDirectory) else { return nil }
        var prefixes: [String] = []
        var unreadable: [String] = []
        for name in names where name.hasSuffix("_InRelease") || name.hasSuffix("_Release") {
            guard tree.info(listsDirectory + "/" + name)?.kind == .file else { continue }
            guard let head = tree.read(listsDirectory + "/" + name, limit: 1 << 24) else {
                unreadable.append(name)
                continue
            }
            let text = String(decoding: head.prefix(8_192), as: UTF8.self)
            var suite = "", label = ""
            for line in TextLines.of(text).prefix(60) {
                if line.hasPrefix("Suite:") { suite = line.dropFirst(6).trimmed(" \t\r") }
                if line.hasPrefix("Label:") { label = line.dropFirst(6).trimmed(" \t\r") }
            }
            if suite.hasSuffix("-security") || label.lowercased().contains("security") {
                prefixes.append(String(name[..<(name.hasSuffix("_InRelease") ? name.index(name.endIndex, offsetBy: -"_InRelease".count) : name.index(name.endIndex, offsetBy: -"_Release".count))]))
            }
        }
        let lists = names.filter { name in
            prefixes.contains { name.hasPrefix($0 + "_") } && listSuffixes.contains { name.hasSuffix($0) }
        }
        return (lists, unreadable)
    }

    /// How apt may store a Packages list (Acquire::CompressionTypes / GzipIndexes).
    static let listSuffixes = ["_Packages", "_Packages.lz4", "_Packages.gz", "_Packages.xz", "_Packages.zst", "_Packages.bz2"]

    /// The largest list decompressed: Debian's whole main suite is ~70 MB; a security list a few.
    static let maximumList = 128 << 20

    /// A list's stanzas as plain bytes, or why not.
    static func plain(_ raw: [UInt8], name: String) -> Result<[UInt8], ProbeError> {
        if name.hasSuffix("_Packages") { return .success(raw) }
        if name.hasSuffix(".lz4") {
            return LZ4Frame.decompress(raw, limit: maximumList).mapError { ProbeError("\(name): \($0)") }
        }
        if name.hasSuffix(".gz") {
            let reader = GzipReader()
            var output: [UInt8] = []
            var tooLarge = false
            raw.withUnsafeBytes { buffer in
                reader.feed(buffer) { chunk in
                    if output.count + chunk.count > maximumList { tooLarge = true } else { output += chunk }
                }
            }
            if let failure = reader.finish() { return .failure(ProbeError("\(name): \(failure)")) }
            return tooLarge ? .failure(ProbeError("\(name): inflates past \(maximumList) bytes")) : .success(output)
        }
        return .failure(ProbeError("\(name): this compression is not read here (lz4, gzip or plain lists are)"))
    }

    /// dpkg states whose files are on disk: everything but not-installed and config-files.
    static func isUnpacked(_ status: String?) -> Bool {
        guard let state = status?.split(separator: " ").last else { return false }
        return !["not-installed", "config-files"].contains(state)
    }

    /// Installed packages from dpkg's status: (name, architecture) → version.
    static func installed(_ bytes: [UInt8]) -> [String: String] {
        var result: [String: String] = [:]
        DebianControl.stanzas(bytes, fields: ["Package", "Status", "Version", "Architecture"]) { stanza in
            guard let name = stanza["Package"], let version = stanza["Version"], isUnpacked(stanza["Status"]) else { return }
            result[name + ":" + (stanza["Architecture"] ?? "")] = version
        }
        return result
    }

    static func pendingSecurityUpdates(_ context: PostureContext) -> CheckResult {
        let id = "security-updates"
        let fix = "apt-get update && apt-get upgrade (or let unattended-upgrades install the security suite)"
        let tree = context.tree
        guard let found = securityLists(tree) else {
            return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(listsDirectory)", fix: fix)
        }
        let lists = found.lists
        guard lists.isEmpty, !found.unreadable.isEmpty else { return pending(context, lists, fix: fix) }
        return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(found.unreadable.joined(separator: ", "))", fix: fix)
    }

    static func pending(_ context: PostureContext, _ lists: [String], fix: String) -> CheckResult {
        let id = "security-updates"
        let tree = context.tree
        guard !lists.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, "no security suite in apt's lists (no *-security source configured, or apt-get update never ran)", fix: "add the distribution's security suite to apt's sources and run apt-get update")
        }
        guard let statusInfo = tree.info(statusFile) else {
            return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(statusFile)", fix: fix)
        }
        var key = ["status \(statusInfo.size) \(statusInfo.modified)"]
        for list in lists {
            guard let info = tree.info(listsDirectory + "/" + list) else { continue }
            key.append("\(list) \(info.size) \(info.modified)")
        }
        let pending: [PendingUpdate]
        if context.tree.isHost, let cached = context.cache.lookup(key) {
            pending = cached.pending
        } else {
            guard let status = tree.read(statusFile, limit: 1 << 28) else {
                return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(statusFile)", fix: fix)
            }
            let installed = installed(status)
            var found: [String: PendingUpdate] = [:]
            for list in lists {
                guard let raw = tree.read(listsDirectory + "/" + list, limit: 1 << 28) else {
                    return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(list)", fix: fix)
                }
                let bytes: [UInt8]
                switch plain(raw, name: list) {
                case .success(let plain): bytes = plain
                case .failure(let error): return PostureCheck.result(id, .unknown, .selfReported, error.message, fix: "apt-get update (the list is damaged or stored in a form not read here)")
                }
                var stanzas = 0
                DebianControl.stanzas(bytes, fields: ["Package", "Version", "Architecture"]) { stanza in
                    guard let name = stanza["Package"], let candidate = stanza["Version"] else { return }
                    stanzas += 1
                    let architecture = stanza["Architecture"] ?? ""
                    let version = installed[name + ":" + architecture] ?? (architecture == "all" ? nil : installed[name + ":all"])
                    guard let version, DebianVersion.compare(candidate, version) > 0 else { return }
                    let keyName = name + ":" + architecture
                    if let existing = found[keyName], DebianVersion.compare(existing.candidate, candidate) >= 0 { return }
                    found[keyName] = PendingUpdate(package: name, installed: version, candidate: candidate)
                }
                // A security list with no package in it is not "nothing pending": it is unreadable.
                guard stanzas > 0 else {
                    return PostureCheck.result(id, .unknown, .selfReported, "\(list) holds no package stanza", fix: "apt-get update (the list is damaged)")
                }
            }
            pending = found.values.sorted { $0.package < $1.package }
            if context.tree.isHost { context.cache.store(key, pending, lists) }
        }
        let suites = lists.count == 1 ? "1 security list" : "\(lists.count) security lists"
        guard !pending.isEmpty else {
            return PostureCheck.result(id, .pass, .selfReported, "no pending security updates (\(suites))")
        }
        let named = pending.prefix(5).map { "\($0.package) \($0.installed) → \($0.candidate)" }.joined(separator: ", ")
        return PostureCheck.result(id, .fail, .selfReported, "\(pending.count) pending security update(s): \(named)\(pending.count > 5 ? ", …" : "") (\(suites))", fix: fix)
    }

    static func updateAge(_ context: PostureContext) -> CheckResult {
        let id = "apt-updated"
        let fix = "apt-get update (and enable apt-daily.timer so it runs on its own)"
        let limit = context.settings.maximumUpdateAge
        // Debian's apt writes this stamp after every successful update (APT::Update::Post-Invoke-Success
        // in /etc/apt/apt.conf.d/15update-stamp, and apt.systemd.daily).
        let stamp = "/var/lib/apt/periodic/update-success-stamp"
        var source = stamp
        var when = context.tree.info(stamp).flatMap { $0.kind == .file ? $0.modified : nil }
        if when == nil {
            // No stamp: the newest Release file apt fetched is the next best sign of an update.
            let releases = (context.tree.list(listsDirectory) ?? []).filter { $0.hasSuffix("_InRelease") || $0.hasSuffix("_Release") }
            when = releases.compactMap { context.tree.info(listsDirectory + "/" + $0).flatMap { $0.kind == .file ? $0.modified : nil } }.max()
            source = "the newest Release file in \(listsDirectory) (no update-success-stamp)"
        }
        guard let when else {
            if context.tree.exists(listsDirectory), context.tree.list(listsDirectory) == nil {
                return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(listsDirectory)", fix: fix)
            }
            return PostureCheck.result(id, .fail, .selfReported, "apt-get update has never succeeded (no stamp, no lists)", fix: fix)
        }
        let age = context.now - when
        // A stamp from the future (a clock stepped back, or a touched file) proves nothing.
        guard age > -300 else {
            return PostureCheck.result(id, .unknown, .selfReported, "the update stamp (\(source)) is \(DurationWords.text(-age)) in the future", fix: fix)
        }
        let text = "last update \(DurationWords.text(age)) ago, from \(source)"
        return age <= limit
            ? PostureCheck.result(id, .pass, .selfReported, text)
            : PostureCheck.result(id, .fail, .selfReported, text + "; limit \(DurationWords.text(limit))", fix: fix)
    }

    static func unattendedUpgrades(_ context: PostureContext) -> CheckResult {
        let id = "unattended-upgrades"
        let fix = "apt-get install unattended-upgrades; dpkg-reconfigure -plow unattended-upgrades (writes APT::Periodic::Unattended-Upgrade \"1\")"
        guard let status = context.tree.read(statusFile, limit: 1 << 28) else {
            return PostureCheck.result(id, .unknown, .selfReported, "cannot read \(statusFile)", fix: fix)
        }
        let stanza = DebianControl.stanza(of: "unattended-upgrades", in: status, fields: ["Package", "Status"])
        guard isUnpacked(stanza?["Status"]) else {
            return PostureCheck.result(id, .fail, .selfReported, "the unattended-upgrades package is not installed", fix: fix)
        }
        let apt = AptConfiguration.load(from: context.tree)
        // A part that could not be read may hold the setting that decides: say unknown, not fail.
        if !apt.unreadable.isEmpty {
            return PostureCheck.result(id, .unknown, .selfReported, "installed; cannot read " + apt.unreadable.prefix(3).joined(separator: ", "), fix: fix)
        }
        let upgrade = apt["APT::Periodic::Unattended-Upgrade"] ?? "0"
        let lists = apt["APT::Periodic::Update-Package-Lists"] ?? "0"
        var text = "installed; APT::Periodic::Unattended-Upgrade \"\(upgrade)\", Update-Package-Lists \"\(lists)\""
        // apt.systemd.daily does nothing with APT::Periodic::Enable "0".
        if let enable = apt["APT::Periodic::Enable"] { text += ", Enable \"\(enable)\"" }
        // The timers that run it: masked (a link to /dev/null) or disabled means never.
        let masked = ["apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service", "apt-daily-upgrade.service"].filter { unit in
            ["/etc/systemd/system/", "/run/systemd/system/"].contains { directory in
                guard context.tree.info(directory + unit, followLink: false) != nil else { return false }
                // A mask is a link to /dev/null (however spelled) or an empty unit file.
                if let target = context.tree.linkTarget(directory + unit), target.hasSuffix("/dev/null") || target == "/dev/null" { return true }
                return context.tree.info(directory + unit)?.size == 0
            }
        }
        // Shipped but not enabled: the timer never fires.
        let disabled = ["apt-daily.timer", "apt-daily-upgrade.timer"].filter { timer in
            ["/lib/systemd/system/", "/usr/lib/systemd/system/"].contains { context.tree.exists($0 + timer) }
                && !["/etc/systemd/system/timers.target.wants/", "/usr/lib/systemd/system/timers.target.wants/", "/lib/systemd/system/timers.target.wants/"].contains { context.tree.info($0 + timer, followLink: false) != nil }
        }
        if !disabled.isEmpty { text += "; not enabled: " + disabled.joined(separator: ", ") }
        if !masked.isEmpty { text += "; masked: " + masked.joined(separator: ", ") }
        // apt.systemd.daily compares with "0" as text: anything else ("1", "always", "1d") runs.
        let on = { (value: String?) in value.map { !$0.isEmpty && $0 != "0" } ?? false }
        guard on(upgrade), on(lists), (apt["APT::Periodic::Enable"] ?? "1") != "0", masked.isEmpty, disabled.isEmpty else {
            return PostureCheck.result(id, .fail, .selfReported, text, fix: fix + "; systemctl unmask apt-daily.timer apt-daily-upgrade.timer")
        }
        return PostureCheck.result(id, .pass, .selfReported, text)
    }
}

/// "3 d 4 h" style text for ages in evidence.
enum DurationWords {
    static func text(_ seconds: Double) -> String {
        let total = Int(max(0, seconds))
        if total < 120 { return "\(total) s" }
        if total < 7_200 { return "\(total / 60) min" }
        if total < 172_800 { return "\(total / 3_600) h" }
        return "\(total / 86_400) d"
    }
}
