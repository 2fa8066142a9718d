import DeviceGuard
import FileWatch
public import FoundationEssentials
public import HoldfastCore
import HoldfastCrypto
import HoldfastStore
import PrintGuard
#if canImport(Glibc)
import Glibc
#endif

/// The policy in force and where it came from.
public struct ActivePolicy: Sendable, Equatable {
    public enum Source: String, Sendable {
        /// Read from the local policy file.
        case file
        /// The policy file is missing or bad: the last policy accepted before, from the journal's state.
        case lastGood = "last-good"
        /// Nothing was ever accepted: every domain at its strict defaults.
        case builtIn = "built-in"
        /// Signed and versioned by the broker (enrolled agents); wins over the local file.
        case broker
    }

    public let policy: Policy
    public let source: Source
    /// The file it was read from (for `last-good`: the file it was first read from is not kept;
    /// this is the file that was refused).
    public let path: String
    /// SHA-256 of the policy's exact bytes, hex.
    public let digest: String
    public let loadedAt: Date
    /// The broker's version, when the source is `broker`.
    public var brokerVersion: Int64?
}

/// Loads the standalone policy file, falling back to the last good policy, then to the built-in
/// default — so a bad file never leaves the agent without a policy, and never loosens it.
public struct PolicyLoader {
    static let lastGoodKey = "policy.last_good"

    let journal: Journal
    /// Set when an accepted policy could not be saved as the last good one.
    private(set) var saveFailure: String?

    enum Outcome {
        case loaded(ActivePolicy)
        /// The file was refused; `fallback` is what stays (or comes) in force.
        case refused(reason: String, fallback: ActivePolicy)
    }

    /// Reads `path`. On success the policy is also saved as the last good one.
    mutating func load(_ path: String, now: Date) -> Outcome {
        let bytes: [UInt8]
        switch Self.read(path) {
        case .success(let read): bytes = read
        case .failure(let reason): return .refused(reason: "\(path): \(reason)", fallback: fallback(path, now: now))
        }
        do {
            let policy = try Policy.parse(bytes)
            // Every domain checks its own section; one bad section refuses the whole document.
            if let problem = Self.domainProblem(policy) {
                return .refused(reason: "\(path): \(problem)", fallback: fallback(path, now: now))
            }
            do {
                try journal.setState(Self.lastGoodKey, bytes)
            } catch {
                saveFailure = "\(error)"
            }
            return .loaded(ActivePolicy(policy: policy, source: .file, path: path, digest: SHA256.hex(bytes), loadedAt: now))
        } catch {
            return .refused(reason: "\(path): \(error.message)", fallback: fallback(path, now: now))
        }
    }

    /// `holdfastd --check-config`: whether the policy file would be accepted, as the daemon reads
    /// it (owner, mode, size, every domain's section). nil when accepted; `missing` is true when
    /// there is no file (the daemon then runs on the last good or built-in policy).
    public static func check(_ path: String) -> (reason: String?, missing: Bool) {
        var info = stat()
        if lstat(path, &info) != 0, errno == ENOENT { return ("no policy file", true) }
        switch read(path) {
        case .failure(let reason): return ("\(path): \(reason)", false)
        case .success(let bytes):
            do {
                let policy = try Policy.parse(bytes)
                return (Self.domainProblem(policy).map { "\(path): \($0)" }, false)
            } catch {
                return ("\(path): \(error.message)", false)
            }
        }
    }

    /// The first domain section that does not parse; nil when every one does.
    static func domainProblem(_ policy: Policy) -> String? {
        do {
            _ = try USBPolicy(section: policy.sections["usb"])
        } catch {
            return error.message
        }
        do {
            _ = try PrintPolicy(section: policy.sections["print"])
        } catch {
            return error.message
        }
        do {
            _ = try FileWatchPolicy(section: policy.sections["filewatch"])
        } catch {
            return error.message
        }
        return nil
    }

    /// The last good policy from state, else the built-in default.
    func fallback(_ path: String, now: Date) -> ActivePolicy {
        if let bytes = try? journal.state(Self.lastGoodKey), let policy = try? Policy.parse(bytes) {
            return ActivePolicy(policy: policy, source: .lastGood, path: path, digest: SHA256.hex(bytes), loadedAt: now)
        }
        let builtIn = Policy.builtInDefault
        return ActivePolicy(policy: builtIn, source: .builtIn, path: path, digest: SHA256.hex(builtIn.bytes), loadedAt: now)
    }

    enum ReadResult { case success([UInt8]), failure(String) }

    /// The policy file must be a regular file owned by root and not writable by others: whoever
    /// can write it decides what is blocked.
    static func read(_ path: String, limit: Int = 4 << 20) -> ReadResult {
        // O_NONBLOCK: a FIFO at the path must not hang the open; fstat refuses it next.
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            return .failure(errno == ELOOP ? "is a symbolic link; refusing it" : String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return .failure("is not a regular file") }
        if info.st_uid != 0 { return .failure("owned by uid \(info.st_uid); it must be owned by root") }
        if info.st_mode & 0o022 != 0 {
            return .failure("mode \(String(info.st_mode & 0o777, radix: 8)) lets group or others write it")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { return .failure(String(cString: strerror(errno))) }
            if count == 0 { return .success(bytes) }
            bytes += chunk[0..<count]
            if bytes.count > limit { return .failure("larger than \(limit >> 20) MiB") }
        }
    }
}
