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

/// `holdfast login-check` (PAM, account phase, through pam_exec): exit 0 lets the login on, 1
/// refuses it with the reason on standard output (pam_exec's `stdout` shows it to the user).
/// holdfastd decides (docs/login-check.md); when it does not answer, only exempt users pass.
struct LoginCheck: Subcommand {
    static let path = ["login-check"]
    static let summary = "PAM's posture check at login (pam_exec, account phase): exit 0 allow, 1 deny with the reason"
    static let options = [
        Daemon.socketOption,
        OptionSpec("user", value: "NAME", help: "the user logging in (default $PAM_USER)"),
        OptionSpec("config", value: "FILE", help: "agent.conf, for the exempt users when holdfastd does not answer (default /etc/holdfast/agent.conf; the environment is ignored)"),
    ]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let environment = context.environment
        // Only the account phase decides; any other phase pam_exec is wired to passes through.
        if let type = environment["PAM_TYPE"], type != "account" { return .success }
        guard let user = arguments.value("user") ?? environment["PAM_USER"], !user.isEmpty else {
            context.line("Holdfast: login refused: no user to check (PAM_USER is not set)")
            return .failure
        }
        let tty = environment["PAM_TTY"]
        let remote = environment["PAM_RHOST"]
        // Not from the environment: PAM's environment is the login's, not the administrator's.
        let configPath = arguments.value("config") ?? AgentConfiguration.defaultPath
        // Missing or unreadable: the built-in defaults (root on a local console is exempt).
        let configuration = (try? AgentConfigurationParser.load(configPath, requireRootOwned: true)) ?? AgentConfiguration()
        var request: [String: JSONValue] = ["user": .string(user), "service": .string(environment["PAM_SERVICE"] ?? "")]
        if let tty { request["tty"] = .string(tty) }
        if let remote { request["rhost"] = .string(remote) }
        // The daemon's own deadline plus a second; the socket never holds a login longer.
        let seconds = Int((configuration.loginTimeoutMilliseconds + 999) / 1_000) + 1
        let client = ControlClient(socketPath: arguments.value("socket") ?? AgentConfiguration().controlSocket, timeout: seconds)
        let response: ControlResponse
        do {
            response = try client.call("login.check", request)
        } catch {
            if configuration.loginIsExempt(user: user, tty: tty, remoteHost: remote) { return .success }
            context.line("Holdfast: login refused: the Holdfast agent does not answer (\(error.message)); only exempt users may log in")
            return .failure
        }
        guard response.ok, let result = response.result else {
            if configuration.loginIsExempt(user: user, tty: tty, remoteHost: remote) { return .success }
            context.line("Holdfast: login refused: \(response.error?.message ?? "the agent refused without a reason")")
            return .failure
        }
        if result["allowed"]?.boolValue == true { return .success }
        context.line("Holdfast: login refused: \(result["reason"]?.stringValue ?? "this device is not compliant")")
        return .failure
    }
}
