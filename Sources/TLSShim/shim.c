#define _GNU_SOURCE  // memmem
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>
#include "tls_shim.h"

// Initialises OpenSSL without reading the system's openssl.cnf (grpc-init is config-free, and
// its TLS settings are explicit), without loading error texts, which only a failure needs, and
// without an exit handler freeing what the exiting process gives back anyway; then installs the
// TLS-only provider (provider.c). Returns 1, 0 when either fails, or 2 when OpenSSL runs with
// its default provider because this build cannot make ours (a dynamically linked build).
//
// Nor does it register OpenSSL's ~230 legacy cipher and digest objects by name: the first use of
// the algorithm name map copies every registered name into it (with its OID as text), a quarter
// of a TLS probe's instructions. Ciphers are only fetched from providers; certificate signature
// checks still look digests up by name, so the digests X.509 signatures use are registered.
int tls_shim_init(void) {
    if (!OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_LOAD_SSL_STRINGS
                          | OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS | OPENSSL_INIT_NO_ATEXIT
                          | OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ADD_ALL_DIGESTS, NULL)) return 0;
    const EVP_MD *digests[] = {EVP_sha1(), EVP_sha224(), EVP_sha256(), EVP_sha384(), EVP_sha512(), EVP_md5_sha1()};
    for (size_t i = 0; i < sizeof digests / sizeof *digests; i++) EVP_add_digest(digests[i]);
    int installed = tls_provider_install();
    return installed < 0 ? 2 : installed;
}

// The most recent error in the queue (0 when none), emptying it, and the OpenSSL function that
// raised it (for the few failures only that tells apart); and its library and reason.
unsigned long tls_shim_last_error(const char **function) {
    unsigned long code, last = 0;
    const char *name = NULL;
    *function = "";
    while ((code = ERR_get_error_all(NULL, NULL, &name, NULL, NULL)) != 0) {
        last = code;
        *function = name ? name : "";
    }
    return last;
}

// OpenSSL's text for an error's reason. Error texts are not loaded at start-up (that costs every
// TLS probe); they are loaded here, on the way out of a failure that has no message of our own.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
const char *tls_shim_reason_text(unsigned long code) {
    ERR_load_SSL_strings();
    ERR_load_X509_strings();
    ERR_load_EVP_strings();
    ERR_load_ASN1_strings();
    ERR_load_PEM_strings();
    const char *text = ERR_reason_error_string(code);
    return text ? text : "";
}
#pragma GCC diagnostic pop
int tls_shim_error_library(unsigned long code) { return ERR_GET_LIB(code); }
int tls_shim_error_reason(unsigned long code) { return ERR_GET_REASON(code); }

// OpenSSL spells these as macros, which Swift cannot call.
int tls_shim_set_min_tls12(SSL_CTX *ctx) { return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); }
int tls_shim_set_sni(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }
long tls_shim_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

// The server's leaf certificate, also after a failed verification (when TLS 1.3 has not stored
// the verified peer yet, but the received chain is there). Not owned by the caller.
X509 *tls_shim_peer_leaf(const SSL *ssl) {
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer) return peer;
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    return chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
}

// Whether the server asked for a client certificate: some servers close the connection without
// an alert when they reject one (or get none), and this is what lets us say so. Kept on the
// connection (the SSL object's ex_data): a second connection of the process starts unasked.
static int tls_shim_certificate_request_index = -1;

static int tls_shim_note_certificate_request(SSL *ssl, void *arg) {
    (void)arg;
    SSL_set_ex_data(ssl, tls_shim_certificate_request_index, (void *)1);
    return 1;
}

int tls_shim_track_certificate_request(SSL_CTX *ctx) {
    if (tls_shim_certificate_request_index < 0) {
        tls_shim_certificate_request_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        if (tls_shim_certificate_request_index < 0) return 0;
    }
    SSL_CTX_set_cert_cb(ctx, tls_shim_note_certificate_request, NULL);
    return 1;
}

int tls_shim_certificate_requested(const SSL *ssl) {
    return tls_shim_certificate_request_index >= 0 && SSL_get_ex_data(ssl, tls_shim_certificate_request_index) != NULL;
}

// Without a passphrase callback OpenSSL asks for an encrypted key's passphrase on the terminal,
// and a probe must never wait for input: this one has no passphrase to give.
static int tls_shim_no_passphrase(char *buffer, int size, int writing, void *user) {
    (void)buffer; (void)size; (void)writing; (void)user;
    return 0;
}
void tls_shim_refuse_passphrases(SSL_CTX *ctx) { SSL_CTX_set_default_passwd_cb(ctx, tls_shim_no_passphrase); }

// ---- Lazily decoded root bundles -------------------------------------------------------------
// Decoding a certificate is expensive in OpenSSL 3 (its public key goes through the provider
// decoders; docs/performance.md has the figures), and a system bundle holds every root. The bundle is instead indexed by subject,
// from the first bytes of each certificate's DER (no parsing by OpenSSL), and a root is decoded
// whole only when the verifier asks for its subject, through a lookup method of our own.
typedef struct {
    const unsigned char *base64;  // the PEM body, in the index's copy of the bundle text
    long base64_length;
    unsigned char *subject;       // the DER of the subject Name; NULL once decoded (or unusable)
    long subject_length;
} tls_shim_root;

typedef struct {
    tls_shim_root *roots;
    int count, capacity;
    unsigned char **texts;        // copies of the bundles the roots point into
    int text_count;
} tls_shim_root_index;

// Base64 digit values; 64: a blank or line break, 65: '=', 255: anything else.
static const unsigned char *tls_shim_base64_table(void) {
    static unsigned char table[256] = {0};
    static int ready = 0;
    if (!ready) {
        memset(table, 255, sizeof table);
        const char *digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; i++) table[(unsigned char)digits[i]] = (unsigned char)i;
        table['\n'] = table['\r'] = table[' '] = table['\t'] = 64;
        table['='] = 65;
        ready = 1;
    }
    return table;
}

// Decodes the base64 text in [p, end) into out, ignoring line breaks and blanks, stopping once
// `limit` bytes are out (out needs room for limit + 2); returns the decoded length, or -1 for
// anything else in the text (or data after '='). Four digits at a time where it can.
static long tls_shim_base64_decode(const unsigned char *p, const unsigned char *end, unsigned char *out, long limit) {
    const unsigned char *table = tls_shim_base64_table();
    unsigned int bits = 0, pending = 0;
    long n = 0;
    int padded = 0;
    while (p < end && n < limit) {
        if (pending == 0 && !padded) {
            while (end - p >= 4 && n < limit) {
                unsigned int a = table[p[0]], b = table[p[1]], c = table[p[2]], d = table[p[3]];
                if ((a | b | c | d) >= 64) break;
                unsigned int v = a << 18 | b << 12 | c << 6 | d;
                out[n] = (unsigned char)(v >> 16);
                out[n + 1] = (unsigned char)(v >> 8);
                out[n + 2] = (unsigned char)v;
                n += 3;
                p += 4;
            }
            if (p == end || n >= limit) break;
        }
        unsigned int value = table[*p++];
        if (value == 64) continue;
        if (value == 65) { padded = 1; continue; }
        if (value > 65 || padded) return -1;
        bits = (bits << 6) | value;
        pending += 6;
        if (pending >= 8) {
            pending -= 8;
            out[n++] = (unsigned char)(bits >> pending);
        }
    }
    return n;
}

// Reads one DER tag and length at *p (within end); returns the content start, or NULL. With
// `truncated`, the content may run past end (a container whose start is all we have).
static const unsigned char *tls_shim_der_enter(const unsigned char *p, const unsigned char *end, long *length, int truncated) {
    if (end - p < 2) return NULL;
    p++;  // tag
    long n = *p++;
    if (n & 0x80) {
        int bytes = n & 0x7f;
        if (bytes < 1 || bytes > 4 || end - p < bytes) return NULL;
        n = 0;
        while (bytes--) n = (n << 8) | *p++;
    }
    if (n > end - p && !truncated) return NULL;
    *length = n;
    return p;
}

// The subject Name in the first `length` bytes of a certificate's DER: Certificate {
// TBSCertificate { [0] version?, serial, signature, issuer, validity, subject, ... } }.
static int tls_shim_der_subject(const unsigned char *der, long length, const unsigned char **subject, long *subject_length) {
    const unsigned char *end = der + length, *p;
    long n;
    if (!(p = tls_shim_der_enter(der, end, &n, 1))) return 0;        // Certificate
    if (!(p = tls_shim_der_enter(p, end, &n, 1))) return 0;          // TBSCertificate
    if (p < end && *p == 0xa0) {                                     // [0] version
        const unsigned char *q = tls_shim_der_enter(p, end, &n, 0);
        if (!q) return 0;
        p = q + n;
    }
    for (int skip = 0; skip < 4; skip++) {                           // serial, signature, issuer, validity
        const unsigned char *q = tls_shim_der_enter(p, end, &n, 0);
        if (!q) return 0;
        p = q + n;
    }
    const unsigned char *q = tls_shim_der_enter(p, end, &n, 0);      // subject
    if (!q) return 0;
    *subject = p;
    *subject_length = (q + n) - p;
    return 1;
}

// Decodes an indexed root into the store (once: it then lives there, where later look-ups find
// it); returns the certificate, not owned by the caller, or NULL.
static X509 *tls_shim_decode_root(X509_STORE *store, tls_shim_root *root) {
    OPENSSL_free(root->subject);
    root->subject = NULL;
    unsigned char *der = (unsigned char *)OPENSSL_malloc((size_t)root->base64_length / 4 * 3 + 3);
    if (!der) return NULL;
    long der_length = tls_shim_base64_decode(root->base64, root->base64 + root->base64_length, der, root->base64_length);
    const unsigned char *p = der;
    X509 *cert = der_length > 0 ? d2i_X509(NULL, &p, der_length) : NULL;
    OPENSSL_free(der);
    if (!cert) return NULL;
    int added = X509_STORE_add_cert(store, cert);
    X509_free(cert);  // the store holds its own reference
    return added ? cert : NULL;
}

static int tls_shim_lazy_get_by_subject(X509_LOOKUP *lookup, X509_LOOKUP_TYPE type, const X509_NAME *name, X509_OBJECT *result) {
    if (type != X509_LU_X509) return 0;
    tls_shim_root_index *index = (tls_shim_root_index *)X509_LOOKUP_get_method_data(lookup);
    unsigned char *wanted = NULL;
    int wanted_length = i2d_X509_NAME(name, &wanted);
    if (!index || wanted_length <= 0) return 0;
    int found = 0;
    for (int i = 0; i < index->count; i++) {
        tls_shim_root *root = &index->roots[i];
        if (!root->subject || root->subject_length != wanted_length || memcmp(root->subject, wanted, (size_t)wanted_length) != 0) continue;
        // The same certificate is often indexed twice (a bundle and a directory's file): its
        // later copies are retired undecoded.
        for (int j = i + 1; j < index->count; j++) {
            tls_shim_root *copy = &index->roots[j];
            if (copy->subject && copy->base64_length == root->base64_length &&
                memcmp(copy->base64, root->base64, (size_t)root->base64_length) == 0) {
                OPENSSL_free(copy->subject);
                copy->subject = NULL;
            }
        }
        X509 *cert = tls_shim_decode_root(X509_LOOKUP_get_store(lookup), root);
        if (cert && !found) found = X509_OBJECT_set1_X509(result, cert);
    }
    OPENSSL_free(wanted);
    return found;
}

static void tls_shim_lazy_free(X509_LOOKUP *lookup) {
    tls_shim_root_index *index = (tls_shim_root_index *)X509_LOOKUP_get_method_data(lookup);
    if (!index) return;
    for (int i = 0; i < index->count; i++) OPENSSL_free(index->roots[i].subject);
    for (int i = 0; i < index->text_count; i++) OPENSSL_free(index->texts[i]);
    OPENSSL_free(index->roots);
    OPENSSL_free(index->texts);
    OPENSSL_free(index);
}

// The store's lazy index, created on first use (X509_STORE_add_lookup returns the store's
// existing lookup for a method it already has).
static tls_shim_root_index *tls_shim_lazy_index(X509_STORE *store) {
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

// The first occurrence of `needle` in [p, end), or NULL.
static const unsigned char *tls_shim_find(const unsigned char *p, const unsigned char *end, const char *needle) {
    return (const unsigned char *)memmem(p, (size_t)(end - p), needle, strlen(needle));
}

// Adds every CERTIFICATE block of a PEM bundle to the store's lazy index; returns how many.
// Only the start of each block is decoded here (enough DER to reach the subject): OpenSSL's PEM
// reader, line by line through a BIO and decoding all, was most of a system-roots probe.
int tls_shim_add_lazy_bundle(X509_STORE *store, const void *pem, int length) {
    static const char begin[] = "-----BEGIN CERTIFICATE-----", finish[] = "-----END CERTIFICATE-----";
    enum { prefix_limit = 4096 };  // subjects end well before this
    tls_shim_root_index *index = tls_shim_lazy_index(store);
    if (!index || length <= 0) return 0;
    unsigned char **texts = (unsigned char **)OPENSSL_realloc(index->texts, sizeof(unsigned char *) * (size_t)(index->text_count + 1));
    if (!texts) return 0;
    index->texts = texts;
    unsigned char *text = (unsigned char *)OPENSSL_malloc((size_t)length);
    if (!text) return 0;
    memcpy(text, pem, (size_t)length);
    index->texts[index->text_count++] = text;

    const unsigned char *p = text, *end = text + length;
    unsigned char *prefix = (unsigned char *)OPENSSL_malloc(prefix_limit + 2);
    if (!prefix) return 0;
    int added = 0;
    while ((p = tls_shim_find(p, end, begin)) != NULL) {
        // As Go's pem.Decode: the BEGIN line starts a line, and so does the END line.
        if (p != text && p[-1] != '\n') {
            p++;
            continue;
        }
        const unsigned char *body = p + sizeof begin - 1;
        const unsigned char *stop = tls_shim_find(body, end, finish);
        if (!stop) break;
        p = stop + sizeof finish - 1;
        if (stop[-1] != '\n') continue;
        const unsigned char *subject = NULL;
        long subject_length = 0;
        // Most subjects end within the first 512 bytes; the rest need more of the certificate.
        long decoded = tls_shim_base64_decode(body, stop, prefix, 512);
        if (decoded <= 0) continue;
        if (!tls_shim_der_subject(prefix, decoded, &subject, &subject_length)) {
            decoded = tls_shim_base64_decode(body, stop, prefix, prefix_limit);
            if (decoded <= 0 || !tls_shim_der_subject(prefix, decoded, &subject, &subject_length)) continue;
        }
        if (index->count == index->capacity) {
            int capacity = index->capacity ? index->capacity * 2 : 256;
            tls_shim_root *grown = (tls_shim_root *)OPENSSL_realloc(index->roots, sizeof(tls_shim_root) * (size_t)capacity);
            if (!grown) break;
            index->roots = grown;
            index->capacity = capacity;
        }
        unsigned char *copy = (unsigned char *)OPENSSL_malloc((size_t)subject_length);
        if (!copy) break;
        memcpy(copy, subject, (size_t)subject_length);
        index->roots[index->count++] = (tls_shim_root){body, stop - body, copy, subject_length};
        added++;
    }
    OPENSSL_free(prefix);
    return added;
}

// Decodes every indexed root now, when there are at most `limit` of them (a -tls-ca-cert file,
// not a system bundle): called while the client waits for the server's first flight, it takes
// the decoding (and OpenSSL's decoder set-up) off the critical path.
void tls_shim_decode_small_index(X509_STORE *store, int limit) {
    tls_shim_root_index *index = tls_shim_lazy_index(store);
    if (!index || index->count > limit) return;
    for (int i = 0; i < index->count; i++) {
        if (index->roots[i].subject) tls_shim_decode_root(store, &index->roots[i]);
    }
}

// Go's x509.HostnameError text for a certificate that does not match `host` (as given; `matched`
// is the form that was matched: no trailing dot, IPv4-mapped as IPv4; `is_ip`: an IP address): the legacy Common Name case, an IP host against a certificate
// without IP SANs, no names at all, or the names it is valid for (IP SANs for an IP host, DNS
// SANs for a name).
void tls_shim_hostname_error(X509 *cert, const char *host, const char *matched, int is_ip, char *buf, size_t size) {
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int has_san = X509_get_ext_by_NID(cert, NID_subject_alt_name, -1) >= 0;
    char common_name[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, common_name, (int)sizeof common_name);
    if (!has_san && common_name[0] && (is_ip ? strcmp(common_name, matched) == 0 : X509_check_host(cert, matched, 0, 0, NULL) == 1)) {
        snprintf(buf, size, "x509: certificate relies on legacy Common Name field, use SANs instead");
        if (names) GENERAL_NAMES_free(names);
        return;
    }
    char valid[1024] = "";
    int count = names ? sk_GENERAL_NAME_num(names) : 0;
    for (int i = 0; i < count; i++) {
        GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        char item[64] = "";
        if (!is_ip && name->type == GEN_DNS) {
            snprintf(item, sizeof item, "%.*s", ASN1_STRING_length(name->d.dNSName), (const char *)ASN1_STRING_get0_data(name->d.dNSName));
        } else if (is_ip && name->type == GEN_IPADD) {
            const unsigned char *ip = ASN1_STRING_get0_data(name->d.iPAddress);
            int len = ASN1_STRING_length(name->d.iPAddress);
            if (len == 4) snprintf(item, sizeof item, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
            else if (len == 16) {
                char *p = item;
                for (int k = 0; k < 16; k += 2) p += sprintf(p, k ? ":%x" : "%x", ip[k] << 8 | ip[k + 1]);
            }
        }
        if (!item[0]) continue;
        if (valid[0]) strncat(valid, ", ", sizeof valid - strlen(valid) - 1);
        strncat(valid, item, sizeof valid - strlen(valid) - 1);
    }
    if (names) GENERAL_NAMES_free(names);
    if (is_ip && !valid[0]) {
        snprintf(buf, size, "x509: cannot validate certificate for %s because it doesn't contain any IP SANs", host);
    } else if (!valid[0]) {
        snprintf(buf, size, "x509: certificate is not valid for any names, but wanted to match %s", host);
    } else {
        snprintf(buf, size, "x509: certificate is valid for %s, not %s", valid, host);
    }
}
