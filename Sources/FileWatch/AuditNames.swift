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

/// Syscall numbers → names per audit architecture (`arch=c000003e`), from libaudit's tables,
/// built once per architecture at first use so the parse path makes no C call per event.
enum SyscallNames {
    /// x86_64, i386, aarch64 and arm: the tables are built eagerly for these.
    static let tables: [UInt32: [String?]] = {
        var tables: [UInt32: [String?]] = [:]
        for arch: UInt32 in [0xC000_003E, 0x4000_0003, 0xC000_00B7, 0x4000_0028] {
            let machine = audit_elf_to_machine(arch)
            guard machine >= 0 else { continue }
            tables[arch] = (0..<1_024).map { number in audit_syscall_to_name(Int32(number), machine).map { String(cString: $0) } }
        }
        return tables
    }()

    static func name(arch: String?, number: Int) -> String? {
        guard let arch, let code = UInt32(arch, radix: 16) else { return nil }
        if let table = tables[code] { return number >= 0 && number < table.count ? table[number] : nil }
        let machine = audit_elf_to_machine(code)
        guard machine >= 0, let number = Int32(exactly: number), let name = audit_syscall_to_name(number, machine) else { return nil }
        return String(cString: name)
    }
}
