#include "tls_shim.h"
// The algorithms a TLS client needs, as one OpenSSL provider.
//
// Why: OpenSSL 3.0's built-in "default" provider offers about 300 algorithms, and the first fetch
// of each kind (cipher, digest, key type, decoder, ...) constructs a method for every algorithm of
// that kind. A TLS context alone fetches all 24 cipher kinds libssl knows, so a probe spent about
// half of its instructions building tables for Camellia, ARIA, SM4, DES and the like, and every
// certificate's public key went through decoder chains for a dozen key types.
//
// What: a provider, "grpc-init-tls", whose functions are the default provider's own, but whose
// algorithm lists keep only what TLS 1.2/1.3 with the usual certificates uses. It is initialised
// by the default provider's initialisation function, so the implementations run with a provider
// context bound to the same library context: their internal fetches (the DRBG's AES, HKDF's
// HMAC, a signature's digest) come back here too.
//
// The default provider's initialisation function is part of libcrypto.a but not of its public
// headers, and libcrypto.so does not export it. The reference is weak, so that the dynamically
// linked test build links at all; there the function is missing, which tls_shim_init reports,
// and OpenSSL's own default provider runs instead. The shipped static binary always has it (a
// test checks that the provider is the one in use).
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/provider.h>
#include <string.h>

extern int ossl_default_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                                      const OSSL_DISPATCH **out, void **provctx) __attribute__((weak));

// The first name of each kept algorithm, per operation.
// Ciphers: the TLS record ciphers (AEADs, and AES-CBC for TLS 1.2 CBC suites) and the AES modes
// the CTR DRBG runs on. Key types and signatures: RSA, RSA-PSS, ECDSA, EdDSA certificates; key
// exchange: ECDHE, X25519/X448 and FFDHE. HMAC as a key type and signature is TLS 1.2's CBC MAC.
static const char *const tls_provider_digests[] = {
    "SHA1", "SHA2-224", "SHA2-256", "SHA2-384", "SHA2-512", "MD5", "MD5-SHA1", "SHAKE-256", NULL};
static const char *const tls_provider_ciphers[] = {
    "AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305", "AES-128-CCM", "AES-256-CCM",
    "AES-128-CBC", "AES-256-CBC", "AES-128-ECB", "AES-192-ECB", "AES-256-ECB",
    "AES-128-CTR", "AES-192-CTR", "AES-256-CTR", NULL};
static const char *const tls_provider_macs[] = {"HMAC", NULL};
static const char *const tls_provider_kdfs[] = {"HKDF", "TLS13-KDF", "TLS1-PRF", NULL};
static const char *const tls_provider_rands[] = {"CTR-DRBG", "SEED-SRC", NULL};
static const char *const tls_provider_key_types[] = {
    "RSA", "RSA-PSS", "EC", "X25519", "X448", "ED25519", "ED448", "DH", "HMAC", NULL};
static const char *const tls_provider_key_exchanges[] = {"ECDH", "X25519", "X448", "DH", NULL};
static const char *const tls_provider_signatures[] = {"RSA", "ECDSA", "ED25519", "ED448", "HMAC", NULL};
static const char *const tls_provider_asym_ciphers[] = {"RSA", NULL};
// Decoders turn certificates' public keys and PEM/DER private keys into keys: those of the kept
// key types (not DH's parameters), plus the generic PEM-to-DER and SubjectPublicKeyInfo steps.
static const char *const tls_provider_decoders[] = {
    "RSA", "RSA-PSS", "EC", "X25519", "X448", "ED25519", "ED448", "DER", NULL};

static const char *const *tls_provider_kept(int operation) {
    switch (operation) {
    case OSSL_OP_DIGEST: return tls_provider_digests;
    case OSSL_OP_CIPHER: return tls_provider_ciphers;
    case OSSL_OP_MAC: return tls_provider_macs;
    case OSSL_OP_KDF: return tls_provider_kdfs;
    case OSSL_OP_RAND: return tls_provider_rands;
    case OSSL_OP_KEYMGMT: return tls_provider_key_types;
    case OSSL_OP_KEYEXCH: return tls_provider_key_exchanges;
    case OSSL_OP_SIGNATURE: return tls_provider_signatures;
    case OSSL_OP_ASYM_CIPHER: return tls_provider_asym_ciphers;
    case OSSL_OP_DECODER: return tls_provider_decoders;
    default: return NULL;  // encoders, stores, KEMs: a TLS client uses none
    }
}

#define TLS_PROVIDER_MAX_OPERATION 32
#define TLS_PROVIDER_MAX_KEPT 48
static OSSL_ALGORITHM tls_provider_algorithms[TLS_PROVIDER_MAX_OPERATION][TLS_PROVIDER_MAX_KEPT] = {{{0}}};
static OSSL_FUNC_provider_query_operation_fn *tls_provider_default_query = NULL;

// Whether `algorithm` is one of `kept`, by its first name (names are "NAME:ALIAS:OID").
static int tls_provider_keeps(const OSSL_ALGORITHM *algorithm, const char *const *kept) {
    const char *names = algorithm->algorithm_names;
    size_t length = strcspn(names, ":");
    // Decoders from Microsoft's key blob formats share the RSA name.
    const char *properties = algorithm->property_definition ? algorithm->property_definition : "";
    if (strstr(properties, "input=msblob") || strstr(properties, "input=pvk")) return 0;
    for (; *kept; kept++) {
        if (strlen(*kept) == length && strncmp(*kept, names, length) == 0) return 1;
    }
    return 0;
}

static const OSSL_ALGORITHM *tls_provider_query(void *provctx, int operation, int *no_cache) {
    *no_cache = 0;
    if (operation <= 0 || operation >= TLS_PROVIDER_MAX_OPERATION) return NULL;
    const char *const *kept = tls_provider_kept(operation);
    if (!kept) return NULL;
    // Filtered once per operation and kept for the process: the lists are the same for every
    // connection (nothing here is a connection's), OpenSSL caches what a provider returns, and
    // grpc-init runs its TLS on one thread.
    OSSL_ALGORITHM *out = tls_provider_algorithms[operation];
    if (out[0].algorithm_names) return out;
    int unused = 0;
    const OSSL_ALGORITHM *all = tls_provider_default_query(provctx, operation, &unused);
    size_t count = 0;
    for (; all && all->algorithm_names && count + 1 < TLS_PROVIDER_MAX_KEPT; all++) {
        if (tls_provider_keeps(all, kept)) out[count++] = *all;
    }
    return count ? out : NULL;
}

static OSSL_DISPATCH tls_provider_dispatch[8] = {{0}};

static int tls_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                             const OSSL_DISPATCH **out, void **provctx) {
    const OSSL_DISPATCH *base = NULL;
    if (!ossl_default_provider_init(handle, in, &base, provctx)) return 0;
    // The default provider's own table, with the query replaced.
    size_t count = 0;
    for (; base->function_id != 0 && count + 2 < sizeof tls_provider_dispatch / sizeof *tls_provider_dispatch; base++) {
        if (base->function_id == OSSL_FUNC_PROVIDER_QUERY_OPERATION) {
            tls_provider_default_query = OSSL_FUNC_provider_query_operation(base);
            tls_provider_dispatch[count].function_id = OSSL_FUNC_PROVIDER_QUERY_OPERATION;
            tls_provider_dispatch[count].function = (void (*)(void))tls_provider_query;
        } else {
            tls_provider_dispatch[count] = *base;
        }
        count++;
    }
    tls_provider_dispatch[count].function_id = 0;
    tls_provider_dispatch[count].function = NULL;
    if (!tls_provider_default_query) return 0;
    *out = tls_provider_dispatch;
    return 1;
}

// Makes "grpc-init-tls" the only provider of the default library context, so OpenSSL does not
// fall back to activating "default". Returns 1 when it is in use, 0 when it failed, -1 when this
// build lacks the default provider's initialisation function.
int tls_provider_install(void) {
    if (!ossl_default_provider_init) return -1;
    if (!OSSL_PROVIDER_add_builtin(NULL, "grpc-init-tls", tls_provider_init)) return 0;
    return OSSL_PROVIDER_load(NULL, "grpc-init-tls") != NULL;
}
