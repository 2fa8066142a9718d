public import HoldfastCore

/// A pattern over class triples: `08:06:50`, `08:*:*`, `ef:04:*` (hex; `*` matches anything).
public struct ClassPattern: Sendable, Hashable, CustomStringConvertible {
    let parts: [UInt8?]

    public init?(_ text: String) {
        let fields = text.lowercased().split(separator: ":", omittingEmptySubsequences: false)
        guard (1...3).contains(fields.count) else { return nil }
        var parts: [UInt8?] = []
        for field in fields {
            if field == "*" {
                parts.append(nil)
            } else {
                guard field.count == 2, field.allSatisfy(\.isHexDigit), let byte = UInt8(field, radix: 16) else { return nil }
                parts.append(byte)
            }
        }
        while parts.count < 3 { parts.append(nil) }
        self.parts = parts
    }

    public func matches(_ triple: ClassTriple) -> Bool {
        zip(parts, [triple.code, triple.subclass, triple.protocol]).allSatisfy { pattern, value in pattern.map { $0 == value } ?? true }
    }

    public var description: String { parts.map { $0.map(ClassTriple.hex) ?? "*" }.joined(separator: ":") }
}

/// What a rule does to a device it matches.
public enum RuleAction: Sendable, Equatable {
    /// Every interface allowed.
    case allow
    /// Every interface blocked.
    case block
    /// Exactly the interfaces matching these patterns allowed, the rest blocked.
    case allowInterfaces([ClassPattern])
}

/// One rule of the `usb` policy section. Every condition given must hold; first match wins.
public struct USBRule: Sendable, Equatable {
    public let id: String
    public let vendor: UInt16?
    public let product: UInt16?
    public let serial: String?
    /// `sha256:` + hex of the device's descriptor hash (`DeviceIdentity.descriptorHash`).
    public let hash: String?
    /// The device has at least one interface (or function, or device class) matching one of these.
    public let classes: [ClassPattern]
    /// `hotplug`, `hardwired`, `not used` or `unknown`, as the kernel reports in `port/connect_type`.
    public let connectType: String?
    public let action: RuleAction
}

/// Why a `usb` policy section was refused.
public struct USBPolicyError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// Whether holdfastd acts on its decisions.
public enum USBMode: String, Sendable, Equatable {
    /// Decide, write `authorized`, record.
    case enforce
    /// Decide and record what would be written; write nothing. The shipped udev rule, which needs
    /// no daemon, still applies.
    case auditOnly = "audit-only"
}

/// The `usb` section of the policy (`docs/usb-policy.md`): rules before the default allow-list.
public struct USBPolicy: Sendable, Equatable {
    public let rules: [USBRule]
    public let mode: USBMode
    /// The longest exception `holdfast usb allow` may grant, in seconds; 0 refuses local exceptions.
    public let maximumExceptionSeconds: Int64

    /// The classes the default policy allows: HID, hub, audio, video, smart card, audio/video.
    public static let defaultAllowedClasses: Set<UInt8> = [0x03, 0x09, 0x01, 0x0E, 0x0B, 0x10]

    /// A working day: long enough for the job an exception is asked for, short enough that a
    /// forgotten one is gone by the next shift.
    public static let defaultMaximumExceptionSeconds: Int64 = 8 * 3_600
    /// No policy may allow local exceptions longer than this.
    public static let ceilingExceptionSeconds: Int64 = 30 * 86_400

    public static let empty = USBPolicy(rules: [])

    public init(rules: [USBRule], mode: USBMode = .enforce, maximumExceptionSeconds: Int64 = defaultMaximumExceptionSeconds) {
        self.rules = rules
        self.mode = mode
        self.maximumExceptionSeconds = maximumExceptionSeconds
    }

    /// Reads the `usb` section (nil: the defaults). Unknown members, bad values and duplicate rule
    /// ids are refused with the rule's position.
    public init(section: JSONValue?) throws(USBPolicyError) {
        guard let section else {
            self.init(rules: [])
            return
        }
        guard case .object(let members) = section else { throw USBPolicyError(message: "usb: must be an object") }
        for key in members.keys where !["rules", "mode", "max_exception"].contains(key) {
            throw USBPolicyError(message: "usb: unknown member \"\(key)\" (known: mode, max_exception, rules)")
        }
        var mode = USBMode.enforce
        if let value = members["mode"] {
            guard case .string(let text) = value, let parsed = USBMode(rawValue: text) else {
                throw USBPolicyError(message: "usb.mode: must be \"enforce\" or \"audit-only\"")
            }
            mode = parsed
        }
        var maximum = Self.defaultMaximumExceptionSeconds
        if let value = members["max_exception"] {
            guard case .string(let text) = value, let seconds = text == "0" ? 0 : DurationText.seconds(text),
                seconds <= Self.ceilingExceptionSeconds
            else {
                throw USBPolicyError(message: "usb.max_exception: must be a duration up to 30d, e.g. \"8h\", or \"0\" to refuse local exceptions")
            }
            maximum = seconds
        }
        var rules: [USBRule] = []
        if let rulesValue = members["rules"] {
            guard case .array(let items) = rulesValue else { throw USBPolicyError(message: "usb.rules: must be an array") }
            var ids = Set<String>()
            for (index, item) in items.enumerated() {
                let rule = try Self.parseRule(item, index: index)
                guard ids.insert(rule.id).inserted else { throw USBPolicyError(message: "usb.rules[\(index)]: id \"\(rule.id)\" is used twice") }
                rules.append(rule)
            }
        }
        self.init(rules: rules, mode: mode, maximumExceptionSeconds: maximum)
    }

    private static func parseRule(_ value: JSONValue, index: Int) throws(USBPolicyError) -> USBRule {
        let place = "usb.rules[\(index)]"
        guard case .object(let members) = value else { throw USBPolicyError(message: "\(place): must be an object") }
        for key in members.keys where !["id", "match", "action", "interfaces", "comment"].contains(key) {
            throw USBPolicyError(message: "\(place): unknown member \"\(key)\" (known: id, match, action, interfaces, comment)")
        }
        guard case .string(let id)? = members["id"], !id.isEmpty else { throw USBPolicyError(message: "\(place): needs an \"id\" string") }
        let named = "\(place) (\(id))"
        guard case .object(let match)? = members["match"] else { throw USBPolicyError(message: "\(named): needs a \"match\" object") }
        for key in match.keys where !["vendor", "product", "serial", "hash", "class", "connect_type"].contains(key) {
            throw USBPolicyError(message: "\(named): unknown match condition \"\(key)\" (known: vendor, product, serial, hash, class, connect_type)")
        }
        guard !match.isEmpty else { throw USBPolicyError(message: "\(named): an empty match would match every device; say what it matches") }
        func hex16(_ key: String) throws(USBPolicyError) -> UInt16? {
            guard let value = match[key] else { return nil }
            guard case .string(let text) = value, text.count == 4, text.allSatisfy(\.isHexDigit), let number = UInt16(text, radix: 16) else {
                throw USBPolicyError(message: "\(named): \(key) must be 4 hex digits, e.g. \"0781\"")
            }
            return number
        }
        func string(_ key: String) throws(USBPolicyError) -> String? {
            guard let value = match[key] else { return nil }
            guard case .string(let text) = value, !text.isEmpty else { throw USBPolicyError(message: "\(named): \(key) must be a non-empty string") }
            return text
        }
        func patterns(_ value: JSONValue?, _ key: String) throws(USBPolicyError) -> [ClassPattern] {
            let texts: [JSONValue]
            switch value {
            case nil: return []
            case .string?: texts = [value ?? .null]
            case .array(let list)?:
                // An empty list would be a condition that says nothing: `"class": []` must not
                // turn a rule into one that matches (or blocks) every device.
                guard !list.isEmpty else { throw USBPolicyError(message: "\(named): \(key) is an empty list; name at least one class pattern") }
                texts = list
            default: throw USBPolicyError(message: "\(named): \(key) must be a class pattern or a list of them, e.g. \"08:06:*\"")
            }
            var result: [ClassPattern] = []
            for text in texts {
                guard case .string(let pattern) = text, let parsed = ClassPattern(pattern) else {
                    throw USBPolicyError(message: "\(named): \(key) has a bad class pattern (write hex like \"08:06:50\" or \"08:*:*\")")
                }
                result.append(parsed)
            }
            return result
        }
        let vendor = try hex16("vendor")
        let product = try hex16("product")
        let serial = try string("serial")
        var hash = try string("hash")?.lowercased()
        if let text = hash {
            let digits = text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
            guard digits.count == 64, Hex.decode(digits) != nil else {
                throw USBPolicyError(message: "\(named): hash must be \"sha256:\" and 64 hex digits, as `holdfast usb explain` prints it")
            }
            hash = "sha256:" + digits
        }
        let classes = try patterns(match["class"], "class")
        let connectType = try string("connect_type")
        if let connectType, !["hotplug", "hardwired", "not used", "unknown"].contains(connectType) {
            throw USBPolicyError(message: "\(named): connect_type must be hotplug, hardwired, not used or unknown")
        }
        guard case .string(let actionName)? = members["action"] else {
            throw USBPolicyError(message: "\(named): needs an \"action\": allow, block or allow-interfaces")
        }
        let action: RuleAction
        switch actionName {
        case "allow", "block":
            guard members["interfaces"] == nil else { throw USBPolicyError(message: "\(named): \"interfaces\" goes with allow-interfaces only") }
            action = actionName == "allow" ? .allow : .block
        case "allow-interfaces":
            let allowed = try patterns(members["interfaces"], "interfaces")
            guard !allowed.isEmpty else { throw USBPolicyError(message: "\(named): allow-interfaces needs \"interfaces\", e.g. [\"03:*:*\"]") }
            action = .allowInterfaces(allowed)
        default:
            throw USBPolicyError(message: "\(named): action \"\(actionName)\" is not allow, block or allow-interfaces")
        }
        return USBRule(
            id: id, vendor: vendor, product: product, serial: serial, hash: hash,
            classes: classes, connectType: connectType, action: action
        )
    }
}
