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

    /// The six flags' keys, as the probe declares them (`-tls...`; the gate's `-ready-tls...` are
    /// fields of its configuration).
    public struct Keys: Sendable {
        public let tls, noVerify: Flag<Bool>
        public let caCert, clientCert, clientKey, serverName: Flag<String>

        public init(tls: Flag<Bool>, noVerify: Flag<Bool>, caCert: Flag<String>, clientCert: Flag<String>, clientKey: Flag<String>,
                    serverName: Flag<String>) {
            (self.tls, self.noVerify, self.caCert, self.clientCert, self.clientKey, self.serverName) = (tls, noVerify, caCert, clientCert, clientKey, serverName)
        }

        public var definitions: [FlagSet.Flag] {
            [tls.definition, noVerify.definition, caCert.definition, clientCert.definition, clientKey.definition, serverName.definition]
        }
    }

    /// The flags as parsed.
    public init(_ parsed: FlagSet.Parsed, _ keys: Keys) {
        tls = parsed[keys.tls]
        noVerify = parsed[keys.noVerify]
        caCert = parsed[keys.caCert]
        clientCert = parsed[keys.clientCert]
        clientKey = parsed[keys.clientKey]
        serverName = parsed[keys.serverName]
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
