import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Three hosts on one machine for the network lockdown (ip-netns(8), veth(4)): an endpoint, a
/// broker and "elsewhere", the endpoint wired to each on its own /24. Names carry the test's pid
/// and a counter, so runs never share a namespace; everything is deleted when the value goes
/// (deleting a namespace deletes its veth ends and kills nothing: callers stop their processes
/// first).
public final class NetworkNamespaces: @unchecked Sendable {
    public let endpoint: String
    public let broker: String
    public let elsewhere: String
    /// The endpoint's side and the other side of each link.
    public let endpointToBroker = "10.77.1.1"
    public let brokerAddress = "10.77.1.2"
    public let endpointToElsewhere = "10.77.2.1"
    public let elsewhereAddress = "10.77.2.2"

    nonisolated(unsafe) private static var counter = 0
    private static let lock = NSLock()

    /// Whether this machine can make namespaces (root, iproute2).
    public static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") }

    public init() throws {
        Self.lock.lock()
        Self.counter += 1
        let tag = "\(getpid() % 100_000)x\(Self.counter)"
        Self.lock.unlock()
        endpoint = "hf-ep-\(tag)"
        broker = "hf-br-\(tag)"
        elsewhere = "hf-el-\(tag)"
        for name in [endpoint, broker, elsewhere] {
            try Self.ip(["netns", "add", name])
            try Self.ip(["-n", name, "link", "set", "lo", "up"])
        }
        // Interface names are at most 15 bytes; they live inside the namespaces, so short names do.
        try link(endpoint, "eb0", endpointToBroker, broker, "be0", brokerAddress)
        try link(endpoint, "ee0", endpointToElsewhere, elsewhere, "ex0", elsewhereAddress)
    }

    private func link(_ left: String, _ leftName: String, _ leftAddress: String, _ right: String, _ rightName: String, _ rightAddress: String) throws {
        try Self.ip(["-n", left, "link", "add", leftName, "type", "veth", "peer", "name", rightName, "netns", right])
        try Self.ip(["-n", left, "addr", "add", leftAddress + "/24", "dev", leftName])
        try Self.ip(["-n", right, "addr", "add", rightAddress + "/24", "dev", rightName])
        try Self.ip(["-n", left, "link", "set", leftName, "up"])
        try Self.ip(["-n", right, "link", "set", rightName, "up"])
    }

    /// `ip netns exec NAME` + a command: the arguments to run something inside a namespace.
    public static func inside(_ namespace: String, _ command: [String]) -> [String] { ["netns", "exec", namespace] + command }

    /// Runs a command inside a namespace.
    @discardableResult
    public func run(in namespace: String, _ command: [String]) throws -> ProcessResult {
        try runProcess("/usr/sbin/ip", Self.inside(namespace, command))
    }

    /// An HTTP request from the endpoint: the status code, 0 when nothing answered within 3 s.
    public func status(fromEndpoint url: String, caFile: String? = nil) -> Int {
        let arguments = ["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3"] + (caFile.map { ["--cacert", $0] } ?? []) + [url]
        guard let result = try? run(in: endpoint, arguments) else { return 0 }
        return Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    static func ip(_ arguments: [String]) throws {
        let result = try runProcess("/usr/sbin/ip", arguments)
        guard result.status == 0 else { throw NamespaceError(message: "ip \(arguments.joined(separator: " ")): \(result.stderr)") }
    }

    deinit {
        for name in [endpoint, broker, elsewhere] { _ = try? runProcess("/usr/sbin/ip", ["netns", "delete", name]) }
    }
}

public struct NamespaceError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
