import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

/// The real USB side: the device list from libudev's enumeration, each device read straight from
/// its sysfs files.
///
/// Every read goes to the file, never to libudev's attribute cache, and the binary `descriptors`
/// file is read whole: libudev's attribute API returns C strings and would cut the descriptors at
/// their first zero byte. A single device is read without libudev at all: the kernel's naming
/// (usb(4): `usbN` root hubs, `BUS-PORT[.PORT…]` devices, `DEVICE:CONFIG.INTERFACE` interfaces,
/// each below its parent in `/sys/devices`) gives its parent and interfaces, and building a
/// libudev device resolves its path component by component, which on the hot-plug path costs
/// more than the decision. Everything goes through libc, so umockdev's preload library redirects
/// it into a testbed. Safe from any thread.
public struct SysfsUSBHost: USBHost {
    /// Where the kernel takes interface names to bind drivers to.
    public static let driversProbePath = "/sys/bus/usb/drivers_probe"

    public init() {}

    public func devices() throws(DeviceGuardError) -> [USBDeviceState] {
        let context = try UdevContext()
        let states = try context.devicePaths(subsystem: "usb").compactMap { path -> USBDeviceState? in
            // Interfaces (`1-2:1.0`) come with their device; other nodes are not devices.
            let name = Self.split(path).name
            guard Self.isDeviceName(name) else { return nil }
            return Self.read(path, interfaces: true)
        }
        return states.sorted { ($0.depth, $0.record.sysPath) < ($1.depth, $1.record.sysPath) }
    }

    public func device(at sysPath: String, interfaces: Bool) -> USBDeviceState? {
        guard Self.isDeviceName(Self.split(sysPath).name) else { return nil }
        return Self.read(sysPath, interfaces: interfaces)
    }

    public func attribute(_ name: String, of sysPath: String) -> String? { Self.text(sysPath + "/" + name) }

    public func write(_ value: String, attribute: String, of sysPath: String) throws(DeviceGuardError) {
        try Self.writeFile(sysPath + "/" + attribute, value)
    }

    public func probeDrivers(interface name: String) throws(DeviceGuardError) {
        // With a newline, as `echo NAME > drivers_probe` writes it: the kernel compares names
        // with sysfs_streq, which ignores it.
        try Self.writeFile(Self.driversProbePath, name + "\n")
    }

    // MARK: Reading

    /// `usb3` (a root hub) or `3-1.4.2` (a device): not an interface, not an endpoint, not
    /// anything else that lives below a USB device.
    static func isDeviceName(_ name: String) -> Bool {
        if name.hasPrefix("usb") { return name.count > 3 && name.dropFirst(3).allSatisfy(\.isASCIIDigit) }
        return USBExceptionTarget(name).map { if case .busPath = $0 { true } else { false } } ?? false
    }

    static func read(_ path: String, interfaces readInterfaces: Bool) -> USBDeviceState? {
        let (directory, name) = split(path)
        let isRootHub = name.hasPrefix("usb")
        guard let descriptors = SmallFile.read(path + "/descriptors", limit: 1 << 20) else {
            // No descriptors: the device went away under us, or it is there with a descriptors
            // file that cannot be read (decided on what it has: nothing, so blocked).
            guard SmallFile.exists(path + "/uevent") else { return nil }
            return state(path, name, isRootHub ? nil : directory, [], readInterfaces)
        }
        return state(path, name, isRootHub ? nil : directory, descriptors, readInterfaces)
    }

    private static func state(_ path: String, _ name: String, _ parent: String?, _ descriptors: [UInt8], _ readInterfaces: Bool) -> USBDeviceState {
        let record = USBDeviceRecord(
            name: name,
            sysPath: path,
            descriptors: descriptors,
            manufacturer: text(path + "/manufacturer"),
            product: text(path + "/product"),
            serial: text(path + "/serial"),
            connectType: text(path + "/port/connect_type")
        )
        let interfaces = readInterfaces ? interfaceNames(in: path, of: name).compactMap { readInterface(path + "/" + $0) } : []
        return USBDeviceState(
            record: record,
            authorized: flag(path + "/authorized"),
            parentSysPath: parent,
            interfaces: interfaces.sorted { ($0.configuration, $0.number) < ($1.configuration, $1.number) },
            interfaceAuthorizedDefault: parent == nil ? text(path + "/interface_authorized_default") : nil,
            authorizedDefault: parent == nil ? text(path + "/authorized_default") : nil,
            kernelVendor: readInterfaces ? text(path + "/idVendor").flatMap { UInt16($0, radix: 16) } : nil,
            kernelProduct: readInterfaces ? text(path + "/idProduct").flatMap { UInt16($0, radix: 16) } : nil
        )
    }

    /// The device's interface directories: `NAME:C.N` entries (a root hub's are `BUS-0:C.N`).
    static func interfaceNames(in path: String, of name: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if USBInterfaceState.parseName(entryName) != nil { names.append(entryName) }
        }
        return names
    }

    private static func readInterface(_ path: String) -> USBInterfaceState? {
        let name = split(path).name
        guard let (configuration, number) = USBInterfaceState.parseName(name) else { return nil }
        var triple: ClassTriple?
        if let code = hexByte(path + "/bInterfaceClass"), let subclass = hexByte(path + "/bInterfaceSubClass"),
            let `protocol` = hexByte(path + "/bInterfaceProtocol")
        {
            triple = ClassTriple(code, subclass, `protocol`)
        }
        return USBInterfaceState(
            name: name, sysPath: path, configuration: configuration, number: number,
            authorized: flag(path + "/authorized"), triple: triple, driver: linkName(path + "/driver")
        )
    }

    static func text(_ path: String) -> String? {
        guard let bytes = SmallFile.read(path, limit: 4_096) else { return nil }
        let value = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: " \n")
        return value.isEmpty ? nil : value
    }

    static func flag(_ path: String) -> Bool? {
        switch text(path) {
        case "1": true
        case "0": false
        default: nil
        }
    }

    static func hexByte(_ path: String) -> UInt8? { text(path).flatMap { UInt8($0, radix: 16) } }

    /// The last component of a symbolic link's target (`driver` → `…/drivers/usbhid`).
    static func linkName(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4_096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let target = String(decoding: buffer[0..<count].map(UInt8.init(bitPattern:)), as: UTF8.self)
        return target.split(separator: "/").last.map(String.init)
    }

    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }

    // MARK: Writing

    /// One write(2) of the whole value. sysfs takes an attribute write in one call and answers
    /// with the kernel's verdict on it (EINVAL, EPERM …) as the write's error.
    static func writeFile(_ path: String, _ value: String) throws(DeviceGuardError) {
        // O_NONBLOCK: sysfs ignores it, and nothing that is not sysfs can make the write wait.
        let descriptor = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard descriptor >= 0 else {
            let code = errno
            throw DeviceGuardError("open \(path): \(String(cString: strerror(code)))", code: isGone(code) ? .gone : .failed)
        }
        defer { close(descriptor) }
        let bytes = Array(value.utf8)
        while true {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if written == bytes.count { return }
            if written < 0, errno == EINTR { continue }
            let code = written < 0 ? errno : EIO
            throw DeviceGuardError("write \(value) to \(path): \(String(cString: strerror(code)))", code: isGone(code) ? .gone : .failed)
        }
    }

    static func isGone(_ code: Int32) -> Bool { code == ENOENT || code == ENODEV || code == ENXIO }
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
