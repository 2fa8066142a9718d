import Foundation
import Glibc
import HoldfastCore
import HoldfastStore
import HoldfastTestSupport
import Testing

/// A child appends in a loop and is killed with SIGKILL mid-write; every event it saw committed
/// must be there afterwards, in order, and the database must pass `PRAGMA integrity_check`.
@Suite(.serialized) struct CrashTests {
    @Test(arguments: [1, 16])
    func everyCommittedEventSurvivesSIGKILL(batch: Int) throws {
        let directory = TemporaryDirectory()
        let stateDirectory = directory.file("state")
        var committed: [Int64] = []
        for round in 0..<3 {
            let seen = try appendUntilKilled(stateDirectory: stateDirectory, batch: batch, atLeast: 200)
            #expect(seen.count >= 200, "round \(round)")
            committed += seen
            let journal = try Journal(configuration: JournalConfiguration(directory: stateDirectory))
            #expect(try journal.integrityCheck() == ["ok"])
            let stored = try journal.entries(limit: 1_000_000).map(\.id)
            // Everything the child saw committed is stored…
            #expect(Set(committed).isSubset(of: Set(stored)))
            // …ids rise strictly, and nothing in between went missing.
            #expect(stored == stored.sorted())
            #expect(stored.first == 1)
            #expect(stored.last.map { Int($0) } == stored.count)
            for entry in try journal.entries(limit: 1_000_000) {
                #expect(try entry.event().kind == "test.crash")
            }
        }
    }

    /// Starts the child, reads committed ids from its stdout until `atLeast`, then SIGKILLs it.
    func appendUntilKilled(stateDirectory: String, batch: Int, atLeast: Int) throws -> [Int64] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Products.path("holdfast-testkit"))
        process.arguments = ["journal-append-loop", stateDirectory, String(batch)]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        var buffer = Data()
        var ids: [Int64] = []
        let deadline = Date().addingTimeInterval(30)
        let reader = output.fileHandleForReading
        while ids.count < atLeast, Date() < deadline {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                if let id = Int64(line) { ids.append(id) }
            }
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        // Ids already in the pipe were committed too; take them.
        buffer.append(reader.readDataToEndOfFile())
        for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") {
            if let id = Int64(line) { ids.append(id) }
        }
        return ids
    }
}
