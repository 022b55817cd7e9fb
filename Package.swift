// swift-tools-version:6.1
import PackageDescription

// One module per concern; dependencies point one way:
//   grpc-init -> Probe -> Client, SPIFFE -> Transport, Wire -> GateProtocol, Addressing -> Flags, HPACK,
//     SystemCalls, TLSShim -> CShim, CZlib, COpenSSL
//   grpc-init -> Agent -> HealthServer, Client, ...   (the readiness gate's network side, a process of its own)
//   grpc-init -> Supervisor -> GateProtocol, Addressing, Flags, SystemCalls -> CShim   (PID 1: no network code)
// Concrete generic types get direct metadata accessors instead of mangled names that the
// runtime demangles on first use: that demangling was most of a probe's instructions. Nothing
// here uses Swift concurrency or Regex: without their implicit imports, the static binary does
// not carry their runtimes (and libdispatch; docs/performance.md has the figure). Each function
// gets a section of its own, so that scripts/link-order.txt places single functions: without it,
// listing one function of a file places the whole file's code among the probe's.
let fastMetadata: [SwiftSetting] = [
    .unsafeFlags([
        "-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors",
        "-Xfrontend", "-disable-implicit-concurrency-module-import",
        "-Xfrontend", "-disable-implicit-string-processing-module-import",
        "-Xfrontend", "-function-sections",
    ]),
]

let package = Package(
    name: "grpc-init",
    products: [
        .executable(name: "grpc-init", targets: ["grpc-init"]),
    ],
    traits: [
        // OpenSSL is most of the binary. `swift build -c release --disable-default-traits` builds
        // grpc-init without it: plaintext probes only, -tls refused with exit 1.
        .trait(name: "TLS", description: "-tls and mTLS for the probe, through OpenSSL"),
        .default(enabledTraits: ["TLS"]),
    ],
    targets: [
        // C for what Swift cannot call directly: variadic prctl/fcntl/ioctl, fork+exec.
        .target(name: "CShim"),
        .systemLibrary(name: "CZlib"),
        .systemLibrary(name: "COpenSSL"),
        // OpenSSL glue in C: set-up, the TLS-only provider, lazy roots, SPIFFE verification.
        .target(name: "TLSShim", dependencies: ["COpenSSL"], cSettings: [.unsafeFlags(["-Wall", "-Wextra", "-Werror"])]),
        .target(name: "SystemCalls", dependencies: ["CShim"], swiftSettings: fastMetadata),
        .target(name: "Flags", swiftSettings: fastMetadata),
        // The -addr forms, parsed without any network code: the supervisor checks -ready-addr
        // with it and must not link what talks to peers.
        .target(name: "Addressing", dependencies: ["Flags"], swiftSettings: fastMetadata),
        .target(name: "HPACK", swiftSettings: fastMetadata),
        .target(name: "Wire", dependencies: ["Flags", "GateProtocol", "HPACK", "CZlib"], swiftSettings: fastMetadata),
        .target(
            name: "Transport",
            dependencies: ["Addressing", "CShim", "SystemCalls", .target(name: "COpenSSL", condition: .when(traits: ["TLS"])),
                           .target(name: "TLSShim", condition: .when(traits: ["TLS"]))],
            swiftSettings: fastMetadata),
        .target(name: "SPIFFE", dependencies: ["Addressing", "Wire", "HPACK", "Transport"], swiftSettings: fastMetadata),
        .target(name: "Client", dependencies: ["Addressing", "Flags", "HPACK", "Wire", "Transport", "SystemCalls"], swiftSettings: fastMetadata),
        // The supervisor-agent protocol, sans-IO: typed messages, framed, versioned. Both sides
        // link it; it parses nothing from the network.
        .target(name: "GateProtocol", dependencies: ["Flags"], swiftSettings: fastMetadata),
        .target(name: "Probe", dependencies: ["Addressing", "Client", "Flags", "GateProtocol", "HPACK", "Wire", "Transport", "SPIFFE", "SystemCalls"],
                swiftSettings: fastMetadata),
        // The health server's decisions, sans-IO: a snapshot of the health model and a question
        // in, one verdict out, rendered for each edge.
        .target(name: "HealthServer", dependencies: ["Flags", "GateProtocol", "Wire"], swiftSettings: fastMetadata),
        // The health agent: the network side of the readiness gate, a process of its own.
        .target(name: "Agent", dependencies: ["Addressing", "Client", "Flags", "GateProtocol", "HealthServer", "HPACK", "SPIFFE", "SystemCalls", "Transport", "Wire"],
                swiftSettings: fastMetadata),
        // PID 1: no Wire, no Transport, no TLS. Nothing that parses a peer's bytes runs here.
        .target(name: "Supervisor", dependencies: ["Addressing", "Flags", "GateProtocol", "SystemCalls"], swiftSettings: fastMetadata),
        .executableTarget(
            name: "grpc-init",
            dependencies: ["Agent", "CShim", "Flags", "Probe", "Supervisor", "SystemCalls", "Transport", "Wire"],
            swiftSettings: fastMetadata,
            linkerSettings: [
                .unsafeFlags(["-static-executable", "-use-ld=lld"]),
                // lld places the functions a probe runs side by side (scripts/link-order.sh
                // lists them), so a probe faults in a few hundred KiB of code, not megabytes. Each
                // list names only what its build links, and lld warns about any other name
                // (test_the_link_order_names_only_what_the_binary_has fails on one). lld takes the
                // last list given: the build without TLS has its own, the TLS build's follows it.
                .unsafeFlags(["-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/scripts/link-order-notls.txt"]),
                .unsafeFlags(["-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/scripts/link-order.txt"],
                             .when(traits: ["TLS"])),
            ],
            plugins: ["BuildVersion"]
        ),
        // Runs scripts/version.sh at build time: the version -version says is the one the
        // release is named after (a build tool plugin of this package, no dependency).
        .plugin(name: "BuildVersion", capability: .buildTool(), path: "Sources/BuildVersion"),
        .testTarget(name: "FlagsTests", dependencies: ["Flags"]),
        .testTarget(name: "GateProtocolTests", dependencies: ["GateProtocol", "Flags"]),
        .testTarget(name: "HPACKTests", dependencies: ["HPACK"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "HPACK", "GateProtocol"]),
        .testTarget(name: "HealthServerTests", dependencies: ["HealthServer", "GateProtocol", "Wire"]),
        // The stateful fuzzing's short pass: whole conversations (Tests/fuzz/Conversation.swift,
        // which scripts/fuzz.sh also builds into its libFuzzer target) and the kept corpus.
        .testTarget(name: "FuzzTests", dependencies: ["Wire", "HPACK", "GateProtocol"], path: "Tests/fuzz",
                    exclude: ["entry", "corpus", "c"]),
        .testTarget(name: "TransportTests", dependencies: ["Addressing", "Transport", "TestSupport"]),
        .testTarget(name: "SPIFFETests", dependencies: ["Addressing", "GateProtocol", "SPIFFE", "Wire", "Transport"]),
        .testTarget(name: "SupervisorTests", dependencies: ["Supervisor", "Flags", "GateProtocol"]),
        .testTarget(name: "ProbeTests", dependencies: ["Probe", "Wire", "GateProtocol"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "Addressing", "CShim", "Flags", "GateProtocol", "HealthServer", "HPACK", "SystemCalls", "Transport", "Wire"]),
        .testTarget(name: "SystemCallsTests", dependencies: ["SystemCalls"]),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ClientTests", dependencies: ["Addressing", "Client", "GateProtocol", "Wire", "Transport", "SystemCalls", "TestSupport"]),
    ]
)
