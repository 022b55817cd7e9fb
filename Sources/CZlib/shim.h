#include <zlib.h>

// deflateInit2/inflateInit2 are macros; these give Swift callable functions.
static inline int grpc_init_deflate_init_gzip(z_stream *s) {
    return deflateInit2(s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
static inline int grpc_init_inflate_init_gzip(z_stream *s) {
    return inflateInit2(s, 15 + 16);
}
