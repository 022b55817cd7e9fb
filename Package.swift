// swift-tools-version:6.0
import PackageDescription

// One module per concern; dependencies point one way:
//   grpc-init -> Probe, Supervisor -> Transport, Wire, Flags -> HPACK, SystemCalls -> CShim, CZlib
let package = Package(
    name: "grpc-init",
    products: [
        .executable(name: "grpc-init", targets: ["grpc-init"]),
    ],
    targets: [
        // C for what Swift cannot call directly: variadic prctl/fcntl/ioctl, fork+exec.
        .target(name: "CShim"),
        .systemLibrary(name: "CZlib"),
        .target(name: "SystemCalls", dependencies: ["CShim"]),
        .target(name: "Flags"),
        .target(name: "HPACK"),
        .target(name: "Wire", dependencies: ["HPACK", "CZlib"]),
        .target(name: "Transport", dependencies: ["SystemCalls"]),
        .target(name: "Probe", dependencies: ["Flags", "Wire", "Transport", "SystemCalls"]),
        .target(name: "Supervisor", dependencies: ["Flags", "SystemCalls"]),
        .executableTarget(
            name: "grpc-init",
            dependencies: ["Probe", "Supervisor", "SystemCalls"],
            linkerSettings: [.unsafeFlags(["-static-executable"])]
        ),
        .testTarget(name: "FlagsTests", dependencies: ["Flags"]),
        .testTarget(name: "HPACKTests", dependencies: ["HPACK"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "HPACK"]),
        .testTarget(name: "TransportTests", dependencies: ["Transport"]),
    ]
)
