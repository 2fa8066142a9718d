import Foundation
import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

/// The three executables, run as a person or a script would run them.
@Suite struct ExecutableTests {
    let holdfast = Products.path("holdfast")
    let broker = Products.path("holdfast-broker")
    let daemon = Products.path("holdfastd")

    @Test(arguments: ["holdfast", "holdfast-broker", "holdfastd"])
    func printsItsVersion(_ tool: String) throws {
        let result = try runProcess(Products.path(tool), ["--version"])
        #expect(result.status == 0)
        #expect(result.stdout == "\(tool) \(HoldfastVersion.current)\n")
    }

    @Test(arguments: ["holdfast", "holdfast-broker", "holdfastd"])
    func printsHelp(_ tool: String) throws {
        let result = try runProcess(Products.path(tool), ["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Usage: \(tool)"))
    }

    @Test func refusesAnUnknownCommandWithExit64() throws {
        let result = try runProcess(holdfast, ["frobnicate"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("unknown command 'frobnicate'"))
    }

    @Test func refusesAnUnknownOptionWithExit64() throws {
        let result = try runProcess(holdfast, ["verify", "--bogus"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("unknown option --bogus"))
    }

    @Test func signsAndVerifiesADocumentEndToEnd() throws {
        let directory = TemporaryDirectory()
        let key = directory.file("broker.key")
        #expect(try runProcess(broker, ["key", "generate", "--out", key]).status == 0)
        #expect(fileMode(key) == 0o600)
        let jwks = try runProcess(broker, ["key", "public", "--key", key])
        try jwks.stdout.writeReplacing(toFile: directory.file("jwks.json"))

        let signed = try runProcess(broker, ["sign", "--key", key, "--typ", "holdfast-policy+jws"], stdin: #"{"usb":{"default":"block"}}"#)
        #expect(signed.status == 0)
        let token = signed.stdout.trimmingCharacters(in: .newlines)

        let verified = try runProcess(holdfast, ["verify", "--jwks", directory.file("jwks.json"), "--typ", "holdfast-policy+jws", token])
        #expect(verified.status == 0)
        #expect(verified.stdout == #"{"usb":{"default":"block"}}"# + "\n")

        // One changed character in the payload: refused, exit 1, one clear line.
        var parts = token.split(separator: ".").map(String.init)
        parts[1] = Base64URL.encode(Array(#"{"usb":{"default":"allow"}}"#.utf8))
        let forged = try runProcess(holdfast, ["verify", "--jwks", directory.file("jwks.json"), parts.joined(separator: ".")])
        #expect(forged.status == 1)
        #expect(forged.stderr == "holdfast: refused: the signature does not verify\n")
    }

    @Test func verifiesJWTClaims() throws {
        let directory = TemporaryDirectory()
        let key = directory.file("broker.key")
        #expect(try runProcess(broker, ["key", "generate", "--out", key]).status == 0)
        let pem = try runProcess(broker, ["key", "public", "--key", key, "--format", "pem"])
        try pem.stdout.writeReplacing(toFile: directory.file("broker.pub"))
        let signed = try runProcess(broker, ["sign", "--jwt", "--key", key, "--aud", "gateway", "--iss", "broker", "--expires", "5m"], stdin: #"{"user":"alice"}"#)
        #expect(signed.status == 0)
        try signed.stdout.writeReplacing(toFile: directory.file("grant.jwt"))

        let good = try runProcess(holdfast, ["verify", "--jwt", "--aud", "gateway", "--iss", "broker", "--json", "--public-key", directory.file("broker.pub"), directory.file("grant.jwt")])
        #expect(good.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(good.stdout.utf8)) as? [String: Any]
        let payload = object?["payload"] as? [String: Any]
        #expect(payload?["user"] as? String == "alice")
        #expect(payload?["aud"] as? String == "gateway")
        #expect(object?["valid"] as? Bool == true)

        let wrongAudience = try runProcess(holdfast, ["verify", "--jwt", "--aud", "vpn", "--public-key", directory.file("broker.pub"), directory.file("grant.jwt")])
        #expect(wrongAudience.status == 1)
        #expect(wrongAudience.stderr.contains("not for audience vpn"))
    }

    @Test func refusesAKeyFileOthersCanRead() throws {
        let directory = TemporaryDirectory()
        let key = directory.file("broker.key")
        #expect(try runProcess(broker, ["key", "generate", "--out", key]).status == 0)
        chmod(key, 0o644)
        let result = try runProcess(broker, ["key", "public", "--key", key])
        #expect(result.status == 1)
        #expect(result.stderr.contains("refusing key file"))
        #expect(result.stderr.contains("0600"))
    }

    @Test func refusesToReplaceAKeyWithoutForce() throws {
        let directory = TemporaryDirectory()
        let key = directory.file("broker.key")
        #expect(try runProcess(broker, ["key", "generate", "--out", key]).status == 0)
        let again = try runProcess(broker, ["key", "generate", "--out", key])
        #expect(again.status == 1)
        #expect(try runProcess(broker, ["key", "generate", "--out", key, "--force"]).status == 0)
    }

    @Test func journalsNotesAndReadsThemBack() throws {
        let directory = TemporaryDirectory()
        let state = directory.file("state")
        #expect(try runProcess(holdfast, ["journal", "note", "--state-dir", state, "maintenance start"]).status == 0)
        #expect(try runProcess(holdfast, ["journal", "note", "--state-dir", state, "maintenance end"]).status == 0)
        let tail = try runProcess(holdfast, ["journal", "tail", "--state-dir", state, "--json"])
        #expect(tail.status == 0)
        let lines = tail.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
        #expect(first?["message"] as? String == "maintenance start")
        #expect((first?["journal"] as? [String: Any])?["id"] as? Int == 1)
        #expect((first?["holdfast"] as? [String: Any])?["kind"] as? String == "operator.note")
        let stats = try runProcess(holdfast, ["journal", "stats", "--state-dir", state, "--json"])
        let counters = try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any]
        #expect(counters?["events"] as? Int == 2)
        #expect(counters?["pending_upload"] as? Int == 2)
        let check = try runProcess(holdfast, ["journal", "check", "--state-dir", state])
        #expect(check.status == 0)
        #expect(check.stdout == "ok\n")
    }

    @Test func printsACertificateFingerprint() throws {
        let directory = TemporaryDirectory()
        let certificate = directory.file("ca.pem")
        #expect(try runProcess("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", directory.file("ca.key"),
            "-out", certificate, "-subj", "/CN=test", "-days", "1",
        ]).status == 0)
        let openssl = try runProcess("/usr/bin/openssl", ["x509", "-in", certificate, "-noout", "-fingerprint", "-sha256"])
        let expected = (openssl.stdout.split(separator: "=").last ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: ":", with: "").lowercased()
        let result = try runProcess(broker, ["fingerprint", certificate])
        #expect(result.status == 0)
        #expect(result.stdout == "sha256:\(expected)\n")
    }
}

/// CLI edge cases found by review.
@Suite struct CommandLineRegressionTests {
    let holdfast = Products.path("holdfast")
    let broker = Products.path("holdfast-broker")

    @Test func refusesSingleDashOptions() throws {
        let result = try runProcess(holdfast, ["journal", "stats", "-x"])
        #expect(result.status == 64)
    }

    @Test func refusesEmptyOptionValues() throws {
        let result = try runProcess(broker, ["key", "generate", "--out="])
        #expect(result.status == 64)
        #expect(result.stderr.contains("--out needs a non-empty value"))
    }

    @Test func namesTheSubcommandsOfAGroup() throws {
        let result = try runProcess(holdfast, ["journal"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("needs a subcommand: tail, stats, check, note"))
    }

    @Test func takesEverythingAfterDoubleDashAsArguments() throws {
        let directory = TemporaryDirectory()
        let state = directory.file("state")
        #expect(try runProcess(holdfast, ["journal", "note", "--state-dir", state, "--", "--help"]).status == 0)
        let tail = try runProcess(holdfast, ["journal", "tail", "--state-dir", state])
        #expect(tail.stdout.hasSuffix("\t--help\n"))
    }

    @Test func escapesControlCharactersInTheTextView() throws {
        let directory = TemporaryDirectory()
        let state = directory.file("state")
        #expect(try runProcess(holdfast, ["journal", "note", "--state-dir", state, "fine\n99\tforged\u{1b}[31m"]).status == 0)
        let tail = try runProcess(holdfast, ["journal", "tail", "--state-dir", state])
        #expect(tail.stdout.split(separator: "\n").count == 1)
        #expect(tail.stdout.contains(#"fine\u{a}99\u{9}forged\u{1b}[31m"#))
    }

    @Test func readVerbsDoNotCreateAJournal() throws {
        let directory = TemporaryDirectory()
        let result = try runProcess(holdfast, ["journal", "stats", "--state-dir", directory.file("typo")])
        #expect(result.status == 69)
        #expect(result.stderr.contains("no journal at"))
        #expect(!FileManager.default.fileExists(atPath: directory.file("typo")))
    }

    @Test func refusesToSignNothing() throws {
        let directory = TemporaryDirectory()
        #expect(try runProcess(broker, ["key", "generate", "--out", directory.file("k")]).status == 0)
        let result = try runProcess(broker, ["sign", "--key", directory.file("k")], stdin: "")
        #expect(result.status == 65)
    }

    @Test func refusesANonRegularInputFile() throws {
        let directory = TemporaryDirectory()
        #expect(try runProcess(broker, ["key", "generate", "--out", directory.file("k")]).status == 0)
        #expect(try runProcess(broker, ["key", "public", "--key", directory.file("k")]).status == 0)
        let result = try runProcess(holdfast, ["verify", "--jwks", "/dev/zero", "a.b.c"])
        #expect(result.status == 65)
        #expect(result.stderr.contains("not a regular file"))
    }
}
