import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore

/// `holdfast enroll --token T` (admin): enroll this device with the broker named in the token.
struct Enroll: Subcommand {
    static let path = ["enroll"]
    static let summary = "enroll this device with a broker: pins its CA and signing key, registers the device key (admin)"
    static let options = [
        Daemon.socketOption,
        OptionSpec("token", value: "TOKEN", help: "the one-time token from `holdfast-broker token create` (- reads it from standard input)"),
        OptionSpec("json", help: "print JSON"),
    ]

    let arguments: ParsedArguments
    let token: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        token = try arguments.required("token")
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        var text = token
        if token == "-" {
            guard let bytes = context.readStandardInput(limit: 16_384) else { throw CommandFailure("the token on standard input is too long", exitCode: .dataError) }
            text = String(decoding: bytes, as: UTF8.self)
        }
        let result = try Daemon.call(Daemon.client(arguments, context, timeout: 60), "enroll", ["token": .string(text.filter { !$0.isWhitespace })])
        if arguments.flag("json") {
            context.line(try Daemon.json(result))
        } else {
            context.line("enrolled as \(result["device_id"]?.stringValue ?? "?") with \(result["url"]?.stringValue ?? "?"); attesting now (holdfast status, holdfast grant)")
        }
        return .success
    }
}

/// `holdfast grant [--json] [--fresh] [--user NAME]` (admin): the device's current access grant.
struct Grant: Subcommand {
    static let path = ["grant"]
    static let summary = "print the device's current access grant (a JWT for gateways); --fresh attests first (admin)"
    static let options = [
        Daemon.socketOption,
        OptionSpec("json", help: "print JSON: grant, expiry, decision"),
        OptionSpec("fresh", help: "attest now and print the resulting grant"),
        OptionSpec("user", value: "NAME", help: "with --fresh: attest for this user's login (the grant carries it)"),
    ]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        if arguments.value("user") != nil, !arguments.flag("fresh") { throw UsageError("--user needs --fresh") }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let client = Daemon.client(arguments, context, timeout: 60)
        var result: JSONValue
        if arguments.flag("fresh") {
            var parameters: [String: JSONValue] = [:]
            if let user = arguments.value("user") { parameters["user"] = .string(user) }
            result = try Daemon.call(client, "broker.attest", parameters)
            guard result["grant"] != nil else {
                throw CommandFailure("no access grant: \(result["denial"]?.stringValue ?? "the broker did not grant access")", exitCode: .failure)
            }
        } else {
            result = try Daemon.call(client, "grant")
        }
        if arguments.flag("json") {
            context.line(try Daemon.json(result))
        } else {
            context.line(result["grant"]?.stringValue ?? "")
        }
        return .success
    }
}
