// holdfast: the command line for people and hooks. This file only wires subcommands.
import HoldfastCommandLine
import HoldfastLogin

CommandTable(
    toolName: "holdfast",
    summary: "Holdfast endpoint enforcement: inspect and operate the agent",
    commands: [
        Status.self,
        Reload.self,
        USBExplain.self,
        USBDevices.self,
        USBAllow.self,
        USBRevoke.self,
        PrintStatus.self,
        PrintLockdown.self,
        Verify.self,
        AuditParse.self,
        AuditRules.self,
        AuditReplay.self,
        FileWatchStatus.self,
        FileWatchBaseline.self,
        LockdownStatus.self,
        LockdownChange.self,
        Unlock.self,
        RequestUSB.self,
        RequestPrint.self,
        Requests.self,
        PostureCommand.self,
        Enroll.self,
        Grant.self,
        LoginCheck.self,
        JournalTail.self,
        JournalStatsCommand.self,
        JournalCheck.self,
        JournalNote.self,
    ],
    globalOptions: [Daemon.socketOption]
).main()
