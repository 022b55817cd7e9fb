#if TLS
import Addressing
import COpenSSL
import Glibc
import TLSShim
import SystemCalls

/// TLS over a connected socket, non-blocking like the socket itself.
public final class TLSConnection: ByteStream {
    let socket: Socket
    let ssl: OpaquePointer
    public var fd: Int32 { socket.fd }

    /// What the handshake settled, for -v: "TLSv1.3", "TLS_AES_128_GCM_SHA256", "h2" or nil.
    public private(set) var version = ""
    public private(set) var cipher = ""
    public private(set) var alpn: String? = nil

    let context: TLSContext
    /// The name the certificate is checked against (and sent in SNI).
    let name: String
    private var warmed = false

    private init(socket: Socket, ssl: OpaquePointer, context: TLSContext, name: String) {
        self.socket = socket
        self.ssl = ssl
        self.context = context
        self.name = name
    }

    deinit { SSL_free(ssl) }

    /// Starts a client handshake over a connected socket; `continueHandshake` moves it on.
    public static func start(over socket: Socket, context: TLSContext, host: String) throws(ConnectFailure) -> TLSConnection {
        guard let ssl = SSL_new(context.context) else { throw .tls(OpenSSLError.last().failure) }
        let name = context.configuration.serverName.isEmpty ? host : context.configuration.serverName
        let connection = TLSConnection(socket: socket, ssl: ssl, context: context, name: name)
        SSL_set_fd(ssl, socket.fd)
        let (checked, isAddress) = TLSConnection.matchedName(name)
        if !isAddress { tls_shim_set_sni(ssl, checked) }
        // A SPIFFE server is verified by its SPIFFE ID's trust domain, not by host name.
        if context.configuration.verify && context.configuration.spiffe == nil {
            if isAddress {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), checked)
            } else {
                // Go has ignored the Common Name since 1.15: only SANs name a server.
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NEVER_CHECK_SUBJECT))
                SSL_set1_host(ssl, checked)
            }
        }
        return connection
    }

    /// Moves the handshake on as far as the socket allows: nil once it is complete, else the
    /// poll events it waits for. Fails at once with the specific cause (unknown authority, name
    /// mismatch, expiry, an alert, a plaintext server).
    public func continueHandshake() throws(ConnectFailure) -> Int16? {
        ERR_clear_error()
        let result = SSL_connect(ssl)
        if result != 1 {
            let error = SSL_get_error(ssl, result)
            switch error {
            case SSL_ERROR_WANT_READ:
                if !warmed {
                    // The ClientHello is out: until the server answers, decode the few roots of a
                    // -tls-ca-cert file, which verification would otherwise wait for.
                    warmed = true
                    tls_shim_decode_small_index(SSL_CTX_get_cert_store(context.context), 8)
                }
                return Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE:
                return Int16(POLLOUT)
            default:
                throw .tls(handshakeFailure(error, context: context, name: name))
            }
        }
        version = String(cString: SSL_get_version(ssl))
        cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? ""
        var selected: UnsafePointer<UInt8>? = nil
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &selected, &length)
        if let selected, length > 0 {
            let proto = String(decoding: UnsafeBufferPointer(start: selected, count: Int(length)), as: UTF8.self)
            alpn = proto
            // OpenSSL refuses a protocol it did not offer already; this holds whatever it does.
            guard proto == "h2" else { throw .tls(.unadvertisedALPN(proto)) }
        }
        return nil
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        ERR_clear_error()
        let n = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if n > 0 { return .bytes(Int(n)) }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wouldBlock
        case SSL_ERROR_ZERO_RETURN: return .endOfStream
        case SSL_ERROR_SYSCALL where errno == 0 || errno == EAGAIN:
            return .endOfStream
        case SSL_ERROR_SYSCALL: return .failed(.system(operation: "read", errno: .current))
        default:
            let error = OpenSSLError.last()
            return error.isUnexpectedEOF ? .endOfStream : .failed(.tls(error.failure))
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) -> WriteResult {
        ERR_clear_error()
        let n = SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max))))
        if n > 0 { return .wrote(Int(n)) }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wrote(0)
        case SSL_ERROR_SYSCALL: return .failed(.system(operation: "write", errno: .current))
        default: return .failed(.tls(OpenSSLError.last().failure))
        }
    }

    private func handshakeFailure(_ error: Int32, context: TLSContext, name: String) -> TLSFailure {
        let verify = SSL_get_verify_result(ssl)
        if context.configuration.spiffe != nil && verify != X509_V_OK {
            let failure = String(cString: tls_spiffe_failure(ssl))
            if !failure.isEmpty { return .spiffe(failure) }
        }
        if context.configuration.verify && verify != X509_V_OK {
            return .verification(verificationFailure(verify, context: context, name: name))
        }
        let failure = OpenSSLError.last()
        if failure.code == 0 || failure.isUnexpectedEOF { return .closedDuringHandshake }
        if failure.isNotTLS { return .notTLS }
        return failure.failure
    }

    /// The form of a server name that is sent in SNI and matched against the certificate, and
    /// whether it is an IP address. As Go: a name's trailing dot goes (RFC 6066), and an
    /// IPv4-mapped address is its IPv4 address ("::ffff:127.0.0.1" is 127.0.0.1: Go compares IP
    /// values).
    static func matchedName(_ name: String) -> (name: String, isAddress: Bool) {
        guard SocketAddress.literal(name, port: 0) != nil else { return (name.hasSuffix(".") ? String(name.dropLast()) : name, false) }
        let lower = name.lowercased()
        if lower.hasPrefix("::ffff:"), lower.dropFirst(7).contains("."), SocketAddress.literal(String(lower.dropFirst(7)), port: 0) != nil {
            return (String(lower.dropFirst(7)), true)
        }
        return (name, true)
    }

    /// Whether the server asked for a client certificate during the handshake: a server that
    /// then closes the connection (or sends an alert) wanted one, or refused ours.
    public var certificateWasRequested: Bool { tls_shim_certificate_requested(ssl) != 0 }

    private func verificationFailure(_ code: Int, context: TLSContext, name: String) -> CertificateFailure {
        let peer = tls_shim_peer_leaf(ssl)
        switch Int32(code) {
        case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
            var text = [CChar](repeating: 0, count: 1536)
            let (checked, isAddress) = TLSConnection.matchedName(name)
            if let peer { tls_shim_hostname_error(peer, name, checked, isAddress ? 1 : 0, &text, text.count) }
            return .nameMismatch(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        case X509_V_ERR_CERT_HAS_EXPIRED:
            return .expired(notAfter: peer.map { notAfter($0) } ?? "?")
        case X509_V_ERR_CERT_NOT_YET_VALID:
            return .notYetValid
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
             X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
             X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            return .unknownAuthority(roots: context.rootsSource)
        default:
            return .other(String(cString: X509_verify_cert_error_string(code)))
        }
    }

    private func notAfter(_ cert: OpaquePointer) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "?" }
        defer { BIO_free(bio) }
        ASN1_TIME_print(bio, X509_get0_notAfter(cert))
        var data: UnsafeMutablePointer<CChar>? = nil
        let n = tls_shim_mem_data(bio, &data)
        guard let data, n > 0 else { return "?" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: n), as: UTF8.self)
    }
}

/// An OpenSSL error, described from its library and reason codes in the words Go's TLS stack
/// uses. Codes, not OpenSSL's error texts: those tables cost every TLS probe time to load.
struct OpenSSLError {
    let code: UInt
    /// The OpenSSL function that raised it ("" when unknown).
    let function: String

    static func last() -> OpenSSLError {
        var function: UnsafePointer<CChar>? = nil
        let code = tls_shim_last_error(&function)
        return OpenSSLError(code: code, function: function.map { String(cString: $0) } ?? "")
    }

    var library: Int32 { tls_shim_error_library(code) }
    var reason: Int32 { tls_shim_error_reason(code) }

    var isUnexpectedEOF: Bool { library == ERR_LIB_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING }
    var isKeyMismatch: Bool { library == ERR_LIB_X509 && reason == X509_R_KEY_VALUES_MISMATCH }
    /// What a TLS client reads when the server speaks plaintext (HTTP/2 frames or HTTP/1).
    var isNotTLS: Bool {
        library == ERR_LIB_SSL && [SSL_R_WRONG_VERSION_NUMBER, SSL_R_PACKET_LENGTH_TOO_LONG, SSL_R_HTTP_REQUEST].contains(reason)
    }

    /// TLS alert descriptions as Go names them (crypto/tls), for "remote error: tls: ...".
    private static let alerts: [Int32: String] = [
        10: "unexpected message", 20: "bad record MAC", 22: "record overflow", 40: "handshake failure",
        42: "bad certificate", 43: "unsupported certificate", 44: "revoked certificate", 45: "expired certificate",
        46: "unknown certificate", 47: "illegal parameter", 48: "unknown certificate authority", 49: "access denied",
        50: "error decoding message", 51: "error decrypting message", 70: "protocol version not supported",
        71: "insufficient security level", 80: "internal error", 90: "user canceled", 109: "missing extension",
        110: "unsupported extension", 112: "unrecognized name", 116: "certificate required", 120: "no application protocol",
    ]

    /// The alert the peer sent, by Go's name, when this is one.
    var alert: String? {
        // OpenSSL reports an alert received from the peer as reason 1000 + the alert number.
        guard library == ERR_LIB_SSL && reason >= 1000 && reason < 1256 else { return nil }
        let alert = reason - 1000
        return OpenSSLError.alerts[alert] ?? String(cString: SSL_alert_desc_string_long(alert)).lowercased()
    }

    /// The failure as data: an alert, the ALPN refusal, or OpenSSL's reason (its text loaded
    /// only now, on the way out of a failure).
    var failure: TLSFailure {
        if let alert { return .alert(alert) }
        // The client checks the server's ALPN choice itself, so that failure arrives as this one.
        if library == ERR_LIB_SSL && reason == SSL_R_BAD_EXTENSION && function == "tls_parse_stoc_alpn" { return .unadvertisedALPN(nil) }
        return .openSSL(code: code, function: function, reason: code == 0 ? "" : String(cString: tls_shim_reason_text(code)))
    }

    var description: String { failure.description }
}

/// The system roots, found as Go's crypto/x509 finds them on Linux: SSL_CERT_FILE or the first
/// bundle that can be read, plus every file in SSL_CERT_DIR's directories or the well-known ones
/// (but symbolic links to a name in the same directory, such as the subject-hash links of
/// `openssl rehash`, whose targets are read anyway). Nothing is decoded here: every certificate is
/// indexed by subject, so a probe decodes only the roots its server's chain names.
///
/// One shortcut: where the bundle is /etc/ssl/certs/ca-certificates.crt as update-ca-certificates
/// writes it (a regular file; Debian, Ubuntu, Alpine), the symbolic links beside it are the ones
/// that tool made, to certificates it put in that bundle, and are not followed; the regular files
/// there are read: reading every link again would cost a probe a file read per root
/// (docs/performance.md).
enum SystemRoots {
    static let bundles = [
        "/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
        "/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
        "/etc/ssl/ca-bundle.pem",                            // openSUSE
        "/etc/pki/tls/cacert.pem",                           // OpenELEC
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
        "/etc/ssl/cert.pem",                                 // Alpine
    ]
    static let directories = ["/etc/ssl/certs", "/etc/pki/tls/certs"]
    static let fileLimit = 16 << 20
    static let managedDirectory = "/etc/ssl/certs"
    static let managedBundle = "/etc/ssl/certs/ca-certificates.crt"

    /// Indexes the roots in `store`; returns how many certificates were found.
    static func load(into store: OpaquePointer) -> Int {
        var found = 0
        // A file reached twice (the bundle inside a directory, a directory linked to another) is
        // read once.
        var read: Set<Files.Identity> = []
        /// Indexes the file unless it was read already; false when it cannot be read.
        func add(_ path: String) -> Bool {
            do {
                if let pem = try Files.read(path, limit: fileLimit, unlessIn: &read) { found += RootIndex.add(pem, to: store) }
                return true
            } catch {
                return false
            }
        }
        let files = Environment.nonEmpty("SSL_CERT_FILE").map { [$0] } ?? bundles
        for file in files where add(file) { break }  // the first bundle that can be read
        let managed = Files.isRegularFile(managedBundle) && Files.identity(managedBundle).map(read.contains) == true
        let managedIdentity = managed ? Files.identity(managedDirectory) : nil
        let dirs = Environment.nonEmpty("SSL_CERT_DIR").map { $0.split(separator: ":").map(String.init) } ?? directories
        for dir in dirs {
            let skipLinks = managedIdentity != nil && Files.identity(dir) == managedIdentity
            for entry in Files.entries(of: dir) ?? [] where !entry.isDirectory {
                let path = dir + "/" + entry.name
                if entry.isSymbolicLink {
                    if skipLinks { continue }
                    if let target = Files.linkTarget(path), !target.utf8.contains(UInt8(ascii: "/")) { continue }
                }
                _ = add(path)
            }
        }
        return found
    }
}

enum RootIndex {
    /// Indexes every certificate of a PEM bundle in the store, to be decoded when the verifier
    /// asks for its subject; returns how many certificates were found.
    static func add(_ pem: [UInt8], to store: OpaquePointer) -> Int {
        Int(pem.withUnsafeBytes { tls_shim_add_lazy_bundle(store, $0.baseAddress, Int32($0.count)) })
    }
}
#endif
