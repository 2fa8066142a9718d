// holdfast-cups-backend: the `holdfast:` CUPS backend (`docs/print-enforcement.md`).
//
// CUPS runs it for every job on an approved queue, whose device URI is `holdfast:` + the real one.
// It counts the document's pages, asks holdfastd for a verdict (`print.gate`), and then either
// replaces itself with the real backend (same arguments, the real URI) or cancels the job
// (CUPS_BACKEND_CANCEL) with the reason on an `ERROR:` line. holdfastd unreachable, a malformed
// URI, an unreadable document: the job is cancelled. Fail closed.
import HoldfastCore
import PrintGuard
#if canImport(Glibc)
import Glibc
#endif

/// CUPS backend exit codes (cups/backend.h).
enum BackendExit: Int32 {
    case ok = 0
    case failed = 1
    case cancel = 5
}

/// One line to cupsd on stderr (`ERROR:`, `INFO:`, `DEBUG:` set the job's and queue's messages).
func say(_ level: String, _ message: String) {
    let line = Array("\(level): Holdfast: \(message)\n".utf8)
    line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
}

func cancel(_ message: String) -> Never {
    say("ERROR", message)
    exit(BackendExit.cancel.rawValue)
}

func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

let arguments = CommandLine.arguments
if arguments.count == 1 {
    // Device discovery (lpinfo -v): offer the scheme, find no devices.
    let line = Array("network holdfast \"Unknown\" \"Holdfast print gate (holdfast:REAL-URI)\"\n".utf8)
    line.withUnsafeBytes { _ = write(1, $0.baseAddress, $0.count) }
    exit(BackendExit.ok.rawValue)
}
guard arguments.count == 6 || arguments.count == 7 else {
    say("ERROR", "usage: holdfast job-id user title copies options [file]")
    exit(BackendExit.failed.rawValue)
}

// The real device URI and the backend that prints to it.
let wrapped = environment("DEVICE_URI") ?? arguments[0]
guard wrapped.hasPrefix(DeviceURI.gatePrefix) else { cancel("device URI \(Printable.escape(wrapped)) does not start with holdfast:; job cancelled") }
let realURI = String(wrapped.dropFirst(DeviceURI.gatePrefix.count))
guard let scheme = DeviceURI.scheme(of: realURI), !DeviceURI.neverApproved.contains(scheme) else {
    cancel("the real device URI \(Printable.escape(realURI)) is not one Holdfast passes jobs to; job cancelled")
}
let serverBin = environment("CUPS_SERVERBIN") ?? "/usr/lib/cups"
let realBackend = serverBin + "/backend/" + scheme
guard access(realBackend, X_OK) == 0 else { cancel("no CUPS backend for \(scheme): at \(realBackend); job cancelled") }

guard let job = Int64(arguments[1]), let copies = Int64(arguments[4]), copies >= 1 else {
    cancel("malformed job id or copies (\(Printable.escape(arguments[1])), \(Printable.escape(arguments[4]))); job cancelled")
}
let user = arguments[2]
let title = arguments[3]

// The document: the file cupsd names, else stdin spooled into an unlinked private file (the real
// backend then reads it from stdin, as it would have).
let document: Int32
var spooled = false
if arguments.count == 7 {
    document = open(arguments[6], O_RDONLY | O_CLOEXEC)
    guard document >= 0 else { cancel("cannot open the document \(arguments[6]): \(String(cString: strerror(errno))); job cancelled") }
} else {
    var template = Array(((environment("TMPDIR") ?? "/tmp") + "/holdfast-job-XXXXXX").utf8CString)
    let descriptor = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.map { mkstemp($0) } ?? -1 }
    guard descriptor >= 0 else { cancel("cannot spool the document: \(String(cString: strerror(errno))); job cancelled") }
    _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    template.withUnsafeBufferPointer { buffer in if let path = buffer.baseAddress { _ = unlink(path) } }
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if count < 0, errno == EINTR { continue }
        guard count >= 0 else { cancel("cannot read the document: \(String(cString: strerror(errno))); job cancelled") }
        if count == 0 { break }
        var written = 0
        while written < count {
            let done = buffer[written..<count].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard done > 0 else { cancel("cannot spool the document: \(String(cString: strerror(errno))); job cancelled") }
            written += done
        }
    }
    document = descriptor
    spooled = true
}

// Count the pages over a read-only mapping of the whole document.
var info = stat()
guard fstat(document, &info) == 0 else { cancel("cannot stat the document; job cancelled") }
let size = Int(info.st_size)
let contentType = environment("CONTENT_TYPE") ?? ""
let counted: PageCounter.Count
if size == 0 {
    counted = PageCounter.count([], contentType: contentType)
} else {
    guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, document, 0), mapping != MAP_FAILED else {
        cancel("cannot map the document: \(String(cString: strerror(errno))); job cancelled")
    }
    counted = PageCounter.count(UnsafeRawBufferPointer(start: mapping, count: size), contentType: contentType)
    munmap(mapping, size)
}

// Ask holdfastd.
let request = GateRequest(
    // argv[4] always: behind a filter chain the stream may carry one copy and a NumCopies request
    // the printer honours, so the stream alone would undercount. (Where a filter already
    // replicated the pages, this overcounts; never the reverse.)
    job: job, user: user, title: title, copies: copies, queue: environment("PRINTER") ?? "",
    deviceURI: realURI, contentType: contentType, pages: counted.pages, format: counted.format, pageNote: counted.note,
    pagesDeclared: counted.declared, bytes: Int64(size)
)
// cupsd passes backends a fixed environment (its SetEnv does not reach them), so the socket comes
// from agent.conf like holdfastd's own; HOLDFAST_CONTROL_SOCKET (a wrapper's) overrides it.
let socketPath = environment("HOLDFAST_CONTROL_SOCKET")
    ?? (try? AgentConfigurationParser.load(AgentConfiguration.defaultPath, requireRootOwned: true))?.controlSocket
    ?? AgentConfiguration().controlSocket
var started = timespec()
clock_gettime(CLOCK_MONOTONIC, &started)
let response: ControlResponse
do {
    response = try ControlClient(socketPath: socketPath, timeout: 10).call("print.gate", request.arguments)
} catch {
    cancel("\(error.message); job cancelled (fail closed)")
}
var finished = timespec()
clock_gettime(CLOCK_MONOTONIC, &finished)
let micros = (Int64(finished.tv_sec) - Int64(started.tv_sec)) * 1_000_000 + (Int64(finished.tv_nsec) - Int64(started.tv_nsec)) / 1_000
say("DEBUG", "verdict in \(micros) us")
guard response.ok, let verdict = response.result?["verdict"]?.stringValue else {
    cancel("holdfastd refused the question (\(response.error?.message ?? "no verdict")); job cancelled")
}
let reason = response.result?["reason"]?.stringValue ?? ""
guard verdict == "allow" else { cancel("job cancelled: \(reason)") }
say("INFO", "allowed (\(counted.pages.map { "\($0) page(s)" } ?? "pages not counted")): \(reason)")

// Become the real backend.
if spooled {
    lseek(document, 0, SEEK_SET)
    guard dup2(document, 0) == 0 else { cancel("cannot hand the document to the \(scheme) backend; job cancelled") }
}
setenv("DEVICE_URI", realURI, 1)
var execArguments = [realURI] + arguments[1...]
let pointers = execArguments.map { strdup($0) } + [nil]
execv(realBackend, pointers)
execArguments.removeAll()
cancel("cannot run the \(scheme) backend at \(realBackend): \(String(cString: strerror(errno))); job cancelled")
