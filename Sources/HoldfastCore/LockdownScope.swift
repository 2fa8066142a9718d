/// What a lockdown can shut (docs/lockdown.md). FileWatch's automatic block, an admin on the
/// machine and the broker's signed commands all name these; a command cannot name anything else.
public enum LockdownScope: String, Sendable, Codable, CodingKeyRepresentable, CaseIterable, Comparable {
    /// Every USB device is deauthorized except hubs and HID (keyboards, mice); exceptions are
    /// suspended.
    case usb
    /// The print gate refuses every job and the pending ones are cancelled.
    case print
    /// An nftables table drops all traffic but loopback, the broker, established replies, DNS to
    /// the resolvers and what keeps the address (DHCP, IPv6 neighbour discovery).
    case network
    /// The users' sessions are locked or ended through logind, and logins are denied.
    case sessions

    public static func < (lhs: LockdownScope, rhs: LockdownScope) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Parses `usb,print`; throws the first name that is not a scope.
    public static func parseList(_ text: String) throws(UnknownScope) -> [LockdownScope] {
        var scopes: [LockdownScope] = []
        for part in text.split(separator: ",") {
            let name = String(part).trimmingSpaces
            guard let scope = LockdownScope(rawValue: name) else { throw UnknownScope(name: name) }
            if !scopes.contains(scope) { scopes.append(scope) }
        }
        return scopes
    }

    public struct UnknownScope: Error, CustomStringConvertible {
        public let name: String
        public var description: String {
            "unknown lockdown scope '\(name)' (known: \(LockdownScope.allCases.map(\.rawValue).joined(separator: ", ")))"
        }
    }
}
