#if TLS
import Addressing
import COpenSSL
import Glibc
import TLSShim
import SystemCalls

/// The client side of TLS for one configuration: roots, client certificate, ALPN. Created only
/// when -tls is given, so a plaintext probe never initialises OpenSSL.
public final class TLSContext {
    let context: OpaquePointer
    public let configuration: TLSConfiguration
    /// Where the trusted roots came from, to explain an unknown authority.
    let rootsSource: String

    public init(_ configuration: TLSConfiguration) throws(TLSSetupError) {
        self.configuration = configuration
        switch tls_shim_init() {
        case 1: break
        case 2: TLSContext.reportDefaultProvider()
        default: throw .library(step: "cannot set up OpenSSL", openSSL: OpenSSLError.last().description)
        }
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw .library(step: "cannot create a TLS context", openSSL: OpenSSLError.last().description)
        }
        context = ctx
        // OpenSSL writes with write(2): a server that hangs up raises SIGPIPE, which the probe
        // blocks (ProbeRunner), so the write fails with EPIPE instead of killing us.
        tls_shim_set_min_tls12(ctx)
        guard tls_shim_track_certificate_request(ctx) == 1 else {
            SSL_CTX_free(ctx)
            throw .library(step: "cannot create a TLS context", openSSL: OpenSSLError.last().description)
        }
        // ALPN offers h2 only: gRPC needs HTTP/2.
        let alpn: [UInt8] = [2, UInt8(ascii: "h"), UInt8(ascii: "2")]
        SSL_CTX_set_alpn_protos(ctx, alpn, UInt32(alpn.count))

        if let spiffe = configuration.spiffe {
            try TLSContext.useSPIFFE(ctx, spiffe)
            rootsSource = "the SPIFFE trust bundles"
            return
        }
        if !configuration.certificateFile.isEmpty {
            try TLSContext.loadClientPair(ctx, configuration.certificateFile, configuration.keyFile)
        }
        if !configuration.verify {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
            rootsSource = "none (verification off)"
            return
        }
        let store = SSL_CTX_get_cert_store(ctx)!
        if !configuration.caFile.isEmpty {
            let pem: [UInt8]
            do { pem = try Files.read(configuration.caFile, limit: 16 << 20) } catch {
                // "open PATH: ..." or "read PATH: ...", as Go's os.ReadFile says it.
                throw .caFileUnreadable(path: configuration.caFile, step: error.operation, errno: error.code)
            }
            if RootIndex.add(pem, to: store) == 0 {
                throw .noRootsInFile(path: configuration.caFile)
            }
            rootsSource = configuration.caFile
            // As Go's pool: any certificate in the file is an anchor, a leaf or an intermediate too.
            X509_STORE_set_flags(store, UInt(X509_V_FLAG_PARTIAL_CHAIN))
        } else {
            let count = SystemRoots.load(into: store)
            rootsSource = count > 0 ? "the system roots" : "no system roots (none found; set SSL_CERT_FILE, or name a CA file)"
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
    }

    deinit {
        tls_spiffe_release(context)
        SSL_CTX_free(context)
    }

    /// Said once per process: a build without the TLS-only provider (linked dynamically, as the
    /// unit tests are) works, but runs all of OpenSSL's algorithm set-up.
    nonisolated(unsafe) private static var defaultProviderReported = false
    private static func reportDefaultProvider() {
        guard !defaultProviderReported else { return }
        defaultProviderReported = true
        Output.line("warning: this build's OpenSSL lacks ossl_default_provider_init (not linked statically): "
                    + "running OpenSSL's default provider, not grpc-init's TLS-only one")
    }

    /// The SVID as this client's certificate, and the bundles as the only roots, each for its
    /// trust domain. A failure here is the Workload API's material's, in go-spiffe's words.
    private static func useSPIFFE(_ ctx: OpaquePointer, _ credentials: SPIFFECredentials) throws(TLSSetupError) {
        let chain = credentials.certificates.withUnsafeBufferPointer { tls_spiffe_use_chain(ctx, $0.baseAddress, $0.count) }
        guard chain > 0 else {
            ERR_clear_error()
            throw .spiffeChain
        }
        let key = credentials.privateKey.withUnsafeBufferPointer { tls_spiffe_use_key(ctx, $0.baseAddress, $0.count) }
        guard key == 1 else {
            ERR_clear_error()
            throw .spiffeKey
        }
        for (domain, der) in credentials.bundles.sorted(by: { $0.key < $1.key }) {
            let added = der.withUnsafeBufferPointer { tls_spiffe_add_bundle(ctx, domain, $0.baseAddress, $0.count) }
            guard added > 0 else {
                ERR_clear_error()
                if added < 0 {
                    throw .bundleDomainTooLong(domain)
                }
                throw .bundleUnparsable(domain)
            }
        }
    }

    private static func loadClientPair(_ ctx: OpaquePointer, _ certFile: String, _ keyFile: String) throws(TLSSetupError) {
        func fail(_ text: String) -> TLSSetupError { .clientPair(text) }
        // Read first, as Go's tls.LoadX509KeyPair does: its errors ("open PATH: ...", "read PATH:
        // is a directory"), and the texts that explain a file OpenSSL refuses.
        var texts: [[UInt8]] = []
        for file in [certFile, keyFile] {
            do { texts.append(try Files.read(file, limit: 1 << 20)) } catch {
                throw fail("\(error.operation): \(error.code.goText)")
            }
        }
        tls_shim_refuse_passphrases(ctx)
        if SSL_CTX_use_certificate_chain_file(ctx, certFile) != 1 {
            ERR_clear_error()
            throw fail(PEMInput.certificateFailure(PEMInput.blockTypes(texts[0])))
        }
        if SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) != 1 {
            // A key of another certificate is refused here already by OpenSSL.
            if OpenSSLError.last().isKeyMismatch { throw fail("tls: private key does not match public key") }
            throw fail(PEMInput.keyFailure(PEMInput.blockTypes(texts[1])))
        }
        if SSL_CTX_check_private_key(ctx) != 1 {
            ERR_clear_error()
            throw fail("tls: private key does not match public key")
        }
    }
}
#endif
