public import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// One thing that happened, shaped after an OCSF event class so that a SIEM can take it as is.
///
/// Holdfast's own fields live under `holdfast` (`kind`, a dotted name such as `journal.overflow`,
/// and `details`). `metadata.uid` is a stable UUID: uploads are idempotent on it. The JSON layout
/// is documented in `docs/events.md`.
public struct Event: Sendable, Equatable, Codable {
    /// Stable identity of the event (`metadata.uid`); the broker deduplicates on it.
    public var id: UUID
    /// The OCSF class (`class_uid`).
    public var eventClass: EventClass
    /// The OCSF activity within the class (`activity_id`), e.g. 1 = Create.
    public var activityID: Int
    /// Human name of the activity (`activity_name`).
    public var activityName: String?
    /// When it happened (`time`, milliseconds since the epoch on the wire).
    public var time: Date
    /// How bad it is (`severity_id`).
    public var severity: Severity
    /// Whether the activity succeeded (`status_id`), when that question applies.
    public var status: Status?
    /// One line a person can read.
    public var message: String
    /// Who did it.
    public var actor: Actor?
    /// The workstation it happened on.
    public var device: DeviceIdentity?
    /// Holdfast's dotted event kind (`holdfast.kind`), e.g. `usb.decision`, `journal.overflow`.
    public var kind: String
    /// Holdfast's structured details (`holdfast.details`).
    public var details: [String: JSONValue]

    public init(
        id: UUID = UUID(),
        kind: String,
        eventClass: EventClass,
        activityID: Int,
        activityName: String? = nil,
        time: Date,
        severity: Severity,
        status: Status? = nil,
        message: String,
        actor: Actor? = nil,
        device: DeviceIdentity? = nil,
        details: [String: JSONValue] = [:]
    ) {
        self.id = id
        self.kind = kind
        self.eventClass = eventClass
        self.activityID = activityID
        self.activityName = activityName
        self.time = time
        self.severity = severity
        self.status = status
        self.message = message
        self.actor = actor
        self.device = device
        self.details = details
    }

    /// OCSF `type_uid`: class_uid × 100 + activity_id.
    public var typeUID: Int { eventClass.uid * 100 + activityID }

    // MARK: Codable (the OCSF layout)

    private enum Keys: String, CodingKey {
        case classUID = "class_uid", className = "class_name"
        case categoryUID = "category_uid", categoryName = "category_name"
        case activityID = "activity_id", activityName = "activity_name", typeUID = "type_uid"
        case time, severityID = "severity_id", severity
        case statusID = "status_id", status
        case message, actor, device, metadata, holdfast
    }

    private struct Metadata: Codable {
        struct Product: Codable {
            var name: String
            var vendorName: String
            var version: String
            enum CodingKeys: String, CodingKey { case name, vendorName = "vendor_name", version }
        }
        /// Lower-case UUID text, as stored in the journal.
        var uid: String
        var version: String
        var product: Product
    }

    private struct HoldfastFields: Codable {
        var kind: String
        var details: [String: JSONValue]?
    }

    /// The OCSF schema version these events follow.
    public static let schemaVersion = "1.4.0"

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        let classUID = try container.decode(Int.self, forKey: .classUID)
        eventClass = EventClass(uid: classUID)
        activityID = try container.decode(Int.self, forKey: .activityID)
        activityName = try container.decodeIfPresent(String.self, forKey: .activityName)
        let milliseconds = try container.decode(Int64.self, forKey: .time)
        time = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        let severityID = try container.decode(Int.self, forKey: .severityID)
        severity = Severity(rawValue: severityID) ?? .other
        status = try container.decodeIfPresent(Int.self, forKey: .statusID).map { Status(rawValue: $0) ?? .other }
        message = try container.decode(String.self, forKey: .message)
        actor = try container.decodeIfPresent(Actor.self, forKey: .actor)
        device = try container.decodeIfPresent(DeviceIdentity.self, forKey: .device)
        let uid = try container.decode(Metadata.self, forKey: .metadata).uid
        guard let id = UUID(uuidString: uid) else {
            throw DecodingError.dataCorruptedError(forKey: .metadata, in: container, debugDescription: "metadata.uid is not a UUID")
        }
        self.id = id
        let holdfast = try container.decode(HoldfastFields.self, forKey: .holdfast)
        kind = holdfast.kind
        details = holdfast.details ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(eventClass.uid, forKey: .classUID)
        try container.encode(eventClass.name, forKey: .className)
        try container.encode(eventClass.categoryUID, forKey: .categoryUID)
        try container.encode(eventClass.categoryName, forKey: .categoryName)
        try container.encode(activityID, forKey: .activityID)
        try container.encodeIfPresent(activityName, forKey: .activityName)
        try container.encode(typeUID, forKey: .typeUID)
        guard EventCoding.isRepresentable(time) else {
            throw EncodingError.invalidValue(time, .init(codingPath: container.codingPath, debugDescription: "time outside the years 1970–9999"))
        }
        try container.encode(EventCoding.milliseconds(time), forKey: .time)
        try container.encode(severity.rawValue, forKey: .severityID)
        try container.encode(severity.name, forKey: .severity)
        try container.encodeIfPresent(status?.rawValue, forKey: .statusID)
        try container.encodeIfPresent(status?.name, forKey: .status)
        try container.encode(message, forKey: .message)
        try container.encodeIfPresent(actor, forKey: .actor)
        try container.encodeIfPresent(device, forKey: .device)
        try container.encode(
            Metadata(
                uid: id.uuidString.lowercased(),
                version: Self.schemaVersion,
                product: .init(
                    name: HoldfastVersion.productName,
                    vendorName: HoldfastVersion.vendorName,
                    version: HoldfastVersion.current
                )
            ),
            forKey: .metadata
        )
        try container.encode(HoldfastFields(kind: kind, details: details.isEmpty ? nil : details), forKey: .holdfast)
    }
}

/// An OCSF event class: its `class_uid` and the category it belongs to.
public struct EventClass: Sendable, Hashable {
    public let uid: Int
    public let name: String

    /// OCSF `category_uid` (the thousands of `class_uid`).
    public var categoryUID: Int { uid / 1000 }

    /// OCSF `category_name`.
    public var categoryName: String {
        switch categoryUID {
        case 0: "Uncategorized"
        case 1: "System Activity"
        case 2: "Findings"
        case 3: "Identity & Access Management"
        case 4: "Network Activity"
        case 5: "Discovery"
        case 6: "Application Activity"
        case 7: "Remediation"
        default: "Other"
        }
    }

    public init(uid: Int, name: String) {
        self.uid = uid
        self.name = name
    }

    /// Looks a class up by `class_uid`; unknown ones keep their number.
    public init(uid: Int) {
        self = Self.known.first { $0.uid == uid } ?? EventClass(uid: uid, name: "Unknown")
    }

    public static let base = EventClass(uid: 0, name: "Base Event")
    public static let fileSystemActivity = EventClass(uid: 1001, name: "File System Activity")
    public static let eventLogActivity = EventClass(uid: 1008, name: "Event Log Activity")
    public static let peripheralActivity = EventClass(uid: 1010, name: "Peripheral Activity")
    public static let complianceFinding = EventClass(uid: 2003, name: "Compliance Finding")
    public static let detectionFinding = EventClass(uid: 2004, name: "Detection Finding")
    public static let accountChange = EventClass(uid: 3001, name: "Account Change")
    public static let authentication = EventClass(uid: 3002, name: "Authentication")
    public static let deviceConfigStateChange = EventClass(uid: 5019, name: "Device Config State Change")
    public static let applicationLifecycle = EventClass(uid: 6002, name: "Application Lifecycle")
    public static let apiActivity = EventClass(uid: 6003, name: "API Activity")
    public static let networkRemediationActivity = EventClass(uid: 7004, name: "Network Remediation Activity")

    private static let known: [EventClass] = [
        .base, .fileSystemActivity, .eventLogActivity, .peripheralActivity, .complianceFinding,
        .accountChange, .authentication, .deviceConfigStateChange, .applicationLifecycle, .apiActivity, .networkRemediationActivity,
    ]
}

/// OCSF `severity_id`.
public enum Severity: Int, Sendable, CaseIterable, Comparable {
    case unknown = 0, informational = 1, low = 2, medium = 3, high = 4, critical = 5, fatal = 6, other = 99

    /// OCSF `severity` caption.
    public var name: String {
        switch self {
        case .unknown: "Unknown"
        case .informational: "Informational"
        case .low: "Low"
        case .medium: "Medium"
        case .high: "High"
        case .critical: "Critical"
        case .fatal: "Fatal"
        case .other: "Other"
        }
    }

    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// OCSF `status_id`.
public enum Status: Int, Sendable {
    case unknown = 0, success = 1, failure = 2, other = 99

    /// OCSF `status` caption.
    public var name: String {
        switch self {
        case .unknown: "Unknown"
        case .success: "Success"
        case .failure: "Failure"
        case .other: "Other"
        }
    }
}

/// OCSF `actor`: the user and process behind an activity.
public struct Actor: Sendable, Equatable, Codable {
    public struct User: Sendable, Equatable, Codable {
        /// Numeric uid as a string (OCSF `user.uid`).
        public var uid: String?
        public var name: String?
        public init(uid: String? = nil, name: String? = nil) {
            self.uid = uid
            self.name = name
        }
    }

    public struct Process: Sendable, Equatable, Codable {
        public var pid: Int?
        public var name: String?
        public init(pid: Int? = nil, name: String? = nil) {
            self.pid = pid
            self.name = name
        }
    }

    public var user: User?
    public var process: Process?

    public init(user: User? = nil, process: Process? = nil) {
        self.user = user
        self.process = process
    }
}

/// OCSF `device`: the workstation.
public struct DeviceIdentity: Sendable, Equatable, Codable {
    /// The broker-assigned device id once enrolled, else the machine-id (OCSF `device.uid`).
    public var uid: String?
    public var hostname: String?
    /// OCSF `device.type_id`; 2 is Desktop.
    public var typeID: Int

    public init(uid: String? = nil, hostname: String? = nil, typeID: Int = 2) {
        self.uid = uid
        self.hostname = hostname
        self.typeID = typeID
    }

    enum CodingKeys: String, CodingKey { case uid, hostname, typeID = "type_id" }

    /// This workstation before enrollment: the machine-id (machine-id(5)) and the host name.
    public static func local(machineIDPath: String = "/etc/machine-id") -> DeviceIdentity {
        var uid: String?
        if let bytes = SmallFile.read(machineIDPath, limit: 64) {
            let text = String(decoding: bytes, as: UTF8.self).filter { $0.isHexDigit }
            if text.count == 32 { uid = text }
        }
        var name = [CChar](repeating: 0, count: 256)
        let hostname = gethostname(&name, name.count - 1) == 0 ? String(decoding: name.prefix { $0 != 0 }.map(UInt8.init(bitPattern:)), as: UTF8.self) : nil
        return DeviceIdentity(uid: uid, hostname: hostname?.isEmpty == true ? nil : hostname)
    }
}

/// The one JSON layout events are stored and sent in: keys sorted, so equal events are equal bytes.
public enum EventCoding {
    /// Encodes an event as compact JSON with sorted keys.
    public static func encode(_ event: Event) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(event))
    }

    /// The latest time an event may carry (9999-12-31T23:59:59Z): beyond it, milliseconds no
    /// longer mean a date, and conversions would trap.
    public static let latestTime = Date(timeIntervalSince1970: 253_402_300_799)

    /// Whether a time can be written as OCSF milliseconds.
    public static func isRepresentable(_ time: Date) -> Bool {
        let seconds = time.timeIntervalSince1970
        return seconds.isFinite && seconds >= 0 && time <= latestTime
    }

    /// Milliseconds since the epoch, clamped to the representable range (never traps).
    public static func milliseconds(_ time: Date) -> Int64 {
        let seconds = time.timeIntervalSince1970
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return Int64((min(seconds, latestTime.timeIntervalSince1970) * 1000).rounded())
    }

    /// Decodes an event from its JSON.
    public static func decode(_ bytes: some Collection<UInt8>) throws -> Event {
        try JSONDecoder().decode(Event.self, from: Data(bytes))
    }
}
