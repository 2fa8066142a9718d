// Directory trees laid out like a root filesystem, for the posture checks (`holdfast posture
// --root`). Each builder writes only what its check reads; tests add the twist they need.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A root-filesystem-shaped tree in a private temporary directory.
public final class FixtureTree {
    /// The temporary directory this tree owns (removed with it); nil for a tree written into a
    /// caller's directory.
    private let owned: TemporaryDirectory?
    public let root: String

    public init() {
        let directory = TemporaryDirectory()
        owned = directory
        root = directory.path
    }

    /// A tree written into an existing directory the caller keeps (the demo's).
    public init(at directory: String) {
        owned = nil
        root = directory
    }

    /// Writes `text` at `path` (absolute inside the tree), creating the directories above it.
    @discardableResult
    public func write(_ path: String, _ text: String, mode: UInt32 = 0o644) -> FixtureTree {
        write(path, bytes: Array(text.utf8), mode: mode)
    }

    /// Writes bytes (plain open/write: no temporary files left in /tmp by atomic writes).
    @discardableResult
    public func write(_ path: String, bytes: [UInt8], mode: UInt32 = 0o644) -> FixtureTree {
        makeDirectory(parent(path))
        let full = root + path
        let descriptor = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        precondition(descriptor >= 0, "cannot create \(full): \(String(cString: strerror(errno)))")
        bytes.withUnsafeBytes { buffer in _ = Glibc.write(descriptor, buffer.baseAddress, buffer.count) }
        close(descriptor)
        chmod(full, mode)
        return self
    }

    /// A symlink at `path` pointing at `target` (as written: relative or absolute).
    @discardableResult
    public func link(_ path: String, to target: String) -> FixtureTree {
        makeDirectory(parent(path))
        unlink(root + path)
        precondition(symlink(target, root + path) == 0, "cannot link \(path): \(String(cString: strerror(errno)))")
        return self
    }

    @discardableResult
    public func makeDirectory(_ path: String, mode: UInt32 = 0o755) -> FixtureTree {
        // Only directories made here get `mode`; an existing one keeps what a test gave it.
        var current = root
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) == 0 {
                chmod(current, mode)
            } else if errno != EEXIST {
                preconditionFailure("cannot mkdir \(current)")
            }
        }
        return self
    }

    public func remove(_ path: String) { unlink(root + path) }

    func parent(_ path: String) -> String {
        var parts = path.split(separator: "/")
        if !parts.isEmpty { parts.removeLast() }
        return "/" + parts.joined(separator: "/")
    }

    // MARK: - Building blocks

    /// A Debian 12 base: os-release, accounts, a kernel, dpkg status, apt lists, and a root
    /// filesystem on a plain partition (`/dev/vda1`, 254:1).
    public static func debian(version: String = "12", kernel: String = "6.1.0-28-amd64", at directory: String? = nil) -> FixtureTree {
        let tree = directory.map { FixtureTree(at: $0) } ?? FixtureTree()
        tree.write("/etc/os-release", """
            PRETTY_NAME="Debian GNU/Linux \(version) (bookworm)"
            NAME="Debian GNU/Linux"
            VERSION_ID="\(version)"
            ID=debian

            """)
        tree.write("/etc/debian_version", "\(version).8\n")
        tree.write("/proc/sys/kernel/osrelease", kernel + "\n")
        tree.write("/boot/vmlinuz-\(kernel)", "kernel")
        tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nagent:x:1000:1000::/home/agent:/bin/bash\n")
        tree.write("/etc/shadow", "root:$y$j9T$abc$def:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nagent:$y$j9T$ghi$jkl:19000:0:99999:7:::\n", mode: 0o640)
        tree.write("/var/lib/dpkg/status", dpkgStatus([("openssl", "3.0.15-1~deb12u1", "amd64"), ("libc6", "2.36-9+deb12u9", "amd64"), ("tzdata", "2024a-0+deb12u1", "all")]))
        tree.mountRoot(on: "254:1", source: "/dev/vda1")
        tree.blockDevice("vda", partition: "vda1", major: 254, minor: 1)
        return tree
    }

    /// dpkg's status file for these installed packages.
    public static func dpkgStatus(_ packages: [(name: String, version: String, architecture: String)]) -> String {
        packages.map { "Package: \($0.name)\nStatus: install ok installed\nPriority: optional\nArchitecture: \($0.architecture)\nVersion: \($0.version)\nDescription: test\n continuation\n" }.joined(separator: "\n")
    }

    /// mountinfo with `/` on `device` (major:minor) and the usual pseudo filesystems.
    @discardableResult
    public func mountRoot(on device: String, source: String, fileSystem: String = "ext4", extra: [String] = []) -> FixtureTree {
        let lines = ["22 1 \(device) / / rw,relatime shared:1 - \(fileSystem) \(source) rw,errors=remount-ro",
                     "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
                     "24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw",
                     "25 22 0:23 / /run rw,nosuid,nodev shared:13 - tmpfs tmpfs rw,size=1024k"] + extra
        return write("/proc/self/mountinfo", lines.joined(separator: "\n") + "\n")
    }

    /// A PCI disk with one partition in /sys, and /sys/dev/block/MAJ:MIN for the partition.
    @discardableResult
    public func blockDevice(_ disk: String, partition: String, major: Int, minor: Int) -> FixtureTree {
        let diskPath = "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/\(disk)"
        write(diskPath + "/dev", "\(major):0\n")
        write(diskPath + "/\(partition)/partition", "1\n")
        write(diskPath + "/\(partition)/dev", "\(major):\(minor)\n")
        link("/sys/dev/block/\(major):\(minor)", to: "../../devices/pci0000:00/0000:00:04.0/virtio1/block/\(disk)/\(partition)")
        link("/sys/class/block/\(partition)", to: "../../devices/pci0000:00/0000:00:04.0/virtio1/block/\(disk)/\(partition)")
        return self
    }

    /// A device-mapper device `dm-N` in /sys with its uuid and name, stacked on `slaves` (paths
    /// under /sys/devices of the devices below it).
    @discardableResult
    public func deviceMapper(_ index: Int, name: String, uuid: String, major: Int = 253, slaves: [String]) -> FixtureTree {
        let path = "/sys/devices/virtual/block/dm-\(index)"
        write(path + "/dm/name", name + "\n")
        write(path + "/dm/uuid", uuid + "\n")
        write(path + "/dev", "\(major):\(index)\n")
        makeDirectory(path + "/slaves")
        for slave in slaves {
            link(path + "/slaves/" + (slave.split(separator: "/").last.map(String.init) ?? slave), to: "../../../../../.." + slave)
        }
        link("/sys/dev/block/\(major):\(index)", to: "../../devices/virtual/block/dm-\(index)")
        link("/sys/block/dm-\(index)", to: "../devices/virtual/block/dm-\(index)")
        return self
    }

    /// The classic Debian installer layout: vda2 → LUKS2 (`vda2_crypt`) → LVM (`vg-root`), `/` on it.
    public static func luksRoot(at directory: String? = nil) -> FixtureTree {
        let tree = debian(at: directory)
        tree.blockDevice("vda", partition: "vda2", major: 254, minor: 2)
        let partition = "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda2"
        tree.deviceMapper(0, name: "vda2_crypt", uuid: "CRYPT-LUKS2-4f1c0e3a9b7d4c52a1e6f0d2b3c4a5e6-vda2_crypt", slaves: [partition])
        tree.deviceMapper(1, name: "vg-root", uuid: "LVM-Xq3bq6ZqkUq0Zr2f8dQk3vUo9Y7N1t2aBcDeFgHiJkLmNoPqRsTuVwXyZ012345", slaves: ["/sys/devices/virtual/block/dm-0"])
        tree.mountRoot(on: "253:1", source: "/dev/mapper/vg-root", extra: ["30 22 254:1 / /boot rw,relatime shared:2 - ext2 /dev/vda1 rw"])
        return tree
    }
}
