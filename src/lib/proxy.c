/* The PROXY protocol (proxy.h). Placeholder until the parser lands. */
#include "internal.h"
#include "sockit/proxy.h"

ssize_t sk_proxy_parse(const void *buf, size_t len, sk_proxy_header *h) {
  SK__UNUSED(buf);
  SK__UNUSED(len);
  SK__UNUSED(h);
  return -EPROTO;
}

ssize_t sk_proxy_format(void *buf, size_t size, int version,
                        const sk_endpoint *src, const sk_endpoint *dst) {
  SK__UNUSED(buf);
  SK__UNUSED(size);
  SK__UNUSED(version);
  SK__UNUSED(src);
  SK__UNUSED(dst);
  return -ENOSYS;
}

int sk_stream_proxy_accept(sk_stream *s, sk_proxy_cb cb) {
  SK__UNUSED(s);
  SK__UNUSED(cb);
  return -ENOSYS;
}
