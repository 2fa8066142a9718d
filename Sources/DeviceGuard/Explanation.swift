public import HoldfastCore

/// `holdfast usb explain` output: the decision for each device, as JSON and as text.
public enum Explanation {
    /// One device as the documented JSON object (`docs/usb-explain.md`).
    public static func json(_ decision: DeviceDecision) -> JSONValue {
        var object: [String: JSONValue] = [
            "path": .string(decision.record.name),
            "syspath": .string(decision.record.sysPath),
            "verdict": .string(decision.verdict.rawValue),
            "rule": .string(decision.rule),
            "reason": .string(decision.reason),
            "interfaces": .array(decision.interfaces.map { interface in
                .object([
                    "config": .int(Int64(interface.configuration)),
                    "number": .int(Int64(interface.number)),
                    "alt": .int(Int64(interface.alternate)),
                    "class": .string(ClassTriple.hex(interface.triple.code)),
                    "subclass": .string(ClassTriple.hex(interface.triple.subclass)),
                    "protocol": .string(ClassTriple.hex(interface.triple.protocol)),
                    "verdict": .string(interface.verdict.rawValue),
                ])
            }),
        ]
        if let parsed = decision.parsed {
            object["vendor"] = .string(Classifier.hex16(parsed.device.vendorID))
            object["product"] = .string(Classifier.hex16(parsed.device.productID))
            object["device_class"] = .string(parsed.device.deviceClass.description)
            object["configurations"] = .int(Int64(parsed.configurations.count))
        } else {
            // Undecodable descriptors: the vendor and product are unknown, not guessed from strings.
            object["vendor"] = .null
            object["product"] = .null
        }
        object["hash"] = decision.descriptorHash.map(JSONValue.string) ?? .null
        object["manufacturer_name"] = decision.record.manufacturer.map(JSONValue.string) ?? .null
        object["product_name"] = decision.record.product.map(JSONValue.string) ?? .null
        object["serial"] = decision.record.serial.map(JSONValue.string) ?? .null
        object["connect_type"] = decision.record.connectType.map(JSONValue.string) ?? .null
        return .object(object)
    }

    /// One device as text lines.
    public static func text(_ decision: DeviceDecision) -> [String] {
        let identity = decision.parsed.map { "\(Classifier.hex16($0.device.vendorID)):\(Classifier.hex16($0.device.productID))" } ?? "????:????"
        let names = [decision.record.manufacturer, decision.record.product].compactMap { $0 }.joined(separator: " ")
        var header = "\(decision.record.name)  \(identity)  \(decision.verdict.rawValue.uppercased())"
        if !names.isEmpty { header += "  \(Printable.escape(names))" }
        if let serial = decision.record.serial { header += "  serial \(Printable.escape(serial))" }
        var lines = [header, "    \(decision.rule == "default" ? "" : "rule ")\(decision.reason)"]
        if let hash = decision.descriptorHash { lines.append("    hash \(hash)") }
        for interface in decision.interfaces {
            lines.append("    config \(interface.configuration) interface \(interface.number) alt \(interface.alternate)  \(interface.triple)  \(interface.verdict.rawValue)  \(Classifier.className(interface.triple))")
        }
        return lines
    }
}

