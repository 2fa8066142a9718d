import FoundationEssentials
import HoldfastCore
public import HoldfastCrypto
public import HoldfastStore

/// Just-in-time exceptions on the broker's side (docs/exceptions.md): agents send their users'
/// requests, admins approve, deny or revoke them, and each decision travels to the device as a
/// signed command in its sequence.
extension StoredRequest {
    /// What the request asks for, in words (`USB 0781:5567 …`, `200 pages on office`); nil when
    /// its stored match does not parse.
    public var summary: String? {
        guard let kind = ExceptionKind(rawValue: kind), case .object(let members)? = try? JSONValue.parse(Array(match.utf8)),
              let parsed = try? ExceptionMatch.parse(kind: kind, members) else { return nil }
        return parsed.summary
    }
}

extension Broker {
    /// Requests one device may have waiting: a user (or a script) cannot flood the approvers.
    public static let pendingRequestLimit = 20
    /// A request older than this is not approved: the need has passed or changed; ask again.
    public static let requestShelfLife: Int64 = 7 * 86_400

    /// `POST /v1/requests` with the request (`AccessRequestSubmission`): kept as pending, answered
    /// with the broker's number. The same request id sent again gets the same number.
    func receiveRequest(_ request: HTTPRequest) -> HTTPResponse {
        let device: EnrolledDevice
        switch authenticate(request) {
        case .success(let found): device = found
        case .failure(let response): return response
        }
        let submission: AccessRequestSubmission
        do {
            submission = try AccessRequestSubmission.parse(try Self.parseObject(request.body))
        } catch {
            return refuse(device.id, "request.refused", 400, "bad-request", "\(error)")
        }
        do {
            if try offboarding(of: submission.user) != nil {
                return refuse(device.id, "request.refused", 403, "user-offboarded", "\(submission.user) was offboarded: no exception is granted to them")
            }
        } catch {
            return .error(503, "storage", "the broker cannot read its state now; retry")
        }
        let current = now
        let stored = StoredRequest(
            device: device.id, request: submission.id, kind: submission.match.kind.rawValue, user: submission.user, uid: submission.uid,
            match: JSONValue.object(submission.match.members).compactText, label: submission.label, seconds: submission.seconds, reason: submission.reason, created: submission.created,
            receivedAt: current)
        do {
            guard let (number, new) = try storage.addRequest(stored, pendingLimit: Self.pendingRequestLimit, shelfLife: Self.requestShelfLife) else {
                return refuse(device.id, "request.refused", 429, "too-many-pending", "this device has \(Self.pendingRequestLimit) requests waiting for a decision; no more until some are decided")
            }
            if new {
                try storage.log(BrokerLogEntry(
                    time: current, device: device.id, kind: "request.received",
                    detail: "#\(number) \(submission.match.summary) for \(submission.user) (uid \(submission.uid)), \(DurationText.text(submission.seconds)): \(submission.reason)"))
            }
            return .json(200, .object(["number": .int(number), "status": "pending"]))
        } catch {
            logger.error("cannot keep a request", ("error", "\(error)"))
            return .error(503, "storage", "the broker cannot keep the request now; retry")
        }
    }

    /// An admin's decision on a request.
    public enum RequestDecision: Sendable, Equatable {
        /// For the time asked, or `seconds` from now.
        case approve(seconds: Int64?)
        case deny
        /// Ends an approval before its time.
        case revoke
    }

    /// Decides request `number` and queues the signed command that carries it to the device, in one
    /// transaction (two approvers racing decide it once). Returns the request as decided.
    public static func decideRequest(
        storage: any BrokerStorage, key: SigningKey, number: Int64, decision: RequestDecision, note: String, admin: String, at time: Int64
    ) throws -> StoredRequest {
        guard let stored = try storage.request(number: number) else { throw ComplianceError("no request #\(number) (holdfast-broker requests lists them)") }
        guard let device = try storage.device(id: stored.device), device.removedAt == nil else {
            throw ComplianceError("request #\(number)'s device \(stored.device) was unenrolled: it no longer listens")
        }
        let reference = RequestReference(request: stored.request, number: number)
        let from: String, to: String, action: RemoteCommand.Action, expires: Int64
        var until: Int64?
        var exception: GrantedException?
        switch decision {
        case .approve(let seconds):
            guard stored.status == "pending" else { throw ComplianceError("request #\(number) is \(stored.status), not pending") }
            guard time - stored.receivedAt <= requestShelfLife else {
                throw ComplianceError("request #\(number) is more than \(DurationText.text(requestShelfLife)) old; the user asks again if it is still needed")
            }
            if let offboarded = try storage.offboardedUsers().first(where: { $0.user.lowercased() == stored.user.lowercased() }) {
                throw ComplianceError("\(stored.user) was offboarded by \(offboarded.admin) (\(offboarded.reason)): no exception is granted to them; deny it")
            }
            let span = seconds ?? stored.seconds
            guard span > 0, span <= AccessRequestSubmission.maximumSeconds else {
                throw ComplianceError("an exception lasts from 1 second to \(DurationText.text(AccessRequestSubmission.maximumSeconds))")
            }
            guard let kind = ExceptionKind(rawValue: stored.kind), case .object(let members)? = try? JSONValue.parse(Array(stored.match.utf8)) else {
                throw ComplianceError("request #\(number) is stored damaged (kind \(stored.kind)); it cannot be approved")
            }
            let match: ExceptionMatch
            do {
                match = try ExceptionMatch.parse(kind: kind, members)
            } catch {
                throw ComplianceError("request #\(number) is stored damaged (\(error)); it cannot be approved")
            }
            (from, to, action) = ("pending", "approved", .grant)
            until = time + span
            // Never applied after it would have ended anyway.
            expires = time + span
            exception = GrantedException(request: stored.request, number: number, match: match, user: stored.user, uid: stored.uid, until: time + span, asked: stored.reason)
        case .deny:
            guard stored.status == "pending" else { throw ComplianceError("request #\(number) is \(stored.status), not pending") }
            (from, to, action, expires) = ("pending", "denied", .deny, time + 7 * 86_400)
        case .revoke:
            guard stored.status == "approved" else { throw ComplianceError("request #\(number) is \(stored.status); only an approved one can be revoked") }
            guard let end = stored.until, end > time else { throw ComplianceError("request #\(number)'s exception has ended already") }
            (from, to, action, expires) = ("approved", "revoked", .revoke, end)
        }
        for _ in 0..<5 {
            let (next, overflow) = try storage.latestCommandSequence(device: stored.device).addingReportingOverflow(1)
            guard !overflow else { throw ComplianceError("the commands table holds a sequence at the largest number for \(stored.device): someone wrote to it by hand") }
            let command = RemoteCommand(
                device: stored.device, sequence: next, issuedAt: time, expiresAt: expires, action: action, exception: exception,
                request: exception == nil ? reference : nil, reason: note, admin: admin)
            let queued = QueuedCommand(
                device: stored.device, sequence: next, action: action.rawValue, scopes: "", reason: note, admin: admin, issuedAt: time, expiresAt: expires,
                document: try signCommand(command, key: key))
            let trail = BrokerLogEntry(
                time: time, device: stored.device, kind: "request.\(to)",
                detail: "#\(number) \(to) by \(admin) (command \(next))" + (until.map { " until \(Date(timeIntervalSince1970: Double($0)).formatted(.iso8601))" } ?? "") + ": \(note)")
            let action = "request=\(number) device=\(stored.device) \(to) seq=\(next)" + (until.map { " until=\($0)" } ?? "") + " note=\(note)"
            switch try storage.decideRequest(
                number: number, from: from, to: to, by: admin, note: note, until: until, command: queued, trail: trail, adminAction: action, at: time) {
            case .decided:
                guard let decided = try storage.request(number: number) else { throw ComplianceError("request #\(number) vanished") }
                return decided
            case .notInState(let status):
                throw ComplianceError("request #\(number) is \(status ?? "gone") now (decided meanwhile)")
            case .sequenceTaken:
                continue
            }
        }
        throw ComplianceError("another admin keeps queueing commands for \(stored.device) at the same time; try again")
    }
}
