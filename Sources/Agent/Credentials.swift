import Client
import Flags
import GateProtocol
import SPIFFE
import Transport

/// How the agent secures its connections to the server, as the configuration asks: TLS from
/// -ready-tls files, SPIFFE from the newest SVID, or nothing configured (discovery tries
/// plaintext, then TLS). TLS contexts are made once and kept; OpenSSL is touched only when TLS
/// or SPIFFE is asked for, or a listener turns out to speak TLS.
final class Credentials {
    enum Answer {
        /// This security, reached so.
        case ready(Security, Reach)
        /// Nothing configured: discovery tries plaintext first.
        case discover
        /// Not now, and why (SPIFFE credentials still coming, or failing).
        case unavailable(Reason)
    }

    let configuration: GateConfiguration
    let svids: SVIDSource?
    private let reporter: Reporter
    private var configured: Security?
    private var fallback: Security?
    private var spiffeContext: (certificates: [UInt8], security: Security)?

    init(_ configuration: GateConfiguration, svids: SVIDSource?, reporter: Reporter) {
        self.configuration = configuration
        self.svids = svids
        self.reporter = reporter
    }

    /// The security for a new connection now. With `discovered` and nothing configured, the
    /// caller tries plaintext first; with -ready-addr and nothing configured, plaintext.
    func current(discovering: Bool) -> Answer {
        if configuration.spiffe { return spiffe() }
        if configuration.tls.tls {
            #if TLS
            if let configured { return .ready(configured, .tls) }
            do {
                let made = Security.tls(try TLSContext(configuration.tls.configuration))
                configured = made
                return .ready(made, .tls)
            } catch {
                return .unavailable(.setup("TLS set-up failed: \(error)"))
            }
            #else
            return .unavailable(.setup("-\(GateConfiguration.name(of: \.tls.tls)) is not available: this grpc-init was built without TLS"))
            #endif
        }
        return discovering ? .discover : .ready(.plaintext, .plaintext)
    }

    /// For a listener that did not speak plaintext HTTP/2: TLS, its certificate verified only
    /// with -ready-tls-ca-cert (/proc showed the socket is our child's, which is what
    /// verification would establish). Nil when TLS cannot be set up (and why).
    func fallbackTLS() -> Result<(Security, Reach), Reason> {
        #if TLS
        var tls = configuration.tls.configuration
        tls.verify = !configuration.tls.caCert.isEmpty
        let reach: Reach = tls.verify ? .tlsVerified : .tlsUnverified
        if let fallback { return .success((fallback, reach)) }
        do {
            let made = Security.tls(try TLSContext(tls))
            fallback = made
            return .success((made, reach))
        } catch {
            return .failure(.setup("TLS set-up failed: \(error)"))
        }
        #else
        return .failure(.setup("TLS is not available: this grpc-init was built without TLS"))
        #endif
    }

    private func spiffe() -> Answer {
        #if TLS
        guard let svids else { return .unavailable(.setup("SPIFFE credentials unavailable")) }
        svids.want()
        guard let context = svids.latest else {
            let why = svids.failure.map { "SPIFFE credentials unavailable: \($0)" } ?? "waiting for an X.509-SVID from the Workload API"
            return .unavailable(.setup(why))
        }
        let svid = context.svids[0]
        if let spiffeContext, spiffeContext.certificates == svid.certificates { return .ready(spiffeContext.security, .spiffe) }
        var tls = TLSConfiguration()
        tls.spiffe = context.credentials
        do {
            let made = Security.tls(try TLSContext(tls))
            reporter.send(.svid(id: svid.spiffeID, rotated: spiffeContext != nil))
            spiffeContext = (svid.certificates, made)
            return .ready(made, .spiffe)
        } catch {
            return .unavailable(.setup("SPIFFE credentials unusable: \(error)"))
        }
        #else
        return .unavailable(.setup("-\(GateConfiguration.name(of: \.spiffe)) is not available: this grpc-init was built without TLS"))
        #endif
    }
}
