import BrokerClient
import Foundation
import HoldfastBroker
import HoldfastCrypto
import Testing

/// A pinned agent follows a signing-key rotation only through announcements signed by a key it
/// already pins.
@Suite struct KeyRotationTests {
    @Test func anAnnouncementByAPinnedKeyIsFollowedAlongAChain() throws {
        let old = try SigningKey.generate()
        let middle = try SigningKey.generate()
        let new = try SigningKey.generate()
        // Out of order on purpose: middle → new first, then old → middle.
        let announcements = [
            try Broker.announceKey(new.publicKey, signedBy: middle, at: 2),
            try Broker.announceKey(middle.publicKey, signedBy: old, at: 1),
        ]
        let keys = BrokerSession.acceptAnnouncements(announcements, pinned: [old.publicKey.jwk])
        #expect(keys.map(\.kid) == [old.publicKey.thumbprint, middle.publicKey.thumbprint, new.publicKey.thumbprint])
    }

    @Test(arguments: ["signed by an unpinned key", "wrong type", "garbage"])
    func anythingElseIsIgnored(_ scenario: String) throws {
        let old = try SigningKey.generate()
        let new = try SigningKey.generate()
        let announcement: String
        switch scenario {
        case "signed by an unpinned key":
            announcement = try Broker.announceKey(new.publicKey, signedBy: try SigningKey.generate(), at: 1)
        case "wrong type":
            let payload = Array(#"{"type":"holdfast.key_rotation","new":{"kty":"OKP","crv":"Ed25519","x":"\#(Base64URLText.encode(new.publicKey.rawRepresentation))"}}"#.utf8)
            announcement = try JWS.sign(payload, with: old, header: JWSHeader(keyID: old.publicKey.thumbprint, type: "holdfast-policy+jws"))
        default:
            announcement = "not.a.jws"
        }
        let keys = BrokerSession.acceptAnnouncements([announcement], pinned: [old.publicKey.jwk])
        #expect(keys.map(\.kid) == [old.publicKey.thumbprint])
    }
}

/// base64url without padding, for building a JWK by hand.
enum Base64URLText {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// The agent's reading of an enrollment token.
@Suite struct EnrollmentTokenTests {
    static func token(_ url: String) -> String {
        let json = #"{"url":"\#(url)","ca":"sha256:\#(String(repeating: "ab", count: 32))","key":"k","secret":"s"}"#
        return "hft1." + Base64URLText.encode(Array(json.utf8))
    }

    @Test(arguments: [("https://broker.example.com:8443", true), ("http://127.0.0.1:8080", true), ("http://localhost:1", true),
                      ("http://broker.example.com:80", false), ("https://user@broker.example.com", false), ("ftp://broker.example.com", false)])
    func onlyHTTPSOrLoopbackHTTP(_ url: String, _ accepted: Bool) {
        #expect(((try? EnrollmentToken(Self.token(url))) != nil) == accepted)
    }
}
