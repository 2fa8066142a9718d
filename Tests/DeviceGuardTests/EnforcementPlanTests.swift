import DeviceGuard
import Foundation
import HoldfastCore
import HoldfastTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A device's sysfs state for plan tests: interfaces `NAME:1.N` with their authorization.
func deviceState(
    _ spec: USBDeviceSpec, name: String = "1-2", authorized: Bool? = true, interfaces: [Bool?] = [], rootHub: Bool = false
) -> USBDeviceState {
    let path = "/sys/devices/pci0000:00/0000:00:14.0/usb1" + (rootHub ? "" : "/" + name)
    let interfaceName = rootHub ? "1-0" : name
    return USBDeviceState(
        record: USBDeviceRecord(name: rootHub ? "usb1" : name, sysPath: path, descriptors: spec.descriptors),
        authorized: authorized,
        parentSysPath: rootHub ? nil : "/sys/devices/pci0000:00/0000:00:14.0/usb1",
        interfaces: interfaces.enumerated().map { number, authorized in
            USBInterfaceState(
                name: "\(interfaceName):1.\(number)", sysPath: path + "/\(interfaceName):1.\(number)",
                configuration: 1, number: UInt8(number), authorized: authorized
            )
        },
        interfaceAuthorizedDefault: rootHub ? "1" : nil
    )
}

@Suite struct EnforcementPlanTests {
    static let stick = USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50))]])
    static let keyboard = USBDeviceSpec(vendor: 0x046D, product: 0xC31C, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (3, 0, 0))]])
    static let composite = USBDeviceSpec(vendor: 0x04F2, product: 0x0833, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (8, 6, 0x50))]])
    static let stickPath = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2"

    func plan(_ state: USBDeviceState, policy: USBPolicy = .empty) -> (actions: [USBAction], expected: ExpectedAuthorization) {
        EnforcementPlan.actions(for: state, decision: Classifier(policy: policy).decide(state.record))
    }

    @Test func aBlockedDeviceIsDeauthorizedAsAWhole() {
        let (actions, expected) = plan(deviceState(Self.stick, interfaces: [false]))
        #expect(actions == [.authorizeDevice(sysPath: Self.stickPath, false)])
        #expect(expected == ExpectedAuthorization(device: false, interfaces: [:]))
    }

    @Test func aDeviceAlreadyOffNeedsNoWrite() {
        #expect(plan(deviceState(Self.stick, authorized: false)).actions.isEmpty)
    }

    @Test func allowedInterfacesAreAllAuthorizedBeforeAnyIsProbed() {
        let (actions, expected) = plan(deviceState(Self.keyboard, interfaces: [false, false]))
        #expect(actions == [
            .authorizeInterface(sysPath: Self.stickPath + "/1-2:1.0", name: "1-2:1.0", true),
            .authorizeInterface(sysPath: Self.stickPath + "/1-2:1.1", name: "1-2:1.1", true),
            .probe(interface: "1-2:1.0"),
            .probe(interface: "1-2:1.1"),
        ])
        #expect(expected == ExpectedAuthorization(device: true, interfaces: ["1-2:1.0": true, "1-2:1.1": true]))
    }

    @Test func aCompositeDeviceKeepsItsKeyboardAndLosesItsStorage() {
        let (actions, expected) = plan(deviceState(Self.composite, interfaces: [true, true]))
        #expect(actions == [.authorizeInterface(sysPath: Self.stickPath + "/1-2:1.1", name: "1-2:1.1", false)])
        #expect(expected.interfaces == ["1-2:1.0": true, "1-2:1.1": false])
    }

    @Test func aDeauthorizedDeviceThatIsNowAllowedComesBack() {
        #expect(plan(deviceState(Self.keyboard, authorized: false)).actions == [.authorizeDevice(sysPath: Self.stickPath, true)])
    }

    @Test func anInterfaceTheDescriptorsDoNotDescribeStaysOff() {
        // The kernel shows interface 1; the descriptors describe interface 0 only.
        let (actions, expected) = plan(deviceState(single((3, 1, 1)), interfaces: [true, true]))
        #expect(actions == [.authorizeInterface(sysPath: Self.stickPath + "/1-2:1.1", name: "1-2:1.1", false)])
        #expect(expected.interfaces["1-2:1.1"] == false)
    }

    @Test func aRootHubIsNeverTurnedOffWhateverARuleSays() throws {
        let hub = UmockdevWriter.rootHub
        let blockAll = try policy(#"{"usb": {"rules": [{"id": "no-intel", "match": {"vendor": "1d6b"}, "action": "block"}]}}"#)
        let state = deviceState(hub, authorized: true, interfaces: [false], rootHub: true)
        let (actions, expected) = plan(state, policy: blockAll)
        #expect(actions == [
            .authorizeInterface(sysPath: "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-0:1.0", name: "1-0:1.0", true),
            .probe(interface: "1-0:1.0"),
        ])
        #expect(expected.device)
        #expect(EnforcementPlan.hubDefault(for: state) == .interfaceDefault(hubSysPath: "/sys/devices/pci0000:00/0000:00:14.0/usb1", false))
    }

    func withDrivers(_ state: USBDeviceState, _ drivers: [String?], triples: [ClassTriple?] = []) -> USBDeviceState {
        USBDeviceState(
            record: state.record, authorized: state.authorized, parentSysPath: state.parentSysPath,
            interfaces: state.interfaces.enumerated().map { index, interface in
                USBInterfaceState(
                    name: interface.name, sysPath: interface.sysPath, configuration: interface.configuration, number: interface.number,
                    authorized: interface.authorized, triple: index < triples.count ? triples[index] : nil, driver: drivers[index]
                )
            }
        )
    }

    @Test(arguments: [
        ("usbhid", false), ("usbkbd", false), ("usbfs", false), ("usb-storage", true), ("uas", true), ("ax88179_178a", true), ("btusb", true),
    ])
    func anHIDInterfaceKeepsOnlyAnHIDDriver(_ driver: String, _ refused: Bool) {
        let state = withDrivers(deviceState(single((3, 0, 0)), interfaces: [true]), [driver])
        let decision = Classifier(policy: .empty).decide(state.record)
        #expect((EnforcementPlan.refusedDriver(state.interfaces[0], decision: decision) == driver) == refused)
        let (actions, expected) = EnforcementPlan.actions(for: state, decision: decision)
        #expect(actions == (refused ? [.authorizeInterface(sysPath: Self.stickPath + "/1-2:1.0", name: "1-2:1.0", false)] : []))
        #expect(expected.interfaces["1-2:1.0"] == !refused)
    }

    @Test func aRefusedInterfaceStaysOffOnceItsDriverIsGone() {
        // The udev rule cut it off first: no driver link any more, only the bind event knew.
        let state = withDrivers(deviceState(single((3, 0, 0)), interfaces: [false]), [nil])
        let decision = Classifier(policy: .empty).decide(state.record)
        let fromEvent = EnforcementContext(boundDrivers: ["1-2:1.0": "usb-storage"])
        #expect(EnforcementPlan.actions(for: state, decision: decision, context: fromEvent).actions.isEmpty)
        let sticky = EnforcementContext(refused: ["1-2:1.0"])
        #expect(EnforcementPlan.actions(for: state, decision: decision, context: sticky).actions.isEmpty)
        #expect(EnforcementPlan.actions(for: state, decision: decision, context: sticky).expected.interfaces == ["1-2:1.0": false])
        // Without either, it would be turned on again (and usb-storage would bind again).
        #expect(!EnforcementPlan.actions(for: state, decision: decision).actions.isEmpty)
    }

    @Test func anAllowInterfacesRuleAllowsItsClassesWithTheirDriversOnly() throws {
        let hidOnly = try policy(#"{"usb": {"rules": [{"id": "hid", "match": {"vendor": "1234"}, "action": "allow-interfaces", "interfaces": ["03:*:*"]}]}}"#)
        let state = withDrivers(deviceState(single((3, 0, 0)), interfaces: [true]), ["usb-storage"])
        let decision = Classifier(policy: hidOnly).decide(state.record)
        #expect(decision.checksDrivers)
        #expect(EnforcementPlan.refusedDriver(state.interfaces[0], decision: decision) == "usb-storage")
        let storage = try policy(#"{"usb": {"rules": [{"id": "disks", "match": {"vendor": "1234"}, "action": "allow-interfaces", "interfaces": ["08:*:*"]}]}}"#)
        let disk = withDrivers(deviceState(single((8, 6, 0x50)), interfaces: [true]), ["uas"])
        #expect(EnforcementPlan.refusedDriver(disk.interfaces[0], decision: Classifier(policy: storage).decide(disk.record)) == nil)
    }

    @Test func aDeviceARuleAllowsMayHaveAnyDriver() throws {
        let allowDisguised = try policy(#"{"usb": {"rules": [{"id": "lab", "match": {"vendor": "1234"}, "action": "allow"}]}}"#)
        let state = withDrivers(deviceState(single((3, 0, 0)), interfaces: [true]), ["usb-storage"])
        let decision = Classifier(policy: allowDisguised).decide(state.record)
        #expect(EnforcementPlan.refusedDriver(state.interfaces[0], decision: decision) == nil)
        #expect(EnforcementPlan.actions(for: state, decision: decision).actions.isEmpty)
    }

    @Test func undecodableDescriptorsKeepTheKernelsInputInterfacesOnly() {
        var broken = Self.composite.descriptors
        broken[18 + 4] = 3  // declares three interfaces, describes two
        let base = deviceState(Self.stick, interfaces: [false, true])
        let state = withDrivers(
            USBDeviceState(record: USBDeviceRecord(name: "1-2", sysPath: Self.stickPath, descriptors: broken), authorized: true, parentSysPath: base.parentSysPath, interfaces: base.interfaces),
            [nil, "usb-storage"], triples: [ClassTriple(3, 1, 1), ClassTriple(8, 6, 0x50)]
        )
        let decision = Classifier(policy: .empty).decide(state.record)
        #expect(decision.verdict == .block)
        #expect(decision.rule == "malformed")
        let (actions, expected) = EnforcementPlan.actions(for: state, decision: decision)
        #expect(actions == [
            .authorizeInterface(sysPath: Self.stickPath + "/1-2:1.0", name: "1-2:1.0", true),
            .authorizeInterface(sysPath: Self.stickPath + "/1-2:1.1", name: "1-2:1.1", false),
            .probe(interface: "1-2:1.0"),
        ])
        #expect(expected.device)
        // Nothing to keep: the whole device goes.
        let stick = USBDeviceState(
            record: USBDeviceRecord(name: "1-2", sysPath: Self.stickPath, descriptors: Array(Self.stick.descriptors.dropLast(2))),
            authorized: true, parentSysPath: base.parentSysPath,
            interfaces: [USBInterfaceState(name: "1-2:1.0", sysPath: Self.stickPath + "/1-2:1.0", configuration: 1, number: 0, authorized: false, triple: ClassTriple(8, 6, 0x50))]
        )
        #expect(EnforcementPlan.actions(for: stick, decision: Classifier(policy: .empty).decide(stick.record)).actions == [.authorizeDevice(sysPath: Self.stickPath, false)])
        // A rule that might be meant for it: all of it goes, input too.
        let restricted = EnforcementContext(malformedKeepsInput: false)
        #expect(EnforcementPlan.actions(for: state, decision: decision, context: restricted).actions == [.authorizeDevice(sysPath: Self.stickPath, false)])
        // The kernel has not made its interfaces yet: wait for them rather than kill a keyboard.
        let early = USBDeviceState(record: state.record, authorized: true, parentSysPath: base.parentSysPath)
        #expect(EnforcementPlan.actions(for: early, decision: decision).actions.isEmpty)
    }

    @Test func aRuleThatMightBeMeantForABrokenDeviceTakesAllOfIt() throws {
        var broken = Self.keyboard.descriptors
        broken[18 + 4] = 1
        let interfaces = [USBInterfaceState(name: "1-2:1.0", sysPath: Self.stickPath + "/1-2:1.0", configuration: 1, number: 0, authorized: true, triple: ClassTriple(3, 1, 1))]
        let state = USBDeviceState(
            record: USBDeviceRecord(name: "1-2", sysPath: Self.stickPath, descriptors: broken, serial: "K1"), authorized: true,
            parentSysPath: "/sys/x", interfaces: interfaces, kernelVendor: 0x046D, kernelProduct: 0xC31C
        )
        func restricts(_ json: String) throws -> Bool { Classifier(policy: try policy(json)).rulesMightRestrict(state) }
        #expect(try restricts(#"{"usb": {"rules": [{"id": "kiosk", "match": {"class": "03:*:*"}, "action": "block"}]}}"#))
        #expect(try restricts(#"{"usb": {"rules": [{"id": "m", "match": {"vendor": "046d", "product": "c31c"}, "action": "block"}]}}"#))
        #expect(try restricts(#"{"usb": {"rules": [{"id": "h", "match": {"hash": "sha256:\#(String(repeating: "0", count: 64))"}, "action": "block"}]}}"#))
        #expect(try !restricts(#"{"usb": {"rules": [{"id": "other", "match": {"vendor": "0781"}, "action": "block"}]}}"#))
        #expect(try !restricts(#"{"usb": {"rules": [{"id": "s", "match": {"serial": "OTHER"}, "action": "block"}]}}"#))
        #expect(try !restricts(#"{"usb": {"rules": [{"id": "a", "match": {"vendor": "046d"}, "action": "allow"}]}}"#))
    }

    @Test func differencesSayWhoLetMoreThrough() {
        let expected = ExpectedAuthorization(device: true, interfaces: ["1-2:1.0": true, "1-2:1.1": false])
        let changed = deviceState(Self.composite, interfaces: [false, true])
        let differences = expected.differences(in: changed)
        #expect(differences.map(\.description) == ["1-2:1.0 authorized=0, expected 1", "1-2:1.1 authorized=1, expected 0"])
        #expect(differences.map(\.loosens) == [false, true])
        // A new interface is not a difference; a device turned on behind our back is.
        #expect(expected.differences(in: deviceState(Self.composite, interfaces: [true, false, true])).isEmpty)
        let off = ExpectedAuthorization(device: false, interfaces: [:])
        #expect(off.differences(in: deviceState(Self.stick, interfaces: [false])).map(\.description) == ["1-2 authorized=1, expected 0"])
    }

    @Test(arguments: [
        ("1-2:1.0", UInt8(1), UInt8(0)),
        ("3-1.4.2:2.13", 2, 13),
        ("1-0:1.0", 1, 0),
    ])
    func interfaceNamesGiveTheirConfigurationAndNumber(_ name: String, _ configuration: UInt8, _ number: UInt8) {
        let parsed = USBInterfaceState.parseName(name)
        #expect(parsed?.configuration == configuration)
        #expect(parsed?.number == number)
    }

    @Test(arguments: ["1-2", "1-2:1", "1-2:x.0", "1-2:1.300"])
    func otherNamesAreNotInterfaces(_ name: String) {
        #expect(USBInterfaceState.parseName(name) == nil)
    }
}

@Suite struct USBExceptionTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    func exception(serial: String? = nil, hash: String? = nil, seconds: Double = 3_600) -> USBException {
        USBException(
            id: "a1b2c3d4", vendor: 0x0781, product: 0x5567, serial: serial, hash: hash,
            created: Self.now, until: Self.now + seconds, reason: "TICKET-1", grantedBy: "uid 0 (root)"
        )
    }

    func record(serial: String?) -> USBDeviceRecord {
        USBDeviceRecord(name: "1-2", sysPath: "/sys/x/1-2", descriptors: EnforcementPlanTests.stick.descriptors, serial: serial)
    }

    @Test func aLockdownKeepsOnlyHIDAndHubsAndSuspendsExceptions() {
        let classifier = Classifier(policy: .empty)
        let stick = classifier.decide(record(serial: "S1"), exceptions: [exception()], now: Self.now + 10, lockdown: true)
        #expect(stick.verdict == .block)
        #expect(stick.rule == "lockdown")
        #expect(stick.exception == nil)
        let keyboard = USBDeviceRecord(name: "1-3", sysPath: "/sys/x/1-3", descriptors: single((0x03, 0x01, 0x01)).descriptors)
        #expect(classifier.decide(keyboard, lockdown: true).verdict == .allow)
        // Audio is allowed by default, not under a lockdown.
        let headset = USBDeviceRecord(name: "1-4", sysPath: "/sys/x/1-4", descriptors: single((0x01, 0x01, 0x00)).descriptors)
        #expect(classifier.decide(headset).verdict == .allow)
        #expect(classifier.decide(headset, lockdown: true).verdict == .block)
        // A keyboard with a card reader keeps its keyboard.
        let combo = USBDeviceSpec(vendor: 0x1234, product: 0x9999, configurations: [[Setting(0, (0x03, 0x01, 0x01)), Setting(1, (0x08, 0x06, 0x50))]])
        let decision = classifier.decide(USBDeviceRecord(name: "1-5", sysPath: "/sys/x/1-5", descriptors: combo.descriptors), lockdown: true)
        #expect(decision.verdict == .partial)
        #expect(decision.interfaces.map(\.verdict) == [.allow, .block])
    }

    @Test func anActiveExceptionAllowsEveryInterface() {
        let decision = Classifier(policy: .empty).decide(record(serial: "S1"), exceptions: [exception()], now: Self.now + 10)
        #expect(decision.verdict == .allow)
        #expect(decision.rule == "exception:a1b2c3d4")
        #expect(decision.exception?.reason == "TICKET-1")
        #expect(decision.reason.contains("TICKET-1"))
    }

    @Test func anExceptionEndsAtItsUntilExactly() {
        let decision = Classifier(policy: .empty).decide(record(serial: "S1"), exceptions: [exception()], now: Self.now + 3_600)
        #expect(decision.verdict == .block)
        #expect(decision.rule == "default")
    }

    @Test func serialAndHashNarrowIt() throws {
        let classifier = Classifier(policy: .empty)
        let hash = try #require(classifier.decide(record(serial: "S1")).descriptorHash)
        #expect(classifier.decide(record(serial: "S2"), exceptions: [exception(serial: "S1")], now: Self.now).verdict == .block)
        #expect(classifier.decide(record(serial: nil), exceptions: [exception(serial: "S1")], now: Self.now).verdict == .block)
        #expect(classifier.decide(record(serial: "S1"), exceptions: [exception(serial: "S1", hash: hash)], now: Self.now).verdict == .allow)
        let other = "sha256:" + String(repeating: "0", count: 64)
        #expect(classifier.decide(record(serial: "S1"), exceptions: [exception(serial: "S1", hash: other)], now: Self.now).verdict == .block)
    }

    @Test func noExceptionAllowsDescriptorsThatDoNotParse() {
        let broken = USBDeviceRecord(name: "1-2", sysPath: "/sys/x/1-2", descriptors: Array(EnforcementPlanTests.stick.descriptors.dropLast(3)))
        let decision = Classifier(policy: .empty).decide(broken, exceptions: [exception()], now: Self.now)
        #expect(decision.verdict == .block)
        #expect(decision.rule == "malformed")
    }

    @Test(arguments: [
        (#"{"id":"x","vendor":"0781","product":"5567","created":1800000000,"until":1e300,"reason":"r","granted_by":"g"}"#, "a far future"),
        (#"{"id":"x","vendor":"0781","product":"5567","created":1800000000,"until":1800000000,"reason":"r","granted_by":"g"}"#, "no span"),
        (#"{"id":"x","vendor":"0781","product":"5567","created":1800000000,"until":1799999000,"reason":"r","granted_by":"g"}"#, "ends before it starts"),
        (#"{"id":"x","vendor":"0781","product":"5567","created":1800000000,"until":1803000000,"reason":"r","granted_by":"g"}"#, "longer than 30 days"),
        (#"{"id":"x","vendor":"+781","product":"5567","created":1800000000,"until":1800003600,"reason":"r","granted_by":"g"}"#, "a signed vendor"),
    ])
    func storedExceptionsThatNoPolicyCouldGrantAreRefused(_ json: String, _ what: String) {
        #expect(throws: DecodingError.self, "\(what)") { try JSONDecoder().decode(USBException.self, from: Data(json.utf8)) }
    }

    @Test func itRoundTripsThroughItsStoredForm() throws {
        let original = exception(serial: "S1", hash: "sha256:" + String(repeating: "a", count: 64))
        let bytes = try JSONEncoder().encode(original)
        #expect(try JSONDecoder().decode(USBException.self, from: bytes) == original)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains(#""vendor":"0781""#))
        #expect(text.contains(#""granted_by":"uid 0 (root)""#))
    }

    @Test(arguments: [
        ("1-2", USBExceptionTarget.busPath("1-2")),
        ("3-1.4.2", .busPath("3-1.4.2")),
        ("0781:5567", .model(vendor: 0x0781, product: 0x5567, serial: nil)),
        ("0781:5567:4C53000123", .model(vendor: 0x0781, product: 0x5567, serial: "4C53000123")),
        ("0781:5567:A:B", .model(vendor: 0x0781, product: 0x5567, serial: "A:B")),
    ])
    func targetsParse(_ text: String, _ target: USBExceptionTarget) {
        #expect(USBExceptionTarget(text) == target)
    }

    @Test(arguments: ["", "usb1", "1-", "-2", "1-2.", "1-2..3", "0781", "781:5567", "+781:5567", "0781:+567", "0781:5567:", "zzzz:5567", "1-2:1.0", "/sys/bus/usb/devices/1-2"])
    func otherTargetsAreRefused(_ text: String) {
        #expect(USBExceptionTarget(text) == nil)
    }
}

@Suite struct USBPolicyModeTests {
    @Test func theDefaultsEnforceAndAllowAWorkingDay() throws {
        let usb = try policy("{}")
        #expect(usb.mode == .enforce)
        #expect(usb.maximumExceptionSeconds == 8 * 3_600)
    }

    @Test(arguments: [
        (#"{"usb": {"mode": "audit-only"}}"#, USBMode.auditOnly, Int64(8 * 3_600)),
        (#"{"usb": {"mode": "enforce", "max_exception": "2h"}}"#, .enforce, 7_200),
        (#"{"usb": {"max_exception": "0"}}"#, .enforce, 0),
        (#"{"usb": {"max_exception": "30d"}}"#, .enforce, 30 * 86_400),
    ])
    func modeAndMaximumParse(_ json: String, _ mode: USBMode, _ maximum: Int64) throws {
        let usb = try policy(json)
        #expect(usb.mode == mode)
        #expect(usb.maximumExceptionSeconds == maximum)
    }

    @Test(arguments: [
        (#"{"usb": {"mode": "block-everything"}}"#, "usb.mode: must be \"enforce\" or \"audit-only\""),
        (#"{"usb": {"mode": true}}"#, "usb.mode: must be \"enforce\" or \"audit-only\""),
        (#"{"usb": {"max_exception": "31d"}}"#, "usb.max_exception: must be a duration up to 30d, e.g. \"8h\", or \"0\" to refuse local exceptions"),
        (#"{"usb": {"max_exception": "forever"}}"#, "usb.max_exception: must be a duration up to 30d, e.g. \"8h\", or \"0\" to refuse local exceptions"),
        (#"{"usb": {"max_exception": 3600}}"#, "usb.max_exception: must be a duration up to 30d, e.g. \"8h\", or \"0\" to refuse local exceptions"),
        (#"{"usb": {"default": "allow"}}"#, "usb: unknown member \"default\" (known: mode, max_exception, rules)"),
        (#"{"usb": {"rules": [{"id": "all", "match": {"class": []}, "action": "allow"}]}}"#, "usb.rules[0] (all): class is an empty list; name at least one class pattern"),
        (#"{"usb": {"rules": [{"id": "v", "match": {"vendor": "+781"}, "action": "allow"}]}}"#, "usb.rules[0] (v): vendor must be 4 hex digits, e.g. \"0781\""),
        (#"{"usb": {"rules": [{"id": "c", "match": {"class": "+8:*:*"}, "action": "block"}]}}"#, "usb.rules[0] (c): class has a bad class pattern (write hex like \"08:06:50\" or \"08:*:*\")"),
    ])
    func badValuesAreRefusedWithTheReason(_ json: String, _ message: String) throws {
        #expect(throws: USBPolicyError(message: message)) { try policy(json) }
    }
}

@Suite struct InterfaceMarksTests {
    @Test func marksAreMadeClearedAndResetAndOnlyForInterfaceNames() throws {
        let directory = TemporaryDirectory()
        let marks = InterfaceMarks(directory: directory.file("usb-allowed"))
        try marks.reset()
        marks.set("1-2:1.0", true)
        marks.set("../escape", true)
        marks.set("1-2", true)
        #expect(marks.isMarked("1-2:1.0"))
        #expect(!FileManager.default.fileExists(atPath: directory.file("escape")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: marks.directory) == ["1-2:1.0"])
        marks.set("1-2:1.0", false)
        #expect(!marks.isMarked("1-2:1.0"))
        marks.set("3-1.4:2.1", true)
        try marks.reset()
        #expect(try FileManager.default.contentsOfDirectory(atPath: marks.directory).isEmpty)
        chmod(marks.directory, 0o777)
        #expect(throws: DeviceGuardError.self) { try marks.reset() }
    }
}
