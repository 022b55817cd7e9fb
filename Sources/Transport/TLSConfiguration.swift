
/// What -tls and its companion flags ask for.
public struct TLSConfiguration: Equatable, Sendable {
    /// false with -tls-no-verify.
    public var verify = true
    /// -tls-ca-cert: the only roots trusted when set.
    public var caFile = ""
    public var certificateFile = ""
    public var keyFile = ""
    /// -tls-server-name: the name sent as SNI and checked against the certificate.
    public var serverName = ""

    public init() {}
}

/// Why TLS could not be set up before connecting; printed after
/// "failed to initialize tls credentials. error=" with exit 1.
public struct TLSSetupError: Error, Equatable, CustomStringConvertible {
    public let description: String
}

#if !TLS
/// Without the TLS trait nothing can be set up; these stand in for the OpenSSL-backed types.
public final class TLSContext {}
public final class TLSConnection {
    public func explainRejection(_ failure: String?, clientCertificate: String) -> String? { nil }
}
#endif
