import Foundation
import HoldfastCore
import HoldfastCrypto
import Testing

@Suite struct BreakGlassCodeTests {
    static let secret = Array(repeating: UInt8(7), count: 32)
    static let device = "hf-00000000000000aa"
    static let issued: Int64 = 1_800_000_000

    static func code(_ scopes: [LockdownScope] = [.network, .usb], duration: Int64 = 3_600) throws -> BreakGlassCode {
        try BreakGlassCode.issue(secret: secret, device: device, scopes: scopes, duration: duration, at: issued)
    }

    @Test func aCodeReadsBackOnItsDeviceInsideItsWindow() throws {
        let code = try Self.code()
        #expect(code.text.count == 17)
        #expect(code.text.split(separator: "-").map(\.count) == [4, 4, 4, 2])
        let read = try BreakGlassCode.verify(code.text, secret: Self.secret, device: Self.device, now: Self.issued + 600).get()
        #expect(read.scopes == [.usb, .network])
        #expect(read.startsAt == Self.issued / 60 * 60)
        #expect(read.endsAt == read.startsAt + 3_600)
        #expect(read.digest == code.digest)
        // Read over the phone: lower case, spaces, O for 0 and I or L for 1 are the same code.
        let spoken = code.text.lowercased().replacingOccurrences(of: "-", with: " ").replacingOccurrences(of: "0", with: "o").replacingOccurrences(of: "1", with: "l")
        #expect((try? BreakGlassCode.verify(spoken, secret: Self.secret, device: Self.device, now: Self.issued).get()) == read)
    }

    @Test func anotherDeviceAnotherSecretATypoOrTheWrongTimeIsRefused() throws {
        let code = try Self.code()
        #expect(BreakGlassCode.verify(code.text, secret: Self.secret, device: "hf-00000000000000bb", now: Self.issued) == .failure(.wrong))
        #expect(BreakGlassCode.verify(code.text, secret: Array(repeating: 8, count: 32), device: Self.device, now: Self.issued) == .failure(.wrong))
        // One character changed.
        var typo = Array(code.text)
        typo[5] = typo[5] == "A" ? "B" : "A"
        #expect(BreakGlassCode.verify(String(typo), secret: Self.secret, device: Self.device, now: Self.issued) != .success(code))
        // After its window, and long before it.
        #expect(BreakGlassCode.verify(code.text, secret: Self.secret, device: Self.device, now: Self.issued + 3_700) == .failure(.outsideWindow))
        #expect(BreakGlassCode.verify(code.text, secret: Self.secret, device: Self.device, now: Self.issued - 3_600) != .success(code))
        for bad in ["", "ABCD", "ABCD-EFGH-JKMN-PQR", "ABCD-EFGH-JKMN-PU", "!!!!-????-####-$$"] {
            #expect(BreakGlassCode.verify(bad, secret: Self.secret, device: Self.device, now: Self.issued) == .failure(.malformed))
        }
    }

    @Test func aWeekLongWindowIsFoundWhateverTheMinuteWrapping() throws {
        let code = try Self.code([.sessions], duration: 604_800)
        for later in [0, 86_400, 3 * 86_400, 7 * 86_400 - 60] as [Int64] {
            #expect((try? BreakGlassCode.verify(code.text, secret: Self.secret, device: Self.device, now: Self.issued + later).get())?.scopes == [.sessions])
        }
    }

    @Test func onlyTheListedDurationsAreIssued() {
        #expect(throws: CryptoError.self) { try Self.code(duration: 5_000) }
        #expect(throws: CryptoError.self) { try Self.code([], duration: 3_600) }
    }
}
