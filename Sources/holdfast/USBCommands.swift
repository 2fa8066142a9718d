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
        var records = try SysfsUSBDevices().devices()
        if !names.isEmpty {
            for name in names where !records.contains(where: { $0.name == name || $0.sysPath == name || "/sys" + $0.sysPath == name }) {
                throw CommandFailure("no USB device \(name) (see 'holdfast usb explain' for the list)")
            }
            records = records.filter { record in names.contains { $0 == record.name || $0 == record.sysPath || $0 == "/sys" + record.sysPath } }
        }
        let decisions = records.map(classifier.decide)
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
