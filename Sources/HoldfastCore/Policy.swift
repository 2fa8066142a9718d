import FoundationEssentials

/// The policy document: one JSON object with a section per domain (`docs/policy.md`).
///
/// Standalone (unenrolled) agents read it from `/etc/holdfast/policy.json`; once enrolled, the
/// broker's signed policy replaces it. Each domain validates its own section; this type checks the
/// shape every policy shares and keeps the exact bytes it was read from.
public struct Policy: Sendable, Equatable {
    /// The domains a policy may configure.
    public static let sectionNames = ["usb", "print", "filewatch", "posture", "lockdown"]

    /// The author's version number, when given.
    public let version: Int64?
    /// Each domain's section, as JSON objects; a missing section means that domain's defaults.
    public let sections: [String: JSONValue]
    /// The exact bytes this policy was parsed from.
    public let bytes: [UInt8]

    /// The policy that applies when no policy file exists and none was ever accepted: every domain
    /// at its strict defaults.
    public static let builtInDefault = Policy(version: 0, sections: [:], bytes: Array(#"{"version":0}"#.utf8))

    init(version: Int64?, sections: [String: JSONValue], bytes: [UInt8]) {
        self.version = version
        self.sections = sections
        self.bytes = bytes
    }

    /// Parses and checks a policy document.
    public static func parse(_ bytes: [UInt8]) throws(PolicyError) -> Policy {
        guard bytes.count <= 4 << 20 else { throw PolicyError("the policy is larger than 4 MiB") }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw PolicyError("not valid JSON: \(PolicyError.describe(error))")
        } catch {
            throw PolicyError("not valid JSON")
        }
        guard case .object(let members) = value else { throw PolicyError("the policy must be a JSON object") }
        if let duplicate = JSONDuplicateKeys.first(in: bytes) {
            throw PolicyError("the policy names \"\(duplicate)\" twice in one object")
        }
        var version: Int64?
        var sections: [String: JSONValue] = [:]
        for (key, member) in members.sorted(by: { $0.key < $1.key }) {
            if key == "version" {
                guard case .int(let number) = member, number >= 0 else {
                    throw PolicyError("\"version\" must be a non-negative integer")
                }
                version = number
                continue
            }
            guard sectionNames.contains(key) else {
                throw PolicyError("unknown section \"\(key)\" (known: version, \(sectionNames.joined(separator: ", ")))")
            }
            guard case .object = member else { throw PolicyError("section \"\(key)\" must be a JSON object") }
            sections[key] = member
        }
        return Policy(version: version, sections: sections, bytes: bytes)
    }
}

/// Why a policy was refused.
public struct PolicyError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context): context.underlyingError.map { "\($0)" } ?? context.debugDescription
        default: "\(error)"
        }
    }
}
