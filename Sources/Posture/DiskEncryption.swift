/// Whether the filesystems that hold user data sit on dm-crypt, proved by walking the block
/// device stack in sysfs (the kernel's own tables, not /etc/crypttab's promises).
enum DiskEncryption {
    /// One line of /proc/self/mountinfo (proc(5)).
    struct Mount: Equatable {
        var device: String  // "major:minor"
        var mountPoint: String
        var options: [String]
        var fileSystem: String
        var source: String
    }

    static func parse(mountinfo text: String) -> [Mount] {
        var mounts: [Mount] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count >= 10, let separator = fields.firstIndex(of: "-"), separator + 2 < fields.count, separator >= 6 else { continue }
            mounts.append(Mount(
                device: String(fields[2]), mountPoint: unescape(fields[4]), options: fields[5].split(separator: ",").map(String.init),
                fileSystem: String(fields[separator + 1]), source: unescape(fields[separator + 2])))
        }
        return mounts
    }

    /// mountinfo writes space, tab, newline and backslash as `\ooo`.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\"), i + 3 < raw.count,
               let value = UInt8(String(decoding: raw[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Filesystems with nothing at rest on a disk.
    static let pseudo: Set<String> = ["tmpfs", "ramfs", "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "efivarfs", "configfs", "fusectl", "mqueue", "hugetlbfs", "pstore", "bpf", "autofs", "binfmt_misc", "rpc_pipefs", "nsfs"]

    /// What a block device rests on: encrypted (with the mapping), or the plain device reached.
    enum Layer: Equatable {
        case encrypted(name: String, kind: String)
        case plain(String)
        case unreadable(String)
    }

    /// The data filesystems checked: `/` always, `/home` and `/var` when separately mounted.
    static let dataMounts = ["/", "/home", "/var"]

    static func check(_ context: PostureContext) -> CheckResult {
        let id = "disk-encryption"
        let fix = "reinstall with an encrypted root (Debian installer: \"Guided - use entire disk and set up encrypted LVM\"), or move the data filesystems onto LUKS"
        let tree = context.tree
        guard let text = tree.text("/proc/self/mountinfo") else {
            return PostureCheck.result(id, .unknown, .attested, "cannot read /proc/self/mountinfo", fix: fix)
        }
        let mounts = parse(mountinfo: text)
        var parts: [String] = []
        var failed = false, unknown = false
        for point in dataMounts {
            guard let mount = mounts.last(where: { $0.mountPoint == point }) else {
                if point == "/" {
                    return PostureCheck.result(id, .unknown, .attested, "no mount at / in mountinfo", fix: fix)
                }
                continue
            }
            if pseudo.contains(mount.fileSystem) {
                parts.append("\(point) \(mount.fileSystem) (in memory, skipped)")
                continue
            }
            if mount.options.contains("ro") {
                parts.append("\(point) read-only (skipped)")
                continue
            }
            if mount.device.hasPrefix("7:") {
                parts.append("\(point) on a loop device (skipped)")
                continue
            }
            if mount.fileSystem == "overlay" || mount.fileSystem.hasPrefix("fuse") || ["nfs", "nfs4", "cifs", "9p", "virtiofs"].contains(mount.fileSystem) {
                parts.append("\(point) is \(mount.fileSystem): its backing store is not a local block device")
                unknown = true
                continue
            }
            guard let node = blockDevice(tree, mount) else {
                parts.append("\(point) \(mount.fileSystem) on \(mount.device): no block device in /sys")
                unknown = true
                continue
            }
            let layers = walk(tree, node, depth: 0)
            let encrypted = layers.compactMap { if case .encrypted(let name, let kind) = $0 { "\(name) (\(kind))" } else { nil } }
            let plain = layers.compactMap { if case .plain(let name) = $0 { name } else { nil } }
            let unreadable = layers.compactMap { if case .unreadable(let why) = $0 { why } else { nil } }
            let device = RootTree.lastComponent(node)
            if !unreadable.isEmpty {
                parts.append("\(point) on \(device): \(unreadable.joined(separator: ", "))")
                unknown = true
            } else if plain.isEmpty {
                parts.append("\(point) on \(device) → dm-crypt " + encrypted.joined(separator: ", "))
            } else {
                parts.append("\(point) on \(plain.joined(separator: ", ")) (\(mount.fileSystem)), not encrypted")
                failed = true
            }
        }
        let evidence = parts.joined(separator: "; ")
        if failed { return PostureCheck.result(id, .fail, .attested, evidence, fix: fix) }
        if unknown { return PostureCheck.result(id, .unknown, .attested, evidence, fix: fix) }
        return PostureCheck.result(id, .pass, .attested, evidence)
    }

    /// The sysfs directory of the mount's block device (`/sys/dev/block/MAJ:MIN`), or for
    /// filesystems with an anonymous device (btrfs: 0:N) the device its source names.
    static func blockDevice(_ tree: RootTree, _ mount: Mount) -> String? {
        if !mount.device.hasPrefix("0:"), let path = tree.resolve("/sys/dev/block/" + mount.device) { return path }
        let source = mount.source
        if source.hasPrefix("/dev/mapper/") {
            let name = String(source.dropFirst("/dev/mapper/".count))
            for entry in tree.list("/sys/block") ?? [] where entry.hasPrefix("dm-") {
                if tree.attribute("/sys/block/\(entry)/dm/name") == name { return tree.resolve("/sys/block/" + entry) }
            }
            return nil
        }
        if source.hasPrefix("/dev/") {
            return tree.resolve("/sys/class/block/" + RootTree.lastComponent(source))
        }
        return nil
    }

    /// Every bottom of the stack under `node`: a dm-crypt mapping stops the walk (what is below
    /// it is ciphertext); LVM, RAID and other device-mapper targets are followed through `slaves/`.
    static func walk(_ tree: RootTree, _ node: String, depth: Int) -> [Layer] {
        guard depth < 16 else { return [.unreadable("block device stack deeper than 16")] }
        let name = RootTree.lastComponent(node)
        if let uuid = tree.attribute(node + "/dm/uuid") {
            let mapping = tree.attribute(node + "/dm/name") ?? name
            if uuid.hasPrefix("CRYPT-") {
                let kind = uuid.split(separator: "-").dropFirst().first.map { "CRYPT-" + $0 } ?? "CRYPT"
                return [.encrypted(name: mapping, kind: kind)]
            }
        }
        let slaves = tree.list(node + "/slaves") ?? []
        if slaves.isEmpty {
            if tree.exists(node + "/dm") { return [.plain("\(name) (\(tree.attribute(node + "/dm/name") ?? "device-mapper") with no underlying device)")] }
            return [.plain(name)]
        }
        var layers: [Layer] = []
        for slave in slaves {
            guard let path = tree.resolve(node + "/slaves/" + slave) else {
                layers.append(.unreadable("cannot follow \(name)/slaves/\(slave)"))
                continue
            }
            layers += walk(tree, path, depth: depth + 1)
        }
        return layers
    }
}
