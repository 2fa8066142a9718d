import CUdev

/// Why a device operation failed.
public struct DeviceGuardError: Error, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The device (or its attribute) is not there any more: unplugged mid-decision. Not a
        /// failure of enforcement — there is nothing left to enforce on.
        case gone
        /// Anything else: the write was refused, libudev failed, the monitor broke.
        case failed
    }

    public let code: Code
    public let message: String

    public init(_ message: String, code: Code = .failed) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// An owned libudev context (`udev_new`), released in `deinit`.
///
/// DeviceGuard is the only module that talks to libudev; the classifier and policy above it see
/// Swift values. Under umockdev the same calls see the testbed's `/sys` and udev database.
final class UdevContext {
    let handle: OpaquePointer

    init() throws(DeviceGuardError) {
        guard let handle = udev_new() else { throw DeviceGuardError("udev_new failed") }
        self.handle = handle
    }

    deinit { udev_unref(handle) }

    /// The sysfs paths of every device in `subsystem` (below `parent`, itself included, when
    /// given), in libudev's order.
    func devicePaths(subsystem: String, below parent: OpaquePointer? = nil) throws(DeviceGuardError) -> [String] {
        guard let enumerate = udev_enumerate_new(handle) else { throw DeviceGuardError("udev_enumerate_new failed") }
        defer { udev_enumerate_unref(enumerate) }
        guard udev_enumerate_add_match_subsystem(enumerate, subsystem) >= 0 else {
            throw DeviceGuardError("cannot enumerate subsystem \(subsystem)")
        }
        if let parent, udev_enumerate_add_match_parent(enumerate, parent) < 0 {
            throw DeviceGuardError("cannot enumerate below a device")
        }
        guard udev_enumerate_scan_devices(enumerate) >= 0 else {
            throw DeviceGuardError("cannot enumerate subsystem \(subsystem)")
        }
        // udev_list_entry_foreach is a macro: walk the list by hand.
        var paths: [String] = []
        var entry = udev_enumerate_get_list_entry(enumerate)
        while let current = entry {
            if let name = udev_list_entry_get_name(current) { paths.append(String(cString: name)) }
            entry = udev_list_entry_get_next(current)
        }
        return paths
    }
}
