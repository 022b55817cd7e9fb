import Flags
import GateProtocol

/// What the -ready flags ask for.
public struct ReadinessOptions: Equatable, Sendable {
    public static let defaultInterval = GoDuration(nanoseconds: 250_000_000)

    /// Empty: the agent finds the server's port itself.
    public var addr = ""
    /// Every one must be SERVING; [""]: the server as a whole.
    public var services = [""]
    public var interval = defaultInterval
    public var file = ""
    public var tls = TLSFlags()
    public var spiffe = false
    public var rpcHeaders: [String] = []
    public var connectTimeout = GoDuration.second
    public var rpcTimeout = GoDuration.second
    /// Not ready this long after start: stop the child (zero: wait for ever).
    public var startupTimeout = GoDuration(nanoseconds: 0)
    /// -health-addr: where the agent answers kubelet's native probes (empty: nowhere).
    public var healthAddr = ""
    /// -health-timeout: an HTTP probe's answer deadline.
    public var healthTimeout = GoDuration.second
    /// -exit-unhealthy-after: after the first SERVING, not SERVING this long stops the child.
    public var exitUnhealthyAfter: GoDuration?
    /// -exit-unresponsive-after: after the first SERVING, no answer this long stops the child.
    public var exitUnresponsiveAfter: GoDuration?

    public init() {}

    /// What the agent is told, as the gate protocol carries it.
    var agentConfiguration: AgentConfiguration {
        var c = AgentConfiguration()
        c.addr = addr
        c.services = services
        c.interval = interval
        c.connectTimeout = connectTimeout
        c.rpcTimeout = rpcTimeout
        c.tls = tls
        c.spiffe = spiffe
        c.rpcHeaders = rpcHeaders
        c.servesHealth = !healthAddr.isEmpty
        c.healthTimeout = healthTimeout
        return c
    }
}
