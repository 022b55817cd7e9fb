
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
    /// -spiffe: an X.509-SVID and trust bundles from the Workload API, in place of files; the
    /// server is then verified as a SPIFFE workload (its ID's trust domain), not by host name.
    public var spiffe: SPIFFECredentials? = nil

    public init() {}
}

/// An X.509-SVID and the roots to verify peers with, as the SPIFFE Workload API sends them.
public struct SPIFFECredentials: Equatable, Sendable {
    /// DER certificates one after another, leaf first.
    public var certificates: [UInt8]
    /// PKCS#8 DER.
    public var privateKey: [UInt8]
    /// DER certificates one after another, by trust domain ("example.org").
    public var bundles: [String: [UInt8]]

    public init(certificates: [UInt8], privateKey: [UInt8], bundles: [String: [UInt8]]) {
        self.certificates = certificates
        self.privateKey = privateKey
        self.bundles = bundles
    }
}

/// Why TLS could not be set up before connecting; printed after
/// "failed to initialize tls credentials. error=" with exit 1.
public struct TLSSetupError: Error, Equatable, CustomStringConvertible {
    public let description: String
}

#if !TLS
/// Without the TLS trait nothing can be set up; these stand in for the OpenSSL-backed types.
public final class TLSContext {}
public final class TLSConnection {}
#endif
