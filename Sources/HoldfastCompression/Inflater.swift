import CZlib

/// zlib's inflate over a byte range: the data of one FlateDecode stream.
public enum Inflater {
    /// The inflated bytes of the zlib stream at the start of `input` (trailing bytes after its end
    /// are ignored); nil when it is not valid zlib data or inflates to more than `limit` bytes.
    public static func inflate(_ input: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
        guard let base = input.baseAddress else { return nil }
        var stream = z_stream()
        guard holdfast_inflate_init(&stream) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = UInt32(min(input.count, Int(UInt32.max)))
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let status: Int32 = chunk.withUnsafeMutableBufferPointer { buffer in
                stream.next_out = buffer.baseAddress
                stream.avail_out = UInt32(buffer.count)
                return CZlib.inflate(&stream, Z_NO_FLUSH)
            }
            let produced = chunk.count - Int(stream.avail_out)
            output += chunk[0..<produced]
            guard output.count <= limit else { return nil }
            if status == Z_STREAM_END { return output }
            guard status == Z_OK, produced > 0 || stream.avail_in > 0 else { return nil }
        }
    }
}

/// A gzip file read as a stream (auditd's rotated logs, compressed by logrotate): compressed
/// chunks in, inflated chunks out, in bounded memory. Several gzip members one after another (as
/// `cat a.gz b.gz` makes) are read as one stream.
public final class GzipReader {
    private var stream = z_stream()
    private var started = false
    private var ended = false
    public private(set) var failure: String?

    public init() {}

    deinit {
        if started { inflateEnd(&stream) }
    }

    /// Whether `bytes` begin like a gzip file (RFC 1952 magic).
    public static func isGzip(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.starts(with: [0x1F, 0x8B])
    }

    /// Inflates `input`, handing each inflated chunk to `output`. After a failure (corrupt data)
    /// it takes nothing more; `failure` says why.
    public func feed(_ input: UnsafeRawBufferPointer, output: (UnsafeRawBufferPointer) -> Void) {
        guard failure == nil, let base = input.baseAddress, input.count > 0 else { return }
        stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = UInt32(input.count)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while stream.avail_in > 0 {
            if !started || ended {
                if started { inflateEnd(&stream) }
                // A new member: the next bytes must be another gzip header.
                let next = stream.next_in
                let available = stream.avail_in
                stream = z_stream()
                stream.next_in = next
                stream.avail_in = available
                guard holdfast_inflate_init_auto(&stream) == Z_OK else {
                    failure = "zlib could not start"
                    return
                }
                started = true
                ended = false
            }
            let status: Int32 = chunk.withUnsafeMutableBufferPointer { buffer in
                stream.next_out = buffer.baseAddress
                stream.avail_out = UInt32(buffer.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            let produced = chunk.count - Int(stream.avail_out)
            if produced > 0 { chunk.withUnsafeBytes { output(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) } }
            if status == Z_STREAM_END {
                ended = true
                continue
            }
            guard status == Z_OK || status == Z_BUF_ERROR else {
                if let message = stream.msg {
                    failure = String(cString: message)
                } else if let message = zError(status) {
                    failure = String(cString: message)
                } else {
                    failure = "zlib error \(status)"
                }
                return
            }
            if status == Z_BUF_ERROR, produced == 0 { break }
        }
    }

    /// At the end of the file: nil when the last member ended, else why not (a truncated file).
    public func finish() -> String? {
        if let failure { return failure }
        return started && !ended ? "the gzip data ends in the middle of a member (truncated)" : nil
    }
}
