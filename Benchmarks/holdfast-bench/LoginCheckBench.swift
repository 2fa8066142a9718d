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
        let rig = try EnrolledAgent(name: "login", broker: broker, holdfastd: holdfastd, holdfast: holdfast, extra: "[login]\noffline_grace = 1h")
        let socket = rig.socket
        let config = rig.configuration
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
        rig.stopBroker()
        let (cached, cachedAllowed) = try series()
        let (full, fullAllowed) = try series(fullCLI: true)
        return [Row(
            name: "holdfast-login-check as pam_exec runs it (whole process; \(runs) logins each): fresh attestation vs the broker stopped (cached verdict)",
            holdfast: String(format: "fresh p50 %.1f ms, p99 %.1f ms (%d/%d allowed); the full CLI's holdfast login-check, cached: p50 %.1f ms, p99 %.1f ms (%d/%d)",
                             fresh.percentile(0.5) * 1e3, fresh.percentile(0.99) * 1e3, freshAllowed, runs, full.percentile(0.5) * 1e3, full.percentile(0.99) * 1e3, fullAllowed, runs),
            anchorName: "cached: the same logins with the broker stopped (connection refused), the last verdict decides",
            anchor: String(format: "p50 %.1f ms, p99 %.1f ms (%d/%d allowed)", cached.percentile(0.5) * 1e3, cached.percentile(0.99) * 1e3, cachedAllowed, runs),
            ratio: String(format: "fresh %.2f× cached (p99); goals p99 < 300 ms fresh, < 20 ms cached", fresh.percentile(0.99) / max(cached.percentile(0.99), 1e-9)))]
    }
}
