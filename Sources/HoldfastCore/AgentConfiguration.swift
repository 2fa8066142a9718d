#if canImport(Glibc)
import Glibc
#endif

/// The agent's configuration, `/etc/holdfast/agent.conf` (documented in `docs/configuration.md`).
public struct AgentConfiguration: Sendable, Equatable {
    /// Where the journal and state live.
    public var stateDirectory = "/var/lib/holdfast"
    /// The control socket the CLI, PAM hook and forwarders talk to.
    public var controlSocket = "/run/holdfast/control.sock"
    /// The standalone (unenrolled) policy file.
    public var policyFile = "/etc/holdfast/policy.json"
    /// Log threshold.
    public var logLevel: LogLevel = .info
    /// Cap on stored event bytes in the journal.
    public var journalMaximumBytes = 256 << 20
    /// Whether holdfastd runs USB enforcement at all. Off only for machines (and test rigs)
    /// where another layer owns USB; the policy's `usb.mode` is the normal switch.
    public var usbEnabled = true
    /// How often DeviceGuard re-reads every USB device's authorization (catches what no event
    /// announced and what someone else changed), in seconds.
    public var usbRescanSeconds: Int64 = 10
    /// Where holdfastd leaves marks for the udev rule (`usb-allowed/`, `usb-blocked/`); the
    /// shipped rule looks in the default.
    public var usbMarksDirectory = "/run/holdfast"
    /// Whether PrintGuard runs: queue reconciliation, cupsd hardening, the job gate.
    public var printEnabled = true
    /// The cupsd to talk to: a socket path or `host:port`. Empty: libcups' default (the local socket).
    public var printCupsServer = ""
    /// cupsd's ServerRoot, where `cups-files.conf` (FileDevice) is read.
    public var printCupsServerRoot = "/etc/cups"
    /// The user cupsd runs backends as; the only one besides root whose `print.gate` is answered.
    public var printBackendUser = "lp"

    /// Whether FileWatch runs: the audit intake, baselines, alerts and blocks.
    public var fileWatchEnabled = true
    /// Where the auditd plugin hands records over. Empty: `audit.sock` next to the control socket.
    public var fileWatchIntakeSocket = ""
    /// The directories whose writes are audited (the kernel rules' `dir=`).
    public var fileWatchRoots = ["/home", "/media", "/run/media", "/mnt", "/tmp", "/var/tmp"]
    /// `manage`: check the kernel's audit rules and re-add missing ones; `check`: report only;
    /// `off`: leave kernel audit alone (another tool owns it, or a test rig).
    public var fileWatchRules = "manage"
    /// The rules' key prefix: `PREFIX-write` and `PREFIX-mount` (a test rig uses its own, so the
    /// machine's own Holdfast rules are never touched).
    public var fileWatchRuleKey = "holdfast"

    /// Posture: the signed device-health report holdfastd keeps (docs/posture-checks.md).
    public var postureEnabled = true
    /// How often the checks run on their own; relevant events (a rule lost, a queue added, a
    /// lockdown) run them sooner, coalesced.
    public var postureIntervalSeconds: Int64 = 300
    /// The supported releases: os-release `ID` → the lowest `VERSION_ID` accepted.
    public var postureSupported: [String: String] = ["debian": "12", "ubuntu": "22.04"]
    /// How old the last successful `apt-get update` may be.
    public var postureMaximumUpdateAge: Int64 = 7 * 86_400
    /// The longest idle delay (plus lock delay) a desktop's screen lock may have.
    public var postureMaximumIdleLock: Int64 = 900

    /// Broker: once enrolled (`holdfast enroll`), how often the device attests on its own (and
    /// after every posture change).
    public var brokerAttestIntervalSeconds: Int64 = 300
    /// How long one long poll for the agents' policy is held by the broker.
    public var brokerPolicyWaitSeconds: Int64 = 50
    /// Between attestations: how often the agent tells the broker it is alive and how it is.
    public var brokerHeartbeatIntervalSeconds: Int64 = 60
    /// Events one upload to the broker carries at most.
    public var brokerUploadBatch: Int64 = 500

    /// The login check (`holdfast login-check` from PAM): how long a login waits for the broker
    /// before the last verdict decides, how old that verdict may be, and who is exempt.
    public var loginTimeoutMilliseconds: Int64 = 2_000
    public var loginOfflineGraceSeconds: Int64 = 4 * 3_600
    /// `USER` (always exempt) or `USER@console` (only on a local text console, not remote).
    public var loginExempt: [String] = ["root@console"]

    /// The network lockdown's DNS resolvers (empty: the nameservers of /etc/resolv.conf, and
    /// systemd-resolved's upstream ones, when the table is built).
    public var lockdownDNS: [NetworkAddress] = []
    /// Addresses or prefixes a network lockdown still allows both ways (a management network).
    public var lockdownAllow: [NetworkAddress] = []
    /// What a `sessions` lockdown does to the users' sessions: `terminate` (default) or `lock`.
    public var lockdownSessions = "terminate"

    /// Whether a login is exempt from the check: the user listed alone, or as `USER@console` on a
    /// local virtual console (tty1…, no remote host).
    public func loginIsExempt(user: String, tty: String?, remoteHost: String?) -> Bool {
        let bareTTY = (tty ?? "").hasPrefix("/dev/") ? String((tty ?? "").dropFirst(5)) : (tty ?? "")
        let console = bareTTY.hasPrefix("tty") && bareTTY.count > 3 && bareTTY.dropFirst(3).allSatisfy(\.isNumber) && (remoteHost ?? "").isEmpty
        return loginExempt.contains(user) || (console && loginExempt.contains(user + "@console"))
    }

    /// The intake socket in force.
    public var fileWatchIntakePath: String {
        if !fileWatchIntakeSocket.isEmpty { return fileWatchIntakeSocket }
        guard let slash = controlSocket.lastIndex(of: "/") else { return "audit.sock" }
        return String(controlSocket[...slash]) + "audit.sock"
    }

    public static let defaultPath = "/etc/holdfast/agent.conf"

    public init() {}
}

/// A refused configuration: the file, the line (0 for the file as a whole) and why.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let line: Int
    public let message: String

    public init(path: String, line: Int, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    /// `PATH:LINE: message`, the form editors and CI jump to.
    public var description: String { line > 0 ? "\(path):\(line): \(message)" : "\(path): \(message)" }
}

/// The `agent.conf` format: `# comments`, `[section]` headers, `key = value` lines.
///
/// Strict by design: an unknown section or key, a duplicate key, a key outside a section, a bad
/// value or a line that is none of these is refused with its line number. Comments are whole
/// lines only (`#` or `;` first), so a `#` inside a value is part of the value. A value may be
/// wrapped in double quotes to keep leading or trailing spaces.
public enum AgentConfigurationParser {
    struct Key: Sendable {
        let section: String
        let name: String
        let apply: @Sendable (inout AgentConfiguration, String) -> String?
    }

    static let keys: [Key] = [
        Key(section: "agent", name: "state_dir") { config, value in
            pathProblem("state_dir", value) ?? { config.stateDirectory = value; return nil }()
        },
        Key(section: "agent", name: "control_socket") { config, value in
            if let problem = pathProblem("control_socket", value) { return problem }
            let path = value
            guard !path.hasSuffix("/") else { return "control_socket must be a path to a socket file, not a directory" }
            guard path.utf8.count < 108 else { return "control_socket is longer than a Unix socket path may be (107 bytes)" }
            config.controlSocket = path
            return nil
        },
        Key(section: "agent", name: "policy") { config, value in
            pathProblem("policy", value) ?? { config.policyFile = value; return nil }()
        },
        Key(section: "agent", name: "log_level") { config, value in
            guard let level = LogLevel(name: value) else {
                return "log_level must be one of \(LogLevel.allCases.map(\.name).joined(separator: ", "))"
            }
            config.logLevel = level
            return nil
        },
        Key(section: "usb", name: "enabled") { config, value in
            guard let flag = boolean(value) else { return "enabled must be yes or no (true/false, on/off and 1/0 work too)" }
            config.usbEnabled = flag
            return nil
        },
        Key(section: "usb", name: "rescan_interval") { config, value in
            guard let seconds = DurationText.seconds(value), seconds <= 3_600 else {
                return "rescan_interval must be a duration from 1s to 1h (e.g. 10s)"
            }
            config.usbRescanSeconds = seconds
            return nil
        },
        Key(section: "usb", name: "marks_dir") { config, value in
            pathProblem("marks_dir", value) ?? { config.usbMarksDirectory = value; return nil }()
        },
        Key(section: "print", name: "enabled") { config, value in
            guard let flag = boolean(value) else { return "enabled must be yes or no (true/false, on/off and 1/0 work too)" }
            config.printEnabled = flag
            return nil
        },
        Key(section: "print", name: "cups_server") { config, value in
            guard !value.contains("\0"), value.hasPrefix("/") || !value.contains("/") else {
                return "cups_server must be a socket path or host:port"
            }
            if value.hasPrefix("/"), let problem = pathProblem("cups_server", value) { return problem }
            config.printCupsServer = value
            return nil
        },
        Key(section: "print", name: "cups_server_root") { config, value in
            pathProblem("cups_server_root", value) ?? { config.printCupsServerRoot = value; return nil }()
        },
        Key(section: "print", name: "backend_user") { config, value in
            guard value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }) else {
                return "backend_user must be a user name"
            }
            config.printBackendUser = value
            return nil
        },
        Key(section: "filewatch", name: "enabled") { config, value in
            guard let flag = boolean(value) else { return "enabled must be yes or no (true/false, on/off and 1/0 work too)" }
            config.fileWatchEnabled = flag
            return nil
        },
        Key(section: "filewatch", name: "intake_socket") { config, value in
            if let problem = pathProblem("intake_socket", value) { return problem }
            guard value.utf8.count < 108, !value.hasSuffix("/") else { return "intake_socket must be a socket path shorter than 108 bytes" }
            config.fileWatchIntakeSocket = value
            return nil
        },
        Key(section: "filewatch", name: "roots") { config, value in
            let roots = value.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
            guard !roots.isEmpty else { return "roots must list at least one directory" }
            for root in roots {
                if let problem = pathProblem("roots", root) { return problem }
                if root.contains(" ") || root.contains("\t") || root.contains("\"") { return "roots: '\(root)' has a space or a quote; auditd's rules cannot name it" }
            }
            config.fileWatchRoots = roots
            return nil
        },
        Key(section: "filewatch", name: "rules") { config, value in
            guard ["manage", "check", "off"].contains(value) else { return "rules must be manage, check or off" }
            config.fileWatchRules = value
            return nil
        },
        Key(section: "filewatch", name: "rule_key") { config, value in
            guard value.utf8.count <= 24, value.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_") }) else {
                return "rule_key must be up to 24 letters, digits, '-' or '_'"
            }
            config.fileWatchRuleKey = value
            return nil
        },
        Key(section: "posture", name: "enabled") { config, value in
            guard let flag = boolean(value) else { return "enabled must be yes or no (true/false, on/off and 1/0 work too)" }
            config.postureEnabled = flag
            return nil
        },
        Key(section: "posture", name: "interval") { config, value in
            guard let seconds = DurationText.seconds(value), seconds >= 10, seconds <= 86_400 else {
                return "interval must be a duration from 10s to 24h (e.g. 5m)"
            }
            config.postureIntervalSeconds = seconds
            return nil
        },
        Key(section: "posture", name: "supported") { config, value in
            var supported: [String: String] = [:]
            for item in value.split(separator: ",") {
                let words = item.split(separator: " ", omittingEmptySubsequences: true)
                guard words.count == 2, words[0].allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }),
                      words[1].split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) else {
                    return "supported lists ID VERSION pairs, comma-separated (e.g. debian 12, ubuntu 22.04)"
                }
                supported[String(words[0])] = String(words[1])
            }
            guard !supported.isEmpty else { return "supported must name at least one release" }
            config.postureSupported = supported
            return nil
        },
        Key(section: "posture", name: "max_update_age") { config, value in
            guard let seconds = DurationText.seconds(value), seconds >= 3_600, seconds <= 90 * 86_400 else {
                return "max_update_age must be a duration from 1h to 90d (e.g. 7d)"
            }
            config.postureMaximumUpdateAge = seconds
            return nil
        },
        Key(section: "posture", name: "max_idle_lock") { config, value in
            guard let seconds = DurationText.seconds(value), seconds >= 60, seconds <= 86_400 else {
                return "max_idle_lock must be a duration from 1m to 24h (e.g. 15m)"
            }
            config.postureMaximumIdleLock = seconds
            return nil
        },
        Key(section: "broker", name: "attest_interval") { config, value in
            guard let seconds = DurationText.seconds(value), seconds >= 1, seconds <= 86_400 else {
                return "attest_interval must be a duration from 1s to 24h (e.g. 5m)"
            }
            config.brokerAttestIntervalSeconds = seconds
            return nil
        },
        Key(section: "broker", name: "heartbeat_interval") { config, value in
            guard let seconds = DurationText.seconds(value), seconds >= 1, seconds <= 3_600 else {
                return "heartbeat_interval must be a duration from 1s to 1h (e.g. 1m)"
            }
            config.brokerHeartbeatIntervalSeconds = seconds
            return nil
        },
        Key(section: "broker", name: "policy_wait") { config, value in
            guard let seconds = DurationText.seconds(value), seconds >= 1, seconds <= 55 else {
                return "policy_wait must be a duration from 1s to 55s"
            }
            config.brokerPolicyWaitSeconds = seconds
            return nil
        },
        Key(section: "broker", name: "upload_batch") { config, value in
            guard let count = Int64(value), count >= 1, count <= 1_000 else { return "upload_batch must be a number of events from 1 to 1000" }
            config.brokerUploadBatch = count
            return nil
        },
        Key(section: "login", name: "timeout") { config, value in
            let milliseconds = value.hasSuffix("ms") ? Int64(value.dropLast(2)) : DurationText.seconds(value).map { $0 * 1_000 }
            guard let milliseconds, milliseconds >= 200, milliseconds <= 10_000 else {
                return "timeout must be a duration from 200ms to 10s (e.g. 2s)"
            }
            config.loginTimeoutMilliseconds = milliseconds
            return nil
        },
        Key(section: "login", name: "offline_grace") { config, value in
            guard let seconds = value == "0" || value == "0s" ? 0 : DurationText.seconds(value), seconds <= 30 * 86_400 else {
                return "offline_grace must be a duration up to 30d (0 denies every login the broker does not answer)"
            }
            config.loginOfflineGraceSeconds = seconds
            return nil
        },
        Key(section: "login", name: "exempt") { config, value in
            // Entries trimmed at their ends only: a directory name may hold a space inside.
            let entries = value.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
            for entry in entries {
                let user = entry.hasSuffix("@console") ? String(entry.dropLast(8)) : entry
                guard LoginName.isValid(user) else {
                    return "exempt lists USER or USER@console, comma-separated (e.g. root@console), each user a login name as the login check takes it; '\(entry)' is neither"
                }
            }
            config.loginExempt = entries
            return nil
        },
        Key(section: "lockdown", name: "dns") { config, value in
            let entries = value.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
            var addresses: [NetworkAddress] = []
            for entry in entries {
                guard let address = NetworkAddress(entry), address.isHost else {
                    return "dns lists resolver addresses, comma-separated (e.g. 10.0.0.53, fd00::53); '\(entry)' is not one"
                }
                addresses.append(address)
            }
            config.lockdownDNS = addresses
            return nil
        },
        Key(section: "lockdown", name: "allow") { config, value in
            let entries = value.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
            var addresses: [NetworkAddress] = []
            for entry in entries {
                guard let address = NetworkAddress(entry) else {
                    return "allow lists addresses or prefixes, comma-separated (e.g. 10.20.0.0/24, fd00:20::/64); '\(entry)' is not one"
                }
                addresses.append(address)
            }
            config.lockdownAllow = addresses
            return nil
        },
        Key(section: "lockdown", name: "sessions") { config, value in
            guard ["terminate", "lock"].contains(value) else { return "sessions must be terminate or lock" }
            config.lockdownSessions = value
            return nil
        },
        Key(section: "journal", name: "max_size") { config, value in
            guard let bytes = ByteSize.parse(value), bytes >= 1 << 20 else {
                return "max_size must be a size of at least 1M (e.g. 256M, 1G)"
            }
            config.journalMaximumBytes = bytes
            return nil
        },
    ]

    /// Every `section.key` this build knows.
    public static var knownKeys: [String] { keys.map { "\($0.section).\($0.name)" } }

    static func boolean(_ value: String) -> Bool? {
        switch value {
        case "yes", "true", "on", "1": true
        case "no", "false", "off", "0": false
        default: nil
        }
    }

    /// Why `value` is not a usable path for `key`, or nil when it is.
    static func pathProblem(_ key: String, _ value: String) -> String? {
        if !value.hasPrefix("/") { return "\(key) must be an absolute path" }
        if value.contains("\0") { return "\(key) must not contain a NUL byte" }
        if value.split(separator: "/").contains("..") { return "\(key) must not contain '..' (write the path it leads to)" }
        return nil
    }

    /// Parses the bytes of a configuration file; `path` only names it in errors.
    public static func parse(_ bytes: [UInt8], path: String) throws(ConfigError) -> AgentConfiguration {
        var configuration = AgentConfiguration()
        var section: String?
        var seen: [String: Int] = [:]
        // A UTF-8 byte order mark, as some Windows editors write, is not part of line 1.
        let bytes = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(bytes.dropFirst(3)) : bytes
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (index, rawLine) in lines.enumerated() {
            let number = index + 1
            guard let text = String(validating: rawLine, as: UTF8.self) else {
                throw ConfigError(path: path, line: number, message: "not valid UTF-8")
            }
            let line = text.trimmingSpaces
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw ConfigError(path: path, line: number, message: "section header must end with ]") }
                let name = String(line.dropFirst().dropLast()).trimmingSpaces
                guard keys.contains(where: { $0.section == name }) else {
                    let known = Array(Set(keys.map(\.section))).sorted().joined(separator: ", ")
                    throw ConfigError(path: path, line: number, message: "unknown section [\(name)] (known: \(known))")
                }
                section = name
                continue
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw ConfigError(path: path, line: number, message: "expected 'key = value', a [section] or a # comment")
            }
            let name = String(line[..<equals]).trimmingSpaces
            var value = String(line[line.index(after: equals)...]).trimmingSpaces
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            guard let section else {
                throw ConfigError(path: path, line: number, message: "'\(name)' is outside a section; put it under a [section]")
            }
            guard let key = keys.first(where: { $0.section == section && $0.name == name }) else {
                throw ConfigError(path: path, line: number, message: "unknown key '\(name)' in [\(section)]")
            }
            let qualified = section + "." + name
            if let first = seen[qualified] {
                throw ConfigError(path: path, line: number, message: "duplicate key '\(name)' (first set on line \(first))")
            }
            seen[qualified] = number
            guard !value.isEmpty else { throw ConfigError(path: path, line: number, message: "'\(name)' has no value") }
            if let problem = key.apply(&configuration, value) {
                throw ConfigError(path: path, line: number, message: problem)
            }
        }
        return configuration
    }

    /// Reads and parses a configuration file. With `requireRootOwned` (the daemon's reading), the
    /// file must be a regular file owned by root and writable by nobody else.
    public static func load(_ path: String, requireRootOwned: Bool) throws(ConfigError) -> AgentConfiguration {
        // O_NONBLOCK: a FIFO at the path must not hang the open; fstat refuses it next.
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            let reason = errno == ELOOP ? "is a symbolic link; refusing it" : String(cString: strerror(errno))
            throw ConfigError(path: path, line: 0, message: reason)
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw ConfigError(path: path, line: 0, message: "is not a regular file")
        }
        if requireRootOwned {
            if info.st_uid != 0 {
                throw ConfigError(path: path, line: 0, message: "owned by uid \(info.st_uid); it must be owned by root")
            }
            if info.st_mode & 0o022 != 0 {
                throw ConfigError(
                    path: path, line: 0,
                    message: "mode \(String(info.st_mode & 0o777, radix: 8)) lets group or others write it; it must not (chmod go-w)"
                )
            }
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8_192)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw ConfigError(path: path, line: 0, message: String(cString: strerror(errno))) }
            if count == 0 { break }
            bytes += chunk[0..<count]
            guard bytes.count <= 1 << 20 else { throw ConfigError(path: path, line: 0, message: "larger than 1 MiB") }
        }
        return try parse(bytes, path: path)
    }
}

/// Sizes as written in configuration: `1048576`, `512K`, `256M`, `1G` (powers of 1024).
public enum ByteSize {
    public static func parse(_ text: String) -> Int? {
        guard let last = text.last else { return nil }
        let multiplier: Int
        var digits = Substring(text)
        switch last {
        case "K", "k": multiplier = 1 << 10
        case "M", "m": multiplier = 1 << 20
        case "G", "g": multiplier = 1 << 30
        default: multiplier = 1
        }
        if multiplier != 1 { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(digits) else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}

extension String {
    /// The string without leading and trailing spaces and tabs (no Foundation needed).
    public var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
