#include "tls_shim.h"
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

// SPIFFE X.509-SVID credentials for a TLS client context: the SVID chain and key as the Workload
// API sends them (DER), and the roots of each trust domain. A server is verified as go-spiffe's
// mTLS client configuration verifies it: its leaf must carry exactly one spiffe:// URI SAN, must
// not be a CA, and must chain to the roots of the trust domain that ID names; any ID is accepted,
// and host names are not checked.

// Loads DER certificates laid one after another: the first as the context's certificate, the
// rest as its chain. Returns how many, or 0 when the bytes are not all certificates.
int tls_spiffe_use_chain(SSL_CTX *ctx, const unsigned char *der, long length) {
    const unsigned char *p = der, *end = der + length;
    int count = 0;
    while (p < end) {
        X509 *cert = d2i_X509(NULL, &p, end - p);
        if (!cert) return 0;
        int ok = count == 0 ? SSL_CTX_use_certificate(ctx, cert) : SSL_CTX_add1_chain_cert(ctx, cert);
        X509_free(cert);
        if (ok != 1) return 0;
        count++;
    }
    return count;
}

// Loads a PKCS#8 DER private key for the context's certificate; 1 when it loads and matches.
int tls_spiffe_use_key(SSL_CTX *ctx, const unsigned char *der, long length) {
    const unsigned char *p = der;
    EVP_PKEY *key = d2i_AutoPrivateKey(NULL, &p, length);
    if (!key) return 0;
    int ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    return ok;
}

// A trust domain name is at most 255 bytes (the SPIFFE ID standard); there may be any number of
// them (a large federation), bounded only by the size of the Workload API's response.
enum { tls_spiffe_max_domain_length = 255 };

// The roots by trust domain, for one context (its SSL_CTX app data), the same for each of its
// connections. Why a connection's verification failed is the connection's own (its SSL ex_data).
typedef struct {
    int count, capacity;
    char **domains;
    STACK_OF(X509) **roots;
} tls_spiffe_trust;

enum { tls_spiffe_failure_size = 512 };
static int tls_spiffe_failure_index = -1;

static void tls_spiffe_free_failure(void *parent, void *failure, CRYPTO_EX_DATA *data, int index, long argl, void *argp) {
    (void)parent; (void)data; (void)index; (void)argl; (void)argp;
    OPENSSL_free(failure);
}

// The connection's failure buffer, made on first use ("" until a verification fails).
static char *tls_spiffe_failure_of(SSL *ssl) {
    if (tls_spiffe_failure_index < 0) return NULL;
    char *failure = SSL_get_ex_data(ssl, tls_spiffe_failure_index);
    if (!failure && (failure = OPENSSL_zalloc(tls_spiffe_failure_size)) != NULL) SSL_set_ex_data(ssl, tls_spiffe_failure_index, failure);
    return failure;
}

static tls_spiffe_trust *tls_spiffe_trust_of(SSL_CTX *ctx) {
    return (tls_spiffe_trust *)SSL_CTX_get_app_data(ctx);
}

// The trust domain of the certificate's SPIFFE ID into `domain`: 1, or 0 with the reason (in
// go-spiffe's words) in `failure`.
static int tls_spiffe_leaf_trust_domain(X509 *leaf, char *domain, size_t size, char *failure, size_t failure_size) {
    GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int uris = 0;
    const ASN1_IA5STRING *uri = NULL;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        if (name->type == GEN_URI) {
            uris++;
            uri = name->d.uniformResourceIdentifier;
        }
    }
    int ok = 0;
    if (uris == 0) {
        snprintf(failure, failure_size, "x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN");
    } else if (uris > 1) {
        snprintf(failure, failure_size, "x509svid: could not get leaf SPIFFE ID: certificate contains more than one URI SAN");
    } else {
        const char *text = (const char *)ASN1_STRING_get0_data(uri);
        int length = ASN1_STRING_length(uri);
        const char *scheme = "spiffe://";
        size_t scheme_length = strlen(scheme);
        if ((size_t)length <= scheme_length || strncmp(text, scheme, scheme_length) != 0) {
            snprintf(failure, failure_size, "x509svid: could not get leaf SPIFFE ID: scheme is missing or invalid (%.*s)", length, text);
        } else {
            const char *start = text + scheme_length, *stop = start;
            while (stop < text + length && *stop != '/') stop++;
            if (stop == start || (size_t)(stop - start) >= size) {
                snprintf(failure, failure_size, "x509svid: could not get leaf SPIFFE ID: trust domain is missing (%.*s)", length, text);
            } else {
                memcpy(domain, start, (size_t)(stop - start));
                domain[stop - start] = 0;
                ok = 1;
            }
        }
    }
    if (names) GENERAL_NAMES_free(names);
    return ok;
}

// Replaces OpenSSL's chain verification for the context (SSL_CTX_set_cert_verify_callback).
static int tls_spiffe_verify(X509_STORE_CTX *store_ctx, void *arg) {
    tls_spiffe_trust *trust = (tls_spiffe_trust *)arg;
    X509 *leaf = X509_STORE_CTX_get0_cert(store_ctx);
    SSL *ssl = X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    char scratch[tls_spiffe_failure_size];
    char *failure = ssl ? tls_spiffe_failure_of(ssl) : NULL;
    if (!failure) failure = scratch;
    const size_t failure_size = tls_spiffe_failure_size;
    char domain[256];
    failure[0] = 0;
    if (!leaf || !tls_spiffe_leaf_trust_domain(leaf, domain, sizeof domain, failure, failure_size)) {
        X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    // (X509_get_key_usage answers "everything" for a certificate without the extension.)
    int signs = (X509_get_extension_flags(leaf) & EXFLAG_KUSAGE) && (X509_get_key_usage(leaf) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    if (X509_check_ca(leaf) > 0 || signs) {
        snprintf(failure, failure_size, "x509svid: leaf certificate must not be a CA or have keyCertSign or cRLSign key usage");
        X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    for (int i = 0; i < trust->count; i++) {
        if (strcmp(trust->domains[i], domain) != 0) continue;
        X509_STORE_CTX_set0_trusted_stack(store_ctx, trust->roots[i]);
        // Any extended key usage, as go-spiffe verifies an SVID.
        X509_STORE_CTX_set_purpose(store_ctx, X509_PURPOSE_ANY);
        int ok = X509_verify_cert(store_ctx);
        if (ok != 1) {
            int error = X509_STORE_CTX_get_error(store_ctx);
            int unknown = error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY || error == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
                || error == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN || error == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
                || error == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
            snprintf(failure, failure_size,
                     "x509svid: could not verify leaf certificate: x509: %s (roots: the bundle of trust domain \"%s\")",
                     unknown ? "certificate signed by unknown authority" : X509_verify_cert_error_string(error), domain);
        }
        return ok;
    }
    snprintf(failure, failure_size, "x509svid: could not get X509 bundle: x509bundle: no X.509 bundle for trust domain \"%s\"", domain);
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

// Adds a trust domain's roots (DER certificates one after another) and, on the first call,
// installs the verification above. Returns how many roots; 0 when the bytes are not all
// certificates (or memory ran out), -1 when the name is longer than a trust domain can be.
int tls_spiffe_add_bundle(SSL_CTX *ctx, const char *domain, const unsigned char *der, long length) {
    tls_spiffe_trust *trust = tls_spiffe_trust_of(ctx);
    if (!trust) {
        if (tls_spiffe_failure_index < 0) {
            tls_spiffe_failure_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_spiffe_free_failure);
            if (tls_spiffe_failure_index < 0) return 0;
        }
        trust = (tls_spiffe_trust *)OPENSSL_zalloc(sizeof *trust);
        if (!trust) return 0;
        SSL_CTX_set_app_data(ctx, trust);
        SSL_CTX_set_cert_verify_callback(ctx, tls_spiffe_verify, trust);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (strlen(domain) > tls_spiffe_max_domain_length) return -1;
    if (trust->count == trust->capacity) {
        int capacity = trust->capacity ? trust->capacity * 2 : 8;
        char **domains = OPENSSL_realloc(trust->domains, sizeof *domains * (size_t)capacity);
        if (!domains) return 0;
        trust->domains = domains;
        STACK_OF(X509) **all = OPENSSL_realloc(trust->roots, sizeof *all * (size_t)capacity);
        if (!all) return 0;
        trust->roots = all;
        trust->capacity = capacity;
    }
    char *name = OPENSSL_strdup(domain);
    if (!name) return 0;
    STACK_OF(X509) *roots = sk_X509_new_null();
    const unsigned char *p = der, *end = der + length;
    while (roots && p < end) {
        X509 *cert = d2i_X509(NULL, &p, end - p);
        if (!cert || !sk_X509_push(roots, cert)) {
            X509_free(cert);
            sk_X509_pop_free(roots, X509_free);
            OPENSSL_free(name);
            return 0;
        }
    }
    if (!roots || sk_X509_num(roots) == 0) {
        sk_X509_free(roots);
        OPENSSL_free(name);
        return 0;
    }
    trust->domains[trust->count] = name;
    trust->roots[trust->count++] = roots;
    return sk_X509_num(roots);
}

// Frees what tls_spiffe_add_bundle made; call before SSL_CTX_free.
void tls_spiffe_release(SSL_CTX *ctx) {
    tls_spiffe_trust *trust = tls_spiffe_trust_of(ctx);
    if (!trust) return;
    SSL_CTX_set_app_data(ctx, NULL);
    for (int i = 0; i < trust->count; i++) {
        sk_X509_pop_free(trust->roots[i], X509_free);
        OPENSSL_free(trust->domains[i]);
    }
    OPENSSL_free(trust->domains);
    OPENSSL_free(trust->roots);
    OPENSSL_free(trust);
}

// Why the SPIFFE verification of this connection failed ("" when it did not, or OpenSSL's own
// check did).
const char *tls_spiffe_failure(SSL *ssl) {
    const char *failure = tls_spiffe_failure_index < 0 ? NULL : SSL_get_ex_data(ssl, tls_spiffe_failure_index);
    return failure ? failure : "";
}
