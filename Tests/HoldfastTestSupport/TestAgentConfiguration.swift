import Foundation

/// The agent.conf tests and benches give a holdfastd of their own: USB, print and FileWatch off
/// (nothing of this machine's devices, printers or audit changes), its state directory, control
/// socket and policy under `directory`, then `extra` sections as written. Writes the policy file
/// too (`{"version": 1, "usb": {}}`); both 0644 (agent.conf must not be writable by others).
public enum TestAgentConfiguration {
    /// Writes `directory/agent.conf` and `directory/policy.json`; the state directory is
    /// `directory/state`, the socket `directory/run/control.sock` (run/ created). Returns the
    /// configuration's path.
    @discardableResult
    /// `print`: the `[print]` section instead of `enabled = no` (a private cupsd's).
    public static func write(in directory: String, extra: String = "", print: String? = nil) throws -> String {
        try FileManager.default.createDirectory(atPath: directory + "/run", withIntermediateDirectories: true)
        let path = directory + "/agent.conf"
        try """
            # a test agent (Tests/HoldfastTestSupport/TestAgentConfiguration.swift)
            [usb]
            enabled = no
            [print]
            \(print ?? "enabled = no")
            [filewatch]
            enabled = no
            [agent]
            state_dir = \(directory)/state
            control_socket = \(directory)/run/control.sock
            policy = \(directory)/policy.json
            \(extra)

            """.writeReplacing(toFile: path)
        try #"{"version": 1, "usb": {}}"#.writeReplacing(toFile: directory + "/policy.json")
        chmod(path, 0o644)
        chmod(directory + "/policy.json", 0o644)
        return path
    }
}
