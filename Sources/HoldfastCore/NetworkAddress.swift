#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address or prefix (`10.0.0.5`, `10.1.0.0/16`, `fd00::53`), parsed by
/// inet_pton(3) and written back by inet_ntop(3): what reaches an nftables ruleset is always the
/// canonical text of a parsed address, never the text someone wrote.
public struct NetworkAddress: Sendable, Hashable, CustomStringConvertible, Codable {
    public enum Family: Sendable, Hashable { case v4, v6 }

    public let family: Family
    /// The canonical address (inet_ntop).
    public let address: String
    /// The prefix length; the full length for one address.
    public let prefix: Int

    /// Parses `ADDRESS` or `ADDRESS/PREFIX` (host bits past the prefix are cleared); nil for
    /// anything else (names included: nothing is resolved here).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, !first.isEmpty, first.utf8.count <= 45 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 16)
        let host = String(first)
        if inet_pton(AF_INET, host, &bytes) == 1 {
            family = .v4
        } else if inet_pton(AF_INET6, host, &bytes) == 1 {
            family = .v6
        } else {
            return nil
        }
        let maximum = family == .v4 ? 32 : 128
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].allSatisfy({ $0 >= "0" && $0 <= "9" }), let length = Int(parts[1]), (0...maximum).contains(length) else { return nil }
            prefix = length
        } else {
            prefix = maximum
        }
        for bit in prefix..<maximum { bytes[bit / 8] &= ~(UInt8(0x80) >> UInt8(bit % 8)) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(family == .v4 ? AF_INET : AF_INET6, bytes, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        address = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `10.0.0.5` for one address, `10.1.0.0/16` for a prefix.
    public var description: String { prefix == (family == .v4 ? 32 : 128) ? address : "\(address)/\(prefix)" }

    /// Stored as its text, parsed again when read.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = NetworkAddress(text) else { throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an address: \(text)")) }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// One real host: not a prefix, not 0.0.0.0 or :: (what a resolver or a broker must be).
    public var isHost: Bool { prefix == (family == .v4 ? 32 : 128) && address != "0.0.0.0" && address != "::" }
}
