import Agent
import CShim
import Flags
import Glibc
import Probe
import Supervisor
import SystemCalls
import Transport
import Wire

// Dispatch on how we were invoked, busybox style; everything else lives in the modules.
// The C library's argv, not CommandLine: it needs no /proc and keeps every byte.
let rawArguments = ProcessArguments.raw()
// scripts/version.sh's, stamped by the build (Sources/BuildVersion).
BuildInfo.version = buildVersion
// What -version -v lists; run only then.
BuildInfo.linkedComponents = {
    #if compiler(>=6.4)
    let swift = "6.4 or later"
    #elseif compiler(>=6.3.1)
    let swift = "6.3.1"
    #elseif compiler(>=6.3)
    let swift = "6.3"
    #elseif compiler(>=6.2)
    let swift = "6.2"
    #else
    let swift = "6.1"
    #endif
    var components = [(name: "swift (runtime, standard library, libdispatch)", version: swift),
                      (name: "glibc", version: String(cString: cshim_libc_version()))]
    if let openssl = TLSLibrary.version { components.append((name: "openssl", version: openssl)) }
    components.append((name: "zlib", version: zlibLinkedVersion))
    return components
}
let arguments = rawArguments.map { String(decoding: $0, as: UTF8.self) }
let probeNames: Set<String> = ["grpc_health_probe", "grpc-health-probe"]
let invokedAs = arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? ""

// The health agent, as the supervisor starts it (never from a user's command line).
if invokedAs == "grpc-init-agent" {
    exit(AgentMain.main())
}
if probeNames.contains(invokedAs) {
    exit(ProbeRunner.main(Array(arguments.dropFirst()), rawArguments: Array(rawArguments.dropFirst())))
}
if arguments.count > 1 && probeNames.contains(arguments[1]) {
    exit(ProbeRunner.main(Array(arguments.dropFirst(2)), rawArguments: Array(rawArguments.dropFirst(2))))
}
if arguments.count > 1 && (arguments[1] == "--install" || arguments[1] == "-install") {
    exit(Installer.install(into: arguments.count > 2 ? arguments[2] : nil, names: probeNames.sorted()))
}
exit(SupervisorMain.main(Array(arguments.dropFirst()), rawArguments: Array(rawArguments.dropFirst())))
