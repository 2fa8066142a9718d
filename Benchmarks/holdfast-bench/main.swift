// holdfast-bench: `make bench`. Each row measures Holdfast and its anchor in the same run, on the
// same machine, and prints the ratio beside the absolute figures. Not shipped.
import Foundation

import HoldfastAgent
import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import HoldfastTestSupport
import PrintGuard

if CommandLine.arguments.contains("--help") || CommandLine.arguments.contains("-h") {
    print("""
        Usage: holdfast-bench            every row (what make bench runs; root for most of them; about 12 minutes)
               holdfast-bench broker-handler | broker-load | lockdown | exceptions | offboarding    one row alone
        BENCH_ONLY=usb|print|audit|filewatch|posture|broker runs the quick rows and that group (docs/benchmarks.md).
        """)
    exit(0)
}
if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "audit-child" {
    exit(AuditBench.child(CommandLine.arguments[2]))
}
// `holdfast-bench broker-handler`: that one row alone, for profiling the broker's handler.
if CommandLine.arguments.count == 2, CommandLine.arguments[1] == "broker-handler" {
    for row in try BrokerHandlerBench.rows() { print("\(row.name): \(row.holdfast); \(row.anchorName): \(row.anchor); \(row.ratio)") }
    exit(0)
}
// `holdfast-bench lockdown` / `exceptions`: that delivery row alone (release holdfastd, broker
// and holdfast beside this binary).
let deliveryRows: [String: (String, String, String) throws -> [Row]] = [
    "lockdown": { try LockdownBench.rows(broker: $0, holdfastd: $1, holdfast: $2) },
    "exceptions": { try ExceptionBench.rows(broker: $0, holdfastd: $1, holdfast: $2) },
    "offboarding": { broker, _, _ in try OffboardingBench.rows(broker: broker) },
]
if CommandLine.arguments.count == 2, let rows = deliveryRows[CommandLine.arguments[1]] {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for row in try rows(directory.appendingPathComponent("holdfast-broker").path, directory.appendingPathComponent("holdfastd").path, directory.appendingPathComponent("holdfast").path) {
        print("\(row.name): \(row.holdfast); \(row.anchorName): \(row.anchor); \(row.ratio)")
    }
    exit(0)
}
// `holdfast-bench broker-load`: the load row alone (the release holdfast-broker beside this binary).
if CommandLine.arguments.count == 2, CommandLine.arguments[1] == "broker-load" {
    let broker = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("holdfast-broker").path
    for row in try BrokerLoadBench.rows(broker: broker) { print("\(row.name): \(row.holdfast); \(row.anchorName): \(row.anchor); \(row.ratio)") }
    exit(0)
}

/// One measured series: total time and per-operation latencies.
struct Measurement {
    var operations: Int
    var seconds: Double
    var latencies: [Double]

    var perSecond: Double { Double(operations) / seconds }

    func percentile(_ p: Double) -> Double {
        guard !latencies.isEmpty else { return 0 }
        let sorted = latencies.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}

func measure(_ operations: Int, _ body: (Int) throws -> Void) rethrows -> Measurement {
    var latencies: [Double] = []
    latencies.reserveCapacity(operations)
    let clock = ContinuousClock()
    let start = clock.now
    for index in 0..<operations {
        let before = clock.now
        try body(index)
        latencies.append((clock.now - before).seconds)
    }
    return Measurement(operations: operations, seconds: (clock.now - start).seconds, latencies: latencies)
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

struct Row {
    var name: String
    var holdfast: String
    var anchorName: String
    var anchor: String
    var ratio: String
}

func rate(_ value: Double) -> String {
    value >= 10_000 ? String(format: "%.0f/s", value) : String(format: "%.1f/s", value)
}

func micros(_ seconds: Double) -> String { String(format: "%.1f µs", seconds * 1e6) }

var rows: [Row] = []
/// `BENCH_ONLY=usb`, `print`, `audit`, `filewatch` or `posture` runs only that group's slow rows (the quick rows always run).
let only = ProcessInfo.processInfo.environment["BENCH_ONLY"]
func wanted(_ group: String) -> Bool { only == nil || only == group }

// MARK: Signed documents

let key = try SigningKey.generate()
let keys = VerifyingKeySet([key.publicKey])
let policy = Array(String(repeating: #"{"usb":{"default":"block"}}"#, count: 8).utf8)  // ~216 bytes
let signingInput = Array((Base64URL.encode(Array(#"{"alg":"EdDSA"}"#.utf8)) + "." + Base64URL.encode(policy)).utf8)
let rounds = 20_000

// Warm up both paths once.
_ = try JWS.sign(policy, with: key)
_ = try key.signature(for: signingInput)

let rawSign = try measure(rounds) { _ in _ = try key.signature(for: signingInput) }
let jwsSign = try measure(rounds) { _ in _ = try JWS.sign(policy, with: key) }
rows.append(Row(
    name: "JWS sign (216-byte policy)",
    holdfast: "\(rate(jwsSign.perSecond)), p50 \(micros(jwsSign.percentile(0.5)))",
    anchorName: "raw Ed25519 sign (OpenSSL EVP)",
    anchor: "\(rate(rawSign.perSecond)), p50 \(micros(rawSign.percentile(0.5)))",
    ratio: String(format: "%.2f× the anchor's time", rawSign.perSecond / jwsSign.perSecond)
))

let token = try JWS.sign(policy, with: key)
let rawSignature = try key.signature(for: signingInput)
let rawVerify = measure(rounds) { _ in _ = key.publicKey.isValidSignature(rawSignature, for: signingInput) }
let jwsVerify = try measure(rounds) { _ in _ = try JWS.verify(token, keys: keys) }
rows.append(Row(
    name: "JWS verify (216-byte policy)",
    holdfast: "\(rate(jwsVerify.perSecond)), p50 \(micros(jwsVerify.percentile(0.5)))",
    anchorName: "raw Ed25519 verify (OpenSSL EVP)",
    anchor: "\(rate(rawVerify.perSecond)), p50 \(micros(rawVerify.percentile(0.5)))",
    ratio: String(format: "%.2f× the anchor's time", rawVerify.perSecond / jwsVerify.perSecond)
))

let grant = try JWT.sign(
    JWTClaims(issuer: "broker", subject: "device-1", audience: ["gateway"], issuedAt: Date(), expiresAt: Date() + 600, id: "g",
              other: ["user": "alice", "posture": "compliant"]),
    with: key
)
let validation = JWTValidation(audience: "gateway", issuer: "broker")
let jwtVerify = try measure(rounds) { _ in _ = try JWT.verify(grant, keys: keys, validation: validation) }
rows.append(Row(
    name: "JWT grant verify (signature + claims)",
    holdfast: "\(rate(jwtVerify.perSecond)), p50 \(micros(jwtVerify.percentile(0.5)))",
    anchorName: "raw Ed25519 verify (OpenSSL EVP)",
    anchor: "\(rate(rawVerify.perSecond)), p50 \(micros(rawVerify.percentile(0.5)))",
    ratio: String(format: "%.2f× the anchor's time", rawVerify.perSecond / jwtVerify.perSecond)
))

// MARK: Journal

let scratch = NSTemporaryDirectory() + "/holdfast-bench-\(getpid())"
defer { try? FileManager.default.removeItem(atPath: scratch) }
let journal = try Journal(configuration: JournalConfiguration(directory: scratch + "/state"))
let sample = Event(
    kind: "file.write", eventClass: .fileSystemActivity, activityID: 1, time: Date(), severity: .informational,
    message: "alice wrote /home/alice/export/customers-0001.csv",
    actor: Actor(user: .init(uid: "1000", name: "alice"), process: .init(pid: 4242, name: "cp")),
    details: ["path": "/home/alice/export/customers-0001.csv", "target": "watched-root"]
)
func freshEvent(_ index: Int) -> Event {
    var event = sample
    event.id = UUID()
    event.details["sequence"] = .int(Int64(index))
    return event
}
let appendCount = 2_000
let singleAppends = try measure(appendCount) { index in try journal.append(freshEvent(index)) }
let batchSize = 100
let batchAppends = try measure(appendCount / batchSize) { batch in
    try journal.append(contentsOf: (0..<batchSize).map { freshEvent(batch * batchSize + $0) })
}

/// The anchor: the sqlite3 shell running the same schema, pragmas and row bytes, one transaction
/// per row (and per 100 rows), timed from the same clock. Its process start is amortized over N.
func sqliteShell(rows: Int, perTransaction: Int) throws -> Double {
    let directory = scratch + "/anchor-\(perTransaction)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let body = try EventCoding.encode(freshEvent(0))
    let hexBody = body.map { String(format: "%02x", $0) }.joined()
    var sql = "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=FULL;\n"
    sql += "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL UNIQUE, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, class_uid INTEGER NOT NULL, severity_id INTEGER NOT NULL, body BLOB NOT NULL, uploaded INTEGER NOT NULL DEFAULT 0);\n"
    sql += "CREATE INDEX events_pending ON events(id) WHERE uploaded = 0;\n"
    sql += "CREATE TABLE journal_meta (singleton INTEGER PRIMARY KEY, event_bytes INTEGER, events INTEGER);\nINSERT INTO journal_meta VALUES (1,0,0);\n"
    sql += "CREATE TRIGGER c AFTER INSERT ON events BEGIN UPDATE journal_meta SET event_bytes = event_bytes + length(NEW.body), events = events + 1; END;\n"
    for row in 0..<rows {
        if row % perTransaction == 0 { sql += "BEGIN IMMEDIATE;\n" }
        sql += "INSERT INTO events (uuid, time_ms, kind, class_uid, severity_id, body) VALUES ('\(UUID().uuidString.lowercased())', \(row), 'file.write', 1001, 1, x'\(hexBody)');\n"
        if row % perTransaction == perTransaction - 1 { sql += "COMMIT;\n" }
    }
    let script = directory + "/script.sql"
    try sql.writeReplacing(toFile: script)
    let clock = ContinuousClock()
    let start = clock.now
    guard try spawnAndWait("/usr/bin/sqlite3", [directory + "/anchor.sqlite"], stdin: script) == 0 else { throw CocoaError(.fileWriteUnknown) }
    return Double(rows) / (clock.now - start).seconds
}

let anchorSingle = try sqliteShell(rows: appendCount, perTransaction: 1)
let anchorBatch = try sqliteShell(rows: appendCount, perTransaction: batchSize)
rows.append(Row(
    name: "journal append, 1 event per commit (WAL, synchronous=FULL)",
    holdfast: "\(rate(singleAppends.perSecond)), p50 \(micros(singleAppends.percentile(0.5))), p99 \(micros(singleAppends.percentile(0.99)))",
    anchorName: "sqlite3 shell, same schema and pragmas",
    anchor: rate(anchorSingle),
    ratio: String(format: "%.2f× the anchor's time", anchorSingle / singleAppends.perSecond)
))
rows.append(Row(
    name: "journal append, 100 events per commit",
    holdfast: rate(batchAppends.perSecond * Double(batchSize)),
    anchorName: "sqlite3 shell, same schema and pragmas",
    anchor: rate(anchorBatch),
    ratio: String(format: "%.2f× the anchor's time", anchorBatch / (batchAppends.perSecond * Double(batchSize)))
))

// MARK: Control socket

/// Answers `ping` and nothing else: the bench measures the socket path, not a verb.
struct PingHandler: ControlHandler {
    func verbClass(_ verb: String) async -> VerbClass? { verb == "ping" ? .read : nil }
    func handle(_ request: ControlRequest, from peer: PeerCredentials) async -> ControlResponse { .success(.object(["pong": true])) }
    func denied(_ request: ControlRequest, from peer: PeerCredentials, reason: String) async {}
}

/// The anchor: the same exchange (connect, one line out, one line back, close) against a plain
/// blocking echo server on its own thread — the kernel's floor for this framing.
func echoServer(_ path: String) -> Int32 {
    let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    _ = UnixAddress.withAddress(path) { bind(listener, $0, $1) }
    listen(listener, 128)
    Thread.detachNewThread {
        var buffer = [UInt8](repeating: 0, count: 4_096)
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            let count = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if count > 0 { _ = buffer.withUnsafeBytes { send(client, $0.baseAddress, count, Int32(MSG_NOSIGNAL)) } }
            close(client)
        }
    }
    return listener
}

func rawExchange(_ path: String) {
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    _ = UnixAddress.withAddress(path) { connect(descriptor, $0, $1) }
    let line = Array(#"{"arguments":{},"verb":"ping","version":1}"#.utf8) + [10]
    _ = line.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var buffer = [UInt8](repeating: 0, count: 4_096)
    _ = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
}

let controlPath = scratch + "/control.sock"
let echoPath = scratch + "/echo.sock"
let controlListener = try ControlListener(path: controlPath)
let controlTask = Task.detached {
    try await ControlService(listener: controlListener, handler: PingHandler(), logger: Logger(handler: MemoryLogHandler())).run()
}
let echoListener = echoServer(echoPath)
let client = ControlClient(socketPath: controlPath)
let pingRounds = 5_000
for _ in 0..<100 { _ = try client.call("ping"); rawExchange(echoPath) }  // warm up
let echo = measure(pingRounds) { _ in rawExchange(echoPath) }
let ping = try measure(pingRounds) { _ in
    guard try client.call("ping").ok else { throw CocoaError(.featureUnsupported) }
}
controlTask.cancel()
close(echoListener)
rows.append(Row(
    name: "control socket round trip (connect, ping, answer, close)",
    holdfast: "\(rate(ping.perSecond)), p50 \(micros(ping.percentile(0.5))), p99 \(micros(ping.percentile(0.99)))",
    anchorName: "blocking echo server, same framing",
    anchor: "\(rate(echo.perSecond)), p50 \(micros(echo.percentile(0.5))), p99 \(micros(echo.percentile(0.99)))",
    ratio: String(format: "%.2f× the anchor's time", echo.perSecond / ping.perSecond)
))

// MARK: USB classification

/// The same devices for both tools: a dock-sized tree of 24 devices of every class, each port
/// reporting its connect type (USBGuard waits ~35 ms per device for one that does not).
func usbDescription() -> String {
    typealias Setting = USBDeviceSpec.Setting
    let kinds: [USBDeviceSpec] = [
        USBDeviceSpec(vendor: 0x046D, product: 0xC31C, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (3, 0, 0))]]),
        USBDeviceSpec(vendor: 0x0781, product: 0x5567, configurations: [[Setting(0, (8, 6, 0x50), endpoints: [(0x81, 2, 512), (0x02, 2, 512)])]]),
        USBDeviceSpec(vendor: 0x04F2, product: 0x0833, configurations: [[Setting(0, (3, 1, 1)), Setting(1, (8, 6, 0x50))]]),
        USBDeviceSpec(vendor: 0x046D, product: 0x0A38, configurations: [[Setting(0, (1, 1, 0)), Setting(1, (1, 2, 0)), Setting(1, alt: 1, (1, 2, 0)), Setting(2, (3, 0, 0))]]),
        USBDeviceSpec(vendor: 0x18D1, product: 0x4EE7, configurations: [[Setting(0, (0xFF, 0x42, 1))]]),
        USBDeviceSpec(vendor: 0x0BDA, product: 0x8153, configurations: [[Setting(0, (2, 6, 0)), Setting(1, (0x0A, 0, 0))]]),
    ]
    var entries: [UmockdevWriter.Entry] = []
    for index in 0..<24 {
        var spec = kinds[index % kinds.count]
        spec.serial = "BENCH\(index)"
        entries.append(.init(port: String(index + 1), spec: spec, connectType: "hotplug"))
    }
    return UmockdevWriter.description(entries)
}

func timeCommand(_ executable: String, _ arguments: [String], runs: Int, allowFailure: Bool = false) throws -> Measurement {
    try measure(runs) { _ in
        guard try spawnAndWait(executable, arguments) == 0 || allowFailure else { throw CocoaError(.executableLoad) }
    }
}

let usbFile = scratch + "/usb-bench.umockdev"
try usbDescription().writeReplacing(toFile: usbFile)
let holdfastBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("holdfast").path
if wanted("usb"), FileManager.default.fileExists(atPath: "/usr/bin/umockdev-run"), FileManager.default.fileExists(atPath: "/usr/bin/usbguard"),
    FileManager.default.fileExists(atPath: holdfastBinary)
{
    let runs = 20
    // Alternate the two tools run by run, so background load falls on both alike.
    var ours = Measurement(operations: 0, seconds: 0, latencies: [])
    var theirs = Measurement(operations: 0, seconds: 0, latencies: [])
    for _ in 0..<runs {
        let one = try timeCommand("/usr/bin/umockdev-run", ["-d", usbFile, "--", holdfastBinary, "usb", "explain", "--json"], runs: 1)
        let other = try timeCommand("/usr/bin/umockdev-run", ["-d", usbFile, "--", "/usr/bin/usbguard", "generate-policy"], runs: 1)
        ours.latencies += one.latencies
        theirs.latencies += other.latencies
    }
    rows.append(Row(
        name: "classify 24 USB devices under umockdev, whole command (holdfast usb explain --json)",
        holdfast: String(format: "p50 %.1f ms, p99 %.1f ms per run", ours.percentile(0.5) * 1000, ours.percentile(0.99) * 1000),
        anchorName: "usbguard generate-policy, same testbed",
        anchor: String(format: "p50 %.1f ms, p99 %.1f ms per run", theirs.percentile(0.5) * 1000, theirs.percentile(0.99) * 1000),
        ratio: String(format: "%.2f× the anchor's time", ours.percentile(0.5) / theirs.percentile(0.5))
    ))
} else {
    print("note: skipping the USB row (needs umockdev-run, usbguard and a release holdfast beside holdfast-bench)")
}

// MARK: USB enforcement latency (Benchmarks/usb: holdfastd and usbguard-daemon, same trigger)

let holdfastd = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("holdfastd").path
let usbBench = Products.packageRoot() + "/Benchmarks/usb/run"
if wanted("usb"), getuid() == 0, FileManager.default.fileExists(atPath: "/usr/sbin/usbguard-daemon"), FileManager.default.fileExists(atPath: holdfastd) {
    let plugs = ProcessInfo.processInfo.environment["USB_PLUGS"] ?? "1000"
    print("note: USB decision latency, \(plugs) plugs per agent (about a minute)…")
    let result = try runProcess(usbBench, [holdfastd, plugs])
    let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("USB-BENCH-JSON ") }
    if let line, let report = try JSONSerialization.jsonObject(with: Data(line.dropFirst("USB-BENCH-JSON ".count).utf8)) as? [String: Any],
        let ours = report["holdfast"] as? [String: Any], let theirs = report["usbguard"] as? [String: Any],
        let ourP99 = ours["p99_ms"] as? Double, let theirP99 = theirs["p99_ms"] as? Double
    {
        let figure = { (side: [String: Any]) in
            String(format: "p50 %.2f ms, p99 %.2f ms, max %.1f ms", side["p50_ms"] as? Double ?? 0, side["p99_ms"] as? Double ?? 0, side["max_ms"] as? Double ?? 0)
        }
        let rss = Double(ours["rss_kib"] as? Int ?? 0) / 1024
        let timeouts = (ours["timeouts"] as? Int ?? 0) + (theirs["timeouts"] as? Int ?? 0)
        rows.append(Row(
            name: "USB stick appears → authorized=0 written (\(report["plugs"] ?? plugs) plugs each, umockdev, fanotify-timed)",
            holdfast: figure(ours) + String(format: "; holdfastd RSS %.1f MiB after the run", rss) + (timeouts > 0 ? "; \(timeouts) timeouts" : ""),
            anchorName: "usbguard-daemon \(report["usbguard_version"] ?? "") (umockdev backend), same trigger",
            anchor: figure(theirs),
            ratio: String(format: "p99 %.2f× the anchor's", ourP99 / theirP99)
        ))
    } else {
        print("note: the USB latency benchmark failed: \(result.stderr.split(separator: "\n").suffix(5).joined(separator: " | "))")
    }
} else {
    print("note: skipping the USB latency row (needs root, usbguard-daemon and a release holdfastd beside holdfast-bench)")
}

// MARK: Print gate (a private cupsd, a real IPP printer, release holdfastd and holdfast: backend)

let printBackend = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("holdfast-cups-backend").path
if wanted("print"), getuid() == 0, FileManager.default.fileExists(atPath: "/usr/sbin/cupsd"), FileManager.default.fileExists(atPath: "/usr/sbin/ippeveprinter"),
    FileManager.default.fileExists(atPath: holdfastd), FileManager.default.fileExists(atPath: printBackend)
{
    let jobs = Int(ProcessInfo.processInfo.environment["PRINT_JOBS"] ?? "") ?? 500
    print("note: print gate, \(jobs) jobs through a private cupsd (about a minute)…")
    let work = TemporaryDirectory()
    chmod(work.path, 0o755)
    try FileManager.default.createDirectory(atPath: work.file("run"), withIntermediateDirectories: true)
    chmod(work.file("run"), 0o755)
    let controlSocket = work.file("run/control.sock")
    let cups = try CupsTestbed(controlSocket: controlSocket, backend: printBackend)
    let uriPattern = cups.printerURI.replacingOccurrences(of: "/ipp/print", with: "/*")
    try #"{"print": {"approved": [{"id": "bench", "name": "bench", "uri": "\#(uriPattern)"}], "quota": {"pages_per_day": 1000000, "jobs_per_day": 1000000}}}"#
        .writeReplacing(toFile: work.file("policy.json"))
    try "[agent]\nstate_dir = \(work.file("state"))\ncontrol_socket = \(controlSocket)\npolicy = \(work.file("policy.json"))\nlog_level = notice\n[usb]\nenabled = no\n[print]\ncups_server = \(cups.socket)\ncups_server_root = \(cups.serverRoot)\n[filewatch]\nenabled = no\n"
        .writeReplacing(toFile: work.file("agent.conf"))
    chmod(work.file("policy.json"), 0o644)
    chmod(work.file("agent.conf"), 0o644)
    _ = try cups.addQueue("bench", uri: cups.printerURI)
    let agent = try SpawnedProcess([holdfastd, "--config", work.file("agent.conf")], environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], log: work.file("holdfastd.log"))
    let admin = CupsClient(server: cups.socket)
    func waitUntil(_ timeout: Double = 30, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() > deadline { return false }
            usleep(2_000)
        }
        return true
    }
    let gated = waitUntil { (try? admin.queues())?.first { $0.name == "bench" }?.realURI.gated == true }
    // Hardening reloads cupsd once at start; measure after it is back.
    usleep(1_500_000)
    _ = waitUntil { (try? admin.queues()) != nil }

    // The floor: a bare IPP round trip on the same cupsd (Get-Printer-Attributes, one connection).
    _ = try? admin.printerState("bench")
    let floor = try measure(jobs) { _ in _ = try admin.printerState("bench") }

    // Real jobs: lp as root, the backend times its own question (DEBUG line in cupsd's log).
    try simplePDF(pages: 1).writeReplacing(toFile: work.file("job.pdf"))
    chmod(work.file("job.pdf"), 0o644)
    var submitted = 0
    var lpFailure = ""
    for index in 0..<jobs {
        let result = try cups.run("/usr/bin/lp", ["-d", "bench", "-t", "bench \(index)", work.file("job.pdf")])
        if result.status == 0 { submitted += 1 } else { lpFailure = result.stderr }
    }
    if submitted < jobs { print("note: \(jobs - submitted) print jobs were refused by lp: \(lpFailure)") }
    func verdicts() -> [Double] {
        let log = (try? String(contentsOfFile: cups.cupsdLog, encoding: .utf8)) ?? ""
        return log.split(separator: "\n").compactMap { line -> Double? in
            guard let range = line.range(of: "Holdfast: verdict in ") else { return nil }
            return Double(line[range.upperBound...].split(separator: " ").first ?? "").map { $0 / 1e6 }
        }
    }
    // Until every job has its verdict, or no new verdict came for 20 s.
    var seen = 0
    var lastProgress = Date()
    _ = waitUntil(600) {
        let count = verdicts().count
        if count > seen { seen = count; lastProgress = Date() }
        return count >= submitted || Date().timeIntervalSince(lastProgress) > 20
    }
    let verdictLatencies = verdicts()
    let verdict = Measurement(operations: verdictLatencies.count, seconds: verdictLatencies.reduce(0, +), latencies: verdictLatencies)

    // Reconciliation: lpadmin adds a rogue queue; time until cupsd no longer lists it.
    var reconcile: [Double] = []
    var addOnly: [Double] = []
    for index in 0..<20 {
        let name = "rogue\(index)"
        let start = Date()
        _ = try cups.addQueue(name, uri: cups.printerURI)
        addOnly.append(Date().timeIntervalSince(start))
        _ = waitUntil { (try? admin.queues())?.contains { $0.name == name } == false }
        reconcile.append(Date().timeIntervalSince(start))
    }
    let reconcileMeasurement = Measurement(operations: reconcile.count, seconds: reconcile.reduce(0, +), latencies: reconcile)
    let addMeasurement = Measurement(operations: addOnly.count, seconds: addOnly.reduce(0, +), latencies: addOnly)
    let rss = (try? String(contentsOfFile: "/proc/\(agent.pid)/status", encoding: .utf8))?.split(separator: "\n")
        .first { $0.hasPrefix("VmRSS:") }.flatMap { Double($0.split(separator: " ")[1]) } ?? 0
    agent.stop()
    cups.stop()
    func ms(_ seconds: Double) -> String { String(format: "%.2f ms", seconds * 1e3) }
    if gated, verdict.operations > 0 {
        rows.append(Row(
            name: "print gate verdict, backend asks → answer (\(verdict.operations) real jobs via lp; ledger saved per job)",
            holdfast: "p50 \(ms(verdict.percentile(0.5))), p99 \(ms(verdict.percentile(0.99))); holdfastd RSS \(String(format: "%.1f", rss / 1024)) MiB",
            anchorName: "bare CUPS round trip (IPP Get-Printer-Attributes, same cupsd, \(floor.operations)×)",
            anchor: "p50 \(ms(floor.percentile(0.5))), p99 \(ms(floor.percentile(0.99)))",
            ratio: String(format: "p99 %.2f× the floor's; goal p99 < 10 ms", verdict.percentile(0.99) / max(floor.percentile(0.99), 1e-9))
        ))
        rows.append(Row(
            name: "rogue queue: lpadmin adds it → cupsd no longer lists it (20×, subscription pull)",
            holdfast: "p50 \(ms(reconcileMeasurement.percentile(0.5))), max \(ms(reconcileMeasurement.latencies.max() ?? 0))",
            anchorName: "the lpadmin add itself (CUPS-Add-Modify-Printer round trip)",
            anchor: "p50 \(ms(addMeasurement.percentile(0.5))), max \(ms(addMeasurement.latencies.max() ?? 0))",
            ratio: String(format: "max %.2f× the 2 s goal", (reconcileMeasurement.latencies.max() ?? 0) / 2)
        ))
    } else {
        let cupsLog = ((try? String(contentsOfFile: cups.cupsdLog, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains("[Job 1]") }.suffix(15)
        print("note: the print benchmark failed (queue gated: \(gated), verdicts seen: \(verdict.operations)); cupsd on job 1: \(cupsLog.joined(separator: "\n"))")
    }
} else {
    print("note: skipping the print rows (needs root, cupsd, ippeveprinter and a release holdfastd and holdfast-cups-backend beside holdfast-bench)")
}

// MARK: Audit parsing

if wanted("audit") {
    let records = ProcessInfo.processInfo.environment["AUDIT_RECORDS"].flatMap { Int($0) } ?? 1_000_000
    rows += try AuditBench.rows(records: records)
}

// MARK: FileWatch

if wanted("filewatch") {
    let environment = ProcessInfo.processInfo.environment
    let seconds = environment["FILEWATCH_SECONDS"].flatMap { Int($0) } ?? 60
    let perSecond = environment["FILEWATCH_RATE"].flatMap { Int($0) } ?? 1_000
    rows += try FileWatchBench.rows(seconds: seconds, rate: perSecond)
}

// MARK: Posture

if wanted("posture") {
    if FileManager.default.fileExists(atPath: holdfastBinary) {
        rows += try PostureBench.rows(holdfast: holdfastBinary)
    } else {
        print("note: skipping the posture rows (needs a release holdfast beside holdfast-bench)")
    }
}

// MARK: Broker

if wanted("broker") {
    let broker = URL(fileURLWithPath: holdfastBinary).deletingLastPathComponent().appendingPathComponent("holdfast-broker").path
    if FileManager.default.fileExists(atPath: broker) {
        rows += try BrokerBench.rows(broker: broker)
        rows += try BrokerHandlerBench.rows()
        rows += try BrokerLoadBench.rows(broker: broker)
        rows += try OffboardingBench.rows(broker: broker)
        if getuid() == 0, FileManager.default.fileExists(atPath: holdfastd) {
            rows += try LoginCheckBench.rows(broker: broker, holdfastd: holdfastd, holdfast: holdfastBinary)
            rows += try LockdownBench.rows(broker: broker, holdfastd: holdfastd, holdfast: holdfastBinary)
            rows += try ExceptionBench.rows(broker: broker, holdfastd: holdfastd, holdfast: holdfastBinary)
        }
    } else {
        print("note: skipping the broker rows (needs a release holdfast-broker beside holdfast-bench)")
    }
}

// MARK: Report

print("Holdfast \(HoldfastVersion.current) benchmarks — \(ProcessInfo.processInfo.activeProcessorCount) cores, release build")
print("")
print("| benchmark | Holdfast | anchor | anchor figure | Holdfast vs anchor |")
print("|---|---|---|---|---|")
for row in rows {
    print("| \(row.name) | \(row.holdfast) | \(row.anchorName) | \(row.anchor) | \(row.ratio) |")
}
print("")
print("Ratio: Holdfast's time per operation divided by the anchor's (1.00× = as fast; lower is better).")
