import FoundationEssentials
public import HoldfastCore
public import HoldfastCrypto
public import HoldfastStore
import Synchronization

/// Offboarding on the broker's side (docs/offboarding.md): `holdfast-broker offboard USER` records
/// it and queues a signed `offboard` command for every enrolled device in one transaction; from
/// then on `/v1/authz` refuses every grant that carries the user, attestation for them gets no
/// grant, and their requests are refused. Devices enrolled later get the command at enrollment.
/// Both commands apply late too: they keep the broker's order, so the latest word on a user wins.
extension Broker {
    /// The `exp` of an offboarding or reinstatement command (the payload needs one). The agent
    /// applies both even after it: they keep the broker's order, so the latest word on a user wins.
    public static let offboardingLifetime = RemoteCommand.maximumLifetime
    /// Who is never offboarded: root on the console is the way in when all else is refused.
    public static let untouchableUsers: Set<String> = ["root"]

    /// What `offboard` and `reinstate` did.
    public struct OffboardingResult: Sendable {
        public let record: OffboardingRecord
        /// Devices a command was queued for.
        public let devices: Int
    }

    /// Offboards (`offboard == true`) or reinstates `user` everywhere: the record, and one signed
    /// command per enrolled device, in one transaction.
    public static func setOffboarded(
        storage: any BrokerStorage, key: SigningKey, user: String, offboard: Bool, reason: String, admin: String, at time: Int64
    ) throws -> OffboardingResult {
        guard LoginName.isValid(user) else { throw ComplianceError("USER is a login name as the agents report it (no control characters, at most \(LoginName.maximumBytes) bytes)") }
        guard !untouchableUsers.contains(user.lowercased()) else { throw ComplianceError("\(user) is not offboarded: root on the console is the way in when everything else is refused") }
        guard RemoteCommand.isWords(reason, maximumBytes: RemoteCommand.maximumReasonBytes) else {
            throw ComplianceError("--reason is 1 to \(RemoteCommand.maximumReasonBytes) bytes without control characters")
        }
        // One spelling per person: the first one recorded (names are compared with their case
        // folded, so `Maria` after `maria` is maria).
        let user = try storage.offboardingHistory(user: user).first?.user ?? user
        let action: RemoteCommand.Action = offboard ? .offboard : .reinstate
        let record = OffboardingRecord(user: user, action: action.rawValue, reason: reason, admin: admin, at: time)
        let sign: CommandSigner = { device, sequence throws(StoreError) in
            try signedUserCommand(key: key, device: device, sequence: sequence, action: action, user: user, reason: reason, admin: admin, at: time)
        }
        switch try storage.setOffboarded(record, sign: sign, requestNote: "\(user) was offboarded by \(admin): \(reason)") {
        case .recorded(let commands):
            return OffboardingResult(record: record, devices: commands)
        case .already(let latest):
            let since = latest.map { " since \(Date(timeIntervalSince1970: Double($0.at)).formatted(.iso8601)) (by \($0.admin))" } ?? ""
            throw ComplianceError(offboard
                ? "\(user) is offboarded already\(since); holdfast-broker offboard-status \(user) shows each device"
                : "\(user) is not offboarded\(since)")
        }
    }

    /// `offboard|reinstate USER --resend`: the latest word on the user again, to the devices that
    /// have not applied it and have none on its way (refused by an older agent, never sent).
    public static func resend(storage: any BrokerStorage, key: SigningKey, user: String, offboard: Bool, admin: String, at time: Int64) throws -> OffboardingResult {
        let history = try storage.offboardingHistory(user: user)
        guard let latest = history.last, let user = history.first?.user else { throw ComplianceError("\(user) was never offboarded") }
        guard (latest.action == "offboard") == offboard else {
            throw ComplianceError("\(user) is \(latest.action == "offboard" ? "offboarded" : "not offboarded") now; nothing of that to send again")
        }
        let action: RemoteCommand.Action = offboard ? .offboard : .reinstate
        let sign: CommandSigner = { device, sequence throws(StoreError) in
            try signedUserCommand(key: key, device: device, sequence: sequence, action: action, user: user, reason: latest.reason, admin: latest.admin, at: time)
        }
        guard let sent = try storage.resendUserCommand(user: user, by: admin, at: time, sign: sign) else { throw ComplianceError("\(user) was never offboarded") }
        try storage.recordAdminAction(admin: admin, verb: action.rawValue + "-resend", detail: "user=\(user) devices=\(sent.devices)", at: time)
        var resent = sent.record
        resent.at = time
        resent.admin = admin
        return OffboardingResult(record: resent, devices: sent.devices)
    }

    /// One signed `offboard` or `reinstate` for a device at a sequence.
    static func signedUserCommand(
        key: SigningKey, device: String, sequence: Int64, action: RemoteCommand.Action, user: String, reason: String, admin: String, at time: Int64
    ) throws(StoreError) -> QueuedCommand {
        let command = RemoteCommand(
            device: device, sequence: sequence, issuedAt: time, expiresAt: time + offboardingLifetime, action: action, user: user, reason: reason, admin: admin)
        let document: String
        do {
            document = try signCommand(command, key: key)
        } catch {
            throw StoreError(.encoding, "cannot sign the \(action.rawValue) command for \(device): \(error)")
        }
        return QueuedCommand(
            device: device, sequence: sequence, action: action.rawValue, scopes: "", reason: reason, admin: admin, issuedAt: time, expiresAt: command.expiresAt,
            document: document, subject: user)
    }

    /// For a device just enrolled: the offboardings in force reach it too (a workstation set up
    /// after someone left must not let them in).
    func queueOffboardings(device: String) throws {
        let key = keys.current
        let time = now
        _ = try storage.queueOffboardings(device: device) { record, sequence throws(StoreError) in
            try Self.signedUserCommand(
                key: key, device: device, sequence: sequence, action: .offboard, user: record.user, reason: record.reason, admin: record.admin, at: time)
        }
    }

    /// The offboarding in force for `user` (its case folded: a directory's names are not
    /// case-sensitive). Every call asks storage whether anything was offboarded or reinstated
    /// since (one indexed query: the admin CLI writes from another process, and an offboarding
    /// must hold from the moment it is committed); the list itself is read again only then. Nil
    /// when the user is not offboarded; throws when storage cannot say (callers fail closed).
    func offboarding(of user: String) throws -> OffboardingRecord? {
        try offboardingCache.withLock { cache throws -> OffboardingRecord? in
            let change = try storage.offboardingChange()
            if change != cache.change {
                cache.users = Dictionary(try storage.offboardedUsers().map { ($0.user.lowercased(), $0) }, uniquingKeysWith: { $1 })
                cache.change = change
            }
            return cache.users[user.lowercased()]
        }
    }

    /// What `offboard-status USER` shows: the record and, per device, its command.
    public static func offboardingStatus(storage: any BrokerStorage, user: String) throws -> JSONValue {
        let history = try storage.offboardingHistory(user: user)
        guard let latest = history.last else { throw ComplianceError("\(user) was never offboarded") }
        // Per device, the latest command about the user (an offboarding, or the reinstatement after it).
        var latestByDevice: [String: QueuedCommand] = [:]
        for command in try storage.userCommands(user: user) where command.issuedAt >= latest.at || latestByDevice[command.device] == nil {
            latestByDevice[command.device] = command
        }
        let devices = try storage.devices()
        var rows: [JSONValue] = []
        var counts: [String: Int64] = [:]
        var lastApplied: Int64?
        for device in devices where device.removedAt == nil || latestByDevice[device.id] != nil {
            var row: [String: JSONValue] = ["device": .string(device.id)]
            if let hostname = (try? JSONValue.parse(Array(device.facts.utf8)))?["hostname"]?.stringValue { row["hostname"] = .string(hostname) }
            if device.removedAt != nil {
                // Unenrolled: it no longer listens, and no longer gets grants; counted apart.
                row["state"] = "unenrolled"
                counts["unenrolled", default: 0] += 1
            } else if let command = latestByDevice[device.id], command.issuedAt >= latest.at {
                let state = command.status == "queued" ? "pending" : command.status
                row["state"] = .string(state)
                row["seq"] = .int(command.sequence)
                row["sent_at"] = .int(command.issuedAt)
                if let at = command.statusAt { row["acknowledged_at"] = .int(at) }
                if let detail = command.detail, !detail.isEmpty { row["detail"] = .string(detail) }
                if command.status == "applied", let at = command.statusAt { lastApplied = max(lastApplied ?? at, at) }
                counts[state, default: 0] += 1
            } else if latest.action == "reinstate" && latestByDevice[device.id] == nil {
                // Never told of the offboarding (enrolled after the reinstatement): nothing owed.
                row["state"] = "not-needed"
                counts["not-needed", default: 0] += 1
            } else {
                // Enrolled and not sent: a device enrolled while storage failed (--resend sends it).
                row["state"] = "not-sent"
                counts["not-sent", default: 0] += 1
            }
            if let seen = device.lastSeen { row["last_seen"] = .int(seen) }
            rows.append(.object(row))
        }
        var object: [String: JSONValue] = [
            "user": .string(history.first?.user ?? user), "state": .string(latest.action == "offboard" ? "offboarded" : "reinstated"), "since": .int(latest.at),
            "by": .string(latest.admin), "reason": .string(latest.reason), "devices": .array(rows), "counts": .object(counts.mapValues(JSONValue.int)),
            "history": .array(history.map { .object(["action": .string($0.action), "at": .int($0.at), "by": .string($0.admin), "reason": .string($0.reason)]) }),
        ]
        if let lastApplied { object["last_applied_at"] = .int(lastApplied) }
        return .object(object)
    }
}
