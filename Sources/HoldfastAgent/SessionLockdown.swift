import Dispatch
import FoundationEssentials
import HoldfastCore
import HoldfastDBus
import Lockdown
#if canImport(Glibc)
import Glibc
#endif

/// The `sessions` scope (docs/lockdown.md): every user session logind lists — uid ≥ 1000 and not
/// an exempt user (`[login] exempt`) — is ended (`TerminateSession`) or locked (`LockSession`),
/// as `[lockdown] sessions` says; while the scope is locked the login check denies every login
/// but the exempt ones. Without logind (no system bus, or nothing owns org.freedesktop.login1) the
/// scope is recorded but `unavailable`.
actor SessionLockdown: LockdownEnforcer {
    enum Action: String { case terminate, lock }

    private let action: Action
    private let exempt: @Sendable (String) -> Bool
    private let logger: Logger
    /// The first regular user's uid (login.defs(5) `UID_MIN`): system and greeter sessions are
    /// left alone.
    private let minimumUID: UInt32
    /// Sessions acted on in this lockdown (each is said once in the log).
    private var handled: Set<String> = []

    init(action: String, exempt: @escaping @Sendable (String) -> Bool, logger: Logger, loginDefs: String = "/etc/login.defs") {
        self.action = Action(rawValue: action) ?? .terminate
        self.exempt = exempt
        self.logger = logger
        minimumUID = Self.minimumUID(loginDefs)
    }

    func enforceLockdown(_ entry: LockdownEntry?) async -> String? {
        guard entry != nil else {
            handled = []
            return nil
        }
        let action = action
        let minimumUID = minimumUID
        let exempt = exempt
        let outcome: Result<[(LogindSession, String?)], DBusError> = await Self.offThread {
            do {
                let bus = try DBusConnection.system()
                var results: [(LogindSession, String?)] = []
                for session in try Logind.sessions(bus) where session.uid >= minimumUID && !exempt(session.user) {
                    do {
                        switch action {
                        case .terminate: try Logind.terminate(bus, session: session.id)
                        case .lock: try Logind.lock(bus, session: session.id)
                        }
                        results.append((session, nil))
                    } catch {
                        results.append((session, "\(error)"))
                    }
                }
                return .success(results)
            } catch let error as DBusError {
                return .failure(error)
            } catch {
                return .failure(DBusError("\(error)"))
            }
        }
        switch outcome {
        case .failure(let error):
            return "unavailable: logind does not answer on the system bus (\(error.description))"
        case .success(let results):
            var failed: [String] = []
            for (session, problem) in results {
                if let problem {
                    failed.append("session \(session.id) of \(session.user): \(problem)")
                } else if handled.insert(session.id).inserted {
                    logger.notice("sessions lockdown: \(action == .terminate ? "ended" : "locked") a session", ("session", session.id), ("user", session.user))
                }
            }
            return failed.isEmpty ? nil : "could not \(action.rawValue) " + failed.joined(separator: "; ")
        }
    }

    /// `UID_MIN` from login.defs, else 1000.
    static func minimumUID(_ path: String) -> UInt32 {
        guard let bytes = SmallFile.read(path, limit: 1 << 20) else { return 1_000 }
        for line in String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 2, words[0] == "UID_MIN", let value = UInt32(words[1]) { return value }
        }
        return 1_000
    }

    /// sd-bus blocks until the answer: not on the cooperative threads.
    static func offThread<Value: Sendable>(_ body: @escaping @Sendable () -> Value) async -> Value {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: body()) }
        }
    }
}
