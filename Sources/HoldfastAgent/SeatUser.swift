import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

/// Who sits at the workstation: the active session's user on `seat0`, from the state file
/// systemd-logind keeps (`/run/systemd/seats/seat0`, `ACTIVE_UID=`), the file sd_seat_get_active(3)
/// reads. Nil when there is no logind, no active session, or the file says nothing usable.
struct SeatUser: Sendable {
    let path: String

    init(path: String = "/run/systemd/seats/seat0") { self.path = path }

    func current() -> Actor? {
        guard let bytes = SmallFile.read(path), let uid = Self.activeUID(in: bytes) else { return nil }
        let name = getpwuid(uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } }
        return Actor(user: .init(uid: String(uid), name: name))
    }

    /// `ACTIVE_UID=1000` from logind's key=value seat file.
    static func activeUID(in bytes: [UInt8]) -> UInt32? {
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix("ACTIVE_UID=") else { continue }
            return UInt32(text.dropFirst("ACTIVE_UID=".count))
        }
        return nil
    }
}
