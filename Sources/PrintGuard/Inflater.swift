import CZlib

/// zlib's inflate over a byte range: the data of one FlateDecode stream.
enum Inflater {
    /// The inflated bytes of the zlib stream at the start of `input` (trailing bytes after its end
    /// are ignored); nil when it is not valid zlib data or inflates to more than `limit` bytes.
    static func inflate(_ input: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
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
