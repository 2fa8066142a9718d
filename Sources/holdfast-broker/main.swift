// holdfast-broker: the reference broker and its admin CLI. This file only wires subcommands.
import HoldfastCommandLine

CommandTable(
    toolName: "holdfast-broker",
    summary: "the Holdfast reference broker and its admin tools",
    commands: [
        KeyGenerate.self,
        KeyPublic.self,
        KeyRotate.self,
        KeyRetire.self,
        Sign.self,
        Fingerprint.self,
        PolicyCheck.self,
        Init.self,
        AdminAdd.self,
        TokenCreate.self,
        Serve.self,
        PolicySet.self,
        PolicyShow.self,
        AgentPolicySet.self,
        DeviceRemove.self,
        Devices.self,
        DeviceShow.self,
        LogCommand.self,
        Events.self,
        Alerts.self,
        Ack.self,
        LockdownCommand.self,
        ReleaseCommand.self,
        Breakglass.self,
        RequestsList.self,
        Approve.self,
        NotedDecisionCommand<DenyDecision>.self,
        NotedDecisionCommand<RevokeDecision>.self,
    ]
).main()
