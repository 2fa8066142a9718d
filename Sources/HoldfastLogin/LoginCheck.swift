public import HoldfastCommandLine
import HoldfastCore

/// `holdfast login-check` (PAM, account phase, through pam_exec): exit 0 lets the login on, 1
/// refuses it with the reason on standard output (pam_exec's `stdout` shows it to the user).
/// holdfastd decides (docs/login-check.md); when it does not answer, only exempt users pass.
///
/// The same command is the whole of `holdfast-login-check`, the binary the PAM profile runs: it
/// links only this module, HoldfastCore and a static Swift runtime, so a login does not pay for
/// loading the sixty libraries the full CLI needs.
public struct LoginCheck: Subcommand {
    public static let path = ["login-check"]
    public static let summary = "PAM's posture check at login (pam_exec, account phase): exit 0 allow, 1 deny with the reason"
    public static let options = [
        OptionSpec("socket", value: "PATH", help: "control socket (default: agent.conf's control_socket; the environment is ignored)"),
        OptionSpec("user", value: "NAME", help: "the user logging in (default $PAM_USER)"),
        OptionSpec("config", value: "FILE", help: "agent.conf, for the exempt users when holdfastd does not answer (default /etc/holdfast/agent.conf; the environment is ignored)"),
    ]

    let arguments: ParsedArguments

    public init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    public func run(_ context: CommandContext) throws -> ExitCode {
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
        let client = ControlClient(socketPath: arguments.value("socket") ?? configuration.controlSocket, timeout: seconds)
        let response: ControlResponse
        do {
            response = try client.call("login.check", request)
        } catch {
            if let refusal = Self.offboarded(user, configuration) {
                context.line("Holdfast: login refused: \(refusal)")
                return .failure
            }
            if configuration.loginIsExempt(user: user, tty: tty, remoteHost: remote) { return .success }
            context.line("Holdfast: login refused: the Holdfast agent does not answer (\(error.message)); only exempt users may log in")
            return .failure
        }
        guard response.ok, let result = response.result else {
            if let refusal = Self.offboarded(user, configuration) {
                context.line("Holdfast: login refused: \(refusal)")
                return .failure
            }
            if configuration.loginIsExempt(user: user, tty: tty, remoteHost: remote) { return .success }
            context.line("Holdfast: login refused: \(response.error?.message ?? "the agent refused without a reason")")
            return .failure
        }
        if result["allowed"]?.boolValue == true { return .success }
        context.line("Holdfast: login refused: \(result["reason"]?.stringValue ?? "this device is not compliant")")
        return .failure
    }

    /// When holdfastd does not answer: whether the copy of the offboarded users it keeps
    /// (`<state_dir>/offboarded-users`, root's 0600) names this user — checked before the exempt
    /// users are let in. A copy that cannot be trusted refuses everyone but root.
    static func offboarded(_ user: String, _ configuration: AgentConfiguration) -> String? {
        switch OffboardedUsers.load(stateDirectory: configuration.stateDirectory) {
        case .none:
            return nil
        case .list(let list):
            return list.match(user) == nil ? nil : "\(user)'s access was revoked on this computer (offboarded)"
        case .unreadable(let why):
            return OffboardedUsers.account(user)?.uid == 0 ? nil : "the list of offboarded users cannot be read (\(why)); only root may log in"
        }
    }
}
