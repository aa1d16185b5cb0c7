/* Built when TLS is compiled out (-DSK_WITH_TLS=OFF): every TLS entry point
 * fails cleanly with SK_ENOTLS, and the stream hooks are never reached
 * because no stream can have TLS state. */
#include "internal.h"

void sk__tls_input(sk_stream *s, const unsigned char *buf, size_t n) {
  SK__UNUSED(s);
  SK__UNUSED(buf);
  SK__UNUSED(n);
}

void sk__tls_read_end(sk_stream *s, int status) {
  sk__stream_deliver(s, status, NULL);
}

int sk__tls_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                  sk_send_cb cb, void *arg) {
  SK__UNUSED(s);
  SK__UNUSED(iov);
  SK__UNUSED(iovcnt);
  SK__UNUSED(cb);
  SK__UNUSED(arg);
  return SK_ENOTLS;
}

int sk__tls_shutdown(sk_stream *s, sk_send_cb cb, void *arg) {
  return sk__stream_raw_shutdown(s, cb, arg);
}

void sk__tls_resume(sk_stream *s) {
  SK__UNUSED(s);
}

void sk__tls_free(sk_stream *s) {
  s->tls = NULL;
}
