import Glibc
import HoldfastCore
import HoldfastTestSupport
import Testing

@Suite struct SecureFileTests {
    @Test func writesMode0600AndReadsBack() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("secret")
        try SecureFile.write(Array("key material".utf8), to: path)
        #expect(fileMode(path) == 0o600)
        #expect(try SecureFile.readPrivate(path) == Array("key material".utf8))
    }

    @Test func replacesAtomically() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("secret")
        try SecureFile.write([1, 2, 3], to: path)
        try SecureFile.write([4, 5], to: path)
        #expect(try SecureFile.readPrivate(path) == [4, 5])
    }

    @Test(arguments: [0o640, 0o604, 0o660, 0o644] as [mode_t])
    func refusesFilesOthersCanAccess(_ mode: mode_t) throws {
        let directory = TemporaryDirectory()
        let path = directory.file("secret")
        try SecureFile.write([1], to: path)
        chmod(path, mode)
        let error = #expect(throws: SecureFileError.self) { try SecureFile.readPrivate(path) }
        #expect(error?.code == .insecurePermissions)
    }

    @Test func refusesASymbolicLink() throws {
        let directory = TemporaryDirectory()
        try SecureFile.write([1], to: directory.file("real"))
        symlink(directory.file("real"), directory.file("link"))
        let error = #expect(throws: SecureFileError.self) { try SecureFile.readPrivate(directory.file("link")) }
        #expect(error?.code == .notRegularFile)
    }

    @Test func refusesAFileOwnedBySomeoneElse() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("secret")
        try SecureFile.write([1], to: path)
        let error = #expect(throws: SecureFileError.self) { try SecureFile.readPrivate(path, owner: geteuid() &+ 1) }
        #expect(error?.code == .wrongOwner)
    }

    @Test func reportsAMissingFile() {
        let error = #expect(throws: SecureFileError.self) { try SecureFile.readPrivate("/nonexistent/holdfast/key") }
        #expect(error?.code == .notFound)
    }

    @Test func createsPrivateDirectoriesAndRefusesWritableOnes() throws {
        let directory = TemporaryDirectory()
        let nested = directory.file("a/b")
        try SecureFile.ensurePrivateDirectory(nested)
        #expect(fileMode(nested) == 0o700)
        chmod(nested, 0o777)
        let error = #expect(throws: SecureFileError.self) { try SecureFile.ensurePrivateDirectory(nested) }
        #expect(error?.code == .insecurePermissions)
    }
}
