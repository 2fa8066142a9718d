import Foundation
import Glibc
import HoldfastCore
import HoldfastCrypto
import HoldfastTestSupport
import Testing

@Suite struct KeyFileTests {
    @Test func savesMode0600AndLoadsTheSameKey() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("signing.key")
        let key = try SigningKey.generate()
        try key.save(to: path)
        #expect(fileMode(path) == 0o600)
        let loaded = try SigningKey.load(from: path)
        #expect(loaded.publicKey == key.publicKey)
        // A signature by the loaded key verifies under the original public key.
        #expect(key.publicKey.isValidSignature(try loaded.signature(for: [1, 2, 3]), for: [1, 2, 3]))
    }

    @Test func writesAPEMThatOpenSSLReads() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("signing.key")
        try SigningKey.generate().save(to: path)
        let result = try runProcess("/usr/bin/openssl", ["pkey", "-in", path, "-noout", "-text"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("ED25519 Private-Key"))
    }

    @Test func refusesAKeyFileReadableByOthers() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("signing.key")
        try SigningKey.generate().save(to: path)
        chmod(path, 0o644)
        let error = #expect(throws: CryptoError.self) { try SigningKey.load(from: path) }
        #expect(error?.code == .keyFile)
        #expect(error?.cause?.contains("0600") == true)
    }

    @Test func refusesAKeyFileBehindASymbolicLink() throws {
        let directory = TemporaryDirectory()
        try SigningKey.generate().save(to: directory.file("real.key"))
        symlink(directory.file("real.key"), directory.file("link.key"))
        let error = #expect(throws: CryptoError.self) { try SigningKey.load(from: directory.file("link.key")) }
        #expect(error?.code == .keyFile)
    }

    @Test func refusesAFileThatHoldsNoEd25519Key() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("rsa.key")
        let result = try runProcess("/usr/bin/openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", path])
        #expect(result.status == 0)
        chmod(path, 0o600)
        let error = #expect(throws: CryptoError.self) { try SigningKey.load(from: path) }
        #expect(error?.code == .keyFile)
    }

    @Test func readsAndWritesPublicKeyPEM() throws {
        let key = try SigningKey.generate()
        let pem = try key.publicKey.pem()
        #expect(String(decoding: pem, as: UTF8.self).hasPrefix("-----BEGIN PUBLIC KEY-----"))
        #expect(try VerifyingKey(pem: pem) == key.publicKey)
    }
}

@Suite struct CertificateFingerprintTests {
    @Test func matchesOpenSSLsFingerprintForPEMAndDER() throws {
        let directory = TemporaryDirectory()
        let certificate = directory.file("ca.pem")
        let generated = try runProcess("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", directory.file("ca.key"),
            "-out", certificate, "-subj", "/CN=Holdfast Test CA", "-days", "1",
        ])
        #expect(generated.status == 0, "\(generated.stderr)")
        let openssl = try runProcess("/usr/bin/openssl", ["x509", "-in", certificate, "-noout", "-fingerprint", "-sha256"])
        // "sha256 Fingerprint=AB:CD:…"
        let expected = try #require(openssl.stdout.split(separator: "=").last).trimmingCharacters(in: .whitespacesAndNewlines)
        let pem = Array(try Data(contentsOf: URL(fileURLWithPath: certificate)))
        #expect(CertificateFingerprint.display(try CertificateFingerprint.sha256(of: pem)) == expected)

        let derPath = directory.file("ca.der")
        #expect(try runProcess("/usr/bin/openssl", ["x509", "-in", certificate, "-outform", "DER", "-out", derPath]).status == 0)
        let der = Array(try Data(contentsOf: URL(fileURLWithPath: derPath)))
        #expect(CertificateFingerprint.display(try CertificateFingerprint.sha256(of: der)) == expected)
        // DER with a trailing byte is not one certificate.
        #expect(throws: CryptoError.self) { try CertificateFingerprint.sha256(of: der + [0]) }
    }

    @Test func refusesGarbage() {
        #expect(throws: CryptoError.self) { try CertificateFingerprint.sha256(of: Array("-----BEGIN CERTIFICATE-----\nAAAA\n".utf8)) }
        #expect(throws: CryptoError.self) { try CertificateFingerprint.sha256(of: [0x30, 0x82, 0x01]) }
    }
}
