import BrokerClient
import Foundation
import HoldfastCrypto
import HoldfastTestSupport
import Posture

/// The broker: an attestation round trip (challenge, a full signed posture report, verdict and
/// grant) against the bare HTTPS round trips it is made of; and a gateway asking `/v1/authz`
/// through nginx `auth_request` against the same nginx answering without the check.
enum BrokerBench {
    final class Child {
        let process = Process()
        init(_ executable: String, _ arguments: [String]) throws {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
        }
        deinit {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
    }

    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func freePort() -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Per-request times from one curl process fetching `url` `count` times over one connection.
    static func curlSeries(_ url: String, count: Int, extra: [String]) throws -> Measurement {
        var arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}\\n"] + extra
        for _ in 0..<count { arguments.append(url) }
        let started = ContinuousClock.now
        let output = try run("/usr/bin/curl", arguments)
        let elapsed = (ContinuousClock.now - started).seconds
        var latencies: [Double] = []
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, fields[0] == "200", let seconds = Double(fields[1]) else { continue }
            latencies.append(seconds)
        }
        return Measurement(operations: latencies.count, seconds: elapsed, latencies: latencies)
    }

    static func rows(broker: String) throws -> [Row] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("holdfast-broker-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o700)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = freePort()
        let url = "https://localhost:\(port)"
        _ = try run(broker, ["init", "--hostname", "localhost", "--dir", directory + "/etc"])
        let admin = try run(broker, ["admin", "add", "bench", "--state-dir", directory + "/state"])
        let server = try Child(broker, ["serve", "--url", url, "--listen", "127.0.0.1:\(port)", "--dir", directory + "/etc", "--state-dir", directory + "/state"])
        defer { withExtendedLifetime(server) {} }
        let caPEM = try String(contentsOfFile: directory + "/etc/ca.pem", encoding: .utf8)
        let health = HTTPClient(trust: .pinned(caPEM))
        let semaphore = DispatchSemaphore(value: 0)
        let box = ResultBox()
        Task {
            do {
                // Wait for the broker, then enroll in process as holdfastd would.
                for _ in 0..<100 {
                    if (try? await health.send("GET", url + "/v1/health", timeout: .seconds(2)))?.status == 200 { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                let token = try run(broker, ["token", "create", "--url", url, "--dir", directory + "/etc", "--state-dir", directory + "/state"], environment: ["HOLDFAST_ADMIN_TOKEN": admin])
                let key = try SigningKey.generate()
                let record = try await BrokerSession.enroll(token: try EnrollmentToken(token), key: key, facts: DeviceFacts(machineID: nil, dmiSerial: nil, hostname: "bench", os: nil))
                let session = BrokerSession(record: record, key: key)
                // A full report of this machine's checks, re-signed with each nonce.
                let checks = PostureCatalog.run(PostureContext(tree: RootTree("/"), system: LiveSystem(), now: Date().timeIntervalSince1970, cache: PatchCache()))
                let runs = 200
                var attestLatencies: [Double] = []
                var grant = ""
                let attestStart = ContinuousClock.now
                for _ in 0..<runs {
                    let before = ContinuousClock.now
                    let nonce = try await session.challenge()
                    let report = try PostureReport(device: record.deviceID, time: Date(), nonce: nonce, checks: checks, durationMilliseconds: 0).signed(with: key)
                    let outcome = try await session.attest(report: report, nonce: nonce, user: nil)
                    grant = outcome.grant ?? grant
                    attestLatencies.append((ContinuousClock.now - before).seconds)
                }
                let attest = Measurement(operations: runs, seconds: (ContinuousClock.now - attestStart).seconds, latencies: attestLatencies)
                var healthLatencies: [Double] = []
                let healthStart = ContinuousClock.now
                for _ in 0..<runs {
                    let before = ContinuousClock.now
                    _ = try await health.send("GET", url + "/v1/health", timeout: .seconds(5))
                    _ = try await health.send("GET", url + "/v1/health", timeout: .seconds(5))
                    healthLatencies.append((ContinuousClock.now - before).seconds)
                }
                let bare = Measurement(operations: runs, seconds: (ContinuousClock.now - healthStart).seconds, latencies: healthLatencies)
                box.set(.success((attest, bare, grant, checks.count)))
            } catch {
                box.set(.failure(error))
            }
            semaphore.signal()
        }
        semaphore.wait()
        let (attest, bare, grant, checkCount) = try box.get()
        var rows = [Row(
            name: "attestation round trip: challenge, full signed report (\(checkCount) checks, pre-computed), verdict + grant verified; one client, its connection kept alive as holdfastd's is (\(attest.operations)×)",
            holdfast: String(format: "p50 %.2f ms, p99 %.2f ms", attest.percentile(0.5) * 1e3, attest.percentile(0.99) * 1e3),
            anchorName: "two bare HTTPS GETs to the same broker, same client (the transport floor)",
            anchor: String(format: "p50 %.2f ms, p99 %.2f ms", bare.percentile(0.5) * 1e3, bare.percentile(0.99) * 1e3),
            ratio: String(format: "%.2f× the anchor's time (p50); goal: the broker adds little to TLS", attest.percentile(0.5) / max(bare.percentile(0.5), 1e-9)))]

        // The gateway: nginx with auth_request to the broker vs the same nginx without it.
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") else {
            print("note: skipping the gateway row (no /usr/sbin/nginx)")
            return rows
        }
        let upstream = freePort()
        let gateway = freePort()
        let floor = freePort()
        let nginxDirectory = directory + "/nginx"
        try FileManager.default.createDirectory(atPath: nginxDirectory + "/tmp", withIntermediateDirectories: true)
        chmod(directory, 0o755)
        try """
            worker_processes 1;
            pid \(nginxDirectory)/nginx.pid;
            events { worker_connections 256; }
            http {
                access_log off;
                client_body_temp_path \(nginxDirectory)/tmp; proxy_temp_path \(nginxDirectory)/tmp; fastcgi_temp_path \(nginxDirectory)/tmp;
                uwsgi_temp_path \(nginxDirectory)/tmp; scgi_temp_path \(nginxDirectory)/tmp;
                upstream broker { server 127.0.0.1:\(port); keepalive 8; }
                server { listen 127.0.0.1:\(upstream); location / { return 200 "ok\\n"; } }
                server { listen 127.0.0.1:\(floor); location / { proxy_pass http://127.0.0.1:\(upstream); } }
                server {
                    listen 127.0.0.1:\(gateway);
                    location = /_authz {
                        internal;
                        proxy_pass https://broker/v1/authz;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_pass_request_body off;
                        proxy_set_header Content-Length "";
                        proxy_ssl_trusted_certificate \(directory)/etc/ca.pem;
                        proxy_ssl_verify on;
                        proxy_ssl_name localhost;
                        proxy_ssl_server_name on;
                        proxy_ssl_session_reuse on;
                    }
                    location / { auth_request /_authz; proxy_pass http://127.0.0.1:\(upstream); }
                }
            }

            """.writeReplacing(toFile: nginxDirectory + "/nginx.conf")
        let nginx = try Child("/usr/sbin/nginx", ["-p", nginxDirectory, "-e", nginxDirectory + "/error.log", "-c", nginxDirectory + "/nginx.conf", "-g", "daemon off;"])
        defer { withExtendedLifetime(nginx) {} }
        usleep(300_000)
        let count = 2_000
        let header = ["-H", "Authorization: Bearer \(grant)"]
        _ = try curlSeries("http://127.0.0.1:\(gateway)/", count: 50, extra: header)
        let guarded = try curlSeries("http://127.0.0.1:\(gateway)/", count: count, extra: header)
        let open = try curlSeries("http://127.0.0.1:\(floor)/", count: count, extra: header)
        let direct = try curlSeries(url + "/v1/authz", count: count, extra: header + ["--cacert", directory + "/etc/ca.pem"])
        rows.append(Row(
            name: "gateway: nginx auth_request → /v1/authz (HTTPS, upstream keepalive) → upstream, \(guarded.operations) requests on one client connection",
            holdfast: String(format: "p50 %.3f ms, p99 %.3f ms (%@); /v1/authz alone p50 %.3f ms, p99 %.3f ms", guarded.percentile(0.5) * 1e3, guarded.percentile(0.99) * 1e3, rate(guarded.perSecond), direct.percentile(0.5) * 1e3, direct.percentile(0.99) * 1e3),
            anchorName: "the same nginx proxying to the same upstream without auth_request",
            anchor: String(format: "p50 %.3f ms, p99 %.3f ms (%@)", open.percentile(0.5) * 1e3, open.percentile(0.99) * 1e3, rate(open.perSecond)),
            ratio: String(format: "%.2f× the anchor's time (p50)", guarded.percentile(0.5) / max(open.percentile(0.5), 1e-9))))
        if guarded.operations < count || open.operations < count || direct.operations < count {
            print("note: some gateway requests did not answer 200 (guarded \(guarded.operations), open \(open.operations), direct \(direct.operations) of \(count))")
        }
        return rows
    }

    final class ResultBox: @unchecked Sendable {
        private var value: Result<(Measurement, Measurement, String, Int), any Error>?
        private let lock = NSLock()
        func set(_ result: Result<(Measurement, Measurement, String, Int), any Error>) { lock.lock(); value = result; lock.unlock() }
        func get() throws -> (Measurement, Measurement, String, Int) {
            lock.lock()
            defer { lock.unlock() }
            guard let value else { throw CocoaError(.featureUnsupported) }
            return try value.get()
        }
    }
}
