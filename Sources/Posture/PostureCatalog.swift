/// Every check, in report order. Ids are stable: the broker's compliance policy names them.
public enum PostureCatalog {
    public static let checks: [PostureCheck] = [
        PostureCheck("os-version", "distribution and version from os-release, against the supported minimum", run: OSChecks.osVersion),
        PostureCheck("kernel", "running kernel release; no newer installed kernel waiting for a reboot", run: OSChecks.kernel),
        PostureCheck("security-updates", "no pending updates from the security suite (apt lists vs dpkg status)", run: PatchChecks.pendingSecurityUpdates),
        PostureCheck("apt-updated", "the last successful apt-get update is recent", run: PatchChecks.updateAge),
        PostureCheck("unattended-upgrades", "unattended-upgrades installed and enabled by APT::Periodic", run: PatchChecks.unattendedUpgrades),
        PostureCheck("disk-encryption", "/, /home and /var rest on dm-crypt (block device stack in sysfs)", run: DiskEncryption.check),
        PostureCheck("firewall", "an nftables input chain drops by default, IPv4 and IPv6", run: FirewallCheck.check),
        PostureCheck("secure-boot", "UEFI Secure Boot on and not in setup mode (efivars)", run: PlatformChecks.secureBoot),
        PostureCheck("mac", "AppArmor or SELinux enabled and enforcing", run: PlatformChecks.mandatoryAccessControl),
        PostureCheck("audit-enabled", "kernel audit enabled", run: AuditChecks.enabled),
        PostureCheck("auditd-running", "auditd is the process the kernel sends audit records to", run: AuditChecks.daemon),
        PostureCheck("audit-rules", "Holdfast's file and mount audit rules loaded in the kernel", run: AuditChecks.rules),
        PostureCheck("audit-lost", "no audit records lost since the last report", run: AuditChecks.lost),
        PostureCheck("filewatch-coverage", "FileWatch saw every record the kernel audited (no gaps, drops or partial events)", run: AuditChecks.coverage),
        PostureCheck("io-uring", "io_uring disabled (its file writes bypass the audit rules)", run: PlatformChecks.ioUring),
        PostureCheck("usb-default-deny", "every USB root hub default-deny and the udev rule installed", run: EnforcementChecks.usbDefaultDeny),
        PostureCheck("print-restricted", "every CUPS queue gated and approved, cupsd hardened, no print-to-file", run: EnforcementChecks.printRestricted),
        PostureCheck("lockdown-consistent", "the lockdown scopes recorded are the ones enforced", run: EnforcementChecks.lockdownConsistent),
        PostureCheck("clock-sync", "the kernel clock is synchronized (adjtimex)", run: PlatformChecks.clock),
        PostureCheck("accounts-uid0", "no UID 0 account other than root", run: AccountChecks.extraRoot),
        PostureCheck("accounts-empty-password", "no account with an empty password hash", run: AccountChecks.emptyPasswords),
        PostureCheck("ssh-password-login", "sshd accepts no passwords (PasswordAuthentication, keyboard-interactive via PAM)", run: SSHChecks.passwordLogin),
        PostureCheck("ssh-root-login", "sshd refuses root (PermitRootLogin no)", run: SSHChecks.rootLogin),
        PostureCheck("screen-lock", "desktops lock when idle, set system-wide and locked", run: ScreenLock.check),
        PostureCheck("holdfast-integrity", "Holdfast's installed files match dpkg's recorded checksums", run: IntegrityChecks.packageFiles),
        PostureCheck("holdfast-permissions", "agent.conf, the state directory and keys owned by root with safe modes", run: IntegrityChecks.permissions),
    ]

    /// Runs every check (or those named) in catalog order.
    public static func run(_ context: PostureContext, only: Set<String>? = nil) -> [CheckResult] {
        checks.filter { only?.contains($0.id) ?? true }.map { check in
            var result = check.run(context)
            // A check returns its own id; the catalog's is the one the policy knows.
            result.id = check.id
            return result
        }
    }

    /// A device's overall status: fail when any check fails, unknown when none fails but one
    /// could not tell, pass otherwise.
    public static func overall(_ results: [CheckResult]) -> CheckStatus {
        if results.contains(where: { $0.status == .fail }) { return .fail }
        if results.contains(where: { $0.status == .unknown }) { return .unknown }
        return .pass
    }
}
