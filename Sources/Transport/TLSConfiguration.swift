import SystemCalls
#if TLS
import COpenSSL
#endif

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

/// Why a TLS handshake or connection failed, as data; `description` is Go's text for it (or, for
/// what Go has no words for, OpenSSL's reason).
public enum TLSFailure: Error, Equatable, CustomStringConvertible {
    /// The server's certificate chain did not verify.
    case verification(CertificateFailure)
    /// The server's SVID broke a SPIFFE rule (go-spiffe's words, from the verifier).
    case spiffe(String)
    /// The server closed the connection during the handshake.
    case closedDuringHandshake
    /// The server's first record is not TLS.
    case notTLS
    /// The peer sent an alert, by Go's name for it ("certificate required").
    case alert(String)
    /// The server chose an ALPN protocol we did not offer (nil when OpenSSL refused it itself).
    case unadvertisedALPN(String?)
    /// Another OpenSSL failure: its packed error code, the function that raised it, its reason.
    case openSSL(code: UInt, function: String, reason: String)

    public var description: String { described(hint: "is the server speaking plaintext?") }

    /// The account, with `hint` in parentheses where the server seems to speak plaintext.
    public func described(hint: String) -> String {
        let plaintextHint = " (\(hint))"
        switch self {
        case .verification(let failure): return "tls: failed to verify certificate: \(failure)"
        case .spiffe(let text): return "tls: failed to verify certificate: " + text
        case .closedDuringHandshake: return "tls: server closed the connection during the handshake" + plaintextHint
        case .notTLS: return "tls: first record does not look like a TLS handshake" + plaintextHint
        case .alert(let alert): return "remote error: tls: " + alert
        case .unadvertisedALPN(let proto?): return "tls: server selected unadvertised ALPN protocol \"\(proto)\" (offered: h2)"
        case .unadvertisedALPN(nil): return "tls: server selected unadvertised ALPN protocol (offered: h2)"
        case .openSSL(let code, let function, let reason):
            if code == 0 { return "tls: unknown error" }
            let origin = function.isEmpty ? "" : " in \(function)"
            return "tls: \(reason.isEmpty ? "error" : reason) (OpenSSL error \(String(code, radix: 16))\(origin))"
        }
    }
}

/// Why a server's certificate did not verify, as Go's x509 package says it.
public enum CertificateFailure: Equatable, Sendable, CustomStringConvertible {
    /// The name did not match: Go's x509.HostnameError text.
    case nameMismatch(String)
    case expired(notAfter: String)
    case notYetValid
    /// No trusted root vouches for the chain; `roots` says which roots were trusted.
    case unknownAuthority(roots: String)
    /// Another verification error, by OpenSSL's text.
    case other(String)

    public var description: String {
        switch self {
        case .nameMismatch(let text): return text
        case .expired(let notAfter): return "x509: certificate has expired (not valid after \(notAfter))"
        case .notYetValid: return "x509: certificate is not yet valid"
        case .unknownAuthority(let roots): return "x509: certificate signed by unknown authority (trusted roots: \(roots))"
        case .other(let text): return "x509: " + text
        }
    }
}

/// Why TLS could not be set up before connecting, as data; `description` is Go's wording,
/// printed after "failed to initialize tls credentials. error=" with exit 1.
public enum TLSSetupError: Error, Equatable, CustomStringConvertible {
    /// OpenSSL itself could not be initialised, or refused a context (its error queue's text).
    case library(step: String, openSSL: String)
    /// -tls-ca-cert could not be read: the step ("open PATH", "read PATH") and its errno.
    case caFileUnreadable(path: String, step: String, errno: Errno)
    /// -tls-ca-cert holds no certificate.
    case noRootsInFile(path: String)
    /// The client certificate or key could not be loaded: Go's reason (tls.LoadX509KeyPair's).
    case clientPair(String)
    /// The Workload API's material is unusable.
    case spiffeChain
    case spiffeKey
    case bundleDomainTooLong(String)
    case bundleUnparsable(String)

    public var description: String {
        switch self {
        case .library(let step, let text): return "\(step): \(text)"
        case .caFileUnreadable(let path, let step, let code):
            return "failed to load root CA certificates from file (\(path)) error=\(step): \(code.goText)"
        case .noRootsInFile(let path): return "no root CA certs parsed from file \(path)"
        case .clientPair(let reason): return "failed to load tls client cert/key pair. error=\(reason)"
        case .spiffeChain: return "x509svid: cannot parse certificate: the Workload API's SVID is not a DER certificate chain"
        case .spiffeKey: return "x509svid: cannot parse private key, or it does not match the SVID's public key"
        case .bundleDomainTooLong(let domain): return "x509bundle: trust domain name longer than 255 bytes: \"\(domain)\""
        case .bundleUnparsable(let domain): return "x509bundle: cannot parse the bundle of trust domain \"\(domain)\""
        }
    }
}

#if !TLS
/// Without the TLS trait nothing can be set up; these stand in for the OpenSSL-backed types.
public final class TLSContext {}
public final class TLSConnection {}
#endif

/// The TLS library linked in, for -version -v: OpenSSL's version ("3.0.19"), read without
/// initialising it; nil in a build without TLS.
public enum TLSLibrary {
    public static var version: String? {
        #if TLS
        return String(cString: OpenSSL_version(Int32(OPENSSL_VERSION_STRING)))
        #else
        return nil
        #endif
    }
}
