import BrokerClient
import Dispatch
import FoundationEssentials
import HoldfastCore
import HoldfastNetfilter
import HoldfastStore
import Lockdown
#if canImport(Glibc)
import Glibc
#endif

/// The `network` scope (docs/lockdown.md, "The network table"): the `inet holdfast` and
/// `bridge holdfast` tables.
///
/// What they allow is decided once, when the lockdown is engaged, and kept (the journal's state,
/// so a restart or a reboot puts back the same tables without asking any resolver): the broker's
/// addresses as the agent met them over the pinned TLS (resolved by name only when it never met
/// the broker), the resolvers (`[lockdown] dns`, else resolv.conf's at that moment) and the
/// `allow` prefixes. Nothing the local network says later — a DHCP-pushed resolver, a DNS answer
/// for the broker's name — widens a lockdown in force. While the scope is locked the controller
/// asks again every `LockdownController.reassertInterval`: tables someone deleted or changed are
/// put back, and said so.
actor NetworkLockdown: LockdownEnforcer {
    static let stateKey = "lockdown.network_table"

    struct Frozen: Codable, Equatable {
        /// The lockdown entry's start: a new lockdown decides afresh.
        var since: Date
        var table: IsolationTable
        /// Broker addresses not met over TLS but only resolved (said in the status).
        var unverified: Bool
    }

    private let brokerURL: @Sendable () -> String?
    private let met: BrokerAddresses
    private let configuredResolvers: [NetworkAddress]
    private let allowed: [NetworkAddress]
    private let resolvConf: String
    private let journal: Journal
    private let logger: Logger
    private let record: @Sendable (Event) -> Void
    private var frozen: Frozen?
    /// The kernel's listing of our tables right after we installed them (nil: not installed).
    private var listing: String?
    /// Every call takes a number; a call that waited (a name lookup) and finds a newer one ran
    /// meanwhile does nothing: a release is never undone by a lock decided before it.
    private var generation = 0

    init(brokerURL: @escaping @Sendable () -> String?, met: BrokerAddresses, resolvers: [NetworkAddress], allowed: [NetworkAddress], journal: Journal,
         resolvConf: String = "/etc/resolv.conf", logger: Logger, record: @escaping @Sendable (Event) -> Void) {
        self.brokerURL = brokerURL
        self.met = met
        configuredResolvers = resolvers
        self.allowed = allowed
        self.journal = journal
        self.resolvConf = resolvConf
        self.logger = logger
        self.record = record
        frozen = (try? journal.state(Self.stateKey, as: Frozen.self)) ?? nil
    }

    func enforceLockdown(_ entry: LockdownEntry?) async -> String? {
        generation += 1
        let mine = generation
        guard let entry else {
            frozen = nil
            listing = nil
            _ = try? journal.removeState(Self.stateKey)
            // Open: nothing to do unless a table is there (at every start of an open agent
            // nftables is only asked, never changed).
            guard IsolationTable.isInstalled() else { return nil }
            if case .failure(let error) = IsolationTable.remove() { return "the network lockdown tables could not be removed: \(error.message)" }
            return nil
        }
        if frozen?.since != entry.since {
            let decided = await decide(since: entry.since)
            guard generation == mine else { return nil }
            frozen = decided
            do {
                try journal.setState(Self.stateKey, encoding: decided)
            } catch {
                logger.error("the network lockdown's addresses could not be saved; a restart decides them again", ("error", "\(error)"))
            }
            if decided.unverified || decided.table.broker.isEmpty {
                logger.warning("network lockdown: \(decided.table.broker.isEmpty ? "no broker address is known: the broker is not reachable through the lockdown" : "the broker's addresses come from a name lookup, not from a connection")")
            }
        }
        guard let table = frozen?.table else { return "the network lockdown's tables were not decided" }
        let now = IsolationTable.listing()
        if let listing, now == listing { return nil }
        if listing != nil {
            // Ours were there and are gone or changed: someone else did it (nft flush ruleset, a
            // firewall manager's reload, a chain set to accept). Put back at once, and said.
            record(Event(
                kind: "lockdown.tampered", eventClass: .deviceConfigStateChange, activityID: 99, activityName: "Lock", time: Date(), severity: .critical, status: .failure,
                message: "the network lockdown tables were \(now == nil ? "removed" : "changed") by something other than holdfastd; they are installed again",
                details: ["scope": "network", "change": .string(now == nil ? "removed" : "changed")]))
        }
        switch table.install() {
        case .success:
            listing = IsolationTable.listing()
            logger.notice("network lockdown tables installed", ("brokers", table.broker.map(\.description).joined(separator: ",")),
                          ("resolvers", table.resolvers.map(\.description).joined(separator: ",")))
            return nil
        case .failure(let error):
            listing = nil
            return "the network lockdown tables could not be installed: \(error.message)"
        }
    }

    /// What `holdfast lockdown status` adds to the scope: what the tables allow.
    func detail() -> JSONValue {
        guard let frozen else { return .object([:]) }
        var object: [String: JSONValue] = [
            "brokers": .array(frozen.table.broker.map { .string($0.description) }), "broker_port": .int(Int64(frozen.table.brokerPort)),
            "resolvers": .array(frozen.table.resolvers.map { .string($0.description) }), "allowed": .array(frozen.table.allowed.map { .string($0.description) }),
        ]
        if frozen.table.broker.isEmpty {
            object["warning"] = "no broker address: the broker is not reachable through the lockdown (break-glass, or a local release)"
        } else if frozen.unverified {
            object["warning"] = "the broker's addresses come from a name lookup when the lockdown began, not from a connection over the pinned TLS"
        }
        return .object(object)
    }

    /// The tables for a lockdown beginning now.
    private func decide(since: Date) async -> Frozen {
        var brokers: [NetworkAddress] = []
        var port: UInt16 = 443
        var unverified = false
        if let url = brokerURL(), let parsed = URL(string: url), let host = parsed.host(percentEncoded: false) {
            port = parsed.port.flatMap { UInt16(exactly: $0) } ?? (parsed.scheme == "http" ? 80 : 443)
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            if let literal = NetworkAddress(bare), literal.isHost {
                brokers = [literal]
            } else {
                brokers = met.addresses.compactMap(NetworkAddress.init).filter(\.isHost)
                if brokers.isEmpty {
                    brokers = await Self.resolve(bare).filter(\.isHost)
                    unverified = !brokers.isEmpty
                }
            }
        }
        let resolvers = configuredResolvers.isEmpty ? Self.nameservers(resolvConf) : configuredResolvers
        return Frozen(since: since, table: IsolationTable(broker: brokers, brokerPort: port, resolvers: resolvers, allowed: allowed), unverified: unverified)
    }

    /// The nameservers of resolv.conf(5) — single hosts only — and behind systemd-resolved's stub
    /// (127.0.0.53) also the upstream servers it forwards to.
    static func nameservers(_ path: String) -> [NetworkAddress] {
        func read(_ path: String) -> [NetworkAddress] {
            guard let bytes = SmallFile.read(path, limit: 65_536) else { return [] }
            return String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).compactMap { line in
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard words.count >= 2, words[0] == "nameserver" else { return nil }
                return NetworkAddress(String(words[1])).flatMap { $0.isHost ? $0 : nil }
            }
        }
        var servers = read(path)
        if servers.contains(where: { $0.address.hasPrefix("127.") }) { servers += read("/run/systemd/resolve/resolv.conf") }
        var seen: Set<NetworkAddress> = []
        return servers.filter { seen.insert($0).inserted }
    }

    /// getaddrinfo(3) off the cooperative threads (a resolver that times out must not stall the
    /// agent).
    static func resolve(_ host: String) async -> [NetworkAddress] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                var list: UnsafeMutablePointer<addrinfo>?
                guard getaddrinfo(host, nil, &hints, &list) == 0 else { return continuation.resume(returning: []) }
                defer { freeaddrinfo(list) }
                var found: [NetworkAddress] = []
                var cursor = list
                while let entry = cursor {
                    var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                    if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0,
                       let address = NetworkAddress(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)),
                       !found.contains(address) {
                        found.append(address)
                    }
                    cursor = entry.pointee.ai_next
                }
                continuation.resume(returning: found)
            }
        }
    }
}
