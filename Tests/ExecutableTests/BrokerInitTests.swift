import Foundation
import HoldfastTestSupport
import Testing

/// `holdfast-broker init`: what it writes is checked with the openssl CLI, not with our own code.
@Suite struct BrokerInitTests {
    let broker = Products.path("holdfast-broker")

    @Test func theQuickStartIsAVerifiableChainAndPrivateKeys() throws {
        let directory = TemporaryDirectory()
        let target = directory.file("broker")
        let result = try runProcess(broker, ["init", "--hostname", "broker.test", "--dir", target])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(fileMode(target) == 0o700)
        for key in ["ca.key", "server.key", "signing.key"] { #expect(fileMode(target + "/" + key) == 0o600, "\(key)") }
        for certificate in ["ca.pem", "server.pem"] { #expect(fileMode(target + "/" + certificate) == 0o644, "\(certificate)") }
        let verified = try runProcess("/usr/bin/openssl", ["verify", "-CAfile", target + "/ca.pem", target + "/server.pem"])
        #expect(verified.status == 0, "\(verified.stdout) \(verified.stderr)")
        let extensions = try runProcess("/usr/bin/openssl", ["x509", "-in", target + "/server.pem", "-noout", "-ext", "subjectAltName,basicConstraints,extendedKeyUsage"])
        #expect(extensions.stdout.contains("DNS:broker.test"))
        #expect(extensions.stdout.contains("CA:FALSE"))
        #expect(extensions.stdout.contains("TLS Web Server Authentication"))
        let ca = try runProcess("/usr/bin/openssl", ["x509", "-in", target + "/ca.pem", "-noout", "-ext", "basicConstraints"])
        #expect(ca.stdout.contains("CA:TRUE"))
        // The key matches its certificate (same public key).
        let fromKey = try runProcess("/usr/bin/openssl", ["pkey", "-in", target + "/server.key", "-pubout"])
        let fromCertificate = try runProcess("/usr/bin/openssl", ["x509", "-in", target + "/server.pem", "-noout", "-pubkey"])
        #expect(fromKey.stdout == fromCertificate.stdout && !fromKey.stdout.isEmpty)
        // The fingerprint it prints is the one `fingerprint` gives (what agents pin).
        let fingerprint = try runProcess(broker, ["fingerprint", target + "/ca.pem"])
        #expect(result.stdout.contains("CA fingerprint      " + fingerprint.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        // Nothing is replaced without --force; a name that would inject extension syntax is refused.
        #expect(try runProcess(broker, ["init", "--hostname", "broker.test", "--dir", target]).status == 1)
        #expect(try runProcess(broker, ["init", "--hostname", "broker.test,DNS:evil.example", "--dir", directory.file("other")]).status == 1)
        let address = try runProcess(broker, ["init", "--hostname", "127.0.0.1", "--dir", directory.file("ip")])
        #expect(address.status == 0)
        #expect(try runProcess("/usr/bin/openssl", ["x509", "-in", directory.file("ip/server.pem"), "-noout", "-ext", "subjectAltName"]).stdout.contains("IP Address:127.0.0.1"))
    }
}

/// Named admins and one-time enrollment tokens through the CLI, over a real SQLite state.
@Suite struct BrokerAdminTests {
    let broker = Products.path("holdfast-broker")

    @Test func adminsBootstrapOnceAndTokensCarryWhatAgentsPin() throws {
        let directory = TemporaryDirectory()
        let config = directory.file("etc"), state = directory.file("state")
        #expect(try runProcess(broker, ["init", "--hostname", "broker.test", "--dir", config]).status == 0)
        let alice = try runProcess(broker, ["admin", "add", "alice", "--state-dir", state])
        #expect(alice.status == 0, "\(alice.stderr)")
        let token = alice.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("hfa_"))
        // After the bootstrap, only an admin adds admins.
        #expect(try runProcess(broker, ["admin", "add", "bob", "--state-dir", state]).status == 77)
        #expect(try runProcess(broker, ["admin", "add", "bob", "--state-dir", state], environment: ["HOLDFAST_ADMIN_TOKEN": "hfa_wrong"]).status == 77)
        #expect(try runProcess(broker, ["admin", "add", "bob", "--state-dir", state], environment: ["HOLDFAST_ADMIN_TOKEN": token]).status == 0)
        #expect(try runProcess(broker, ["admin", "add", "alice", "--state-dir", state], environment: ["HOLDFAST_ADMIN_TOKEN": token]).status == 1)

        #expect(try runProcess(broker, ["token", "create", "--url", "https://broker.test:8443", "--dir", config, "--state-dir", state]).status == 77)
        let created = try runProcess(broker, ["token", "create", "--url", "https://broker.test:8443", "--label", "desk-4", "--expires", "2h", "--dir", config, "--state-dir", state], environment: ["HOLDFAST_ADMIN_TOKEN": token])
        #expect(created.status == 0, "\(created.stderr)")
        let enrollment = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(enrollment.hasPrefix("hft1."))
        let body = try JSONSerialization.jsonObject(with: try #require(Data(base64URL: String(enrollment.dropFirst(5))))) as? [String: String]
        let fingerprint = try runProcess(broker, ["fingerprint", config + "/ca.pem"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(body?["url"] == "https://broker.test:8443")
        #expect(body?["ca"] == fingerprint)
        #expect(body?["key"]?.count == 43)
        let secret = try #require(body?["secret"])
        // Stored hashed: neither the admin token nor the enrollment secret is in the database.
        let database = try Data(contentsOf: URL(fileURLWithPath: state + "/broker.sqlite")) + ((try? Data(contentsOf: URL(fileURLWithPath: state + "/broker.sqlite-wal"))) ?? Data())
        #expect(database.range(of: Data(secret.utf8)) == nil)
        #expect(database.range(of: Data(token.utf8)) == nil)
        #expect(try runProcess(broker, ["token", "create", "--url", "http://broker.test", "--dir", config, "--state-dir", state], environment: ["HOLDFAST_ADMIN_TOKEN": token]).status == 64)
    }
}

extension Data {
    init?(base64URL text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        self.init(base64Encoded: base64)
    }
}

/// Cases a review found in the broker's CLI.
@Suite struct BrokerCLIRegressionTests {
    let broker = Products.path("holdfast-broker")

    @Test func initRefusesADirectoryOthersControlAndConstrainsItsCA() throws {
        let directory = TemporaryDirectory()
        let open = directory.file("open")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        chmod(open, 0o777)
        #expect(try runProcess(broker, ["init", "--hostname", "b.example", "--dir", open]).status == 77)
        let real = directory.file("real")
        try FileManager.default.createDirectory(atPath: real, withIntermediateDirectories: false)
        chmod(real, 0o700)
        try FileManager.default.createSymbolicLink(atPath: directory.file("link"), withDestinationPath: real)
        #expect(try runProcess(broker, ["init", "--hostname", "b.example", "--dir", directory.file("link")]).status == 77)
        for bad in ["a..b", "foo-.bar", "256.1.1.1", "127.1", "+1.+2.+3.+4", String(repeating: "a", count: 64) + ".example"] {
            #expect(try runProcess(broker, ["init", "--hostname", bad, "--dir", directory.file("bad")]).status == 1, "\(bad)")
        }
        // A long (valid) name fits: it is in subjectAltName, the CN is left out.
        let long = String(repeating: "a", count: 50) + ".example.com"
        #expect(try runProcess(broker, ["init", "--hostname", long, "--dir", directory.file("long")]).status == 0)
        let constraints = try runProcess("/usr/bin/openssl", ["x509", "-in", directory.file("long/ca.pem"), "-noout", "-ext", "nameConstraints"])
        #expect(constraints.stdout.contains("DNS:" + long))
        #expect(try runProcess("/usr/bin/openssl", ["verify", "-CAfile", directory.file("long/ca.pem"), directory.file("long/server.pem")]).status == 0)
    }

    @Test func tokensRefuseCleartextToRemoteHostsForeignCAsAndForgedLabels() throws {
        let directory = TemporaryDirectory()
        let config = directory.file("etc"), state = directory.file("state")
        #expect(try runProcess(broker, ["init", "--hostname", "broker.test", "--dir", config]).status == 0)
        let token = try runProcess(broker, ["admin", "add", "alice", "--state-dir", state]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let environment = ["HOLDFAST_ADMIN_TOKEN": token]
        for url in ["http://localhost.evil.com/", "http://127.0.0.1.evil.com", "http://127.0.0.1@evil.com", "http://localhost:80@evil.com", "https://", "https://user@broker.test"] {
            #expect(try runProcess(broker, ["token", "create", "--url", url, "--dir", config, "--state-dir", state], environment: environment).status == 64, "\(url)")
        }
        #expect(try runProcess(broker, ["token", "create", "--url", "http://127.0.0.1:8080", "--dir", config, "--state-dir", state], environment: environment).status == 0)
        #expect(try runProcess(broker, ["token", "create", "--url", "https://broker.test", "--label", "x\u{1B}[31m", "--dir", config, "--state-dir", state], environment: environment).status == 64)
        // A ca.pem someone else owns is not pinned into tokens.
        chown(config + "/ca.pem", 65_534, 65_534)
        #expect(try runProcess(broker, ["token", "create", "--url", "https://broker.test", "--dir", config, "--state-dir", state], environment: environment).status == 77)
    }

    @Test func racingBootstrapsMakeOneAdmin() throws {
        let directory = TemporaryDirectory()
        let state = directory.file("state")
        #expect(try runProcess(broker, ["admin", "list-nothing"]).status == 64)
        let processes = (0..<4).map { index -> Process in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: broker)
            process.arguments = ["admin", "add", "a\(index)", "--state-dir", state]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            return process
        }
        for process in processes { try process.run() }
        for process in processes { process.waitUntilExit() }
        #expect(processes.filter { $0.terminationStatus == 0 }.count == 1)
        #expect(processes.filter { $0.terminationStatus == 77 }.count == 3)
    }
}

/// `holdfast-broker serve` refusals before it listens, and bring-your-own certificates.
@Suite struct BrokerServeCLITests {
    let broker = Products.path("holdfast-broker")

    @Test(arguments: [
        (["--url", "https://b.test:8443", "--listen", "0.0.0.0:8443", "--insecure-http"], "plain HTTP only on a loopback address"),
        (["--url", "https://b.test:8443", "--listen", "10.1.2.3:8443", "--insecure-http"], "plain HTTP only on a loopback address"),
        (["--url", "http://b.test:8443"], "--url must be https://"),
        (["--url", "https://b.test:8443", "--grant-lifetime", "2h"], "at most 1h"),
        (["--url", "https://b.test:8443", "--threads", "0"], "--threads is 1…64"),
        (["--listen", "127.0.0.1:1"], "--url"),
    ])
    func refusesBeforeListening(_ arguments: [String], _ message: String) throws {
        let result = try runProcess(broker, ["serve"] + arguments)
        #expect(result.status == 64)
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }

    /// A certificate, key and CA from elsewhere (`--cert/--key/--ca`), served as given; a key file
    /// others can read is refused.
    @Test func bringYourOwnCertificates() throws {
        let directory = TemporaryDirectory()
        #expect(try runProcess(broker, ["init", "--hostname", "localhost", "--dir", directory.file("own")]).status == 0)
        #expect(try runProcess(broker, ["init", "--hostname", "localhost", "--dir", directory.file("etc")]).status == 0)
        let own = directory.file("own")
        let etc = directory.file("etc")
        chmod(own + "/server.key", 0o644)
        let refused = try runProcess(broker, ["serve", "--url", "https://localhost:1", "--listen", "127.0.0.1:0", "--dir", etc, "--cert", own + "/server.pem", "--key", own + "/server.key", "--ca", own + "/ca.pem", "--state-dir", directory.file("state")])
        #expect(refused.status == 77)
        #expect(refused.stderr.contains("mode 0600"))
        chmod(own + "/server.key", 0o600)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: broker)
        process.arguments = ["serve", "--url", "https://localhost:1", "--listen", "127.0.0.1:0", "--port-file", directory.file("port"), "--dir", etc,
                             "--cert", own + "/server.pem", "--key", own + "/server.key", "--ca", own + "/ca.pem", "--state-dir", directory.file("state")]
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        var port = ""
        for _ in 0..<300 where port.isEmpty {
            port = ((try? String(contentsOfFile: directory.file("port"), encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            if port.isEmpty { usleep(100_000) }
        }
        // Trusted through the own CA, not through init's.
        let trusted = try runProcess("/usr/bin/curl", ["-s", "--cacert", own + "/ca.pem", "https://localhost:\(port)/v1/ca.pem"])
        #expect(trusted.status == 0)
        #expect(trusted.stdout == (try String(contentsOfFile: own + "/ca.pem", encoding: .utf8)))
        let untrusted = try runProcess("/usr/bin/curl", ["-s", "--cacert", etc + "/ca.pem", "https://localhost:\(port)/v1/health"])
        #expect(untrusted.status != 0)
    }
}

/// Operator mistakes get a message that names the fix.
@Suite struct BrokerOperatorErrorTests {
    let broker = Products.path("holdfast-broker")

    /// Both are something needed that is not there: 69 (EX_UNAVAILABLE), not malformed input.
    @Test func aMissingStateOrKeyDirectoryNamesTheOptionAndCreatesNothing() throws {
        let directory = TemporaryDirectory()
        let noState = try runProcess(broker, ["devices", "--state-dir", directory.file("nowhere")])
        #expect(noState.status == 69)
        #expect(noState.stderr.contains("say --state-dir DIR"))
        #expect(!FileManager.default.fileExists(atPath: directory.file("nowhere")))
        #expect(try runProcess(broker, ["admin", "add", "alice", "--state-dir", directory.file("state")]).status == 0)
        try #"{"version":1}"#.writeReplacing(toFile: directory.file("p.json"))
        let noKeys = try runProcess(broker, ["agent-policy", "set", directory.file("p.json"), "--dir", directory.file("etc"), "--state-dir", directory.file("state")],
                                    environment: ["HOLDFAST_ADMIN_TOKEN": "hfa_x"])
        #expect(noKeys.status == 69)
        #expect(noKeys.stderr.contains("say --dir DIR"), "\(noKeys.stderr)")
    }

    /// A token for a host the server certificate does not name would fail at every agent: refused.
    @Test func aTokenForAHostTheCertificateDoesNotNameIsRefused() throws {
        let directory = TemporaryDirectory()
        #expect(try runProcess(broker, ["init", "--hostname", "localhost", "--dir", directory.file("etc")]).status == 0)
        let admin = try runProcess(broker, ["admin", "add", "alice", "--state-dir", directory.file("state")])
        let environment = ["HOLDFAST_ADMIN_TOKEN": admin.stdout.trimmingCharacters(in: .whitespacesAndNewlines)]
        let wrong = try runProcess(broker, ["token", "create", "--url", "https://127.0.0.1:8443", "--dir", directory.file("etc"), "--state-dir", directory.file("state")], environment: environment)
        #expect(wrong.status == 65)
        #expect(wrong.stderr.contains("not valid for 127.0.0.1"))
        let right = try runProcess(broker, ["token", "create", "--url", "https://localhost:8443", "--dir", directory.file("etc"), "--state-dir", directory.file("state")], environment: environment)
        #expect(right.status == 0, "\(right.stderr)")
    }
}
