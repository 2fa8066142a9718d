/// Whether the filesystems that hold user data sit on dm-crypt, proved by walking the block
/// device stack in sysfs (the kernel's own tables, not /etc/crypttab's promises) and asking the
/// device-mapper which target each mapping really is.
enum DiskEncryption {
    /// One line of /proc/self/mountinfo (proc(5)).
    struct Mount: Equatable {
        var device: String  // "major:minor"
        var mountPoint: String
        var options: [String]
        var fileSystem: String
        var source: String
        /// The filesystem's own options (the superblock's): `ro` there means nothing can be written,
        /// whereas a per-mount `ro` may be only this process's view (systemd's ProtectSystem).
        var superOptions: [String] = []
    }

    static func parse(mountinfo text: String) -> [Mount] {
        var mounts: [Mount] = []
        for line in TextLines.of(text) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count >= 10, let separator = fields.firstIndex(of: "-"), separator + 2 < fields.count, separator >= 6 else { continue }
            mounts.append(Mount(
                device: String(fields[2]), mountPoint: unescape(fields[4]), options: fields[5].split(separator: ",").map(String.init),
                fileSystem: String(fields[separator + 1]), source: unescape(fields[separator + 2]),
                superOptions: separator + 3 < fields.count ? fields[separator + 3].split(separator: ",").map(String.init) : []))
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
    /// Filesystems whose store is not a local block device.
    static let remote: Set<String> = ["overlay", "nfs", "nfs4", "cifs", "smb3", "9p", "virtiofs", "ceph", "glusterfs"]
    /// Filesystems that cannot be written at all.
    static let readOnlyKinds: Set<String> = ["squashfs", "iso9660", "erofs", "cramfs", "udf"]
    /// dm-crypt uuid kinds that encrypt (cryptsetup's CRYPT-<TYPE>-…). CRYPT-INTEGRITY,
    /// CRYPT-VERITY and CRYPT-SUBDEV are cryptsetup's too, but protect integrity only.
    static let encryptingKinds: Set<String> = ["LUKS1", "LUKS2", "PLAIN", "BITLK", "TCRYPT", "LOOPAES", "FVAULT2"]

    /// What a block device rests on: encrypted (with the mapping), or the plain device reached.
    enum Layer: Equatable {
        case encrypted(name: String, kind: String, cipher: String?)
        case plain(String)
        case unreadable(String)
    }

    /// The data filesystems always checked; any other writable filesystem on a local disk is
    /// checked too (a second disk at /srv or /data holds user data as much as /home does).
    static let dataMounts = ["/", "/home", "/var"]

    static func check(_ context: PostureContext) -> CheckResult {
        let id = "disk-encryption"
        let fix = "reinstall with an encrypted root (Debian installer: \"Guided - use entire disk and set up encrypted LVM\"), or move the data filesystems onto LUKS"
        let tree = context.tree
        // Users can add mounts (FUSE): the table may be large, and a cut one would hide mounts.
        guard let text = tree.text("/proc/self/mountinfo", limit: 64 << 20) else {
            return PostureCheck.result(id, .unknown, .attested, "cannot read /proc/self/mountinfo", fix: fix)
        }
        let mounts = parse(mountinfo: text)
        guard mounts.contains(where: { $0.mountPoint == "/" }) else {
            return PostureCheck.result(id, .unknown, .attested, "no mount at / in mountinfo", fix: fix)
        }
        var parts: [String] = []
        var failed = false, unknown = false, unverified = false
        var seenDevices: Set<String> = []
        for mount in mounts {
            let named = dataMounts.contains(mount.mountPoint)
            let point = mount.mountPoint
            if point == "/boot" || point.hasPrefix("/boot/") || point == "/efi" { continue }
            if pseudo.contains(mount.fileSystem) {
                if named { parts.append("\(point) \(mount.fileSystem) (in memory, skipped)") }
                continue
            }
            let readOnly = mount.superOptions.contains("ro") || readOnlyKinds.contains(mount.fileSystem)
            if remote.contains(mount.fileSystem) || mount.fileSystem.hasPrefix("fuse") {
                if named && !readOnly {
                    parts.append("\(point) is \(mount.fileSystem): its backing store is not a local block device")
                    unknown = true
                }
                continue
            }
            if readOnly {
                // The root filesystem read-only: where user data is written is not here.
                if point == "/" {
                    parts.append("/ is read-only: where user data is written cannot be told")
                    unknown = true
                } else if named {
                    parts.append("\(point) read-only (skipped)")
                }
                continue
            }
            if mount.device.hasPrefix("7:") {
                // A loop device's data is in its backing file, on some other filesystem: not followed.
                if named {
                    parts.append("\(point) on a loop device: its backing file is not followed")
                    unknown = true
                }
                continue
            }
            let nodes = blockDevices(tree, mount)
            guard !nodes.isEmpty else {
                parts.append("\(point) \(mount.fileSystem) on \(mount.device): no block device in /sys")
                unknown = true
                continue
            }
            // Removable media is DeviceGuard's to block, not a data filesystem of this machine.
            if !named, nodes.allSatisfy({ tree.attribute(disk(of: $0) + "/removable") == "1" }) { continue }
            let key = nodes.joined(separator: ",")
            if !named, seenDevices.contains(key) { continue }
            seenDevices.insert(key)
            var budget = 256
            var visited: Set<String> = []
            let layers = nodes.flatMap { walk(tree, context.system, $0, depth: 0, budget: &budget, visited: &visited) }
            let encrypted = layers.compactMap { if case .encrypted(let name, let kind, let cipher) = $0 { "\(name) (\(kind)\(cipher.map { ", \($0)" } ?? ""))" } else { nil } }
            let plain = layers.compactMap { if case .plain(let name) = $0 { name } else { nil } }
            let unreadable = layers.compactMap { if case .unreadable(let why) = $0 { why } else { nil } }
            let device = nodes.map { RootTree.lastComponent($0) }.joined(separator: "+")
            if layers.contains(where: { if case .encrypted(_, _, nil) = $0 { true } else { false } }) { unverified = true }
            if !plain.isEmpty {
                parts.append("\(point) on \(plain.joined(separator: ", ")) (\(mount.fileSystem)), not encrypted")
                failed = true
            } else if encrypted.isEmpty && unreadable.isEmpty {
                parts.append("\(point) on \(device): the block device stack has no bottom (its slaves loop)")
                unknown = true
            } else if !unreadable.isEmpty {
                parts.append("\(point) on \(device): \(unreadable.joined(separator: ", "))")
                unknown = true
            } else {
                parts.append("\(point) on \(device) → dm-crypt " + encrypted.joined(separator: ", "))
            }
        }
        let swaps = swapLayers(context, mounts: mounts)
        parts += swaps.parts
        failed = failed || swaps.failed
        var evidence = parts.joined(separator: "; ")
        // Without the device-mapper's own table (a --root tree), the uuid is all there is.
        if unverified { evidence += " [target type not verified: uuid only]" }
        let strength: EvidenceStrength = unverified ? .selfReported : .attested
        if failed { return PostureCheck.result(id, .fail, strength, evidence, fix: fix) }
        if unknown { return PostureCheck.result(id, .unknown, strength, evidence, fix: fix) }
        return PostureCheck.result(id, .pass, strength, evidence)
    }

    /// Swap partitions hold memory pages at rest: they must be encrypted too. zram is memory;
    /// a swap file lives on a filesystem checked above.
    static func swapLayers(_ context: PostureContext, mounts: [Mount]) -> (parts: [String], failed: Bool) {
        guard let text = context.tree.text("/proc/swaps") else { return ([], false) }
        var parts: [String] = []
        var failed = false
        for line in TextLines.of(text).dropFirst() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2 else { continue }
            if fields[1] == "file" {
                // A swap file is on the filesystem holding it: only /boot's is not checked above.
                let path = String(fields[0])
                let holder = mounts.filter { path.hasPrefix($0.mountPoint == "/" ? "/" : $0.mountPoint + "/") }.max { $0.mountPoint.count < $1.mountPoint.count }
                guard let holder, holder.mountPoint == "/boot" || holder.mountPoint.hasPrefix("/boot/") || holder.mountPoint == "/efi" else { continue }
                var budget = 64
                var visited: Set<String> = []
                let layers = blockDevices(context.tree, holder).flatMap { walk(context.tree, context.system, $0, depth: 0, budget: &budget, visited: &visited) }
                let plain = layers.compactMap { if case .plain(let name) = $0 { name } else { nil } }
                if !plain.isEmpty {
                    parts.append("swap file \(path) on \(holder.mountPoint) (\(plain.joined(separator: ", "))), not encrypted")
                    failed = true
                }
                continue
            }
            guard fields[1] == "partition" else { continue }
            let name = RootTree.lastComponent(String(fields[0]))
            if name.hasPrefix("zram") { continue }
            guard let node = blockDevice(context.tree, source: String(fields[0])) else {
                parts.append("swap \(fields[0]): no block device in /sys")
                continue
            }
            var budget = 64
            var visited: Set<String> = []
            let layers = walk(context.tree, context.system, node, depth: 0, budget: &budget, visited: &visited)
            let plain = layers.compactMap { if case .plain(let name) = $0 { name } else { nil } }
            if !plain.isEmpty {
                parts.append("swap on \(plain.joined(separator: ", ")), not encrypted")
                failed = true
            }
        }
        return (parts, failed)
    }

    /// The disk of a partition node (its parent directory), or the node itself.
    static func disk(of node: String) -> String {
        RootTree.components(node).count > 1 && RootTree.parent(node).hasSuffix("/block") == false ? RootTree.parent(node) : node
    }

    /// The sysfs directories of the mount's block devices: `/sys/dev/block/MAJ:MIN`, or for
    /// filesystems on an anonymous device (btrfs: 0:N) every device of the filesystem.
    static func blockDevices(_ tree: RootTree, _ mount: Mount) -> [String] {
        if !mount.device.hasPrefix("0:"), let path = tree.resolve("/sys/dev/block/" + mount.device) { return [path] }
        guard let node = blockDevice(tree, source: mount.source) else { return [] }
        if mount.fileSystem == "btrfs" {
            // Every device of the btrfs filesystem that holds the source device.
            let name = RootTree.lastComponent(node)
            for filesystem in tree.list("/sys/fs/btrfs") ?? [] {
                let devices = tree.list("/sys/fs/btrfs/\(filesystem)/devices") ?? []
                if devices.contains(name) {
                    return devices.compactMap { tree.resolve("/sys/fs/btrfs/\(filesystem)/devices/\($0)") }
                }
            }
        }
        return [node]
    }

    static func blockDevice(_ tree: RootTree, source: String) -> String? {
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

    /// Every bottom of the stack under `node`: an encrypting dm-crypt mapping stops the walk
    /// (what is below it is ciphertext); LVM, RAID, integrity and other layers are followed
    /// through `slaves/`. Each node is visited once and the walk has a budget, so a loop or a
    /// wide fan-out in a hostile tree ends quickly.
    static func walk(_ tree: RootTree, _ system: any PostureSystem, _ node: String, depth: Int, budget: inout Int, visited: inout Set<String>) -> [Layer] {
        guard depth < 16 else { return [.unreadable("block device stack deeper than 16")] }
        guard budget > 0 else { return [.unreadable("block device stack too wide")] }
        budget -= 1
        guard visited.insert(node).inserted else { return [] }
        let name = RootTree.lastComponent(node)
        if let uuid = tree.attribute(node + "/dm/uuid"), uuid.hasPrefix("CRYPT-") {
            let mapping = tree.attribute(node + "/dm/name") ?? name
            let kind = uuid.split(separator: "-").dropFirst().first.map(String.init) ?? ""
            if encryptingKinds.contains(kind) {
                switch system.deviceMapperTargets(mapping) {
                case .success(let targets):
                    guard !targets.isEmpty, targets.allSatisfy({ $0.type == "crypt" }) else {
                        return [.plain("\(name) (\(mapping): uuid CRYPT-\(kind) but its table is \(targets.map(\.type).joined(separator: "+")))")]
                    }
                    if let null = targets.first(where: { $0.firstWord.contains("cipher_null") }) {
                        return [.plain("\(name) (\(mapping): crypt with \(null.firstWord), no encryption)")]
                    }
                    return [.encrypted(name: mapping, kind: kind, cipher: targets.first?.firstWord)]
                case .failure(let error) where error.unavailable:
                    return [.encrypted(name: mapping, kind: kind, cipher: nil)]
                case .failure(let error):
                    return [.unreadable(error.message)]
                }
            }
        } else if tree.exists(node + "/dm"), let mapping = tree.attribute(node + "/dm/name"),
                  case .success(let targets) = system.deviceMapperTargets(mapping), !targets.isEmpty,
                  targets.allSatisfy({ $0.type == "crypt" && !$0.firstWord.contains("cipher_null") }) {
            // dm-crypt set up without cryptsetup's uuid: the table says what it is.
            return [.encrypted(name: mapping, kind: "crypt", cipher: targets.first?.firstWord)]
        }
        // A partition's data is on its disk: a partition of an md array or a mapping is followed
        // through the disk's own slaves.
        if tree.exists(node + "/partition") {
            let disk = RootTree.parent(node)
            if !(tree.list(disk + "/slaves") ?? []).isEmpty { return walk(tree, system, disk, depth: depth + 1, budget: &budget, visited: &visited) }
            return [.plain(name)]
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
            layers += walk(tree, system, path, depth: depth + 1, budget: &budget, visited: &visited)
        }
        return layers
    }
}
