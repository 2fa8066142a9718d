import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real `holdfast-broker serve` on loopback for tests that need one beside another harness
/// (umockdev, cupsd): its CA and keys, its state, one admin (`alice`), stopped when let go.
public final class TestBroker {
    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    public let directory = TemporaryDirectory()
    public let port: Int
    public let url: String
    public var etc: String { directory.file("etc") }
    public var state: String { directory.file("state") }
    public var database: String { state + "/broker.sqlite" }
    private var adminToken = ""
    private var process: SpawnedProcess?
    /// Stops a broker started by `launch`.
    private var stopLaunched: (() -> Void)?
    /// How `serve` is started when not here (inside another harness's network namespace: the
    /// umockdev harness runs in one of its own). It returns how to stop it.
    private let launch: ((_ argv: [String], _ log: String) throws -> () -> Void)?
    static let executable = Products.path("holdfast-broker")

    /// `launch`: start `serve` elsewhere (its readiness is then the caller's to wait for: the
    /// first enrollment is retried).
    public init(launch: ((_ argv: [String], _ log: String) throws -> () -> Void)? = nil) throws {
        self.launch = launch
        chmod(directory.path, 0o755)
        port = try CupsTestbed.freePort()
        url = "https://localhost:\(port)"
        let initialized = try runProcess(Self.executable, ["init", "--hostname", "localhost", "--dir", etc])
        guard initialized.status == 0 else { throw Failure(message: "broker init: \(initialized.stderr)") }
        let admin = try runProcess(Self.executable, ["admin", "add", "alice", "--state-dir", state])
        guard admin.status == 0 else { throw Failure(message: "admin add: \(admin.stderr)") }
        adminToken = admin.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try start()
    }

    deinit { stop() }

    /// Starts (or restarts) `serve` and waits until `/v1/health` answers.
    public func start() throws {
        stop()
        let log = directory.file("broker.log")
        try "".writeReplacing(toFile: log)
        let argv = [Self.executable, "serve", "--url", url, "--listen", "127.0.0.1:\(port)", "--dir", etc, "--state-dir", state, "--threads", "2"]
        if let launch {
            stopLaunched = try launch(argv, log)
            return
        }
        process = try SpawnedProcess(argv, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], log: log)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let health = try? runProcess("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "--cacert", etc + "/ca.pem", url + "/v1/health"]),
               health.stdout == "200" { return }
            usleep(100_000)
        }
        throw Failure(message: "the broker did not start: \(log)")
    }

    public func stop() {
        process?.stop()
        process = nil
        stopLaunched?()
        stopLaunched = nil
    }

    /// `holdfast-broker ARGS --state-dir …` as admin alice.
    public func cli(_ arguments: [String]) throws -> ProcessResult {
        try runProcess(Self.executable, arguments + ["--state-dir", state], environment: ["HOLDFAST_ADMIN_TOKEN": adminToken, "PATH": "/usr/bin:/bin"])
    }

    /// A one-time enrollment token.
    public func token() throws -> String {
        let created = try cli(["token", "create", "--url", url, "--expires", "1h", "--dir", etc])
        guard created.status == 0 else { throw Failure(message: "token create: \(created.stderr)") }
        return created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `holdfast-broker requests --all --json`, parsed.
    public func requests() throws -> [[String: Any]] {
        let listed = try cli(["requests", "--all", "--json"])
        guard listed.status == 0 else { throw Failure(message: "requests: \(listed.stderr)") }
        return (try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]) ?? []
    }

    /// Signs `payload` as a command with `key` (the broker's own unless given) and slips it into
    /// the store under `sequence`, as someone with write access to the database could.
    public func insertCommand(device: String, sequence: Int, action: String, payload: String, key: String? = nil) throws {
        let file = directory.file("command-\(sequence).json")
        try payload.writeReplacing(toFile: file)
        let signed = try runProcess(Self.executable, ["sign", "--key", key ?? etc + "/signing.key", "--typ", "holdfast-command+jws", file])
        guard signed.status == 0 else { throw Failure(message: "sign: \(signed.stderr)") }
        let document = signed.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let now = Int(Date().timeIntervalSince1970)
        let inserted = try runProcess("/usr/bin/sqlite3", ["-cmd", ".timeout 10000", database,
            "INSERT INTO commands (device, seq, action, scopes, reason, admin, issued_at, expires_at, document) VALUES ('\(device)', \(sequence), '\(action)', '', 'inserted', 'mallory', \(now), \(now + 3_600), '\(document)')"])
        guard inserted.status == 0 else { throw Failure(message: "insert: \(inserted.stderr)") }
    }

    /// The `[broker]`-side lines an agent.conf needs to talk to this broker fast in tests.
    public static let agentSection = """
        [broker]
        attest_interval = 5m
        policy_wait = 2s
        """
}
