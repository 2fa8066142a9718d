public import HoldfastCore

/// A break-glass code (docs/lockdown.md, "Break-glass"): 14 characters an admin reads over the
/// phone (`7K3Q-9MXD-4HTR-2B`) that lift lockdown scopes on one device for one window, verified by
/// the agent offline with the secret the broker gave it at enrollment.
///
/// 70 bits, Crockford's base32 (no I, L, O, U; read case-insensitively, O as 0, I and L as 1):
/// the scopes (4 bits), the window's length (4 bits, an index into `durations`), the window's
/// start in minutes modulo 2^14 (about 11 days: the agent takes the latest such minute not after
/// its clock), 8 random bits, and 40 bits of HMAC-SHA-256 under the device's secret over all of
/// that with the device id and the full start minute. Guessing a MAC is one in 2^40 per try, and
/// the agent allows five wrong tries per 15 minutes.
public struct BreakGlassCode: Sendable, Equatable {
    /// The window lengths a code can carry, seconds.
    public static let durations: [Int64] = [900, 1_800, 3_600, 7_200, 14_400, 28_800, 43_200, 86_400, 172_800, 259_200, 432_000, 604_800]
    static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
    static let scopeBits: [(LockdownScope, UInt8)] = [(.usb, 1), (.print, 2), (.network, 4), (.sessions, 8)]
    static let startModulus: Int64 = 1 << 14
    /// A code issued a little ahead of the agent's clock is still taken.
    public static let skew: Int64 = 300

    public let scopes: [LockdownScope]
    /// The window's first minute (minutes since 1970).
    public let startMinute: Int64
    public let duration: Int64
    let salt: UInt8
    let mac: [UInt8]

    public var startsAt: Int64 { startMinute * 60 }
    public var endsAt: Int64 { startsAt + duration }

    /// Issues a code for `scopes`, valid from this minute for `duration` (one of `durations`).
    public static func issue(secret: [UInt8], device: String, scopes: [LockdownScope], duration: Int64, at time: Int64) throws(CryptoError) -> BreakGlassCode {
        guard durations.contains(duration), !scopes.isEmpty else { throw CryptoError(.malformed, "a break-glass code takes one of the listed durations and at least one scope") }
        let salt = try SecureRandom.bytes(1)[0]
        let minute = time / 60
        let ordered = scopeBits.map(\.0).filter(scopes.contains)
        return BreakGlassCode(scopes: ordered, startMinute: minute, duration: duration, salt: salt,
                              mac: Self.mac(secret: secret, device: device, scopes: ordered, minute: minute, duration: duration, salt: salt))
    }

    /// Why a code was not taken.
    public enum Refusal: String, Error, Sendable, Equatable {
        /// Not 14 characters of the alphabet, or fields no code has.
        case malformed
        /// Not made with this device's secret (a typo, another device's code, a guess).
        case wrong
        /// Its window has ended, or has not begun.
        case outsideWindow = "outside-window"
    }

    /// Reads and checks a code the user typed, at the agent's time `now`.
    public static func verify(_ text: String, secret: [UInt8], device: String, now: Int64) -> Result<BreakGlassCode, Refusal> {
        guard let value = decode(text) else { return .failure(.malformed) }
        let mask = UInt8(value >> 66)
        let durationIndex = Int((value >> 62) & 0xF)
        let start = Int64((value >> 48) & 0x3FFF)
        let salt = UInt8((value >> 40) & 0xFF)
        let mac = (0..<5).map { UInt8(truncatingIfNeeded: value >> (8 * (4 - UInt128($0)))) }
        let scopes = scopeBits.filter { mask & $0.1 != 0 }.map(\.0)
        guard mask != 0, durationIndex < durations.count else { return .failure(.malformed) }
        // The latest minute with these low bits not after the agent's clock (plus the skew).
        let latest = (now + skew) / 60
        let minute = latest - ((latest - start) % startModulus + startModulus) % startModulus
        let code = BreakGlassCode(scopes: scopes, startMinute: minute, duration: durations[durationIndex], salt: salt, mac: mac)
        guard ConstantTime.equals(mac, Self.mac(secret: secret, device: device, scopes: scopes, minute: minute, duration: code.duration, salt: salt)) else {
            return .failure(.wrong)
        }
        guard now + skew >= code.startsAt, now < code.endsAt else { return .failure(.outsideWindow) }
        return .success(code)
    }

    /// The 14 characters, grouped for reading aloud: `7K3Q-9MXD-4HTR-2B`.
    public var text: String {
        guard let durationIndex = Self.durations.firstIndex(of: duration) else { return "" }
        let mask = Self.scopeBits.filter { scopes.contains($0.0) }.reduce(UInt8(0)) { $0 | $1.1 }
        var value = UInt128(mask) << 66 | UInt128(durationIndex) << 62 | UInt128(UInt64(startMinute % Self.startModulus)) << 48 | UInt128(salt) << 40
        for (index, byte) in mac.enumerated() { value |= UInt128(byte) << (8 * (4 - UInt128(index))) }
        var characters: [UInt8] = []
        for position in (0..<14).reversed() { characters.append(Self.alphabet[Int((value >> (5 * UInt128(position))) & 0x1F)]) }
        let plain = String(decoding: characters, as: UTF8.self)
        let chunks = stride(from: 0, to: 14, by: 4).map { String(plain.dropFirst($0).prefix(4)) }
        return chunks.joined(separator: "-")
    }

    /// An identifier of the code for trails and one-time use (SHA-256 of its 14 characters): the
    /// broker and the agent name the same code the same way without writing the code itself down.
    public var digest: String { SHA256.hex(Array(text.filter { $0 != "-" }.utf8)) }

    static func decode(_ text: String) -> UInt128? {
        var value: UInt128 = 0
        var count = 0
        for byte in text.uppercased().utf8 {
            if byte == UInt8(ascii: "-") || byte == UInt8(ascii: " ") { continue }
            let mapped: UInt8 = switch byte {
            case UInt8(ascii: "O"): UInt8(ascii: "0")
            case UInt8(ascii: "I"), UInt8(ascii: "L"): UInt8(ascii: "1")
            default: byte
            }
            guard let digit = alphabet.firstIndex(of: mapped), count < 14 else { return nil }
            value = value << 5 | UInt128(digit)
            count += 1
        }
        return count == 14 ? value : nil
    }

    static func mac(secret: [UInt8], device: String, scopes: [LockdownScope], minute: Int64, duration: Int64, salt: UInt8) -> [UInt8] {
        let message = "holdfast-breakglass-v1\n\(device)\n\(scopes.map(\.rawValue).joined(separator: ","))\n\(minute)\n\(duration)\n\(salt)"
        return Array(HMACSHA256.mac(key: secret, message: Array(message.utf8)).prefix(5))
    }
}
