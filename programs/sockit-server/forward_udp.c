/* --mode forward over UDP: a session per client address (forward.h).
 * Placeholder: datagrams are dropped until the sessions land. */
#include "forward.h"

void forward_dgram(struct udp_listener *u, const unsigned char *buf, size_t len,
                   const sk_endpoint *from) {
  (void)u;
  (void)buf;
  (void)len;
  (void)from;
}

void forward_udp_close(struct udp_listener *u) {
  (void)u;
}
