import CUdev
#if canImport(Glibc)
import Glibc
#endif

/// One uevent for a USB node, as the udev monitor delivers it.
public struct USBEvent: Sendable, Equatable {
    public enum Action: String, Sendable {
        case add, remove, change, bind, unbind, move, online, offline
    }

    public let action: Action
    /// `/sys/devices/…`.
    public let sysPath: String
    /// `usb_device` or `usb_interface` (other USB node types, such as endpoints, are not delivered).
    public let isInterface: Bool
    /// The driver the event names (`DRIVER=` of a `bind`): still there when the udev rule has
    /// already cut the interface off again and its `driver` link is gone.
    public let driver: String?

    public init(action: Action, sysPath: String, isInterface: Bool, driver: String? = nil) {
        self.action = action
        self.sysPath = sysPath
        self.isInterface = isInterface
        self.driver = driver
    }

    /// The device an event is about: the event's own node, or an interface's parent device.
    public var deviceSysPath: String {
        guard isInterface, let slash = sysPath.lastIndex(of: "/") else { return sysPath }
        return String(sysPath[..<slash])
    }
}

/// Where hot-plug events come from: the udev monitor in production, a list in unit tests.
public protocol USBEventSource: AnyObject {
    /// A descriptor that becomes readable when events are waiting.
    var fileDescriptor: Int32 { get }
    /// The next pending event, or nil when none is waiting. Throws `.overflow` when the kernel
    /// dropped events (`ENOBUFS`): the caller must rescan everything, since it cannot know what
    /// it missed.
    func next() throws(USBEventSourceError) -> USBEvent?
}

/// The event stream broke.
public enum USBEventSourceError: Error, Equatable, CustomStringConvertible {
    /// The socket's receive buffer overflowed and events were lost.
    case overflow
    case failed(String)

    public var description: String {
        switch self {
        case .overflow: "the uevent socket overflowed (ENOBUFS); events were lost"
        case .failed(let message): message
        }
    }
}

/// A libudev monitor on the `usb` subsystem, owned: released in `deinit`. Not thread-safe (libudev
/// is not); one owner uses it.
///
/// It listens to the `udev` source, events udevd broadcasts after its rules ran: DeviceGuard then
/// acts after the shipped rule (`70-holdfast-usb.rules`) authorized what it allows, so the daemon's
/// stricter decision is the last write. Under umockdev the preload library feeds the same socket.
public final class UdevMonitor: USBEventSource {
    private let context: UdevContext
    private let monitor: OpaquePointer
    public let fileDescriptor: Int32

    /// The receive buffer asked for: a dock with dozens of devices plugged at once must not overflow it.
    public static let receiveBufferBytes: Int32 = 16 << 20

    public init() throws(DeviceGuardError) {
        context = try UdevContext()
        guard let monitor = udev_monitor_new_from_netlink(context.handle, "udev") else {
            throw DeviceGuardError("udev_monitor_new_from_netlink failed: \(String(cString: strerror(errno)))")
        }
        self.monitor = monitor
        guard udev_monitor_filter_add_match_subsystem_devtype(monitor, "usb", nil) >= 0 else {
            udev_monitor_unref(monitor)
            throw DeviceGuardError("cannot filter the udev monitor on the usb subsystem")
        }
        // Raising the buffer past rmem_max needs CAP_NET_ADMIN (SO_RCVBUFFORCE); without it the
        // default stays, and an overflow is still caught as ENOBUFS.
        _ = udev_monitor_set_receive_buffer_size(monitor, Self.receiveBufferBytes)
        guard udev_monitor_enable_receiving(monitor) >= 0 else {
            udev_monitor_unref(monitor)
            throw DeviceGuardError("cannot start receiving udev events: \(String(cString: strerror(errno)))")
        }
        fileDescriptor = udev_monitor_get_fd(monitor)
        // libudev opens the socket non-blocking; make sure, so next() never waits.
        let flags = fcntl(fileDescriptor, F_GETFL)
        if flags >= 0, flags & O_NONBLOCK == 0 { _ = fcntl(fileDescriptor, F_SETFL, flags | O_NONBLOCK) }
    }

    deinit { udev_monitor_unref(monitor) }

    public func next() throws(USBEventSourceError) -> USBEvent? {
        while true {
            errno = 0
            guard let device = udev_monitor_receive_device(monitor) else {
                let code = errno
                switch code {
                case 0, EAGAIN, EWOULDBLOCK: return nil
                case EINTR: continue
                case ENOBUFS: throw .overflow
                default: throw .failed("udev_monitor_receive_device: \(String(cString: strerror(code)))")
                }
            }
            defer { udev_device_unref(device) }
            guard let actionText = udev_device_get_action(device).map({ String(cString: $0) }),
                let action = USBEvent.Action(rawValue: actionText),
                let path = udev_device_get_syspath(device).map({ String(cString: $0) })
            else { continue }
            let type = udev_device_get_devtype(device).map { String(cString: $0) }
            guard type == "usb_device" || type == "usb_interface" else { continue }
            let driver = udev_device_get_driver(device).map { String(cString: $0) }
            return USBEvent(action: action, sysPath: path, isInterface: type == "usb_interface", driver: driver)
        }
    }
}
