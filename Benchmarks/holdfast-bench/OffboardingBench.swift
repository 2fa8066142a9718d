import BrokerClient
import Foundation
import HoldfastBroker
import HoldfastCore
import HoldfastCrypto
import HoldfastStore

/// Issue 15's row: offboarding latency across a fleet. 1,000 simulated devices enrolled with one
/// release broker on loopback each hold the agent's long poll (`/v1/poll`, as BrokerLink does);
/// an offboarding is recorded and signed for every device in one transaction (what
/// `holdfast-broker offboard` does, timed from its start); each device verifies the command
/// (pinned key, strict parse) and acknowledges it (`/v1/commands/ack`). Measured: the time from
/// the command to each device's acknowledgement, and to the last one, over 5 rounds (offboard and
/// reinstate in turn). Beside it, the transport floor: the same 1,000 clients each making one
/// HTTPS round trip at once (`GET /v1/health`, connections kept alive) — what any fleet-wide
/// answer costs before the broker does anything. Goal: p99 under 60 s.
enum OffboardingBench {
    static func rows(broker: String, devices: Int = 1_000, rounds: Int = 5) throws -> [Row] {
        let fleet = try Fleet(broker: broker, devices: devices, name: "offboarding")
        let semaphore = DispatchSemaphore(value: 0)
        let box = ResultBox()
        Task.detached {
            do {
                try await fleet.enroll(workers: 64)
                box.set(.success(try await measure(fleet, rounds: rounds)))
            } catch {
                box.set(.failure(error))
            }
            semaphore.signal()
        }
        semaphore.wait()
        withExtendedLifetime(fleet) {}
        let result = try box.get()
        let acks = Measurement(operations: result.acks.count, seconds: result.acks.reduce(0, +), latencies: result.acks)
        let last = Measurement(operations: result.lasts.count, seconds: result.lasts.reduce(0, +), latencies: result.lasts)
        let floor = Measurement(operations: result.floor.count, seconds: result.floor.reduce(0, +), latencies: result.floor)
        return [Row(
            name: "offboarding: \(devices) simulated devices holding the long poll on one broker (loopback, same 2 cores); offboard → signed command per device → verified and acknowledged by each, \(rounds) rounds",
            holdfast: String(format: "per device p50 %.2f s, p99 %.2f s; last device p50 %.2f s, max %.2f s (%d of %d acknowledgements missing)",
                             acks.percentile(0.5), acks.percentile(0.99), last.percentile(0.5), last.latencies.max() ?? 0, result.missing, devices * rounds),
            anchorName: "the same \(devices) clients, one HTTPS round trip each at once (GET /v1/health, kept alive)",
            anchor: String(format: "p50 %.2f s, p99 %.2f s, last %.2f s", floor.percentile(0.5), floor.percentile(0.99), floor.latencies.max() ?? 0),
            ratio: String(format: "%.1f× the floor (last device); goal p99 < 60 s", (last.latencies.max() ?? 0) / max(floor.latencies.max() ?? 0, 1e-9)))]
    }

    struct Result {
        var acks: [Double]
        var lasts: [Double]
        var floor: [Double]
        var missing: Int
    }

    static func measure(_ fleet: Fleet, rounds: Int) async throws -> Result {
        let sessions = fleet.sessions
        let keys = VerifyingKeySet([fleet.signing.publicKey])
        // The floor first (before the polls hold the fleet's connections): the same number of
        // clients, one round trip each, all at once.
        let clients = (0..<sessions.count).map { _ in HTTPClient(trust: .pinned(fleet.caPEM)) }
        await withTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { _ = try? await client.send("GET", fleet.url + "/v1/health", timeout: .seconds(30)) } }
        }
        let floorStart = ContinuousClock.now
        let floor = await withTaskGroup(of: Double.self) { group in
            for client in clients {
                group.addTask {
                    _ = try? await client.send("GET", fleet.url + "/v1/health", timeout: .seconds(30))
                    return (ContinuousClock.now - floorStart).seconds
                }
            }
            var all: [Double] = []
            for await time in group { all.append(time) }
            return all
        }
        let acked = AckLog()
        // Every device: the agent's loop — poll, verify, acknowledge — until told to stop.
        let pollers = Task.detached {
            await withTaskGroup(of: Void.self) { group in
                for session in sessions {
                    group.addTask {
                        var after: Int64 = 0
                        while !acked.stopped {
                            guard let answer = try? await session.poll(policyAfter: Int64.max / 2, commandAfter: after, wait: 20) else { continue }
                            for (sequence, document) in answer.commands {
                                guard case .success(let command) = BrokerSession.verifyCommand(document, keys: keys), command.device == session.record.deviceID else { continue }
                                try? await session.acknowledgeCommand(sequence: sequence, applied: true, detail: "\(command.action.rawValue) \(command.user ?? "")", state: .object([:]))
                                acked.record(device: session.record.deviceID, sequence: sequence)
                                after = max(after, sequence)
                            }
                        }
                    }
                }
            }
        }
        // Let every poll reach the broker and be held.
        try await Task.sleep(for: .seconds(5))
        var result = Result(acks: [], lasts: [], floor: floor, missing: 0)
        for round in 0..<rounds {
            let offboard = round % 2 == 0
            acked.reset()
            let started = ContinuousClock.now
            acked.start(at: started)
            _ = try Broker.setOffboarded(
                storage: fleet.storage, key: fleet.signing, user: "bench-user", offboard: offboard, reason: "bench round \(round)", admin: "bench",
                at: Int64(Date().timeIntervalSince1970))
            let deadline = ContinuousClock.now + .seconds(120)
            while acked.count < sessions.count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            let times = acked.latencies()
            result.acks += times
            result.lasts.append(times.max() ?? 120)
            result.missing += sessions.count - times.count
            // Between rounds the polls are held again.
            try await Task.sleep(for: .seconds(2))
        }
        acked.stop()
        // The held polls return within their wait (20 s) once stopped; no need to wait for them.
        pollers.cancel()
        return result
    }

    /// When each device acknowledged this round's command.
    final class AckLog: @unchecked Sendable {
        private let lock = NSLock()
        private var started = ContinuousClock.now
        private var times: [String: Double] = [:]
        private var done = false

        func start(at instant: ContinuousClock.Instant) { lock.lock(); started = instant; lock.unlock() }
        func reset() { lock.lock(); times = [:]; lock.unlock() }
        func record(device: String, sequence: Int64) {
            lock.lock()
            if times[device] == nil { times[device] = (ContinuousClock.now - started).seconds }
            lock.unlock()
        }
        var count: Int { lock.lock(); defer { lock.unlock() }; return times.count }
        func latencies() -> [Double] { lock.lock(); defer { lock.unlock() }; return Array(times.values) }
        var stopped: Bool { lock.lock(); defer { lock.unlock() }; return done }
        func stop() { lock.lock(); done = true; lock.unlock() }
    }

    final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Swift.Result<Result, any Error>?
        func set(_ result: Swift.Result<Result, any Error>) { lock.lock(); value = result; lock.unlock() }
        func get() throws -> Result {
            lock.lock()
            defer { lock.unlock() }
            guard let value else { throw CocoaError(.featureUnsupported) }
            return try value.get()
        }
    }
}
