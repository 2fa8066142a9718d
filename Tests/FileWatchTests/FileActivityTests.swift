import FileWatch
import HoldfastCore
import Foundation
import Testing

/// A SYSCALL record of `syscall` (x86_64 number) and its CWD and PATH records, as one event.
func syscallEvent(
    _ number: Int, success: Bool = true, auid: String = "1001", a1: String = "0", a2: String = "0", cwd: String = "/home/agent01",
    paths: [(name: String, nametype: String, dev: String)], serial: Int = 700
) throws -> AuditEventSummary {
    var lines = [
        "type=SYSCALL msg=audit(1700000000.200:\(serial)): arch=c000003e syscall=\(number) success=\(success ? "yes" : "no") exit=\(success ? 3 : -13) a0=ffffff9c a1=\(a1) a2=\(a2) a3=0 items=\(paths.count) ppid=900 pid=901 auid=\(auid) uid=1001 gid=1001 euid=1001 suid=1001 fsuid=1001 egid=1001 sgid=1001 fsgid=1001 tty=pts0 ses=3 comm=\"cp\" exe=\"/usr/bin/cp\" key=\"holdfast-write\"",
        "type=CWD msg=audit(1700000000.200:\(serial)): cwd=\"\(cwd)\"",
    ]
    for (index, path) in paths.enumerated() {
        lines.append("type=PATH msg=audit(1700000000.200:\(serial)): item=\(index) name=\"\(path.name)\" inode=\(20 + index) dev=\(path.dev) mode=0100644 ouid=1001 ogid=1001 rdev=00:00 nametype=\(path.nametype)")
    }
    lines.append("type=EOE msg=audit(1700000000.200:\(serial)):")
    return try summary(lines)
}

@Suite struct FileActivityTests {
    let classifier = FileActivityClassifier()

    @Test func theIssuesCopyIsACreateOnRemovableMedia() throws {
        let activity = try #require(classifier.classify(try summary(copyEvent)))
        #expect(activity.operation == .create)
        #expect(activity.path == "/media/agent01/STICK/customer list.csv")
        #expect(activity.directory == "/media/agent01/STICK")
        #expect(activity.target == .removable)
        #expect(activity.auid == 1001)
        #expect(activity.exe == "/usr/bin/cp")
        #expect(activity.device == "08:11")
        #expect(activity.time == 1_700_000_000_101)
    }

    @Test func aRelativeNameIsJoinedToTheCwd() throws {
        let event = try syscallEvent(257, paths: [("./reports/../out.csv", "NORMAL", "fd:01")])
        let activity = try #require(classifier.classify(event))
        #expect(activity.operation == .writeOpen)
        #expect(activity.path == "/home/agent01/out.csv")
        #expect(activity.target == .watchedRoot)
    }

    @Test func renameNamesTheDestinationAndTheSource() throws {
        let event = try syscallEvent(316, paths: [
            ("/home/agent01/", "PARENT", "fd:01"), ("/home/agent01/", "PARENT", "fd:01"),
            ("/home/agent01/a.txt", "DELETE", "fd:01"), ("/home/agent01/b.txt", "CREATE", "fd:01"),
        ])
        let activity = try #require(classifier.classify(event))
        #expect(activity.operation == .rename)
        #expect(activity.path == "/home/agent01/b.txt")
        #expect(activity.sourcePath == "/home/agent01/a.txt")
    }

    @Test(arguments: [
        (263, "unlinkat", FileOperation.delete, "DELETE"),
        (76, "truncate", FileOperation.truncate, "NORMAL"),
        (85, "creat", FileOperation.create, "CREATE"),
    ])
    func eachSyscallFamilyHasItsOperation(number: Int, name: String, operation: FileOperation, nametype: String) throws {
        let event = try syscallEvent(number, paths: [("/tmp/", "PARENT", "00:20"), ("/tmp/x", nametype, "00:20")])
        #expect(event.syscallName == name)
        #expect(classifier.classify(event)?.operation == operation)
        #expect(classifier.classify(event)?.path == "/tmp/x")
    }

    @Test func aRefusedSyscallOrOneWithoutALoginUidIsNoActivity() throws {
        #expect(classifier.classify(try syscallEvent(257, success: false, paths: [("/home/agent01/x", "NORMAL", "fd:01")])) == nil)
        #expect(classifier.classify(try syscallEvent(257, auid: "4294967295", paths: [("/home/agent01/x", "NORMAL", "fd:01")])) == nil)
        // read(2) is not a write FileWatch counts.
        #expect(classifier.classify(try syscallEvent(0, paths: [])) == nil)
    }

    @Test func pathsOutsideTheRootsAreOther() throws {
        let event = try syscallEvent(257, cwd: "/srv", paths: [("data.bin", "NORMAL", "fd:01")])
        #expect(classifier.classify(event)?.target == .other)
        #expect(classifier.classify(event)?.path == "/srv/data.bin")
    }
}

@Suite struct MountTableTests {
    static let mountinfo = """
        22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw
        30 22 0:25 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw
        41 22 8:17 / /srv/stick\\040one rw,nosuid,nodev shared:9 - vfat /dev/sdb1 rw,fmask=0022
        42 22 8:33 / /run/media/agent01/CARD rw shared:10 - exfat /dev/sdc1 rw
        43 22 254:2 / /home rw shared:11 - ext4 /dev/mapper/vg-home rw
        garbage line
        """

    let table = MountTable.parse(mountinfo: Self.mountinfo) { $0 == "8:17" }

    @Test func aUSBDeviceIsRemovableWhereverItIsMounted() {
        #expect(table.mounts.count == 5)
        #expect(table.mount(holding: "/srv/stick one/a.csv")?.source == "/dev/sdb1")
        #expect(table.isRemovable(path: "/srv/stick one/a.csv", device: nil))
        // The PATH record's device (hex) finds the mount even when the path is relative.
        #expect(table.isRemovable(path: "a.csv", device: "08:11"))
        #expect(!table.isRemovable(path: "/home/agent01/a.csv", device: "fe:02"))
    }

    @Test func aMountUnderARemovablePrefixIsRemovableWhateverSysfsSays() {
        #expect(table.isRemovable(path: "/run/media/agent01/CARD/x", device: "08:21"))
        #expect(!table.isRemovable(path: "/tmp/x", device: "00:19"))
    }

    @Test func prefixesMatchWholeComponents() {
        let prefixes = RemovablePrefixes(["/media/"])
        #expect(prefixes.isRemovable(path: "/media/x", device: nil))
        #expect(prefixes.isRemovable(path: "/media", device: nil))
        #expect(!prefixes.isRemovable(path: "/mediafiles/x", device: nil))
    }

    @Test func thisMachinesTableReads() {
        let live = MountTable.read()
        #expect(live.mount(holding: "/")?.mountPoint == "/")
    }
}

@Suite struct FileWatchPolicyTests {
    @Test func theDefaultsAlertAndNeverBlock() throws {
        let policy = try FileWatchPolicy(section: nil)
        #expect(policy.timeZone == "UTC")
        #expect(policy.warmUpSeconds == 7 * 86_400)
        #expect(policy.thresholds.allSatisfy { $0.action == .alert })
        #expect(policy.thresholds.map(\.metric).contains(.removableFilesWritten))
    }

    @Test func aFullSectionParses() throws {
        let section: JSONValueLiteral = """
            {"timezone":"Asia/Manila","warm_up":"14d","memory_weeks":8,"removable_prefixes":["/media","/srv/usb"],
             "alert_interval":"30m","block_scopes":["usb"],
             "thresholds":[{"id":"bulk","metric":"files_written","relative":10,"minimum":500,"action":"alert"},
                           {"metric":"files_written","absolute":5000,"action":"block"}]}
            """
        let policy = try FileWatchPolicy(section: section.value)
        #expect(policy.timeZone == "Asia/Manila")
        #expect(policy.warmUpSeconds == 14 * 86_400)
        #expect(policy.memoryWeeks == 8)
        #expect(policy.removablePrefixes == ["/media", "/srv/usb"])
        #expect(policy.alertIntervalSeconds == 1_800)
        #expect(policy.blockScopes == ["usb"])
        #expect(policy.thresholds == [
            FileThreshold(id: "bulk", metric: .filesWritten, relative: 10, minimum: 500, action: .alert),
            FileThreshold(id: "files_written-block-1", metric: .filesWritten, absolute: 5_000, action: .block),
        ])
    }

    @Test(arguments: [
        (#"{"timezone":"Mars/Olympus"}"#, "filewatch.timezone must be a time zone name"),
        (#"{"treshold":[]}"#, "filewatch: unknown member \"treshold\""),
        (#"{"thresholds":[{"metric":"bytes","absolute":5,"action":"alert"}]}"#, "filewatch.thresholds[0].metric must be one of"),
        (#"{"thresholds":[{"metric":"deletes","action":"alert"}]}"#, "filewatch.thresholds[0] needs \"relative\""),
        (#"{"thresholds":[{"metric":"deletes","relative":1.1,"action":"alert"}]}"#, "filewatch.thresholds[0].relative must be from 1.5"),
        (#"{"thresholds":[{"metric":"deletes","absolute":5,"action":"quarantine"}]}"#, "filewatch.thresholds[0].action must be alert or block"),
        (#"{"thresholds":[{"id":"a","metric":"deletes","absolute":5,"action":"alert"},{"id":"a","metric":"renames","absolute":5,"action":"alert"}]}"#, "id \"a\" is used twice"),
        (#"{"block_scopes":["camera"]}"#, "filewatch.block_scopes: unknown scope \"camera\""),
        (#"{"removable_prefixes":["media"]}"#, "filewatch.removable_prefixes must be an array of absolute paths"),
        (#"{"warm_up":"1y"}"#, "filewatch.warm_up must be a duration"),
    ])
    func aBadSectionIsRefusedWithTheReason(text: String, expected: String) throws {
        let value = try JSONValueLiteral(text).value
        #expect(throws: FileWatchPolicyError.self) { try FileWatchPolicy(section: value) }
        do {
            _ = try FileWatchPolicy(section: value)
        } catch {
            #expect(error.message.hasPrefix(expected) || error.message.contains(expected), "\(error.message)")
        }
    }
}

/// A JSON literal for tests.
struct JSONValueLiteral: ExpressibleByStringLiteral {
    let value: JSONValue
    init(stringLiteral text: String) {
        value = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .null
    }
    init(_ text: String) throws {
        value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }
}
