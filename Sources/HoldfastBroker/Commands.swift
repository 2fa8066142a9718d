import FoundationEssentials
public import HoldfastCore
public import HoldfastCrypto
public import HoldfastStore
import Synchronization

/// Remote lockdown on the broker's side (docs/lockdown.md, "Remote commands"): commands queued
/// per device in sequence and signed with the broker's key, delivered by the agents' long poll,
/// acknowledged with the state that resulted.
extension Broker {
    /// Commands one poll answer carries at most (the agent asks again after the last).
    static let commandsPerAnswer = 32
    /// How often held polls' devices are looked up for new commands: one query for all of them.
    static let commandCheckInterval: Duration = .milliseconds(100)

    /// Signs a command with the broker's key (`holdfast-command+jws`).
    public static func signCommand(_ command: RemoteCommand, key: SigningKey) throws -> String {
        try JWS.sign(Array(command.payload.compactText.utf8), with: key, header: JWSHeader(keyID: key.publicKey.thumbprint, type: RemoteCommand.documentType))
    }

    /// Queues the device's next command, signed. Of two admins racing, the loser signs again with
    /// the next sequence: the order the agent applies is the order the broker stored.
    public static func queueCommand(
        storage: any BrokerStorage, key: SigningKey, device: String, action: RemoteCommand.Action, scopes: [LockdownScope], reason: String, admin: String,
        lifetime: Int64, at time: Int64
    ) throws -> QueuedCommand {
        for _ in 0..<5 {
            let (next, overflow) = try storage.latestCommandSequence(device: device).addingReportingOverflow(1)
            guard !overflow else { throw ComplianceError("the commands table holds a sequence at the largest number for \(device): someone wrote to it by hand") }
            let command = RemoteCommand(
                device: device, sequence: next, issuedAt: time, expiresAt: time + lifetime, action: action,
                scopes: scopes, reason: reason, admin: admin)
            let queued = QueuedCommand(
                device: device, sequence: command.sequence, action: action.rawValue, scopes: scopes.map(\.rawValue).joined(separator: ","), reason: reason, admin: admin,
                issuedAt: time, expiresAt: command.expiresAt, document: try signCommand(command, key: key))
            if try storage.addCommand(queued) { return queued }
        }
        throw ComplianceError("another admin keeps queueing commands for \(device) at the same time; try again")
    }

    /// The highest command sequence queued for a device, from a cache refreshed at most every
    /// `commandCheckInterval` with one query over the rows added since (thousands of held polls
    /// ask; the admin CLI writes from another process).
    func queuedSequence(_ device: String) -> Int64 {
        commandCache.withLock { cache in
            let now = ContinuousClock.now
            if cache.checked.map({ now - $0 >= Self.commandCheckInterval }) ?? true {
                cache.checked = now
                if let fresh = try? storage.commandSequences(afterRow: cache.row) {
                    cache.row = fresh.row
                    for (id, sequence) in fresh.latest where sequence > cache.latest[id] ?? 0 { cache.latest[id] = sequence }
                }
            }
            return cache.latest[device] ?? 0
        }
    }

    /// `GET /v1/poll?policy_after=V&command_after=S[&wait=W]`: the agent's one long poll. Answers
    /// at once with what is new — the agent policy when newer than V, the device's commands after
    /// S (oldest first) — else holds the connection until something is, or `wait` passes (204).
    func poll(_ request: HTTPRequest) -> HTTPHandling {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return .respond(response)
        }
        let policyAfter = request.query["policy_after"].flatMap { Int64($0) } ?? 0
        let commandAfter = request.query["command_after"].flatMap { Int64($0) } ?? 0
        let wait = min(max(request.query["wait"].flatMap { Int64($0) } ?? 0, 0), settings.maximumWait)
        let id = device.id
        let answer: @Sendable (_ direct: Bool) -> HTTPResponse? = { [self] direct in
            var object: [String: JSONValue] = [:]
            if let latest = latestAgentPolicy(), latest.version > policyAfter {
                object["policy"] = .object(["version": .int(latest.version), "policy": .string(latest.document)])
            }
            if direct || queuedSequence(id) > commandAfter, let queued = try? storage.commands(device: id, after: commandAfter, limit: Self.commandsPerAnswer), !queued.isEmpty {
                object["commands"] = .array(queued.map { .object(["seq": .int($0.sequence), "document": .string($0.document)]) })
            }
            return object.isEmpty ? nil : .json(200, .object(object))
        }
        if let now = answer(true) { return .respond(now) }
        if wait == 0 { return .respond(HTTPResponse(status: 204)) }
        return .wait(until: ContinuousClock.now + .seconds(wait), ready: { answer(false) }, timeout: HTTPResponse(status: 204))
    }

    /// `POST /v1/commands/ack` with `{seq, status: applied|refused, detail, state}`: what the agent
    /// made of a command and the lockdown it has in force since.
    func acknowledgeCommand(_ request: HTTPRequest) -> HTTPResponse {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return response
        }
        guard let body = try? Self.parseObject(request.body), let sequence = body["seq"]?.intValue, sequence >= 1,
              let status = body["status"]?.stringValue, ["applied", "refused"].contains(status) else {
            return refuse(device.id, "command.ack_refused", 400, "bad-request", "say {seq, status: applied|refused, detail, state}")
        }
        let detail = Printable.escape(String((body["detail"]?.stringValue ?? "").prefix(512)))
        var state: JSONValue?
        if let given = body["state"] {
            do {
                state = try Self.lockdownState(given)
            } catch {
                return refuse(device.id, "command.ack_refused", 400, "bad-request", "\(error)")
            }
        }
        let current = now
        do {
            let changed = try storage.acknowledgeCommand(device: device.id, sequence: sequence, status: status, detail: detail, at: current)
            if let state { try storage.recordLockdownState(device: device.id, state: state.compactText, at: current) }
            try storage.log(BrokerLogEntry(time: current, device: device.id, kind: "command.\(status)", detail: "seq \(sequence)" + (detail.isEmpty ? "" : ": \(detail)")))
            return .json(200, .object(["recorded": .bool(changed)]))
        } catch {
            logger.error("cannot record a command acknowledgement", ("error", "\(error)"))
            return .error(503, "storage", "the broker cannot record the acknowledgement now; retry")
        }
    }

    /// The lockdown an agent reports, checked: `locked` and `enforced` are lists of scope names,
    /// `suspended_until` (break-glass) a time per scope. Anything else is dropped.
    static func lockdownState(_ value: JSONValue) throws -> JSONValue {
        guard case .object(let members) = value else { throw ComplianceError("state must be an object") }
        func scopes(_ name: String) throws -> JSONValue? {
            guard let list = members[name] else { return nil }
            guard case .array(let items) = list, items.count <= LockdownScope.allCases.count,
                  items.allSatisfy({ $0.stringValue.flatMap(LockdownScope.init(rawValue:)) != nil }) else {
                throw ComplianceError("state.\(name) must list lockdown scopes")
            }
            return list
        }
        var kept: [String: JSONValue] = [:]
        kept["locked"] = try scopes("locked")
        kept["enforced"] = try scopes("enforced")
        if let suspended = members["suspended_until"] {
            guard case .object(let times) = suspended, times.count <= LockdownScope.allCases.count,
                  times.allSatisfy({ LockdownScope(rawValue: $0.key) != nil && ($0.value.intValue ?? -1) >= 0 }) else {
                throw ComplianceError("state.suspended_until must map scopes to times")
            }
            kept["suspended_until"] = suspended
        }
        return .object(kept)
    }

    /// `POST /v1/breakglass-secret`: the device's break-glass secret, for an agent enrolled before
    /// the enrollment answer carried it. Made once (the first ask keeps it), the same every time.
    func breakglassSecret(_ request: HTTPRequest) -> HTTPResponse {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return response
        }
        do {
            guard let secret = try storage.breakglassSecret(device: device.id, orSet: try SecureRandom.bytes(32)) else {
                return .error(404, "unknown-device", "no such device")
            }
            return .json(200, .object(["secret": .string(Base64URL.encode(secret))]))
        } catch {
            logger.error("cannot read or keep a break-glass secret", ("error", "\(error)"))
            return .error(503, "storage", "the broker cannot answer now; retry")
        }
    }
}
