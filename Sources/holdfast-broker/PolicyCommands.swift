import FoundationEssentials
import HoldfastBroker
import HoldfastCommandLine
import HoldfastCore

/// `holdfast-broker policy check POLICY REPORT|- [--json]`: what a compliance policy decides about
/// one posture report (`holdfast posture --json`), before the policy is put in force. The report's
/// signature is not checked here (attestation does that); this is for staging a policy.
struct PolicyCheck: Subcommand {
    static let path = ["policy", "check"]
    static let summary = "evaluate a compliance policy against a posture report (holdfast posture --json); exit 0 compliant, 1 not"
    static let positionals = "POLICY REPORT|-"
    static let options = [
        OptionSpec("at", value: "SECONDS", help: "evaluate as of this time (seconds since 1970; default now)"),
        OptionSpec("json", help: "print the verdict as JSON"),
    ]

    let policyPath: String
    let reportPath: String
    let arguments: ParsedArguments

    init(_ arguments: ParsedArguments) throws(UsageError) {
        guard arguments.positionals.count == 2 else { throw UsageError("say the policy file and the report file (or - for standard input)") }
        policyPath = arguments.positionals[0]
        reportPath = arguments.positionals[1]
        if let at = arguments.value("at"), Int64(at) == nil { throw UsageError("--at takes seconds since 1970") }
        self.arguments = arguments
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let policy: CompliancePolicy
        do {
            policy = try CompliancePolicy.parse(try InputFile.read(policyPath, context: context, limit: 1 << 20))
        } catch let error as ComplianceError {
            throw CommandFailure("\(policyPath): \(error.message)", exitCode: .dataError)
        }
        let bytes = try InputFile.read(reportPath, context: context, limit: 4 << 20)
        // Parsers disagree on a repeated key (first wins here, last in jq): refused, not guessed.
        if let key = JSONDuplicateKeys.first(in: bytes) { throw CommandFailure("\(reportPath): the key \"\(key)\" appears twice", exitCode: .dataError) }
        guard let document = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else {
            throw CommandFailure("\(reportPath): not JSON", exitCode: .dataError)
        }
        let evidence: PostureEvidence
        do {
            evidence = try PostureEvidence.parse(document)
        } catch {
            throw CommandFailure("\(reportPath): \(error.message)", exitCode: .dataError)
        }
        let now = arguments.value("at").flatMap { Int64($0) } ?? Int64(Date().timeIntervalSince1970)
        let verdict = policy.evaluate(evidence, now: now)
        if arguments.flag("json") {
            let findings = { (list: [ComplianceVerdict.Finding]) -> JSONValue in
                .array(list.map { finding in
                    var object: [String: JSONValue] = ["id": .string(finding.id), "status": .string(finding.status), "remediation": .string(finding.remediation)]
                    if let until = finding.until { object["until"] = .int(until) }
                    return .object(object)
                })
            }
            var object: [String: JSONValue] = [
                "decision": .string(verdict.decision.rawValue), "blocking": findings(verdict.blocking), "warnings": findings(verdict.warnings),
                "graced": findings(verdict.graced), "reported": findings(verdict.reported),
            ]
            if let denial = verdict.denial { object["denial"] = .string(denial) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            context.line(String(decoding: try encoder.encode(JSONValue.object(object)), as: UTF8.self))
        } else {
            context.line(verdict.decision.rawValue + (policy.version.map { " under policy version \($0)" } ?? ""))
            for finding in verdict.blocking { context.line("  block   \(finding.id) (\(finding.status)): \(Printable.escape(finding.remediation))") }
            for finding in verdict.graced { context.line("  grace   \(finding.id) (\(finding.status)) until \(Date(timeIntervalSince1970: Double(finding.until ?? 0)).formatted(.iso8601))") }
            for finding in verdict.warnings { context.line("  warn    \(finding.id) (\(finding.status)): \(Printable.escape(finding.remediation))") }
            for finding in verdict.reported { context.line("  report  \(finding.id) (\(finding.status))") }
        }
        return verdict.decision == .compliant ? .success : .failure
    }
}
