// holdfastd: the Holdfast agent. This file only parses arguments and hands over to HoldfastAgent.
import HoldfastAgent
import HoldfastCommandLine
import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

let options = [
    OptionSpec("config", value: "PATH", help: "configuration file (default \(AgentConfiguration.defaultPath)); runs in the foreground"),
    OptionSpec("check-config", value: "PATH", help: "validate a configuration file as the daemon would and exit (0 valid, 1 refused)"),
    OptionSpec("log-level", value: "LEVEL", help: "override the configured log level: error, warning, notice, info, debug"),
    OptionSpec("version", help: "print the version"),
    // The desktop-notification helper holdfastd starts (docs/lockdown.md): not for people.
    OptionSpec("notify-user", value: "UID", help: "(internal) show a notification on UID's session bus as UID, then exit"),
    OptionSpec("bus", value: "ADDRESS", help: "(internal) with --notify-user: the session bus; the text in HOLDFAST_NOTIFY_SUMMARY and _BODY"),
    OptionSpec("help", help: "this text"),
]

func usage() -> String {
    var text = "holdfastd \(HoldfastVersion.current) — the Holdfast agent daemon\n\n"
    text += "Usage: holdfastd [--config PATH] [--log-level LEVEL]\n       holdfastd --check-config PATH\n\nOptions:\n"
    for option in options {
        let label = "--" + option.name + (option.value.map { " " + $0 } ?? "")
        text += "  " + label + String(repeating: " ", count: max(2, 22 - label.count)) + option.help + "\n"
    }
    text += "\nSignals: SIGHUP reloads configuration and policy; SIGTERM stops within 2 s.\n"
    return text
}

func write(_ descriptor: Int32, _ text: String) {
    _ = text.withCString { Glibc.write(descriptor, $0, strlen($0)) }
}

let arguments: ParsedArguments
do {
    arguments = try ParsedArguments(Array(CommandLine.arguments.dropFirst()), options: options)
} catch {
    write(2, "holdfastd: \(error.message); see 'holdfastd --help'\n")
    exit(64)
}
if arguments.flag("help") {
    write(1, usage())
    exit(0)
}
if arguments.flag("version") {
    write(1, "holdfastd \(HoldfastVersion.current)\n")
    exit(0)
}
if !arguments.positionals.isEmpty {
    write(2, "holdfastd: unexpected argument '\(arguments.positionals[0])'; see 'holdfastd --help'\n")
    exit(64)
}
if let user = arguments.value("notify-user") {
    guard let uid = UInt32(user), let bus = arguments.value("bus"), bus.hasPrefix("unix:path=/"), let summary = getenv("HOLDFAST_NOTIFY_SUMMARY").map({ String(cString: $0) }) else {
        write(2, "holdfastd: --notify-user UID --bus unix:path=… with HOLDFAST_NOTIFY_SUMMARY (and HOLDFAST_NOTIFY_BODY) set\n")
        exit(64)
    }
    exit(UserNotification.run(uid: uid, bus: bus, summary: summary, body: getenv("HOLDFAST_NOTIFY_BODY").map { String(cString: $0) } ?? ""))
}
var logLevel: LogLevel?
if let name = arguments.value("log-level") {
    guard let level = LogLevel(name: name) else {
        write(2, "holdfastd: --log-level must be one of \(LogLevel.allCases.map(\.name).joined(separator: ", "))\n")
        exit(64)
    }
    logLevel = level
}
if let path = arguments.value("check-config") {
    let configuration: AgentConfiguration
    do {
        configuration = try AgentConfigurationParser.load(path, requireRootOwned: true)
        write(1, "\(path): ok\n")
    } catch {
        write(2, "\(error)\n")
        exit(1)
    }
    // The policy it names, as the daemon would read it: a refused policy is not fatal to the
    // daemon (it keeps the last good one), but it is what the admin is about to ship.
    let policy = PolicyLoader.check(configuration.policyFile)
    if policy.missing {
        write(1, "\(configuration.policyFile): no policy file; the last good or the built-in policy applies\n")
    } else if let reason = policy.reason {
        write(2, "\(reason)\n")
        exit(1)
    } else {
        write(1, "\(configuration.policyFile): ok\n")
    }
    exit(0)
}

var environment: [String: String] = [:]
// HOLDFAST_SEAT_FILE and HOLDFAST_USER_RUNTIME_DIR move where the seat user and session buses
// are looked for (tests: logind is not running here).
for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "HOLDFAST_SEAT_FILE", "HOLDFAST_USER_RUNTIME_DIR"] {
    if let value = getenv(name) { environment[name] = String(cString: value) }
}
let code = await Daemon.run(
    configurationPath: arguments.value("config") ?? AgentConfiguration.defaultPath,
    logLevel: logLevel,
    environment: environment
)
exit(code)
