import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A private auditd (`auditd -n -c DIR`) for the kernel-audit tests and the bench: its
/// configuration (its own log, plugin directory and queue; every disk action IGNORE so a small
/// test disk never stops it), and the Holdfast plugin conf as the package installs it, pointed at
/// a test's plugin binary and socket. The machine's own auditd and /etc/audit are never touched.
public enum PrivateAuditd {
    /// Writes `DIRECTORY/auditd.conf` (0640, as auditd wants it).
    public static func writeConfiguration(directory: String, logFile: String, pluginDirectory: String, maxLogFileMiB: Int = 256) throws {
        try """
            log_file = \(logFile)
            log_format = ENRICHED
            log_group = root
            write_logs = yes
            flush = INCREMENTAL_ASYNC
            freq = 50
            max_log_file = \(maxLogFileMiB)
            num_logs = 2
            max_log_file_action = ROTATE
            space_left = 75
            space_left_action = IGNORE
            admin_space_left = 50
            admin_space_left_action = IGNORE
            disk_full_action = IGNORE
            disk_error_action = IGNORE
            name_format = NONE
            plugin_dir = \(pluginDirectory)
            q_depth = 20000
            overflow_action = SYSLOG
            """.writeReplacing(toFile: directory + "/auditd.conf")
        chmod(directory + "/auditd.conf", 0o640)
    }

    /// Writes the Holdfast plugin conf (`Packaging/audit/holdfast.conf`'s settings) at `path`.
    public static func writePluginConf(to path: String, plugin: String, socket: String) throws {
        try """
            active = yes
            direction = out
            path = \(plugin)
            type = always
            args = --socket \(socket)
            format = string

            """.writeReplacing(toFile: path)
        chmod(path, 0o640)
    }

    /// Writes a holdfastd configuration for FileWatch alone (USB and print off) into `directory`:
    /// `agent.conf` and `policy.json` (0644), state in `state/`, sockets in `run/`. `rules` is
    /// the `[filewatch] rules` mode; `roots` and `ruleKey` only apply when it is not `off`.
    public static func writeAgent(directory: String, policy: String, rules: String = "manage", roots: String? = nil, ruleKey: String? = nil) throws {
        var fileWatch = "[filewatch]\nrules = \(rules)\n"
        if let roots { fileWatch += "roots = \(roots)\n" }
        if let ruleKey { fileWatch += "rule_key = \(ruleKey)\n" }
        try """
            [agent]
            state_dir = \(directory)/state
            control_socket = \(directory)/run/control.sock
            policy = \(directory)/policy.json
            [usb]
            enabled = no
            [print]
            enabled = no

            """.appending(fileWatch).writeReplacing(toFile: directory + "/agent.conf")
        try policy.writeReplacing(toFile: directory + "/policy.json")
        chmod(directory + "/agent.conf", 0o644)
        chmod(directory + "/policy.json", 0o644)
    }
}
