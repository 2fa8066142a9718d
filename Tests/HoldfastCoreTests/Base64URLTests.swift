import Foundation
import HoldfastCore
import Testing

@Suite struct Base64URLTests {
    // RFC 4648 §10 test vectors, unpadded.
    @Test(arguments: [
        ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"),
        ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy"),
    ])
    func encodesTheRFC4648Vectors(plain: String, encoded: String) {
        #expect(Base64URL.encode(Array(plain.utf8)) == encoded)
        #expect(Base64URL.decode(encoded) == Array(plain.utf8))
    }

    /// Every length and every byte value against Foundation's base64 with the URL-safe swap.
    @Test func matchesFoundationOnEveryLength() {
        var bytes: [UInt8] = []
        for length in 0..<600 {
            let expected = Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            #expect(Base64URL.encode(bytes) == expected, "length \(length)")
            #expect(Base64URL.encode(bytes[...]) == expected, "length \(length), a slice")
            #expect(Base64URL.decode(expected) == bytes, "length \(length)")
            bytes.append(UInt8(truncatingIfNeeded: length &* 167 &+ 13))
        }
    }

    @Test func usesTheURLSafeAlphabet() {
        #expect(Base64URL.encode([0xFB, 0xFF, 0xBF]) == "-_-_")
        #expect(Base64URL.decode("-_-_") == [0xFB, 0xFF, 0xBF])
    }

    @Test(arguments: [
        ("padding", "Zg=="),
        ("one leftover character", "Zm9vY"),
        ("standard alphabet plus", "+/8"),
        ("white space", "Zm9 v"),
        ("newline", "Zm9v\n"),
        ("non-zero leftover bits", "Zh"),
        ("non-ASCII", "Zé"),
    ])
    func refusesNonCanonicalText(_ name: String, _ text: String) {
        #expect(Base64URL.decode(text) == nil, "\(name)")
    }

    @Test func roundTripsRandomBytesWithAFixedSeed() {
        var generator = SeededGenerator(seed: 0x5EED)
        for length in 0..<200 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
    }
}

/// SplitMix64: deterministic randomness for fuzz-style tests.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
