import BrokerClient
import Foundation
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport
import Posture

/// Issue 12's load row: 1,000 enrolled devices attesting concurrently against one broker on
/// loopback, beside the floor — the same number of HTTPS requests to `/v1/health` from the same
/// clients (keep-alive, as the agent's client keeps its connection).
enum BrokerLoadBench {
    static func rows(broker: String, devices: Int = 1_000, workers: Int = 64, rounds: Int = 3) throws -> [Row] {
        let fleet = try Fleet(broker: broker, devices: devices, name: "broker-load")
        let url = fleet.url
        let caPEM = fleet.caPEM
        let checks = PostureCatalog.run(PostureContext(tree: RootTree("/"), system: LiveSystem(), now: Date().timeIntervalSince1970, cache: PatchCache()))
        let semaphore = DispatchSemaphore(value: 0)
        let box = LoadBox()
        let brokerPID = fleet.brokerPID
        Task.detached {
            do {
                try await fleet.enroll(workers: workers)
                let sessions = fleet.sessions
                let keys = fleet.keys
                // Attest: each worker takes the next device; every device attests `rounds` times.
                let allSessions = sessions
                let allKeys = keys
                let total = devices * rounds
                let counter = Counter()
                let brokerCPUBefore = cpuSeconds(pid: brokerPID)
                let ownCPUBefore = ownCPUSeconds()
                let started = ContinuousClock.now
                let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
                    for _ in 0..<workers {
                        group.addTask {
                            var mine: [Double] = []
                            while let next = counter.next(limit: total) {
                                let index = next % devices
                                let session = allSessions[index]
                                let before = ContinuousClock.now
                                let nonce = try await session.challenge()
                                let report = try PostureReport(device: session.record.deviceID, time: Date(), nonce: nonce, checks: checks, durationMilliseconds: 0).signed(with: allKeys[index])
                                _ = try await session.attest(report: report, nonce: nonce, user: nil)
                                mine.append((ContinuousClock.now - before).seconds)
                            }
                            return mine
                        }
                    }
                    var all: [Double] = []
                    for try await part in group { all += part }
                    return all
                }
                let attest = Measurement(operations: latencies.count, seconds: (ContinuousClock.now - started).seconds, latencies: latencies)
                box.setCPU(broker: (cpuSeconds(pid: brokerPID) - brokerCPUBefore) / Double(latencies.count),
                           generator: (ownCPUSeconds() - ownCPUBefore) / Double(latencies.count))
                // The floor: the same number of HTTPS requests (two per attestation), same concurrency.
                let floorCounter = Counter()
                let clients = (0..<workers).map { _ in HTTPClient(trust: .pinned(caPEM)) }
                let floorStart = ContinuousClock.now
                let floorLatencies = try await withThrowingTaskGroup(of: [Double].self) { group in
                    for worker in 0..<workers {
                        group.addTask {
                            var mine: [Double] = []
                            while floorCounter.next(limit: total) != nil {
                                let before = ContinuousClock.now
                                _ = try await clients[worker].send("GET", url + "/v1/health", timeout: .seconds(10))
                                _ = try await clients[worker].send("GET", url + "/v1/health", timeout: .seconds(10))
                                mine.append((ContinuousClock.now - before).seconds)
                            }
                            return mine
                        }
                    }
                    var all: [Double] = []
                    for try await part in group { all += part }
                    return all
                }
                let floor = Measurement(operations: floorLatencies.count, seconds: (ContinuousClock.now - floorStart).seconds, latencies: floorLatencies)
                box.set(.success((attest, floor)))
            } catch {
                box.set(.failure(error))
            }
            semaphore.signal()
        }
        semaphore.wait()
        withExtendedLifetime(fleet) {}
        let (attest, floor) = try box.get()
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        let (brokerCPU, generatorCPU) = box.cpu
        return [Row(
            name: "load: \(devices) enrolled devices attesting concurrently (\(workers) in flight, \(rounds) each: challenge + full report + verdict/grant verified), one broker on loopback; load generator on the same 2 cores",
            holdfast: String(format: "%.0f attestations/s, p50 %.1f ms, p99 %.1f ms; CPU per attestation: broker %.2f ms, load generator %.2f ms (the broker alone on these cores: ≈ %.0f/s)",
                             attest.perSecond, attest.percentile(0.5) * 1e3, attest.percentile(0.99) * 1e3, brokerCPU * 1e3, generatorCPU * 1e3, cores / max(brokerCPU, 1e-9)),
            anchorName: "the same number of HTTPS request pairs to /v1/health, same clients and concurrency (keep-alive)",
            anchor: String(format: "%.0f pairs/s, p50 %.1f ms, p99 %.1f ms", floor.perSecond, floor.percentile(0.5) * 1e3, floor.percentile(0.99) * 1e3),
            ratio: String(format: "%.2f× the floor's time per operation; goal ≥ 2,000 attestations/s", floor.perSecond / max(attest.perSecond, 1e-9)))]
    }

    final class Counter: @unchecked Sendable {
        private var value = 0
        private let lock = NSLock()
        func next(limit: Int) -> Int? {
            lock.lock()
            defer { lock.unlock() }
            guard value < limit else { return nil }
            value += 1
            return value - 1
        }
    }

    /// User + system CPU seconds of a process (`/proc/PID/stat`, fields 14 and 15, in clock ticks).
    static func cpuSeconds(pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, so utime (14) and stime (15) are at 11 and 12.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    final class LoadBox: @unchecked Sendable {
        private var value: Result<(Measurement, Measurement), any Error>?
        private var cpuPerAttestation = (broker: 0.0, generator: 0.0)
        private let lock = NSLock()
        func setCPU(broker: Double, generator: Double) { lock.lock(); cpuPerAttestation = (broker, generator); lock.unlock() }
        var cpu: (Double, Double) { lock.lock(); defer { lock.unlock() }; return cpuPerAttestation }
        func set(_ result: Result<(Measurement, Measurement), any Error>) { lock.lock(); value = result; lock.unlock() }
        func get() throws -> (Measurement, Measurement) {
            lock.lock()
            defer { lock.unlock() }
            guard let value else { throw CocoaError(.featureUnsupported) }
            return try value.get()
        }
    }
}
