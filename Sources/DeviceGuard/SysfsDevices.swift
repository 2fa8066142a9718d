import CUdev
#if canImport(Glibc)
import Glibc
#endif

/// Where USB devices come from: sysfs through libudev in production and under umockdev, a list
/// in unit tests.
public protocol USBDeviceSource: Sendable {
    func devices() throws(DeviceGuardError) -> [USBDeviceRecord]
}

/// Every USB device in sysfs (`subsystem=usb`, `devtype=usb_device`), root hubs included, parents
/// before children. Reads the binary `descriptors` file directly: libudev's attribute API returns C
/// strings and would cut the descriptors at their first zero byte.
public struct SysfsUSBDevices: USBDeviceSource {
    public init() {}

    public func devices() throws(DeviceGuardError) -> [USBDeviceRecord] {
        let context = try UdevContext()
        var records: [USBDeviceRecord] = []
        for path in try context.devicePaths(subsystem: "usb") {
            guard let device = udev_device_new_from_syspath(context.handle, path) else { continue }
            defer { udev_device_unref(device) }
            guard let type = udev_device_get_devtype(device), String(cString: type) == "usb_device" else { continue }
            let name = udev_device_get_sysname(device).map { String(cString: $0) } ?? path
            func attribute(_ key: String) -> String? {
                guard let value = udev_device_get_sysattr_value(device, key) else { return nil }
                let text = String(cString: value).trimmingCharacters(in: " \n")
                return text.isEmpty ? nil : text
            }
            records.append(USBDeviceRecord(
                name: name,
                sysPath: path,
                descriptors: SysfsFile.read(path + "/descriptors", limit: 1 << 20) ?? [],
                manufacturer: attribute("manufacturer"),
                product: attribute("product"),
                serial: attribute("serial"),
                connectType: SysfsFile.read(path + "/port/connect_type", limit: 64)
                    .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: " \n") }
            ))
        }
        return records.sorted { $0.sysPath < $1.sysPath }
    }
}

/// Small sysfs reads (through libc, so umockdev's preload library can redirect them).
enum SysfsFile {
    static func read(_ path: String, limit: Int) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        while result.count <= limit {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count <= 0 { break }
            result += chunk[0..<count]
        }
        return result.count > limit ? nil : result
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        guard let first = firstIndex(where: { !characters.contains($0) }),
            let last = lastIndex(where: { !characters.contains($0) })
        else { return "" }
        return String(self[first...last])
    }
}
