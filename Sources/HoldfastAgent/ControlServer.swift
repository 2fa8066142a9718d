import Dispatch
import FoundationEssentials
public import HoldfastCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What answers control requests. The server authenticates the caller (`SO_PEERCRED`) and checks
/// the verb's class before `handle` is called; refusals go to `denied`.
public protocol ControlHandler: Sendable {
    /// The class of a verb, or nil when the verb does not exist.
    func verbClass(_ verb: String) async -> VerbClass?
    /// Answers an authorized request.
    func handle(_ request: ControlRequest, from peer: PeerCredentials) async -> ControlResponse
    /// Records a refused request (it is journaled).
    func denied(_ request: ControlRequest, from peer: PeerCredentials, reason: String) async
}

/// Why the control socket could not be set up.
public struct ControlServerError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The listening control socket: bound at construction (before the daemon says READY), mode 0666
/// so any local user can connect — authorization is per verb, from the kernel's peer credentials.
public final class ControlListener: Sendable {
    public let path: String
    let descriptor: Int32
    /// Held while listening: a second daemon cannot take the path over, not even from a wedged one.
    private let lock: ProcessLock

    public init(path: String) throws(ControlServerError) {
        self.path = path
        try Self.prepareDirectory(of: path)
        do {
            lock = try ProcessLock(path: path + ".lock")
        } catch {
            throw ControlServerError(message: "another holdfastd is already listening on \(path) (\(error.message))")
        }
        // With the lock held, a socket file at the path is a leftover of a dead daemon.
        try Self.removeStaleSocket(at: path)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw ControlServerError(message: "socket: \(String(cString: strerror(errno)))") }
        let bound = UnixAddress.withAddress(path) { address, length in bind(descriptor, address, length) == 0 ? 0 : errno }
        guard bound == 0 else {
            close(descriptor)
            let reason = bound.map { String(cString: strerror($0)) } ?? "path too long for a Unix socket"
            throw ControlServerError(message: "cannot bind \(path): \(reason)")
        }
        // bind(2) applies the umask; set the mode the protocol needs explicitly.
        chmod(path, 0o666)
        guard listen(descriptor, 128) == 0 else {
            close(descriptor)
            unlink(path)
            throw ControlServerError(message: "listen \(path): \(String(cString: strerror(errno)))")
        }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }

    /// Removes the socket file (at shutdown).
    public func removeSocketFile() {
        var info = stat()
        if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
    }

    private static func prepareDirectory(of path: String) throws(ControlServerError) {
        guard let slash = path.lastIndex(of: "/") else { return }
        let directory = slash == path.startIndex ? "/" : String(path[..<slash])
        var info = stat()
        if lstat(directory, &info) != 0 {
            guard mkdir(directory, 0o755) == 0 || errno == EEXIST else {
                throw ControlServerError(message: "cannot create \(directory): \(String(cString: strerror(errno)))")
            }
            chmod(directory, 0o755)
            return
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw ControlServerError(message: "\(directory) is not a directory") }
        // Whoever can write the directory can swap the socket for their own and answer root's CLI.
        guard info.st_uid == geteuid() else {
            throw ControlServerError(message: "\(directory) is owned by uid \(info.st_uid); the control socket's directory must be root's")
        }
        if info.st_mode & 0o022 != 0 {
            throw ControlServerError(message: "\(directory) is writable by group or others; refusing to put the control socket there")
        }
    }

    private static func removeStaleSocket(at path: String) throws(ControlServerError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ControlServerError(message: "\(path) exists and is not a socket; refusing to replace it")
        }
        unlink(path)
    }
}

/// The control socket as a supervised service: accepts connections and answers one request each.
public struct ControlService: Service {
    public let name = "control"
    let listener: ControlListener
    let handler: any ControlHandler
    let logger: Logger
    /// Connections answered at once; more get `busy`.
    let maximumConnections: Int
    /// How long a client may take to send its request.
    let requestTimeout: Duration
    /// Log lines about refusals, per caller uid (the journal has its own limit in the handler).
    let logLimiter = RateLimiter(burst: 20, perSecond: 0.1)

    public init(
        listener: ControlListener, handler: any ControlHandler, logger: Logger,
        maximumConnections: Int = 64, requestTimeout: Duration = .seconds(5)
    ) {
        self.listener = listener
        self.handler = handler
        self.logger = logger.with("service", "control")
        self.maximumConnections = maximumConnections
        self.requestTimeout = requestTimeout
    }

    public func run() async throws {
        let slots = ConnectionSlots(limit: maximumConnections)
        // A discarding group frees each connection's task as soon as it ends, so the accept loop
        // never waits on a client.
        try await withThrowingDiscardingTaskGroup { group in
            defer { group.cancelAll() }
            while !Task.isCancelled {
                _ = await Readiness.wait(listener.descriptor, for: .read, timeout: .seconds(1))
                while true {
                    // accept4(2) is hidden behind _GNU_SOURCE in Swift's Glibc: accept, then set the flags.
                    let client = accept(listener.descriptor, nil, nil)
                    if client >= 0 {
                        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                        _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                    }
                    if client < 0 {
                        if errno == EINTR || errno == ECONNABORTED { continue }
                        if errno == EAGAIN || errno == EWOULDBLOCK { break }
                        if errno == EMFILE || errno == ENFILE {
                            logger.error("out of file descriptors; not accepting for a moment")
                            try await Task.sleep(for: .milliseconds(100))
                            break
                        }
                        throw ControlServerError(message: "accept: \(String(cString: strerror(errno)))")
                    }
                    // Who it is decides whether it is admitted: no identity, no answer.
                    guard let peer = try? PeerCredentials.of(client) else {
                        logger.error("cannot read peer credentials; closing")
                        close(client)
                        continue
                    }
                    guard slots.take(uid: peer.uid) else {
                        // Answer without waiting; the client may not have sent yet. Clients read
                        // the answer even when their send fails (ControlClient does).
                        let connection = Connection(descriptor: client)
                        connection.respond(.failure(.busy, "holdfastd is busy (too many connections from uid \(peer.uid) or in all); try again"))
                        connection.drainWithoutWaiting()
                        close(client)
                        busyLog(peer)
                        continue
                    }
                    group.addTask { [self] in
                        await serve(client, peer: peer)
                        await Connection(descriptor: client).finish()
                        close(client)
                        slots.release(uid: peer.uid)
                    }
                }
            }
        }
    }

    private func busyLog(_ peer: PeerCredentials) {
        let (log, suppressed) = logLimiter.admit("busy:\(peer.uid)")
        if log {
            logger.warning("control connection refused: busy", ("peer.uid", "\(peer.uid)"), ("peer.pid", "\(peer.pid)"), ("suppressed", "\(suppressed)"))
        }
    }

    private func serve(_ client: Int32, peer: PeerCredentials) async {
        let connection = Connection(descriptor: client)
        guard let line = await connection.readLine(limit: ControlProtocol.maximumRequestBytes, timeout: requestTimeout) else {
            await connection.send(.failure(.badRequest, "no complete request line within \(requestTimeout) or over \(ControlProtocol.maximumRequestBytes) bytes"))
            return
        }
        let request: ControlRequest
        do {
            guard JSONDuplicateKeys.first(in: line) == nil else { throw ControlServerError(message: "duplicate member") }
            request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
        } catch {
            await connection.send(.failure(.badRequest, "the request is not a protocol message"))
            return
        }
        guard request.version == ControlProtocol.version else {
            await connection.send(.failure(.unsupportedVersion, "protocol version \(request.version) is not supported; this holdfastd speaks \(ControlProtocol.version)"))
            return
        }
        guard let verbClass = await handler.verbClass(request.verb) else {
            await connection.send(.failure(.unknownVerb, "unknown verb '\(request.verb)'"))
            return
        }
        guard verbClass.permits(uid: peer.uid) else {
            let reason = "'\(request.verb)' is an admin verb; uid \(peer.uid) is not root"
            await handler.denied(request, from: peer, reason: reason)
            let (log, suppressed) = logLimiter.admit(String(peer.uid))
            if log {
                logger.warning(
                    "control request refused", ("verb", request.verb), ("peer.uid", "\(peer.uid)"), ("peer.pid", "\(peer.pid)"),
                    ("suppressed", "\(suppressed)")
                )
            }
            await connection.send(.failure(.permissionDenied, "permission denied: \(reason)"))
            return
        }
        await connection.send(await handler.handle(request, from: peer))
    }
}

/// Counts connections being answered, so a flood gets `busy` instead of exhausting descriptors.
/// One local user cannot take every slot: each uid but root has its own cap, and a few slots
/// are kept for root (the daemon's own tools and the login check must always get through).
final class ConnectionSlots: Sendable {
    private struct Counts {
        var total = 0
        var perUID: [UInt32: Int] = [:]
    }

    private let counts = Mutex(Counts())
    let limit: Int
    let perUserLimit: Int
    let reservedForRoot: Int

    init(limit: Int, perUserLimit: Int = 16, reservedForRoot: Int = 8) {
        self.limit = limit
        self.perUserLimit = min(perUserLimit, limit)
        self.reservedForRoot = min(reservedForRoot, limit - 1)
    }

    func take(uid: UInt32) -> Bool {
        counts.withLock { counts in
            let mine = counts.perUID[uid, default: 0]
            if uid == 0 {
                guard counts.total < limit else { return false }
            } else {
                guard counts.total < limit - reservedForRoot, mine < perUserLimit else { return false }
            }
            counts.total += 1
            counts.perUID[uid] = mine + 1
            return true
        }
    }

    func release(uid: UInt32) {
        counts.withLock { counts in
            counts.total -= 1
            let mine = counts.perUID[uid, default: 1] - 1
            counts.perUID[uid] = mine > 0 ? mine : nil
        }
    }
}

/// One accepted, non-blocking client socket.
struct Connection {
    let descriptor: Int32

    /// Reads up to the first newline; nil on timeout, EOF first, or more than `limit` bytes.
    func readLine(limit: Int, timeout: Duration) async -> [UInt8]? {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        let deadline = ContinuousClock.now + timeout
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                buffer += chunk[0..<count]
                if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) { return Array(buffer[..<newline]) }
                if buffer.count > limit { return nil }
                continue
            }
            if count == 0 { return nil }
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { return nil }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero, await Readiness.wait(descriptor, for: .read, timeout: remaining) else { return nil }
        }
    }

    /// Writes one response line, waiting (bounded) while the client's buffer is full.
    func send(_ response: ControlResponse) async {
        let line = Self.encode(response)
        var offset = 0
        let deadline = ContinuousClock.now + .seconds(5)
        while offset < line.count {
            let start = offset
            let written = line.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress.map { $0 + start }, $0.count - start, Int32(MSG_NOSIGNAL)) }
            if written > 0 {
                offset += written
                continue
            }
            if written < 0, errno == EINTR { continue }
            guard written < 0, errno == EAGAIN || errno == EWOULDBLOCK else { return }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero, await Readiness.wait(descriptor, for: .write, timeout: remaining) else { return }
        }
    }

    /// Ends the exchange so the client reads the whole answer: half-close, then read and discard
    /// what the client still sends (closing with unread data would reset the connection and the
    /// answer with it) until it closes, 16 MiB, or one second.
    func finish() async {
        shutdown(descriptor, Int32(SHUT_WR))
        var discarded = 0
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let deadline = ContinuousClock.now + .seconds(1)
        while discarded < 16 << 20 {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                discarded += count
                continue
            }
            if count == 0 { return }
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { return }
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero, await Readiness.wait(descriptor, for: .read, timeout: remaining) else { return }
        }
    }

    /// Discards what is already buffered, without waiting.
    func drainWithoutWaiting() {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while chunk.withUnsafeMutableBytes({ recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
    }

    /// A best-effort immediate answer (used for `busy`), never waiting.
    func respond(_ response: ControlResponse) {
        let line = Self.encode(response)
        _ = line.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    static func encode(_ response: ControlResponse) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var line = (try? encoder.encode(response)).map(Array.init)
            ?? Array(#"{"error":{"code":"failed","message":"response could not be encoded"},"ok":false,"version":1}"#.utf8)
        line.append(UInt8(ascii: "\n"))
        return line
    }
}
