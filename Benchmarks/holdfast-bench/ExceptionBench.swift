import Foundation
import HoldfastBroker
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport

/// Issue 14's row: an approval → applied on the agent. A user's print request goes the real way
/// (`request.submit` over the control socket, the agent sends it to the broker; outside the
/// clock); the clock runs from the approver's decision (signed and committed on the broker, what
/// `holdfast-broker approve` does) until the release holdfastd, enrolled with a release broker on
/// loopback and holding its long poll, has the exception in force (its command sequence, polled
/// every 2 ms over the control socket). A private cupsd with one approved queue stands behind
/// PrintGuard. 100 approvals, 0.2–0.4 s apart; the floor is the lockdown row's: one HTTPS round
/// trip. Goal: p99 under 1 s.
enum ExceptionBench {
    static func rows(broker: String, holdfastd: String, holdfast: String, approvals: Int = 100) throws -> [Row] {
        let holder = TemporaryDirectory()
        chmod(holder.path, 0o755)
        let socket = holder.file("agent-socket")
        // The agent's directory is EnrolledAgent's; cupsd asks holdfastd through a link to its socket.
        let cups = try CupsTestbed(controlSocket: socket)
        guard try cups.addQueue("office", uri: cups.printerURI).status == 0 else { throw CupsTestbed.Failure(message: "lpadmin failed") }
        let policy = #"{"version": 1, "print": {"approved": [{"id": "office", "name": "office", "uri": "\#(cups.printerURI)"}], "quota": {"pages_per_day": 5}}}"#
        let rig = try EnrolledAgent(
            name: "exception", broker: broker, holdfastd: holdfastd, holdfast: holdfast, print: "cups_server = \(cups.socket)\ncups_server_root = \(cups.serverRoot)", policy: policy)
        try? FileManager.default.createSymbolicLink(atPath: socket, withDestinationPath: rig.socket)
        let client = ControlClient(socketPath: rig.socket)
        func applied() -> Int64 { (try? client.call("lockdown.status"))?.result?["last_command_seq"]?.intValue ?? 0 }
        let storage = try SQLiteBrokerStorage(directory: rig.directory + "/broker-state")
        let key = try SigningKey.load(from: rig.directory + "/etc/signing.key")
        // The queue is reconciled (approved, gated) before the first request.
        for _ in 0..<150 where (try? client.call("print.status"))?.result?["queues"]?.compactText.contains("office") != true { usleep(100_000) }
        var timedOut = 0
        var latencies: [Double] = []
        for index in 0..<approvals {
            let asked = try client.call("request.submit", [
                "kind": "print", "target": "office", "pages": 10, "seconds": 3_600, "reason": .string("bench \(index)"),
            ])
            guard let id = asked.result?["request"]?.stringValue else { throw CupsTestbed.Failure(message: "request.submit: \(asked.error?.message ?? "?")") }
            var pending: StoredRequest?
            let sent = Date().addingTimeInterval(10)
            while pending == nil, Date() < sent {
                pending = try storage.requests(statuses: ["pending"], device: rig.device, limit: 5).first { $0.request == id }
                if pending == nil { usleep(2_000) }
            }
            guard let pending else { throw CupsTestbed.Failure(message: "request \(id) never reached the broker") }
            // Decisions come minutes apart in life: each finds the agent's poll held.
            usleep(useconds_t(Int.random(in: 200_000...400_000)))
            let before = ContinuousClock.now
            let decided = try Broker.decideRequest(
                storage: storage, key: key, number: pending.number, decision: .approve(seconds: nil), note: "bench", admin: "bench", at: Int64(Date().timeIntervalSince1970))
            let sequence = decided.commandSequence ?? .max
            let deadline = Date().addingTimeInterval(10)
            while applied() < sequence, Date() < deadline { usleep(2_000) }
            if applied() < sequence { timedOut += 1 }
            latencies.append((ContinuousClock.now - before).seconds)
        }
        withExtendedLifetime(cups) {}
        return [try LockdownBench.deliveryRow(
            "exception approval → in force on holdfastd: approved and signed on the broker → applied by PrintGuard (long poll on loopback), \(approvals) print approvals",
            latencies: latencies, timedOut: timedOut, url: rig.url, caPEM: String(contentsOfFile: rig.directory + "/etc/ca.pem", encoding: .utf8))]
    }
}
