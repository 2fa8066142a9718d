/// Just-in-time exceptions (docs/exceptions.md): what a user asks for, what an approver grants.
///
/// One vocabulary on both sides of the wire: the agent sends a request with a `match`, the broker
/// keeps it, and an approval carries the same `match` back inside a signed command. Every member
/// is data (names, numbers, words for people), parsed strictly: a member not listed is refused.

/// What an exception opens.
public enum ExceptionKind: String, Sendable, Equatable, Codable, CaseIterable {
    /// One USB device or model: every interface allowed, on this machine, until the end.
    case usb
    /// One user on one approved print queue: extra pages beyond the daily quota, until the end
    /// or the pages are used.
    case print
}

/// What an exception matches. Stored as its members and `kind`, parsed strictly again on load.
public enum ExceptionMatch: Sendable, Equatable, Codable {
    /// A USB device by vendor and product, optionally its serial and its descriptors' digest
    /// (`sha256:…`, as DeviceGuard computes it): asked from a plugged device, it follows that
    /// device, not a look-alike.
    case usb(vendor: UInt16, product: UInt16, serial: String?, hash: String?)
    /// A CUPS queue and the pages allowed on it.
    case print(queue: String, pages: Int64)

    public var kind: ExceptionKind {
        switch self {
        case .usb: .usb
        case .print: .print
        }
    }

    public init(from decoder: any Decoder) throws {
        let value = try JSONValue(from: decoder)
        guard case .object(let members) = value, let kind = members["kind"]?.stringValue.flatMap(ExceptionKind.init(rawValue:)) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "a match names its kind"))
        }
        do {
            self = try Self.parse(kind: kind, members)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var object = members
        object["kind"] = .string(kind.rawValue)
        try JSONValue.object(object).encode(to: encoder)
    }

    public static let maximumPages: Int64 = 100_000
    static let maximumSerialBytes = 128

    /// The members as they travel (merged into the request's or the grant's object).
    public var members: [String: JSONValue] {
        switch self {
        case .usb(let vendor, let product, let serial, let hash):
            var object: [String: JSONValue] = ["vendor": .string(Self.hex16(vendor)), "product": .string(Self.hex16(product))]
            if let serial { object["serial"] = .string(serial) }
            if let hash { object["hash"] = .string(hash) }
            return object
        case .print(let queue, let pages):
            return ["queue": .string(queue), "pages": .int(pages)]
        }
    }

    /// Member names each kind may carry.
    static func memberNames(_ kind: ExceptionKind) -> Set<String> {
        switch kind {
        case .usb: ["vendor", "product", "serial", "hash"]
        case .print: ["queue", "pages"]
        }
    }

    /// Parses the match members of `kind` from `members` (the caller refuses members it does not know).
    public static func parse(kind: ExceptionKind, _ members: [String: JSONValue]) throws(CommandError) -> ExceptionMatch {
        switch kind {
        case .usb:
            guard let vendor = members["vendor"]?.stringValue.flatMap(Self.parseHex16), let product = members["product"]?.stringValue.flatMap(Self.parseHex16) else {
                throw CommandError("vendor and product must be 4 hex digits each")
            }
            var serial: String?
            if let value = members["serial"] {
                guard let text = value.stringValue, RemoteCommand.isWords(text, maximumBytes: maximumSerialBytes) else {
                    throw CommandError("serial must be 1 to \(maximumSerialBytes) bytes without control characters")
                }
                serial = text
            }
            var hash: String?
            if let value = members["hash"] {
                guard let text = value.stringValue, Self.isDescriptorHash(text) else { throw CommandError("hash must be sha256: and 64 lower-case hex digits") }
                hash = text
            }
            return .usb(vendor: vendor, product: product, serial: serial, hash: hash)
        case .print:
            guard let queue = members["queue"]?.stringValue, Self.isQueueName(queue) else {
                throw CommandError("queue must be a CUPS queue name (1 to 127 printable ASCII characters, no space, /, # or \\)")
            }
            guard let pages = members["pages"]?.intValue, (1...maximumPages).contains(pages) else {
                throw CommandError("pages must be a whole number from 1 to \(maximumPages)")
            }
            return .print(queue: queue, pages: pages)
        }
    }

    /// What it opens, for people: `USB 0781:5567 serial 4C53… (these descriptors)`, `200 pages on office`.
    public var summary: String {
        switch self {
        case .usb(let vendor, let product, let serial, let hash):
            "USB \(Self.hex16(vendor)):\(Self.hex16(product))" + (serial.map { " serial \(Printable.escape($0))" } ?? "")
                + (hash == nil ? " (any device reporting this id)" : " (these descriptors only)")
        case .print(let queue, let pages):
            "\(pages) page\(pages == 1 ? "" : "s") on print queue \(Printable.escape(queue))"
        }
    }

    /// A serial that can travel in a request: words, at most 128 bytes.
    public static func isSerial(_ text: String) -> Bool { RemoteCommand.isWords(text, maximumBytes: maximumSerialBytes) }

    public static func hex16(_ value: UInt16) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }

    static func parseHex16(_ text: String) -> UInt16? {
        guard text.utf8.count == 4, text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46) }) else { return nil }
        return UInt16(text, radix: 16)
    }

    /// `sha256:` and 64 lower-case hex digits.
    public static func isDescriptorHash(_ text: String) -> Bool {
        text.utf8.count == 71 && text.hasPrefix("sha256:") && text.utf8.dropFirst(7).allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// A name CUPS accepts for a queue: printable ASCII but space, `/`, `#`, `\`, at most 127 bytes.
    public static func isQueueName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 127 && text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "#") && $0 != UInt8(ascii: "\\") }
    }
}

/// A user's request as the agent sends it to the broker (`POST /v1/requests`).
public struct AccessRequestSubmission: Sendable, Equatable {
    /// The agent's id for it (`rq-` and 16 hex digits): the same request sent twice is one.
    public var id: String
    public var match: ExceptionMatch
    /// Who asked: their login name and uid on the device (`SO_PEERCRED`).
    public var user: String
    public var uid: Int64
    /// How long they asked for.
    public var seconds: Int64
    /// Why, in their words.
    public var reason: String
    /// When they asked (the device's clock).
    public var created: Int64
    /// What the agent saw of the device (`1-2 0781:5567 SanDisk Cruzer Blade: storage`), for
    /// the approver: words the device chose, so only ever shown escaped.
    public var label: String?

    public init(id: String, match: ExceptionMatch, user: String, uid: Int64, seconds: Int64, reason: String, created: Int64, label: String? = nil) {
        self.id = id
        self.match = match
        self.user = user
        self.uid = uid
        self.seconds = seconds
        self.reason = reason
        self.created = created
        self.label = label
    }

    public static let maximumLabelBytes = 256

    /// A label cut to what travels: at most 256 bytes of words, control characters replaced.
    public static func sendableLabel(_ text: String) -> String? {
        var cut = ""
        for character in Printable.escape(text) {
            guard cut.utf8.count + String(character).utf8.count <= maximumLabelBytes else { break }
            cut.append(character)
        }
        return RemoteCommand.isWords(cut, maximumBytes: maximumLabelBytes) ? cut : nil
    }

    /// The longest anyone may ask for or be granted: an exception is for an afternoon or a
    /// project week, never a standing right.
    public static let maximumSeconds: Int64 = 30 * 86_400
    public static let maximumReasonBytes = 512
    static let baseMembers: Set<String> = ["request", "kind", "user", "uid", "seconds", "reason", "created", "label"]

    public var body: JSONValue {
        var object = match.members
        object["request"] = .string(id)
        object["kind"] = .string(match.kind.rawValue)
        object["user"] = .string(user)
        object["uid"] = .int(uid)
        object["seconds"] = .int(seconds)
        object["reason"] = .string(reason)
        object["created"] = .int(created)
        if let label { object["label"] = .string(label) }
        return .object(object)
    }

    public static func parse(_ value: JSONValue) throws(CommandError) -> AccessRequestSubmission {
        guard case .object(let members) = value else { throw CommandError("the request is not a JSON object") }
        guard let kindName = members["kind"]?.stringValue, let kind = ExceptionKind(rawValue: kindName) else {
            throw CommandError("kind must be one of \(ExceptionKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let extra = Set(members.keys).subtracting(baseMembers.union(ExceptionMatch.memberNames(kind))).sorted().first {
            throw CommandError("the request carries \"\(Printable.escape(String(extra.prefix(64))))\", which no \(kind.rawValue) request has")
        }
        guard let id = members["request"]?.stringValue, isRequestID(id) else { throw CommandError("request must be a request id (rq- and 16 hex digits)") }
        guard let user = members["user"]?.stringValue, LoginName.isValid(user) else { throw CommandError("user must be a login name") }
        guard let uid = members["uid"]?.intValue, (0...Int64(UInt32.max)).contains(uid) else { throw CommandError("uid must be a uid") }
        guard let seconds = members["seconds"]?.intValue, (1...maximumSeconds).contains(seconds) else {
            throw CommandError("seconds must be from 1 to \(maximumSeconds) (30 days)")
        }
        guard let reason = members["reason"]?.stringValue, RemoteCommand.isWords(reason, maximumBytes: maximumReasonBytes) else {
            throw CommandError("reason must be 1 to \(maximumReasonBytes) bytes without control characters")
        }
        guard let created = members["created"]?.intValue, created > 0 else { throw CommandError("created must be a time") }
        var label: String?
        if let value = members["label"] {
            guard let text = value.stringValue, RemoteCommand.isWords(text, maximumBytes: maximumLabelBytes) else {
                throw CommandError("label must be 1 to \(maximumLabelBytes) bytes without control characters")
            }
            label = text
        }
        let match = try ExceptionMatch.parse(kind: kind, members)
        return AccessRequestSubmission(id: id, match: match, user: user, uid: uid, seconds: seconds, reason: reason, created: created, label: label)
    }

    /// `rq-` and 16 lower-case hex digits, as agents make them.
    public static func isRequestID(_ id: String) -> Bool {
        id.utf8.count == 19 && id.hasPrefix("rq-") && id.utf8.dropFirst(3).allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

/// An approved exception as a `grant` command carries it: what, for whom, until when.
public struct GrantedException: Sendable, Equatable {
    /// The agent's request id, and the broker's number for it (what admins type).
    public var request: String
    public var number: Int64
    public var match: ExceptionMatch
    public var user: String
    public var uid: Int64
    /// The absolute end (Unix seconds): never applied after it, removed at it.
    public var until: Int64
    /// The requester's reason (the approver's words are the command's `reason`).
    public var asked: String

    public init(request: String, number: Int64, match: ExceptionMatch, user: String, uid: Int64, until: Int64, asked: String) {
        self.request = request
        self.number = number
        self.match = match
        self.user = user
        self.uid = uid
        self.until = until
        self.asked = asked
    }

    static let baseMembers: Set<String> = ["request", "number", "kind", "user", "uid", "until", "asked"]

    public var value: JSONValue {
        var object = match.members
        object["request"] = .string(request)
        object["number"] = .int(number)
        object["kind"] = .string(match.kind.rawValue)
        object["user"] = .string(user)
        object["uid"] = .int(uid)
        object["until"] = .int(until)
        object["asked"] = .string(asked)
        return .object(object)
    }

    public static func parse(_ value: JSONValue) throws(CommandError) -> GrantedException {
        guard case .object(let members) = value else { throw CommandError("exception must be an object") }
        guard let kindName = members["kind"]?.stringValue, let kind = ExceptionKind(rawValue: kindName) else {
            throw CommandError("exception.kind must be one of \(ExceptionKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let extra = Set(members.keys).subtracting(baseMembers.union(ExceptionMatch.memberNames(kind))).sorted().first {
            throw CommandError("the exception carries \"\(Printable.escape(String(extra.prefix(64))))\", which no \(kind.rawValue) exception has")
        }
        guard let request = members["request"]?.stringValue, AccessRequestSubmission.isRequestID(request) else { throw CommandError("exception.request must be a request id") }
        guard let number = members["number"]?.intValue, number >= 1 else { throw CommandError("exception.number must be a whole number from 1") }
        guard let user = members["user"]?.stringValue, LoginName.isValid(user) else { throw CommandError("exception.user must be a login name") }
        guard let uid = members["uid"]?.intValue, (0...Int64(UInt32.max)).contains(uid) else { throw CommandError("exception.uid must be a uid") }
        guard let until = members["until"]?.intValue, until > 0 else { throw CommandError("exception.until must be a time") }
        guard let asked = members["asked"]?.stringValue, RemoteCommand.isWords(asked, maximumBytes: AccessRequestSubmission.maximumReasonBytes) else {
            throw CommandError("exception.asked must be 1 to \(AccessRequestSubmission.maximumReasonBytes) bytes without control characters")
        }
        let match = try ExceptionMatch.parse(kind: kind, members)
        return GrantedException(request: request, number: number, match: match, user: user, uid: uid, until: until, asked: asked)
    }
}

/// The request a `deny` or `revoke` command is about.
public struct RequestReference: Sendable, Equatable {
    public var request: String
    public var number: Int64

    public init(request: String, number: Int64) {
        self.request = request
        self.number = number
    }

    public var value: JSONValue { .object(["request": .string(request), "number": .int(number)]) }

    public static func parse(_ value: JSONValue) throws(CommandError) -> RequestReference {
        guard case .object(let members) = value, Set(members.keys) == ["request", "number"],
              let request = members["request"]?.stringValue, AccessRequestSubmission.isRequestID(request),
              let number = members["number"]?.intValue, number >= 1 else {
            throw CommandError("request must be {request: rq-…, number: N} and nothing else")
        }
        return RequestReference(request: request, number: number)
    }
}
