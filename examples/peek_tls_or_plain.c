/* One port for TLS and plain text: peek at the first byte of each
 * connection. 0x16 starts every TLS ClientHello (a handshake record), so
 * those get a TLS handshake; anything else is served as plain text. Each
 * connection is greeted with "tls\n" or "plain\n", then echoed. */
#include <sockit.h>
#include <stdio.h>
#include <stdlib.h>

#define TLS_HANDSHAKE_RECORD 0x16

static void serve(sk_socket *c, sk_tls_ctx *ctx) {
  sk_tls_socket t = {0};
  unsigned char first = 0;
  char buf[4096];
  /* Peeking leaves the byte in place for the TLS library (or the echo). */
  ssize_t n = sk_socket_recv_flags(c, &first, 1, SK_MSG_PEEK, 10000);
  int tls = n == 1 && first == TLS_HANDSHAKE_RECORD;
  int rc = n < 0 ? (int)n : 0;
  if (rc == 0 && tls)
    rc = ctx != NULL ? sk_tls_accept(&t, c, ctx, 10000) : SK_ENOTLS;
  if (rc == 0)
    rc = tls ? sk_tls_send(&t, "tls\n", 4, 10000)
             : sk_socket_send(c, "plain\n", 6, 10000);
  while (rc == 0 && (n = tls ? sk_tls_recv(&t, buf, sizeof(buf), 10000)
                             : sk_socket_recv(c, buf, sizeof(buf), 10000)) > 0)
    rc = tls ? sk_tls_send(&t, buf, (size_t)n, 10000)
             : sk_socket_send(c, buf, (size_t)n, 10000);
  if (rc == 0 && n < 0)
    rc = (int)n;
  fprintf(stderr, "%s connection: %s\n", tls ? "tls" : "plain",
          rc == 0 ? "done" : sk_strerror(rc));
  if (t.priv != NULL)
    sk_tls_close(&t, 1000); /* close_notify, then closes the socket */
  else
    sk_socket_close(c, 1000);
}

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8443";
  int count = argc > 2 ? atoi(argv[2]) : 0; /* connections; 0: forever */
  sk_tls_options opt = {.server = 1, .self_signed = 1};
  sk_tls_ctx *ctx = NULL;
  sk_socket lis = SK_SOCKET_INIT, c;
  sk_endpoint ep;
  char name[SK_ENDPOINT_STRLEN];
  if (sk_tls_ctx_new(&ctx, &opt) != 0)
    fprintf(stderr, "no TLS: %s\n", sk_tls_last_error());
  int rc = sk_socket_listen_text(&lis, addr, 0);
  if (rc == 0 && (rc = sk_socket_local(&lis, &ep)) == 0) {
    sk_endpoint_format(&ep, name, sizeof(name));
    fprintf(stderr, "listening on %s\n", name);
  }
  for (int i = 0; rc == 0 && (count == 0 || i < count); i++)
    if ((rc = sk_socket_accept(&lis, &c, NULL, -1)) == 0)
      serve(&c, ctx);
  if (rc != 0)
    fprintf(stderr, "%s: %s\n", addr, sk_strerror(rc));
  sk_socket_close(&lis, 0);
  sk_tls_ctx_free(ctx);
  return rc != 0;
}
