public import HoldfastCore

/// Why a `print` policy section was refused.
public struct PrintPolicyError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A shell-style pattern: `*` matches any run of characters (`/` included), `?` one character;
/// everything else matches itself. Used for queue names and device URIs.
public struct GlobPattern: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    private let characters: [Character]

    public init(_ text: String) {
        self.text = text
        characters = Array(text)
    }

    public var description: String { text }

    public func matches(_ candidate: String) -> Bool {
        let subject = Array(candidate)
        // Iterative wildcard matching with one backtrack point: linear in practice, no recursion.
        var p = 0, s = 0
        var star: Int?
        var resume = 0
        while s < subject.count {
            if p < characters.count, characters[p] == "?" || (characters[p] != "*" && characters[p] == subject[s]) {
                p += 1
                s += 1
            } else if p < characters.count, characters[p] == "*" {
                star = p
                resume = s
                p += 1
            } else if let star {
                p = star + 1
                resume += 1
                s = resume
            } else {
                return false
            }
        }
        while p < characters.count, characters[p] == "*" { p += 1 }
        return p == characters.count
    }
}

/// One entry of `print.approved`: every condition given must hold.
public struct ApprovedPrinter: Sendable, Equatable {
    public let id: String
    /// Queue-name pattern (CUPS queue names are case-insensitive: matched lower-cased).
    public let name: GlobPattern?
    /// Device-URI pattern over the real URI (after `holdfast:`).
    public let uri: GlobPattern?
    /// Users allowed on the printers this rule approves: user names and `@group`s. Empty: everyone.
    public let users: [String]
}

/// What happens to a queue that is not approved.
public enum UnapprovedAction: String, Sendable, Equatable {
    /// CUPS-Delete-Printer (or -Class).
    case remove
    /// Reject jobs, stop the queue, cancel what waits in it.
    case reject
}

/// What happens when cupsd's operation policy lets users get around the gate.
public enum HardeningAction: String, Sendable, Equatable {
    /// Rewrite cupsd.conf through CUPS (PUT /admin/conf/cupsd.conf) so only @SYSTEM may.
    case repair
    /// Report the drift (an event and a posture failure); change nothing.
    case report
}

/// How job titles appear in events: they often carry customer data.
public enum TitleRecording: String, Sendable, Equatable {
    case full
    case hashed
    case omitted
}

/// Daily limits per user, across every queue.
public struct PrintQuota: Sendable, Equatable {
    public let pagesPerDay: Int64?
    public let jobsPerDay: Int64?
    /// Pages charged for a document whose pages cannot be counted; nil refuses such a document
    /// while a page limit is set (fail closed).
    public let unknownPageCharge: Int64?
    /// Whether a count the document only declares (PostScript `%%Pages:`) is believed; when not,
    /// such a document is treated as uncountable.
    public let trustDeclaredPages: Bool

    public static let unlimited = PrintQuota(pagesPerDay: nil, jobsPerDay: nil, unknownPageCharge: nil)

    public init(pagesPerDay: Int64?, jobsPerDay: Int64?, unknownPageCharge: Int64?, trustDeclaredPages: Bool = false) {
        self.pagesPerDay = pagesPerDay
        self.jobsPerDay = jobsPerDay
        self.unknownPageCharge = unknownPageCharge
        self.trustDeclaredPages = trustDeclaredPages
    }
}

/// The `print` section of the policy (`docs/print-policy.md`).
public struct PrintPolicy: Sendable, Equatable {
    public let approved: [ApprovedPrinter]
    public let unapproved: UnapprovedAction
    public let hardening: HardeningAction
    public let quota: PrintQuota
    public let title: TitleRecording

    /// No approved printer: every queue goes; the strict default.
    public static let empty = PrintPolicy(approved: [], unapproved: .remove, hardening: .repair, quota: .unlimited, title: .full)

    public init(approved: [ApprovedPrinter], unapproved: UnapprovedAction, hardening: HardeningAction, quota: PrintQuota, title: TitleRecording) {
        self.approved = approved
        self.unapproved = unapproved
        self.hardening = hardening
        self.quota = quota
        self.title = title
    }

    static let members = ["approved", "unapproved", "hardening", "quota", "title"]

    /// Reads the `print` section (nil: the strict defaults). Unknown members and bad values are
    /// refused with their place.
    public init(section: JSONValue?) throws(PrintPolicyError) {
        guard let section else {
            self = .empty
            return
        }
        guard case .object(let members) = section else { throw PrintPolicyError("print: must be an object") }
        for key in members.keys where !Self.members.contains(key) {
            throw PrintPolicyError("print: unknown member \"\(key)\" (known: \(Self.members.joined(separator: ", ")))")
        }
        func choice<T: RawRepresentable>(_ key: String, _ fallback: T, _ names: String) throws(PrintPolicyError) -> T where T.RawValue == String {
            guard let value = members[key] else { return fallback }
            guard case .string(let text) = value, let parsed = T(rawValue: text) else {
                throw PrintPolicyError("print.\(key): must be \(names)")
            }
            return parsed
        }
        let unapproved: UnapprovedAction = try choice("unapproved", .remove, "\"remove\" or \"reject\"")
        let hardening: HardeningAction = try choice("hardening", .repair, "\"repair\" or \"report\"")
        let title: TitleRecording = try choice("title", .full, "\"full\", \"hashed\" or \"omitted\"")
        var approved: [ApprovedPrinter] = []
        if let list = members["approved"] {
            guard case .array(let items) = list else { throw PrintPolicyError("print.approved: must be an array") }
            var ids = Set<String>()
            for (index, item) in items.enumerated() {
                let rule = try Self.parseApproved(item, index: index)
                guard ids.insert(rule.id).inserted else { throw PrintPolicyError("print.approved[\(index)]: id \"\(rule.id)\" is used twice") }
                approved.append(rule)
            }
        }
        self.init(approved: approved, unapproved: unapproved, hardening: hardening, quota: try Self.parseQuota(members["quota"]), title: title)
    }

    private static func parseApproved(_ value: JSONValue, index: Int) throws(PrintPolicyError) -> ApprovedPrinter {
        let place = "print.approved[\(index)]"
        guard case .object(let members) = value else { throw PrintPolicyError("\(place): must be an object") }
        for key in members.keys where !["id", "name", "uri", "users", "comment"].contains(key) {
            throw PrintPolicyError("\(place): unknown member \"\(key)\" (known: id, name, uri, users, comment)")
        }
        guard case .string(let id)? = members["id"], !id.isEmpty else { throw PrintPolicyError("\(place): needs an \"id\" string") }
        let named = "\(place) (\(id))"
        if let comment = members["comment"], comment.stringValue == nil { throw PrintPolicyError("\(named): comment must be a string") }
        func pattern(_ key: String) throws(PrintPolicyError) -> GlobPattern? {
            guard let value = members[key] else { return nil }
            guard case .string(let text) = value, !text.isEmpty, !text.allSatisfy({ $0 == "*" }), text != "*?", text != "?*" else {
                throw PrintPolicyError("\(named): \(key) must be a non-empty pattern that does not match everything")
            }
            guard text.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
                throw PrintPolicyError("\(named): \(key) must be printable ASCII without spaces")
            }
            return GlobPattern(key == "name" ? text.lowercased() : text)
        }
        let name = try pattern("name")
        let uri = try pattern("uri")
        guard name != nil || uri != nil else { throw PrintPolicyError("\(named): needs \"name\", \"uri\" or both") }
        if let uri, let scheme = DeviceURI.scheme(of: uri.text), DeviceURI.neverApproved.contains(scheme) {
            throw PrintPolicyError("\(named): \(scheme): queues are never approved (print-to-file or a virtual printer)")
        }
        if let uri, let authority = uri.text.split(separator: "/", omittingEmptySubsequences: false).dropFirst(2).first,
            uri.text.contains("://"), authority.contains("?") || (authority.last == "*" && !authority.dropLast().hasSuffix(":"))
        {
            throw PrintPolicyError("\(named): uri has a wildcard at the end of the host or a ? in it (it would match other hosts, such as HOST.evil.example); end the host and put * after the / (a port wildcard host:* is fine)")
        }
        var users: [String] = []
        if let value = members["users"] {
            guard case .array(let list) = value, !list.isEmpty else {
                throw PrintPolicyError("\(named): users must be a non-empty list of user names and @groups (leave it out for everyone)")
            }
            for entry in list {
                guard case .string(let text) = entry, !text.isEmpty, text != "@" else {
                    throw PrintPolicyError("\(named): users entries must be user names or @group names")
                }
                users.append(text)
            }
        }
        return ApprovedPrinter(id: id, name: name, uri: uri, users: users)
    }

    private static func parseQuota(_ value: JSONValue?) throws(PrintPolicyError) -> PrintQuota {
        guard let value else { return .unlimited }
        guard case .object(let members) = value else { throw PrintPolicyError("print.quota: must be an object") }
        for key in members.keys where !["pages_per_day", "jobs_per_day", "unknown_pages", "declared_pages"].contains(key) {
            throw PrintPolicyError("print.quota: unknown member \"\(key)\" (known: pages_per_day, jobs_per_day, unknown_pages, declared_pages)")
        }
        func count(_ key: String) throws(PrintPolicyError) -> Int64? {
            guard let member = members[key] else { return nil }
            guard case .int(let number) = member, number >= 0, number <= 1_000_000 else {
                throw PrintPolicyError("print.quota.\(key): must be a whole number from 0 to 1000000")
            }
            return number
        }
        var charge: Int64?
        switch members["unknown_pages"] {
        case nil, .string("refuse")?: charge = nil
        case .int(let number)? where number >= 1 && number <= 10_000: charge = number
        default: throw PrintPolicyError("print.quota.unknown_pages: must be \"refuse\" or a page charge from 1 to 10000")
        }
        var trust = false
        switch members["declared_pages"] {
        case nil, .string("distrust")?: trust = false
        case .string("trust")?: trust = true
        default: throw PrintPolicyError("print.quota.declared_pages: must be \"distrust\" or \"trust\"")
        }
        return PrintQuota(
            pagesPerDay: try count("pages_per_day"), jobsPerDay: try count("jobs_per_day"), unknownPageCharge: charge, trustDeclaredPages: trust
        )
    }
}

/// Device URIs as CUPS writes them, and the `holdfast:` wrapper around them.
public enum DeviceURI {
    /// The gate backend's scheme: `holdfast:` + the real device URI.
    public static let gateScheme = "holdfast"
    public static let gatePrefix = "holdfast:"

    /// Schemes that write the job somewhere other than a printer, or wrap another URI: never approved.
    public static let neverApproved: Set<String> = [
        "file", "cups-pdf", "pdf", "cups-pdf-virtual", "virtual", "pdf-writer", "cups-brf", "beh", "implicitclass", "holdfast",
    ]

    /// The network printer schemes a rule without a `uri` pattern approves. Local ports (`usb`,
    /// `serial`, `parallel`) and anything else need a `uri` pattern that names them.
    public static let networkSchemes: Set<String> = ["ipp", "ipps", "http", "https", "socket", "lpd", "dnssd", "smb"]

    /// Whether `uri` matches `pattern`, part by part when the pattern has an authority
    /// (`scheme://host/...`): a wildcard in the host never reaches into the path, and one in the
    /// path never into the host (`ipp://*.corp.example/*` does not match
    /// `ipp://evil.example/.corp.example/`).
    public static func matches(_ pattern: GlobPattern, _ uri: String) -> Bool {
        guard let patternAuthority = authority(of: pattern.text) else { return pattern.matches(uri) }
        guard let uriAuthority = authority(of: uri), let patternColon = pattern.text.firstIndex(of: ":"), let uriColon = uri.firstIndex(of: ":") else {
            return false
        }
        guard pattern.text[..<patternColon].lowercased() == uri[..<uriColon].lowercased() else { return false }
        let patternRest = pattern.text[patternAuthority.endIndex...]
        let uriRest = uri[uriAuthority.endIndex...]
        return GlobPattern(String(patternAuthority)).matches(String(uriAuthority)) && GlobPattern(String(patternRest)).matches(String(uriRest))
    }

    /// Whether the URI's host is this machine (loopback, or a local socket path).
    public static func isLocal(_ uri: String) -> Bool {
        guard let authority = authority(of: uri) else { return false }
        var host = authority.split(separator: "@").last.map(String.init) ?? String(authority)
        if host.hasPrefix("[") { host = String(host.prefix { $0 != "]" }.dropFirst()) } else if let colon = host.firstIndex(of: ":") { host = String(host[..<colon]) }
        host = host.lowercased()
        return host.isEmpty || host == "localhost" || host.hasSuffix(".localhost") || host.hasPrefix("127.") || host == "::1"
            || host.hasPrefix("%2f") || host.hasPrefix("/")
    }

    /// The authority (`user@host:port`) of a `scheme://` URI, if it has one.
    public static func authority(of uri: String) -> Substring? {
        guard let colon = uri.firstIndex(of: ":") else { return nil }
        let rest = uri[uri.index(after: colon)...]
        guard rest.hasPrefix("//") else { return nil }
        return rest.dropFirst(2).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
    }

    /// The scheme before `:`, lower-cased, when it is a valid URI scheme.
    public static func scheme(of uri: String) -> String? {
        guard let colon = uri.firstIndex(of: ":"), colon != uri.startIndex else { return nil }
        let scheme = uri[..<colon]
        guard let first = scheme.unicodeScalars.first, CharacterSetASCII.isLetter(first),
            scheme.unicodeScalars.allSatisfy({ CharacterSetASCII.isAlnum($0) || "+-.".unicodeScalars.contains($0) })
        else { return nil }
        return scheme.lowercased()
    }

    /// The real URI behind the gate (the URI itself when it is not wrapped).
    public static func unwrap(_ uri: String) -> (real: String, gated: Bool) {
        uri.hasPrefix(gatePrefix) ? (String(uri.dropFirst(gatePrefix.count)), true) : (uri, false)
    }
}

enum CharacterSetASCII {
    static func isLetter(_ scalar: Unicode.Scalar) -> Bool { ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) }

    static func isAlnum(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
    }
}
