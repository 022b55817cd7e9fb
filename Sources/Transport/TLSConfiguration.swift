import COpenSSL
import Glibc
import SystemCalls

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

/// Where Go's crypto/x509 looks for the system roots on Linux: SSL_CERT_FILE or the first bundle
/// that exists, plus SSL_CERT_DIR or the well-known directories.
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

    /// Loads the roots into `store`; returns how many certificates were added.
    static func load(into store: OpaquePointer) -> Int {
        var added = 0
        let files = Environment.value("SSL_CERT_FILE").map { [$0] } ?? bundles
        for file in files {
            guard let pem = try? Files.read(file, limit: 16 << 20) else { continue }
            added += PEM.addCertificates(pem, to: store)
            if added > 0 { break }
        }
        let dirs = Environment.value("SSL_CERT_DIR").map { $0.split(separator: ":").map(String.init) } ?? directories
        for dir in dirs {
            guard let handle = opendir(dir) else { continue }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name.hasPrefix(".") { continue }
                if let pem = try? Files.read(dir + "/" + name, limit: 1 << 20) { added += PEM.addCertificates(pem, to: store) }
            }
        }
        return added
    }
}

enum PEM {
    /// Adds every certificate in `pem` to the store; returns how many were parsed.
    static func addCertificates(_ pem: [UInt8], to store: OpaquePointer) -> Int {
        pem.withUnsafeBytes { raw -> Int in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return 0 }
            defer { BIO_free(bio) }
            var count = 0
            while let cert = PEM_read_bio_X509(bio, nil, nil, nil) {
                _ = X509_STORE_add_cert(store, cert)  // a duplicate fails to add but was still parsed
                count += 1
                X509_free(cert)
            }
            ERR_clear_error()  // the loop ends on an expected "no start line"
            return count
        }
    }
}
