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

    /// The entry `name` falls under, if any.
    public func match(_ name: String) -> Entry? {
        guard !entries.isEmpty else { return nil }
        if let exact = entries.first(where: { $0.user == name }) { return exact }
        let folded = name.lowercased()
        if let found = entries.first(where: { $0.user.lowercased() == folded }) { return found }
        guard let account = Self.account(name) else { return nil }
        let accountFolded = account.name.lowercased()
        return entries.first { $0.user.lowercased() == accountFolded || ($0.uid != nil && $0.uid == account.uid && account.uid != 0) }
    }

    /// The account a login name resolves to here (getpwnam: NSS, so a directory's accounts too).
    public static func account(_ name: String) -> (name: String, uid: UInt32)? {
        guard LoginName.isValid(name), let entry = getpwnam(name), let raw = entry.pointee.pw_name else { return nil }
        return (String(cString: raw), entry.pointee.pw_uid)
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
