#if canImport(Glibc)
import Glibc
#endif

/// The live answer to "is this file on removable media": the mount table (`/proc/self/mountinfo`)
/// and, for each mounted block device, sysfs (`/sys/dev/block/MAJ:MIN`: below a USB or MMC
/// controller, or `removable` = 1). A mount point under a configured removable prefix counts too
/// (udisks mounts sticks under `/media/USER` and `/run/media/USER`).
///
/// The table is a snapshot: FileWatch reloads it when an audited mount happens and periodically.
public struct MountTable: RemovableMediaLocator, Equatable {
    public struct Mount: Sendable, Equatable {
        /// `MAJOR:MINOR` as mountinfo writes it (decimal); PATH records write it in hex.
        public var device: String
        public var mountPoint: String
        public var fileSystem: String
        public var source: String
        public var removable: Bool
    }

    public let mounts: [Mount]
    public let prefixes: RemovablePrefixes

    /// Removable or not by the PATH record's form of the device (`08:11`, hex), looked up once per
    /// event: built here, not converted per lookup.
    private let removableByRecordDevice: [String: Bool]

    public init(mounts: [Mount], prefixes: RemovablePrefixes = RemovablePrefixes()) {
        // Longest mount point first: the first that holds a path is its filesystem.
        self.mounts = mounts.sorted { $0.mountPoint.utf8.count > $1.mountPoint.utf8.count }
        self.prefixes = prefixes
        var byDevice: [String: Bool] = [:]
        for mount in self.mounts {
            let parts = mount.device.split(separator: ":")
            guard parts.count == 2, let major = UInt32(parts[0]), let minor = UInt32(parts[1]) else { continue }
            let hex = Self.hex2(major) + ":" + Self.hex2(minor)
            // A device mounted twice: removable if any of its mounts is.
            byDevice[hex] = (byDevice[hex] ?? false) || mount.removable
        }
        removableByRecordDevice = byDevice
    }

    /// The kernel's `%02x` (at least two digits).
    static func hex2(_ value: UInt32) -> String {
        let text = String(value, radix: 16)
        return text.count < 2 ? "0" + text : text
    }

    /// Parses mountinfo (proc(5)); `isRemovableDevice` answers for a `MAJOR:MINOR` (decimal).
    /// Lines that do not parse are skipped (the kernel writes this file; a line we cannot read is
    /// a mount we cannot classify, and the prefixes still apply to it).
    public static func parse(mountinfo: String, prefixes: RemovablePrefixes = RemovablePrefixes(), isRemovableDevice: (String) -> Bool) -> MountTable {
        var mounts: [Mount] = []
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 7, let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 2 < fields.count else { continue }
            let device = String(fields[2])
            let mountPoint = unescape(fields[4])
            let fileSystem = String(fields[dash + 1])
            let source = unescape(fields[dash + 2])
            let removable = prefixes.isRemovable(path: mountPoint, device: nil) || (isBlockFileSystem(device) && isRemovableDevice(device))
            mounts.append(Mount(device: device, mountPoint: mountPoint, fileSystem: fileSystem, source: source, removable: removable))
        }
        return MountTable(mounts: mounts, prefixes: prefixes)
    }

    /// Reads this machine's table. `sysRoot` is where sysfs is (tests point it at a tree).
    public static func read(procRoot: String = "/proc", sysRoot: String = "/sys", prefixes: RemovablePrefixes = RemovablePrefixes()) -> MountTable {
        let text = readSmall(procRoot + "/self/mountinfo") ?? ""
        return parse(mountinfo: text, prefixes: prefixes) { device in blockDeviceIsRemovable(device, sysRoot: sysRoot) }
    }

    public func isRemovable(path: String, device: String?) -> Bool {
        if prefixes.isRemovable(path: path, device: device) { return true }
        if let device, let removable = removableByRecordDevice[device] { return removable }
        if path.hasPrefix("/"), let mount = mounts.first(where: { RemovablePrefixes.isUnder(path, $0.mountPoint) }) {
            return mount.removable
        }
        return false
    }

    /// The mount that holds `path` (longest mount point).
    public func mount(holding path: String) -> Mount? {
        mounts.first { RemovablePrefixes.isUnder(path, $0.mountPoint) }
    }

    /// Major 0 is the kernel's anonymous devices (tmpfs, proc, overlay): never removable.
    static func isBlockFileSystem(_ device: String) -> Bool { !device.hasPrefix("0:") }

    /// A block device is removable when sysfs puts it below a USB, MMC or FireWire controller, or
    /// when it (or the disk a partition belongs to) says `removable` = 1.
    static func blockDeviceIsRemovable(_ device: String, sysRoot: String) -> Bool {
        let link = sysRoot + "/dev/block/" + device
        guard let resolved = realpath(link, nil) else { return false }
        defer { free(resolved) }
        let path = String(cString: resolved)
        for marker in ["/usb", "/mmc_host/", "/fw", "/firewire"] where path.contains(marker) { return true }
        if readSmall(path + "/removable")?.hasPrefix("1") == true { return true }
        if readSmall(path + "/partition") != nil {
            let parent = path.split(separator: "/").dropLast().joined(separator: "/")
            return readSmall("/" + parent + "/removable")?.hasPrefix("1") == true
        }
        return false
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count {
                let digits = utf8[(index + 1)...(index + 3)]
                if digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x37 }) {
                    bytes.append(digits.reduce(0) { $0 &* 8 &+ ($1 - 0x30) })
                    index += 4
                    continue
                }
            }
            bytes.append(utf8[index])
            index += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func readSmall(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while bytes.count < 4 << 20 {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
