import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

/// An executable's subcommands, and the one place that parses, dispatches and reports errors.
public struct CommandTable {
    public let toolName: String
    public let summary: String
    public let commands: [any Subcommand.Type]
    /// Options that may also stand before the command (`holdfast --socket S status`); they are
    /// handed to the command as if written after it, so only commands that declare them take them.
    public let globalOptions: [OptionSpec]

    /// A tool that is one command (`holdfast-login-check`): its arguments are that command's, its
    /// usage and errors name the tool alone.
    public let single: Bool

    public init(toolName: String, summary: String, commands: [any Subcommand.Type], globalOptions: [OptionSpec] = []) {
        self.toolName = toolName
        self.summary = summary
        self.commands = commands
        self.globalOptions = globalOptions
        single = false
    }

    public init(toolName: String, single command: any Subcommand.Type) {
        self.toolName = toolName
        summary = command.summary
        commands = [command]
        globalOptions = []
        single = true
    }

    /// How a command is invoked: `tool command`, or the tool alone when it is the command.
    func invocation(_ command: any Subcommand.Type) -> String {
        single ? toolName : "\(toolName) \(command.path.joined(separator: " "))"
    }

    /// Moves leading global options behind the command words.
    func hoistingGlobalOptions(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var index = 0
        while index < arguments.count, arguments[index].hasPrefix("--") {
            let word = String(arguments[index].dropFirst(2))
            let name = word.split(separator: "=", maxSplits: 1).first.map(String.init) ?? word
            guard let option = globalOptions.first(where: { $0.name == name }) else { break }
            leading.append(arguments[index])
            index += 1
            if option.value != nil, !word.contains("="), index < arguments.count {
                leading.append(arguments[index])
                index += 1
            }
        }
        guard !leading.isEmpty else { return arguments }
        let rest = Array(arguments[index...])
        guard let (command, tail) = select(rest) else { return arguments }
        return command.path + leading + tail
    }

    /// Runs the command line and exits the process with its code.
    public func main() -> Never {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if single, let command = commands.first, arguments != ["--version"] { arguments = command.path + arguments }
        var environment: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        let code = run(arguments, context: CommandContext(toolName: toolName, environment: environment))
        exit(code.rawValue)
    }

    /// Runs a command line and returns the exit code (testable without exiting).
    public func run(_ arguments: [String], context: CommandContext) -> ExitCode {
        let arguments = hoistingGlobalOptions(arguments)
        if arguments.isEmpty || arguments == ["--help"] || arguments == ["-h"] || arguments == ["help"] {
            context.out(help())
            return arguments.isEmpty ? .usage : .success
        }
        if arguments == ["--version"] || arguments == ["version"] {
            context.line("\(toolName) \(HoldfastVersion.current)")
            return .success
        }
        guard let (command, rest) = select(arguments) else {
            let group = commands.filter { $0.path.count > 1 && $0.path.first == arguments.first }
            if !group.isEmpty, arguments.dropFirst().allSatisfy({ $0 == "--help" || $0 == "-h" }), arguments.count > 1 {
                context.out(help(only: group))
                return .success
            }
            if !group.isEmpty {
                let names = group.compactMap { $0.path.dropFirst().first }.joined(separator: ", ")
                if arguments.count > 1, !arguments[1].hasPrefix("-") {
                    context.error("\(toolName) \(arguments[0]): unknown subcommand '\(arguments[1])'; it has: \(names); see '\(toolName) \(arguments[0]) --help'")
                } else {
                    context.error("\(toolName) \(arguments[0]): needs a subcommand: \(names); see '\(toolName) \(arguments[0]) --help'")
                }
                return .usage
            }
            context.error("\(toolName): unknown command '\(arguments.prefix { !$0.hasPrefix("-") }.joined(separator: " "))'; see '\(toolName) --help'")
            return .usage
        }
        let beforeSeparator = rest.prefix { $0 != "--" }
        if beforeSeparator.contains("--help") || beforeSeparator.contains("-h") {
            context.out(help(for: command))
            return .success
        }
        do {
            let parsed = try ParsedArguments(rest, options: command.options)
            let instance = try command.init(parsed)
            return try instance.run(context)
        } catch let error as UsageError {
            context.error("\(invocation(command)): \(error.message); see '\(invocation(command)) --help'")
            return .usage
        } catch let failure as CommandFailure {
            context.error("\(toolName): \(failure.message)")
            return failure.exitCode
        } catch let code as ExitCode {
            return code
        } catch {
            context.error("\(toolName): \(error)")
            return .failure
        }
    }

    /// The longest command path that prefixes the arguments.
    private func select(_ arguments: [String]) -> (any Subcommand.Type, [String])? {
        let match = commands
            .filter { arguments.starts(with: $0.path) }
            .max { $0.path.count < $1.path.count }
        guard let match else { return nil }
        return (match, Array(arguments.dropFirst(match.path.count)))
    }

    /// The tool's help: summary and command list (only `group`'s commands, for `TOOL GROUP --help`).
    public func help(only group: [any Subcommand.Type]? = nil) -> String {
        let listed = group ?? commands
        let usage = group?.first?.path.first.map { "\(toolName) \($0) COMMAND [OPTIONS]" } ?? "\(toolName) COMMAND [OPTIONS]"
        var text = "\(toolName) \(HoldfastVersion.current) — \(summary)\n\nUsage: \(usage)\n\nCommands:\n"
        let width = (listed.map { $0.path.joined(separator: " ").count }.max() ?? 0) + 2
        for command in listed {
            let name = command.path.joined(separator: " ")
            text += "  " + name + String(repeating: " ", count: width - name.count) + command.summary + "\n"
        }
        text += "\nGlobal:\n  --help      this text; COMMAND --help for a command's options\n  --version   print the version\n"
        for option in globalOptions {
            text += "  --\(option.name)\(option.value.map { " " + $0 } ?? "")  \(option.help) (before or after COMMAND)\n"
        }
        return text
    }

    /// One command's help.
    public func help(for command: any Subcommand.Type) -> String {
        var usage = "Usage: \(invocation(command))"
        if !command.options.isEmpty { usage += " [OPTIONS]" }
        if !command.positionals.isEmpty { usage += " " + command.positionals }
        var text = "\(usage)\n\n\(command.summary)\n"
        if !command.options.isEmpty {
            text += "\nOptions:\n"
            let labels = command.options.map { "--" + $0.name + ($0.value.map { " " + $0 } ?? "") }
            let width = (labels.map(\.count).max() ?? 0) + 2
            for (label, option) in zip(labels, command.options) {
                text += "  " + label + String(repeating: " ", count: width - label.count) + option.help + "\n"
            }
        }
        return text
    }
}
