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

/// What the service knows beyond one read of sysfs, for a plan.
public struct EnforcementContext: Sendable, Equatable {
    /// Interfaces of this plugged-in device already refused (a driver they may not have, or a
    /// conflict with another writer): they stay off until the device goes.
    public var refused: Set<String>
    /// The driver each interface was last seen bound to by a `bind` event, for interfaces whose
    /// `driver` link is gone again (the udev rule cut them off first).
    public var boundDrivers: [String: String]
    /// Whether a device whose descriptors do not parse may keep its input interfaces: not when a
    /// policy rule that blocks or narrows might be meant for it (`Classifier.rulesMightRestrict`).
    public var malformedKeepsInput: Bool

    public init(refused: Set<String> = [], boundDrivers: [String: String] = [:], malformedKeepsInput: Bool = true) {
        self.refused = refused
        self.boundDrivers = boundDrivers
        self.malformedKeepsInput = malformedKeepsInput
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
    /// - An interface that is (or was, in `context`) bound to a driver its allowed classes do not
    ///   have is off, and stays off while the device is plugged in (`refusedDriver`).
    /// - Descriptors that do not parse (`malformed`, a `block`): the device keeps only the
    ///   interfaces the kernel shows as HID or hub, unless a policy rule might be meant for it
    ///   (then all of it goes); while the kernel has not created its interfaces yet, nothing is
    ///   written (they are decided on their own `add` events).
    /// - A root hub, and its own interfaces, are never deauthorized, whatever a rule says: that
    ///   would take every keyboard on the bus with it.
    /// - An interface the descriptors do not describe (the kernel and the descriptors disagree)
    ///   is not allowed.
    public static func actions(
        for state: USBDeviceState, decision: DeviceDecision, context: EnforcementContext = EnforcementContext()
    ) -> (actions: [USBAction], expected: ExpectedAuthorization) {
        let path = state.record.sysPath
        let malformed = decision.rule == "malformed" && !state.isRootHub
        if malformed, context.malformedKeepsInput, state.authorized == true, state.interfaces.isEmpty {
            return ([], ExpectedAuthorization(device: true, interfaces: [:]))
        }
        let keepsInput = malformed && context.malformedKeepsInput && state.interfaces.contains { [0x03, 0x09].contains($0.triple?.code) }
        if decision.verdict == .block && !state.isRootHub && !keepsInput {
            let actions: [USBAction] = state.authorized == false ? [] : [.authorizeDevice(sysPath: path, false)]
            return (actions, ExpectedAuthorization(device: false, interfaces: [:]))
        }
        var actions: [USBAction] = []
        if state.authorized == false { actions.append(.authorizeDevice(sysPath: path, true)) }
        var allowed = state.isRootHub ? Set(state.interfaces.map(\.key)) : decision.verdict == .block ? [] : decision.allowedInterfaces
        if malformed {
            // The kernel tolerates some sloppiness (a bNumInterfaces that disagrees): a keyboard
            // with such descriptors keeps typing; nothing else of it is allowed.
            allowed = Set(state.interfaces.filter { [0x03, 0x09].contains($0.triple?.code) }.map(\.key))
        }
        for interface in state.interfaces
        where context.refused.contains(interface.name)
            || refusedDriver(interface, decision: decision, rootHub: state.isRootHub, driver: context.boundDrivers[interface.name]) != nil
        {
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

    /// The kernel drivers each class's interfaces may have. The kernel picks a driver by its
    /// match tables, and some match by vendor and product whatever the class (usb-storage's
    /// unusual devices, most USB network adapters), so a "HID" interface can end up as a disk.
    /// A class not listed here is not checked (vendor-specific `ff`, miscellaneous `ef`).
    public static let classDrivers: [UInt8: Set<String>] = [
        0x01: ["snd-usb-audio"],
        0x02: ["cdc_acm", "cdc_ether", "cdc_ncm", "cdc_mbim", "cdc_eem", "cdc_subset", "rndis_host", "qmi_wwan"],
        0x03: ["usbhid", "usbkbd", "usbmouse"],
        0x06: [],
        0x07: ["usblp"],
        0x08: ["usb-storage", "uas"],
        0x09: ["hub"],
        0x0A: ["cdc_acm", "cdc_ether", "cdc_ncm", "cdc_mbim", "cdc_eem", "cdc_subset", "rndis_host", "qmi_wwan"],
        0x0B: [],
        0x0E: ["uvcvideo"],
        0x10: ["uvcvideo", "snd-usb-audio"],
        0xE0: ["btusb", "rndis_host"],
    ]
    /// `usbfs` is a program claiming an interface through /dev/bus/usb (pcscd for smart cards,
    /// gphoto for cameras, firmware tools), which needs root or the seat's device access.
    public static let anyClassDrivers: Set<String> = ["usbfs"]

    /// The driver bound to an interface (or, from a `bind` event, `driver`) that its allowed
    /// classes do not have, or nil. Checked for interfaces allowed by the default class list and
    /// by `allow-interfaces` rules (`DeviceDecision.checksDrivers`); a rule that allows the whole
    /// device, or an exception, allows whatever drives it.
    public static func refusedDriver(_ interface: USBInterfaceState, decision: DeviceDecision, rootHub: Bool = false, driver observed: String? = nil) -> String? {
        guard let driver = interface.driver ?? observed, !anyClassDrivers.contains(driver) else { return nil }
        let classes: [UInt8]
        if rootHub {
            classes = [0x09]
        } else if decision.rule == "malformed" {
            classes = interface.triple.map { [$0.code] } ?? []
        } else if decision.checksDrivers {
            classes = decision.interfaces.filter { $0.configuration == interface.configuration && $0.number == interface.number }.map(\.triple.code)
        } else {
            return nil
        }
        // Every class the interface may take (alternate settings) must know the driver.
        guard !classes.isEmpty else { return driver }
        for code in classes {
            guard let permitted = classDrivers[code] else { continue }
            if !permitted.contains(driver) { return driver }
        }
        return nil
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
