import Flags
import Transport

/// How a connection is secured.
public enum Security {
    case plaintext
    #if TLS
    /// TLS with this context; `onHandshake` sees each completed handshake (for -v).
    case tls(TLSContext, onHandshake: (TLSConnection) -> Void = { _ in })
    #endif

    var isTLS: Bool {
        if case .plaintext = self { return false }
        return true
    }
}

extension TLSFlags {
    /// What the TLS context is made from: the flags, from the command line to OpenSSL in one shape.
    public var configuration: TLSConfiguration {
        var c = TLSConfiguration()
        c.verify = !noVerify
        c.caFile = caCert
        c.certificateFile = clientCert
        c.keyFile = clientKey
        c.serverName = serverName
        return c
    }
}
