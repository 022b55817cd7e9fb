// libFuzzer target: a PEM bundle's text (a -tls-ca-cert file, a system bundle, a SPIFFE trust
// bundle's PEM) into the lazy root index: the base64 decoder, the DER walker that finds each
// certificate's subject, and the decoding of every indexed root.
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include "tls_shim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 20)) return 0;
    X509_STORE *store = X509_STORE_new();
    if (!store) return 0;
    tls_shim_add_lazy_bundle(store, data, (int)size);
    tls_shim_decode_small_index(store, 64);
    X509_STORE_free(store);
    return 0;
}
