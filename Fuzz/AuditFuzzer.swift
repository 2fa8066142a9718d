// libFuzzer entry point for the audit stream (`make fuzz-audit`). Built with
// `swiftc -sanitize=fuzzer,address` together with FileWatch's parser sources. Any crash, trap or
// sanitizer report is a finding; so is a line that is neither a record, a malformed line nor a
// blank one, or a different result when the same bytes arrive in two chunks.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAuditStream(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var whole = AuditStream(maximumAgeMilliseconds: 1_000)
    var events: [AuditEvent] = []
    whole.feed(bytes) { if case .event(let event) = $0 { events.append(event) } }
    whole.finish { if case .event(let event) = $0 { events.append(event) } }
    var output: [UInt8] = []
    for event in events {
        let summary = AuditEventSummary(event)
        summary.writeJSON(into: &output)
        _ = summary.line
    }
    let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).count - (bytes.last == 0x0A || bytes.isEmpty ? 1 : 0)
    let statistics = whole.statistics
    precondition(statistics.records + statistics.malformedTotal + statistics.blank == max(0, lines), "a line was not accounted for")
    // The same bytes in two chunks, split anywhere, give the same counts.
    let cut = size == 0 ? 0 : Int(bytes[0]) % (size + 1)
    var split = AuditStream(maximumAgeMilliseconds: 1_000)
    split.feed(Array(bytes[..<cut])) { _ in }
    split.feed(Array(bytes[cut...])) { _ in }
    split.finish { _ in }
    precondition(split.statistics == statistics, "chunking changed the result")
    return 0
}
