/// The TLS flags a health check takes, shared by the probe (`-tls...`) and the supervisor's
/// gate twins (`-ready-tls...`), so that both refuse the same combinations in the same words.
public struct TLSFlags: Equatable, Sendable {
    public var tls = false
    public var noVerify = false
    public var caCert = ""
    public var clientCert = ""
    public var clientKey = ""
    public var serverName = ""

    public init() {}

    /// The flags as parsed, their names spelt `prefix` + "tls..." ("" for the probe, "ready-"
    /// for the gate).
    public init(_ parsed: FlagSet.Parsed, prefix: String) {
        tls = parsed.bool(prefix + "tls")
        noVerify = parsed.bool(prefix + "tls-no-verify")
        caCert = parsed.string(prefix + "tls-ca-cert")
        clientCert = parsed.string(prefix + "tls-client-cert")
        clientKey = parsed.string(prefix + "tls-client-key")
        serverName = parsed.string(prefix + "tls-server-name")
    }

    /// The first combination that makes no sense, in the reference tool's words, with the flag
    /// names spelt `prefix` + "tls..." ("-" for the probe, "-ready-" for the gate).
    public func problem(prefix: String) -> String? {
        // The common case, no TLS flag at all, builds no string.
        if !tls && !noVerify && caCert.isEmpty && clientCert.isEmpty && clientKey.isEmpty && serverName.isEmpty { return nil }
        let tlsFlag = prefix + "tls"
        if !tls && noVerify { return "specified \(tlsFlag)-no-verify without specifying \(tlsFlag)" }
        if !tls && !caCert.isEmpty { return "specified \(tlsFlag)-ca-cert without specifying \(tlsFlag)" }
        if !tls && !clientCert.isEmpty { return "specified \(tlsFlag)-client-cert without specifying \(tlsFlag)" }
        if !tls && !serverName.isEmpty { return "specified \(tlsFlag)-server-name without specifying \(tlsFlag)" }
        if !clientCert.isEmpty && clientKey.isEmpty { return "specified \(tlsFlag)-client-cert without specifying \(tlsFlag)-client-key" }
        if clientCert.isEmpty && !clientKey.isEmpty { return "specified \(tlsFlag)-client-key without specifying \(tlsFlag)-client-cert" }
        if noVerify && !caCert.isEmpty { return "cannot specify \(tlsFlag)-ca-cert with \(tlsFlag)-no-verify (CA cert would not be used)" }
        if noVerify && !serverName.isEmpty { return "cannot specify \(tlsFlag)-server-name with \(tlsFlag)-no-verify (server name would not be used)" }
        return nil
    }
}
