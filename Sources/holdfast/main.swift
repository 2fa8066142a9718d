// holdfast: the command line for people and hooks. This file only wires subcommands.
import HoldfastCommandLine

CommandTable(
    toolName: "holdfast",
    summary: "Holdfast endpoint enforcement: inspect and operate the agent",
    commands: [
        Verify.self,
        JournalTail.self,
        JournalStatsCommand.self,
        JournalCheck.self,
        JournalNote.self,
    ]
).main()
