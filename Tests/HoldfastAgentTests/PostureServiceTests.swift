import FileWatch
import Foundation
import HoldfastAgent
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport
import Posture
import Synchronization
import Testing

/// Kernel probes with fixed answers; the real ones run in the ExecutableTests.
struct FixedSystem: PostureSystem {
    func clock() -> Result<ClockState, ProbeError> { .success(ClockState(state: 0, status: 0x2001, maximumError: 1_000, estimatedError: 100)) }
    func auditStatus() -> Result<KernelAuditStatus, ProbeError> { .success(KernelAuditStatus(enabled: 1, pid: 0, lost: 0, backlog: 0, backlogLimit: 64)) }
    func auditRules(_ set: AuditRuleSet) -> Result<RuleCheck, ProbeError> { .success(RuleCheck(missing: [], present: set.rules.count)) }
    func firewallRuleset() -> Result<[UInt8], ProbeError> { .failure(ProbeError("not in this test")) }
    func deviceMapperTargets(_ name: String) -> Result<[DeviceMapperTarget], ProbeError> { .failure(ProbeError("not in this test")) }
}

@Suite struct PostureServiceTests {
    final class Flag: Sendable {
        let value = Mutex(false)
    }

    final class Rig {
        let directory = TemporaryDirectory()
        let journal: Journal
        let recorder: EventRecorder
        let key: SigningKey
        /// What the lockdown facts say: locked but not enforced when true.
        let broken = Flag()

        init() throws {
            journal = try Journal(configuration: JournalConfiguration(directory: directory.file("state")))
            recorder = EventRecorder(journal: journal, logger: Logger(handler: MemoryLogHandler()))
            key = try DeviceKey.loadOrCreate(stateDirectory: directory.file("state"))
        }

        func service(interval: Duration = .seconds(3_600)) -> PostureService {
            PostureService(
                key: key, interval: interval, settings: PostureSettings(stateDirectory: directory.file("state")), recorder: recorder,
                logger: Logger(handler: MemoryLogHandler()), system: FixedSystem(), minimumGap: .seconds(1),
                facts: { [broken] in
                    let locked = broken.value.withLock { $0 }
                    return AgentFacts(auditRules: nil, lostAtLastReport: nil, printPolicy: nil, printQueues: nil, usbEnforced: true,
                                      lockdown: ["usb": LockdownFact(recorded: locked, enforced: false, detail: locked ? "test" : "")])
                })
        }

        func changes(_ check: String) throws -> [JSONValue] {
            recorder.flush()
            return try journal.entries().map { try $0.event() }.filter { $0.kind == "posture.changed" && $0.details["check"]?.stringValue == check }.map { $0.details["to"] ?? .null }
        }
    }

    @Test func theDeviceKeyIsCreatedOnceAndPrivate() throws {
        let rig = try Rig()
        #expect(fileMode(rig.directory.file("state/device.key")) == 0o600)
        let again = try DeviceKey.loadOrCreate(stateDirectory: rig.directory.file("state"))
        #expect(again.publicKey == rig.key.publicKey)
    }

    @Test func aReportIsSignedOverTheNonceAndPartialRunsLeaveHistoryAlone() async throws {
        let rig = try Rig()
        let service = rig.service()
        let answer = await service.report(nonce: "challenge-1", only: ["lockdown-consistent", "clock-sync"])
        let signed = try #require(answer.signed)
        let verified = try JWS.verify(signed, key: rig.key.publicKey)
        let payload = try JSONDecoder().decode(JSONValue.self, from: Data(verified.payload))
        #expect(payload["nonce"]?.stringValue == "challenge-1")
        #expect(payload["device"]?.stringValue == rig.key.publicKey.thumbprint)
        #expect(payload["status"]?.stringValue == "pass")
        #expect(try rig.changes("lockdown-consistent").isEmpty)
        #expect(await service.statusSummary()["runs"]?.intValue == 0)
    }

    /// The scheduled loop runs at start; a relevant event runs it again within the coalescing
    /// window, and the check whose facts changed is journaled once, with the new status.
    @Test func aRelevantEventRerunsTheChecksAndTheChangeIsJournaled() async throws {
        let rig = try Rig()
        let service = rig.service()
        let task = Task { try await service.run() }
        defer { task.cancel() }
        #expect(await pollUntil(30) { await service.statusSummary()["runs"]?.intValue == 1 })
        // A passing check at the first run is not a finding.
        #expect(try rig.changes("lockdown-consistent").isEmpty)
        #expect(PostureService.isRelevant("lockdown.engaged") && PostureService.isRelevant("filewatch.rules_restored") && !PostureService.isRelevant("posture.changed") && !PostureService.isRelevant("usb.decision"))
        rig.broken.value.withLock { $0 = true }
        await service.trigger("lockdown.engaged")
        #expect(await pollUntil(30) { await service.statusSummary()["runs"]?.intValue == 2 })
        #expect(try rig.changes("lockdown-consistent") == ["fail"])
        let summary = await service.statusSummary()
        #expect(summary["status"]?.stringValue == "fail")
        guard case .array(let failing)? = summary["fail"] else { Issue.record("no failing list"); return }
        #expect(failing.contains("lockdown-consistent"))
    }
}

/// Polls an async condition every 50 ms until it holds or `seconds` pass.
func pollUntil(_ seconds: Double, _ condition: () async -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}
