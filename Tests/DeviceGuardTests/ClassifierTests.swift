import DeviceGuard
import HoldfastCore
import HoldfastTestSupport
import Testing

func decide(_ spec: USBDeviceSpec, policy: USBPolicy = .empty, serial: String? = nil, connectType: String? = nil) -> DeviceDecision {
    Classifier(policy: policy).decide(USBDeviceRecord(name: "1-2", sysPath: "/devices/x/1-2", descriptors: spec.descriptors, serial: serial, connectType: connectType))
}

func single(_ triple: (UInt8, UInt8, UInt8), deviceClass: (UInt8, UInt8, UInt8) = (0, 0, 0)) -> USBDeviceSpec {
    var spec = USBDeviceSpec(vendor: 0x1234, product: 0x5678, configurations: [[Setting(0, triple)]])
    spec.deviceClass = deviceClass
    return spec
}

func policy(_ json: String) throws -> USBPolicy {
    let document = try Policy.parse(Array(json.utf8))
    return try USBPolicy(section: document.sections["usb"])
}

@Suite struct DefaultPolicyTests {
    @Test(arguments: [
        ("HID keyboard", (0x03, 0x01, 0x01), Verdict.allow),
        ("hub", (0x09, 0x00, 0x00), .allow),
        ("audio", (0x01, 0x01, 0x00), .allow),
        ("video", (0x0E, 0x01, 0x00), .allow),
        ("smart card", (0x0B, 0x00, 0x00), .allow),
        ("audio/video", (0x10, 0x01, 0x00), .allow),
        ("mass storage (bulk-only)", (0x08, 0x06, 0x50), .block),
        ("mass storage (UAS)", (0x08, 0x06, 0x62), .block),
        ("still image / PTP", (0x06, 0x01, 0x01), .block),
        ("vendor-specific (MTP, ADB)", (0xFF, 0x42, 0x01), .block),
        ("CDC communications", (0x02, 0x02, 0x01), .block),
        ("CDC data", (0x0A, 0x00, 0x00), .block),
        ("wireless controller (Bluetooth)", (0xE0, 0x01, 0x01), .block),
        ("RNDIS", (0xEF, 0x04, 0x01), .block),
        ("printer", (0x07, 0x01, 0x02), .block),
        ("application specific", (0xFE, 0x01, 0x01), .block),
        ("an unknown class", (0x42, 0x00, 0x00), .block),
    ] as [(String, (UInt8, UInt8, UInt8), Verdict)])
    func decidesEachClass(_ name: String, _ triple: (UInt8, UInt8, UInt8), _ verdict: Verdict) {
        let decision = decide(single(triple))
        #expect(decision.verdict == verdict, "\(name)")
        #expect(decision.rule == "default")
    }

    @Test func aKeyboardWithACardReaderKeepsTypingAndLosesItsStorage() {
        let composite = USBDeviceSpec(vendor: 0x04F2, product: 0x0833, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (8, 6, 0x50))]])
        let decision = decide(composite)
        #expect(decision.verdict == .partial)
        #expect(decision.allowedInterfaces == [InterfaceKey(configuration: 1, number: 0)])
        #expect(decision.reason.contains("mass storage 08:06:50 not allowed"))
    }

    @Test func storageInASecondConfigurationCounts() {
        let spec = USBDeviceSpec(vendor: 1, product: 2, configurations: [[Setting(0, (3, 1, 1))], [Setting(0, (8, 6, 0x50))]])
        let decision = decide(spec)
        #expect(decision.verdict == .partial)
        #expect(decision.allowedInterfaces == [InterfaceKey(configuration: 1, number: 0)])
    }

    @Test func storageOnlyInEveryConfigurationBlocks() {
        let spec = USBDeviceSpec(vendor: 1, product: 2, configurations: [[Setting(0, (8, 6, 0x50))], [Setting(0, (8, 6, 0x62))]])
        #expect(decide(spec).verdict == .block)
    }

    @Test func uasInAnAlternateSettingBlocksThatInterface() {
        // A "HID" interface whose alternate setting 1 is UAS storage: the interface is blocked.
        let spec = USBDeviceSpec(vendor: 1, product: 2, configurations: [[Setting(0, (3, 0, 0)), Setting(0, alt: 1, (8, 6, 0x62))]])
        let decision = decide(spec)
        #expect(decision.verdict == .block)
        #expect(decision.interfaces.map(\.verdict) == [.allow, .block])
        #expect(decision.allowedInterfaces.isEmpty)
    }

    @Test func aBlockedDeviceClassBlocksEveryInterface() {
        #expect(decide(single((0x03, 0, 0), deviceClass: (0xE0, 1, 1))).verdict == .block)
        #expect(decide(single((0x03, 0, 0), deviceClass: (0xEF, 2, 1))).verdict == .allow)
        #expect(decide(single((0x09, 0, 0), deviceClass: (0x09, 0, 0))).verdict == .allow)
    }

    @Test func aBlockedFunctionBlocksTheInterfacesItSpans() {
        var spec = USBDeviceSpec(vendor: 1, product: 2, configurations: [[Setting(0, (3, 0, 0)), Setting(1, (3, 0, 0)), Setting(2, (3, 1, 1))]])
        spec.associations = [[.init(first: 0, count: 2, function: (0x02, 0x06, 0x00))]]
        let decision = decide(spec)
        #expect(decision.verdict == .partial)
        #expect(decision.allowedInterfaces == [InterfaceKey(configuration: 1, number: 2)])
    }

    @Test func aDeviceWithoutSerialIsStillClassified() {
        var spec = stick
        spec.serial = nil
        #expect(decide(spec).verdict == .block)
    }
}

@Suite struct RuleTests {
    @Test func allowsAnApprovedModelFleetWide() throws {
        let rules = try policy(#"{"usb":{"rules":[{"id":"approved-encrypted-drive","match":{"vendor":"0781","product":"5567"},"action":"allow"}]}}"#)
        let decision = decide(stick, policy: rules)
        #expect(decision.verdict == .allow)
        #expect(decision.rule == "approved-encrypted-drive")
        #expect(decide(single((8, 6, 0x50)), policy: rules).verdict == .block)
    }

    @Test func allowsOneDriveBySerial() throws {
        let rules = try policy(#"{"usb":{"rules":[{"id":"alice-drive","match":{"vendor":"0781","product":"5567","serial":"4C530001230512110413"},"action":"allow"}]}}"#)
        #expect(decide(stick, policy: rules, serial: "4C530001230512110413").verdict == .allow)
        #expect(decide(stick, policy: rules, serial: "4C530001230512110414").verdict == .block)
        #expect(decide(stick, policy: rules, serial: nil).verdict == .block)
    }

    @Test func allowsASerialLessDeviceByModelAndHash() throws {
        let hash = try #require(decide(stick).descriptorHash)
        let rules = try policy(#"{"usb":{"rules":[{"id":"lab-scope","match":{"vendor":"0781","product":"5567","hash":"\#(hash)"},"action":"allow"}]}}"#)
        #expect(decide(stick, policy: rules).verdict == .allow)
        // Same vid:pid, one more interface: another hash, no match.
        let impostor = USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50), endpoints: [(0x81, 2, 512), (0x02, 2, 512)]), Setting(1, (3, 1, 1))]])
        #expect(decide(impostor, policy: rules).rule == "default")
    }

    @Test func theHashIsStableAcrossLinkSpeeds() {
        var superSpeed = stick
        superSpeed.usbVersion = 0x0320
        superSpeed.maxPacket0 = 9
        superSpeed.superSpeedCompanions = true
        superSpeed.configurations = [[Setting(0, (8, 6, 0x50), endpoints: [(0x81, 2, 1024), (0x02, 2, 1024)])]]
        #expect(decide(superSpeed).descriptorHash == decide(stick).descriptorHash)
        #expect(decide(superSpeed).descriptorHash != decide(keyboard).descriptorHash)
    }

    @Test func blocksByClassAndFirstMatchWins() throws {
        let rules = try policy(#"""
            {"usb":{"rules":[
              {"id":"no-phones","match":{"class":["06:*:*","ff:42:*"]},"action":"block"},
              {"id":"all-0781","match":{"vendor":"0781"},"action":"allow"},
              {"id":"never-reached","match":{"vendor":"0781","product":"5567"},"action":"block"}
            ]}}
            """#)
        #expect(decide(single((0x06, 1, 1)), policy: rules).rule == "no-phones")
        #expect(decide(single((0xFF, 0x42, 1)), policy: rules).verdict == .block)
        let decision = decide(stick, policy: rules)
        #expect(decision.rule == "all-0781")
        #expect(decision.verdict == .allow)
    }

    @Test func allowsOnlyTheListedInterfaces() throws {
        let rules = try policy(#"{"usb":{"rules":[{"id":"headset-hid-only","match":{"vendor":"046d","product":"0a38"},"action":"allow-interfaces","interfaces":["03:*:*"]}]}}"#)
        let headset = USBDeviceSpec(vendor: 0x046D, product: 0x0A38, configurations: [[Setting(0, (1, 1, 0)), Setting(1, (3, 0, 0))]])
        let decision = decide(headset, policy: rules)
        #expect(decision.verdict == .partial)
        #expect(decision.allowedInterfaces == [InterfaceKey(configuration: 1, number: 1)])
    }

    @Test func matchesTheConnectTypeWhereTheKernelReportsIt() throws {
        let rules = try policy(#"{"usb":{"rules":[{"id":"internal-reader","match":{"class":"08:*:*","connect_type":"hardwired"},"action":"allow"}]}}"#)
        #expect(decide(stick, policy: rules, connectType: "hardwired").verdict == .allow)
        #expect(decide(stick, policy: rules, connectType: "hotplug").verdict == .block)
        #expect(decide(stick, policy: rules, connectType: nil).verdict == .block)
    }

    @Test(arguments: [
        (#"{"usb":{"rulez":[]}}"#, "unknown member \"rulez\""),
        (#"{"usb":{"rules":{}}}"#, "usb.rules: must be an array"),
        (#"{"usb":{"rules":[{"match":{"vendor":"0781"},"action":"allow"}]}}"#, "usb.rules[0]: needs an \"id\""),
        (#"{"usb":{"rules":[{"id":"a","match":{},"action":"allow"}]}}"#, "an empty match would match every device"),
        (#"{"usb":{"rules":[{"id":"a","match":{"vendor":"781"},"action":"allow"}]}}"#, "vendor must be 4 hex digits"),
        (#"{"usb":{"rules":[{"id":"a","match":{"vendr":"0781"},"action":"allow"}]}}"#, "unknown match condition \"vendr\""),
        (#"{"usb":{"rules":[{"id":"a","match":{"vendor":"0781"},"action":"permit"}]}}"#, "action \"permit\" is not"),
        (#"{"usb":{"rules":[{"id":"a","match":{"vendor":"0781"},"action":"allow-interfaces"}]}}"#, "allow-interfaces needs \"interfaces\""),
        (#"{"usb":{"rules":[{"id":"a","match":{"class":"8:6:50"},"action":"block"}]}}"#, "bad class pattern"),
        (#"{"usb":{"rules":[{"id":"a","match":{"hash":"abc"},"action":"allow"}]}}"#, "hash must be"),
        (#"{"usb":{"rules":[{"id":"a","match":{"connect_type":"usb-c"},"action":"allow"}]}}"#, "connect_type must be"),
        (#"{"usb":{"rules":[{"id":"a","match":{"vendor":"0781"},"action":"allow"},{"id":"a","match":{"vendor":"0782"},"action":"allow"}]}}"#, "id \"a\" is used twice"),
    ])
    func refusesBadRules(_ json: String, _ message: String) {
        let error = #expect(throws: USBPolicyError.self) { try policy(json) }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
    }
}
