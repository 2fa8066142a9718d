// swift-tools-version:6.2
// Holdfast — a Linux endpoint enforcement agent and its reference broker.

import PackageDescription

/// One system-library target per C library. Each is imported by exactly one Swift module
/// (`Tests/PackageGuardTests` fails the build otherwise); everything above sees Swift types.
let systemLibraries: [Target] = [
    .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
    .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
    .systemLibrary(name: "CUdev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
    // Debian 12 ships no cups.pc: the module map links "cups" itself.
    .systemLibrary(name: "CCups", providers: [.apt(["libcups2-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(name: "CAudit", pkgConfig: "audit", providers: [.apt(["libaudit-dev", "libauparse-dev"])]),
    .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
    .systemLibrary(name: "CMicroHTTPD", pkgConfig: "libmicrohttpd", providers: [.apt(["libmicrohttpd-dev"])]),
    .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
    // Kernel interfaces the Glibc module leaves out (adjtimex, the device-mapper ioctl); nothing to link.
    .systemLibrary(name: "CKernel"),
    .systemLibrary(name: "CNftables", pkgConfig: "libnftables", providers: [.apt(["libnftables-dev"])]),
    .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
]

let libraries: [Target] = [
    // Policy model, events, errors, clock, encodings. No C imports.
    .target(name: "HoldfastCore"),
    // Ed25519, JWS/JWT, JWK, SHA-256, random, certificate pinning. The only OpenSSL user.
    .target(name: "HoldfastCrypto", dependencies: ["HoldfastCore", "COpenSSL"]),
    // SQLite journal and state. The only SQLite user.
    .target(name: "HoldfastStore", dependencies: ["HoldfastCore", "CSQLite"]),
    // One module per domain; each owns the C library of its OS touchpoint.
    .target(name: "DeviceGuard", dependencies: ["HoldfastCore", "HoldfastCrypto", "CUdev"]),
    // zlib: inflating PDF object streams (PrintGuard) and gzip-compressed audit logs (replay);
    // lz4: apt's compressed package lists (Posture).
    .target(name: "HoldfastCompression", dependencies: ["CZlib", "CLZ4"]),
    // libnftables: listing the ruleset (Posture) and the network lockdown's table.
    .target(name: "HoldfastNetfilter", dependencies: ["HoldfastCore", "CNftables"]),
    // sd-bus: logind (the sessions lockdown) and the user's notification daemon.
    .target(name: "HoldfastDBus", dependencies: ["CSystemd"]),
    .target(name: "PrintGuard", dependencies: ["HoldfastCore", "CCups", "HoldfastCompression"]),
    .target(name: "FileWatch", dependencies: ["HoldfastCore", "CAudit"]),
    // The lockdown scopes in force (usb, print, network, sessions), persisted in the journal; one
    // path for FileWatch's automatic block, an admin's and the broker's commands, break-glass.
    .target(name: "Lockdown", dependencies: ["HoldfastCore", "HoldfastStore", "HoldfastCrypto"]),
    // Device health checks over a filesystem root and a few syscalls; the signed posture report.
    .target(name: "Posture", dependencies: [
        "HoldfastCore", "HoldfastCrypto", "HoldfastCompression", "HoldfastNetfilter", "FileWatch", "PrintGuard", "CKernel",
    ]),
    .target(name: "BrokerClient", dependencies: ["HoldfastCore", "HoldfastCrypto", "CCurl"]),
    .target(name: "HoldfastBroker", dependencies: ["HoldfastCore", "HoldfastCrypto", "HoldfastStore", "CMicroHTTPD"]),
    // The daemon's wiring: supervisor, control socket, systemd notify, signals, reload.
    .target(name: "HoldfastAgent", dependencies: [
        "HoldfastCore", "HoldfastCrypto", "HoldfastStore", "DeviceGuard", "PrintGuard", "FileWatch", "Lockdown", "Posture", "BrokerClient", "HoldfastNetfilter", "HoldfastDBus",
    ]),
    // Subcommand table, argument parsing and exit codes shared by the three executables.
    .target(name: "HoldfastCommandLine", dependencies: ["HoldfastCore"]),
    // The PAM login check's client side, shared by `holdfast login-check` and the thin binary.
    .target(name: "HoldfastLogin", dependencies: ["HoldfastCore", "HoldfastCommandLine"]),
]

let executables: [Target] = [
    .executableTarget(name: "holdfastd", dependencies: ["HoldfastCore", "HoldfastCommandLine", "HoldfastAgent", "HoldfastStore"]),
    .executableTarget(name: "holdfast", dependencies: [
        "HoldfastCore", "HoldfastCommandLine", "HoldfastCrypto", "HoldfastStore", "DeviceGuard", "PrintGuard", "FileWatch", "HoldfastCompression",
        "Posture", "HoldfastLogin",
    ]),
    // What pam_exec runs at every login: no C library, the Swift runtime linked in (start-up is
    // most of a cached login check's time; docs/login-check.md).
    .executableTarget(name: "holdfast-login-check", dependencies: ["HoldfastLogin"], linkerSettings: [.unsafeFlags(["-static-stdlib", "-l_FoundationCollections", "-l_FoundationCShims"])]),
    .executableTarget(name: "holdfast-broker", dependencies: [
        "HoldfastCore", "HoldfastCommandLine", "HoldfastCrypto", "HoldfastBroker", "HoldfastStore",
    ]),
    // The auditd plugin: drains auditd's records into a bounded queue and hands them to holdfastd
    // (installed under /usr/libexec/holdfast/, started by /etc/audit/plugins.d/holdfast.conf).
    .executableTarget(name: "holdfast-audit-plugin", dependencies: ["HoldfastCore"]),
    // The `holdfast:` CUPS backend: the per-job gate (installed under /usr/libexec/holdfast/).
    .executableTarget(name: "holdfast-cups-backend", dependencies: ["HoldfastCore", "PrintGuard"]),
    // Benchmarks for `make bench`; not shipped.
    .executableTarget(name: "holdfast-bench", dependencies: [
        "HoldfastCore", "HoldfastCrypto", "HoldfastStore", "HoldfastAgent", "HoldfastTestSupport", "PrintGuard", "FileWatch", "Posture", "BrokerClient", "HoldfastBroker",
    ], path: "Benchmarks/holdfast-bench"),
    // Child processes the tests start and kill (crash tests), and the demo's print steps; not shipped.
    .executableTarget(name: "holdfast-testkit", dependencies: [
        "HoldfastCore", "HoldfastStore", "HoldfastTestSupport", "PrintGuard",
    ], path: "Tests/holdfast-testkit"),
]

let tests: [Target] = [
    // Temporary directories, running built products, locating the package: shared by the tests.
    .target(name: "HoldfastTestSupport", dependencies: ["HoldfastCore", "FileWatch"], path: "Tests/HoldfastTestSupport"),
    .testTarget(name: "HoldfastCoreTests", dependencies: ["HoldfastCore", "HoldfastTestSupport"]),
    .testTarget(name: "HoldfastCryptoTests", dependencies: ["HoldfastCore", "HoldfastCrypto", "HoldfastTestSupport"]),
    .testTarget(name: "HoldfastStoreTests", dependencies: ["HoldfastCore", "HoldfastStore", "HoldfastTestSupport"]),
    .testTarget(name: "HoldfastAgentTests", dependencies: [
        "HoldfastAgent", "HoldfastCore", "HoldfastStore", "HoldfastTestSupport", "DeviceGuard", "Lockdown", "Posture", "FileWatch", "HoldfastCrypto", "HoldfastNetfilter",
    ]),
    .testTarget(name: "DeviceGuardTests", dependencies: ["DeviceGuard", "HoldfastCore", "HoldfastTestSupport"]),
    .testTarget(name: "HoldfastBrokerTests", dependencies: ["HoldfastBroker", "BrokerClient", "HoldfastCore", "HoldfastCrypto", "HoldfastStore", "HoldfastTestSupport"]),
    .testTarget(name: "PostureTests", dependencies: ["Posture", "HoldfastCore", "HoldfastCrypto", "HoldfastCompression", "FileWatch", "PrintGuard", "HoldfastTestSupport"]),
    .testTarget(name: "FileWatchTests", dependencies: ["FileWatch", "HoldfastCore", "HoldfastTestSupport"]),
    // FileWatch over a real kernel audit trail written by a private auditd (root, auditd).
    .testTarget(name: "FileWatchIntegrationTests", dependencies: ["FileWatch", "HoldfastCore", "HoldfastTestSupport"]),
    .testTarget(name: "PrintGuardTests", dependencies: ["PrintGuard", "HoldfastCore", "HoldfastTestSupport"]),
    // holdfastd gating a real private cupsd and IPP printer (root, cups-daemon, ippeveprinter, dbus).
    .testTarget(name: "PrintGuardIntegrationTests", dependencies: ["HoldfastTestSupport", "PrintGuard", "HoldfastCore"]),
    // holdfastd enforcing USB over a umockdev bus (root, umockdev, python3-gi, udevadm).
    .testTarget(name: "DeviceGuardIntegrationTests", dependencies: ["HoldfastTestSupport"]),
    .testTarget(name: "SystemLibraryTests", dependencies: [
        "DeviceGuard", "PrintGuard", "FileWatch", "BrokerClient", "HoldfastBroker",
    ]),
    .testTarget(name: "PackageGuardTests", dependencies: ["HoldfastTestSupport"]),
    .testTarget(name: "ExecutableTests", dependencies: ["HoldfastCore", "HoldfastTestSupport"]),
]

let package = Package(
    name: "Holdfast",
    products: [
        .executable(name: "holdfastd", targets: ["holdfastd"]),
        .executable(name: "holdfast", targets: ["holdfast"]),
        .executable(name: "holdfast-broker", targets: ["holdfast-broker"]),
        .executable(name: "holdfast-login-check", targets: ["holdfast-login-check"]),
        .executable(name: "holdfast-cups-backend", targets: ["holdfast-cups-backend"]),
        .executable(name: "holdfast-audit-plugin", targets: ["holdfast-audit-plugin"]),
        .executable(name: "holdfast-bench", targets: ["holdfast-bench"]),
        .executable(name: "holdfast-testkit", targets: ["holdfast-testkit"]),
    ],
    targets: systemLibraries + libraries + executables + tests,
    swiftLanguageModes: [.v6]
)

// The same strict settings for every Swift target, set once here.
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("InternalImportsByDefault"),
        .enableUpcomingFeature("MemberImportVisibility"),
        .treatAllWarnings(as: .error),
    ]
}
