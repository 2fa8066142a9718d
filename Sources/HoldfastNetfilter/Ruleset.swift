import CNftables

/// The kernel's nftables ruleset, read through libnftables in this process (what `nft -j list
/// ruleset` prints), so a posture run needs neither the nft binary nor a child process.
public enum NetfilterRuleset {
    /// The ruleset as libnftables' JSON (schema in libnftables-json(5)). Listing needs
    /// CAP_NET_ADMIN in the current network namespace; without it the error says so.
    public static func listJSON() -> Result<[UInt8], NetfilterError> {
        guard let context = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else { return .failure(NetfilterError("cannot create a libnftables context")) }
        // "nft_ctx_free() … frees the context and any buffers it holds" (libnftables(3)).
        defer { nft_ctx_free(context) }
        holdfast_nft_json_output(context)
        guard nft_ctx_buffer_output(context) == 0, nft_ctx_buffer_error(context) == 0 else {
            return .failure(NetfilterError("cannot buffer libnftables' output"))
        }
        let status = nft_run_cmd_from_buffer(context, "list ruleset")
        guard status == 0 else {
            let message = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
            let trimmed = message.split(whereSeparator: \.isNewline).first.map(String.init) ?? "failed"
            return .failure(NetfilterError("nft list ruleset: \(trimmed)"))
        }
        guard let output = nft_ctx_get_output_buffer(context) else { return .failure(NetfilterError("libnftables returned no output")) }
        return .success(Array(String(cString: output).utf8))
    }
}

/// Why the ruleset could not be read.
public struct NetfilterError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
