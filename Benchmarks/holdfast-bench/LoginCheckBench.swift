import Foundation
import HoldfastTestSupport

/// Issue 12's login row: `holdfast-login-check` as pam_exec runs it (a whole process, PAM_USER
/// set), against a release holdfastd enrolled with a release broker on loopback — fresh (the broker
/// answers: a new attestation per login) beside cached (the broker stopped: the last verdict
/// inside the grace window); and the same cached logins through the full CLI's
/// `holdfast login-check`, whose start-up the thin binary avoids. Goals: p99 under 300 ms fresh,
/// 20 ms cached.
enum LoginCheckBench {
    static func rows(broker: String, holdfastd: String, holdfast: String, runs: Int = 50) throws -> [Row] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("holdfast-login-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        chmod(directory, 0o755)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = BrokerBench.freePort()
        let url = "https://localhost:\(port)"
        _ = try BrokerBench.run(broker, ["init", "--hostname", "localhost", "--dir", directory + "/etc"])
        let admin = try BrokerBench.run(broker, ["admin", "add", "bench", "--state-dir", directory + "/state"])
        var server: BrokerBench.Child? = try BrokerBench.Child(broker, ["serve", "--url", url, "--listen", "127.0.0.1:\(port)", "--dir", directory + "/etc", "--state-dir", directory + "/state"])
        let config = directory + "/agent.conf"
        try """
            [usb]
            enabled = no
            [print]
            enabled = no
            [filewatch]
            enabled = no
            [agent]
            state_dir = \(directory)/agent
            control_socket = \(directory)/run/control.sock
            policy = \(directory)/policy.json
            [login]
            offline_grace = 1h

            """.writeReplacing(toFile: config)
        try #"{"version": 1, "usb": {}}"#.writeReplacing(toFile: directory + "/policy.json")
        chmod(config, 0o644)
        chmod(directory + "/policy.json", 0o644)
        let agent = try BrokerBench.Child(holdfastd, ["--config", config])
        defer { withExtendedLifetime(agent) {} }
        let socket = directory + "/run/control.sock"
        for _ in 0..<100 where (try? BrokerBench.run(holdfast, ["--socket", socket, "status"])) == nil || !FileManager.default.fileExists(atPath: socket) {
            usleep(100_000)
        }
        let token = try BrokerBench.run(broker, ["token", "create", "--url", url, "--dir", directory + "/etc", "--state-dir", directory + "/state"], environment: ["HOLDFAST_ADMIN_TOKEN": admin])
        _ = try BrokerBench.run(holdfast, ["--socket", socket, "enroll", "--token", token])
        for _ in 0..<150 {
            if let grant = try? BrokerBench.run(holdfast, ["--socket", socket, "grant"]), !grant.isEmpty { break }
            usleep(200_000)
        }
        let thin = URL(fileURLWithPath: holdfast).deletingLastPathComponent().appendingPathComponent("holdfast-login-check").path
        func series(fullCLI: Bool = false) throws -> (Measurement, Int) {
            var allowed = 0
            let measured = try measure(runs) { _ in
                let status = try spawnAndWait(
                    fullCLI ? holdfast : thin, (fullCLI ? ["login-check"] : []) + ["--socket", socket, "--config", config],
                    environment: ["PAM_USER": "nobody", "PAM_TYPE": "account", "PAM_TTY": "pts/1", "PAM_SERVICE": "bench"])
                if status == 0 { allowed += 1 }
            }
            return (measured, allowed)
        }
        let (fresh, freshAllowed) = try series()
        server = nil
        usleep(300_000)
        let (cached, cachedAllowed) = try series()
        let (full, fullAllowed) = try series(fullCLI: true)
        withExtendedLifetime(server) {}
        return [Row(
            name: "holdfast-login-check as pam_exec runs it (whole process; \(runs) logins each): fresh attestation vs the broker stopped (cached verdict)",
            holdfast: String(format: "fresh p50 %.1f ms, p99 %.1f ms (%d/%d allowed); the full CLI's holdfast login-check, cached: p50 %.1f ms, p99 %.1f ms (%d/%d)",
                             fresh.percentile(0.5) * 1e3, fresh.percentile(0.99) * 1e3, freshAllowed, runs, full.percentile(0.5) * 1e3, full.percentile(0.99) * 1e3, fullAllowed, runs),
            anchorName: "cached: the same logins with the broker stopped (connection refused), the last verdict decides",
            anchor: String(format: "p50 %.1f ms, p99 %.1f ms (%d/%d allowed)", cached.percentile(0.5) * 1e3, cached.percentile(0.99) * 1e3, cachedAllowed, runs),
            ratio: String(format: "fresh %.2f× cached (p99); goals p99 < 300 ms fresh, < 20 ms cached", fresh.percentile(0.99) / max(cached.percentile(0.99), 1e-9)))]
    }
}
