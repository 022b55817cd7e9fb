#ifndef GRPC_INIT_OPENSSL_SHIM_H
#define GRPC_INIT_OPENSSL_SHIM_H
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include "provider.h"

// Initialises OpenSSL without reading the system's openssl.cnf (grpc-init is config-free, and
// its TLS settings are explicit), without loading error texts, which only a failure needs, and
// without an exit handler freeing what the exiting process gives back anyway; then installs the
// TLS-only provider (provider.h).
//
// Nor does it register OpenSSL's ~230 legacy cipher and digest objects by name: the first use of
// the algorithm name map copies every registered name into it (with its OID as text), a quarter
// of a TLS probe's instructions. Ciphers are only fetched from providers; certificate signature
// checks still look digests up by name, so the digests X.509 signatures use are registered.
static inline int tls_shim_init(void) {
    if (!OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_LOAD_SSL_STRINGS
                          | OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS | OPENSSL_INIT_NO_ATEXIT
                          | OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ADD_ALL_DIGESTS, NULL)) return 0;
    const EVP_MD *digests[] = {EVP_sha1(), EVP_sha224(), EVP_sha256(), EVP_sha384(), EVP_sha512(), EVP_md5_sha1()};
    for (size_t i = 0; i < sizeof digests / sizeof *digests; i++) EVP_add_digest(digests[i]);
    tls_provider_install();
    return 1;
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

// Without a passphrase callback OpenSSL asks for an encrypted key's passphrase on the terminal,
// and a probe must never wait for input: this one has no passphrase to give.
static int tls_shim_no_passphrase(char *buffer, int size, int writing, void *user) {
    (void)buffer; (void)size; (void)writing; (void)user;
    return 0;
}
static inline void tls_shim_refuse_passphrases(SSL_CTX *ctx) { SSL_CTX_set_default_passwd_cb(ctx, tls_shim_no_passphrase); }

// ---- Lazily decoded root bundles -------------------------------------------------------------
// Decoding a certificate costs OpenSSL 3 about 1.5 M instructions (its public key goes through the
// provider decoders), and a system bundle holds ~140. The bundle is instead indexed by subject
// (base64 and a DER walk, no decoding) and a root is decoded only when the verifier asks for its
// subject, through a lookup method of our own.
typedef struct {
    unsigned char *der;
    long der_length;
    const unsigned char *subject;  // points into der
    long subject_length;
} tls_shim_root;

typedef struct {
    tls_shim_root *roots;
    int count, capacity;
} tls_shim_root_index;

// Reads one DER tag and length at *p (within end); returns the content start, or NULL.
static inline const unsigned char *tls_shim_der_enter(const unsigned char *p, const unsigned char *end, long *length) {
    if (end - p < 2) return NULL;
    p++;  // tag
    long n = *p++;
    if (n & 0x80) {
        int bytes = n & 0x7f;
        if (bytes < 1 || bytes > 4 || end - p < bytes) return NULL;
        n = 0;
        while (bytes--) n = (n << 8) | *p++;
    }
    if (n > end - p) return NULL;
    *length = n;
    return p;
}

// The subject Name inside a certificate's DER: Certificate { TBSCertificate { [0] version?,
// serial, signature, issuer, validity, subject, ... } }.
static inline int tls_shim_der_subject(const unsigned char *der, long length, const unsigned char **subject, long *subject_length) {
    const unsigned char *end = der + length, *p;
    long n;
    if (!(p = tls_shim_der_enter(der, end, &n))) return 0;           // Certificate
    if (!(p = tls_shim_der_enter(p, p + n, &n))) return 0;           // TBSCertificate
    const unsigned char *tbs_end = p + n;
    if (*p == 0xa0) {                                                // [0] version
        const unsigned char *q = tls_shim_der_enter(p, tbs_end, &n);
        if (!q) return 0;
        p = q + n;
    }
    for (int skip = 0; skip < 4; skip++) {                           // serial, signature, issuer, validity
        const unsigned char *q = tls_shim_der_enter(p, tbs_end, &n);
        if (!q) return 0;
        p = q + n;
    }
    const unsigned char *q = tls_shim_der_enter(p, tbs_end, &n);     // subject
    if (!q) return 0;
    *subject = p;
    *subject_length = (q + n) - p;
    return 1;
}

static inline int tls_shim_lazy_get_by_subject(X509_LOOKUP *lookup, X509_LOOKUP_TYPE type, const X509_NAME *name, X509_OBJECT *result) {
    if (type != X509_LU_X509) return 0;
    tls_shim_root_index *index = (tls_shim_root_index *)X509_LOOKUP_get_method_data(lookup);
    unsigned char *wanted = NULL;
    int wanted_length = i2d_X509_NAME(name, &wanted);
    if (!index || wanted_length <= 0) return 0;
    int found = 0;
    for (int i = 0; i < index->count; i++) {
        tls_shim_root *root = &index->roots[i];
        if (!root->der || root->subject_length != wanted_length || memcmp(root->subject, wanted, (size_t)wanted_length) != 0) continue;
        const unsigned char *p = root->der;
        X509 *cert = d2i_X509(NULL, &p, root->der_length);
        // Decoded once: it now lives in the store, where later look-ups find it.
        OPENSSL_free(root->der);
        root->der = NULL;
        if (!cert) continue;
        X509_STORE_add_cert(X509_LOOKUP_get_store(lookup), cert);
        if (!found) found = X509_OBJECT_set1_X509(result, cert);
        X509_free(cert);
    }
    OPENSSL_free(wanted);
    return found;
}

static inline void tls_shim_lazy_free(X509_LOOKUP *lookup) {
    tls_shim_root_index *index = (tls_shim_root_index *)X509_LOOKUP_get_method_data(lookup);
    if (!index) return;
    for (int i = 0; i < index->count; i++) OPENSSL_free(index->roots[i].der);
    OPENSSL_free(index->roots);
    OPENSSL_free(index);
}

// The store's lazy index, created on first use (X509_STORE_add_lookup returns the store's
// existing lookup for a method it already has).
static inline tls_shim_root_index *tls_shim_lazy_index(X509_STORE *store) {
    static X509_LOOKUP_METHOD *method = NULL;
    if (!method) {
        method = X509_LOOKUP_meth_new("grpc-init lazy roots");
        X509_LOOKUP_meth_set_get_by_subject(method, tls_shim_lazy_get_by_subject);
        X509_LOOKUP_meth_set_free(method, tls_shim_lazy_free);
    }
    X509_LOOKUP *lookup = method ? X509_STORE_add_lookup(store, method) : NULL;
    if (!lookup) return NULL;
    tls_shim_root_index *index = (tls_shim_root_index *)X509_LOOKUP_get_method_data(lookup);
    if (!index) {
        index = (tls_shim_root_index *)OPENSSL_zalloc(sizeof *index);
        if (index) X509_LOOKUP_set_method_data(lookup, (char *)index);
    }
    return index;
}

// Adds every certificate of a PEM bundle to the store's lazy index; returns how many.
static inline int tls_shim_add_lazy_bundle(X509_STORE *store, const void *pem, int length) {
    tls_shim_root_index *index = tls_shim_lazy_index(store);
    if (!index) return 0;
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (!bio) return 0;
    int added = 0;
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long der_length = 0;
    while (PEM_read_bio(bio, &name, &header, &der, &der_length) == 1) {
        const unsigned char *subject;
        long subject_length;
        int usable = strcmp(name, "CERTIFICATE") == 0 && tls_shim_der_subject(der, der_length, &subject, &subject_length);
        if (usable && index->count == index->capacity) {
            int capacity = index->capacity ? index->capacity * 2 : 256;
            tls_shim_root *grown = (tls_shim_root *)OPENSSL_realloc(index->roots, sizeof(tls_shim_root) * (size_t)capacity);
            if (grown) {
                index->roots = grown;
                index->capacity = capacity;
            } else {
                usable = 0;
            }
        }
        if (usable) {
            index->roots[index->count++] = (tls_shim_root){der, der_length, subject, subject_length};
            added++;
        } else {
            OPENSSL_free(der);
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
    }
    ERR_clear_error();  // the loop ends on an expected "no start line"
    BIO_free(bio);
    return added;
}

// Decodes every indexed root now, when there are at most `limit` of them (a -tls-ca-cert file,
// not a system bundle): called while the client waits for the server's first flight, it takes
// the decoding (and OpenSSL's decoder set-up) off the critical path.
static inline void tls_shim_decode_small_index(X509_STORE *store, int limit) {
    tls_shim_root_index *index = tls_shim_lazy_index(store);
    if (!index || index->count > limit) return;
    for (int i = 0; i < index->count; i++) {
        tls_shim_root *root = &index->roots[i];
        if (!root->der) continue;
        const unsigned char *p = root->der;
        X509 *cert = d2i_X509(NULL, &p, root->der_length);
        OPENSSL_free(root->der);
        root->der = NULL;
        if (cert) {
            X509_STORE_add_cert(store, cert);
            X509_free(cert);
        }
    }
}

// Directories are searched lazily by OpenSSL itself, by subject-hash file names (the layout
// update-ca-certificates and c_rehash make).
static inline int tls_shim_add_hashed_directory(X509_STORE *store, const char *dir) {
    X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_hash_dir());
    return lookup && X509_LOOKUP_add_dir(lookup, dir, X509_FILETYPE_PEM) == 1;
}

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
