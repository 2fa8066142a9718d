import DeviceGuard
import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore
#if canImport(Glibc)
import Glibc
#endif

/// `holdfast usb explain`: what Holdfast decides for each USB device, and why. Runs without the
/// daemon and without root; reads sysfs (so it works under `umockdev-run` too).
struct USBExplain: Subcommand {
    static let path = ["usb", "explain"]
    static let summary = "explain the verdict for every USB device (or the named ones): interfaces, rule, reason"
    static let positionals = "[DEVICE…]"
    static let options = [
        OptionSpec("policy", value: "FILE", help: "policy file (default /etc/holdfast/policy.json if present, else the built-in policy)"),
        OptionSpec("json", help: "print JSON: {policy, devices: [...]}"),
    ]

    let policyPath: String?
    let json: Bool
    let names: [String]

    init(_ arguments: ParsedArguments) throws(UsageError) {
        policyPath = arguments.value("policy")
        json = arguments.flag("json")
        names = arguments.positionals
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let (policy, source) = try loadPolicy(context)
        let classifier = Classifier(policy: policy)
        var records = try SysfsUSBHost().records()
        if !names.isEmpty {
            for name in names where !records.contains(where: { $0.name == name || $0.sysPath == name || "/sys" + $0.sysPath == name }) {
                throw CommandFailure("no USB device \(name) (see 'holdfast usb explain' for the list)")
            }
            records = records.filter { record in names.contains { $0 == record.name || $0 == record.sysPath || $0 == "/sys" + record.sysPath } }
        }
        let decisions = records.map { classifier.decide($0) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let document: JSONValue = .object(["policy": source, "devices": .array(decisions.map(Explanation.json))])
            context.line(String(decoding: try encoder.encode(document), as: UTF8.self))
        } else {
            context.line("policy: \(source["description"]?.stringValue ?? "")")
            if decisions.isEmpty { context.line("no USB devices") }
            for decision in decisions {
                context.line("")
                for line in Explanation.text(decision) { context.line(line) }
            }
        }
        return .success
    }

    private func loadPolicy(_ context: CommandContext) throws -> (USBPolicy, JSONValue) {
        let path = policyPath ?? "/etc/holdfast/policy.json"
        var info = stat()
        if policyPath == nil, lstat(path, &info) != 0 {
            return (.empty, .object(["source": "built-in", "description": .string("built-in default (no \(path))")]))
        }
        let bytes = try InputFile.read(path, context: context, limit: 4 << 20)
        do {
            let document = try Policy.parse(bytes)
            let usb = try USBPolicy(section: document.sections["usb"])
            return (usb, .object([
                "source": "file", "path": .string(path),
                "description": .string("\(path) (\(usb.rules.count) USB rules)"),
            ]))
        } catch let error as PolicyError {
            throw CommandFailure("\(path): \(error.message)", exitCode: .dataError)
        } catch let error as USBPolicyError {
            throw CommandFailure("\(path): \(error.message)", exitCode: .dataError)
        }
    }
}

/// `holdfast usb devices`: what holdfastd decided for every USB device, live.
struct USBDevices: Subcommand {
    static let path = ["usb", "devices"]
    static let summary = "list USB devices as holdfastd enforces them: verdict, authorization, exception and its expiry"
    static let options = [Daemon.socketOption, OptionSpec("json", help: "print JSON: {mode, devices: [...], exceptions: [...]}")]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        try arguments.noPositionals()
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let report = try Daemon.call(Daemon.client(arguments, context), "usb.devices")
        if arguments.flag("json") {
            context.line(try Daemon.json(report))
            return .success
        }
        context.line("mode: \(report["mode"]?.stringValue ?? "?")")
        if case .array(let devices)? = report["devices"], devices.isEmpty { context.line("no USB devices") }
        if case .array(let devices)? = report["devices"] {
            for device in devices {
                var line = "\(device["path"]?.stringValue ?? "?")  \(device["vendor"]?.stringValue ?? "????"):\(device["product"]?.stringValue ?? "????")"
                line += "  \((device["verdict"]?.stringValue ?? "?").uppercased())"
                line += device["authorized"]?.boolValue == false ? "  (deauthorized)" : ""
                let names = [device["manufacturer_name"]?.stringValue, device["product_name"]?.stringValue].compactMap { $0 }.joined(separator: " ")
                if !names.isEmpty { line += "  " + Printable.escape(names) }
                context.line(line)
                // Everything a device reports (names, serials in reasons) is escaped: a device
                // must not be able to write to the admin's terminal.
                context.line("    \(Printable.escape(device["reason"]?.stringValue ?? ""))")
                if case .array(let interfaces)? = device["sysfs_interfaces"] {
                    for interface in interfaces {
                        let state = interface["authorized"]?.boolValue.map { $0 ? "authorized" : "unauthorized" } ?? "unknown"
                        context.line("    \(interface["name"]?.stringValue ?? "?")  \(state)\(interface["allowed"]?.boolValue == true ? "" : " (blocked)")")
                    }
                }
            }
        }
        if case .array(let exceptions)? = report["exceptions"], !exceptions.isEmpty {
            context.line("exceptions:")
            for exception in exceptions {
                let field = { (name: String) in Printable.escape(exception[name]?.stringValue ?? "?") }
                context.line("    \(field("id"))  \(field("target"))  until \(field("until"))  by \(field("granted_by")): \(field("reason"))")
            }
        }
        return .success
    }
}

/// `holdfast usb allow DEV --for 2h --reason "…"`: a time-boxed exception (root).
struct USBAllow: Subcommand {
    static let path = ["usb", "allow"]
    static let summary = "allow a USB device for a while: DEV is a bus path (1-2) or vid:pid[:serial] (root only)"
    static let positionals = "DEV"
    static let options = [
        Daemon.socketOption,
        OptionSpec("for", value: "DURATION", help: "how long, e.g. 30m or 2h (required; at most the policy's usb.max_exception)"),
        OptionSpec("reason", value: "TEXT", help: "why (required; journaled with the exception)"),
        OptionSpec("json", help: "print the exception as JSON"),
    ]

    let arguments: ParsedArguments
    let device: String
    let seconds: Int64
    let reason: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1 else { throw UsageError("name one device: a bus path such as 1-2, or vid:pid[:serial]") }
        device = arguments.positionals[0]
        guard USBExceptionTarget(device) != nil else {
            throw UsageError("\(device) is neither a bus path (1-2, 1-2.4) nor vid:pid[:serial] (0781:5567)")
        }
        guard let seconds = try arguments.duration("for") else { throw UsageError("--for is required: every exception expires") }
        self.seconds = seconds
        reason = try arguments.required("reason")
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let exception = try Daemon.call(Daemon.client(arguments, context), "usb.allow", [
            "device": .string(device), "seconds": .int(seconds), "reason": .string(reason),
        ])
        if arguments.flag("json") {
            context.line(try Daemon.json(exception))
        } else {
            context.line("exception \(Printable.escape(exception["id"]?.stringValue ?? "?")) allows \(Printable.escape(exception["target"]?.stringValue ?? device)) until \(Printable.escape(exception["until"]?.stringValue ?? "?"))")
        }
        return .success
    }
}

/// `holdfast usb revoke ID`: end an exception now (root).
struct USBRevoke: Subcommand {
    static let path = ["usb", "revoke"]
    static let summary = "end a USB exception now (root only)"
    static let positionals = "ID"
    static let options = [Daemon.socketOption]

    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 1 else { throw UsageError("name the exception id (see 'holdfast usb devices')") }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let exception = try Daemon.call(Daemon.client(arguments, context), "usb.revoke", ["id": .string(arguments.positionals[0])])
        context.line("exception \(Printable.escape(exception["id"]?.stringValue ?? "?")) for \(Printable.escape(exception["target"]?.stringValue ?? "?")) ended")
        return .success
    }
}
