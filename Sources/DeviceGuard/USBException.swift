public import FoundationEssentials

/// A time-boxed permission for one device or one model: every interface allowed until `until`.
///
/// There is no exception without an end: `until` is absolute (wall clock), so an exception also
/// ends while the agent is stopped, and a timer deauthorizes a device still plugged in at expiry.
public struct USBException: Sendable, Equatable, Codable {
    /// Short random id, for `holdfast usb revoke`.
    public let id: String
    public let vendor: UInt16
    public let product: UInt16
    /// When set, only the device reporting this serial.
    public let serial: String?
    /// When set, only devices with these exact descriptors (`sha256:…`): granted from a plugged
    /// device, the exception follows that device and not a look-alike with other interfaces.
    public let hash: String?
    public let created: Date
    public let until: Date
    public let reason: String
    /// Who granted it: `uid 0 (root)`, or an approver through the broker.
    public let grantedBy: String
    /// An approved request (docs/exceptions.md): bounded by the approval, not by the policy's
    /// `max_exception` for local grants.
    public let approved: Bool

    public init(
        id: String, vendor: UInt16, product: UInt16, serial: String?, hash: String?,
        created: Date, until: Date, reason: String, grantedBy: String, approved: Bool = false
    ) {
        self.id = id
        self.vendor = vendor
        self.product = product
        self.serial = serial
        self.hash = hash
        self.created = created
        self.until = until
        self.reason = reason
        self.grantedBy = grantedBy
        self.approved = approved
    }

    enum CodingKeys: String, CodingKey {
        case id, vendor, product, serial, hash, created, until, reason, approved
        case grantedBy = "granted_by"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        let vendorText = try container.decode(String.self, forKey: .vendor)
        let productText = try container.decode(String.self, forKey: .product)
        guard vendorText.count == 4, productText.count == 4, (vendorText + productText).allSatisfy(\.isHexDigit),
            let vendor = UInt16(vendorText, radix: 16), let product = UInt16(productText, radix: 16)
        else {
            throw DecodingError.dataCorruptedError(forKey: .vendor, in: container, debugDescription: "vendor and product are 4 hex digits")
        }
        self.vendor = vendor
        self.product = product
        serial = try container.decodeIfPresent(String.self, forKey: .serial)
        hash = try container.decodeIfPresent(String.self, forKey: .hash)
        created = Date(timeIntervalSince1970: try container.decode(Double.self, forKey: .created))
        until = Date(timeIntervalSince1970: try container.decode(Double.self, forKey: .until))
        // Stored state is input too: an exception must have a finite, positive span no longer
        // than any policy may allow.
        let span = until.timeIntervalSince(created)
        guard created.timeIntervalSince1970.isFinite, until.timeIntervalSince1970.isFinite, span > 0,
            span <= Double(USBPolicy.ceilingExceptionSeconds)
        else {
            throw DecodingError.dataCorruptedError(forKey: .until, in: container, debugDescription: "an exception must end after it starts and last at most 30 days")
        }
        reason = try container.decode(String.self, forKey: .reason)
        grantedBy = try container.decode(String.self, forKey: .grantedBy)
        approved = try container.decodeIfPresent(Bool.self, forKey: .approved) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(Classifier.hex16(vendor), forKey: .vendor)
        try container.encode(Classifier.hex16(product), forKey: .product)
        try container.encodeIfPresent(serial, forKey: .serial)
        try container.encodeIfPresent(hash, forKey: .hash)
        try container.encode(created.timeIntervalSince1970, forKey: .created)
        try container.encode(until.timeIntervalSince1970, forKey: .until)
        try container.encode(reason, forKey: .reason)
        try container.encode(grantedBy, forKey: .grantedBy)
        if approved { try container.encode(true, forKey: .approved) }
    }

    /// `0781:5567`, `0781:5567:SERIAL`, plus ` (descriptors sha256:…)` when bound to a hash.
    public var target: String {
        var text = "\(Classifier.hex16(vendor)):\(Classifier.hex16(product))"
        if let serial { text += ":" + serial }
        return text
    }

    /// Whether it covers a device with these descriptors and serial.
    public func matches(_ parsed: ParsedDescriptors, serial deviceSerial: String?, hash deviceHash: String) -> Bool {
        guard parsed.device.vendorID == vendor, parsed.device.productID == product else { return false }
        if let serial, serial != deviceSerial { return false }
        if let hash, hash != deviceHash { return false }
        return true
    }

    public func isActive(at now: Date) -> Bool { now < until }
}

/// What `holdfast usb allow DEV` names: a device by its bus path, or a model (`vid:pid[:serial]`).
public enum USBExceptionTarget: Sendable, Equatable {
    /// `1-2`, `1-2.4` (as `holdfast usb devices` shows): the device plugged there now.
    case busPath(String)
    case model(vendor: UInt16, product: UInt16, serial: String?)

    /// Parses the command-line form; nil when it is neither.
    public init?(_ text: String) {
        let fields = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        if fields.count >= 2, fields[0].count == 4, fields[1].count == 4, fields[0].allSatisfy(\.isHexDigit), fields[1].allSatisfy(\.isHexDigit),
            let vendor = UInt16(fields[0], radix: 16), let product = UInt16(fields[1], radix: 16)
        {
            let serial = fields.count == 3 ? String(fields[2]) : nil
            if let serial, serial.isEmpty { return nil }
            self = .model(vendor: vendor, product: product, serial: serial)
            return
        }
        // Kernel USB device names: bus number, dash, dot-separated ports (usb(4) naming).
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[0].allSatisfy(\.isASCIIDigit),
            !parts[1].isEmpty, parts[1].split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) })
        else { return nil }
        self = .busPath(text)
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
