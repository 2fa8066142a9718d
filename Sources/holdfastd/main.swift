// holdfastd: the Holdfast agent. This file only wires subcommands.
import HoldfastCommandLine

CommandTable(
    toolName: "holdfastd",
    summary: "the Holdfast agent daemon",
    commands: []
).main()
