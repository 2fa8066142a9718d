import CAudit

/// Names the kernel audit subsystem uses, resolved through libaudit's tables.
///
/// FileWatch is the only module that talks to libaudit and libauparse; its parser and assembler
/// are pure Swift over bytes, and these tables are for building rules and for cross-checks.
public enum AuditNames {
    /// The syscall number of `name` on this machine's architecture, or nil if unknown.
    public static func syscallNumber(_ name: String) -> Int? {
        let machine = audit_detect_machine()
        guard machine >= 0 else { return nil }
        let number = audit_name_to_syscall(name, machine)
        return number < 0 ? nil : Int(number)
    }

    /// The name of audit record type `type` (e.g. 1300 → `SYSCALL`), or nil if unknown.
    public static func recordTypeName(_ type: Int) -> String? {
        guard let name = audit_msg_type_to_name(Int32(type)) else { return nil }
        return String(cString: name)
    }
}
