public import FoundationEssentials
import HoldfastCore
import HoldfastCrypto

/// allow / block / partial, for a device or an interface.
public enum Verdict: String, Sendable, Codable {
    case allow, block, partial
}

/// What is known about one USB device: where it is and its raw descriptors. Strings are for
/// people and serial rules only; classification reads the descriptors.
public struct USBDeviceRecord: Sendable, Equatable {
    /// The kernel's name for it, e.g. `1-2` or `usb1`.
    public let name: String
    /// Its sysfs path.
    public let sysPath: String
    public let descriptors: [UInt8]
    public let manufacturer: String?
    public let product: String?
    public let serial: String?
    /// `port/connect_type`, where the kernel reports it.
    public let connectType: String?

    public init(
        name: String, sysPath: String, descriptors: [UInt8], manufacturer: String? = nil,
        product: String? = nil, serial: String? = nil, connectType: String? = nil
    ) {
        self.name = name
        self.sysPath = sysPath
        self.descriptors = descriptors
        self.manufacturer = manufacturer
        self.product = product
        self.serial = serial
        self.connectType = connectType
    }
}

/// One interface setting's decision.
public struct InterfaceDecision: Sendable, Equatable {
    public let configuration: UInt8
    public let number: UInt8
    public let alternate: UInt8
    public let triple: ClassTriple
    public let verdict: Verdict
}

/// The decision for one device and why.
public struct DeviceDecision: Sendable, Equatable {
    public let record: USBDeviceRecord
    /// nil when the descriptors were refused.
    public let parsed: ParsedDescriptors?
    public let verdict: Verdict
    /// The rule id that decided, or `default`, `malformed`, or `exception:ID`.
    public let rule: String
    public let reason: String
    public let interfaces: [InterfaceDecision]
    /// `sha256:…` over the descriptors' stable parts; nil when they did not parse.
    public let descriptorHash: String?
    /// The exception that allowed the device, when one did.
    public var exception: USBException? = nil
    /// Whether each allowed interface must also have a driver of its class
    /// (`EnforcementPlan.classDrivers`): so for the default list and `allow-interfaces` rules,
    /// which allow interfaces by class; not for an `allow` rule or an exception, which allow the
    /// device whatever drives it.
    public var checksDrivers = true

    /// The interfaces (configuration, number) that may be authorized: an interface is allowed only
    /// if every one of its alternate settings is.
    public var allowedInterfaces: Set<InterfaceKey> {
        var blocked = Set<InterfaceKey>()
        var all = Set<InterfaceKey>()
        for decision in interfaces {
            let key = InterfaceKey(configuration: decision.configuration, number: decision.number)
            all.insert(key)
            if decision.verdict != .allow { blocked.insert(key) }
        }
        return all.subtracting(blocked)
    }
}

/// An interface of a configuration, the unit the kernel authorizes.
public struct InterfaceKey: Sendable, Hashable {
    public let configuration: UInt8
    public let number: UInt8

    public init(configuration: UInt8, number: UInt8) {
        self.configuration = configuration
        self.number = number
    }
}

/// Decides devices: an active exception first, then policy rules (first match wins), then the
/// default allow-list. Pure.
public struct Classifier: Sendable {
    public let policy: USBPolicy

    public init(policy: USBPolicy) { self.policy = policy }

    /// The classes a USB lockdown keeps: people still need a keyboard and a mouse, and hubs carry them.
    public static let lockdownClasses: Set<UInt8> = [0x03, 0x09]

    /// The decision for a device. Exceptions count only while active at `now`; descriptors that do
    /// not parse are `block` whatever any exception says (what they describe is unknown). Under a
    /// lockdown only HID and hub interfaces are allowed, whatever the rules and exceptions say.
    public func decide(
        _ record: USBDeviceRecord, exceptions: [USBException] = [], now: Date = Date(timeIntervalSince1970: 0), lockdown: Bool = false
    ) -> DeviceDecision {
        let parsed: ParsedDescriptors
        do {
            parsed = try DescriptorParser.parse(record.descriptors)
        } catch {
            return DeviceDecision(
                record: record, parsed: nil, verdict: .block, rule: "malformed",
                reason: "descriptors refused: \(error)", interfaces: [], descriptorHash: nil
            )
        }
        let hash = Self.descriptorHash(parsed)
        let settings = parsed.configurations.flatMap { configuration in
            configuration.settings.map { (configuration, $0) }
        }
        guard !settings.isEmpty else {
            return DeviceDecision(
                record: record, parsed: parsed, verdict: .block, rule: "default",
                reason: "the device describes no interface", interfaces: [], descriptorHash: hash
            )
        }
        if lockdown {
            let decisions = settings.map { configuration, setting in
                decision(configuration, setting, Self.lockdownClasses.contains(setting.triple.code))
            }
            let verdict = Self.overall(decisions)
            return DeviceDecision(
                record: record, parsed: parsed, verdict: verdict, rule: "lockdown",
                reason: verdict == .allow ? "lockdown: only HID and hub interfaces, and this device has no other" : "lockdown: only HID and hub interfaces are allowed",
                interfaces: decisions, descriptorHash: hash
            )
        }
        if let exception = exceptions.first(where: { $0.isActive(at: now) && $0.matches(parsed, serial: record.serial, hash: hash) }) {
            var allowed = DeviceDecision(
                record: record, parsed: parsed, verdict: .allow, rule: "exception:\(exception.id)",
                reason: "exception \(exception.id) until \(exception.until.formatted(.iso8601)) (\(exception.reason))",
                interfaces: settings.map { decision($0, $1, true) }, descriptorHash: hash
            )
            allowed.exception = exception
            allowed.checksDrivers = false
            return allowed
        }
        if let rule = policy.rules.first(where: { matches($0, record, parsed, hash) }) {
            let decisions = settings.map { configuration, setting in
                let allowed: Bool = switch rule.action {
                case .allow: true
                case .block: false
                case .allowInterfaces(let patterns): patterns.contains { $0.matches(setting.triple) }
                }
                return decision(configuration, setting, allowed)
            }
            let verdict = Self.overall(decisions)
            let checksDrivers: Bool = switch rule.action {
            case .allow: false
            case .block, .allowInterfaces: true
            }
            let what = switch rule.action {
            case .allow: "allowed"
            case .block: "blocked"
            case .allowInterfaces(let patterns): "only interfaces \(patterns.map(\.description).joined(separator: ", ")) allowed"
            }
            var decided = DeviceDecision(
                record: record, parsed: parsed, verdict: verdict, rule: rule.id,
                reason: "rule \(rule.id): \(what)", interfaces: decisions, descriptorHash: hash
            )
            decided.checksDrivers = checksDrivers
            return decided
        }
        // The default: a class that appears anywhere counts — the device class, any function
        // (interface association) and any alternate setting.
        let deviceClass = parsed.device.deviceClass
        let deviceClassBlocked = ![0x00, 0xEF, 0xFF].contains(deviceClass.code) && !USBPolicy.defaultAllowedClasses.contains(deviceClass.code)
        var decisions: [InterfaceDecision] = []
        var blockedClasses: [String] = []
        for (configuration, setting) in settings {
            var allowed = USBPolicy.defaultAllowedClasses.contains(setting.triple.code)
            if !allowed { blockedClasses.append(Self.className(setting.triple)) }
            if deviceClassBlocked { allowed = false }
            for association in configuration.associations
            where setting.number >= association.firstInterface
                && Int(setting.number) < Int(association.firstInterface) + Int(association.interfaceCount)
            {
                if !USBPolicy.defaultAllowedClasses.contains(association.function.code) {
                    allowed = false
                    blockedClasses.append(Self.className(association.function) + " function")
                }
            }
            decisions.append(decision(configuration, setting, allowed))
        }
        if deviceClassBlocked { blockedClasses.insert(Self.className(deviceClass) + " device class", at: 0) }
        let verdict = Self.overall(decisions)
        let unique = blockedClasses.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let reason: String = switch verdict {
        case .allow: "default: every interface is of an allowed class"
        case .block: "default: \(unique.joined(separator: ", ")) not allowed"
        case .partial: "default: \(unique.joined(separator: ", ")) not allowed; the other interfaces are allowed"
        }
        return DeviceDecision(
            record: record, parsed: parsed, verdict: verdict, rule: "default",
            reason: reason, interfaces: decisions, descriptorHash: hash
        )
    }

    /// For a device whose descriptors do not parse: whether a policy rule that blocks or narrows
    /// might be meant for it, judged on what the kernel shows (its `idVendor`/`idProduct`, serial,
    /// connect type, interface classes). A condition that cannot be judged (a descriptor hash)
    /// counts as met: breaking descriptors must not be a way around a block rule.
    public func rulesMightRestrict(_ state: USBDeviceState) -> Bool {
        let classes = state.interfaces.compactMap(\.triple)
        return policy.rules.contains { rule in
            if case .allow = rule.action { return false }
            if let vendor = rule.vendor, let seen = state.kernelVendor, vendor != seen { return false }
            if let product = rule.product, let seen = state.kernelProduct, product != seen { return false }
            if let serial = rule.serial, serial != state.record.serial { return false }
            if let connectType = rule.connectType, connectType != state.record.connectType { return false }
            if !rule.classes.isEmpty, !classes.isEmpty, !classes.contains(where: { triple in rule.classes.contains { $0.matches(triple) } }) {
                return false
            }
            return true
        }
    }

    private func decision(_ configuration: Configuration, _ setting: InterfaceSetting, _ allowed: Bool) -> InterfaceDecision {
        InterfaceDecision(
            configuration: configuration.value, number: setting.number, alternate: setting.alternate,
            triple: setting.triple, verdict: allowed ? .allow : .block
        )
    }

    private func matches(_ rule: USBRule, _ record: USBDeviceRecord, _ parsed: ParsedDescriptors, _ hash: String) -> Bool {
        if let vendor = rule.vendor, vendor != parsed.device.vendorID { return false }
        if let product = rule.product, product != parsed.device.productID { return false }
        if let serial = rule.serial, serial != record.serial { return false }
        if let wanted = rule.hash, wanted != hash { return false }
        if let connectType = rule.connectType, connectType != record.connectType { return false }
        if !rule.classes.isEmpty {
            var triples = [parsed.device.deviceClass]
            for configuration in parsed.configurations {
                triples += configuration.settings.map(\.triple) + configuration.associations.map(\.function)
            }
            guard triples.contains(where: { triple in rule.classes.contains { $0.matches(triple) } }) else { return false }
        }
        return true
    }

    /// allow when every interface (all settings) is allowed, block when none is, else partial.
    static func overall(_ decisions: [InterfaceDecision]) -> Verdict {
        var byInterface: [InterfaceKey: Bool] = [:]
        for decision in decisions {
            let key = InterfaceKey(configuration: decision.configuration, number: decision.number)
            byInterface[key] = (byInterface[key] ?? true) && decision.verdict == .allow
        }
        if byInterface.values.allSatisfy({ $0 }) { return .allow }
        if byInterface.values.allSatisfy({ !$0 }) { return .block }
        return .partial
    }

    /// A hash of what identifies the device model and its interfaces, leaving out what changes with
    /// the port or link speed (bcdUSB, bMaxPacketSize0, wMaxPacketSize, bInterval, bMaxPower,
    /// SuperSpeed companion and BOS descriptors): the same stick hashes the same on a USB 2 and a
    /// USB 3 port.
    public static func descriptorHash(_ parsed: ParsedDescriptors) -> String {
        let device = parsed.device
        var text = "v1 \(hex16(device.vendorID)):\(hex16(device.productID)) \(hex16(device.deviceVersion)) \(device.deviceClass)"
        text += " strings \(device.hasManufacturerString ? 1 : 0)\(device.hasProductString ? 1 : 0)\(device.hasSerialString ? 1 : 0)"
        for configuration in parsed.configurations {
            text += "\nc\(configuration.value)"
            for association in configuration.associations {
                text += "\n a\(association.firstInterface)+\(association.interfaceCount) \(association.function)"
            }
            for setting in configuration.settings {
                text += "\n i\(setting.number).\(setting.alternate) \(setting.triple) e" + setting.endpoints.map { hex16($0) }.joined(separator: ",")
            }
        }
        return "sha256:" + SHA256.hex(Array(text.utf8))
    }

    /// Four lower-case hex digits, as vendor and product ids are written.
    public static func hex16(_ value: UInt16) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: 4 - text.count) + text
    }

    /// A short name for a class triple, for reasons people read.
    public static func className(_ triple: ClassTriple) -> String {
        switch (triple.code, triple.subclass, triple.protocol) {
        case (0x08, 0x06, 0x62): "mass storage (UAS) 08:06:62"
        case (0x08, _, _): "mass storage \(triple)"
        case (0x06, _, _): "still image (PTP/MTP) \(triple)"
        case (0xFF, _, _): "vendor-specific \(triple)"
        case (0x02, _, _): "communications \(triple)"
        case (0x0A, _, _): "CDC data \(triple)"
        case (0xE0, _, _): "wireless controller \(triple)"
        case (0xEF, 0x04, _): "RNDIS \(triple)"
        case (0x07, _, _): "printer \(triple)"
        case (0x03, _, _): "HID \(triple)"
        case (0x09, _, _): "hub \(triple)"
        case (0x01, _, _): "audio \(triple)"
        case (0x0E, _, _): "video \(triple)"
        case (0x0B, _, _): "smart card \(triple)"
        case (0x10, _, _): "audio/video \(triple)"
        default: "class \(triple)"
        }
    }
}
