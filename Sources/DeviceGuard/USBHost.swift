/// One interface of a device's active configuration, as the kernel shows it in sysfs
/// (`1-2:1.0`: device `1-2`, configuration 1, interface 0).
public struct USBInterfaceState: Sendable, Equatable {
    /// The kernel's name, e.g. `1-2:1.0`; what `/sys/bus/usb/drivers_probe` takes.
    public let name: String
    public let sysPath: String
    public let configuration: UInt8
    public let number: UInt8
    /// The interface's `authorized` attribute; nil when it could not be read.
    public let authorized: Bool?
    /// The kernel's view of the current alternate setting (`bInterfaceClass`…): decisions come
    /// from the descriptors; this serves display, and devices whose descriptors do not parse.
    public let triple: ClassTriple?
    /// The driver bound to it (the name its `driver` link points to), nil when none is.
    public let driver: String?

    public init(
        name: String, sysPath: String, configuration: UInt8, number: UInt8, authorized: Bool?, triple: ClassTriple? = nil, driver: String? = nil
    ) {
        self.name = name
        self.sysPath = sysPath
        self.configuration = configuration
        self.number = number
        self.authorized = authorized
        self.triple = triple
        self.driver = driver
    }

    public var key: InterfaceKey { InterfaceKey(configuration: configuration, number: number) }

    /// Configuration and number from a kernel interface name, `BUS-PORT…:C.N`.
    public static func parseName(_ name: String) -> (configuration: UInt8, number: UInt8)? {
        guard let colon = name.lastIndex(of: ":") else { return nil }
        let parts = name[name.index(after: colon)...].split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let configuration = UInt8(parts[0]), let number = UInt8(parts[1]) else { return nil }
        return (configuration, number)
    }
}

/// A USB device as sysfs shows it now: identity and descriptors, authorization, its interfaces.
public struct USBDeviceState: Sendable, Equatable {
    public let record: USBDeviceRecord
    /// The device's `authorized` attribute; nil when it could not be read.
    public let authorized: Bool?
    /// The parent USB device's sysfs path (a hub); nil for a root hub.
    public let parentSysPath: String?
    /// Root hubs (`usbN`) belong to the host controller: never deauthorized.
    public var isRootHub: Bool { parentSysPath == nil }
    /// The interfaces of the active configuration, by number.
    public let interfaces: [USBInterfaceState]
    /// Root hubs only: `interface_authorized_default` and `authorized_default`, raw.
    public let interfaceAuthorizedDefault: String?
    public let authorizedDefault: String?
    /// `idVendor` and `idProduct` as the kernel parsed them (read with the interfaces): what is
    /// known of a device whose descriptors do not parse here.
    public let kernelVendor: UInt16?
    public let kernelProduct: UInt16?

    public init(
        record: USBDeviceRecord, authorized: Bool?, parentSysPath: String?, interfaces: [USBInterfaceState] = [],
        interfaceAuthorizedDefault: String? = nil, authorizedDefault: String? = nil, kernelVendor: UInt16? = nil, kernelProduct: UInt16? = nil
    ) {
        self.record = record
        self.authorized = authorized
        self.parentSysPath = parentSysPath
        self.interfaces = interfaces
        self.interfaceAuthorizedDefault = interfaceAuthorizedDefault
        self.authorizedDefault = authorizedDefault
        self.kernelVendor = kernelVendor
        self.kernelProduct = kernelProduct
    }

    /// The same state without one interface (the kernel removed it).
    public func removing(interface name: String) -> USBDeviceState { keeping { $0.name != name } }

    /// The same state without its interfaces (as a read that skipped them gives it).
    public func removingInterfaces() -> USBDeviceState { keeping { _ in false } }

    private func keeping(_ include: (USBInterfaceState) -> Bool) -> USBDeviceState {
        USBDeviceState(
            record: record, authorized: authorized, parentSysPath: parentSysPath,
            interfaces: interfaces.filter(include),
            interfaceAuthorizedDefault: interfaceAuthorizedDefault, authorizedDefault: authorizedDefault,
            kernelVendor: kernelVendor, kernelProduct: kernelProduct
        )
    }

    /// Depth below the root hub (`usb1` 0, `1-2` 1, `1-2.3` 2): the order a scan decides in.
    public var depth: Int {
        guard !isRootHub else { return 0 }
        return 1 + record.name.filter { $0 == "." }.count
    }
}

/// The machine's USB side: what DeviceGuard reads and writes. `SysfsUSBHost` is the real one
/// (libudev and sysfs, also under umockdev); unit tests use an in-memory one.
public protocol USBHost: Sendable {
    /// Every USB device, parents before children, with its interfaces.
    func devices() throws(DeviceGuardError) -> [USBDeviceState]
    /// One device read afresh; nil when it is gone. Without `interfaces` its interface list is
    /// left empty: enough to classify it and to block it, at a fraction of the reads.
    func device(at sysPath: String, interfaces: Bool) -> USBDeviceState?
    /// One attribute of a device or interface, trimmed; nil when it cannot be read.
    func attribute(_ name: String, of sysPath: String) -> String?
    /// Writes a sysfs attribute of a device or interface (`authorized`, `interface_authorized_default`).
    /// Throws `.gone` when the node is not there any more.
    func write(_ value: String, attribute: String, of sysPath: String) throws(DeviceGuardError)
    /// Asks the kernel to bind drivers to an interface just authorized: authorizing alone does
    /// not probe (Documentation/usb/authorization.rst).
    func probeDrivers(interface name: String) throws(DeviceGuardError)
}

extension USBHost {
    /// One device read afresh, with its interfaces; nil when it is gone.
    public func device(at sysPath: String) -> USBDeviceState? { device(at: sysPath, interfaces: true) }

    /// Every device's record (what `holdfast usb explain` classifies).
    public func records() throws(DeviceGuardError) -> [USBDeviceRecord] { try devices().map(\.record) }
}
