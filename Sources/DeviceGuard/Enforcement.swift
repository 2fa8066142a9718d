/// One write DeviceGuard makes to sysfs.
public enum USBAction: Sendable, Equatable, CustomStringConvertible {
    /// The device's `authorized`: 0 disconnects it logically (the kernel drops its interfaces), 1
    /// lets the kernel configure it again.
    case authorizeDevice(sysPath: String, Bool)
    /// One interface's `authorized`: 0 unbinds its driver at once; 1 allows binding.
    case authorizeInterface(sysPath: String, name: String, Bool)
    /// `/sys/bus/usb/drivers_probe`: bind drivers to an interface just authorized.
    case probe(interface: String)
    /// A root hub's `interface_authorized_default`: new interfaces on its bus start unauthorized.
    case interfaceDefault(hubSysPath: String, Bool)

    public var description: String {
        switch self {
        case .authorizeDevice(let path, let on): "\(Self.name(path)) authorized=\(on ? 1 : 0)"
        case .authorizeInterface(_, let name, let on): "\(name) authorized=\(on ? 1 : 0)"
        case .probe(let name): "drivers_probe \(name)"
        case .interfaceDefault(let path, let on): "\(Self.name(path)) interface_authorized_default=\(on ? 1 : 0)"
        }
    }

    static func name(_ path: String) -> String { path.split(separator: "/").last.map(String.init) ?? path }
}

/// What the authorization of a device and its interfaces should be once a decision is applied:
/// kept to tell a later change by someone else (USBGuard, GNOME's USB protection, a root shell)
/// from our own.
public struct ExpectedAuthorization: Sendable, Equatable {
    /// The device's `authorized`.
    public var device: Bool
    /// Each interface present when the decision was applied, by name.
    public var interfaces: [String: Bool]

    public init(device: Bool, interfaces: [String: Bool]) {
        self.device = device
        self.interfaces = interfaces
    }

    /// One attribute found other than we left it.
    public struct Difference: Sendable, Equatable, CustomStringConvertible {
        public let node: String
        public let found: Bool
        /// true when the change lets more through than the policy does (someone authorized what
        /// we blocked); false when it blocks what the policy allows.
        public var loosens: Bool { found }
        public var description: String { "\(node) authorized=\(found ? 1 : 0), expected \(found ? 0 : 1)" }
    }

    /// What differs in `state` from this expectation. Interfaces that appeared since are not
    /// differences (they are new, and decided as such); interfaces that disappeared are not either
    /// (the kernel removes them with the device).
    public func differences(in state: USBDeviceState) -> [Difference] {
        var found: [Difference] = []
        if let authorized = state.authorized, authorized != device {
            found.append(Difference(node: state.record.name, found: authorized))
        }
        guard device, state.authorized != false else { return found }
        for interface in state.interfaces {
            guard let expected = interfaces[interface.name], let actual = interface.authorized, actual != expected else { continue }
            found.append(Difference(node: interface.name, found: actual))
        }
        return found
    }
}

/// Turns a decision into sysfs writes. Pure: the service executes what it returns.
public enum EnforcementPlan {
    /// The writes that bring `state` to `decision`, and the authorization expected after them.
    ///
    /// - `block`: the device is deauthorized as a whole (`authorized=0`); its interfaces go with it.
    /// - `allow` / `partial`: the device stays (or becomes) authorized; each interface of the
    ///   active configuration is authorized only if the decision allows it (every alternate
    ///   setting), the rest are deauthorized. Interfaces are all authorized before any is probed,
    ///   as the kernel's authorization document asks for drivers that need several interfaces.
    /// - A root hub, and its own interfaces, are never deauthorized, whatever a rule says: that
    ///   would take every keyboard on the bus with it.
    /// - An interface the descriptors do not describe (the kernel and the descriptors disagree)
    ///   is not allowed.
    public static func actions(for state: USBDeviceState, decision: DeviceDecision) -> (actions: [USBAction], expected: ExpectedAuthorization) {
        let path = state.record.sysPath
        let keepsInput = decision.rule == "malformed" && state.interfaces.contains { [0x03, 0x09].contains($0.triple?.code) }
        if decision.verdict == .block && !state.isRootHub && !keepsInput {
            let actions: [USBAction] = state.authorized == false ? [] : [.authorizeDevice(sysPath: path, false)]
            return (actions, ExpectedAuthorization(device: false, interfaces: [:]))
        }
        var actions: [USBAction] = []
        if state.authorized == false { actions.append(.authorizeDevice(sysPath: path, true)) }
        var allowed = state.isRootHub ? Set(state.interfaces.map(\.key)) : decision.verdict == .block ? [] : decision.allowedInterfaces
        if decision.rule == "malformed", !state.isRootHub {
            // Descriptors that do not parse: the device is blocked, but its input and hub
            // interfaces as the kernel sees them stay, so a keyboard with sloppy descriptors (the
            // kernel tolerates many) keeps typing. Nothing else is allowed.
            allowed = Set(state.interfaces.filter { [0x03, 0x09].contains($0.triple?.code) }.map(\.key))
        }
        for interface in state.interfaces where refusedDriver(interface, decision: decision, rootHub: state.isRootHub) != nil {
            allowed.remove(interface.key)
        }
        var probes: [USBAction] = []
        var expected: [String: Bool] = [:]
        for interface in state.interfaces {
            let allow = allowed.contains(interface.key)
            expected[interface.name] = allow
            if interface.authorized != allow {
                actions.append(.authorizeInterface(sysPath: interface.sysPath, name: interface.name, allow))
                if allow { probes.append(.probe(interface: interface.name)) }
            }
        }
        return (actions + probes, ExpectedAuthorization(device: true, interfaces: expected))
    }

    /// The drivers an interface allowed by the default class list may have: the kernel picks a
    /// driver by its match tables, and some match by vendor and product whatever the class
    /// (usb-storage's unusual devices, most USB network adapters), so a "HID" interface can end
    /// up as a disk. `usbfs` is a program claiming the interface through /dev/bus/usb (pcscd for
    /// smart cards, firmware tools), which needs root or the seat's device access.
    public static let defaultDrivers: [UInt8: Set<String>] = [
        0x01: ["snd-usb-audio"],
        0x03: ["usbhid", "usbkbd", "usbmouse"],
        0x09: ["hub"],
        0x0B: [],
        0x0E: ["uvcvideo"],
        0x10: ["uvcvideo", "snd-usb-audio"],
    ]
    public static let anyClassDrivers: Set<String> = ["usbfs"]

    /// The driver bound to an interface that the decision does not allow, or nil. Only
    /// interfaces allowed by the default list are checked: a rule or an exception that allows a
    /// device allows whatever drives it.
    public static func refusedDriver(_ interface: USBInterfaceState, decision: DeviceDecision, rootHub: Bool = false) -> String? {
        guard let driver = interface.driver, !anyClassDrivers.contains(driver) else { return nil }
        let classes: [UInt8]
        if rootHub {
            classes = [0x09]
        } else if decision.rule == "malformed" {
            classes = interface.triple.map { [$0.code] } ?? []
        } else if decision.rule == "default" {
            classes = decision.interfaces.filter { $0.configuration == interface.configuration && $0.number == interface.number }.map(\.triple.code)
        } else {
            return nil
        }
        let permitted = classes.reduce(into: Set<String>()) { $0.formUnion(defaultDrivers[$1] ?? []) }
        return permitted.contains(driver) ? nil : driver
    }

    /// The write that makes new interfaces on a root hub's bus start unauthorized; nil when it is
    /// so already, or when the kernel has no such attribute (before 4.4).
    public static func hubDefault(for state: USBDeviceState) -> USBAction? {
        guard state.isRootHub, let current = state.interfaceAuthorizedDefault, current != "0" else { return nil }
        return .interfaceDefault(hubSysPath: state.record.sysPath, false)
    }
}

extension USBHost {
    /// Performs one action.
    public func perform(_ action: USBAction) throws(DeviceGuardError) {
        switch action {
        case .authorizeDevice(let path, let on): try write(on ? "1" : "0", attribute: "authorized", of: path)
        case .authorizeInterface(let path, _, let on): try write(on ? "1" : "0", attribute: "authorized", of: path)
        case .probe(let name): try probeDrivers(interface: name)
        case .interfaceDefault(let path, let on): try write(on ? "1" : "0", attribute: "interface_authorized_default", of: path)
        }
    }
}
