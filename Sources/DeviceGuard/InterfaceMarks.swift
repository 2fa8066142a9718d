#if canImport(Glibc)
import Glibc
#endif

/// Marks for the udev rule: one empty file per interface holdfastd allowed by a policy rule or an
/// exception, named after the interface (`1-2:1.0`), in `/run/holdfast/usb-allowed`.
///
/// The shipped rule turns off every interface outside its few classes (and any bound to a driver
/// it does not know) whenever udev sees it — also when `udevadm trigger` replays `add` for every
/// device, which would tear an approved drive away mid-use. The rule skips an interface with a
/// mark (`TEST=="/run/holdfast/usb-allowed/%k"`): holdfastd decided it. Marks are made before the
/// interface is authorized and removed when it is not any more; the directory is emptied at start
/// and lives on /run, so none survives a reboot. A mark left by a crashed holdfastd only keeps
/// the rule from deciding that one name while holdfastd is down: a new interface there still
/// starts unauthorized (the hub's default), so a mark never lets anything through.
public struct InterfaceMarks: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// Creates the directory (0755, root's) and removes every mark in it.
    public func reset() throws(DeviceGuardError) {
        if mkdir(directory, 0o755) != 0, errno != EEXIST {
            throw DeviceGuardError("cannot create \(directory): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == geteuid(), info.st_mode & 0o022 == 0 else {
            throw DeviceGuardError("\(directory) must be a directory of holdfastd's user that no one else can write")
        }
        guard let handle = opendir(directory) else { return }
        defer { closedir(handle) }
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if USBInterfaceState.parseName(name) != nil { unlink(directory + "/" + name) }
        }
    }

    /// Sets or clears the mark of one interface. Only kernel interface names are accepted.
    public func set(_ name: String, _ marked: Bool) {
        guard USBInterfaceState.parseName(name) != nil, !name.contains("/") else { return }
        let path = directory + "/" + name
        if marked {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
            if descriptor >= 0 { close(descriptor) }
        } else {
            unlink(path)
        }
    }

    public func isMarked(_ name: String) -> Bool { access(directory + "/" + name, F_OK) == 0 }
}
