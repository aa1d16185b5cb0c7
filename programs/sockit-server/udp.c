/* The datagram side of the server (RFC 862/863/864 over UDP): every worker
 * has its own socket on the port (SO_REUSEPORT), each datagram is handed to
 * the mode's dgram callback, and replies go straight back to the sender. */
#include "server.h"

#include <errno.h>

#include "log.h"

/* Datagrams from the echo (7) and chargen (19) ports are never answered:
 * two such services answering each other would loop forever. Port 0 is
 * not a valid source at all. */
static int loop_risk(uint16_t port) {
  return port == 7 || port == 19 || port == 0;
}

static void on_dgram(sk_udp *su, ssize_t n, const void *buf,
                     const sk_endpoint *from, const sk_endpoint *to,
                     unsigned flags) {
  struct udp_listener *u = su->h.data;
  const struct mode *m = u->w->srv->cfg.mode;
  char a[SK_ENDPOINT_STRLEN];
  (void)to;

  if (n < 0) {
    /* ICMP errors for earlier replies: the peer went away. Receiving
     * goes on. */
    if (n != -ECANCELED)
      log_debug("%s: %s", u->spec->url, sk_strerror((int)n));
    return;
  }
  if (from == NULL || from->len == 0)
    return;
  if (loop_risk(sk_endpoint_port(from))) {
    if (log_level() >= LOG_DEBUG) {
      sk_endpoint_format(from, a, sizeof(a));
      log_msg(LOG_DEBUG, "ignoring datagram from %s (source port %u)", a,
              (unsigned)sk_endpoint_port(from));
    }
    return;
  }
  if (log_level() >= LOG_INFO) {
    sk_endpoint_format(from, a, sizeof(a));
    log_msg(LOG_INFO, "recv %zd bytes from %s (udp)%s", n, a,
            (flags & SK_UDP_TRUNCATED) ? " (truncated)" : "");
  }
  m->dgram(u, buf, (size_t)n, from);
}

int udp_listener_start(struct udp_listener *u) {
  return sk_udp_recv_start(&u->u, on_dgram);
}

void udp_reply(struct udp_listener *u, const void *buf, size_t len,
               const sk_endpoint *to) {
  int rc = sk_udp_send(&u->u, buf, len, to, NULL, NULL);
  if (rc < 0 && log_level() >= LOG_DEBUG) {
    char a[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(to, a, sizeof(a));
    log_msg(LOG_DEBUG, "reply to %s dropped: %s", a, sk_strerror(rc));
  } else if (rc == 0 && log_level() >= LOG_INFO) {
    char a[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(to, a, sizeof(a));
    log_msg(LOG_INFO, "sent %zu bytes to %s (udp)", len, a);
  }
}
