import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore

/// `holdfast request usb|print …`: ask for a just-in-time exception (any local user; recorded
/// with the caller's uid; an approver on the broker decides). docs/exceptions.md.
enum RequestVerb {
    static func common(_ extra: [OptionSpec]) -> [OptionSpec] {
        [Daemon.socketOption] + extra + [
            OptionSpec("for", value: "DURATION", help: "how long you need it, e.g. 2h or 1d (required; at most 30d; the approver may shorten it)"),
            OptionSpec("reason", value: "TEXT", help: "why, for the approver (required: a ticket and a sentence)"),
            OptionSpec("json", help: "print the request as JSON"),
        ]
    }

    static func send(_ arguments: ParsedArguments, _ context: CommandContext, _ body: [String: JSONValue]) throws -> ExitCode {
        let entry = try Daemon.call(Daemon.client(arguments, context), "request.submit", body)
        if arguments.flag("json") {
            context.line(try Daemon.json(entry))
        } else {
            context.line("asked for \(Printable.escape(entry["summary"]?.stringValue ?? "?")) for \(DurationText.text(entry["seconds"]?.intValue ?? 0)) as request \(entry["request"]?.stringValue ?? "?")")
            context.line("it goes to the broker now (or as soon as it is reachable); 'holdfast requests' shows when an approver decides")
        }
        return .success
    }

    static func seconds(_ arguments: ParsedArguments) throws(UsageError) -> Int64 {
        guard let seconds = try arguments.duration("for") else { throw UsageError("--for is required: every exception ends") }
        return seconds
    }
}

struct RequestUSB: Subcommand {
    static let path = ["request", "usb"]
    static let summary = "ask an approver to allow a USB device for a while (any user)"
    static let options = RequestVerb.common([OptionSpec("device", value: "DEV", help: "the device: a bus path as 'holdfast usb devices' shows it (1-2), or vid:pid[:serial]")])

    let arguments: ParsedArguments
    let device: String
    let seconds: Int64
    let reason: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        device = try arguments.required("device")
        seconds = try RequestVerb.seconds(arguments)
        reason = try arguments.required("reason")
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        try RequestVerb.send(arguments, context, ["kind": "usb", "target": .string(device), "seconds": .int(seconds), "reason": .string(reason)])
    }
}

struct RequestPrint: Subcommand {
    static let path = ["request", "print"]
    static let summary = "ask an approver for more pages on a print queue for a while (any user)"
    static let options = RequestVerb.common([
        OptionSpec("queue", value: "NAME", help: "the approved print queue ('holdfast print status' lists them)"),
        OptionSpec("pages", value: "N", help: "pages beyond your daily quota (copies count)"),
    ])

    let arguments: ParsedArguments
    let queue: String
    let pages: Int
    let seconds: Int64
    let reason: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        queue = try arguments.required("queue")
        guard let pages = try arguments.positiveInteger("pages") else { throw UsageError("--pages is required: how many pages you need") }
        self.pages = pages
        seconds = try RequestVerb.seconds(arguments)
        reason = try arguments.required("reason")
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        try RequestVerb.send(arguments, context, ["kind": "print", "target": .string(queue), "pages": .int(Int64(pages)), "seconds": .int(seconds), "reason": .string(reason)])
    }
}

/// `holdfast requests`: your requests and what became of them (root: everyone's).
struct Requests: Subcommand {
    static let path = ["requests"]
    static let summary = "your exception requests: waiting, approved until …, denied, expired (root: everyone's)"
    static let options = [Daemon.socketOption, OptionSpec("mine", help: "as root, only root's own"), OptionSpec("json", help: "print JSON: {requests: [...]}")]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let answer = try Daemon.call(Daemon.client(arguments, context), "request.list", arguments.flag("mine") ? ["all": false] : [:])
        if arguments.flag("json") {
            context.line(try Daemon.json(answer))
            return .success
        }
        guard case .array(let entries)? = answer["requests"], !entries.isEmpty else {
            context.line("no requests")
            return .success
        }
        for entry in entries {
            let text = { (name: String) in Printable.escape(entry[name]?.stringValue ?? "") }
            let number = entry["number"]?.intValue.map { "#\($0)" } ?? "(not yet at the broker)"
            var state: String
            switch entry["status"]?.stringValue ?? "" {
            case "queued": state = "QUEUED: waiting for the broker to be reachable"
            case "pending": state = "PENDING: waiting for an approver"
            case "approved": state = "APPROVED until \(text("until")) by \(text("approver"))"
            case "expired": state = "EXPIRED at \(text("until")) (approved by \(text("approver")))"
            case "denied": state = "DENIED by \(text("approver"))"
            case "revoked": state = "REVOKED by \(text("approver"))"
            case "refused": state = "REFUSED"
            case "lapsed": state = "LAPSED: no approver answered; ask again if you still need it"
            default: state = text("status").uppercased()
            }
            context.line("\(number)  \(text("summary"))  for \(DurationText.text(entry["seconds"]?.intValue ?? 0))  asked by \(text("requester")) at \(text("created"))")
            context.line("    \(state)" + (entry["note"]?.stringValue.map { ": \(Printable.escape($0))" } ?? ""))
            context.line("    reason: \(text("reason"))")
        }
        return .success
    }
}
