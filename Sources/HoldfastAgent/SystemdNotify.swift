import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

/// The systemd notify protocol, spoken directly (sd_notify(3)): datagrams of `KEY=VALUE` lines to
/// the socket in `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
public struct SystemdNotifier: Sendable {
    public let socketPath: String
    /// Half of `$WATCHDOG_USEC`, when the watchdog is on and meant for this process.
    public let watchdogInterval: Duration?

    /// nil when the process was not started with `NOTIFY_SOCKET` (not under systemd).
    public init?(environment: [String: String]) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
        socketPath = path
        if let text = environment["WATCHDOG_USEC"], let microseconds = Int64(text), microseconds > 0,
            environment["WATCHDOG_PID"].map({ Int32($0) == getpid() }) ?? true
        {
            // Half the timeout, as sd_watchdog_enabled(3) suggests; never a busy loop.
            watchdogInterval = .microseconds(max(microseconds / 2, 50_000))
        } else {
            watchdogInterval = nil
        }
    }

    /// Sends one notification, e.g. `READY=1\nSTATUS=running`. Best effort: systemd may be gone.
    @discardableResult
    public func send(_ state: String) -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(socketPath.utf8)
        let abstract = path.first == UInt8(ascii: "@")
        if abstract { path[0] = 0 }
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.enumerated() { buffer[index] = byte }
        }
        // An abstract name's length is exact; a path's includes its terminating NUL.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (abstract ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { sendto(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
            }
        }
        return sent == message.count
    }
}
