import Foundation
import HoldfastCore
import Testing

@Suite struct EventTests {
    let event = Event(
        id: UUID(uuidString: "6F1C2B1E-0D7B-4E43-9C1B-1C8D7A3F0A11") ?? UUID(),
        kind: "usb.decision",
        eventClass: .peripheralActivity,
        activityID: 1,
        activityName: "Connect",
        time: Date(timeIntervalSince1970: 1_796_000_000.123),
        severity: .high,
        status: .failure,
        message: "blocked USB mass storage 0781:5567",
        actor: Actor(user: .init(uid: "1000", name: "alice")),
        device: DeviceIdentity(uid: "dev-1", hostname: "ws-17"),
        details: ["vid": "0781", "interfaces": .array(["08:06:50"])]
    )

    @Test func encodesTheOCSFFields() throws {
        let json = try JSONSerialization.jsonObject(with: Data(EventCoding.encode(event))) as? [String: Any]
        #expect(json?["class_uid"] as? Int == 1010)
        #expect(json?["class_name"] as? String == "Peripheral Activity")
        #expect(json?["category_uid"] as? Int == 1)
        #expect(json?["type_uid"] as? Int == 101_001)
        #expect(json?["time"] as? Int == 1_796_000_000_123)
        #expect(json?["severity_id"] as? Int == 4)
        #expect(json?["severity"] as? String == "High")
        #expect(json?["status_id"] as? Int == 2)
        let metadata = json?["metadata"] as? [String: Any]
        #expect(metadata?["uid"] as? String == "6f1c2b1e-0d7b-4e43-9c1b-1c8d7a3f0a11")
        #expect(metadata?["version"] as? String == Event.schemaVersion)
        let holdfast = json?["holdfast"] as? [String: Any]
        #expect(holdfast?["kind"] as? String == "usb.decision")
        let device = json?["device"] as? [String: Any]
        #expect(device?["hostname"] as? String == "ws-17")
        #expect(device?["type_id"] as? Int == 2)
    }

    @Test func roundTripsThroughJSON() throws {
        let decoded = try EventCoding.decode(EventCoding.encode(event))
        #expect(decoded == event)
    }

    @Test func encodesEqualEventsAsEqualBytes() throws {
        #expect(try EventCoding.encode(event) == EventCoding.encode(event))
    }

    @Test func refusesAMetadataUIDThatIsNotAUUID() throws {
        var text = String(decoding: try EventCoding.encode(event), as: UTF8.self)
        text = text.replacingOccurrences(of: "6f1c2b1e-0d7b-4e43-9c1b-1c8d7a3f0a11", with: "not-a-uuid")
        #expect(throws: DecodingError.self) { try EventCoding.decode(Array(text.utf8)) }
    }
}

@Suite struct TextTests {
    @Test(arguments: [
        ("90s", 90), ("10m", 600), ("2h", 7_200), ("1d", 86_400), ("1w", 604_800), ("1h30m", 5_400),
    ] as [(String, Int64)])
    func parsesDurations(_ text: String, _ seconds: Int64) {
        #expect(DurationText.seconds(text) == seconds)
    }

    @Test(arguments: [(28_800, "8h"), (5_400, "1h30m"), (90, "1m30s"), (86_400 + 61, "1d1m1s"), (0, "0s"), (1, "1s")] as [(Int64, String)])
    func writesDurationsBack(_ seconds: Int64, _ text: String) {
        #expect(DurationText.text(seconds) == text)
        if seconds > 0 { #expect(DurationText.seconds(text) == seconds) }
    }

    @Test(arguments: ["", "10", "m", "-5m", "0s", "5x", "1.5h", "99999999999999999999s"])
    func refusesBadDurations(_ text: String) {
        #expect(DurationText.seconds(text) == nil)
    }

    @Test(arguments: [
        ("plain Cruzer Blade", "plain Cruzer Blade"),
        ("\u{1B}[2Jcleared", "\\u{1b}[2Jcleared"),
        ("line\nbreak", "line\\u{a}break"),
        ("evil\u{202E}txt.exe", "evil\\u{202e}txt.exe"),
        ("zero\u{200B}width", "zero\\u{200b}width"),
        ("isolate\u{2066}x\u{2069}", "isolate\\u{2066}x\\u{2069}"),
        // A literal backslash sequence cannot pass for an escape.
        ("not\\u{a}a break", "not\\\\u{a}a break"),
        ("Grüße 日本", "Grüße 日本"),
    ])
    func deviceStringsPrintAsWhatTheyHold(_ text: String, _ printed: String) {
        #expect(Printable.escape(text) == printed)
    }

    @Test func quotesJSONStrings() {
        #expect(JSONText.quote("a\"b\\c\n\u{01}é") == #""a\"b\\c\n\u0001é""#)
    }

    @Test func encodesAndDecodesHex() {
        #expect(Hex.encode([0x00, 0xAB, 0xFF]) == "00abff")
        #expect(Hex.decode("00:AB:ff") == [0x00, 0xAB, 0xFF])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}
