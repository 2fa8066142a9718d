import Foundation
import HoldfastTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// holdfastd enforcing USB for real: real libudev and its monitor over a umockdev bus, the kernel's
/// side emulated by the harness (`Tests/Harness/usb_testbed.py` says what and why), the CLI over the
/// control socket, the journal read back. The udev rule is applied by udev's own rules engine.
@Suite(.serialized, .enabled(if: USBTestbed.available && getuid() == 0, "needs root, umockdev and python3-gi"))
struct USBEnforcementTests {
    typealias Setting = USBDeviceSpec.Setting

    static let stick: USBDeviceSpec = {
        var spec = USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50), endpoints: [(0x81, 2, 512), (0x02, 2, 512)])]])
        spec.manufacturer = "SanDisk"
        spec.productName = "Cruzer Blade"
        spec.serial = "4C530001230512110413"
        return spec
    }()
    static let keyboard = USBDeviceSpec(vendor: 0x046D, product: 0xC31C, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (3, 0, 0))]])
    static let securityKey = USBDeviceSpec(vendor: 0x1050, product: 0x0407, configurations: [[Setting(0, (3, 0, 0))]])
    static let headset = USBDeviceSpec(vendor: 0x046D, product: 0x0A38, configurations: [[
        Setting(0, (1, 1, 0), endpoints: []), Setting(1, (1, 2, 0), endpoints: []), Setting(1, alt: 1, (1, 2, 0), endpoints: [(0x01, 1, 192)]),
        Setting(2, (3, 0, 0)),
    ]])
    static let hub: USBDeviceSpec = {
        var spec = USBDeviceSpec(vendor: 0x2109, product: 0x2817, configurations: [[Setting(0, (9, 0, 0))]])
        spec.deviceClass = (9, 0, 1)
        return spec
    }()
    static let camera = USBDeviceSpec(vendor: 0x046D, product: 0x085C, configurations: [[Setting(0, (0x0E, 1, 0)), Setting(1, (0x0E, 2, 0), endpoints: [])]])
    static let compositeKeyboard: USBDeviceSpec = {
        var spec = USBDeviceSpec(vendor: 0x04F2, product: 0x0833, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (8, 6, 0x50))]])
        spec.productName = "Keyboard with card reader"
        return spec
    }()

    static let hub1 = "/sys/devices/pci0000:00/0000:00:14.0/usb1"

    static func path(_ port: String, bus: Int = 1) -> String { "/sys" + UmockdevWriter.path(of: port, bus: bus) }

    /// The description of devices at ports, without the root hub (that is plugged first).
    static func devices(_ entries: [(String, USBDeviceSpec)], bus: Int = 1) -> String {
        let text = UmockdevWriter.description(entries.map { UmockdevWriter.Entry(port: $0.0, spec: $0.1, connectType: "hotplug") }, bus: bus)
        return text.components(separatedBy: "\n\n").dropFirst().joined(separator: "\n\n")
    }

    static func rootHub(bus: Int = 1) -> String {
        UmockdevWriter.description([], bus: bus)
    }

    /// A bus with root hub 1, and an agent started on it.
    func running(policy: String = "{}", rescan: String = "1h", before: String? = nil) throws -> (USBTestbed, EnforcingAgent) {
        let bus = try USBTestbed()
        try bus.add(Self.rootHub())
        if let before { try bus.add(before) }
        let agent = try EnforcingAgent(bus: bus, policy: policy, rescan: rescan)
        try agent.start()
        return (bus, agent)
    }

    func authorized(_ bus: USBTestbed, _ path: String) throws -> String? { try bus.attribute(path, "authorized") }

    // MARK: Hot-plug

    @Test func aStickIsDeauthorizedByItsOwnAddEventAndItsInterfaceNeverComesOn() throws {
        let (bus, agent) = try running()
        #expect(try bus.attribute(Self.hub1, "interface_authorized_default") == "0")
        try bus.add(Self.devices([("2", Self.stick)]))
        let stick = Self.path("2")
        // The rescan interval is an hour: only the add event can have done this.
        #expect(try bus.waitUntil { try authorized(bus, stick) == "0" })
        let history = try bus.state().history
        let interfaceValues = history.filter { $0.path == stick + "/1-2:1.0" }.map(\.value)
        #expect(interfaceValues == ["0"], "the storage interface was created off and never authorized")
        #expect(try !bus.state().probes.contains("1-2:1.0"))
        let decision = try #require(try agent.waitForEvent("usb.decision") { details($0)["path"] as? String == "1-2" })
        #expect(details(decision)["verdict"] as? String == "block")
        #expect(details(decision)["rule"] as? String == "default")
        #expect(details(decision)["vendor"] as? String == "0781")
        #expect(details(decision)["trigger"] as? String == "add")
        #expect(details(decision)["actions"] as? [String] == ["1-2 authorized=0"])
        #expect(decision["class_uid"] as? Int == 1010)
        #expect(decision["severity"] as? String == "Medium")
        let device = try #require(try agent.devices().byPath["1-2"])
        #expect(device["verdict"] as? String == "block")
        #expect(device["authorized"] as? Bool == false)
    }

    @Test func keyboardsSecurityKeysHeadsetsAndADockTreeKeepWorking() throws {
        let (bus, agent) = try running()
        try bus.add(Self.devices([
            ("1", Self.keyboard), ("2", Self.securityKey), ("3", Self.headset),
            ("4", Self.hub), ("4.1", Self.camera), ("4.2", Self.keyboard), ("4.3", Self.hub), ("4.3.1", Self.securityKey),
        ]))
        let interfaces = [
            "1-1:1.0", "1-1:1.1", "1-2:1.0", "1-3:1.0", "1-3:1.1", "1-3:1.2",
            "1-4:1.0", "1-4.1:1.0", "1-4.1:1.1", "1-4.2:1.0", "1-4.2:1.1", "1-4.3:1.0", "1-4.3.1:1.0",
        ]
        func bound(_ nodes: [String: USBTestbed.Node]) -> Set<String> {
            Set(nodes.filter { $0.value.isInterface && $0.value.bound }.map { String($0.key.split(separator: "/").last ?? "") })
        }
        #expect(try bus.waitUntil { bound(try bus.state().nodes).isSuperset(of: interfaces) })
        let nodes = try bus.state().nodes
        for name in interfaces {
            let device = String(name[..<(name.firstIndex(of: ":") ?? name.endIndex)])
            let port = String(device.dropFirst(2))
            let node = nodes[Self.path(port) + "/" + name]
            #expect(node?.authorized == "1", "\(name)")
            #expect(node?.bound == true, "\(name) has a driver")
        }
        for port in ["1", "2", "3", "4", "4.1", "4.2", "4.3", "4.3.1"] {
            #expect(nodes[Self.path(port)]?.authorized == "1", "\(port)")
        }
        let verdicts = try agent.devices().byPath.mapValues { $0["verdict"] as? String }
        #expect(verdicts.values.allSatisfy { $0 == "allow" }, "\(verdicts)")
        #expect(verdicts.count == 9)
    }

    @Test func everyRootHubEndsWithNewInterfacesOff() throws {
        let bus = try USBTestbed()
        try bus.add(Self.rootHub(bus: 1))
        try bus.add(UmockdevWriter.description([], bus: 2, controller: "0000:00:14.0"))
        let agent = try EnforcingAgent(bus: bus)
        try agent.start()
        // A controller that appears later (a dock with its own xHCI) is hardened too.
        try bus.add(UmockdevWriter.description([], bus: 3, controller: "0000:3c:00.0"))
        let hubs = ["/sys/devices/pci0000:00/0000:00:14.0/usb1", "/sys/devices/pci0000:00/0000:00:14.0/usb2", "/sys/devices/pci0000:00/0000:3c:00.0/usb3"]
        #expect(try bus.waitUntil { try hubs.allSatisfy { try bus.attribute($0, "interface_authorized_default") == "0" } })
        #expect(try agent.events("usb.hub_default").count == 3)
        for hub in hubs { #expect(try authorized(bus, hub) == "1", "a root hub is never deauthorized") }
    }

    @Test func aCompositeKeyboardKeepsItsKeysAndLosesItsCardReader() throws {
        let (bus, agent) = try running()
        try bus.add(Self.devices([("5", Self.compositeKeyboard)]))
        let device = Self.path("5")
        #expect(try bus.waitUntil { try bus.state().nodes[device + "/1-5:1.0"]?.bound == true })
        let nodes = try bus.state().nodes
        #expect(nodes[device]?.authorized == "1")
        #expect(nodes[device + "/1-5:1.0"]?.authorized == "1")
        #expect(nodes[device + "/1-5:1.0"]?.bound == true)
        #expect(nodes[device + "/1-5:1.1"]?.authorized == "0")
        #expect(nodes[device + "/1-5:1.1"]?.bound == false)
        #expect(try bus.state().history.filter { $0.path == device + "/1-5:1.1" }.map(\.value) == ["0"])
        let decision = try #require(try agent.waitForEvent("usb.decision") { details($0)["path"] as? String == "1-5" })
        #expect(details(decision)["verdict"] as? String == "partial")
        #expect(decision["severity"] as? String == "Low")
    }

    // MARK: Start-up

    @Test func devicesPresentAtStartAreDecidedBeforeReady() throws {
        // Plugged while the interface default was still 1, as at boot before anything ran.
        let (bus, agent) = try running(before: Self.devices([("2", Self.stick), ("5", Self.compositeKeyboard), ("1", Self.keyboard)]))
        // READY came after the start-up scan: the outcome is there at once, no waiting.
        let nodes = try bus.state().nodes
        #expect(nodes[Self.path("2")]?.authorized == "0")
        #expect(nodes[Self.path("5")]?.authorized == "1")
        #expect(nodes[Self.path("5") + "/1-5:1.1"]?.authorized == "0", "the card reader was on at boot; it is off now")
        #expect(nodes[Self.path("5") + "/1-5:1.0"]?.authorized == "1")
        #expect(nodes[Self.path("1") + "/1-1:1.0"]?.authorized == "1")
        let startup = try agent.events("usb.decision").filter { details($0)["trigger"] as? String == "startup" }
        #expect(Set(startup.compactMap { details($0)["path"] as? String }) == ["usb1", "1-1", "1-2", "1-5"])
    }

    // MARK: Exceptions

    @Test func anExceptionAllowsTheStickAndItsTimerTakesItAway() throws {
        let (bus, agent) = try running()
        try bus.add(Self.devices([("2", Self.stick)]))
        let stick = Self.path("2")
        #expect(try bus.waitUntil { try authorized(bus, stick) == "0" })

        let granted = try agent.cli(["usb", "allow", "1-2", "--for", "4s", "--reason", "TICKET-4711 vendor firmware", "--json"])
        #expect(granted.status == 0, "\(granted.stderr)")
        let exception = try #require(try JSONSerialization.jsonObject(with: Data(granted.stdout.utf8)) as? [String: Any])
        let id = try #require(exception["id"] as? String)
        #expect(exception["target"] as? String == "0781:5567:4C530001230512110413")
        // The device comes back, its storage interface is authorized and bound.
        #expect(try bus.waitUntil { try bus.state().nodes[stick + "/1-2:1.0"]?.bound == true })
        #expect(try authorized(bus, stick) == "1")
        let listed = try #require(try agent.devices().byPath["1-2"])
        #expect(listed["verdict"] as? String == "allow")
        #expect(listed["rule"] as? String == "exception:\(id)")
        #expect((listed["exception"] as? [String: Any])?["reason"] as? String == "TICKET-4711 vendor firmware")

        // At expiry the timer deauthorizes it, still plugged in (the rescan is an hour away).
        #expect(try bus.waitUntil { try authorized(bus, stick) == "0" })
        let expired = try #require(try agent.waitForEvent("usb.exception_expired"))
        #expect(details(expired)["id"] as? String == id)
        #expect(try agent.events("usb.exception_granted").count == 1)
        let redecided = try agent.events("usb.decision").filter { details($0)["path"] as? String == "1-2" }.compactMap { details($0)["rule"] as? String }
        #expect(redecided == ["default", "exception:\(id)", "default"])
        #expect((try agent.devices().report["exceptions"] as? [Any])?.isEmpty == true)
    }

    // MARK: Lockdown

    /// The usb scope of a lockdown: an excepted stick and a headset (audio is allowed by default)
    /// lose their interfaces, a keyboard keeps typing; after a restart it still holds; released,
    /// everything is as the policy says again.
    @Test func aLockdownKeepsOnlyKeyboardsAndHubsAndSurvivesARestart() throws {
        let (bus, agent) = try running()
        try bus.add(Self.devices([("1", Self.keyboard), ("2", Self.stick), ("3", Self.headset)]))
        let (keyboard, stick, headset) = (Self.path("1"), Self.path("2"), Self.path("3"))
        #expect(try bus.waitUntil { try bus.state().nodes[headset + "/1-3:1.0"]?.authorized == "1" && authorized(bus, stick) == "0" })
        let granted = try agent.cli(["usb", "allow", "1-2", "--for", "1h", "--reason", "TICKET-9"])
        #expect(granted.status == 0, "\(granted.stderr)")
        #expect(try bus.waitUntil { try authorized(bus, stick) == "1" })

        let on = try agent.cli(["lockdown", "on", "--scope", "usb", "--reason", "incident 12"])
        #expect(on.status == 0, "\(on.stderr)")
        #expect(on.stdout.contains("locked: usb"))
        #expect(try bus.waitUntil { try authorized(bus, stick) == "0" })
        #expect(try bus.waitUntil { try bus.state().nodes[headset + "/1-3:1.0"]?.authorized == "0" })
        let nodes = try bus.state().nodes
        #expect(nodes[keyboard + "/1-1:1.0"]?.authorized == "1")
        // The headset's HID interface (its buttons) stays; its audio goes.
        #expect(nodes[headset + "/1-3:1.2"]?.authorized == "1")
        #expect(try agent.devices().byPath["1-2"]?["rule"] as? String == "lockdown")

        // A restart comes back locked, before READY.
        _ = try agent.stop()
        try agent.start()
        #expect(try authorized(bus, stick) == "0")
        #expect(try agent.devices().byPath["1-2"]?["rule"] as? String == "lockdown")
        let status = try agent.cli(["lockdown", "status", "--json"])
        let state = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect(state["locked"] as? [String] == ["usb"])

        let released = try agent.cli(["lockdown", "release", "--scope", "usb", "--reason", "incident 12 closed"])
        #expect(released.status == 0, "\(released.stderr)")
        // The exception was suspended, not deleted: the stick is back, and so is the headset's audio.
        #expect(try bus.waitUntil { try authorized(bus, stick) == "1" })
        #expect(try bus.waitUntil { try bus.state().nodes[headset + "/1-3:1.0"]?.authorized == "1" })
        #expect(try agent.events("lockdown.engaged").count == 1)
        #expect(try agent.events("lockdown.released").count == 1)
    }

    @Test func exceptionsSurviveARestartAndEndWhileTheAgentIsStopped() throws {
        let (bus, agent) = try running()
        try bus.add(Self.devices([("2", Self.stick), ("3", { var s = Self.stick; s.serial = "OTHER"; return s }())]))
        #expect(try bus.waitUntil { try authorized(bus, Self.path("2")) == "0" && authorized(bus, Self.path("3")) == "0" })
        #expect(try agent.cli(["usb", "allow", "0781:5567:4C530001230512110413", "--for", "1h", "--reason", "long job"]).status == 0)
        #expect(try agent.cli(["usb", "allow", "1-3", "--for", "3s", "--reason", "short job"]).status == 0)
        #expect(try bus.waitUntil { try authorized(bus, Self.path("2")) == "1" && authorized(bus, Self.path("3")) == "1" })
        try agent.stop()
        Thread.sleep(forTimeInterval: 4)
        try agent.start()
        // The hour-long one is still in force; the short one ended during the downtime.
        #expect(try authorized(bus, Self.path("2")) == "1")
        #expect(try authorized(bus, Self.path("3")) == "0")
        let expired = try #require(try agent.waitForEvent("usb.exception_expired"))
        #expect((details(expired)["ended"] as? String)?.contains("while holdfastd was stopped") == true)
        #expect((try agent.devices().report["exceptions"] as? [[String: Any]])?.map { $0["reason"] as? String } == ["long job"])
    }

    @Test func exceptionsAreRootsAndNeverOpenEnded() throws {
        let (bus, agent) = try running()
        try bus.add(Self.devices([("2", Self.stick)]))
        #expect(try bus.waitUntil { try authorized(bus, Self.path("2")) == "0" })
        let nobody = try agent.cli(["usb", "allow", "1-2", "--for", "1h", "--reason", "please"], as: "nobody")
        #expect(nobody.status == 77)
        #expect(try agent.waitForEvent("control.denied") { details($0)["verb"] as? String == "usb.allow" } != nil)
        let noExpiry = try agent.cli(["usb", "allow", "1-2", "--reason", "forever"])
        #expect(noExpiry.status == 64)
        let tooLong = try agent.cli(["usb", "allow", "1-2", "--for", "9h", "--reason", "too long"])
        #expect(tooLong.status == 1)
        #expect(tooLong.stderr.contains("longer than the policy allows"))
        let unknown = try agent.cli(["usb", "allow", "1-9", "--for", "1h", "--reason", "nothing there"])
        #expect(unknown.status == 1)
        #expect(try authorized(bus, Self.path("2")) == "0")
        // Anyone may look.
        #expect(try agent.cli(["usb", "devices"], as: "nobody").status == 0)
    }

    // MARK: Modes, policy, tamper

    @Test func auditOnlyDecidesAndRecordsButWritesNothing() throws {
        let (bus, agent) = try running(policy: #"{"usb": {"mode": "audit-only"}}"#)
        try bus.add(Self.devices([("2", Self.stick)]))
        let decision = try #require(try agent.waitForEvent("usb.decision") { details($0)["path"] as? String == "1-2" })
        #expect(details(decision)["verdict"] as? String == "block")
        #expect(details(decision)["would_write"] as? [String] == ["1-2 authorized=0"])
        #expect((decision["message"] as? String)?.hasPrefix("would block") == true)
        try bus.settle(0.3)
        #expect(try authorized(bus, Self.path("2")) == "1")
        #expect(try bus.attribute(Self.hub1, "interface_authorized_default") == "1")
        #expect(try agent.events("usb.hub_default").isEmpty)
    }

    @Test func aReloadedPolicyDecidesPresentDevicesAgain() throws {
        let (bus, agent) = try running()
        try bus.add(Self.devices([("2", Self.stick)]))
        #expect(try bus.waitUntil { try authorized(bus, Self.path("2")) == "0" })
        try agent.setPolicy(#"{"usb": {"rules": [{"id": "issued-drives", "match": {"vendor": "0781", "product": "5567"}, "action": "allow"}]}}"#)
        #expect(try agent.cli(["reload"]).status == 0)
        #expect(try bus.waitUntil { try bus.state().nodes[Self.path("2") + "/1-2:1.0"]?.bound == true })
        try agent.setPolicy("{}")
        #expect(try agent.cli(["reload"]).status == 0)
        #expect(try bus.waitUntil { try authorized(bus, Self.path("2")) == "0" })
        let rules = try agent.events("usb.decision").filter { details($0)["path"] as? String == "1-2" }.compactMap { details($0)["trigger"] as? String }
        #expect(rules == ["add", "policy", "policy"])
    }

    @Test func aChangeMadeBySomeoneElseIsReportedAndUndone() throws {
        let (bus, agent) = try running(rescan: "1s")
        try bus.add(Self.devices([("2", Self.stick), ("5", Self.compositeKeyboard)]))
        let stick = Self.path("2")
        #expect(try bus.waitUntil { try authorized(bus, stick) == "0" && bus.state().nodes[Self.path("5") + "/1-5:1.0"]?.bound == true })
        // Another tool authorizes the stick: the kernel configures it, its interfaces appear.
        try bus.set(stick, "authorized", "1")
        #expect(try bus.waitUntil { (try agent.events("usb.tamper")).count >= 1 })
        #expect(try bus.waitUntil { try authorized(bus, stick) == "0" })
        let tamper = try #require(try agent.events("usb.tamper").first)
        #expect(tamper["severity"] as? String == "High")
        #expect(details(tamper)["changes"] as? [String] == ["1-2 authorized=1, expected 0"])
        // A root shell turns the card reader on without any uevent: the periodic rescan sees it.
        try bus.set(Self.path("5") + "/1-5:1.1", "authorized", "1")
        #expect(try bus.waitUntil { (try agent.events("usb.tamper")).count >= 2 })
        #expect(try bus.waitUntil { try bus.attribute(Self.path("5") + "/1-5:1.1", "authorized") == "0" })
        let second = try #require(try agent.events("usb.tamper").last)
        #expect(details(second)["changes"] as? [String] == ["1-5:1.1 authorized=1, expected 0"])
        #expect(details(second)["reasserted"] as? [String] == ["1-5:1.1 authorized=0"])
        let status = try agent.cli(["status", "--json"])
        let usb = (try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])?["usb"] as? [String: Any]
        #expect(usb?["tamper"] as? Int == 2)
    }

    // MARK: Drivers, sloppy descriptors, replays

    /// A device whose descriptors say HID but whose vendor and product a storage driver claims
    /// (usb-storage's unusual_devs.h has 03eb:2002): the interface is allowed by class, the
    /// kernel binds usb-storage, and the bind is what gives it away.
    static let storageInDisguise = USBDeviceSpec(vendor: 0x03EB, product: 0x2002, configurations: [[
        Setting(0, (3, 6, 0x50), endpoints: [(0x81, 2, 512), (0x02, 2, 512)]),
    ]])

    @Test func aDriverThatTakesAnInterfaceByVendorAndProductIsCutOff() throws {
        let (bus, agent) = try running()
        try bus.add(Self.devices([("2", Self.storageInDisguise)]))
        let interface = Self.path("2") + "/1-2:1.0"
        let refused = try #require(try agent.waitForEvent("usb.driver_refused"))
        #expect(refused["severity"] as? String == "High")
        #expect(details(refused)["drivers"] as? [String: String] == ["1-2:1.0": "usb-storage"])
        #expect(try bus.waitUntil { try bus.state().nodes[interface]?.authorized == "0" })
        let node = try bus.state().nodes[interface]
        #expect(node?.bound == false)
        #expect(node?.driver == nil)
        // The device stays (its verdict by class was allow); the interface is off.
        #expect(try authorized(bus, Self.path("2")) == "1")
        #expect(try agent.events("usb.driver_refused").count == 1, "reported once, not on every event")
    }

    @Test func aRefusedDriverStaysRefusedAcrossRescans() throws {
        let (bus, agent) = try running(rescan: "1s")
        try bus.add(Self.devices([("2", Self.storageInDisguise)]))
        let interface = Self.path("2") + "/1-2:1.0"
        _ = try #require(try agent.waitForEvent("usb.driver_refused"))
        try bus.settle(3.5)
        #expect(try bus.state().history.filter { $0.path == interface }.map(\.value) == ["0", "1", "0"], "authorized once, cut off, never again")
        #expect(try bus.state().probes.filter { $0 == "1-2:1.0" }.count == 1)
    }

    @Test func aKeyboardWithSloppyDescriptorsKeepsTypingAndNothingElse() throws {
        // Declares one interface and describes two: the kernel configures it anyway.
        var keyboard = Self.keyboard.descriptors
        keyboard[18 + 4] = 1
        var stick = Self.stick.descriptors
        stick[18 + 4] = 2
        let entries = [
            UmockdevWriter.Entry(port: "6", spec: Self.keyboard, rawDescriptors: keyboard, connectType: "hotplug"),
            UmockdevWriter.Entry(port: "7", spec: Self.stick, rawDescriptors: stick, connectType: "hotplug"),
        ]
        let text = UmockdevWriter.description(entries).components(separatedBy: "\n\n").dropFirst().joined(separator: "\n\n")
        let (bus, agent) = try running()
        try bus.add(text)
        #expect(try bus.waitUntil { try bus.state().nodes[Self.path("6") + "/1-6:1.1"]?.bound == true && authorized(bus, Self.path("7")) == "0" })
        let nodes = try bus.state().nodes
        #expect(nodes[Self.path("6")]?.authorized == "1")
        #expect(nodes[Self.path("6") + "/1-6:1.0"]?.bound == true)
        #expect(nodes[Self.path("6") + "/1-6:1.1"]?.bound == true)
        let decision = try #require(try agent.waitForEvent("usb.decision") { details($0)["path"] as? String == "1-6" })
        #expect(details(decision)["verdict"] as? String == "block")
        #expect(details(decision)["rule"] as? String == "malformed")
        #expect(decision["severity"] as? String == "High")
    }

    @Test func aReplayedAddLeavesAnInterfaceAllowedByAPolicyRuleAlone() throws {
        let policy = #"{"usb": {"rules": [{"id": "issued-drives", "match": {"vendor": "0781", "product": "5567"}, "action": "allow"}]}}"#
        let (bus, agent) = try running(policy: policy)
        try bus.add(Self.devices([("2", Self.stick)]))
        let interface = Self.path("2") + "/1-2:1.0"
        #expect(try bus.waitUntil { try bus.state().nodes[interface]?.bound == true })
        // The rule as shipped, pointed at this agent's marks (beside its control socket).
        let rules = TemporaryDirectory()
        let shipped = try String(contentsOfFile: Products.packageRoot() + "/Packaging/udev/70-holdfast-usb.rules", encoding: .utf8)
        try shipped.replacing("/run/holdfast/usb-", with: agent.directory.file("run/usb-"))
            .writeReplacing(toFile: rules.file("70-holdfast-usb.rules"))
        #expect(FileManager.default.fileExists(atPath: agent.directory.file("run/usb-allowed/1-2:1.0")))
        // `udevadm trigger --action=add`: udev runs the rule on every device again.
        try bus.udev(interface, rules: rules.path)
        try bus.settle(0.2)
        let history = try bus.state().history.filter { $0.path == interface }.map(\.value)
        #expect(history == ["0", "1"], "never turned off: \(history)")
        #expect(try bus.state().nodes[interface]?.bound == true)
        // An interface holdfastd keeps off though its class is one the rule allows (a policy rule
        // allows only the HID of this headset): the replay keeps it off too.
        try agent.setPolicy(#"{"usb": {"rules": [{"id": "headset-hid-only", "match": {"vendor": "046d", "product": "0a38"}, "action": "allow-interfaces", "interfaces": ["03:*:*"]}]}}"#)
        #expect(try agent.cli(["reload"]).status == 0)
        try bus.add(Self.devices([("3", Self.headset)]))
        let audio = Self.path("3") + "/1-3:1.0"
        #expect(try bus.waitUntil { try bus.state().nodes[Self.path("3") + "/1-3:1.2"]?.bound == true })
        #expect(FileManager.default.fileExists(atPath: agent.directory.file("run/usb-blocked/1-3:1.0")))
        try bus.udev(audio, rules: rules.path)
        try bus.settle(0.2)
        #expect(try bus.state().history.filter { $0.path == audio }.map(\.value) == ["0"], "kept off")
        #expect(try agent.events("usb.tamper").isEmpty)
        // Unplugged: the mark goes with it.
        try bus.remove(Self.path("2"))
        #expect(try bus.waitUntil { !FileManager.default.fileExists(atPath: agent.directory.file("run/usb-allowed/1-2:1.0")) })
    }

    // MARK: Without the daemon

    /// The shipped udev rule, applied by udev's own rules engine (`udevadm test`), keeps a new
    /// stick off and a new keyboard working with holdfastd killed.
    @Test func withTheAgentKilledTheUdevRuleKeepsSticksOffAndKeyboardsOn() throws {
        let rules = TemporaryDirectory()
        try FileManager.default.copyItem(atPath: Products.packageRoot() + "/Packaging/udev/70-holdfast-usb.rules", toPath: rules.file("70-holdfast-usb.rules"))
        let bus = try USBTestbed()
        let hub = Self.hub1
        try bus.add(Self.rootHub())
        // At boot, udev's coldplug: the rule turns new interfaces off on the root hub.
        try bus.udev(hub, rules: rules.path)
        #expect(try bus.attribute(hub, "interface_authorized_default") == "0")
        let agent = try EnforcingAgent(bus: bus)
        try agent.start()
        try agent.stop(SIGKILL)

        try bus.add(Self.devices([("2", Self.stick), ("1", Self.keyboard)]))
        for node in [Self.path("2"), Self.path("2") + "/1-2:1.0", Self.path("1"), Self.path("1") + "/1-1:1.0", Self.path("1") + "/1-1:1.1"] {
            try bus.udev(node, rules: rules.path)
        }
        let nodes = try bus.state().nodes
        #expect(nodes[Self.path("1") + "/1-1:1.0"]?.authorized == "1")
        #expect(nodes[Self.path("1") + "/1-1:1.0"]?.bound == true, "the rule probed the keyboard's driver")
        #expect(nodes[Self.path("1") + "/1-1:1.1"]?.bound == true)
        #expect(nodes[Self.path("2") + "/1-2:1.0"]?.authorized == "0")
        #expect(nodes[Self.path("2") + "/1-2:1.0"]?.bound == false)

        // A "HID" device that usb-storage takes by vendor and product: the rule authorizes it by
        // class, and turns it off again when the driver binds.
        try bus.add(Self.devices([("8", Self.storageInDisguise)]))
        try bus.udev(Self.path("8") + "/1-8:1.0", rules: rules.path)
        #expect(try bus.state().nodes[Self.path("8") + "/1-8:1.0"]?.driver == "usb-storage")
        try bus.udev(Self.path("8") + "/1-8:1.0", rules: rules.path, action: "bind")
        #expect(try bus.state().nodes[Self.path("8") + "/1-8:1.0"]?.authorized == "0")
        #expect(try bus.state().nodes[Self.path("8") + "/1-8:1.0"]?.bound == false)
        // The keyboard's bind keeps its driver.
        try bus.udev(Self.path("1") + "/1-1:1.0", rules: rules.path, action: "bind")
        #expect(try bus.state().nodes[Self.path("1") + "/1-1:1.0"]?.authorized == "1")

        // A stick whose interface came up before the hub default was set (plugged during boot)
        // is turned off by the same rule.
        let early = try USBTestbed()
        try early.add(Self.rootHub())
        try early.add(Self.devices([("3", Self.stick)]))
        #expect(try early.attribute(Self.path("3") + "/1-3:1.0", "authorized") == "1")
        try early.udev(Self.path("3") + "/1-3:1.0", rules: rules.path)
        #expect(try early.attribute(Self.path("3") + "/1-3:1.0", "authorized") == "0")
    }

    // MARK: Public recordings

    /// The recordings in `../shared/fixtures/usb` (when present), enforced as their README says.
    static let shared = Products.packageRoot() + "/../shared/fixtures/usb/"

    @Test(.enabled(if: FileManager.default.fileExists(atPath: shared), "../shared/fixtures/usb is not present on this machine"), arguments: [
        ("usb-stick.umockdev", "block"),
        ("usbkbd-behind-hubs.umockdev", "allow"),
        ("fido2-security-key.umockdev", "allow"),
        ("dock-tree.umockdev", "allow"),
        ("headset-audio-hid.umockdev", "allow"),
    ])
    func sharedRecordingsAreEnforcedAsDocumented(_ file: String, _ expected: String) throws {
        let text = try String(contentsOfFile: Self.shared + file, encoding: .utf8)
        let blocks = text.components(separatedBy: "\n\n").filter { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
        // The controller and root hub first, the agent next, then the devices are plugged in.
        let isRootHubOrAbove = { (block: String) -> Bool in
            let header = block.split(separator: "\n").first.map(String.init) ?? ""
            return !header.contains("/usb") || header.range(of: #"/usb\d+$"#, options: .regularExpression) != nil
        }
        let bus = try USBTestbed()
        try bus.add(blocks.filter(isRootHubOrAbove).joined(separator: "\n\n"))
        let agent = try EnforcingAgent(bus: bus)
        try agent.start()
        let devices = try bus.add(blocks.filter { !isRootHubOrAbove($0) }.joined(separator: "\n\n"))
        #expect(!devices.isEmpty)
        let leaves = devices.filter { device in !devices.contains { $0 != device && $0.hasPrefix(device + "/") } }
        #expect(try bus.waitUntil {
            let verdicts = try agent.devices().byPath
            return leaves.allSatisfy { verdicts[String($0.split(separator: "/").last ?? "")] != nil }
        })
        let nodes = try bus.state().nodes
        for device in devices {
            let name = String(device.split(separator: "/").last ?? "")
            let decided = try agent.devices().byPath[name]
            #expect(decided?["verdict"] as? String == expected, "\(file) \(name)")
            #expect(nodes[device]?.authorized == (expected == "block" ? "0" : "1"), "\(file) \(name)")
        }
        if expected == "allow" {
            #expect(try bus.waitUntil {
                let state = try bus.state()
                return state.nodes.filter { node in node.value.isInterface && devices.contains { node.key.hasPrefix($0 + "/") } }.allSatisfy { $0.value.bound }
            }, "every interface of \(file) has its driver")
        }
    }
}
