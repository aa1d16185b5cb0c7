/* Built when TLS is compiled out (-DSK_WITH_TLS=OFF): every TLS entry point
 * fails cleanly with SK_ENOTLS. Streams keep the plain transport. */
#include "internal.h"

#include <string.h>

/* ---- the public API, all failing with SK_ENOTLS ---- */

const char *sk_tls_last_error(void) {
  return "sockit was built without TLS support";
}

int sk_tls_ctx_new(sk_tls_ctx **out, const sk_tls_options *opt) {
  SK__UNUSED(opt);
  if (out != NULL)
    *out = NULL;
  return SK_ENOTLS;
}

void sk_tls_ctx_free(sk_tls_ctx *ctx) {
  SK__UNUSED(ctx);
}

sk_tls_ctx *sk_tls_ctx_ref(sk_tls_ctx *ctx) {
  return ctx;
}

int sk_tls_ctx_fingerprint(const sk_tls_ctx *ctx, char *buf, size_t len) {
  SK__UNUSED(ctx);
  SK__UNUSED(buf);
  SK__UNUSED(len);
  return SK_ENOTLS;
}

int sk_stream_tls_start(sk_stream *s, sk_tls_ctx *ctx, const char *servername,
                        sk_tls_handshake_cb cb) {
  SK__UNUSED(s);
  SK__UNUSED(ctx);
  SK__UNUSED(servername);
  SK__UNUSED(cb);
  return SK_ENOTLS;
}

const char *sk_stream_tls_error(const sk_stream *s) {
  SK__UNUSED(s);
  return "";
}

const char *sk_stream_tls_version(const sk_stream *s) {
  SK__UNUSED(s);
  return NULL;
}

const char *sk_stream_tls_cipher(const sk_stream *s) {
  SK__UNUSED(s);
  return NULL;
}

const char *sk_stream_tls_alpn(const sk_stream *s) {
  SK__UNUSED(s);
  return NULL;
}

int sk_stream_tls_peer_fingerprint(const sk_stream *s, char *buf, size_t len) {
  SK__UNUSED(s);
  SK__UNUSED(buf);
  SK__UNUSED(len);
  return SK_ENOTLS;
}

int sk_tls_connect(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                   const char *servername, int timeout_ms) {
  SK__UNUSED(ctx);
  SK__UNUSED(servername);
  SK__UNUSED(timeout_ms);
  if (t != NULL) {
    t->sock = sock;
    t->priv = NULL;
  }
  return SK_ENOTLS;
}

int sk_tls_accept(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                  int timeout_ms) {
  return sk_tls_connect(t, sock, ctx, NULL, timeout_ms);
}

int sk_tls_send(sk_tls_socket *t, const void *buf, size_t len, int timeout_ms) {
  SK__UNUSED(t);
  SK__UNUSED(buf);
  SK__UNUSED(len);
  SK__UNUSED(timeout_ms);
  return SK_ENOTLS;
}

ssize_t sk_tls_recv(sk_tls_socket *t, void *buf, size_t len, int timeout_ms) {
  SK__UNUSED(t);
  SK__UNUSED(buf);
  SK__UNUSED(len);
  SK__UNUSED(timeout_ms);
  return SK_ENOTLS;
}

int sk_tls_close(sk_tls_socket *t, int timeout_ms) {
  SK__UNUSED(t);
  SK__UNUSED(timeout_ms);
  return SK_ENOTLS;
}

void sk_tls_free(sk_tls_socket *t) {
  if (t != NULL)
    t->priv = NULL;
}

const char *sk_tls_version(const sk_tls_socket *t) {
  SK__UNUSED(t);
  return NULL;
}

const char *sk_tls_cipher(const sk_tls_socket *t) {
  SK__UNUSED(t);
  return NULL;
}

const char *sk_tls_alpn(const sk_tls_socket *t) {
  SK__UNUSED(t);
  return NULL;
}

int sk_tls_peer_fingerprint(const sk_tls_socket *t, char *buf, size_t len) {
  SK__UNUSED(t);
  SK__UNUSED(buf);
  SK__UNUSED(len);
  return SK_ENOTLS;
}

int sk_tls_ctx_cert(const sk_tls_ctx *ctx, size_t index, sk_tls_cert *out) {
  SK__UNUSED(ctx);
  SK__UNUSED(index);
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  return SK_ENOTLS;
}

int sk_tls_cert_from_der(sk_tls_cert *out, const void *der, size_t len) {
  SK__UNUSED(der);
  SK__UNUSED(len);
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  return SK_ENOTLS;
}

void sk_tls_cert_free(sk_tls_cert *cert) {
  if (cert != NULL)
    memset(cert, 0, sizeof(*cert));
}

int sk_stream_tls_peer_cert(const sk_stream *s, sk_tls_cert *out) {
  SK__UNUSED(s);
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  return SK_ENOTLS;
}

int sk_stream_tls_resumed(const sk_stream *s) {
  SK__UNUSED(s);
  return SK_ENOTLS;
}

int sk_tls_peer_cert(const sk_tls_socket *t, sk_tls_cert *out) {
  SK__UNUSED(t);
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  return SK_ENOTLS;
}

int sk_tls_resumed(const sk_tls_socket *t) {
  SK__UNUSED(t);
  return SK_ENOTLS;
}

/* The sync half-close, partial counts and the step API. */
int sk_tls_send_all(sk_tls_socket *t, const void *buf, size_t len, size_t *sent,
                    int timeout_ms) {
  SK__UNUSED(t);
  SK__UNUSED(buf);
  SK__UNUSED(len);
  SK__UNUSED(timeout_ms);
  if (sent != NULL)
    *sent = 0;
  return SK_ENOTLS;
}

int sk_tls_shutdown(sk_tls_socket *t, int timeout_ms) {
  SK__UNUSED(t);
  SK__UNUSED(timeout_ms);
  return SK_ENOTLS;
}

int sk_tls_connect_start(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                         const char *servername) {
  SK__UNUSED(sock);
  SK__UNUSED(ctx);
  SK__UNUSED(servername);
  if (t != NULL)
    t->priv = NULL;
  return SK_ENOTLS;
}

int sk_tls_accept_start(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx) {
  return sk_tls_connect_start(t, sock, ctx, NULL);
}

int sk_tls_handshake_step(sk_tls_socket *t, int *events) {
  SK__UNUSED(t);
  SK__UNUSED(events);
  return SK_ENOTLS;
}

ssize_t sk_tls_send_step(sk_tls_socket *t, const void *buf, size_t len,
                         int *events) {
  SK__UNUSED(t);
  SK__UNUSED(buf);
  SK__UNUSED(len);
  SK__UNUSED(events);
  return SK_ENOTLS;
}

ssize_t sk_tls_recv_step(sk_tls_socket *t, void *buf, size_t len, int *events) {
  return sk_tls_send_step(t, buf, len, events);
}

size_t sk_tls_pending(const sk_tls_socket *t) {
  SK__UNUSED(t);
  return 0;
}

int sk_tls_shutdown_step(sk_tls_socket *t, int *events) {
  SK__UNUSED(events);
  return sk_tls_shutdown(t, 0);
}
