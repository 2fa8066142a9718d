import CCurl

/// The libcurl the agent talks to the broker through.
public enum CurlLibrary {
    /// `curl_global_init` must run once before any other thread uses libcurl.
    private static let initialized: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    /// libcurl's version string, e.g. `7.88.1`.
    public static var version: String {
        guard initialized, let info = holdfast_curl_version_info(), let version = info.pointee.version else {
            return "unknown"
        }
        return String(cString: version)
    }

    /// Whether this libcurl speaks HTTPS (it must: the broker is HTTPS by default).
    public static var supportsHTTPS: Bool {
        guard initialized, let info = holdfast_curl_version_info() else { return false }
        var protocols = info.pointee.protocols
        while let current = protocols?.pointee {
            if String(cString: current) == "https" { return true }
            protocols = protocols?.successor()
        }
        return false
    }
}
