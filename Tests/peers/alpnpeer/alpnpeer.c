/* A TLS server that selects an ALPN protocol the client did not offer, which no real gRPC server
 * does (OpenSSL's and Go's servers select from the client's list or refuse). Serves each
 * connection's handshake, then holds it until the client closes.
 * Usage: alpnpeer CERT KEY PROTOCOL     prints "READY 127.0.0.1:PORT" */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned char protocol[256];

static int select_protocol(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                           unsigned int inlen, void *arg) {
    (void)ssl, (void)in, (void)inlen, (void)arg;
    *out = protocol + 1;
    *outlen = protocol[0];
    return SSL_TLSEXT_ERR_OK;
}

int main(int argc, char **argv) {
    if (argc != 4 || strlen(argv[3]) == 0 || strlen(argv[3]) > 255) {
        fprintf(stderr, "usage: alpnpeer CERT KEY PROTOCOL\n");
        return 2;
    }
    protocol[0] = (unsigned char)strlen(argv[3]);
    memcpy(protocol + 1, argv[3], protocol[0]);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_protocol, NULL);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 16) != 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &length) != 0) {
        perror("alpnpeer: listen");
        return 1;
    }
    printf("READY 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) continue;
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            char buf[4096];
            while (SSL_read(ssl, buf, sizeof buf) > 0) {}
        }
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
    }
}
