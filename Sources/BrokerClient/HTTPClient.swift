import CCurl
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why a call to the broker failed.
public struct BrokerClientError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable {
        /// No answer: connection refused, timeout, TLS failure.
        case transport
        /// The broker answered with an error status.
        case status
        /// The answer did not make sense (not JSON, bad signature, wrong device…).
        case invalid
        /// The token or the local state is unusable.
        case setup
    }

    public let code: Code
    public let message: String
    /// The HTTP status when the broker answered.
    public let status: Int?

    public init(_ code: Code, _ message: String, status: Int? = nil) {
        self.code = code
        self.message = message
        self.status = status
    }

    public var description: String { message }
}

/// One HTTP answer.
public struct HTTPAnswer: Sendable {
    public let status: Int
    public let body: [UInt8]
    /// The address the answer came from (CURLINFO_PRIMARY_IP).
    public var peerAddress: String? = nil
}

/// The broker's addresses as the agent has met them: peers that completed a TLS handshake chaining
/// to the pinned CA and answered. The network lockdown allows these, not whatever a resolver
/// (the local network's) says the broker's name is now.
public final class BrokerAddresses: Sendable {
    private let seen = Mutex<[String]>([])
    static let kept = 8

    public init() {}

    /// Notes an address (the newest first; at most `kept`).
    public func note(_ address: String) {
        seen.withLock { list in
            guard list.first != address else { return }
            list.removeAll { $0 == address }
            list.insert(address, at: 0)
            if list.count > Self.kept { list.removeLast(list.count - Self.kept) }
        }
    }

    public var addresses: [String] { seen.withLock { $0 } }
}

/// Who the client trusts for TLS.
public enum TLSTrust: Sendable {
    /// Only certificates chaining to this CA (PEM) — the pinned broker CA.
    case pinned(String)
    /// No verification: used once, to fetch the CA whose SHA-256 the enrollment token pins;
    /// the bytes are trusted only after that fingerprint matches.
    case unverifiedForPinning
}

/// libcurl's easy interface, one call at a time on its own serial queue: curl handles are
/// thread-affine, and a long poll must never occupy a Swift concurrency thread.
public final class HTTPClient: Sendable {
    private let queue: DispatchQueue
    /// One easy handle, used only on `queue`: libcurl keeps its connections (and TLS sessions)
    /// across `curl_easy_reset`, so consecutive calls to the broker reuse one connection.
    private let handleBox = HandleBox()
    public let trust: TLSTrust
    /// Larger answers are refused.
    public let maximumBody: Int
    /// Where a pinned peer's address is noted.
    let peers: BrokerAddresses?

    public init(trust: TLSTrust, label: String = "holdfast.broker-client", maximumBody: Int = 4 << 20, peers: BrokerAddresses? = nil) {
        self.trust = trust
        self.maximumBody = maximumBody
        self.peers = peers
        queue = DispatchQueue(label: label)
        _ = CurlLibrary.version
    }

    /// Sends a request; `timeout` bounds the whole call (connect, TLS, answer). Cancelling the
    /// calling task aborts the transfer within about a second (a held long poll must not keep
    /// holdfastd from stopping).
    public func send(_ method: String, _ url: String, headers: [String] = [], body: [UInt8]? = nil, timeout: Duration) async throws(BrokerClientError) -> HTTPAnswer {
        let cancelled = CancelFlag()
        let result: Result<HTTPAnswer, BrokerClientError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                queue.async { [self] in
                    continuation.resume(returning: perform(method, url, headers: headers, body: body, timeout: timeout, cancelled: cancelled))
                }
            }
        } onCancel: {
            cancelled.flag.store(true, ordering: .relaxed)
        }
        return try result.get()
    }

    /// Set when the caller's task is cancelled; the transfer's progress callback reads it.
    final class CancelFlag: Sendable {
        let flag = Atomic<Bool>(false)
    }

    /// The easy handle, touched only on the client's serial queue.
    final class HandleBox: @unchecked Sendable {
        var handle: UnsafeMutableRawPointer?
        deinit { if let handle { curl_easy_cleanup(handle) } }
    }

    final class Sink {
        var bytes: [UInt8] = []
        var limit: Int
        var overflow = false
        init(limit: Int) { self.limit = limit }
    }

    private func perform(_ method: String, _ url: String, headers: [String], body: [UInt8]?, timeout: Duration, cancelled: CancelFlag) -> Result<HTTPAnswer, BrokerClientError> {
        if cancelled.flag.load(ordering: .relaxed) { return .failure(BrokerClientError(.transport, "\(url): cancelled")) }
        if handleBox.handle == nil { handleBox.handle = curl_easy_init() }
        guard let handle = handleBox.handle else { return .failure(BrokerClientError(.setup, "libcurl cannot create a handle")) }
        // Every option back to its default; the connection cache stays (curl_easy_reset(3)). The
        // header list is ours to free.
        curl_easy_reset(handle)
        var list: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(list) }
        let sink = Sink(limit: maximumBody)
        let milliseconds = Int(timeout.components.seconds * 1_000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        var setup: [CURLcode] = [
            holdfast_curl_setopt_string(handle, CURLOPT_URL, url),
            // Only HTTPS (HTTP for the loopback-only insecure mode), never a redirect elsewhere.
            holdfast_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "https,http"),
            holdfast_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0),
            // No SIGALRM from the resolver in a multi-threaded daemon.
            holdfast_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1),
            holdfast_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, milliseconds),
            holdfast_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, min(milliseconds, 5_000)),
            holdfast_curl_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2)),
            holdfast_curl_setopt_write(handle, { data, size, count, context in
                guard let data, let context else { return 0 }
                let sink = Unmanaged<Sink>.fromOpaque(context).takeUnretainedValue()
                let length = size * count
                if sink.bytes.count + length > sink.limit {
                    sink.overflow = true
                    return 0
                }
                data.withMemoryRebound(to: UInt8.self, capacity: length) { sink.bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: length)) }
                return length
            }, Unmanaged.passUnretained(sink).toOpaque()),
        ]
        switch trust {
        case .pinned(let pem):
            // The system store must not also be trusted: only the pinned CA (the blob overrides
            // CURLOPT_CAINFO; both file options are cleared anyway).
            setup.append(holdfast_curl_setopt_string(handle, CURLOPT_CAINFO, nil))
            setup.append(holdfast_curl_setopt_string(handle, CURLOPT_CAPATH, nil))
            setup.append(pem.withCString { holdfast_curl_setopt_blob(handle, CURLOPT_CAINFO_BLOB, $0, strlen($0)) })
            setup.append(holdfast_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
            setup.append(holdfast_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
        case .unverifiedForPinning:
            setup.append(holdfast_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0))
            setup.append(holdfast_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0))
        }
        for header in headers { list = curl_slist_append(list, header) }
        if let body {
            list = curl_slist_append(list, "Content-Type: application/json")
            setup.append(holdfast_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count))
            setup.append(body.withUnsafeBufferPointer { buffer in
                // COPYPOSTFIELDS: libcurl keeps its own copy of the body.
                buffer.withMemoryRebound(to: CChar.self) { holdfast_curl_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress ?? UnsafePointer(bitPattern: 1))) }
            })
        }
        // Expect: 100-continue would cost a round trip for every small POST.
        list = curl_slist_append(list, "Expect:")
        setup.append(holdfast_curl_setopt_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list)))
        if method != "GET" && method != "POST" { setup.append(holdfast_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)) }
        if method == "GET" && body == nil { setup.append(holdfast_curl_setopt_long(handle, CURLOPT_HTTPGET, 1)) }
        // A cancelled caller aborts the transfer at the next progress call.
        setup.append(holdfast_curl_setopt_progress(handle, { context, _, _, _, _ in
            guard let context else { return 0 }
            return Unmanaged<CancelFlag>.fromOpaque(context).takeUnretainedValue().flag.load(ordering: .relaxed) ? 1 : 0
        }, Unmanaged.passUnretained(cancelled).toOpaque()))
        if let failed = setup.first(where: { $0 != CURLE_OK }) {
            return .failure(BrokerClientError(.setup, "libcurl refused an option: \(String(cString: curl_easy_strerror(failed)))"))
        }
        let result = withExtendedLifetime((sink, cancelled)) { curl_easy_perform(handle) }
        if sink.overflow { return .failure(BrokerClientError(.invalid, "the broker's answer is larger than \(maximumBody) bytes")) }
        guard result == CURLE_OK else {
            var message = "\(url): \(String(cString: curl_easy_strerror(result)))"
            if result == CURLE_PEER_FAILED_VERIFICATION {
                message += " (the broker's certificate does not chain to the pinned CA, or is not for this host name)"
            }
            return .failure(BrokerClientError(.transport, message))
        }
        var status = 0
        _ = holdfast_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var primary: UnsafeMutablePointer<CChar>?
        let peer = holdfast_curl_getinfo_string(handle, CURLINFO_PRIMARY_IP, &primary) == CURLE_OK ? primary.map { String(cString: $0) } : nil
        if let peer, !peer.isEmpty, case .pinned = trust { peers?.note(peer) }
        return .success(HTTPAnswer(status: status, body: sink.bytes, peerAddress: peer))
    }
}
