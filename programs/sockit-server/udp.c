/* The datagram side of the server (RFC 862/863/864 over UDP): every worker
 * has its own socket on the port (SO_REUSEPORT), each datagram is handed to
 * the mode's dgram callback, and replies go straight back to the sender.
 *
 * A UDP source address can be forged, so a reply may be aimed at anyone.
 * Three rules keep the server from being a reflector or a loop:
 *   - datagrams that could only start a loop are dropped unanswered: from
 *     the echo and chargen ports, from port 0, from multicast or broadcast
 *     addresses, and from any of this server's own UDP listeners (a
 *     listener on a wildcard address counts every address of this host:
 *     loopback, the unspecified address and the interface addresses
 *     getifaddrs(3) lists at start);
 *   - replies to one source address are rate-limited (--udp-rate,
 *     --udp-burst), so a loop with another service ends once its bucket
 *     runs dry and one reply is dropped;
 *   - a source is never sent more bytes than it sent (plus a small burst),
 *     which takes the amplification out of chargen.
 * The per-source state is in ratelimit.c. Forwarded replies (--mode
 * forward) come after the datagram they answer, from a session's upstream:
 * udp_claim_credit() and udp_reply_later() hold them to the same rules,
 * with the bytes a client sent kept in its session's budget meanwhile;
 * the client's own datagrams are always forwarded (the rate is for
 * replies), and --udp-rate 0 lifts the byte budget of forwarded replies
 * as well. */
#include "server.h"

#include <errno.h>
#include <ifaddrs.h>
#include <pthread.h>
#include <string.h>

#include "forward.h"
#include "log.h"

/* The addresses of this host's interfaces, read once at start. */
#define MAX_LOCAL_ADDRS 256
static struct local_addr {
  unsigned char family;
  unsigned char addr[16];
} local_addrs[MAX_LOCAL_ADDRS];
static size_t nlocal_addrs;
static pthread_once_t local_once = PTHREAD_ONCE_INIT;

static void local_addrs_init(void) {
  struct ifaddrs *ifs, *i;
  if (getifaddrs(&ifs) < 0) {
    log_warn("getifaddrs: %s; only loopback sources count as this host's "
             "own",
             strerror(errno));
    return;
  }
  for (i = ifs; i != NULL && nlocal_addrs < MAX_LOCAL_ADDRS; i = i->ifa_next) {
    struct local_addr *la = &local_addrs[nlocal_addrs];
    if (i->ifa_addr == NULL)
      continue;
    if (i->ifa_addr->sa_family == AF_INET) {
      memcpy(la->addr, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr,
             4);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      memcpy(la->addr, &((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr,
             16);
    } else {
      continue;
    }
    la->family = (unsigned char)i->ifa_addr->sa_family;
    nlocal_addrs++;
  }
  freeifaddrs(ifs);
}

static int is_unspecified(const sk_endpoint *ep) {
  static const unsigned char zero[16];
  if (ep->u.sa.sa_family == AF_INET)
    return ep->u.in4.sin_addr.s_addr == 0;
  return memcmp(&ep->u.in6.sin6_addr, zero, 16) == 0;
}

/* 1 if ep's address belongs to this host: loopback, the unspecified
 * address (which reaches this host too), or an interface address. */
static int is_local(const sk_endpoint *ep) {
  int af = ep->u.sa.sa_family;
  const unsigned char *a = af == AF_INET
                               ? (const unsigned char *)&ep->u.in4.sin_addr
                               : (const unsigned char *)&ep->u.in6.sin6_addr;
  if (is_unspecified(ep))
    return 1;
  if (af == AF_INET ? a[0] == 127 : IN6_IS_ADDR_LOOPBACK(&ep->u.in6.sin6_addr))
    return 1;
  for (size_t i = 0; i < nlocal_addrs; i++)
    if (local_addrs[i].family == af &&
        memcmp(local_addrs[i].addr, a, af == AF_INET ? 4 : 16) == 0)
      return 1;
  return 0;
}

/* 1 if a datagram from ep would be answered to one of this server's own
 * UDP listeners. (from is normalised: a dual-stack listener reports IPv4
 * senders as IPv4.) */
static int is_own(const struct server *srv, const sk_endpoint *from) {
  const struct server_config *cfg = &srv->cfg;
  uint16_t port = sk_endpoint_port(from);
  for (size_t i = 0; i < cfg->nspecs; i++) {
    const sk_endpoint *ep = &cfg->specs[i].ep;
    if (cfg->specs[i].kind != LISTEN_UDP || sk_endpoint_port(ep) != port)
      continue;
    if (is_unspecified(ep) ? is_local(from) : sk_endpoint_equal(ep, from))
      return 1;
  }
  return 0;
}

/* Why a datagram from `from` must not be answered at all, or NULL. */
static const char *loop_risk(const struct server *srv,
                             const sk_endpoint *from) {
  uint16_t port = sk_endpoint_port(from);
  /* Two echo (7) or chargen (19) services answering each other would loop
   * forever. Port 0 is not a valid source at all. */
  if (port == 7 || port == 19 || port == 0)
    return "source port";
  if (from->u.sa.sa_family == AF_INET
          ? IN_MULTICAST(ntohl(from->u.in4.sin_addr.s_addr)) ||
                from->u.in4.sin_addr.s_addr == INADDR_BROADCAST
          : IN6_IS_ADDR_MULTICAST(&from->u.in6.sin6_addr))
    return "multicast or broadcast source";
  if (is_own(srv, from))
    return "one of this server's own addresses";
  return NULL;
}

/* A reply to e's source was dropped: logged once per source in a while
 * (see rl_should_log), never once per datagram. */
static void note_drop(struct udp_listener *u, struct rl_entry *e,
                      const sk_endpoint *to, const char *why) {
  const struct server_config *cfg = &u->w->srv->cfg;
  char a[SK_ENDPOINT_STRLEN];
  if (log_level() < LOG_WARN ||
      !rl_should_log(&u->rl, e, sk_loop_now(u->u.h.loop)))
    return;
  sk_endpoint_format(to, a, sizeof(a));
  /* Only the address: every port of a host shares its limit. */
  if (strrchr(a, ':') != NULL)
    *strrchr(a, ':') = '\0';
  log_warn("%s: replies to %s limited (%s; --udp-rate %u, --udp-burst %u); "
           "next report for it in %d s at the earliest",
           u->spec->url, a, why, cfg->udp_rate, cfg->udp_burst,
           RL_IDLE_MS / 1000);
}

static void on_dgram(sk_udp *su, ssize_t n, const void *buf,
                     const sk_endpoint *from, const sk_endpoint *to,
                     unsigned flags) {
  struct udp_listener *u = su->h.data;
  const struct server *srv = u->w->srv;
  const struct mode *m = srv->cfg.mode;
  char a[SK_ENDPOINT_STRLEN];
  const char *risk;
  struct rl_entry *e;
  (void)to;

  if (n < 0) {
    /* ICMP errors for earlier replies: the peer went away. Receiving
     * goes on. */
    if (n != -ECANCELED)
      log_debug("%s: %s", u->spec->url, sk_strerror((int)n));
    return;
  }
  if (from == NULL || from->len == 0 ||
      (from->u.sa.sa_family != AF_INET && from->u.sa.sa_family != AF_INET6))
    return;
  risk = loop_risk(srv, from);
  if (risk != NULL) {
    if (log_level() >= LOG_DEBUG) {
      sk_endpoint_format(from, a, sizeof(a));
      log_msg(LOG_DEBUG, "ignoring datagram from %s (%s)", a, risk);
    }
    return;
  }
  stat_add(&u->w->stats.bytes[LISTEN_UDP][DIR_IN], (uint64_t)n);
  stat_add(&u->w->stats.msgs[LISTEN_UDP][DIR_IN], 1);
  if (log_level() >= LOG_DEBUG) {
    sk_endpoint_format(from, a, sizeof(a));
    log_msg(LOG_DEBUG, "recv %zd bytes from %s (udp)%s", n, a,
            (flags & SK_UDP_TRUNCATED) ? " (truncated)" : "");
  }
  e = rl_lookup(&u->rl, from, sk_loop_now(su->h.loop), srv->cfg.udp_rate,
                srv->cfg.udp_burst,
                (size_t)n + rl_header(from->u.sa.sa_family));
  /* Forward answers later, from its upstream: the client's datagram is
   * always forwarded, and the rate applies to the replies alone
   * (udp_reply_later). */
  if (m != &mode_forward && !rl_may_reply(e, srv->cfg.udp_rate)) {
    note_drop(u, e, from, "reply rate");
  } else {
    u->cur = e;
    m->dgram(u, buf, (size_t)n, from);
    u->cur = NULL;
  }
  rl_done(e);
}

int udp_listener_start(struct udp_listener *u) {
  pthread_once(&local_once, local_addrs_init);
  rl_init(&u->rl);
  u->cur = NULL;
  return sk_udp_recv_start(&u->u, on_dgram);
}

size_t udp_reply_room(struct udp_listener *u, const sk_endpoint *to,
                      size_t want) {
  size_t room;
  if (u->cur == NULL)
    return want;
  room = rl_room(u->cur, to->u.sa.sa_family);
  if (room >= want)
    return want;
  note_drop(u, u->cur, to, "no more bytes than it sent");
  return room;
}

/* Sends a reply its budget allowed. */
static void send_reply(struct udp_listener *u, const void *buf, size_t len,
                       const sk_endpoint *to) {
  int rc = sk_udp_send(&u->u, buf, len, to, NULL, NULL);
  if (rc < 0 && log_level() >= LOG_DEBUG) {
    char a[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(to, a, sizeof(a));
    log_msg(LOG_DEBUG, "reply to %s dropped: %s", a, sk_strerror(rc));
  } else if (rc == 0) {
    stat_add(&u->w->stats.bytes[LISTEN_UDP][DIR_OUT], len);
    stat_add(&u->w->stats.msgs[LISTEN_UDP][DIR_OUT], 1);
    if (log_level() >= LOG_DEBUG) {
      char a[SK_ENDPOINT_STRLEN];
      sk_endpoint_format(to, a, sizeof(a));
      log_msg(LOG_DEBUG, "sent %zu bytes to %s (udp)", len, a);
    }
  }
}

void udp_reply(struct udp_listener *u, const void *buf, size_t len,
               const sk_endpoint *to) {
  if (u->cur != NULL) {
    if (rl_room(u->cur, to->u.sa.sa_family) < len) {
      note_drop(u, u->cur, to, "no more bytes than it sent");
      return;
    }
    rl_spend(u->cur, u->w->srv->cfg.udp_rate, to->u.sa.sa_family, len);
  }
  send_reply(u, buf, len, to);
}

uint32_t udp_claim_credit(struct udp_listener *u, int af, size_t len) {
  size_t wire = len + rl_header(af);
  if (u->cur == NULL)
    return 0;
  if (wire > u->cur->credit)
    wire = u->cur->credit;
  u->cur->credit -= (uint32_t)wire;
  return (uint32_t)wire;
}

int udp_reply_later(struct udp_listener *u, const void *buf, size_t len,
                    const sk_endpoint *to, uint32_t *credit) {
  const struct server_config *cfg = &u->w->srv->cfg;
  int af = to->u.sa.sa_family;
  size_t wire = len + rl_header(af);
  struct rl_entry *e = rl_lookup(&u->rl, to, sk_loop_now(u->u.h.loop),
                                 cfg->udp_rate, cfg->udp_burst, 0);
  uint32_t shared = e->credit;
  uint64_t both = (uint64_t)shared + *credit;
  int rc = -1;

  if (cfg->udp_rate == 0) {
    /* --udp-rate 0: no limit on forwarded replies, bytes included (for
     * trusted networks, and protocols that answer more than they hear). */
    send_reply(u, buf, len, to);
    rc = 0;
  } else if (!rl_may_reply(e, cfg->udp_rate)) {
    note_drop(u, e, to, "reply rate");
  } else {
    /* Spent from the caller's budget first, then from the address's
     * shared allowance: both are lent to the entry for the check. */
    e->credit = both > UINT32_MAX ? UINT32_MAX : (uint32_t)both;
    if (rl_room(e, af) < len) {
      e->credit = shared;
      note_drop(u, e, to, "no more bytes than it sent");
    } else {
      rl_spend(e, cfg->udp_rate, af, len);
      *credit = *credit > wire ? *credit - (uint32_t)wire : 0;
      e->credit -= *credit;
      send_reply(u, buf, len, to);
      rc = 0;
    }
  }
  rl_done(e);
  return rc;
}
