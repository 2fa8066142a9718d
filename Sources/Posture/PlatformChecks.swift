/// Firmware, kernel security modules, the clock and io_uring.
enum PlatformChecks {
    /// EFI global variable GUID (UEFI spec §3.3).
    static let globalGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

    static func secureBoot(_ context: PostureContext) -> CheckResult {
        let id = "secure-boot"
        let fix = "enable Secure Boot in the firmware setup (Debian's shim and kernel are signed)"
        let tree = context.tree
        guard tree.exists("/sys/firmware/efi") else {
            return PostureCheck.result(id, .unknown, .attested, "not booted through UEFI (no /sys/firmware/efi): Secure Boot does not apply", fix: fix)
        }
        let directory = "/sys/firmware/efi/efivars"
        guard let names = tree.list(directory), !names.isEmpty else {
            return PostureCheck.result(id, .unknown, .attested, "efivarfs is not mounted at \(directory)", fix: "mount -t efivarfs efivarfs \(directory)")
        }
        // An efivarfs file is 4 bytes of attributes, then the value; SecureBoot is one byte.
        let path = "\(directory)/SecureBoot-\(globalGUID)"
        guard tree.exists(path) else {
            return PostureCheck.result(id, .fail, .attested, "the firmware has no SecureBoot variable", fix: fix)
        }
        guard let secureBoot = tree.read(path, limit: 64), secureBoot.count == 5 else {
            return PostureCheck.result(id, .unknown, .attested, "the SecureBoot variable is unreadable or not 1 byte", fix: fix)
        }
        guard secureBoot[4] == 1 else {
            return PostureCheck.result(id, .fail, .attested, "SecureBoot=\(secureBoot[4]) (off)", fix: fix)
        }
        guard let setup = tree.read("\(directory)/SetupMode-\(globalGUID)", limit: 64), setup.count == 5 else {
            return PostureCheck.result(id, .unknown, .attested, "SecureBoot=1 but SetupMode is missing or unreadable: cannot tell whether keys are enforced", fix: fix)
        }
        guard setup[4] == 0 else {
            return PostureCheck.result(id, .fail, .attested, "SecureBoot=1 but SetupMode=\(setup[4]): no platform key enrolled, nothing is enforced", fix: "enroll the platform keys (leave setup mode) in the firmware setup")
        }
        // shim's own switch: `mokutil --disable-validation` keeps SecureBoot=1 but shim then
        // boots anything (MokSBStateRT, shim's GUID 605dab50-e046-4300-abb6-3dd810dd8b23).
        if let mok = tree.read("\(directory)/MokSBStateRT-605dab50-e046-4300-abb6-3dd810dd8b23", limit: 64), mok.count == 5, mok[4] == 1 {
            return PostureCheck.result(id, .fail, .attested, "SecureBoot=1, but shim validation is disabled (MokSBStateRT=1): unsigned kernels boot", fix: "mokutil --enable-validation, then reboot and confirm in MokManager")
        }
        return PostureCheck.result(id, .pass, .attested, "SecureBoot=1, SetupMode=0")
    }

    static func mandatoryAccessControl(_ context: PostureContext) -> CheckResult {
        let id = "mac"
        let fix = "boot with AppArmor (Debian's default: apt-get install apparmor apparmor-profiles; security=apparmor) and load profiles in enforce mode"
        let tree = context.tree
        let active = tree.attribute("/sys/kernel/security/lsm")
        if tree.exists("/sys/fs/selinux/enforce"), tree.attribute("/sys/fs/selinux/enforce") == nil {
            return PostureCheck.result(id, .unknown, .attested, "SELinux is mounted but /sys/fs/selinux/enforce is unreadable", fix: fix)
        }
        if tree.exists("/sys/module/apparmor/parameters/enabled"), tree.attribute("/sys/module/apparmor/parameters/enabled") == nil {
            return PostureCheck.result(id, .unknown, .attested, "AppArmor's enabled parameter is unreadable", fix: fix)
        }
        if let enforce = tree.attribute("/sys/fs/selinux/enforce") {
            return enforce == "1"
                ? PostureCheck.result(id, .pass, .attested, "SELinux enforcing")
                : PostureCheck.result(id, .fail, .attested, "SELinux permissive (enforce=\(enforce))", fix: "setenforce 1 and SELINUX=enforcing in /etc/selinux/config")
        }
        if tree.attribute("/sys/module/apparmor/parameters/enabled") == "Y" {
            guard let profiles = tree.text("/sys/kernel/security/apparmor/profiles") else {
                return PostureCheck.result(id, .unknown, .attested, "AppArmor enabled, but its profile list is not readable (securityfs not mounted, or not root)", fix: fix)
            }
            let lines = TextLines.of(profiles)
            let enforcing = lines.filter { $0.hasSuffix("(enforce)") }.count
            let complaining = lines.filter { $0.hasSuffix("(complain)") }.count
            let text = "AppArmor enabled: \(enforcing) profile(s) enforcing, \(complaining) complaining"
            return enforcing > 0 ? PostureCheck.result(id, .pass, .attested, text) : PostureCheck.result(id, .fail, .attested, text, fix: fix)
        }
        guard active != nil || tree.exists("/sys/module") else {
            return PostureCheck.result(id, .unknown, .attested, "cannot read /sys/kernel/security/lsm or /sys/module", fix: fix)
        }
        return PostureCheck.result(id, .fail, .attested, "neither AppArmor nor SELinux is active" + (active.map { " (LSMs: \($0))" } ?? ""), fix: fix)
    }

    static func clock(_ context: PostureContext) -> CheckResult {
        let id = "clock-sync"
        let fix = "run an NTP client (systemd-timesyncd or chrony) against the site's time servers"
        let state: ClockState
        switch context.system.clock() {
        case .success(let value): state = value
        case .failure(let error): return PostureCheck.result(id, .unknown, .attested, error.message, fix: fix)
        }
        let error = "maxerror \(state.maximumError / 1_000) ms, esterror \(state.estimatedError / 1_000) ms"
        if state.status & ClockState.unsynchronizedBit != 0 || state.state == ClockState.timeError {
            return PostureCheck.result(id, .fail, .attested, "the kernel clock is unsynchronized (STA_UNSYNC; no NTP client disciplines it); \(error)", fix: fix)
        }
        guard state.maximumError <= context.settings.maximumClockError else {
            return PostureCheck.result(id, .fail, .attested, "synchronized, but \(error) exceeds \(context.settings.maximumClockError / 1_000) ms", fix: fix)
        }
        return PostureCheck.result(id, .pass, .attested, "synchronized; \(error)")
    }

    /// io_uring's file operations do not pass through the audit syscall rules FileWatch uses:
    /// with io_uring open to users, a bulk copy can go unseen.
    static func ioUring(_ context: PostureContext) -> CheckResult {
        let id = "io-uring"
        let fix = "sysctl kernel.io_uring_disabled=2 (and set it in /etc/sysctl.d/); kernels before 6.6 need io_uring compiled out"
        guard let value = context.tree.attribute("/proc/sys/kernel/io_uring_disabled") else {
            return PostureCheck.result(id, .unknown, .attested, "no kernel.io_uring_disabled (a kernel before 6.6, or io_uring compiled out): cannot tell whether io_uring is available", fix: fix)
        }
        switch value {
        case "2": return PostureCheck.result(id, .pass, .attested, "io_uring_disabled=2: io_uring is off for every process")
        case "1": return PostureCheck.result(id, .fail, .attested, "io_uring_disabled=1: members of kernel.io_uring_group may still use io_uring, which bypasses the audit file rules", fix: fix)
        default: return PostureCheck.result(id, .fail, .attested, "io_uring_disabled=\(value): any process may use io_uring, whose file writes bypass the audit file rules", fix: fix)
        }
    }
}
