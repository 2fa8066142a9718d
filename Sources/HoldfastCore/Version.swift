/// The Holdfast release, shared by the agent, the CLI and the broker.
public enum HoldfastVersion {
    /// Semantic version of this build.
    public static let current = "0.1.0"
    /// Product name as it appears in events (`metadata.product.name`) and `--version`.
    public static let productName = "Holdfast"
    /// Vendor name for OCSF `metadata.product.vendor_name`.
    public static let vendorName = "Holdfast"
}
