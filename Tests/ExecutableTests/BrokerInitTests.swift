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
