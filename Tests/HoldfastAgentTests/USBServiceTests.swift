import DeviceGuard
import Foundation
@testable import HoldfastAgent
import HoldfastCore
import HoldfastStore
import HoldfastTestSupport
import Synchronization
import Testing

/// An in-memory USB side that behaves like the kernel for the parts the service relies on:
/// deauthorizing a device removes its interfaces, a node that is gone refuses writes.
final class FakeUSBHost: USBHost {
    struct Inner {
        var devices: [String: USBDeviceState] = [:]
        var writes: [String] = []
        var failing: Set<String> = []
        /// Paths that vanish the moment anything is written to them (unplugged mid-decision).
        var vanishing: Set<String> = []
        /// Paths whose attributes answer ENOENT although the device stays (an old kernel).
        var noAttribute: Set<String> = []
    }

    let inner = Mutex(Inner())
    static let bus = "/sys/devices/pci0000:00/0000:00:14.0/usb1"

    var writes: [String] { inner.withLock { $0.writes } }

    func plug(_ state: USBDeviceState) { inner.withLock { $0.devices[state.record.sysPath] = state } }
    func unplug(_ path: String) { _ = inner.withLock { $0.devices.removeValue(forKey: path) } }

    func devices() throws(DeviceGuardError) -> [USBDeviceState] {
        inner.withLock { $0.devices.values.sorted { ($0.depth, $0.record.sysPath) < ($1.depth, $1.record.sysPath) } }
    }

    func device(at sysPath: String, interfaces: Bool) -> USBDeviceState? {
        guard let state = inner.withLock({ $0.devices[sysPath] }) else { return nil }
        return interfaces ? state : state.removingInterfaces()
    }

    func write(_ value: String, attribute: String, of sysPath: String) throws(DeviceGuardError) {
        let outcome: DeviceGuardError? = inner.withLock { inner in
            if inner.failing.contains(sysPath) { return DeviceGuardError("write \(sysPath): Operation not permitted") }
            if inner.noAttribute.contains(sysPath) { return DeviceGuardError("open \(sysPath)/\(attribute): No such file or directory", code: .gone) }
            if inner.vanishing.contains(sysPath) {
                inner.devices[sysPath] = nil
                return DeviceGuardError("gone", code: .gone)
            }
            let devicePath = sysPath.contains(":") && sysPath.split(separator: "/").last?.contains(":") == true
                ? String(sysPath[..<(sysPath.lastIndex(of: "/") ?? sysPath.endIndex)]) : sysPath
            guard let device = inner.devices[devicePath] else { return DeviceGuardError("gone", code: .gone) }
            let name = String(sysPath.split(separator: "/").last ?? "")
            inner.writes.append("\(name) \(attribute)=\(value)")
            inner.devices[devicePath] = Self.applying(value, attribute, to: sysPath, of: device)
            return nil
        }
        if let outcome { throw outcome }
    }

    func attribute(_ name: String, of sysPath: String) -> String? {
        guard name == "interface_authorized_default" else { return nil }
        return inner.withLock { $0.devices[sysPath]?.interfaceAuthorizedDefault }
    }

    func probeDrivers(interface name: String) throws(DeviceGuardError) {
        inner.withLock { $0.writes.append("probe \(name)") }
    }

    static func applying(_ value: String, _ attribute: String, to path: String, of device: USBDeviceState) -> USBDeviceState {
        var authorized = device.authorized
        var interfaces = device.interfaces
        var hubDefault = device.interfaceAuthorizedDefault
        if path == device.record.sysPath {
            if attribute == "authorized" {
                authorized = value == "1"
                if value == "0" { interfaces = [] }
            }
            if attribute == "interface_authorized_default" { hubDefault = value }
        } else {
            interfaces = interfaces.map { interface in
                interface.sysPath == path
                    ? USBInterfaceState(name: interface.name, sysPath: interface.sysPath, configuration: interface.configuration, number: interface.number, authorized: value == "1")
                    : interface
            }
        }
        return USBDeviceState(
            record: device.record, authorized: authorized, parentSysPath: device.parentSysPath, interfaces: interfaces,
            interfaceAuthorizedDefault: hubDefault, authorizedDefault: device.authorizedDefault
        )
    }

    /// A device at `port` on bus 1, with the interfaces of its first configuration.
    static func device(_ spec: USBDeviceSpec, port: String, serial: String? = nil, authorized: Bool = true, interfaces: Bool? = false) -> USBDeviceState {
        let hops = port.split(separator: ".")
        var path = bus
        for count in 1...hops.count { path += "/1-" + hops.prefix(count).joined(separator: ".") }
        let name = "1-" + port
        let parent = hops.count == 1 ? bus : String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        let numbers = Array(Set(spec.configurations.first?.map(\.number) ?? [])).sorted()
        return USBDeviceState(
            record: USBDeviceRecord(name: name, sysPath: path, descriptors: spec.descriptors, serial: serial),
            authorized: authorized, parentSysPath: parent,
            interfaces: interfaces == nil ? [] : numbers.map { USBInterfaceState(name: "\(name):1.\($0)", sysPath: path + "/\(name):1.\($0)", configuration: 1, number: $0, authorized: interfaces) }
        )
    }

    static var rootHub: USBDeviceState {
        USBDeviceState(
            record: USBDeviceRecord(name: "usb1", sysPath: bus, descriptors: UmockdevWriter.rootHub.descriptors),
            authorized: true, parentSysPath: nil,
            interfaces: [USBInterfaceState(name: "1-0:1.0", sysPath: bus + "/1-0:1.0", configuration: 1, number: 0, authorized: true)],
            interfaceAuthorizedDefault: "1", authorizedDefault: "1"
        )
    }
}

/// Events the test feeds; a pipe makes the descriptor readable when one is waiting.
final class FakeEventSource: USBEventSource, @unchecked Sendable {
    private let queue = Mutex<[Result<USBEvent, USBEventSourceError>]>([])
    private let pipe: (read: Int32, write: Int32)
    var fileDescriptor: Int32 { pipe.read }

    init() {
        var fds: [Int32] = [0, 0]
        precondition(Glibc.pipe(&fds) == 0)
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        pipe = (fds[0], fds[1])
    }

    deinit {
        close(pipe.read)
        close(pipe.write)
    }

    func push(_ event: Result<USBEvent, USBEventSourceError>) {
        queue.withLock { $0.append(event) }
        var byte: UInt8 = 1
        _ = Glibc.write(pipe.write, &byte, 1)
    }

    func next() throws(USBEventSourceError) -> USBEvent? {
        let item = queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        guard let item else {
            var sink = [UInt8](repeating: 0, count: 64)
            while read(pipe.read, &sink, 64) > 0 {}
            return nil
        }
        return try item.get()
    }
}

@Suite struct USBServiceTests {
    typealias Setting = USBDeviceSpec.Setting
    static let stick = USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50))]])
    static let keyboard = USBDeviceSpec(vendor: 0x046D, product: 0xC31C, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (3, 0, 0))]])
    static let hub: USBDeviceSpec = {
        var spec = USBDeviceSpec(vendor: 0x2109, product: 0x2817, configurations: [[Setting(0, (9, 0, 0))]])
        spec.deviceClass = (9, 0, 1)
        return spec
    }()
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    /// A service over a fake host and event source, with a journal in a temporary directory.
    final class Rig {
        let directory = TemporaryDirectory()
        let host = FakeUSBHost()
        let source = FakeEventSource()
        let clock = ManualTimeSource(USBServiceTests.start)
        let journal: Journal
        let recorder: EventRecorder
        let service: USBService

        init(policy: USBPolicy = .empty, devices: [USBDeviceState] = [FakeUSBHost.rootHub], marksDirectory: String? = nil) throws {
            journal = try Journal(configuration: JournalConfiguration(directory: directory.file("state")))
            recorder = EventRecorder(journal: journal, logger: Logger(level: .error))
            for device in devices { host.plug(device) }
            let source = source
            service = USBService(
                policy: policy, host: host, events: { source }, journal: journal, recorder: recorder,
                logger: Logger(level: .error), clock: clock, rescanInterval: .seconds(3_600),
                seat: SeatUser(path: directory.file("no-seat")), marksDirectory: marksDirectory
            )
        }

        /// Runs the service until `body` returns, then stops it.
        func running(_ body: () async throws -> Void) async throws {
            let service = service
            let task = Task { try await service.run() }
            defer { task.cancel() }
            let deadline = ContinuousClock.now + .seconds(30)
            while await !service.ready, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(2)) }
            try await body()
            task.cancel()
            _ = await task.result
        }

        func waitFor(_ condition: () async throws -> Bool) async throws -> Bool {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if try await condition() { return true }
                try await Task.sleep(for: .milliseconds(2))
            }
            return try await condition()
        }

        /// Plugs a device in and out again, `times` times, announcing both as udev would.
        func replug(_ device: USBDeviceState, times: Int = 1) async {
            for _ in 0..<times {
                host.plug(device)
                await service.handle(USBEvent(action: .add, sysPath: device.record.sysPath, isInterface: false))
                host.unplug(device.record.sysPath)
                await service.handle(USBEvent(action: .remove, sysPath: device.record.sysPath, isInterface: false))
            }
        }

        func events(_ kind: String) throws -> [Event] {
            recorder.flush()
            return try journal.entries(after: 0, limit: 10_000).filter { $0.kind == kind }.map { try $0.event() }
        }
    }

    @Test func anOverflowedSocketMakesItLookAtEverything() async throws {
        let rig = try Rig()
        try await rig.running { () async throws in
            // A stick arrives whose event was lost with the overflow.
            rig.host.plug(FakeUSBHost.device(Self.stick, port: "2"))
            rig.source.push(.failure(.overflow))
            #expect(try await rig.waitFor { rig.host.writes.contains("1-2 authorized=0") })
        }
        #expect(try rig.events("usb.monitor_overflow").count == 1)
        let decision = try #require(try rig.events("usb.decision").first { $0.details["path"] == "1-2" })
        #expect(decision.details["trigger"] == "overflow")
    }

    @Test func eventsQueuedDuringTheStartUpScanAreReplayedWithoutDuplicates() async throws {
        let stick = FakeUSBHost.device(Self.stick, port: "2")
        let rig = try Rig(devices: [FakeUSBHost.rootHub, stick])
        // Waiting in the socket before the scan ran: the stick's add, and a keyboard's that
        // arrived while the scan was going on.
        let keyboard = FakeUSBHost.device(Self.keyboard, port: "3", interfaces: false)
        rig.source.push(.success(USBEvent(action: .add, sysPath: stick.record.sysPath, isInterface: false)))
        rig.host.plug(keyboard)
        rig.source.push(.success(USBEvent(action: .add, sysPath: keyboard.record.sysPath, isInterface: false)))
        try await rig.running { () async throws in
            #expect(try await rig.waitFor { rig.host.writes.contains("probe 1-3:1.1") })
        }
        let decisions = try rig.events("usb.decision").compactMap { $0.details["path"]?.stringValue }
        #expect(decisions.filter { $0 == "1-2" }.count == 1, "the replayed add did not decide the stick twice")
        #expect(decisions.contains("1-3"))
        #expect(rig.host.writes.filter { $0 == "1-2 authorized=0" }.count == 1)
    }

    @Test func aChildIsNeverDecidedBeforeItsHub() async throws {
        let rig = try Rig()
        try await rig.running { () async throws in
            rig.host.plug(FakeUSBHost.device(Self.hub, port: "4"))
            rig.host.plug(FakeUSBHost.device(Self.keyboard, port: "4.1"))
            // Only the keyboard's event arrives (the hub's was not seen yet).
            rig.source.push(.success(USBEvent(action: .add, sysPath: FakeUSBHost.bus + "/1-4/1-4.1", isInterface: false)))
            #expect(try await rig.waitFor { rig.host.writes.contains("probe 1-4.1:1.1") })
        }
        let order = try rig.events("usb.decision").compactMap { $0.details["path"]?.stringValue }
        #expect(order == ["usb1", "1-4", "1-4.1"])
        #expect(try rig.events("usb.decision").first { $0.details["path"] == "1-4" }?.details["trigger"] == "parent")
    }

    @Test func aDeviceUnpluggedMidDecisionIsNotAFailure() async throws {
        let rig = try Rig()
        try await rig.running { () async throws in
            let stick = FakeUSBHost.device(Self.stick, port: "2")
            rig.host.inner.withLock { _ = $0.vanishing.insert(stick.record.sysPath) }
            rig.host.plug(stick)
            rig.source.push(.success(USBEvent(action: .add, sysPath: stick.record.sysPath, isInterface: false)))
            #expect(try await rig.waitFor { rig.host.device(at: stick.record.sysPath) == nil })
            #expect(try await rig.waitFor { await rig.service.devicesReport()["devices"].map { "\($0)" }?.contains("1-2") == false })
        }
        #expect(try rig.events("usb.enforcement_failed").isEmpty)
        // The decision is on the record even though the device is gone.
        let decision = try #require(try rig.events("usb.decision").first { $0.details["path"] == "1-2" })
        #expect(decision.details["left_during_decision"] == true)
        #expect(decision.details["verdict"] == "block")
    }

    @Test func aRefusedWriteIsReportedAndTriedAgainAtTheNextRescan() async throws {
        let stick = FakeUSBHost.device(Self.stick, port: "2")
        let rig = try Rig(devices: [FakeUSBHost.rootHub, stick])
        rig.host.inner.withLock { _ = $0.failing.insert(stick.record.sysPath) }
        try await rig.running { () async throws in
            let failed = try #require(try rig.events("usb.enforcement_failed").first)
            #expect(failed.severity == .high)
            #expect(failed.message.contains("Operation not permitted"))
            rig.host.inner.withLock { _ = $0.failing.remove(stick.record.sysPath) }
            await rig.service.rescan()
            #expect(rig.host.writes.contains("1-2 authorized=0"))
        }
    }

    @Test func anAttributeMissingOnADeviceStillThereIsAFailureNotAnUnplug() async throws {
        let stick = FakeUSBHost.device(Self.stick, port: "2")
        let oldHub = USBDeviceState(
            record: FakeUSBHost.rootHub.record, authorized: true, parentSysPath: nil, interfaces: FakeUSBHost.rootHub.interfaces,
            interfaceAuthorizedDefault: nil, authorizedDefault: nil
        )
        let rig = try Rig(devices: [oldHub, stick])
        rig.host.inner.withLock { _ = $0.noAttribute.insert(stick.record.sysPath) }
        try await rig.running {}
        #expect(try rig.events("usb.hub_unsupported").first?.details["hub"] == "usb1")
        #expect(!rig.host.writes.contains { $0.contains("interface_authorized_default") })
        let failed = try #require(try rig.events("usb.enforcement_failed").first)
        #expect(failed.details["path"] == "1-2")
        #expect(try rig.events("usb.decision").first { $0.details["path"] == "1-2" }?.details["left_during_decision"] == nil)
    }

    @Test func rootHubsGetTheirDefaultOffAndAreNeverDeauthorized() async throws {
        let blockEverything = try USBPolicy(section: .object(["rules": .array([
            .object(["id": "all", "match": .object(["class": "09:*:*"]), "action": "block"]),
        ])]))
        let rig = try Rig(policy: blockEverything)
        try await rig.running {}
        #expect(rig.host.writes == ["usb1 interface_authorized_default=0"])
        #expect(rig.host.device(at: FakeUSBHost.bus)?.authorized == true)
    }

    @Test func exceptionsAreCheckedAndExpireByTheClock() async throws {
        let stick = FakeUSBHost.device(Self.stick, port: "2", serial: "S1")
        let rig = try Rig(policy: USBPolicy(rules: [], maximumExceptionSeconds: 7_200), devices: [FakeUSBHost.rootHub, stick])
        try await rig.running { () async throws in
            let service = rig.service
            await #expect(throws: USBService.ExceptionError.self) { try await service.allow(.busPath("1-2"), seconds: 3_600, reason: "  ", grantedBy: "uid 0") }
            await #expect(throws: USBService.ExceptionError.self) { try await service.allow(.busPath("1-2"), seconds: 7_201, reason: "x", grantedBy: "uid 0") }
            await #expect(throws: USBService.ExceptionError.self) { try await service.allow(.busPath("1-9"), seconds: 60, reason: "x", grantedBy: "uid 0") }
            await #expect(throws: USBService.ExceptionError.self) { try await service.allow(.busPath("usb1"), seconds: 60, reason: "x", grantedBy: "uid 0") }
            await #expect(throws: USBService.ExceptionError.self) {
                try await service.allow(.busPath("1-2"), seconds: 60, reason: String(repeating: "x", count: 1_001), grantedBy: "uid 0")
            }
            let exception = try await service.allow(.busPath("1-2"), seconds: 3_600, reason: "TICKET-9", grantedBy: "uid 0 (root)")
            #expect(exception.serial == "S1")
            #expect(exception.hash?.hasPrefix("sha256:") == true)
            #expect(exception.until == Self.start + 3_600)
            // The stick was deauthorized at start; the exception brings it back.
            #expect(rig.host.writes.suffix(1) == ["1-2 authorized=1"])
            rig.clock.advance(by: 3_599)
            await service.expireDue()
            #expect(await service.exceptions.count == 1)
            rig.clock.advance(by: 1)
            await service.expireDue()
            #expect(await service.exceptions.isEmpty)
            #expect(rig.host.writes.suffix(1) == ["1-2 authorized=0"])
        }
        #expect(try rig.events("usb.exception_granted").count == 1)
        #expect(try rig.events("usb.exception_expired").first?.details["id"]?.stringValue != nil)
        // Stored, and gone from the store once ended.
        #expect(try rig.journal.state(USBService.exceptionsKey, as: [USBException].self) == [])
    }

    @Test func aPolicyThatShortensExceptionsEndsTheLongerOnes() async throws {
        let rig = try Rig(policy: USBPolicy(rules: [], maximumExceptionSeconds: 8 * 3_600))
        try await rig.running { () async throws in
            _ = try await rig.service.allow(.model(vendor: 0x0781, product: 0x5567, serial: nil), seconds: 6 * 3_600, reason: "long", grantedBy: "uid 0")
            _ = try await rig.service.allow(.model(vendor: 0x0781, product: 0x5568, serial: nil), seconds: 600, reason: "short", grantedBy: "uid 0")
            await rig.service.update(policy: USBPolicy(rules: [], maximumExceptionSeconds: 3_600))
            #expect(await rig.service.exceptions.map(\.reason) == ["short"])
            await rig.service.update(policy: USBPolicy(rules: [], maximumExceptionSeconds: 0))
            #expect(await rig.service.exceptions.isEmpty)
            await #expect(throws: USBService.ExceptionError.self) {
                try await rig.service.allow(.model(vendor: 0x0781, product: 0x5567, serial: nil), seconds: 60, reason: "x", grantedBy: "uid 0")
            }
        }
        #expect(try rig.events("usb.exception_revoked").count == 2)
    }

    @Test func storedExceptionsMeetThePolicyInForceAtStart() async throws {
        let stick = FakeUSBHost.device(Self.stick, port: "2", serial: "S1")
        let rig = try Rig(policy: USBPolicy(rules: [], maximumExceptionSeconds: 3_600), devices: [FakeUSBHost.rootHub, stick])
        let make = { (id: String, created: Date, seconds: Double) in
            USBException(id: id, vendor: 0x0781, product: 0x5567, serial: nil, hash: nil, created: created, until: created + seconds, reason: id, grantedBy: "uid 0")
        }
        // Granted under a policy that allowed 8h; one claims a grant time in the future.
        try rig.journal.setState(USBService.exceptionsKey, encoding: [
            make("longgrant", Self.start - 60, 8 * 3_600), make("fromfuture", Self.start + 86_400, 600), make("fine", Self.start - 60, 1_800),
        ])
        try await rig.running {
            #expect(await rig.service.exceptions.map(\.id) == ["fine"])
        }
        let ended = try rig.events("usb.exception_revoked").compactMap { $0.details["id"]?.stringValue }
        #expect(Set(ended) == ["longgrant", "fromfuture"])
    }

    @Test func aFlappingDeviceIsSummedUpInsteadOfFillingTheJournal() async throws {
        let rig = try Rig()
        try await rig.running { () async throws in
            await rig.replug(FakeUSBHost.device(Self.stick, port: "2"), times: 50)
            await rig.service.rescan()
        }
        let connects = try rig.events("usb.decision").filter { $0.details["path"] == "1-2" }.count
        let disconnects = try rig.events("usb.disconnect").count
        #expect(connects + disconnects == 20)
        let summary = try #require(try rig.events("usb.plugs_suppressed").first)
        #expect(summary.details["suppressed"] == 80)
        #expect(summary.details["path"] == "1-2")
        // Every plug was still enforced.
        #expect(rig.host.writes.filter { $0 == "1-2 authorized=0" }.count == 50)
    }

    @Test func aHubTheRuleHardenedIsWatchedLikeOneWeHardened() async throws {
        let secondHub = USBDeviceState(
            record: USBDeviceRecord(name: "usb2", sysPath: "/sys/devices/pci0000:00/0000:3c:00.0/usb2", descriptors: UmockdevWriter.rootHub.descriptors),
            authorized: true, parentSysPath: nil, interfaces: [], interfaceAuthorizedDefault: "1", authorizedDefault: "1"
        )
        let rig = try Rig()
        try await rig.running { () async throws in
            // A dock's controller, already at 0 (the udev rule got there first).
            rig.host.plug(FakeUSBHost.applying("0", "interface_authorized_default", to: secondHub.record.sysPath, of: secondHub))
            await rig.service.handle(USBEvent(action: .add, sysPath: secondHub.record.sysPath, isInterface: false))
            // Someone resets it; the next device plugged below it brings the check.
            rig.host.plug(secondHub)
            let keyboard = USBDeviceState(
                record: USBDeviceRecord(name: "2-1", sysPath: secondHub.record.sysPath + "/2-1", descriptors: Self.keyboard.descriptors),
                authorized: true, parentSysPath: secondHub.record.sysPath
            )
            rig.host.plug(keyboard)
            await rig.service.handle(USBEvent(action: .add, sysPath: keyboard.record.sysPath, isInterface: false))
        }
        let tamper = try #require(try rig.events("usb.tamper").first)
        #expect(tamper.details["path"] == "usb2")
        #expect(rig.host.writes.suffix(1) == ["usb2 interface_authorized_default=0"])
    }

    static let disguised = USBDeviceSpec(vendor: 0x03EB, product: 0x2002, configurations: [[Setting(0, (3, 6, 0x50), endpoints: [(0x81, 2, 512), (0x02, 2, 512)])]])

    @Test func aDriverSeenOnlyInTheBindEventStillGetsTheInterfaceRefusedForGood() async throws {
        let rig = try Rig()
        try await rig.running { () async throws in
            // The udev rule already cut it off: authorized 0, no driver link; the event says usb-storage.
            let device = FakeUSBHost.device(Self.disguised, port: "2", interfaces: true)
            rig.host.plug(device)
            await rig.service.handle(USBEvent(action: .add, sysPath: device.record.sysPath, isInterface: false))
            let interface = device.record.sysPath + "/1-2:1.0"
            try rig.host.write("0", attribute: "authorized", of: interface)
            await rig.service.handle(USBEvent(action: .bind, sysPath: interface, isInterface: true, driver: "usb-storage"))
            let before = rig.host.writes.count
            await rig.service.rescan()
            await rig.service.handle(USBEvent(action: .change, sysPath: device.record.sysPath, isInterface: false))
            #expect(rig.host.writes.count == before, "never authorized again: \(rig.host.writes.suffix(3))")
        }
        let refused = try #require(try rig.events("usb.driver_refused").first)
        #expect(refused.details["drivers"] == .object(["1-2:1.0": "usb-storage"]))
    }

    @Test func aTugOfWarIsGivenUpAndReported() async throws {
        let keyboard = FakeUSBHost.device(Self.keyboard, port: "3", interfaces: true)
        let rig = try Rig(devices: [FakeUSBHost.rootHub, keyboard])
        try await rig.running { () async throws in
            let interface = keyboard.record.sysPath + "/1-3:1.0"
            for _ in 0..<8 {
                // Another tool turns it off; holdfastd turns it back on, up to the limit.
                rig.host.inner.withLock { $0.devices[keyboard.record.sysPath] = FakeUSBHost.applying("0", "authorized", to: interface, of: $0.devices[keyboard.record.sysPath] ?? keyboard) }
                await rig.service.rescan()
            }
        }
        #expect(rig.host.writes.filter { $0 == "1-3:1.0 authorized=1" }.count == USBService.reauthorizationLimit)
        let conflict = try #require(try rig.events("usb.enforcement_conflict").first)
        #expect(conflict.details["interface"] == "1-3:1.0")
        #expect(conflict.severity == .high)
    }

    @Test func anotherDeviceOnAFlappingPortIsStillJournaled() async throws {
        let rig = try Rig()
        try await rig.running { () async throws in
            await rig.replug(FakeUSBHost.device(Self.stick, port: "2"), times: 30)
            let other = FakeUSBHost.device(Self.keyboard, port: "2", serial: "OTHER")
            rig.host.plug(other)
            await rig.service.handle(USBEvent(action: .add, sysPath: other.record.sysPath, isInterface: false))
            // A device that looks different on every plug is held to the port's cap.
            for index in 0..<300 {
                var spec = Self.stick
                spec.serial = "S\(index)"
                await rig.replug(FakeUSBHost.device(spec, port: "5", serial: "S\(index)"))
            }
        }
        let decisions = try rig.events("usb.decision")
        #expect(decisions.contains { $0.details["path"] == "1-2" && $0.details["vendor"] == "046d" }, "the keyboard's decision is journaled")
        let port5 = decisions.filter { $0.details["path"] == "1-5" }.count + (try rig.events("usb.disconnect")).filter { $0.details["path"] == "1-5" }.count
        #expect(port5 == 200)
    }

    @Test func anUntrustworthyMarksDirectoryMeansNoMarks() async throws {
        let directory = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory.file("elsewhere"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: directory.file("marks"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory.file("marks/usb-allowed"), withDestinationPath: directory.file("elsewhere"))
        let policy = try USBPolicy(section: .object(["rules": .array([.object(["id": "drives", "match": .object(["vendor": "0781"]), "action": "allow"])])]))
        let stick = FakeUSBHost.device(Self.stick, port: "2", interfaces: false)
        let rig = try Rig(policy: policy, devices: [FakeUSBHost.rootHub, stick], marksDirectory: directory.file("marks"))
        try await rig.running {}
        #expect(rig.host.writes.contains("1-2:1.0 authorized=1"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.file("elsewhere")).isEmpty)
    }

    @Test func marksFollowWhatHoldfastdDecided() async throws {
        let directory = TemporaryDirectory()
        let headsetHIDOnly = try USBPolicy(section: .object(["rules": .array([
            .object(["id": "hid-only", "match": .object(["vendor": "0781"]), "action": "allow-interfaces", "interfaces": .array(["03:*:*"])]),
        ])]))
        let composite = FakeUSBHost.device(USBDeviceSpec(vendor: 0x0781, product: 0x1111, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (1, 1, 0))]]), port: "4", interfaces: false)
        let rig = try Rig(policy: headsetHIDOnly, devices: [FakeUSBHost.rootHub, composite], marksDirectory: directory.path)
        try await rig.running {}
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.file("usb-allowed")) == ["1-4:1.0"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.file("usb-blocked")) == ["1-4:1.1"])
    }

    @Test func unreadableStoredExceptionsMeanNone() async throws {
        let rig = try Rig()
        try rig.journal.setState(USBService.exceptionsKey, Array("not json".utf8))
        try await rig.running { () async throws in
            #expect(await rig.service.exceptions.isEmpty)
        }
        #expect(try rig.events("usb.exceptions_unreadable").first?.severity == .high)
    }

    @Test func theSeatFileNamesTheUserAtTheKeyboard() {
        #expect(SeatUser.activeUID(in: Array("IS_SEAT0=1\nACTIVE=c2\nACTIVE_UID=1000\nUIDS=1000 120\n".utf8)) == 1_000)
        #expect(SeatUser.activeUID(in: Array("IS_SEAT0=1\nACTIVE=\n".utf8)) == nil)
        #expect(SeatUser.activeUID(in: Array("ACTIVE_UID=root\n".utf8)) == nil)
    }
}
