/* --mode forward over UDP: a session per client address (forward.h).
 *
 * Every client address (IP and port) heard on a UDP listener gets a
 * session: a UDP socket of its own, connected to the upstream that
 * forward_pick() gave when the session began, on the listener's loop. The
 * client's datagrams go out on that socket, one for one, in order; what the
 * upstream sends back arrives on it (a connected socket hears from nobody
 * else) and goes to the client from the listener's socket, so the client
 * hears from the address it sent to.
 *
 * A listener's sessions are in a hash table keyed by the client address
 * (a keyed hash, doubled as sessions come) and in two lists, least recently
 * active first: the sessions the upstream never answered, and those it
 * did. The listener's one sweep timer ends, from the lists' fronts, the
 * answered sessions idle for --idle-timeout and the unanswered ones idle
 * for min(--idle-timeout, 30 s) (as conntrack treats unreplied UDP).
 * Sessions have a cap of their own, the --max-conns number counted apart
 * from the connections (all workers together), so datagrams cannot lock
 * stream clients out. At the cap, the least recently active unanswered
 * session of the listener makes room for the new client (forged sources
 * get no answer from a real service); with none, the client is dropped,
 * with a log line now and then.
 *
 * An ICMP error for the upstream (port unreachable: ECONNREFUSED on the
 * connected socket) marks the upstream down (one line when it goes down)
 * and the session refused; the session stays, so a client that keeps
 * sending makes no more sessions (nor log lines): its next datagram goes
 * to the upstream forward_pick() gives then.
 *
 * Datagrams towards an upstream are never queued: one the kernel does not
 * take at once is dropped and counted, so a session costs its struct and
 * its socket, whatever the traffic.
 *
 * Replies obey the limits of every UDP reply (udp.c): the reply rate per
 * source address, and the byte budget, kept here per session: a client is
 * never sent more bytes than it sent through its session, plus the small
 * allowance its address shares (RL_BYTE_BURST, so a 1-byte forged request
 * may earn its victim about 2 KiB once a minute per address). --udp-rate 0
 * lifts both for forwarded replies (udp_reply_later). */
#include "forward.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Bytes (whole packets) a session may hold in its budget: what its client
 * sent and was not yet answered. No amplification either way; the cap only
 * stops credit being banked without end. */
#define FWD_CREDIT_MAX  (1u << 20)
#define FWD_MIN_BUCKETS 64
#define FWD_MAX_BUCKETS (1u << 20)
/* At most one "dropped" line per listener this often (ms). */
#define FWD_LOG_MS 5000
/* Longest life of a session the upstream never answered (ms). */
#define FWD_UNREPLIED_MS 30000

/* Sessions open, all workers: capped at --max-conns apart from the
 * connections (each holds one descriptor: FORWARD_FDS_PER_SESSION). */
static atomic_uint_fast64_t nsessions;

/* A client address, compact and comparable with memcmp (zeroed first). */
struct ckey {
  unsigned char addr[16]; /* IPv4 in the first 4 */
  uint32_t scope;         /* IPv6 scope id */
  uint16_t port;          /* host order */
  unsigned char family;
  unsigned char pad;
};

struct fwd;

struct session {
  sk_udp up;             /* connected to the upstream */
  struct fwd *f;         /* NULL once ended */
  struct session *hnext; /* hash chain */
  struct session *older; /* activity list (lru[replied]) */
  struct session *newer;
  struct upstream *upstream;
  unsigned char replied; /* the upstream sent something */
  unsigned char refused; /* an ICMP error: repick at the next datagram */
  uint64_t opened_ms, last_ms;
  uint64_t bytes_in, bytes_out; /* from the client, to the client */
  uint32_t dgrams_in, dgrams_out;
  uint32_t credit; /* byte budget (udp_reply_later) */
  struct ckey key;
};

/* A listener's sessions (udp_listener.mode_state). */
struct fwd {
  struct udp_listener *u;
  sk_timer sweep;
  struct session **buckets;
  size_t nbuckets, n;
  /* Least recently active first: [0] never answered, [1] answered. */
  struct lru {
    struct session *oldest, *newest;
  } lru[2];
  uint64_t logged_ms; /* last "dropped" line */
  uint64_t dropped;   /* datagrams dropped for want of a session */
  uint64_t evicted;   /* unanswered sessions ended to make room */
  uint64_t lost;      /* client datagrams not sent: socket full, refused */
};

/* Keyed with the listener's random rate-limit key: a client cannot choose
 * addresses that fall in one chain. */
static size_t key_hash(const struct fwd *f, const struct ckey *k) {
  const uint64_t *key = f->u->rl.key;
  uint64_t a, b, c;
  memcpy(&a, k->addr, 8);
  memcpy(&b, k->addr + 8, 8);
  c = (uint64_t)k->port << 40 | (uint64_t)k->family << 32 | k->scope;
  return (size_t)rl_mix64(rl_mix64(rl_mix64(key[0] ^ a) ^ b ^ key[1]) ^ c);
}

static void key_of(const sk_endpoint *ep, struct ckey *k) {
  memset(k, 0, sizeof(*k));
  k->family = (unsigned char)ep->u.sa.sa_family;
  k->port = sk_endpoint_port(ep);
  if (k->family == AF_INET6) {
    memcpy(k->addr, &ep->u.in6.sin6_addr, 16);
    k->scope = ep->u.in6.sin6_scope_id;
  } else {
    memcpy(k->addr, &ep->u.in4.sin_addr, 4);
  }
}

static void key_endpoint(const struct ckey *k, sk_endpoint *ep) {
  memset(ep, 0, sizeof(*ep));
  if (k->family == AF_INET6) {
    ep->u.in6.sin6_family = AF_INET6;
    memcpy(&ep->u.in6.sin6_addr, k->addr, 16);
    ep->u.in6.sin6_port = htons(k->port);
    ep->u.in6.sin6_scope_id = k->scope;
    ep->len = sizeof(ep->u.in6);
  } else {
    ep->u.in4.sin_family = AF_INET;
    memcpy(&ep->u.in4.sin_addr, k->addr, 4);
    ep->u.in4.sin_port = htons(k->port);
    ep->len = sizeof(ep->u.in4);
  }
}

/* ---- the activity list and the sweep ---- */

static void list_unlink(struct fwd *f, struct session *s) {
  struct lru *l = &f->lru[s->replied];
  if (s->older != NULL)
    s->older->newer = s->newer;
  else
    l->oldest = s->newer;
  if (s->newer != NULL)
    s->newer->older = s->older;
  else
    l->newest = s->older;
  s->older = s->newer = NULL;
}

static void list_append(struct fwd *f, struct session *s) {
  struct lru *l = &f->lru[s->replied];
  s->older = l->newest;
  s->newer = NULL;
  if (l->newest != NULL)
    l->newest->newer = s;
  else
    l->oldest = s;
  l->newest = s;
}

static void touch(struct fwd *f, struct session *s) {
  s->last_ms = sk_loop_now(f->u->u.h.loop);
  if (f->lru[s->replied].newest != s) {
    list_unlink(f, s);
    list_append(f, s);
  }
}

/* How long a session of list `replied` lives without a datagram (ms; 0 =
 * for ever). */
static uint64_t life_ms(const struct fwd *f, int replied) {
  uint64_t idle = f->u->w->srv->cfg.idle_ms;
  if (replied)
    return idle;
  return idle == 0 || idle > FWD_UNREPLIED_MS ? FWD_UNREPLIED_MS : idle;
}

/* ---- a session's life ---- */

static void session_freed(sk_handle *h) {
  atomic_fetch_sub(&nsessions, 1);
  free(h->data);
}

static void session_log(const struct session *s, const char *name,
                        const char *reason, const char *why) {
  uint64_t ms = sk_loop_now(s->up.h.loop) - s->opened_ms;
  struct log_field fl[] = {
      {"event", "close", 0},
      {"peer", name, 0},
      {"upstream", s->upstream->text, 0},
      {"duration_ms", NULL, ms},
      {"bytes_in", NULL, s->bytes_in},
      {"bytes_out", NULL, s->bytes_out},
      {"msgs_in", NULL, s->dgrams_in},
      {"msgs_out", NULL, s->dgrams_out},
      {"reason", reason, 0},
      {"why", why, 0},
      {"mode", "forward", 0},
      {"transport", "udp", 0},
  };
  log_event(LOG_INFO, fl, sizeof(fl) / sizeof(fl[0]),
            "udp session from %s closed: %s (after %llu.%03llu s; in %llu "
            "bytes, %lu msgs; out %llu bytes, %lu msgs)",
            name, why, (unsigned long long)(ms / 1000),
            (unsigned long long)(ms % 1000), (unsigned long long)s->bytes_in,
            (unsigned long)s->dgrams_in, (unsigned long long)s->bytes_out,
            (unsigned long)s->dgrams_out);
}

/* reason: the close line's word for it, as for connections
 * ("idle_timeout", "error", "stopping"); why: in words. */
static void session_end(struct session *s, const char *reason,
                        const char *why) {
  struct fwd *f = s->f;
  struct session **p;

  for (p = &f->buckets[key_hash(f, &s->key) & (f->nbuckets - 1)]; *p != s;
       p = &(*p)->hnext)
    ;
  *p = s->hnext;
  list_unlink(f, s);
  f->n--;
  s->f = NULL;
  if (log_level() >= LOG_INFO) {
    char a[SK_ENDPOINT_STRLEN];
    sk_endpoint ep;
    key_endpoint(&s->key, &ep);
    sk_endpoint_format(&ep, a, sizeof(a));
    session_log(s, a, reason, why);
  }
  sk_close(&s->up.h, session_freed);
}

static void sweep_cb(sk_timer *t);

/* Sets the sweep timer for the first session of either list to expire. */
static void sweep_arm(struct fwd *f) {
  uint64_t now = sk_loop_now(f->u->u.h.loop), next = UINT64_MAX;
  for (int r = 0; r < 2; r++) {
    uint64_t life = life_ms(f, r);
    struct session *s = f->lru[r].oldest;
    if (s != NULL && life > 0 && s->last_ms + life < next)
      next = s->last_ms + life;
  }
  if (next != UINT64_MAX)
    sk_timer_start(&f->sweep, sweep_cb, next > now ? next - now : 0, 0);
}

static void sweep_cb(sk_timer *t) {
  struct fwd *f = t->h.data;
  uint64_t now = sk_loop_now(t->h.loop);
  for (int r = 0; r < 2; r++) {
    uint64_t life = life_ms(f, r);
    struct session *s;
    while (life > 0 && (s = f->lru[r].oldest) != NULL &&
           now - s->last_ms >= life)
      session_end(s, "idle_timeout",
                  r ? "idle timeout" : "idle timeout (never answered)");
  }
  sweep_arm(f);
}

/* Datagrams from the upstream, or an ICMP error for it. */
static void on_upstream(sk_udp *su, ssize_t n, const void *buf,
                        const sk_endpoint *from, const sk_endpoint *to,
                        unsigned flags) {
  struct session *s = su->h.data;
  struct fwd *f = s->f;
  sk_endpoint client;
  (void)from;
  (void)to;
  (void)flags; /* never truncated: the loop's buffer holds 64 KiB */

  if (f == NULL || n == -ECANCELED)
    return;
  if (n < 0) {
    /* The session stays (see the top): the client's next datagram tries
     * again. */
    forward_down(s->upstream, sk_loop_now(su->h.loop), sk_strerror((int)n));
    s->refused = 1;
    return;
  }
  if (!s->replied) {
    list_unlink(f, s);
    s->replied = 1;
    list_append(f, s);
  }
  touch(f, s);
  key_endpoint(&s->key, &client);
  if (udp_reply_later(f->u, buf, (size_t)n, &client, &s->credit) == 0) {
    s->bytes_out += (uint64_t)n;
    s->dgrams_out++;
  }
}

/* A datagram with no session to take it: counted, and logged now and
 * then. */
static void drop(struct fwd *f, const sk_endpoint *from, const char *why) {
  uint64_t now = sk_loop_now(f->u->u.h.loop);
  f->dropped++;
  if (f->logged_ms == 0 || now - f->logged_ms >= FWD_LOG_MS) {
    char a[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(from, a, sizeof(a));
    log_warn("%s: datagram from %s dropped: %s (%llu dropped so far; next "
             "report in %d s at the earliest)",
             f->u->spec->url, a, why, (unsigned long long)f->dropped,
             FWD_LOG_MS / 1000);
    f->logged_ms = now == 0 ? 1 : now;
  }
}

/* Doubles the table once it holds more sessions than chains. A failed
 * allocation keeps the table as it is (longer chains, still correct). */
static void grow(struct fwd *f) {
  size_t nb = f->nbuckets * 2;
  struct session **b, *s, *next;
  if (f->n <= f->nbuckets || nb > FWD_MAX_BUCKETS)
    return;
  b = calloc(nb, sizeof(*b));
  if (b == NULL)
    return;
  for (size_t i = 0; i < f->nbuckets; i++)
    for (s = f->buckets[i]; s != NULL; s = next) {
      size_t h = key_hash(f, &s->key) & (nb - 1);
      next = s->hnext;
      s->hnext = b[h];
      b[h] = s;
    }
  free(f->buckets);
  f->buckets = b;
  f->nbuckets = nb;
}

static struct session *session_new(struct fwd *f, const struct ckey *k,
                                   const sk_endpoint *from) {
  struct udp_listener *u = f->u;
  struct server *srv = u->w->srv;
  sk_loop *loop = u->u.h.loop;
  uint64_t now = sk_loop_now(loop);
  struct session *s;
  struct upstream *up;
  size_t h;
  int rc;

  if (atomic_fetch_add(&nsessions, 1) >= srv->cfg.max_conns) {
    /* Full: an unanswered session of this listener makes room, if any
     * (its descriptor is closed at once; its count goes when freed). */
    struct session *old = f->lru[0].oldest;
    if (old == NULL) {
      char why[96];
      atomic_fetch_sub(&nsessions, 1);
      atomic_fetch_add(&srv->refused, 1);
      snprintf(why, sizeof(why),
               "--max-conns %llu reached (udp sessions, counted apart "
               "from connections)",
               (unsigned long long)srv->cfg.max_conns);
      drop(f, from, why);
      return NULL;
    }
    f->evicted++;
    session_end(old, "evicted",
                "evicted: sessions at --max-conns, and the upstream never "
                "answered it");
  }
  s = calloc(1, sizeof(*s));
  if (s == NULL) {
    atomic_fetch_sub(&nsessions, 1);
    drop(f, from, "out of memory");
    return NULL;
  }
  up = forward_pick(now);
  s->upstream = up;
  s->key = *k;
  s->opened_ms = now;
  s->credit = 0;
  sk_udp_init(loop, &s->up);
  /* No send queue: a datagram the kernel does not take at once is dropped
   * (-ENOBUFS), so a session never holds more than its struct. */
  sk_udp_set_send_queue_max(&s->up, 0);
  s->up.h.data = s;
  if (up->ep.u.sa.sa_family != AF_INET && up->ep.u.sa.sa_family != AF_INET6)
    rc = -EAFNOSUPPORT; /* a Unix upstream: nowhere to hear replies */
  else if ((rc = sk_udp_connect(&s->up, &up->ep)) == 0)
    rc = sk_udp_recv_start(&s->up, on_upstream);
  if (rc < 0) {
    char why[160];
    snprintf(why, sizeof(why), "upstream %s: %s", up->text, sk_strerror(rc));
    if (!sk_err_is_resource(rc))
      forward_down(up, now, sk_strerror(rc));
    drop(f, from, why);
    sk_close(&s->up.h, session_freed);
    return NULL;
  }
  s->f = f;
  h = key_hash(f, k) & (f->nbuckets - 1);
  s->hnext = f->buckets[h];
  f->buckets[h] = s;
  f->n++;
  s->last_ms = now;
  list_append(f, s);
  grow(f);
  if (f->lru[0].oldest == s || !sk_timer_active(&f->sweep))
    sweep_arm(f);
  if (log_level() >= LOG_INFO) {
    char a[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(from, a, sizeof(a));
    struct log_field fl[] = {
        {"event", "open", 0},          {"peer", a, 0},
        {"listener", u->spec->url, 0}, {"upstream", up->text, 0},
        {"mode", "forward", 0},        {"transport", "udp", 0},
    };
    log_event(LOG_INFO, fl, sizeof(fl) / sizeof(fl[0]),
              "udp session from %s on %s to %s", a, u->spec->url, up->text);
  }
  return s;
}

/* The listener's sessions, made at its first datagram. */
static struct fwd *fwd_of(struct udp_listener *u) {
  struct fwd *f = (struct fwd *)u->mode_state;
  if (f != NULL)
    return f;
  f = calloc(1, sizeof(*f));
  if (f == NULL)
    return NULL;
  f->buckets = calloc(FWD_MIN_BUCKETS, sizeof(*f->buckets));
  if (f->buckets == NULL) {
    free(f);
    return NULL;
  }
  f->nbuckets = FWD_MIN_BUCKETS;
  f->u = u;
  sk_timer_init(u->u.h.loop, &f->sweep);
  f->sweep.h.data = f;
  u->mode_state = (uintptr_t)f;
  return f;
}

/* A session the upstream refused: connected to the upstream forward_pick()
 * gives now (the same one if every other is down too). */
static void repick(struct session *s) {
  struct upstream *up = forward_pick(sk_loop_now(s->up.h.loop));
  s->refused = 0;
  if (up != s->upstream &&
      up->ep.u.sa.sa_family == s->upstream->ep.u.sa.sa_family &&
      sk_udp_connect(&s->up, &up->ep) == 0)
    s->upstream = up;
}

static struct session *session_find(struct fwd *f, const struct ckey *k) {
  struct session *s = f->buckets[key_hash(f, k) & (f->nbuckets - 1)];
  while (s != NULL && memcmp(&s->key, k, sizeof(*k)) != 0)
    s = s->hnext;
  return s;
}

void forward_dgram(struct udp_listener *u, const unsigned char *buf, size_t len,
                   const sk_endpoint *from) {
  struct fwd *f;
  struct session *s;
  struct ckey k;
  uint64_t credit;
  int rc;

  if (sk_is_closing(&u->u.h) || u->w->stopping)
    return;
  f = fwd_of(u);
  if (f == NULL) {
    log_debug("%s: out of memory for udp sessions", u->spec->url);
    return;
  }
  key_of(from, &k);
  s = session_find(f, &k);
  if (s == NULL && (s = session_new(f, &k, from)) == NULL)
    return;
  if (s->refused)
    repick(s);
  touch(f, s);
  credit = (uint64_t)s->credit + udp_claim_credit(u, from->u.sa.sa_family, len);
  s->credit = credit > FWD_CREDIT_MAX ? FWD_CREDIT_MAX : (uint32_t)credit;
  s->bytes_in += len;
  s->dgrams_in++;
  rc = sk_udp_send(&s->up, buf, len, NULL, NULL, NULL);
  if (rc < 0 && rc != -EAGAIN && rc != -ENOBUFS && rc != -ENOMEM &&
      rc != -EMSGSIZE) {
    /* An ICMP error reported at this send (the upstream refused an
     * earlier one), or the route is gone: once more, on the upstream
     * forward_pick() gives now. */
    forward_down(s->upstream, sk_loop_now(u->u.h.loop), sk_strerror(rc));
    s->refused = 1;
    repick(s);
    rc = sk_udp_send(&s->up, buf, len, NULL, NULL, NULL);
  }
  if (rc < 0) {
    /* UDP is best effort: this one datagram is lost (counted). */
    f->lost++;
    log_debug("%s: datagram to upstream %s dropped (%llu so far): %s",
              u->spec->url, s->upstream->text, (unsigned long long)f->lost,
              sk_strerror(rc));
  }
}

static void fwd_freed(sk_handle *h) {
  free(h->data);
}

void forward_udp_close(struct udp_listener *u) {
  struct fwd *f = (struct fwd *)u->mode_state;
  if (f == NULL)
    return;
  for (int r = 0; r < 2; r++)
    while (f->lru[r].oldest != NULL)
      session_end(f->lru[r].oldest, "stopping", "server stopping");
  free(f->buckets);
  f->buckets = NULL;
  u->mode_state = 0;
  sk_close(&f->sweep.h, fwd_freed);
}

int forward_udp_check(const struct server_config *cfg,
                      const struct upstream *ups, size_t nups,
                      int stream_only) {
  size_t i;
  for (i = 0; i < cfg->nspecs && cfg->specs[i].kind != LISTEN_UDP; i++)
    ;
  if (i == cfg->nspecs)
    return 0;
  if (stream_only) {
    log_error("--upstream-tls and --send-proxy are for stream listeners: "
              "UDP sessions forward bare datagrams (%s)",
              cfg->specs[i].text);
    return -1;
  }
  for (size_t j = 0; j < nups; j++) {
    int af = ups[j].ep.u.sa.sa_family;
    if (af != AF_INET && af != AF_INET6) {
      log_error("--to %s: UDP listeners forward to IP upstreams only (%s)",
                ups[j].text, cfg->specs[i].text);
      return -1;
    }
  }
  return 0;
}
