import BrokerClient
import Foundation
import HoldfastBroker
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport

/// Issue 13's row: command delivery — from the moment an admin's lockdown or release is queued
/// (signed and committed in the broker's store, what `holdfast-broker lockdown` does) to the
/// moment a release holdfastd, enrolled with a release broker on loopback and holding its long
/// poll, has applied it (its lockdown status shows the command's sequence; polled every 2 ms over
/// the control socket) — 100 commands 0.2–0.4 s apart (each finds the poll held, as in life),
/// lockdown and release in turn, beside the floor: one HTTPS
/// round trip to the same broker on a kept-alive connection. Goal: p99 under 1 s.
enum LockdownBench {
    static func rows(broker: String, holdfastd: String, holdfast: String, commands: Int = 100) throws -> [Row] {
        let rig = try EnrolledAgent(name: "lockdown", broker: broker, holdfastd: holdfastd, holdfast: holdfast)
        let device = rig.device
        let url = rig.url
        let client = ControlClient(socketPath: rig.socket)
        func applied() -> Int64 { (try? client.call("lockdown.status"))?.result?["last_command_seq"]?.intValue ?? 0 }
        let storage = try SQLiteBrokerStorage(directory: rig.directory + "/broker-state")
        let key = try SigningKey.load(from: rig.directory + "/etc/signing.key")
        // The agent's first poll is held before the series starts.
        usleep(1_000_000)
        var timedOut = 0
        var latencies: [Double] = []
        for index in 0..<commands {
            // Commands come seconds apart in life: each one finds the agent's poll held, not
            // just re-sent after the previous answer (outside the clock).
            usleep(useconds_t(Int.random(in: 200_000...400_000)))
            let before = ContinuousClock.now
            let queued = try Broker.queueCommand(
                storage: storage, key: key, device: device, action: index % 2 == 0 ? .lockdown : .release, scopes: [.print], reason: "bench \(index)", admin: "bench",
                lifetime: 3_600, at: Int64(Date().timeIntervalSince1970))
            let deadline = Date().addingTimeInterval(10)
            while applied() < queued.sequence, Date() < deadline { usleep(2_000) }
            if applied() < queued.sequence { timedOut += 1 }
            latencies.append((ContinuousClock.now - before).seconds)
        }
        return [try deliveryRow(
            "lockdown command delivery: queued and signed on the broker → applied by holdfastd (its long poll on loopback), \(commands) commands, lockdown and release in turn",
            latencies: latencies, timedOut: timedOut, url: url, caPEM: String(contentsOfFile: rig.directory + "/etc/ca.pem", encoding: .utf8))]
    }

    /// A delivery series beside the floor measured now: one HTTPS round trip to the same broker.
    static func deliveryRow(_ name: String, latencies: [Double], timedOut: Int, url: String, caPEM: String) throws -> Row {
        let delivery = Measurement(operations: latencies.count, seconds: latencies.reduce(0, +), latencies: latencies)
        let floor = try floor(url: url, caPEM: caPEM, count: latencies.count)
        return Row(
            name: name,
            holdfast: String(format: "p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d not applied within 10 s)",
                             delivery.percentile(0.5) * 1e3, delivery.percentile(0.99) * 1e3, (delivery.latencies.max() ?? 0) * 1e3, timedOut),
            anchorName: "one HTTPS round trip to the same broker (GET /v1/health, connection kept alive)",
            anchor: String(format: "p50 %.2f ms, p99 %.2f ms", floor.percentile(0.5) * 1e3, floor.percentile(0.99) * 1e3),
            ratio: String(format: "%.0f× the floor (p99); goal p99 < 1 s", delivery.percentile(0.99) / max(floor.percentile(0.99), 1e-9)))
    }

    /// The floor: one HTTPS round trip to the same broker, kept alive (as the agent's poll is).
    static func floor(url: String, caPEM: String, count: Int) throws -> Measurement {
        let https = HTTPClient(trust: .pinned(caPEM))
        let semaphore = DispatchSemaphore(value: 0)
        let box = FloorBox()
        Task.detached {
            _ = try? await https.send("GET", url + "/v1/health", timeout: .seconds(5))
            var latencies: [Double] = []
            for _ in 0..<count {
                let before = ContinuousClock.now
                _ = try? await https.send("GET", url + "/v1/health", timeout: .seconds(5))
                latencies.append((ContinuousClock.now - before).seconds)
            }
            box.set(latencies)
            semaphore.signal()
        }
        semaphore.wait()
        return Measurement(operations: count, seconds: box.latencies.reduce(0, +), latencies: box.latencies)
    }

    final class FloorBox: @unchecked Sendable {
        private var values: [Double] = []
        private let lock = NSLock()
        func set(_ latencies: [Double]) { lock.lock(); values = latencies; lock.unlock() }
        var latencies: [Double] { lock.lock(); defer { lock.unlock() }; return values }
    }
}
