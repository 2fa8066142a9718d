#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on what, and the errno it returned.
public struct SystemCallError: Error, Equatable, CustomStringConvertible {
    /// The call that failed, e.g. `open`.
    public let call: String
    /// What it was called on (a path, a socket), when there is one.
    public let subject: String?
    /// The errno value.
    public let errno: Int32

    public init(call: String, subject: String? = nil, errno: Int32) {
        self.call = call
        self.subject = subject
        self.errno = errno
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        if let subject { return "\(call) \(subject): \(reason)" }
        return "\(call): \(reason)"
    }
}

/// The one funnel for raw system calls: retries `EINTR` and turns `-1`/errno into `SystemCallError`.
public enum Syscall {
    /// Runs a call that returns -1 and sets errno on failure, retrying while it is interrupted.
    @discardableResult
    public static func retrying<Result: BinaryInteger>(
        _ call: String,
        _ subject: String? = nil,
        _ body: () -> Result
    ) throws(SystemCallError) -> Result {
        while true {
            let result = body()
            if result != -1 { return result }
            let code = Glibc.errno
            if code == EINTR { continue }
            throw SystemCallError(call: call, subject: subject, errno: code)
        }
    }
}
