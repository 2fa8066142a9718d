import Foundation

/// Builds USB descriptor bytes from a readable spec, the way a device would report them.
public struct USBDeviceSpec: Sendable {
    public struct Setting: Sendable {
        public var number: UInt8
        public var alternate: UInt8
        public var triple: (UInt8, UInt8, UInt8)
        public var endpoints: [(address: UInt8, attributes: UInt8, maxPacket: UInt16)]

        public init(_ number: UInt8, alt: UInt8 = 0, _ triple: (UInt8, UInt8, UInt8), endpoints: [(address: UInt8, attributes: UInt8, maxPacket: UInt16)] = [(0x81, 0x03, 8)]) {
            self.number = number
            self.alternate = alt
            self.triple = triple
            self.endpoints = endpoints
        }
    }

    public struct Association: Sendable {
        public var first: UInt8
        public var count: UInt8
        public var function: (UInt8, UInt8, UInt8)
        public init(first: UInt8, count: UInt8, function: (UInt8, UInt8, UInt8)) {
            self.first = first
            self.count = count
            self.function = function
        }
    }

    public var vendor: UInt16
    public var product: UInt16
    public var deviceClass: (UInt8, UInt8, UInt8) = (0, 0, 0)
    public var usbVersion: UInt16 = 0x0200
    public var maxPacket0: UInt8 = 64
    public var configurations: [[Setting]]
    public var associations: [[Association]] = []
    public var manufacturer: String? = "Holdfast Test"
    public var productName: String? = "Test Device"
    public var serial: String? = nil
    /// Adds a SuperSpeed endpoint companion after each endpoint (as a USB 3 link reports).
    public var superSpeedCompanions = false

    public init(vendor: UInt16, product: UInt16, configurations: [[Setting]]) {
        self.vendor = vendor
        self.product = product
        self.configurations = configurations
    }

    /// The `descriptors` sysfs bytes: device descriptor, then each configuration.
    public var descriptors: [UInt8] {
        var bytes: [UInt8] = [
            18, 1, UInt8(usbVersion & 0xFF), UInt8(usbVersion >> 8),
            deviceClass.0, deviceClass.1, deviceClass.2, maxPacket0,
            UInt8(vendor & 0xFF), UInt8(vendor >> 8), UInt8(product & 0xFF), UInt8(product >> 8),
            0x00, 0x01, manufacturer == nil ? 0 : 1, productName == nil ? 0 : 2, serial == nil ? 0 : 3,
            UInt8(configurations.count),
        ]
        for (index, settings) in configurations.enumerated() {
            var body: [UInt8] = []
            for association in index < associations.count ? associations[index] : [] {
                body += [8, 11, association.first, association.count, association.function.0, association.function.1, association.function.2, 0]
            }
            for setting in settings {
                body += [9, 4, setting.number, setting.alternate, UInt8(setting.endpoints.count), setting.triple.0, setting.triple.1, setting.triple.2, 0]
                for endpoint in setting.endpoints {
                    body += [7, 5, endpoint.address, endpoint.attributes, UInt8(endpoint.maxPacket & 0xFF), UInt8(endpoint.maxPacket >> 8), 1]
                    if superSpeedCompanions { body += [6, 0x30, 0, 0, 0, 0] }
                }
            }
            let interfaces = UInt8(Set(settings.map(\.number)).count)
            let total = UInt16(9 + body.count)
            bytes += [9, 2, UInt8(total & 0xFF), UInt8(total >> 8), interfaces, UInt8(index + 1), 0, 0x80, 50] + body
        }
        return bytes
    }
}

/// Writes umockdev device descriptions (the `umockdev-record` text format: `P:` path, `E:` udev
/// properties, `A:` attributes, `H:` binary attributes in hex) for a root hub and devices on it.
public enum UmockdevWriter {
    public struct Entry {
        public var port: String
        public var spec: USBDeviceSpec
        public var rawDescriptors: [UInt8]?
        public var connectType: String?

        public init(port: String, spec: USBDeviceSpec, rawDescriptors: [UInt8]? = nil, connectType: String? = nil) {
            self.port = port
            self.spec = spec
            self.rawDescriptors = rawDescriptors
            self.connectType = connectType
        }
    }

    public static let rootHub = USBDeviceSpec(vendor: 0x1D6B, product: 0x0002, configurations: [[.init(0, (9, 0, 0))]])

    /// The description text: the root hub `usbBUS`, then each device as `BUS-PORT`. A dotted
    /// port (`1.4`) sits behind the hub at the ports before it (`BUS-1`), which must be listed.
    public static func description(_ entries: [Entry], bus: Int = 1, controller: String = "0000:00:14.0") -> String {
        var hub = rootHub
        hub.deviceClass = (9, 0, 0)
        let base = "/devices/pci0000:00/\(controller)/usb\(bus)"
        var text = device(path: base, name: "usb\(bus)", spec: hub, raw: nil, connectType: nil, busDevice: 1, bus: bus)
        for (index, entry) in entries.enumerated() {
            text += device(
                path: path(of: entry.port, bus: bus, controller: controller), name: "\(bus)-\(entry.port)", spec: entry.spec,
                raw: entry.rawDescriptors, connectType: entry.connectType, busDevice: index + 2, bus: bus
            )
        }
        return text
    }

    /// The sysfs path (without `/sys`) of the device at `port` on `bus`.
    public static func path(of port: String, bus: Int = 1, controller: String = "0000:00:14.0") -> String {
        var path = "/devices/pci0000:00/\(controller)/usb\(bus)"
        let hops = port.split(separator: ".")
        for count in 1...max(1, hops.count) {
            path += "/\(bus)-" + hops.prefix(count).joined(separator: ".")
        }
        return path
    }

    static func device(path: String, name: String, spec: USBDeviceSpec, raw: [UInt8]?, connectType: String?, busDevice: Int, bus: Int) -> String {
        let hex = (raw ?? spec.descriptors).map { String(format: "%02X", $0) }.joined()
        var lines = [
            "P: \(path)",
            "E: DEVTYPE=usb_device",
            "E: SUBSYSTEM=usb",
            String(format: "E: BUSNUM=%03d", bus),
            String(format: "E: DEVNUM=%03d", busDevice),
            String(format: "E: PRODUCT=%x/%x/100", spec.vendor, spec.product),
            "A: authorized=1",
            "A: bDeviceClass=" + String(format: "%02x", spec.deviceClass.0),
            "A: bNumConfigurations=\(spec.configurations.count)",
            "H: descriptors=\(hex)",
            String(format: "A: idVendor=%04x", spec.vendor),
            String(format: "A: idProduct=%04x", spec.product),
            "A: speed=480",
        ]
        if name.hasPrefix("usb") {
            lines += ["A: authorized_default=1", "A: interface_authorized_default=1", "A: maxchild=8"]
        }
        if let manufacturer = spec.manufacturer { lines.append("A: manufacturer=\(manufacturer)") }
        if let product = spec.productName { lines.append("A: product=\(product)") }
        if let serial = spec.serial { lines.append("A: serial=\(serial)") }
        // umockdev takes attributes in subdirectories, as the kernel's port/connect_type is.
        if let connectType { lines.append("A: port/connect_type=\(connectType)") }
        return lines.joined(separator: "\n") + "\n\n"
    }

    /// Writes the description to `path`.
    public static func write(_ entries: [Entry], to path: String) throws {
        try description(entries).writeReplacing(toFile: path)
    }
}
