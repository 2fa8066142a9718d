import FoundationEssentials
public import HoldfastCore
public import HoldfastStore

/// The access review (`holdfast-broker review`, docs/offboarding.md): every privilege beyond the
/// default that is in force now — approved exceptions, local USB exceptions root granted on a
/// device, open break-glass windows, and the agent policy's rules that allow (USB allow rules,
/// local exceptions at all, approved printers) — oldest first, with who granted it, why, when it
/// ends (policy rules: never; they are shown as policy-level) and when events last showed it used.
/// Anything not seen in use for `unusedAfter` seconds is flagged for removal.
extension Broker {
    /// How far back the review looks for local USB exceptions (their longest allowed span).
    static let localExceptionWindow: Int64 = 31 * 86_400

    public static func accessReview(storage: any BrokerStorage, now: Int64, unusedAfter: Int64) throws -> JSONValue {
        var items: [[String: JSONValue]] = []
        // An exception's use counts only on its own device (local ids are short; another device's
        // events must not keep one from being flagged).
        var exceptionUses: [String: Int64] = [:]
        for use in try storage.lastUses(kind: "usb.decision", jsonPath: "$.holdfast.details.exception.id")
            + storage.lastUses(kind: "print.job", jsonPath: "$.holdfast.details.exception.id") {
            exceptionUses[use.device + "/" + use.value] = max(exceptionUses[use.device + "/" + use.value] ?? 0, use.timeMilliseconds / 1_000)
        }
        func lastUse(_ device: String, _ id: String) -> Int64? { exceptionUses[device + "/" + id] }
        /// A policy rule's use on any device.
        func latestUse(_ uses: [ReviewUse]) -> [String: Int64] {
            var latest: [String: Int64] = [:]
            for use in uses { latest[use.value] = max(latest[use.value] ?? 0, use.timeMilliseconds / 1_000) }
            return latest
        }

        // Approved exceptions still in force.
        for request in try storage.requests(statuses: ["approved"], device: nil, limit: 1_000_000) where (request.until ?? 0) > now {
            let what = request.summary ?? request.kind
            var item: [String: JSONValue] = [
                "kind": "exception", "id": .string("#\(request.number)"), "device": .string(request.device), "user": .string(request.user),
                "what": .string(what), "granted_by": .string(request.decidedBy ?? "?"), "granted_at": .int(request.decidedAt ?? request.receivedAt),
                "reason": .string("asked: \(request.reason)" + (request.note.map { "; approver: \($0)" } ?? "")), "expires": .int(request.until ?? now),
            ]
            if let used = lastUse(request.device, request.request) { item["last_used"] = .int(used) }
            items.append(item)
        }

        // Local USB exceptions root granted on a device, still in force by their end.
        let since = (now - localExceptionWindow) * 1_000
        var ended = Set<String>()
        for kind in ["usb.exception_revoked", "usb.exception_expired"] {
            for event in try storage.eventBodies(kind: kind, sinceMilliseconds: since, limit: 1_000_000) {
                if let id = details(event.body)?["id"]?.stringValue { ended.insert(event.device + "/" + id) }
            }
        }
        for event in try storage.eventBodies(kind: "usb.exception_granted", sinceMilliseconds: since, limit: 1_000_000) {
            guard let details = details(event.body), details["approved"]?.boolValue != true, let id = details["id"]?.stringValue,
                  !ended.contains(event.device + "/" + id) else { continue }
            // An end that does not read is shown as unknown, not skipped.
            let until = details["until"]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) }.map { Int64($0.timeIntervalSince1970) }
            if let until, until <= now { continue }
            var item: [String: JSONValue] = [
                "kind": "local-usb-exception", "id": .string(id), "device": .string(event.device),
                "what": .string("USB \(details["vendor"]?.stringValue ?? "?"):\(details["product"]?.stringValue ?? "?") (\(details["target"]?.stringValue ?? "?"))"),
                "granted_by": .string(details["granted_by"]?.stringValue ?? "?"), "granted_at": .int(event.timeMilliseconds / 1_000),
                "reason": .string(details["reason"]?.stringValue ?? ""), "expires": until.map(JSONValue.int) ?? .string("unknown"),
            ]
            if let used = lastUse(event.device, id) { item["last_used"] = .int(used) }
            items.append(item)
        }

        // Break-glass windows not over.
        for code in try storage.openBreakglassCodes(at: now) {
            items.append([
                "kind": "breakglass", "id": .string(String(code.codeSHA256.prefix(12))), "device": .string(code.device),
                "what": .string("a one-time code lifting \(code.scopes) from \(Date(timeIntervalSince1970: Double(code.startsAt)).formatted(.iso8601))"), "granted_by": .string(code.admin), "granted_at": .int(code.startsAt),
                "reason": .string(code.reason), "expires": .int(code.endsAt),
            ])
        }

        // The agent policy's allowing rules: policy-level, no end.
        if let policy = try storage.latestDocument(kind: .agentPolicy), let sections = policyPayload(policy.document) {
            let ruleUses = latestUse(try storage.lastUses(kind: "usb.decision", jsonPath: "$.holdfast.details.rule"))
            let printerUses = latestUse(try storage.lastUses(kind: "print.job", jsonPath: "$.holdfast.details.rule"))
            let base: [String: JSONValue] = [
                "granted_by": .string(policy.setBy), "granted_at": .int(policy.setAt), "policy_version": .int(policy.version), "policy_level": true, "expires": .null,
            ]
            if case .array(let rules)? = sections["usb"]?["rules"] {
                for rule in rules {
                    guard let id = rule["id"]?.stringValue, let action = rule["action"]?.stringValue, action != "block" else { continue }
                    var item = base
                    item["kind"] = "usb-rule"
                    item["id"] = .string(id)
                    item["what"] = .string("USB rule \(action)" + describe(rule["match"] ?? .object([:]), ["vendor", "product", "serial", "hash", "class", "connect_type"])
                                           + describe(rule, ["interfaces"]))
                    item["reason"] = .string(rule["comment"]?.stringValue ?? "")
                    if let used = ruleUses[id] { item["last_used"] = .int(used) }
                    items.append(item)
                }
            }
            if let maximum = sections["usb"]?["max_exception"], maximum.stringValue != "0", maximum.intValue != 0 {
                var item = base
                item["kind"] = "usb-local-exceptions"
                item["id"] = "usb.max_exception"
                item["what"] = .string("root may grant local USB exceptions of up to \(maximum.stringValue ?? maximum.intValue.map { "\($0) s" } ?? "?") on every device")
                item["reason"] = ""
                items.append(item)
            }
            if case .array(let printers)? = sections["print"]?["approved"] {
                let quota = sections["print"]?["quota"]?["pages_per_day"]?.intValue.map { "\($0) pages a day each" } ?? "no page quota"
                for printer in printers {
                    guard let id = printer["id"]?.stringValue else { continue }
                    var item = base
                    item["kind"] = "printer"
                    item["id"] = .string(id)
                    let users: String
                    if case .array(let names)? = printer["users"] { users = names.compactMap(\.stringValue).joined(separator: ", ") } else { users = "everyone" }
                    item["what"] = .string("approved printer" + describe(printer, ["name", "uri"]) + " for \(users); \(quota)")
                    item["reason"] = .string(printer["comment"]?.stringValue ?? "")
                    if let used = printerUses[id] { item["last_used"] = .int(used) }
                    items.append(item)
                }
            }
        }

        // Flags: not seen in use for `unusedAfter` (policy rules and exceptions alike).
        for index in items.indices {
            let seen = items[index]["last_used"]?.intValue ?? items[index]["granted_at"]?.intValue ?? now
            if now - seen >= unusedAfter { items[index]["flag"] = .string(items[index]["last_used"] == nil ? "never-used" : "unused") }
        }
        items.sort { ($0["granted_at"]?.intValue ?? 0, $0["id"]?.stringValue ?? "") < ($1["granted_at"]?.intValue ?? 0, $1["id"]?.stringValue ?? "") }
        return .object(["at": .int(now), "unused_after": .int(unusedAfter), "items": .array(items.map(JSONValue.object))])
    }

    /// ` name=value …` for the members present.
    static func describe(_ object: JSONValue, _ names: [String]) -> String {
        names.compactMap { name in object[name].map { value in " \(name)=\(value.stringValue ?? value.compactText)" } }.joined()
    }

    /// The `holdfast.details` of an uploaded event body.
    static func details(_ body: String) -> JSONValue? {
        (try? JSONValue.parse(Array(body.utf8)))?["holdfast"]?["details"]
    }

    /// The policy document inside a stored agent policy (`signAgentPolicy`: a JWS whose payload
    /// carries the document base64url-encoded): the broker's own store, signed when it was set;
    /// read here, not verified again.
    static func policyPayload(_ compact: String) -> JSONValue? {
        let parts = compact.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let bytes = Base64URL.decode(String(parts[1])),
              let document = (try? JSONValue.parse(bytes))?["document"]?.stringValue, let policy = Base64URL.decode(document) else { return nil }
        return try? JSONValue.parse(policy)
    }
}
