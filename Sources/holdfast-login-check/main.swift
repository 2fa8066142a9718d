// holdfast-login-check: `holdfast login-check` alone, for pam_exec (Packaging/pam-configs/holdfast).
// A login waits for this process to start; it links only what the check needs.
import HoldfastCommandLine
import HoldfastLogin

CommandTable(toolName: "holdfast-login-check", single: LoginCheck.self).main()
