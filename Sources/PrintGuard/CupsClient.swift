import CCups
#if canImport(Glibc)
import Glibc
#endif

/// Why a CUPS call failed.
public struct CupsError: Error, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// cupsd cannot be reached.
        case unreachable
        /// cupsd answered with an IPP or HTTP error.
        case refused
        /// The object (subscription, printer, job) does not exist.
        case notFound
    }

    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// An active job, as Get-Jobs reports it.
public struct PrintJob: Sendable, Equatable {
    public let id: Int32
    public let queue: String
    public let user: String
    public let title: String
    /// 3 pending, 4 held, 5 processing, 6 stopped.
    public let state: Int32
}

/// One connection to cupsd through libcups: IPP requests as the calling user (root is `@SYSTEM`
/// over the local socket, authenticated by peer credentials). Not thread-safe: one owner at a time
/// (holdfastd keeps it on one dispatch queue).
public final class CupsClient {
    /// The server as libcups names it: a socket path, or `host[:port]`.
    public let server: String
    private var http: OpaquePointer?

    /// The server libcups would use (`CUPS_SERVER`, client.conf, else the local socket).
    public static var defaultServer: String { String(cString: cupsServer()) }

    public init(server: String? = nil) {
        self.server = server ?? Self.defaultServer
    }

    deinit { close() }

    public func close() {
        if let http { httpClose(http) }
        http = nil
    }

    private func connection() throws(CupsError) -> OpaquePointer {
        if let http { return http }
        var host = server
        var port = ippPort()
        if !server.hasPrefix("/"), let colon = server.lastIndex(of: ":"), let number = Int32(server[server.index(after: colon)...]) {
            host = String(server[..<colon])
            port = number
        }
        guard let opened = httpConnect2(host, port, nil, AF_UNSPEC, HTTP_ENCRYPTION_IF_REQUESTED, 1, 5_000, nil) else {
            throw CupsError(.unreachable, "cannot connect to cupsd at \(server): \(String(cString: cupsLastErrorString()))")
        }
        httpSetTimeout(opened, 10, nil, nil)
        http = opened
        return opened
    }

    /// The `printer-uri` of a queue (or of the server with nil).
    static func uri(queue: String?, isClass: Bool = false) -> String {
        guard let queue else { return "ipp://localhost/" }
        let escaped = queue.utf8.map { byte -> String in
            let allowed = (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || "-._~".utf8.contains(byte)
            return allowed ? String(UnicodeScalar(byte)) : "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
        }.joined()
        return "ipp://localhost/\(isClass ? "classes" : "printers")/\(escaped)"
    }

    /// Sends a request built by `build` and hands the response to `read`. Failed statuses throw.
    private func request<T>(
        _ operation: Int32, _ what: String, resource: String = "/", build: (OpaquePointer) -> Void, read: (OpaquePointer) -> T
    ) throws(CupsError) -> T {
        var lastError: CupsError?
        // One retry on a fresh connection: cupsd closes idle connections and restarts on a
        // configuration PUT.
        for attempt in 0..<2 {
            let http = try connection()
            guard let request = ippNewRequest(ipp_op_t(rawValue: operation)) else { throw CupsError(.refused, "\(what): out of memory") }
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_NAME, "requesting-user-name", nil, cupsUser())
            build(request)
            guard let response = cupsDoRequest(http, request, resource) else {
                let status = cupsLastError()
                let text = String(cString: cupsLastErrorString())
                if status == IPP_STATUS_ERROR_SERVICE_UNAVAILABLE || status == IPP_STATUS_ERROR_INTERNAL, attempt == 0 {
                    close()
                    lastError = CupsError(.unreachable, "\(what): \(text)")
                    continue
                }
                throw CupsError(status == IPP_STATUS_ERROR_NOT_FOUND ? .notFound : .unreachable, "\(what): \(text)")
            }
            defer { ippDelete(response) }
            let status = ippGetStatusCode(response)
            guard status.rawValue < 0x0100 else {
                let message = ippFindAttribute(response, "status-message", IPP_TAG_TEXT).flatMap { ippGetString($0, 0, nil) }.map { String(cString: $0) }
                    ?? String(cString: ippErrorString(status))
                throw CupsError(status == IPP_STATUS_ERROR_NOT_FOUND ? .notFound : .refused, "\(what): \(message)")
            }
            return read(response)
        }
        throw lastError ?? CupsError(.unreachable, "\(what): cupsd did not answer")
    }

    // MARK: Queues

    static let queueAttributes = [
        "printer-name", "device-uri", "printer-type", "member-names", "printer-is-accepting-jobs", "printer-state",
        "printer-state-message", "printer-is-temporary",
    ]

    /// Every queue and class cupsd has, temporary ones included.
    public func queues() throws(CupsError) -> [PrintQueue] {
        try request(0x4002, "CUPS-Get-Printers") { request in
            Self.addKeywords(request, "requested-attributes", Self.queueAttributes)
        } read: { response in
            Self.groups(response, IPP_TAG_PRINTER).compactMap { fields -> PrintQueue? in
                guard let name = fields["printer-name"].flatMap({ Self.string($0) }) else { return nil }
                let type = fields["printer-type"].map { ippGetInteger($0, 0) } ?? 0
                let members = fields["member-names"].map { attribute in
                    (0..<ippGetCount(attribute)).compactMap { ippGetString(attribute, $0, nil).map { String(cString: $0) } }
                } ?? []
                return PrintQueue(
                    name: name,
                    deviceURI: fields["device-uri"].flatMap { Self.string($0) } ?? "",
                    isClass: type & 0x0001 != 0,
                    members: members,
                    isTemporary: fields["printer-is-temporary"].map { ippGetBoolean($0, 0) != 0 } ?? false,
                    isAcceptingJobs: fields["printer-is-accepting-jobs"].map { ippGetBoolean($0, 0) != 0 } ?? true,
                    state: fields["printer-state"].map { ippGetInteger($0, 0) } ?? 3,
                    stateMessage: fields["printer-state-message"].flatMap { Self.string($0) } ?? ""
                )
            }
        }
    }

    /// CUPS-Delete-Printer (or CUPS-Delete-Class): the queue and the jobs waiting in it go.
    public func delete(_ queue: PrintQueue) throws(CupsError) {
        try request(queue.isClass ? 0x4007 : 0x4004, "delete \(queue.name)", resource: "/admin/") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: queue.name, isClass: queue.isClass))
        } read: { _ in () }
    }

    /// Points a queue at another device URI (CUPS-Add-Modify-Printer).
    public func setDeviceURI(_ queue: String, _ uri: String) throws(CupsError) {
        try request(0x4003, "set the device URI of \(queue)", resource: "/admin/") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: queue))
            ippAddString(request, IPP_TAG_PRINTER, IPP_TAG_URI, "device-uri", nil, uri)
        } read: { _ in () }
    }

    /// CUPS-Reject-Jobs and Pause-Printer with a state message users see in `lpstat`.
    public func reject(_ queue: PrintQueue, message: String) throws(CupsError) {
        let uri = Self.uri(queue: queue.name, isClass: queue.isClass)
        try request(0x4009, "reject jobs on \(queue.name)", resource: "/admin/") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, uri)
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_TEXT, "printer-state-message", nil, message)
        } read: { _ in () }
        try request(0x0010, "stop \(queue.name)", resource: "/admin/") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, uri)
        } read: { _ in () }
    }

    /// CUPS-Accept-Jobs and Resume-Printer.
    public func accept(_ queue: PrintQueue) throws(CupsError) {
        let uri = Self.uri(queue: queue.name, isClass: queue.isClass)
        try request(0x4008, "accept jobs on \(queue.name)", resource: "/admin/") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, uri)
        } read: { _ in () }
        try request(0x0011, "resume \(queue.name)", resource: "/admin/") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, uri)
        } read: { _ in () }
    }

    /// Jobs not yet completed, on every queue.
    public func activeJobs() throws(CupsError) -> [PrintJob] {
        try request(0x000A, "Get-Jobs") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: nil))
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_KEYWORD, "which-jobs", nil, "not-completed")
            Self.addKeywords(request, "requested-attributes", ["job-id", "job-printer-uri", "job-originating-user-name", "job-name", "job-state"])
        } read: { response in
            Self.groups(response, IPP_TAG_JOB).compactMap { fields -> PrintJob? in
                guard let id = fields["job-id"].map({ ippGetInteger($0, 0) }) else { return nil }
                let printerURI = fields["job-printer-uri"].flatMap { Self.string($0) } ?? ""
                let queue = printerURI.split(separator: "/").last.map(String.init) ?? ""
                return PrintJob(
                    id: id, queue: queue.removingPercentEncoding,
                    user: fields["job-originating-user-name"].flatMap { Self.string($0) } ?? "",
                    title: fields["job-name"].flatMap { Self.string($0) } ?? "",
                    state: fields["job-state"].map { ippGetInteger($0, 0) } ?? 0
                )
            }
        }
    }

    /// Cancel-Job, with a message the job keeps.
    public func cancel(job: Int32, message: String) throws(CupsError) {
        try request(0x0008, "cancel job \(job)") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: nil))
            ippAddInteger(request, IPP_TAG_OPERATION, IPP_TAG_INTEGER, "job-id", job)
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_TEXT, "job-state-message", nil, message)
        } read: { _ in () }
    }

    /// A job as cupsd has it: state (3 pending … 7 canceled, 8 aborted, 9 completed), owner, queue,
    /// and the messages it carries (`job-printer-state-message`, where the backend's ERROR: line
    /// lands, and `job-state-message`). What the gate checks a backend's question against.
    public func jobRecord(_ id: Int32) throws(CupsError) -> (state: Int32, user: String, queue: String, message: String) {
        try request(0x0009, "Get-Job-Attributes \(id)") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: nil))
            ippAddInteger(request, IPP_TAG_OPERATION, IPP_TAG_INTEGER, "job-id", id)
            Self.addKeywords(request, "requested-attributes", [
                "job-state", "job-originating-user-name", "job-printer-uri", "job-printer-state-message", "job-state-message",
            ])
        } read: { response in
            func text(_ name: String) -> String? { ippFindAttribute(response, name, IPP_TAG_ZERO).flatMap { Self.string($0) } }
            let state = ippFindAttribute(response, "job-state", IPP_TAG_ENUM).map { ippGetInteger($0, 0) } ?? 0
            let printer = text("job-printer-uri") ?? ""
            let messages = [text("job-printer-state-message"), text("job-state-message")].compactMap { $0 }.filter { !$0.isEmpty }
            return (
                state, text("job-originating-user-name") ?? "", (printer.split(separator: "/").last.map(String.init) ?? "").removingPercentEncoding,
                messages.joined(separator: " | ")
            )
        }
    }

    /// A job's state and messages (see `jobRecord`).
    public func job(_ id: Int32) throws(CupsError) -> (state: Int32, message: String) {
        let record = try jobRecord(id)
        return (record.state, record.message)
    }

    /// Get-Printer-Attributes on one queue: the bare CUPS round trip (the benchmark's floor).
    public func printerState(_ queue: String) throws(CupsError) -> Int32 {
        try request(0x000B, "Get-Printer-Attributes \(queue)") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: queue))
            Self.addKeywords(request, "requested-attributes", ["printer-state"])
        } read: { response in
            ippFindAttribute(response, "printer-state", IPP_TAG_ENUM).map { ippGetInteger($0, 0) } ?? 0
        }
    }

    // MARK: Subscriptions (ippget pull)

    /// The events that make reconciliation look again.
    /// `printer-state-changed` too: a rejected queue turned back on (`cupsenable`, `cupsaccept`)
    /// must be seen at once, not at the next full pass.
    public static let queueEvents = [
        "printer-added", "printer-deleted", "printer-modified", "printer-config-changed", "printer-state-changed",
        "server-restarted", "server-started",
    ]

    /// Create-Printer-Subscriptions on the server with the `ippget` pull method; returns its id.
    public func subscribe(events: [String], leaseSeconds: Int32) throws(CupsError) -> Int32 {
        try request(0x0016, "Create-Printer-Subscriptions") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: nil))
            ippAddString(request, IPP_TAG_SUBSCRIPTION, IPP_TAG_KEYWORD, "notify-pull-method", nil, "ippget")
            Self.addKeywords(request, "notify-events", events, group: IPP_TAG_SUBSCRIPTION)
            ippAddString(request, IPP_TAG_SUBSCRIPTION, ipp_tag_t(rawValue: IPP_TAG_NAME.rawValue), "notify-user-data", nil, "holdfast")
            ippAddInteger(request, IPP_TAG_SUBSCRIPTION, IPP_TAG_INTEGER, "notify-lease-duration", leaseSeconds)
        } read: { response in
            ippFindAttribute(response, "notify-subscription-id", IPP_TAG_INTEGER).map { ippGetInteger($0, 0) } ?? 0
        }
    }

    /// Get-Notifications after `sequence`: the events and the next sequence number to ask after.
    /// A subscription cupsd no longer has throws `.notFound`.
    public func notifications(subscription: Int32, after sequence: Int32) throws(CupsError) -> (events: [String], last: Int32) {
        try request(0x001C, "Get-Notifications") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: nil))
            ippAddInteger(request, IPP_TAG_OPERATION, IPP_TAG_INTEGER, "notify-subscription-ids", subscription)
            ippAddInteger(request, IPP_TAG_OPERATION, IPP_TAG_INTEGER, "notify-sequence-numbers", sequence + 1)
        } read: { response in
            var events: [String] = []
            var last = sequence
            var attribute = ippFirstAttribute(response)
            while let current = attribute {
                if ippGetGroupTag(current) == IPP_TAG_EVENT_NOTIFICATION, let name = ippGetName(current) {
                    switch String(cString: name) {
                    case "notify-subscribed-event": if let event = Self.string(current) { events.append(event) }
                    case "notify-sequence-number": last = max(last, ippGetInteger(current, 0))
                    default: break
                    }
                }
                attribute = ippNextAttribute(response)
            }
            return (events, last)
        }
    }

    public func renew(subscription: Int32, leaseSeconds: Int32) throws(CupsError) {
        try request(0x001A, "Renew-Subscription") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: nil))
            ippAddInteger(request, IPP_TAG_OPERATION, IPP_TAG_INTEGER, "notify-subscription-id", subscription)
            ippAddInteger(request, IPP_TAG_SUBSCRIPTION, IPP_TAG_INTEGER, "notify-lease-duration", leaseSeconds)
        } read: { _ in () }
    }

    public func cancel(subscription: Int32) throws(CupsError) {
        try request(0x001B, "Cancel-Subscription") { request in
            ippAddString(request, IPP_TAG_OPERATION, IPP_TAG_URI, "printer-uri", nil, Self.uri(queue: nil))
            ippAddInteger(request, IPP_TAG_OPERATION, IPP_TAG_INTEGER, "notify-subscription-id", subscription)
        } read: { _ in () }
    }

    // MARK: Configuration files

    /// GET of a cupsd file such as `/admin/conf/cupsd.conf` (root only).
    public func file(_ resource: String) throws(CupsError) -> String {
        let descriptor = holdfast_cups_memfd()
        guard descriptor >= 0 else { throw CupsError(.refused, "memfd_create: \(String(cString: strerror(errno)))") }
        defer { Glibc.close(descriptor) }
        let status = cupsGetFd(try connection(), resource, descriptor)
        guard status == HTTP_STATUS_OK else {
            close()
            throw CupsError(.refused, "GET \(resource): HTTP \(status.rawValue) \(String(cString: httpStatus(status)))")
        }
        lseek(descriptor, 0, SEEK_SET)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
            guard bytes.count < 4 << 20 else { throw CupsError(.refused, "GET \(resource): larger than 4 MiB") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// PUT of a cupsd file; cupsd writes it and restarts itself with it.
    public func put(_ resource: String, _ text: String) throws(CupsError) {
        let descriptor = holdfast_cups_memfd()
        guard descriptor >= 0 else { throw CupsError(.refused, "memfd_create: \(String(cString: strerror(errno)))") }
        defer { Glibc.close(descriptor) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw CupsError(.refused, "PUT \(resource): cannot stage the file") }
            written += count
        }
        lseek(descriptor, 0, SEEK_SET)
        let status = cupsPutFd(try connection(), resource, descriptor)
        close()
        guard status == HTTP_STATUS_CREATED || status == HTTP_STATUS_OK else {
            throw CupsError(.refused, "PUT \(resource): HTTP \(status.rawValue) \(String(cString: httpStatus(status)))")
        }
    }

    // MARK: Helpers

    /// The response's attribute groups with `tag` (one per printer or job), each by attribute name.
    static func groups(_ response: OpaquePointer, _ tag: ipp_tag_t) -> [[String: ipp_attribute_t_ptr]] {
        var groups: [[String: ipp_attribute_t_ptr]] = []
        var fields: [String: ipp_attribute_t_ptr] = [:]
        var attribute = ippFirstAttribute(response)
        while let current = attribute {
            if ippGetGroupTag(current) == tag, let name = ippGetName(current) {
                fields[String(cString: name)] = current
            } else if ippGetName(current) == nil, !fields.isEmpty {
                // A separator between objects.
                groups.append(fields)
                fields = [:]
            }
            attribute = ippNextAttribute(response)
        }
        if !fields.isEmpty { groups.append(fields) }
        return groups
    }

    static func string(_ attribute: ipp_attribute_t_ptr) -> String? {
        ippGetString(attribute, 0, nil).map { String(cString: $0) }
    }

    static func addKeywords(_ request: OpaquePointer, _ name: String, _ values: [String], group: ipp_tag_t = IPP_TAG_OPERATION) {
        var pointers = values.map { strdup($0) }
        defer { pointers.forEach { free($0) } }
        pointers.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) { rebound in
                _ = ippAddStrings(request, group, IPP_TAG_KEYWORD, name, Int32(values.count), nil, rebound.baseAddress)
            }
        }
    }
}

typealias ipp_attribute_t_ptr = OpaquePointer

extension String {
    /// `%XX` sequences decoded (queue names in printer URIs).
    var removingPercentEncoding: String {
        var bytes: [UInt8] = []
        var iterator = Array(utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
                let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
