import CMicroHTTPD
import Dispatch
import FoundationEssentials
public import HoldfastCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP request as the broker's routes see it: the body read in full (bounded), header names
/// lower-cased, query arguments decoded by libmicrohttpd.
public struct HTTPRequest: Sendable {
    public var method: String
    public var path: String
    public var headers: [String: String]
    public var query: [String: String]
    public var body: [UInt8]
    /// The peer's address, for logs.
    public var peer: String
    /// What the early check learned from these headers (the broker: the verified device
    /// signature), so the handler need not learn it again.
    public var screened: (any Sendable)?

    public init(method: String, path: String, headers: [String: String] = [:], query: [String: String] = [:], body: [UInt8] = [], peer: String = "", screened: (any Sendable)? = nil) {
        self.method = method
        self.path = path
        self.headers = headers
        self.query = query
        self.body = body
        self.peer = peer
        self.screened = screened
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// A response: status, headers, body.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON body (sorted keys, so answers are byte-stable).
    public static func json(_ status: Int, _ value: JSONValue, headers: [String: String] = [:]) -> HTTPResponse {
        var all = headers
        all["Content-Type"] = "application/json"
        all["Cache-Control"] = "no-store"
        return HTTPResponse(status: status, headers: all, body: Array(value.compactText.utf8) + [0x0A])
    }

    /// An error body: `{"error": code, "message": text}`.
    public static func error(_ status: Int, _ code: String, _ message: String, headers: [String: String] = [:]) -> HTTPResponse {
        json(status, .object(["error": .string(code), "message": .string(message)]), headers: headers)
    }
}

/// The early check's decision, once the headers are in: refuse now (no body is read), or go on,
/// carrying what the check learned to the handler.
public enum EarlyDecision: Sendable {
    case refuse(HTTPResponse)
    case proceed((any Sendable)?)

    /// The refusal, when this is one.
    public var refusal: HTTPResponse? {
        if case .refuse(let response) = self { return response }
        return nil
    }
}

/// What a route does with a request: answer now, or hold the connection (a long poll) until
/// `ready` has an answer or the deadline passes.
public enum HTTPHandling: Sendable {
    case respond(HTTPResponse)
    /// `ready` is asked about every `HTTPServer.pollInterval` from the server's timer thread;
    /// `timeout` is sent when the deadline passes first.
    case wait(until: ContinuousClock.Instant, ready: @Sendable () -> HTTPResponse?, timeout: HTTPResponse)
}

/// Why the server could not start.
public struct HTTPServerError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// libmicrohttpd with its epoll loop, HTTPS by default (GnuTLS, TLS 1.2 and later).
///
/// Threads: MHD calls the handler from its own threads (a pool when `threads` > 1), so the
/// handler must be thread-safe; long polls are suspended connections (MHD_suspend_connection),
/// woken from one timer thread. Every held connection is resumed before the daemon stops, as
/// MHD requires.
public final class HTTPServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// `ADDRESS:PORT` (`[::1]:8443` for IPv6); port 0 picks a free one (see `port`).
        public var listen: String
        /// PEM certificate chain and key; nil for plain HTTP.
        public var certificatePEM: String?
        public var keyPEM: String?
        public var threads: Int
        public var connectionLimit: Int
        public var perPeerLimit: Int
        /// Idle connections are closed after this many seconds (MHD_OPTION_CONNECTION_TIMEOUT).
        public var idleTimeout: Int
        /// Larger bodies get 413 (before they are read, when Content-Length says so).
        public var maximumBody: Int
        /// Per path, a smaller limit (bodies are buffered in memory: most routes need a few KiB).
        public var bodyLimits: [String: Int]

        public init(listen: String, certificatePEM: String? = nil, keyPEM: String? = nil, threads: Int = 2, connectionLimit: Int = 10_000,
                    perPeerLimit: Int = 0, idleTimeout: Int = 30, maximumBody: Int = 1 << 20, bodyLimits: [String: Int] = [:]) {
            self.bodyLimits = bodyLimits
            self.listen = listen
            self.certificatePEM = certificatePEM
            self.keyPEM = keyPEM
            self.threads = threads
            self.connectionLimit = connectionLimit
            self.perPeerLimit = perPeerLimit
            self.idleTimeout = idleTimeout
            self.maximumBody = maximumBody
        }
    }

    public static let pollInterval: Duration = .milliseconds(100)

    let configuration: Configuration
    let handler: @Sendable (HTTPRequest) -> HTTPHandling
    /// Asked once the headers are in, before any body is read: an answer here ends the request
    /// (e.g. 401 for a device route without a device signature), so unauthenticated peers
    /// cannot make the server buffer bodies.
    let early: @Sendable (_ method: String, _ path: String, _ headers: [String: String]) -> EarlyDecision
    private var daemon: OpaquePointer?
    private let waiters = Mutex<[ObjectIdentifier: Waiter]>([:])
    private let stopping = Atomic<Bool>(false)
    private let timer = DispatchQueue(label: "holdfast.http.long-poll")
    private let timerDone = DispatchSemaphore(value: 0)
    /// The port bound (useful when asked for port 0).
    public private(set) var port: UInt16 = 0

    public init(
        _ configuration: Configuration, early: @escaping @Sendable (String, String, [String: String]) -> EarlyDecision = { _, _, _ in .proceed(nil) },
        handler: @escaping @Sendable (HTTPRequest) -> HTTPHandling
    ) {
        self.configuration = configuration
        self.early = early
        self.handler = handler
    }

    deinit { stop() }

    /// Binds and starts serving.
    public func start() throws(HTTPServerError) {
        guard daemon == nil else { return }
        let address = try Self.socketAddress(configuration.listen)
        var flags = MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_EPOLL.rawValue | MHD_ALLOW_SUSPEND_RESUME.rawValue | MHD_USE_ERROR_LOG.rawValue
        if address.family == AF_INET6 { flags |= MHD_USE_IPv6.rawValue }
        let context = Unmanaged.passUnretained(self).toOpaque()
        // TLS 1.2 and 1.3 only, GnuTLS's secure defaults otherwise.
        let priorities = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
        let started: OpaquePointer? = address.storage.withUnsafeBytes { raw in
            let socketAddress = raw.baseAddress?.assumingMemoryBound(to: sockaddr.self)
            return Self.withOptionalCString(configuration.certificatePEM) { certificate in
                Self.withOptionalCString(configuration.keyPEM) { key in
                    holdfast_mhd_start(
                        flags, socketAddress, httpAccessHandler, context, httpCompletedHandler, context, certificate, key, priorities,
                        UInt32(clamping: configuration.connectionLimit), UInt32(clamping: configuration.perPeerLimit), UInt32(clamping: configuration.idleTimeout),
                        UInt32(clamping: max(1, configuration.threads)), 128 * 1024)
                }
            }
        }
        guard let started else {
            throw HTTPServerError("cannot listen on \(configuration.listen): libmicrohttpd refused to start (address in use, bad certificate or key, or no permission)")
        }
        daemon = started
        port = holdfast_mhd_bound_port(started)
        timer.async { [self] in
            runTimer()
            timerDone.signal()
        }
    }

    /// Answers every held connection with 503, then stops the daemon.
    public func stop() {
        guard let daemon, !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        timerDone.wait()
        // Under the lock `access` registers waiters with: none can be added after this.
        let held = waiters.withLock { all in
            defer { all.removeAll() }
            return Array(all.values)
        }
        for waiter in held {
            waiter.state.response = .error(503, "shutting-down", "the broker is stopping; retry")
            MHD_resume_connection(waiter.connection)
        }
        // Give MHD a moment to send the resumed answers before it closes the sockets.
        if !held.isEmpty { usleep(100_000) }
        MHD_stop_daemon(daemon)
        self.daemon = nil
    }

    /// How many long polls are being held.
    public var heldConnections: Int { waiters.withLock { $0.count } }

    // MARK: Plumbing

    /// Per-request state MHD carries in `con_cls` (retained until the completed callback).
    final class RequestState: @unchecked Sendable {
        var headers: [String: String] = [:]
        var limit = 0
        var early: HTTPResponse?
        var screened: (any Sendable)?
        var body: [UInt8] = []
        var tooLarge = false
        var response: HTTPResponse?
        var suspended = false
    }

    struct Waiter: @unchecked Sendable {
        let state: RequestState
        let connection: OpaquePointer
        let deadline: ContinuousClock.Instant
        let ready: @Sendable () -> HTTPResponse?
        let timeout: HTTPResponse
    }

    private func runTimer() {
        while !stopping.load(ordering: .acquiring) {
            usleep(useconds_t(Self.pollInterval.components.attoseconds / 1_000_000_000_000))
            let now = ContinuousClock.now
            let current = waiters.withLock { Array($0) }
            for (id, waiter) in current {
                let answer = waiter.ready() ?? (now >= waiter.deadline ? waiter.timeout : nil)
                guard let answer else { continue }
                let claimed = waiters.withLock { $0.removeValue(forKey: id) != nil }
                guard claimed else { continue }
                waiter.state.response = answer
                MHD_resume_connection(waiter.connection)
            }
        }
    }

    fileprivate func access(
        _ connection: OpaquePointer, url: String, method: String, upload: UnsafePointer<CChar>?, uploadSize: UnsafeMutablePointer<Int>,
        context: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    ) -> MHD_Result {
        guard let existing = context.pointee else {
            // First call: the headers are in, no body has been read.
            let state = RequestState()
            context.pointee = Unmanaged.passRetained(state).toOpaque()
            state.headers = Self.values(connection, .HEADER_KIND, lowercased: true)
            state.limit = method == "GET" || method == "HEAD" ? 0 : configuration.bodyLimits[url] ?? configuration.maximumBody
            if let problem = Self.framingProblem(state.headers, limit: state.limit) {
                state.early = problem
            } else {
                switch early(method, url, state.headers) {
                case .refuse(let response): state.early = response
                case .proceed(let screened): state.screened = screened
                }
            }
            // Refused before any body is read: MHD sends it and discards (or closes on) the rest.
            if let refused = state.early { return Self.queue(refused, on: connection) }
            return .YES
        }
        let state = Unmanaged<RequestState>.fromOpaque(existing).takeUnretainedValue()
        if uploadSize.pointee > 0 {
            if let upload, !state.tooLarge, state.early == nil {
                if state.body.count + uploadSize.pointee > state.limit {
                    state.tooLarge = true
                    state.body = []
                } else {
                    upload.withMemoryRebound(to: UInt8.self, capacity: uploadSize.pointee) { bytes in
                        state.body.append(contentsOf: UnsafeBufferPointer(start: bytes, count: uploadSize.pointee))
                    }
                }
            }
            uploadSize.pointee = 0
            return .YES
        }
        if let ready = state.response { return Self.queue(ready, on: connection) }
        if let refused = state.early { return Self.queue(refused, on: connection) }
        if state.tooLarge { return Self.queue(.error(413, "too-large", "the body is larger than \(state.limit) bytes", headers: ["Connection": "close"]), on: connection) }
        if state.suspended { return .YES }
        let request = HTTPRequest(
            method: method, path: url, headers: state.headers,
            query: Self.values(connection, .GET_ARGUMENT_KIND, lowercased: false), body: state.body, peer: Self.peer(connection), screened: state.screened)
        switch handler(request) {
        case .respond(let response):
            return Self.queue(response, on: connection)
        case .wait(let deadline, let ready, let timeout):
            if let now = ready() { return Self.queue(now, on: connection) }
            // Registered and suspended under the lock `stop` empties: a poll is either seen by
            // `stop` (and resumed with 503) or refused here.
            let registered = waiters.withLock { all -> Bool in
                guard !stopping.load(ordering: .acquiring) else { return false }
                state.suspended = true
                MHD_suspend_connection(connection)
                all[ObjectIdentifier(state)] = Waiter(state: state, connection: connection, deadline: deadline, ready: ready, timeout: timeout)
                return true
            }
            if !registered { return Self.queue(.error(503, "shutting-down", "the broker is stopping; retry"), on: connection) }
            return .YES
        }
    }

    /// Framing a proxy in front could read differently (RFC 9112 §6.3): both Content-Length and
    /// Transfer-Encoding, a list in Content-Length; and a declared body over the route's limit.
    static func framingProblem(_ headers: [String: String], limit: Int) -> HTTPResponse? {
        let close = ["Connection": "close"]
        if let length = headers["content-length"] {
            if headers["transfer-encoding"] != nil || length.contains(",") {
                return .error(400, "bad-framing", "Content-Length with Transfer-Encoding, or more than one Content-Length", headers: close)
            }
            guard let declared = Int(trimmed(length)), declared >= 0 else { return .error(400, "bad-framing", "Content-Length is not a number", headers: close) }
            if declared > limit { return .error(413, "too-large", "the body is larger than \(limit) bytes", headers: close) }
        }
        return nil
    }

    fileprivate func completed(_ context: UnsafeMutablePointer<UnsafeMutableRawPointer?>) {
        guard let existing = context.pointee else { return }
        let state = Unmanaged<RequestState>.fromOpaque(existing).takeRetainedValue()
        waiters.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(state)) }
        context.pointee = nil
    }

    private static func queue(_ response: HTTPResponse, on connection: OpaquePointer) -> MHD_Result {
        var body = response.body
        let created: OpaquePointer? = body.withUnsafeMutableBytes { raw in
            // MUST_COPY: MHD keeps its own copy; ours goes away with this frame.
            MHD_create_response_from_buffer(raw.count, raw.baseAddress, .RESPMEM_MUST_COPY)
        }
        guard let created else { return .NO }
        defer { MHD_destroy_response(created) }
        for (name, value) in response.headers.sorted(by: { $0.key < $1.key }) where Self.isHeaderSafe(name) && Self.isHeaderSafe(value) {
            _ = MHD_add_response_header(created, name, value)
        }
        _ = MHD_add_response_header(created, "X-Content-Type-Options", "nosniff")
        return MHD_queue_response(connection, UInt32(response.status), created)
    }

    /// No CR, LF or NUL in a header: a value from a request must never split the response.
    static func isHeaderSafe(_ text: String) -> Bool { !text.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 } }

    private final class Collected { var values: [String: String] = [:]; var lowercased = true }

    private static func values(_ connection: OpaquePointer, _ kind: MHD_ValueKind, lowercased: Bool) -> [String: String] {
        let collected = Collected()
        collected.lowercased = lowercased
        let context = Unmanaged.passUnretained(collected).toOpaque()
        _ = MHD_get_connection_values(connection, kind, { context, _, key, value in
            guard let context, let key else { return .YES }
            let collected = Unmanaged<Collected>.fromOpaque(context).takeUnretainedValue()
            let name = collected.lowercased ? String(cString: key).lowercased() : String(cString: key)
            let text = value.map { String(cString: $0) } ?? ""
            if let earlier = collected.values[name] {
                // Repeated headers fold (RFC 9110 §5.3); cookies with "; " (RFC 6265 §5.4).
                collected.values[name] = earlier + (name == "cookie" ? "; " : ", ") + text
            } else {
                collected.values[name] = text
            }
            return .YES
        }, context)
        return withExtendedLifetime(collected) { collected.values }
    }

    private static func peer(_ connection: OpaquePointer) -> String {
        guard let address = holdfast_mhd_client_address(connection) else { return "" }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let length = socklen_t(address.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        guard getnameinfo(address, length, &host, socklen_t(host.count), &service, socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV) == 0 else { return "" }
        return String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + ":" + String(decoding: service.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func withOptionalCString<T>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> T) -> T {
        guard let text else { return body(nil) }
        return text.withCString { body($0) }
    }

    struct SocketAddress {
        var storage: [UInt8]
        var family: Int32
    }

    /// `ADDRESS:PORT` or `[IPV6]:PORT` as a sockaddr. Numeric addresses only: a name would make
    /// "what does the broker listen on" depend on the resolver.
    static func socketAddress(_ text: String) throws(HTTPServerError) -> SocketAddress {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw HTTPServerError("listen address \(text): say [IPV6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw HTTPServerError("listen address \(text): say ADDRESS:PORT") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = UInt16(portText) else { throw HTTPServerError("listen address \(text): the port must be 0…65535") }
        var v4 = in_addr()
        if inet_pton(AF_INET, String(host), &v4) == 1 {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr = v4
            return SocketAddress(storage: withUnsafeBytes(of: &address) { Array($0) }, family: AF_INET)
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, String(host), &v6) == 1 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            address.sin6_addr = v6
            return SocketAddress(storage: withUnsafeBytes(of: &address) { Array($0) }, family: AF_INET6)
        }
        throw HTTPServerError("listen address \(text): \(host) is not a numeric IPv4 or IPv6 address")
    }

    /// Whether a listen address is loopback (127.0.0.0/8 or ::1): plain HTTP is allowed only there.
    public static func isLoopback(_ listen: String) -> Bool {
        guard let address = try? socketAddress(listen) else { return false }
        if address.family == AF_INET { return address.storage.count >= 8 && address.storage[4] == 127 }
        let bytes = address.storage.count >= 24 ? Array(address.storage[8..<24]) : []
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
    }
}

/// MHD's access handler: a C function, the server reached through its context pointer.
private let httpAccessHandler: MHD_AccessHandlerCallback = { context, connection, url, method, _, upload, uploadSize, requestContext in
    guard let context, let connection, let uploadSize, let requestContext else { return .NO }
    let server = Unmanaged<HTTPServer>.fromOpaque(context).takeUnretainedValue()
    return server.access(
        connection, url: url.map { String(cString: $0) } ?? "/", method: method.map { String(cString: $0) } ?? "GET", upload: upload, uploadSize: uploadSize,
        context: requestContext)
}

/// MHD's completion callback: releases the per-request state.
private let httpCompletedHandler: MHD_RequestCompletedCallback = { context, _, requestContext, _ in
    guard let context, let requestContext else { return }
    Unmanaged<HTTPServer>.fromOpaque(context).takeUnretainedValue().completed(requestContext)
}
