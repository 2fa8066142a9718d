import Foundation
import HoldfastCore
import HoldfastTestSupport
import Testing

/// `holdfast usb explain` against real libudev over a umockdev testbed: generated fixtures here,
/// and the shared public recordings when `../shared` is present.
@Suite struct USBExplainTests {
    typealias Setting = USBDeviceSpec.Setting
    let holdfast = Products.path("holdfast")
    static let umockdevRun = "/usr/bin/umockdev-run"

    /// Runs `holdfast usb explain --json` over a device description; devices by path.
    func explain(_ description: String, policy: String? = nil, extra: [String] = []) throws -> (status: Int32, devices: [String: [String: Any]], stderr: String) {
        let directory = TemporaryDirectory()
        let file = directory.file("devices.umockdev")
        try description.writeReplacing(toFile: file)
        var arguments = ["-d", file, "--", holdfast, "usb", "explain", "--json"]
        if let policy {
            try policy.writeReplacing(toFile: directory.file("policy.json"))
            arguments += ["--policy", directory.file("policy.json")]
        }
        let result = try runProcess(Self.umockdevRun, arguments + extra)
        let document = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        var devices: [String: [String: Any]] = [:]
        for device in document?["devices"] as? [[String: Any]] ?? [] {
            if let path = device["path"] as? String { devices[path] = device }
        }
        return (result.status, devices, result.stderr)
    }

    func explainFile(_ path: String) throws -> [String: [String: Any]] {
        let result = try runProcess(Self.umockdevRun, ["-d", path, "--", holdfast, "usb", "explain", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        var devices: [String: [String: Any]] = [:]
        for device in document?["devices"] as? [[String: Any]] ?? [] {
            if let path = device["path"] as? String { devices[path] = device }
        }
        return devices
    }

    @Test func explainsEveryGeneratedDeviceClass() throws {
        var composite = USBDeviceSpec(vendor: 0x04F2, product: 0x0833, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (8, 6, 0x50))]])
        composite.productName = "Keyboard with card reader"
        var hidden = USBDeviceSpec(vendor: 0x1111, product: 0x2222, configurations: [[Setting(0, (3, 1, 1))], [Setting(0, (8, 6, 0x50))]])
        hidden.productName = "Storage in configuration 2"
        let uas = USBDeviceSpec(vendor: 0x174C, product: 0x55AA, configurations: [[Setting(0, (8, 6, 0x50)), Setting(0, alt: 1, (8, 6, 0x62))]])
        var noSerial = USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50))]])
        noSerial.serial = nil
        var stick = noSerial
        stick.serial = "4C530001230512110413"
        let entries: [UmockdevWriter.Entry] = [
            .init(port: "1", spec: USBDeviceSpec(vendor: 0x046D, product: 0xC31C, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (3, 0, 0))]])),
            .init(port: "2", spec: stick, connectType: "hotplug"),
            .init(port: "3", spec: composite),
            .init(port: "4", spec: hidden),
            .init(port: "5", spec: uas),
            .init(port: "6", spec: USBDeviceSpec(vendor: 0x04E8, product: 0x6860, configurations: [[Setting(0, (6, 1, 1))]])),
            .init(port: "7", spec: USBDeviceSpec(vendor: 0x18D1, product: 0x4EE7, configurations: [[Setting(0, (0xFF, 0x42, 1))]])),
            .init(port: "8", spec: USBDeviceSpec(vendor: 0x0BDA, product: 0x8153, configurations: [[Setting(0, (2, 6, 0)), Setting(1, (0x0A, 0, 0))]])),
            .init(port: "9", spec: USBDeviceSpec(vendor: 0x04F9, product: 0x0042, configurations: [[Setting(0, (7, 1, 2))]])),
            .init(port: "10", spec: noSerial),
            .init(port: "11", spec: stick, rawDescriptors: Array(stick.descriptors.dropLast(4))),
            .init(port: "12", spec: USBDeviceSpec(vendor: 0x0B95, product: 0x1790, configurations: [[Setting(0, (0xEF, 4, 1)), Setting(1, (0x0A, 0, 0))]])),
        ]
        let result = try explain(UmockdevWriter.description(entries))
        #expect(result.status == 0, "\(result.stderr)")
        let expected: [String: String] = [
            "usb1": "allow", "1-1": "allow", "1-2": "block", "1-3": "partial", "1-4": "partial", "1-5": "block",
            "1-6": "block", "1-7": "block", "1-8": "block", "1-9": "block", "1-10": "block", "1-11": "block", "1-12": "block",
        ]
        for (path, verdict) in expected {
            #expect(result.devices[path]?["verdict"] as? String == verdict, "\(path)")
        }
        let stickJSON = try #require(result.devices["1-2"])
        #expect(stickJSON["vendor"] as? String == "0781")
        #expect(stickJSON["product"] as? String == "5567")
        #expect(stickJSON["rule"] as? String == "default")
        #expect(stickJSON["serial"] as? String == "4C530001230512110413")
        #expect(stickJSON["connect_type"] as? String == "hotplug")
        let interface = (stickJSON["interfaces"] as? [[String: Any]])?.first
        #expect(interface?["config"] as? Int == 1)
        #expect(interface?["number"] as? Int == 0)
        #expect(interface?["alt"] as? Int == 0)
        #expect(interface?["class"] as? String == "08")
        #expect(interface?["subclass"] as? String == "06")
        #expect(interface?["protocol"] as? String == "50")
        #expect(interface?["verdict"] as? String == "block")
        let truncated = try #require(result.devices["1-11"])
        #expect(truncated["rule"] as? String == "malformed")
        #expect((truncated["reason"] as? String)?.contains("truncated") == true)
        #expect(truncated["vendor"] is NSNull)
    }

    @Test func appliesThePolicyFileAndExplainsNamedDevices() throws {
        var stick = USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50))]])
        stick.serial = "APPROVED-1"
        let description = UmockdevWriter.description([.init(port: "2", spec: stick), .init(port: "3", spec: USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50))]]))])
        let policy = #"{"version":1,"usb":{"rules":[{"id":"alice-drive","match":{"vendor":"0781","product":"5567","serial":"APPROVED-1"},"action":"allow"}]}}"#
        let result = try explain(description, policy: policy, extra: ["1-2", "1-3"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.devices.keys.sorted() == ["1-2", "1-3"])
        #expect(result.devices["1-2"]?["verdict"] as? String == "allow")
        #expect(result.devices["1-2"]?["rule"] as? String == "alice-drive")
        #expect(result.devices["1-3"]?["verdict"] as? String == "block")
    }

    @Test func refusesABadPolicyAndAnUnknownDevice() throws {
        let description = UmockdevWriter.description([])
        let bad = try explain(description, policy: #"{"usb":{"rules":[{"id":"a","match":{},"action":"allow"}]}}"#)
        #expect(bad.status == 65)
        #expect(bad.stderr.contains("an empty match would match every device"))
        let unknown = try explain(description, extra: ["9-9"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("no USB device 9-9"))
    }

    // MARK: The shared public recordings (checked only where ../shared exists)

    static let shared: String? = {
        let path = Products.packageRoot() + "/../shared/fixtures/usb"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    @Test(.enabled(if: shared != nil, "../shared/fixtures/usb is not present on this machine"))
    func theSharedStickIsBlockedByTheDefault() throws {
        let devices = try explainFile((Self.shared ?? "") + "/usb-stick.umockdev")
        let stick = devices.values.first { $0["vendor"] as? String == "0781" && $0["product"] as? String == "5567" }
        #expect(stick?["verdict"] as? String == "block")
        #expect(stick?["rule"] as? String == "default")
        #expect((stick?["reason"] as? String)?.contains("mass storage") == true)
    }

    @Test(.enabled(if: shared != nil, "../shared/fixtures/usb is not present on this machine"), arguments: [
        "usbkbd-behind-hubs.umockdev", "dock-tree.umockdev", "fido2-security-key.umockdev", "headset-audio-hid.umockdev",
    ])
    func theSharedInputAndDockRecordingsAreAllowed(_ file: String) throws {
        let devices = try explainFile((Self.shared ?? "") + "/" + file)
        #expect(!devices.isEmpty)
        for (path, device) in devices {
            #expect(device["verdict"] as? String == "allow", "\(file) \(path): \(device["reason"] ?? "")")
        }
    }
}
