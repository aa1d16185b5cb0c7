/* libFuzzer target for the PROXY protocol header parser (proxy.c).
 *
 * Every input is parsed. The result must be consistent with the contract
 * in proxy.h: a count no larger than the input and the header's length;
 * every prefix of bytes the parser accepted (or asked more for) is itself
 * a valid beginning, never -EPROTO; the accepted bytes alone parse the
 * same; and the addresses of a header, formatted again (v1 and v2 where
 * they can carry them), parse back equal.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(int version, const sk_proxy_header *h) {
  unsigned char buf[SK_PROXY_MAX_FORMAT];
  sk_proxy_header g;
  ssize_t n = sk_proxy_format(buf, sizeof(buf), version, &h->src, &h->dst);
  if (n <= 0 || (size_t)n > sizeof(buf))
    abort();
  if (sk_proxy_parse(buf, (size_t)n, &g) != n || g.version != version ||
      g.length != (size_t)n)
    abort();
  /* v1 cannot carry Unix, and neither version an IP and a Unix address:
   * UNKNOWN or LOCAL. An IPv4 and an IPv6 address (a TCP6 line with one
   * IPv4-mapped address is read as IPv6 and IPv4) go out as IPv6, the
   * IPv4 one mapped, and read back the same. */
  int fs = sk_endpoint_family(&h->src), fd = sk_endpoint_family(&h->dst);
  int ip =
      (fs == AF_INET || fs == AF_INET6) && (fd == AF_INET || fd == AF_INET6);
  if ((version == 1 && (fs == AF_UNIX || fd == AF_UNIX)) || (fs != fd && !ip)) {
    if (!g.local)
      abort();
    return;
  }
  if (g.local || !sk_endpoint_equal(&g.src, &h->src) ||
      !sk_endpoint_equal(&g.dst, &h->dst))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sk_proxy_header h, p;
  ssize_t rc = sk_proxy_parse(data, size, &h);
  size_t upto;

  if (rc < 0) {
    if (rc != -EPROTO)
      abort();
    return 0;
  }
  if ((size_t)rc > size || (rc > 0 && (size_t)rc > h.length))
    abort();
  if (rc > 0 && (h.version < 1 || h.version > 2))
    abort();

  /* The bytes the parser took (or, when it wants more, all of them): each
   * prefix is a valid beginning. */
  upto = rc > 0 ? (size_t)rc : size;
  for (size_t n = 0; n < upto; n++) {
    ssize_t r = sk_proxy_parse(data, n, &p);
    if (r < 0 || (size_t)r > n)
      abort();
  }
  if (rc == 0)
    return 0;
  if (sk_proxy_parse(data, (size_t)rc, &p) != rc || p.length != h.length ||
      p.local != h.local || !sk_endpoint_equal(&p.src, &h.src) ||
      !sk_endpoint_equal(&p.dst, &h.dst))
    abort();

  if (h.local) {
    if (sk_endpoint_family(&h.src) != AF_UNSPEC ||
        sk_endpoint_family(&h.dst) != AF_UNSPEC)
      abort();
    return 0;
  }
  round_trip(1, &h);
  round_trip(2, &h);
  return 0;
}
