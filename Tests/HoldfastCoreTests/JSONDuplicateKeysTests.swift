import HoldfastCore
import Testing

@Suite struct JSONDuplicateKeysTests {
    @Test(arguments: [
        (#"{"a":1,"a":2}"#, "a"),
        (#"{"x":{"b":1,"b":2}}"#, "b"),
        (#"{"alg":1,"\u0061lg":2}"#, "alg"),
        (#"[{"k":1},{"k":2,"k":3}]"#, "k"),
        (#"{"\ud83d\ude00":1,"😀":2}"#, "😀"),
    ])
    func findsDuplicates(_ json: String, _ name: String) {
        #expect(JSONDuplicateKeys.first(in: Array(json.utf8)) == name)
    }

    @Test(arguments: [
        #"{"a":1,"b":{"a":2}}"#,
        #"[{"k":1},{"k":2}]"#,
        #"{"a":"{\"a\":1,\"a\":2}","b":["a","a"]}"#,
        #"{"a\"":1,"a":2}"#,
        "[]", "{}", #""a""#,
    ])
    func acceptsDistinctNames(_ json: String) {
        #expect(JSONDuplicateKeys.first(in: Array(json.utf8)) == nil)
    }
}
