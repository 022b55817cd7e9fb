import Addressing
import Client
import Flags
import GateProtocol
import HPACK
import Wire

/// What the agent's configuration means for each call it makes: the request, the metadata, the
/// user-agent and the timeouts, worked out once.
struct AgentPlan {
    let configuration: GateConfiguration
    let metadata: [HeaderField]
    /// The request for the first configured service (discovery's Check, liveness Checks).
    let request: [UInt8]
    let userAgent: [UInt8]

    init(_ configuration: GateConfiguration) {
        self.configuration = configuration
        metadata = configuration.rpcHeaders.map { Metadata.field(fromFlag: Array($0.utf8)) }
        request = Health.request(service: configuration.listsServices ? "" : configuration.services[0])
        userAgent = Array("grpc-init-health grpc-init/\(BuildInfo.version)".utf8)
    }

    /// What goes out as :authority: the TLS server name when one is given, as grpc-go sends it.
    var authority: String? {
        configuration.tls.tls && !configuration.tls.serverName.isEmpty ? configuration.tls.serverName : nil
    }

    var connectTimeout: Int64 { configuration.connectTimeout.nanoseconds }
    var rpcTimeout: Int64 { configuration.rpcTimeout.nanoseconds }
}

/// A server to watch: where, how it is reached, and what to call it in reports.
struct Found {
    let target: Target
    let security: Security
    let reach: Reach
    let name: String
    /// Found by discovery (not named by -ready-addr): when it goes away, look again.
    let discovered: Bool
}
