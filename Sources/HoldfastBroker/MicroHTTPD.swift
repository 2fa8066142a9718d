import CMicroHTTPD

/// The libmicrohttpd the broker serves HTTP through.
public enum MicroHTTPD {
    /// libmicrohttpd's version string.
    public static var version: String {
        guard let version = MHD_get_version() else { return "unknown" }
        return String(cString: version)
    }

    /// Whether the epoll event loop is available: thousands of agents hold connections, and the
    /// default select() loop stops near 1,024 descriptors.
    public static var supportsEpoll: Bool { MHD_is_feature_supported(.FEATURE_EPOLL) == .YES }

    /// Whether TLS (GnuTLS) support is compiled in, for HTTPS by default.
    public static var supportsTLS: Bool { MHD_is_feature_supported(.FEATURE_TLS) == .YES }
}
