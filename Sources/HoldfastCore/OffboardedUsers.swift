#if canImport(Glibc)
import Glibc
#endif

/// The users offboarded on this device (docs/offboarding.md), and how a login name is matched
/// against them: the name as given, its case folded, and the account it resolves to (the
/// system's name for it and its uid, through NSS: `MARIA` or `maria@corp.example` on an sssd
/// machine is maria's account). holdfastd keeps the list in the journal's state and a copy in
/// `<state_dir>/offboarded-users` (0600, root) that `holdfast login-check` reads when holdfastd
/// does not answer, before it lets an exempt user in.
public struct OffboardedUsers: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var user: String
        /// The account's uid on this device when it was offboarded here (nil: no such account then).
        public var uid: UInt32?

        public init(user: String, uid: UInt32?) {
            self.user = user
            self.uid = uid
        }
    }

    public static let fileName = "offboarded-users"
    public var entries: [Entry]

    public init(_ entries: [Entry]) { self.entries = entries }

    /// Whether a name is root's, however it is written: never offboarded, never matched.
    public static func isRoot(_ name: String) -> Bool {
        name.lowercased() == "root" || account(name)?.uid == 0
    }

    /// The entry `name` falls under, if any. Root's account never does.
    public func match(_ name: String) -> Entry? {
        guard !entries.isEmpty else { return nil }
        let account = Self.account(name)
        guard account?.uid != 0, name.lowercased() != "root" else { return nil }
        if let exact = entries.first(where: { $0.user == name }) { return exact }
        let folded = name.lowercased()
        if let found = entries.first(where: { $0.user.lowercased() == folded }) { return found }
        guard let account else { return nil }
        let accountFolded = account.name.lowercased()
        if let found = entries.first(where: { $0.user.lowercased() == accountFolded }) { return found }
        // An alias of the offboarded account (another name, the same uid) — only while the
        // offboarded name still resolves to that uid: a uid reused by a new hire after the
        // account was deleted is another person.
        return entries.first { entry in
            entry.uid == account.uid && Self.account(entry.user)?.uid == account.uid
        }
    }

    /// The account a login name resolves to here (getpwnam_r: NSS, so a directory's accounts too;
    /// reentrant, as it runs on several threads at once).
    public static func account(_ name: String) -> (name: String, uid: UInt32)? {
        guard LoginName.isValid(name) else { return nil }
        var entry = passwd()
        var buffer = [CChar](repeating: 0, count: 16_384)
        var result: UnsafeMutablePointer<passwd>?
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil, let raw = entry.pw_name else { return nil }
        return (String(cString: raw), entry.pw_uid)
    }

    /// The file's bytes: `{"users":[{"user":…,"uid":…},…]}`.
    public var encoded: [UInt8] {
        let users: [JSONValue] = entries.map { entry in
            var object: [String: JSONValue] = ["user": .string(entry.user)]
            if let uid = entry.uid { object["uid"] = .int(Int64(uid)) }
            return .object(object)
        }
        return Array(JSONValue.object(["users": .array(users)]).compactText.utf8)
    }

    /// Parses the file's bytes; nil when they are not the list.
    public static func decode(_ bytes: [UInt8]) -> OffboardedUsers? {
        guard case .array(let items)? = (try? JSONValue.parse(bytes))?["users"] else { return nil }
        var entries: [Entry] = []
        for item in items {
            guard let user = item["user"]?.stringValue, LoginName.isValid(user) else { return nil }
            entries.append(Entry(user: user, uid: item["uid"]?.intValue.flatMap { UInt32(exactly: $0) }))
        }
        return OffboardedUsers(entries)
    }

    /// What the file in `stateDirectory` says: `.none` when there is no file (nobody was ever
    /// offboarded here), `.unreadable` when it cannot be trusted (not root's 0600, damaged).
    public enum Stored: Sendable, Equatable {
        case none
        case list(OffboardedUsers)
        case unreadable(String)
    }

    public static func load(stateDirectory: String) -> Stored {
        let path = stateDirectory + "/" + fileName
        do {
            let bytes = try SecureFile.readPrivate(path, owner: 0, maximumSize: 16 << 20)
            guard let list = decode(bytes) else { return .unreadable("\(path) is damaged") }
            return .list(list)
        } catch where error.code == .notFound {
            return .none
        } catch {
            return .unreadable(error.description)
        }
    }
}
