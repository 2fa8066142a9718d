/// A class, subclass and protocol triple (USB class codes, usb.org "Defined Class Codes").
public struct ClassTriple: Sendable, Hashable, CustomStringConvertible {
    public let code: UInt8
    public let subclass: UInt8
    public let `protocol`: UInt8

    public init(_ code: UInt8, _ subclass: UInt8, _ protocol: UInt8) {
        self.code = code
        self.subclass = subclass
        self.protocol = `protocol`
    }

    /// `08:06:50`: lower-case hex, as `lsusb` and USBGuard write them.
    public var description: String { [code, subclass, `protocol`].map(Self.hex).joined(separator: ":") }

    static func hex(_ byte: UInt8) -> String {
        let text = String(byte, radix: 16)
        return text.count == 1 ? "0" + text : text
    }
}

/// The device descriptor (USB 2.0 §9.6.1), as far as classification needs it.
public struct DeviceDescriptor: Sendable, Equatable {
    public let usbVersion: UInt16
    public let deviceClass: ClassTriple
    public let vendorID: UInt16
    public let productID: UInt16
    public let deviceVersion: UInt16
    public let hasManufacturerString: Bool
    public let hasProductString: Bool
    public let hasSerialString: Bool
    public let configurationCount: Int
}

/// One alternate setting of one interface (USB 2.0 §9.6.5).
public struct InterfaceSetting: Sendable, Equatable {
    public let number: UInt8
    public let alternate: UInt8
    public let triple: ClassTriple
    public let endpointCount: UInt8
    /// Endpoint addresses and transfer types (bEndpointAddress, bmAttributes & 3), in order.
    public let endpoints: [UInt16]
}

/// An interface association (USB ECN IAD): a function spanning several interfaces.
public struct InterfaceAssociation: Sendable, Equatable {
    public let firstInterface: UInt8
    public let interfaceCount: UInt8
    public let function: ClassTriple

    public init(firstInterface: UInt8, interfaceCount: UInt8, function: ClassTriple) {
        self.firstInterface = firstInterface
        self.interfaceCount = interfaceCount
        self.function = function
    }
}

/// One configuration and every interface setting in it (USB 2.0 §9.6.3).
public struct Configuration: Sendable, Equatable {
    public let value: UInt8
    public let declaredInterfaceCount: UInt8
    public let settings: [InterfaceSetting]
    public let associations: [InterfaceAssociation]
}

/// A whole `descriptors` file, parsed.
public struct ParsedDescriptors: Sendable, Equatable {
    public let device: DeviceDescriptor
    public let configurations: [Configuration]
}

/// Why a descriptor set was refused. Any of these makes the device `block`.
public struct DescriptorError: Error, Equatable, CustomStringConvertible {
    public let message: String
    /// Byte offset where the problem was found.
    public let offset: Int

    public var description: String { "\(message) (at byte \(offset))" }
}

/// Parses the binary `descriptors` sysfs attribute: the 18-byte device descriptor followed by each
/// configuration's full descriptor set (`wTotalLength` bytes each), as the kernel stores them
/// (drivers/usb/core/sysfs.c, `read_descriptors`).
///
/// Strict by design: a descriptor with a length of 0 or 1, a length that runs past its
/// configuration or the file, a configuration whose total length disagrees with its contents, a
/// configuration count that disagrees with the device descriptor, trailing bytes, interfaces
/// counted differently than declared — every one is an error, and the caller blocks the device.
public enum DescriptorParser {
    static let deviceType: UInt8 = 1, configurationType: UInt8 = 2, interfaceType: UInt8 = 4
    static let endpointType: UInt8 = 5, associationType: UInt8 = 11

    public static func parse(_ bytes: [UInt8]) throws(DescriptorError) -> ParsedDescriptors {
        guard bytes.count >= 18 else {
            throw DescriptorError(message: "only \(bytes.count) bytes; a device descriptor alone is 18", offset: 0)
        }
        guard bytes[0] == 18, bytes[1] == deviceType else {
            throw DescriptorError(message: "the first descriptor is not an 18-byte device descriptor (length \(bytes[0]), type \(bytes[1]))", offset: 0)
        }
        let device = DeviceDescriptor(
            usbVersion: word(bytes, 2),
            deviceClass: ClassTriple(bytes[4], bytes[5], bytes[6]),
            vendorID: word(bytes, 8),
            productID: word(bytes, 10),
            deviceVersion: word(bytes, 12),
            hasManufacturerString: bytes[14] != 0,
            hasProductString: bytes[15] != 0,
            hasSerialString: bytes[16] != 0,
            configurationCount: Int(bytes[17])
        )
        guard device.configurationCount > 0 else {
            throw DescriptorError(message: "the device declares no configuration", offset: 17)
        }
        var configurations: [Configuration] = []
        var offset = 18
        while offset < bytes.count {
            let (configuration, end) = try parseConfiguration(bytes, at: offset)
            configurations.append(configuration)
            offset = end
        }
        guard configurations.count == device.configurationCount else {
            throw DescriptorError(
                message: "the device declares \(device.configurationCount) configurations but \(configurations.count) follow",
                offset: bytes.count
            )
        }
        let values = configurations.map(\.value)
        guard Set(values).count == values.count else {
            throw DescriptorError(message: "two configurations share bConfigurationValue", offset: 18)
        }
        return ParsedDescriptors(device: device, configurations: configurations)
    }

    private static func parseConfiguration(_ bytes: [UInt8], at start: Int) throws(DescriptorError) -> (Configuration, Int) {
        guard bytes.count - start >= 9 else {
            throw DescriptorError(message: "\(bytes.count - start) trailing bytes, too few for a configuration descriptor", offset: start)
        }
        guard bytes[start] == 9, bytes[start + 1] == configurationType else {
            throw DescriptorError(message: "expected a 9-byte configuration descriptor, found length \(bytes[start]) type \(bytes[start + 1])", offset: start)
        }
        let total = Int(word(bytes, start + 2))
        guard total >= 9 else {
            throw DescriptorError(message: "configuration total length \(total) is shorter than its own header", offset: start + 2)
        }
        guard start + total <= bytes.count else {
            throw DescriptorError(message: "configuration claims \(total) bytes but only \(bytes.count - start) remain (truncated)", offset: start + 2)
        }
        let end = start + total
        let declaredInterfaces = bytes[start + 4]
        let value = bytes[start + 5]
        var settings: [InterfaceSetting] = []
        var associations: [InterfaceAssociation] = []
        var pendingEndpoints: [UInt16] = []
        var current: (number: UInt8, alternate: UInt8, triple: ClassTriple, endpointCount: UInt8)?
        func closeSetting() throws(DescriptorError) {
            guard let open = current else { return }
            settings.append(InterfaceSetting(
                number: open.number, alternate: open.alternate, triple: open.triple,
                endpointCount: open.endpointCount, endpoints: pendingEndpoints
            ))
            current = nil
            pendingEndpoints = []
        }
        var offset = start + 9
        while offset < end {
            let length = Int(bytes[offset])
            guard length >= 2 else {
                throw DescriptorError(message: "a descriptor of length \(length) (every descriptor has at least 2 bytes)", offset: offset)
            }
            guard offset + length <= end else {
                throw DescriptorError(message: "a descriptor of length \(length) runs past the end of its configuration", offset: offset)
            }
            let type = bytes[offset + 1]
            switch type {
            case interfaceType:
                guard length >= 9 else { throw DescriptorError(message: "an interface descriptor of length \(length) (needs 9)", offset: offset) }
                try closeSetting()
                current = (bytes[offset + 2], bytes[offset + 3], ClassTriple(bytes[offset + 5], bytes[offset + 6], bytes[offset + 7]), bytes[offset + 4])
            case endpointType:
                guard length >= 7 else { throw DescriptorError(message: "an endpoint descriptor of length \(length) (needs 7)", offset: offset) }
                pendingEndpoints.append(UInt16(bytes[offset + 2]) << 8 | UInt16(bytes[offset + 3] & 0x03))
            case associationType:
                guard length >= 8 else { throw DescriptorError(message: "an interface association of length \(length) (needs 8)", offset: offset) }
                associations.append(InterfaceAssociation(
                    firstInterface: bytes[offset + 2], interfaceCount: bytes[offset + 3],
                    function: ClassTriple(bytes[offset + 4], bytes[offset + 5], bytes[offset + 6])
                ))
            case deviceType, configurationType:
                throw DescriptorError(message: "a descriptor of type \(type) inside a configuration", offset: offset)
            default:
                break  // class- and vendor-specific descriptors: not needed to classify
            }
            offset += length
        }
        try closeSetting()
        let interfaceNumbers = Set(settings.map(\.number))
        guard interfaceNumbers.count == Int(declaredInterfaces) else {
            throw DescriptorError(
                message: "configuration \(value) declares \(declaredInterfaces) interfaces but describes \(interfaceNumbers.count)",
                offset: start + 4
            )
        }
        var seen = Set<UInt16>()
        for setting in settings {
            guard seen.insert(UInt16(setting.number) << 8 | UInt16(setting.alternate)).inserted else {
                throw DescriptorError(message: "interface \(setting.number) alternate \(setting.alternate) is described twice", offset: start)
            }
        }
        return (Configuration(value: value, declaredInterfaceCount: declaredInterfaces, settings: settings, associations: associations), end)
    }

    static func word(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }
}
