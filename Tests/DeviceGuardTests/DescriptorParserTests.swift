import DeviceGuard
import HoldfastTestSupport
import Testing

typealias Setting = USBDeviceSpec.Setting

let keyboard = USBDeviceSpec(vendor: 0x05F3, product: 0x0007, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (3, 0, 0))]])
let stick = USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50), endpoints: [(0x81, 2, 512), (0x02, 2, 512)])]])

@Suite struct DescriptorParserTests {
    @Test func parsesDeviceConfigurationsSettingsAndAssociations() throws {
        var spec = USBDeviceSpec(vendor: 0x5986, product: 0x0706, configurations: [[
            Setting(0, (0x0E, 1, 0)), Setting(1, (0x0E, 2, 0), endpoints: []), Setting(1, alt: 1, (0x0E, 2, 0), endpoints: [(0x82, 5, 1024)]),
        ]])
        spec.deviceClass = (0xEF, 2, 1)
        spec.associations = [[.init(first: 0, count: 2, function: (0x0E, 3, 0))]]
        let parsed = try DescriptorParser.parse(spec.descriptors)
        #expect(parsed.device.vendorID == 0x5986)
        #expect(parsed.device.productID == 0x0706)
        #expect(parsed.device.deviceClass == ClassTriple(0xEF, 2, 1))
        #expect(parsed.configurations.count == 1)
        #expect(parsed.configurations[0].settings.map(\.alternate) == [0, 0, 1])
        #expect(parsed.configurations[0].settings[2].endpoints == [0x8201])
        #expect(parsed.configurations[0].associations == [InterfaceAssociation(firstInterface: 0, interfaceCount: 2, function: ClassTriple(0x0E, 3, 0))])
    }

    @Test func parsesEveryConfiguration() throws {
        let spec = USBDeviceSpec(vendor: 1, product: 2, configurations: [[Setting(0, (3, 1, 1))], [Setting(0, (8, 6, 0x50))]])
        let parsed = try DescriptorParser.parse(spec.descriptors)
        #expect(parsed.configurations.map(\.value) == [1, 2])
        #expect(parsed.configurations[1].settings[0].triple == ClassTriple(8, 6, 0x50))
    }

    /// Broken descriptor sets, each with the reason it must give.
    static let broken: [(String, [UInt8], String)] = {
        let good = stick.descriptors
        var cases: [(String, [UInt8], String)] = []
        cases.append(("empty", [], "only 0 bytes"))
        cases.append(("device descriptor cut short", Array(good.prefix(10)), "only 10 bytes"))
        cases.append(("not a device descriptor first", [9] + good.dropFirst(), "not an 18-byte device descriptor"))
        cases.append(("no configuration", Array(good.prefix(18)), "declares 1 configurations but 0 follow"))
        cases.append(("truncated configuration", Array(good.dropLast(5)), "truncated"))
        var zero = good
        zero[27] = 0  // the interface descriptor's bLength
        cases.append(("zero length", zero, "length 0"))
        var overlong = good
        overlong[27] = 200
        cases.append(("overlong descriptor", overlong, "runs past the end of its configuration"))
        var totalTooShort = good
        totalTooShort[20] = 5
        cases.append(("total length shorter than header", totalTooShort, "shorter than its own header"))
        cases.append(("trailing bytes", good + [1, 2, 3], "trailing bytes"))
        var count = good
        count[17] = 2
        cases.append(("configuration count disagrees", count, "declares 2 configurations but 1 follow"))
        var interfaces = good
        interfaces[22] = 2
        cases.append(("interface count disagrees", interfaces, "declares 2 interfaces but describes 1"))
        var nested = good
        nested[28] = 2  // the interface descriptor's type becomes "configuration"
        cases.append(("configuration inside a configuration", nested, "inside a configuration"))
        var shortInterface = good
        shortInterface[27] = 5
        cases.append(("short interface descriptor", shortInterface, "interface descriptor of length 5"))
        let doubled = USBDeviceSpec(vendor: 1, product: 2, configurations: [[Setting(0, (3, 0, 0)), Setting(0, (3, 0, 0))]])
        cases.append(("same setting twice", doubled.descriptors, "described twice"))
        let twoConfigs = USBDeviceSpec(vendor: 1, product: 2, configurations: [[Setting(0, (3, 0, 0))], [Setting(0, (3, 0, 0))]])
        var sameValue = twoConfigs.descriptors
        let secondConfig = 18 + Int(sameValue[20]) + Int(sameValue[21]) << 8
        sameValue[secondConfig + 5] = 1
        cases.append(("two configurations with one value", sameValue, "share bConfigurationValue"))
        return cases
    }()

    @Test(arguments: broken)
    func refusesBrokenDescriptorsWithAReason(_ name: String, _ bytes: [UInt8], _ reason: String) {
        let error = #expect(throws: DescriptorError.self, "\(name)") { try DescriptorParser.parse(bytes) }
        #expect(error?.message.contains(reason) == true, "\(name): \(error?.message ?? "")")
    }

    @Test(arguments: broken)
    func blocksBrokenDescriptors(_ name: String, _ bytes: [UInt8], _ reason: String) {
        let decision = Classifier(policy: .empty).decide(USBDeviceRecord(name: "1-2", sysPath: "/x", descriptors: bytes))
        #expect(decision.verdict == .block, "\(name)")
        #expect(decision.rule == "malformed")
        #expect(decision.reason.hasPrefix("descriptors refused: "))
    }

    @Test func survivesMutatedDescriptorsWithAFixedSeed() {
        // 20,000 mutations (byte flips, truncations, insertions) of real-shaped descriptor sets:
        // no crash, and whatever fails to parse is blocked.
        var generator = SplitMix64(seed: 0xDE5C)
        let seeds = [stick.descriptors, keyboard.descriptors, USBDeviceSpec(vendor: 1, product: 2, configurations: [[Setting(0, (3, 1, 1))], [Setting(0, (8, 6, 0x62)), Setting(0, alt: 1, (8, 6, 0x50))]]).descriptors]
        let classifier = Classifier(policy: .empty)
        var parsedCount = 0
        for round in 0..<20_000 {
            var bytes = seeds[round % seeds.count]
            switch UInt8.random(in: 0...3, using: &generator) {
            case 0: bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
            case 1: bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &generator)))
            case 2: bytes.insert(UInt8.random(in: 0...255, using: &generator), at: Int.random(in: 0...bytes.count, using: &generator))
            default:
                for _ in 0..<4 { bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8(1 << Int.random(in: 0..<8, using: &generator)) }
            }
            let decision = classifier.decide(USBDeviceRecord(name: "x", sysPath: "/x", descriptors: bytes))
            if decision.parsed == nil {
                #expect(decision.verdict == .block)
            } else {
                parsedCount += 1
            }
        }
        #expect(parsedCount > 0)  // some mutations stay well-formed; those are classified normally
    }
}

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
