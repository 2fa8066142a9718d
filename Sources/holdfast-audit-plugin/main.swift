// holdfast-audit-plugin: the auditd plugin (`/etc/audit/plugins.d/holdfast.conf`).
//
// auditd writes every record to this process's stdin; a plugin that stops reading blocks auditd's
// dispatcher and then the audited syscalls themselves. So this forwarder does as little as it can
// on that path: the main thread only reads stdin and queues whole lines in a bounded queue; a
// second thread hands them to holdfastd over a Unix socket. When the queue is full (holdfastd is
// down or slow), lines are dropped and counted, and the count reaches holdfastd as a
// `#holdfast-forwarder dropped …` line ahead of the next data — a drop is an event, never silence.
// See docs/audit-intake.md.

import Dispatch
import Foundation
import HoldfastCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var socket = "/run/holdfast/audit.sock"
    var queueBytes = 64 << 20
    /// How long the sender lets a small batch grow, and the reader lets the pipe fill, after a
    /// short read: auditd writes one record per write(2), and a wake-up per record is most of the
    /// cost at 1,000 events/s. The pipe holds 1 MiB, so auditd never waits on us in that time.
    static let batchMicroseconds: UInt32 = 20_000
    static let pipeBytes: Int32 = 1 << 20
}

func usage() -> Never {
    FileHandle.standardError.write(Data("""
        usage: holdfast-audit-plugin [--socket PATH] [--queue-size SIZE]
        auditd's plugin: reads audit records on stdin, hands them to holdfastd (default socket /run/holdfast/audit.sock).
        --queue-size  bytes held while holdfastd does not take them (default 64M); past it, lines are dropped and counted

        """.utf8))
    exit(2)
}

func parseOptions(_ arguments: [String]) -> Options {
    var options = Options()
    var index = 1
    while index < arguments.count {
        let argument = arguments[index]
        switch argument {
        case "--socket":
            guard index + 1 < arguments.count, arguments[index + 1].hasPrefix("/") else { usage() }
            options.socket = arguments[index + 1]
            index += 2
        case "--queue-size":
            guard index + 1 < arguments.count, let bytes = ByteSize.parse(arguments[index + 1]), bytes >= 1 << 16 else { usage() }
            options.queueBytes = bytes
            index += 2
        case "--help", "-h":
            usage()
        default:
            FileHandle.standardError.write(Data("holdfast-audit-plugin: unknown argument '\(argument)'\n".utf8))
            exit(2)
        }
    }
    return options
}

/// Whole lines waiting for holdfastd, bounded in bytes.
struct Queue {
    var blocks: [[UInt8]] = []
    var head = 0
    var bytes = 0
    /// Lines (records) read from stdin, and those dropped because the queue was full.
    var received: UInt64 = 0
    var dropped: UInt64 = 0
    var droppedBytes: UInt64 = 0
    /// Drops not yet reported to holdfastd.
    var unreportedDrops: UInt64 = 0
    var unreportedDroppedBytes: UInt64 = 0
    var endOfInput = false
}

let options = parseOptions(CommandLine.arguments)
signal(SIGPIPE, SIG_IGN)
// auditd sends SIGHUP when it reloads its configuration; there is nothing to reload here.
signal(SIGHUP, SIG_IGN)
// auditd stops its plugins with SIGTERM: taken by a thread of its own (below), so the queue is
// still handed over, and what is not becomes a reported drop. Blocked here, before any thread
// starts, so every thread inherits the mask.
var stopSignals = sigset_t()
sigemptyset(&stopSignals)
sigaddset(&stopSignals, SIGTERM)
sigaddset(&stopSignals, SIGINT)
pthread_sigmask(SIG_BLOCK, &stopSignals, nil)

let queue = Mutex(Queue())
let wake = DispatchSemaphore(value: 0)
let started = Date()

func log(_ message: String) {
    // stderr goes to auditd's log (syslog); keep it short and rare.
    FileHandle.standardError.write(Data("holdfast-audit-plugin: \(message)\n".utf8))
}

/// Where drops that could not be reported wait for the next plugin process (auditd restarts its
/// plugins; holdfastd hears of the loss from the next one).
let dropsFile = (options.socket.split(separator: "/").dropLast().joined(separator: "/")).isEmpty
    ? "/audit-plugin.drops" : "/" + options.socket.split(separator: "/").dropLast().joined(separator: "/") + "/audit-plugin.drops"

/// Stopping with lines holdfastd never took: they are drops, saved for the next process to report.
let finishing = Mutex(false)

func finishUnsent() -> Never {
    // The reader (after its grace period) and the sender (holdfastd unreachable) may both get here.
    if finishing.withLock({ done in defer { done = true }; return done }) {
        while true { pause() }
    }
    let (records, bytes) = queue.withLock { queue -> (UInt64, UInt64) in
        var lines: UInt64 = 0
        var bytes: UInt64 = 0
        for block in queue.blocks[queue.head...] {
            lines += block.withUnsafeBytes { newlines(in: $0) }
            bytes += UInt64(block.count)
        }
        return (queue.unreportedDrops + lines, queue.unreportedDroppedBytes + bytes)
    }
    if records > 0 {
        let previous = readDrops()
        let text = "records=\(previous.records &+ records) bytes=\(previous.bytes &+ bytes)\n"
        let descriptor = open(dropsFile, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        var saved = false
        if descriptor >= 0 {
            saved = text.withCString { write(descriptor, $0, strlen($0)) } == text.utf8.count
            close(descriptor)
        }
        log(saved
            ? "stopping with \(records) records holdfastd did not take; saved in \(dropsFile) for the next plugin process to report"
            : "stopping with \(records) records holdfastd did not take; they could not be saved in \(dropsFile) (\(String(cString: strerror(errno)))): this loss shows only as audit serial gaps")
    }
    exit(0)
}

/// Drops a previous plugin process saved (and removes the file).
func readDrops() -> (records: UInt64, bytes: UInt64) {
    guard let text = try? String(contentsOfFile: dropsFile, encoding: .utf8) else { return (0, 0) }
    unlink(dropsFile)
    var values: [String: UInt64] = [:]
    for pair in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
        let parts = pair.split(separator: "=")
        if parts.count == 2, let value = UInt64(parts[1]) { values[String(parts[0])] = value }
    }
    return (values["records"] ?? 0, values["bytes"] ?? 0)
}

/// The sender: connects (and reconnects) to holdfastd and writes what is queued, in order.
func sender() {
    var descriptor: Int32 = -1
    var lastStats = Date(timeIntervalSince1970: 0)
    var failingSince: Date?
    /// Sends, or on failure closes the connection so the loop reconnects.
    func deliver(_ bytes: [UInt8]) -> Bool {
        if send(descriptor, bytes) { return true }
        close(descriptor)
        descriptor = -1
        return false
    }
    while true {
        if descriptor < 0 {
            descriptor = connect(to: options.socket)
            if descriptor < 0 {
                if failingSince == nil {
                    failingSince = Date()
                    log("cannot reach holdfastd at \(options.socket); queueing up to \(options.queueBytes) bytes")
                }
                if queue.withLock({ $0.endOfInput }) { finishUnsent() }
                _ = wake.wait(timeout: .now() + .milliseconds(500))
                continue
            }
            if failingSince != nil { log("connected to holdfastd") }
            failingSince = nil
            let hello = "#holdfast-forwarder hello pid=\(getpid()) version=\(HoldfastVersion.current) started=\(Int64(started.timeIntervalSince1970))\n"
            guard deliver(Array(hello.utf8)) else { continue }
        }
        // The next thing to send: a drop report first, then the oldest block.
        let (report, reported, block, stats, finished) = queue.withLock { queue -> ([UInt8]?, (records: UInt64, bytes: UInt64), [UInt8]?, [UInt8]?, Bool) in
            var report: [UInt8]?
            let reported = (records: queue.unreportedDrops, bytes: queue.unreportedDroppedBytes)
            if queue.unreportedDrops > 0 {
                report = Array("#holdfast-forwarder dropped records=\(queue.unreportedDrops) bytes=\(queue.unreportedDroppedBytes) total_dropped=\(queue.dropped) total_received=\(queue.received)\n".utf8)
            }
            var stats: [UInt8]?
            if Date().timeIntervalSince(lastStats) >= 5 {
                stats = Array("#holdfast-forwarder stats received=\(queue.received) dropped=\(queue.dropped) queued_bytes=\(queue.bytes)\n".utf8)
            }
            // Everything queued, up to 1 MiB, in one send: one wake-up per batch, not per record.
            var batch: [UInt8] = []
            var index = queue.head
            if index + 1 == queue.blocks.count {
                batch = queue.blocks[index]
            } else {
                while index < queue.blocks.count, batch.count < 1 << 20 {
                    batch.append(contentsOf: queue.blocks[index])
                    index += 1
                }
            }
            let block: [UInt8]? = batch.isEmpty ? nil : batch
            return (report, reported, block, stats, queue.endOfInput && block == nil && queue.unreportedDrops == 0)
        }
        if let report {
            guard deliver(report) else { continue }
            queue.withLock { queue in
                // Only what was reported is cleared; drops meanwhile stay for the next report.
                queue.unreportedDrops -= reported.records
                queue.unreportedDroppedBytes -= reported.bytes
            }
        }
        if let stats {
            guard deliver(stats) else { continue }
            lastStats = Date()
        }
        if let block {
            guard deliver(block) else { continue }
            queue.withLock { queue in
                var sent = 0
                while sent < block.count, queue.head < queue.blocks.count {
                    sent += queue.blocks[queue.head].count
                    queue.blocks[queue.head] = []
                    queue.head += 1
                }
                queue.bytes -= sent
                if queue.head > 1_024, queue.head * 2 > queue.blocks.count {
                    queue.blocks.removeFirst(queue.head)
                    queue.head = 0
                }
            }
            // A small batch: let the next few milliseconds of records join the next one.
            if block.count < 1 << 16 { usleep(Options.batchMicroseconds) }
            continue
        }
        if finished {
            let bye = queue.withLock { "#holdfast-forwarder bye received=\($0.received) dropped=\($0.dropped)\n" }
            _ = send(descriptor, Array(bye.utf8))
            close(descriptor)
            exit(0)
        }
        _ = wake.wait(timeout: .now() + .seconds(1))
    }
}

func connect(to path: String) -> Int32 {
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard descriptor >= 0 else { return -1 }
    let result = UnixAddress.withAddress(path) { address, length in Glibc.connect(descriptor, address, length) == 0 ? 0 : errno }
    guard result == 0 else {
        close(descriptor)
        return -1
    }
    return descriptor
}

func send(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { buffer in
            Glibc.send(descriptor, buffer.baseAddress.map { $0 + offset }, buffer.count - offset, Int32(MSG_NOSIGNAL))
        }
        if written < 0, errno == EINTR { continue }
        guard written > 0 else { return false }
        offset += written
    }
    return true
}

/// Lines in a buffer, counted with memchr (a byte-at-a-time Swift loop costs more than the rest
/// of the plugin together).
func newlines(in buffer: UnsafeRawBufferPointer) -> UInt64 {
    guard var cursor = buffer.baseAddress else { return 0 }
    let end = cursor + buffer.count
    var count: UInt64 = 0
    while cursor < end, let found = memchr(cursor, 0x0A, end - cursor) {
        count += 1
        cursor = UnsafeRawPointer(found) + 1
    }
    return count
}

let saved = readDrops()
if saved.records > 0 {
    queue.withLock { queue in
        queue.dropped += saved.records
        queue.unreportedDrops += saved.records
        queue.unreportedDroppedBytes += saved.bytes
    }
}

Thread.detachNewThread { sender() }

// SIGTERM or SIGINT: as if auditd had closed stdin.
Thread.detachNewThread {
    var waitFor = sigset_t()
    sigemptyset(&waitFor)
    sigaddset(&waitFor, SIGTERM)
    sigaddset(&waitFor, SIGINT)
    var received: Int32 = 0
    sigwait(&waitFor, &received)
    queue.withLock { $0.endOfInput = true }
    wake.signal()
    Thread.sleep(forTimeInterval: 2)
    finishUnsent()
}

// The reader: stdin into the queue, whole lines only, never waiting on holdfastd. A bigger pipe
// (root may exceed pipe-max-size) gives auditd room while the reader batches.
_ = fcntl(0, 1031 /* F_SETPIPE_SZ */, Options.pipeBytes)
var carry: [UInt8] = []
var chunk = [UInt8](repeating: 0, count: 1 << 16)
while true {
    let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
    if count < 0, errno == EINTR { continue }
    if count <= 0 { break }
    defer { if count < 1 << 14 { usleep(Options.batchMicroseconds) } }
    guard let lastNewline = chunk[0..<count].lastIndex(of: UInt8(ascii: "\n")) else {
        carry += chunk[0..<count]
        // A line longer than any audit record (the kernel's limit is 8,970 bytes): drop it.
        if carry.count > 1 << 20 {
            queue.withLock { queue in
                queue.received += 1
                queue.dropped += 1
                queue.droppedBytes += UInt64(carry.count)
                queue.unreportedDrops += 1
                queue.unreportedDroppedBytes += UInt64(carry.count)
            }
            carry = []
        }
        continue
    }
    var block = carry
    block.append(contentsOf: chunk[0...lastNewline])
    carry = Array(chunk[(lastNewline + 1)..<count])
    let lines = block.withUnsafeBytes { newlines(in: $0) }
    queue.withLock { queue in
        queue.received += lines
        if queue.bytes + block.count > options.queueBytes {
            queue.dropped += lines
            queue.droppedBytes += UInt64(block.count)
            queue.unreportedDrops += lines
            queue.unreportedDroppedBytes += UInt64(block.count)
        } else {
            queue.blocks.append(block)
            queue.bytes += block.count
        }
    }
    wake.signal()
}
// auditd closed our stdin (it is stopping or reconfiguring): send what is queued, for up to 2 s.
if !carry.isEmpty {
    carry.append(UInt8(ascii: "\n"))
    queue.withLock { queue in
        queue.received += 1
        queue.blocks.append(carry)
        queue.bytes += carry.count
    }
}
queue.withLock { $0.endOfInput = true }
wake.signal()
Thread.sleep(forTimeInterval: 2)
finishUnsent()
