#ifndef GRPC_INIT_TLS_SHIM_H
#define GRPC_INIT_TLS_SHIM_H
// What Transport's TLS needs of OpenSSL beyond its API: set-up without a config file, error
// texts on demand, macros as functions, a lazily decoded root index, SPIFFE verification, and
// the TLS-only provider. State that concerns one connection is kept on its SSL object.
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stddef.h>

// Initialises OpenSSL (no openssl.cnf, no error texts, no exit handler, no legacy name tables)
// and installs the TLS-only provider as the only one. Returns 1; 0 when either fails; 2 when
// OpenSSL's default provider runs instead because this build cannot make ours (dynamic linking).
int tls_shim_init(void);
int tls_provider_install(void);

// The most recent queued error (0 when none), emptying the queue, and the function that raised it.
unsigned long tls_shim_last_error(const char **function);
// OpenSSL's text for an error's reason, its error texts loaded on first use.
const char *tls_shim_reason_text(unsigned long code);
int tls_shim_error_library(unsigned long code);
int tls_shim_error_reason(unsigned long code);

// Macros in OpenSSL's headers.
int tls_shim_set_min_tls12(SSL_CTX *ctx);
int tls_shim_set_sni(SSL *ssl, const char *name);
long tls_shim_mem_data(BIO *bio, char **data);

// The server's leaf certificate, also after a failed verification. Not owned by the caller.
X509 *tls_shim_peer_leaf(const SSL *ssl);
// Go's x509.HostnameError text for `cert` not matching `host` (`is_ip`: an IP address).
void tls_shim_hostname_error(X509 *cert, const char *host, const char *matched, int is_ip, char *buf, size_t size);

// Records, per connection, whether the server asked for a client certificate. Returns 0 on failure.
int tls_shim_track_certificate_request(SSL_CTX *ctx);
int tls_shim_certificate_requested(const SSL *ssl);
// Encrypted keys are refused instead of prompting for a passphrase.
void tls_shim_refuse_passphrases(SSL_CTX *ctx);

// Indexes every certificate of a PEM bundle by subject into the store, decoding a root only when
// verification asks for it; returns how many were indexed.
int tls_shim_add_lazy_bundle(X509_STORE *store, const void *pem, int length);
// Decodes the indexed roots now when there are at most `limit` of them.
void tls_shim_decode_small_index(X509_STORE *store, int limit);

// SPIFFE: the SVID (DER chain, PKCS#8 key) as the client certificate; the roots of each trust
// domain (DER certificates one after another), verified as go-spiffe verifies a server.
int tls_spiffe_use_chain(SSL_CTX *ctx, const unsigned char *der, long length);
int tls_spiffe_use_key(SSL_CTX *ctx, const unsigned char *der, long length);
// Returns how many roots, 0 when the bytes are not certificates, -1 for a name over 255 bytes.
int tls_spiffe_add_bundle(SSL_CTX *ctx, const char *domain, const unsigned char *der, long length);
void tls_spiffe_release(SSL_CTX *ctx);
// Why this connection's SPIFFE verification failed ("" when it did not).
const char *tls_spiffe_failure(SSL *ssl);
#endif
