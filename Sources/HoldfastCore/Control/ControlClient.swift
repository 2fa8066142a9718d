import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Why a control call did not get an answer.
public struct ControlClientError: Error, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// No daemon listens there (no socket, connection refused).
        case unavailable
        /// The caller may not reach the socket (permission denied on the path).
        case permissionDenied
        /// The daemon did not answer in time.
        case timeout
        /// The answer was not a protocol message.
        case protocolError
        /// The process behind the socket is not the daemon (wrong uid).
        case untrusted
    }

    public let code: Code
    public let message: String

    public var description: String { message }
}

/// A client for the daemon's control socket: connect, send one request, read one response.
public struct ControlClient: Sendable {
    public let socketPath: String
    /// Seconds to wait for the connection, the send, and the answer.
    public let timeout: Int
    /// The uid the answering process must have (from `SO_PEERCRED`): root by default, so a user
    /// who manages to bind the path cannot answer for holdfastd.
    public let serverUID: UInt32?

    public init(socketPath: String, timeout: Int = 10, serverUID: UInt32? = 0) {
        self.socketPath = socketPath
        self.timeout = timeout
        self.serverUID = serverUID
    }

    /// Sends `request` and returns the daemon's response.
    public func call(_ request: ControlRequest) throws(ControlClientError) -> ControlResponse {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else {
            throw ControlClientError(code: .unavailable, message: "socket: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))

        let connected = UnixAddress.withAddress(socketPath) { address, length in
            var result: Int32
            repeat { result = connect(descriptor, address, length) } while result < 0 && errno == EINTR
            return result == 0 ? 0 : errno
        }
        switch connected {
        case nil:
            throw ControlClientError(code: .unavailable, message: "\(socketPath): path too long for a Unix socket")
        case 0?:
            break
        case EACCES?, EPERM?:
            throw ControlClientError(code: .permissionDenied, message: "\(socketPath): permission denied")
        case let code?:
            throw ControlClientError(
                code: .unavailable,
                message: "holdfastd is not reachable at \(socketPath): \(String(cString: strerror(code)))"
            )
        }

        if let serverUID {
            guard let peer = try? PeerCredentials.of(descriptor), peer.uid == serverUID else {
                throw ControlClientError(
                    code: .untrusted,
                    message: "the process answering at \(socketPath) is not running as uid \(serverUID); refusing to trust it"
                )
            }
        }
        var line: [UInt8]
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            line = Array(try encoder.encode(request))
        } catch {
            throw ControlClientError(code: .protocolError, message: "cannot encode the request: \(error)")
        }
        line.append(UInt8(ascii: "\n"))
        var offset = 0
        var sendError: Int32?
        while offset < line.count {
            let start = offset
            let written = line.withUnsafeBytes { send(descriptor, $0.baseAddress.map { $0 + start }, $0.count - start, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                // The daemon may have answered (busy, too large) and closed before reading it
                // all: its answer can still be waiting to be read.
                sendError = errno
                break
            }
            offset += written
        }

        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while !response.contains(UInt8(ascii: "\n")) {
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                if sendError != nil || errno == ECONNRESET { break }
                throw failure(errno, "reading the answer")
            }
            if count == 0 { break }
            response += chunk[0..<count]
            guard response.count <= ControlProtocol.maximumResponseBytes else {
                throw ControlClientError(code: .protocolError, message: "the answer is larger than \(ControlProtocol.maximumResponseBytes) bytes")
            }
        }
        guard let newline = response.firstIndex(of: UInt8(ascii: "\n")) else {
            if let sendError { throw failure(sendError, "sending") }
            throw ControlClientError(code: .protocolError, message: "holdfastd closed the connection without an answer")
        }
        do {
            return try JSONDecoder().decode(ControlResponse.self, from: Data(response[..<newline]))
        } catch {
            throw ControlClientError(code: .protocolError, message: "holdfastd's answer is not a protocol message")
        }
    }

    /// Calls a verb with arguments.
    public func call(_ verb: String, _ arguments: [String: JSONValue] = [:]) throws(ControlClientError) -> ControlResponse {
        try call(ControlRequest(verb: verb, arguments: arguments))
    }

    private func failure(_ code: Int32, _ doing: String) -> ControlClientError {
        if code == EAGAIN || code == EWOULDBLOCK {
            return ControlClientError(code: .timeout, message: "holdfastd did not answer within \(timeout) s")
        }
        return ControlClientError(code: .unavailable, message: "\(doing): \(String(cString: strerror(code)))")
    }
}
