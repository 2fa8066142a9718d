import CLZ4

/// liblz4's frame decoder (the format of `lz4 FILE` and of apt's `*_Packages.lz4` lists), whole
/// input in, whole output out, with a ceiling on the output so a hostile frame cannot fill memory.
public enum LZ4Frame {
    /// The LZ4 frame magic number 0x184D2204, little endian (lz4 frame format §"General structure").
    public static let magic: [UInt8] = [0x04, 0x22, 0x4D, 0x18]

    /// Whether `bytes` begin like an LZ4 frame.
    public static func isLZ4(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.starts(with: magic)
    }

    /// The decompressed bytes of the LZ4 frames in `input` (several frames one after another are
    /// read as one stream); nil with a reason when the data is not valid LZ4 or inflates past `limit`.
    public static func decompress(_ input: [UInt8], limit: Int) -> Result<[UInt8], LZ4FrameError> {
        var context: OpaquePointer?
        let created = LZ4F_createDecompressionContext(&context, holdfast_lz4f_version())
        guard LZ4F_isError(created) == 0, let context else { return .failure(LZ4FrameError("cannot create an LZ4 decompression context")) }
        // "The context must be freed with LZ4F_freeDecompressionContext() whatever the result."
        defer { LZ4F_freeDecompressionContext(context) }
        var output: [UInt8] = []
        output.reserveCapacity(min(limit, input.count * 4))
        var chunk = [UInt8](repeating: 0, count: 1 << 18)
        var consumed = 0
        var hint = 1
        while consumed < input.count {
            let (status, read, written): (Int, Int, Int) = input.withUnsafeBytes { source in
                chunk.withUnsafeMutableBytes { destination in
                    var sourceSize = source.count - consumed
                    var destinationSize = destination.count
                    let result = LZ4F_decompress(context, destination.baseAddress, &destinationSize, source.baseAddress.map { $0 + consumed }, &sourceSize, nil)
                    return (result, sourceSize, destinationSize)
                }
            }
            if LZ4F_isError(status) != 0 {
                let name = LZ4F_getErrorName(status).map { String(cString: $0) } ?? "unknown error"
                return .failure(LZ4FrameError("not valid LZ4 data at byte \(consumed): \(name)"))
            }
            consumed += read
            output += chunk[0..<written]
            guard output.count <= limit else { return .failure(LZ4FrameError("LZ4 data inflates past \(limit) bytes")) }
            hint = status
            if read == 0 && written == 0 { break }
        }
        // A hint of 0 means the last frame ended cleanly; anything else is a truncated frame.
        guard hint == 0 else { return .failure(LZ4FrameError("the LZ4 data ends inside a frame (truncated)")) }
        return .success(output)
    }
}

/// Why LZ4 data could not be decompressed.
public struct LZ4FrameError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
