#ifndef GRPC_INIT_OPENSSL_SHIM_H
#define GRPC_INIT_OPENSSL_SHIM_H
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>

// Initialises OpenSSL without reading the system's openssl.cnf (grpc-init is config-free, and
// its TLS settings are explicit) and without loading error texts, which only a failure needs.
static inline int tls_shim_init(void) {
    return OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_LOAD_SSL_STRINGS | OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS, NULL);
}

// The most recent error in the queue (0 when none), emptying it; and its library and reason.
static inline unsigned long tls_shim_last_error(void) {
    unsigned long code, last = 0;
    while ((code = ERR_get_error()) != 0) last = code;
    return last;
}
static inline int tls_shim_error_library(unsigned long code) { return ERR_GET_LIB(code); }
static inline int tls_shim_error_reason(unsigned long code) { return ERR_GET_REASON(code); }

// OpenSSL spells these as macros, which Swift cannot call.
static inline int tls_shim_set_min_tls12(SSL_CTX *ctx) { return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); }
static inline int tls_shim_set_sni(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }
static inline long tls_shim_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

// The server's leaf certificate, also after a failed verification (when TLS 1.3 has not stored
// the verified peer yet, but the received chain is there). Not owned by the caller.
static inline X509 *tls_shim_peer_leaf(const SSL *ssl) {
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer) return peer;
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    return chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
}

// Whether the server asked for a client certificate: some servers close the connection without
// an alert when they reject one (or get none), and this is what lets us say so.
static int tls_shim_certificate_was_requested = 0;
static inline int tls_shim_note_certificate_request(SSL *ssl, void *arg) {
    (void)ssl; (void)arg;
    tls_shim_certificate_was_requested = 1;
    return 1;
}
static inline void tls_shim_track_certificate_request(SSL_CTX *ctx) { SSL_CTX_set_cert_cb(ctx, tls_shim_note_certificate_request, NULL); }
static inline int tls_shim_certificate_requested(void) { return tls_shim_certificate_was_requested; }

// The names a certificate is valid for (DNS and IP SANs, else its common name), comma
// separated into buf, for "certificate is valid for A, B, not C".
static inline void tls_shim_certificate_names(X509 *cert, char *buf, size_t size) {
    buf[0] = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int count = names ? sk_GENERAL_NAME_num(names) : 0;
    for (int i = 0; i < count; i++) {
        GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        char item[64] = "";
        if (name->type == GEN_DNS) {
            snprintf(item, sizeof item, "%.*s", ASN1_STRING_length(name->d.dNSName), (const char *)ASN1_STRING_get0_data(name->d.dNSName));
        } else if (name->type == GEN_IPADD) {
            const unsigned char *ip = ASN1_STRING_get0_data(name->d.iPAddress);
            int len = ASN1_STRING_length(name->d.iPAddress);
            if (len == 4) snprintf(item, sizeof item, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
            else if (len == 16) {
                char *p = item;
                for (int k = 0; k < 16; k += 2) p += sprintf(p, k ? ":%x" : "%x", ip[k] << 8 | ip[k + 1]);
            }
        }
        if (!item[0]) continue;
        if (buf[0]) strncat(buf, ", ", size - strlen(buf) - 1);
        strncat(buf, item, size - strlen(buf) - 1);
    }
    if (names) GENERAL_NAMES_free(names);
    if (!buf[0]) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, (int)size);
    }
}
#endif
