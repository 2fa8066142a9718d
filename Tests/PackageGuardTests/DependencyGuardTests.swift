import Foundation
import HoldfastTestSupport
import Testing

/// Each C library has exactly one Swift owner; nothing else may import it. The agent's source
/// stays free of traps on bad input.
@Suite struct DependencyGuardTests {
    static let owners: [String: String] = [
        "COpenSSL": "HoldfastCrypto",
        "CSQLite": "HoldfastStore",
        "CUdev": "DeviceGuard",
        "CCups": "PrintGuard",
        "CZlib": "HoldfastCompression",
        "CAudit": "FileWatch",
        "CCurl": "BrokerClient",
        "CMicroHTTPD": "HoldfastBroker",
        "CLZ4": "HoldfastCompression",
        "CNftables": "HoldfastNetfilter",
        "CKernel": "Posture",
        "CSystemd": "HoldfastDBus",
    ]

    /// Every `import` in Sources/, as (module that imports, module imported, file).
    static func imports() throws -> [(importer: String, imported: String, file: String)] {
        let sources = Products.packageRoot() + "/Sources"
        let modules = try FileManager.default.contentsOfDirectory(atPath: sources)
        var found: [(String, String, String)] = []
        let pattern = try NSRegularExpression(pattern: #"^\s*(?:@\w+\s+)*(?:(?:public|internal|package|private|fileprivate)\s+)?import\s+(?:(?:struct|class|enum|func|var|let|typealias|protocol)\s+)?([A-Za-z_][A-Za-z0-9_]*)"#, options: [.anchorsMatchLines])
        for module in modules {
            guard let enumerator = FileManager.default.enumerator(atPath: sources + "/" + module) else { continue }
            for case let file as String in enumerator where file.hasSuffix(".swift") {
                let path = sources + "/" + module + "/" + file
                let text = try String(contentsOfFile: path, encoding: .utf8)
                let range = NSRange(text.startIndex..., in: text)
                for match in pattern.matches(in: text, range: range) {
                    guard let name = Range(match.range(at: 1), in: text) else { continue }
                    found.append((module, String(text[name]), module + "/" + file))
                }
            }
        }
        return found
    }

    @Test func eachCLibraryIsImportedOnlyByItsOwner() throws {
        let all = try Self.imports()
        #expect(!all.isEmpty)
        for (importer, imported, file) in all where Self.owners[imported] != nil {
            #expect(Self.owners[imported] == importer, "\(file) imports \(imported), which only \(Self.owners[imported] ?? "") may import")
        }
    }

    @Test func everyCLibraryHasItsOwnerImportingIt() throws {
        let all = try Self.imports()
        for (library, owner) in Self.owners {
            #expect(all.contains { $0.importer == owner && $0.imported == library }, "\(owner) does not import \(library)")
        }
    }

    @Test func everySystemLibraryTargetHasAnOwner() throws {
        let sources = Products.packageRoot() + "/Sources"
        let systemTargets = try FileManager.default.contentsOfDirectory(atPath: sources).filter {
            FileManager.default.fileExists(atPath: sources + "/" + $0 + "/module.modulemap")
        }
        #expect(Set(systemTargets) == Set(Self.owners.keys))
    }

    @Test func theCoreImportsNoCLibraryAndNoFullFoundation() throws {
        let core = try Self.imports().filter { $0.importer == "HoldfastCore" }
        for (_, imported, file) in core {
            #expect(Self.owners[imported] == nil, "\(file) imports \(imported)")
            #expect(imported != "Foundation", "\(file) imports Foundation; use FoundationEssentials")
        }
    }

    /// What PAM runs at every login loads no shared library beyond the C runtime: its start-up
    /// is the login's wait (docs/login-check.md).
    @Test func theLoginCheckBinaryLinksNoCLibrary() throws {
        let modules = try Self.imports().filter { ["HoldfastLogin", "holdfast-login-check", "HoldfastCommandLine"].contains($0.importer) }
        for (_, imported, file) in modules {
            #expect(Self.owners[imported] == nil && !["HoldfastCrypto", "HoldfastStore", "Foundation"].contains(imported), "\(file) imports \(imported)")
        }
        let linked = try runProcess("/usr/bin/ldd", [Products.path("holdfast-login-check")])
        let libraries = linked.stdout.split(separator: "\n").compactMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) }
        let allowed: Set<String> = ["linux-vdso.so.1", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        #expect(!libraries.isEmpty)
        #expect(Set(libraries).subtracting(allowed).isEmpty, "holdfast-login-check links \(Set(libraries).subtracting(allowed).sorted())")
    }

    @Test func sourcesHaveNoForcedTriesOrCasts() throws {
        let sources = Products.packageRoot() + "/Sources"
        guard let enumerator = FileManager.default.enumerator(atPath: sources) else { return }
        for case let file as String in enumerator where file.hasSuffix(".swift") {
            let text = try String(contentsOfFile: sources + "/" + file, encoding: .utf8)
            #expect(!text.contains("try!"), "\(file) uses try!")
            #expect(!text.contains("as! "), "\(file) uses as!")
        }
    }
}
