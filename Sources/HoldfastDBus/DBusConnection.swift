import CSystemd

/// Why a D-Bus call failed: the error's D-Bus name (`org.freedesktop.DBus.Error.ServiceUnknown`)
/// when the peer answered with one, and words.
public struct DBusError: Error, Equatable, CustomStringConvertible {
    public let name: String?
    public let message: String
    public init(name: String? = nil, _ message: String) {
        self.name = name
        self.message = message
    }
    public var description: String { name.map { "\($0): \(message)" } ?? message }
}

/// A value appended to a method call.
public enum DBusValue: Sendable, Equatable {
    case string(String)
    case uint32(UInt32)
    case int32(Int32)
    case boolean(Bool)
    /// `as`
    case stringArray([String])
    /// `a{sv}` with nothing in it (the notification hints).
    case emptyVariantDictionary
}

/// One sd-bus connection (sd-bus(3)): to the system bus, or to a bus at an address. Not
/// thread-safe ("a bus object may only be used from one thread at a time"): make one where it is
/// used and let it go; every call blocks until the answer or its timeout.
public final class DBusConnection {
    private let bus: OpaquePointer

    /// The system bus: `$DBUS_SYSTEM_BUS_ADDRESS`, else /run/dbus/system_bus_socket.
    public static func system() throws(DBusError) -> DBusConnection {
        var bus: OpaquePointer?
        let status = sd_bus_open_system(&bus)
        guard status >= 0, let bus else { throw DBusError("cannot connect to the system bus: \(Self.errno(status))") }
        return DBusConnection(bus)
    }

    /// A bus at an address (`unix:path=/run/user/1000/bus`), authenticated as this process's uid.
    public convenience init(address: String) throws(DBusError) {
        var created: OpaquePointer?
        guard sd_bus_new(&created) >= 0, let bus = created else { throw DBusError("cannot create an sd-bus object") }
        self.init(bus)
        var status = sd_bus_set_address(bus, address)
        if status >= 0 { status = sd_bus_set_bus_client(bus, 1) }
        if status >= 0 { status = sd_bus_start(bus) }
        guard status >= 0 else { throw DBusError("cannot connect to \(address): \(Self.errno(status))") }
    }

    private init(_ bus: OpaquePointer) { self.bus = bus }

    // "sd_bus_flush_close_unref() … flushes, closes and unreferences" (sd_bus_new(3)); safe on a
    // bus that never started.
    deinit { sd_bus_flush_close_unref(bus) }

    /// Calls a method and waits for the reply (at most `timeout`).
    public func call(
        _ destination: String, _ path: String, _ interface: String, _ member: String, _ arguments: [DBusValue] = [], timeout: Duration = .seconds(5)
    ) throws(DBusError) -> DBusReply {
        var created: OpaquePointer?
        let status = sd_bus_message_new_method_call(bus, &created, destination, path, interface, member)
        guard status >= 0, let message = created else { throw DBusError("cannot build \(interface).\(member): \(Self.errno(status))") }
        defer { sd_bus_message_unref(message) }
        for argument in arguments { try Self.append(argument, to: message) }
        var error = holdfast_bus_error_null()
        defer { sd_bus_error_free(&error) }
        var reply: OpaquePointer?
        let microseconds = UInt64(timeout.components.seconds) * 1_000_000 + UInt64(timeout.components.attoseconds / 1_000_000_000_000)
        let called = sd_bus_call(bus, message, microseconds, &error, &reply)
        guard called >= 0, let reply else {
            let name = error.name.map { String(cString: $0) }
            let text = error.message.map { String(cString: $0) } ?? Self.errno(called)
            throw DBusError(name: name, "\(interface).\(member) on \(destination): \(text)")
        }
        return DBusReply(reply)
    }

    static func append(_ value: DBusValue, to message: OpaquePointer) throws(DBusError) {
        var status: Int32
        switch value {
        case .string(let text):
            status = text.withCString { sd_bus_message_append_basic(message, CChar(UInt8(ascii: "s")), $0) }
        case .uint32(var number):
            status = sd_bus_message_append_basic(message, CChar(UInt8(ascii: "u")), &number)
        case .int32(var number):
            status = sd_bus_message_append_basic(message, CChar(UInt8(ascii: "i")), &number)
        case .boolean(let flag):
            // D-Bus booleans travel as a 32-bit int (sd_bus_message_append_basic(3)).
            var number: Int32 = flag ? 1 : 0
            status = sd_bus_message_append_basic(message, CChar(UInt8(ascii: "b")), &number)
        case .stringArray(let items):
            status = sd_bus_message_open_container(message, CChar(UInt8(ascii: "a")), "s")
            for item in items where status >= 0 {
                status = item.withCString { sd_bus_message_append_basic(message, CChar(UInt8(ascii: "s")), $0) }
            }
            if status >= 0 { status = sd_bus_message_close_container(message) }
        case .emptyVariantDictionary:
            status = sd_bus_message_open_container(message, CChar(UInt8(ascii: "a")), "{sv}")
            if status >= 0 { status = sd_bus_message_close_container(message) }
        }
        guard status >= 0 else { throw DBusError("cannot append an argument: \(errno(status))") }
    }

    static func errno(_ status: Int32) -> String { String(cString: strerror(-status)) }
}

/// A method reply, read in order of its signature.
public final class DBusReply {
    private let message: OpaquePointer

    init(_ message: OpaquePointer) { self.message = message }

    deinit { sd_bus_message_unref(message) }

    /// `s` or `o`.
    public func readString(_ type: Character = "s") throws(DBusError) -> String {
        var value: UnsafePointer<CChar>?
        let status = sd_bus_message_read_basic(message, CChar(type.asciiValue ?? 0), &value)
        guard status > 0, let value else { throw DBusError("the reply has no \(type) here") }
        return String(cString: value)
    }

    public func readUInt32() throws(DBusError) -> UInt32 {
        var value: UInt32 = 0
        guard sd_bus_message_read_basic(message, CChar(UInt8(ascii: "u")), &value) > 0 else { throw DBusError("the reply has no u here") }
        return value
    }

    /// An array of `contents` (`(susso)`), each element read by `element`.
    public func readArray<Element>(_ contents: String, _ element: (DBusReply) throws(DBusError) -> Element) throws(DBusError) -> [Element] {
        guard sd_bus_message_enter_container(message, CChar(UInt8(ascii: "a")), contents) > 0 else { throw DBusError("the reply has no a\(contents) here") }
        var elements: [Element] = []
        while sd_bus_message_at_end(message, 0) == 0 { elements.append(try element(self)) }
        guard sd_bus_message_exit_container(message) >= 0 else { throw DBusError("the a\(contents) in the reply does not end") }
        return elements
    }

    /// A struct of `contents` (`susso`), read by `body`.
    public func readStruct<Result>(_ contents: String, _ body: (DBusReply) throws(DBusError) -> Result) throws(DBusError) -> Result {
        guard sd_bus_message_enter_container(message, CChar(UInt8(ascii: "r")), contents) > 0 else { throw DBusError("the reply has no (\(contents)) here") }
        let result = try body(self)
        guard sd_bus_message_exit_container(message) >= 0 else { throw DBusError("the (\(contents)) in the reply does not end") }
        return result
    }
}
