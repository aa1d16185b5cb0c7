/* --mode forward over streams: each accepted connection (TCP, Unix, or TLS
 * terminated by the listener) opens one connection to an upstream (--to:
 * TCP, Unix, optionally TLS with --upstream-tls) and the library's relay
 * (relay.h) moves the bytes both ways until both sides have ended, with
 * back-pressure, half-close and splice(2) between plain sockets. The mode
 * owns the client's reading (mode.owns_stream): nothing is read from the
 * client before the relay takes it, so bytes wait in the kernel while the
 * upstream connects.
 *
 * Upstreams are picked round-robin across every worker, skipping one that
 * failed within FORWARD_DOWN_MS; a failed connect (or TLS handshake) is
 * tried once more on the next upstream when there is more than one. When
 * that fails too the client is closed with a FIN (not a reset: it sees an
 * orderly end before any byte) and one error line naming the upstream.
 *
 * --send-proxy / --send-proxy-v2 queue a PROXY header (proxy.h) on the
 * upstream before anything else, before its TLS handshake too, as HAProxy
 * does. Datagram sessions (--udp) are forward_udp.c's. */
#include "forward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "log.h"
#include "sockit/proxy.h"
#include "sockit/relay.h"

/* ---- options and the upstream list ---- */

static struct upstream ups[FORWARD_MAX_UPSTREAMS];
static size_t nups;
static atomic_uint_fast64_t rr; /* round-robin counter, all workers */
static uint64_t connect_ms;
static int up_tls, up_insecure, send_proxy; /* send_proxy: 0, 1 or 2 */
static const char *up_ca, *up_servername, *up_cert, *up_key;
static sk_tls_ctx *up_ctx; /* --upstream-tls: made by setup */
static size_t relay_queue; /* per direction: --max-queue / 2 */

/* The mode's reset_options: what an earlier run of main() left. */
static void forward_reset(void) {
  nups = 0;
  up_tls = up_insecure = send_proxy = 0;
  up_ca = up_servername = up_cert = up_key = NULL;
  sk_tls_ctx_free(up_ctx);
  up_ctx = NULL;
}

static const char *parse_to(const char *value) {
  if (nups == FORWARD_MAX_UPSTREAMS)
    return "is one too many (at most 64 --to)";
  memset(&ups[nups], 0, sizeof(ups[nups]));
  ups[nups++].text = value; /* resolved by setup */
  return NULL;
}

static const char *parse_connect_timeout(const char *value) {
  if (cli_parse_duration_ms(value, 0, 3600 * 1000, &connect_ms) < 0)
    return "is not a time in seconds (0..3600)";
  /* Rounded to 0 it would mean "no limit". */
  if (connect_ms == 0 && strtod(value, NULL) > 0)
    return "is under 1 ms (0 means no limit)";
  return NULL;
}

static const char *parse_upstream_tls(const char *value) {
  (void)value;
  up_tls = 1;
  return NULL;
}

static const char *parse_upstream_insecure(const char *value) {
  (void)value;
  up_insecure = 1;
  return NULL;
}

static const char *parse_upstream_ca(const char *value) {
  up_ca = value;
  return NULL;
}

static const char *parse_upstream_servername(const char *value) {
  if (value[0] == '\0' || strlen(value) >= sizeof(ups[0].servername))
    return "is not a host name";
  up_servername = value;
  return NULL;
}

static const char *parse_upstream_cert(const char *value) {
  up_cert = value;
  return NULL;
}

static const char *parse_upstream_key(const char *value) {
  up_key = value;
  return NULL;
}

static const char *parse_send_proxy(const char *value) {
  (void)value;
  send_proxy = send_proxy == 2 ? 2 : 1;
  return NULL;
}

static const char *parse_send_proxy_v2(const char *value) {
  (void)value;
  send_proxy = 2;
  return NULL;
}

/* Why an upstream address cannot be connected to (port 0, a wildcard or
 * a multicast address), or NULL. */
static const char *bad_upstream(const sk_endpoint *ep) {
  int fam = sk_endpoint_family(ep);
  if (fam != AF_INET && fam != AF_INET6)
    return NULL;
  if (sk_endpoint_port(ep) == 0)
    return "port 0 cannot be connected to";
  if (fam == AF_INET) {
    uint32_t a = ntohl(ep->u.in4.sin_addr.s_addr);
    if (a == INADDR_ANY)
      return "0.0.0.0 is not an address to connect to";
    if (IN_MULTICAST(a))
      return "a multicast address cannot be an upstream";
  } else {
    if (IN6_IS_ADDR_UNSPECIFIED(&ep->u.in6.sin6_addr))
      return ":: is not an address to connect to";
    if (IN6_IS_ADDR_MULTICAST(&ep->u.in6.sin6_addr))
      return "a multicast address cannot be an upstream";
  }
  return NULL;
}

/* Resolves every --to (a name that resolves to nothing is an error now,
 * not at the first client) and its TLS name. */
static int resolve_upstreams(void) {
  for (size_t i = 0; i < nups; i++) {
    struct upstream *u = &ups[i];
    uint16_t port;
    int rc = sk_endpoint_resolve(u->text, AF_UNSPEC, SOCK_STREAM, u->eps,
                                 FORWARD_MAX_ADDRS);
    if (rc < 0) {
      log_error("--to %s: %s", u->text, sk_strerror(rc));
      return -1;
    }
    u->neps = (size_t)rc;
    for (size_t j = 0; j < u->neps; j++) {
      const char *bad = bad_upstream(&u->eps[j]);
      if (bad != NULL) {
        log_error("--to %s: %s", u->text, bad);
        return -1;
      }
    }
    u->ep = u->eps[0];
    atomic_store(&u->down_until, 0);
    if (up_servername != NULL)
      snprintf(u->servername, sizeof(u->servername), "%s", up_servername);
    else if (strncmp(u->text, "unix:", 5) != 0)
      /* The host as given: a name is sent as SNI and checked; an IP
       * address is checked as an IP address. */
      (void)sk_endpoint_split(u->text, u->servername, sizeof(u->servername),
                              &port);
    if (up_tls && !up_insecure && u->servername[0] == '\0') {
      log_error("--to %s: a Unix upstream needs --upstream-servername (the "
                "name its certificate must hold) or --upstream-insecure",
                u->text);
      return -1;
    }
  }
  return 0;
}

static int make_upstream_ctx(void) {
  sk_tls_options to;
  const char *files[][2] = {{up_ca, "--upstream-ca"},
                            {up_cert, "--upstream-cert"},
                            {up_key, "--upstream-key"}};
  int rc;
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
    if (files[i][0] != NULL && (rc = cli_check_readable(files[i][0])) < 0) {
      log_error("%s: cannot read %s: %s", files[i][1], files[i][0],
                sk_strerror(rc));
      return -1;
    }
  memset(&to, 0, sizeof(to));
  to.server = 0;
  to.ca_file = up_ca;
  to.cert_file = up_cert;
  to.key_file = up_key;
  to.insecure_no_verify = up_insecure;
  /* The handshake gets as long as the connect did (0: never times out). */
  to.handshake_timeout_ms = connect_ms == 0 ? -1 : (int)connect_ms;
  rc = sk_tls_ctx_new(&up_ctx, &to);
  if (rc < 0) {
    log_error("upstream TLS: %s", sk_tls_last_error()[0] != '\0'
                                      ? sk_tls_last_error()
                                      : sk_strerror(rc));
    return -1;
  }
  if (up_insecure)
    log_warn("--upstream-insecure: upstream certificates are not checked; "
             "anyone on the path to an upstream can read and change what "
             "is forwarded");
  return 0;
}

static int forward_setup(const struct server_config *cfg) {
  if (nups == 0) {
    log_error("--mode forward needs --to ADDR (where to forward to)");
    return -1;
  }
  if (!up_tls && (up_ca != NULL || up_servername != NULL || up_insecure ||
                  up_cert != NULL || up_key != NULL)) {
    log_error("--upstream-ca, --upstream-servername, --upstream-insecure, "
              "--upstream-cert and --upstream-key need --upstream-tls");
    return -1;
  }
  if (up_insecure && up_ca != NULL) {
    log_error("--upstream-insecure checks nothing; it excludes "
              "--upstream-ca");
    return -1;
  }
  if (up_key != NULL && up_cert == NULL) {
    log_error("--upstream-key needs --upstream-cert");
    return -1;
  }
  if (resolve_upstreams() < 0 ||
      forward_udp_check(cfg, ups, nups, up_tls || send_proxy) < 0)
    return -1;
  if (up_tls && make_upstream_ctx() < 0)
    return -1;
  relay_queue = cfg->max_queue / 2 > 0 ? cfg->max_queue / 2 : 1;
  atomic_store(&rr, 0);
  return 0;
}

static void forward_teardown(void) {
  sk_tls_ctx_free(up_ctx);
  up_ctx = NULL;
}

/* ---- forward.h ---- */

struct upstream *forward_pick(uint64_t now) {
  uint_fast64_t start = atomic_fetch_add(&rr, 1);
  for (size_t i = 0; i < nups; i++) {
    struct upstream *u = &ups[(start + i) % nups];
    if (atomic_load_explicit(&u->down_until, memory_order_relaxed) <= now)
      return u;
  }
  return &ups[start % nups]; /* every one is down: try anyway */
}

void forward_down(struct upstream *u, uint64_t now, const char *why) {
  uint_fast64_t prev = atomic_exchange(&u->down_until, now + FORWARD_DOWN_MS);
  if (prev <= now)
    log_warn("upstream %s is down (%s): skipped for %d s", u->text, why,
             FORWARD_DOWN_MS / 1000);
}

uint64_t forward_connect_timeout_ms(void) {
  return connect_ms;
}

/* ---- one connection pair ---- */

/* At most two upstream connections per client: the first try and one
 * retry. Each needs its own stream, since a stream is reusable only after
 * its close completes. */
#define ATTEMPTS 2

struct fwd {
  struct conn *c; /* NULL once the client connection closed */
  struct upstream *u;
  sk_stream up[ATTEMPTS];
  int n;    /* streams initialised (attempts made) */
  int open; /* streams whose close has not completed */
  unsigned char closed[ATTEMPTS];
  int relaying; /* the relay runs (f->relay) */
  int relayed;  /* it ran: its counters are the bytes moved */
  sk_relay relay;
};

static void up_closed(sk_handle *h) {
  struct fwd *f = h->data;
  if (--f->open == 0 && f->c == NULL)
    free(f);
}

/* Closes the current upstream stream (once), with a reset if asked. */
static void up_close(struct fwd *f, int reset) {
  int i = f->n - 1;
  if (i < 0 || f->closed[i])
    return;
  f->closed[i] = 1;
  if (reset)
    sk_stream_abort(&f->up[i], up_closed);
  else
    sk_close(&f->up[i].h, up_closed);
}

/* The relay's byte counts into the connection's (the close line, the
 * metrics): client to upstream is "in", upstream to client "out". */
static void sync_counts(struct fwd *f) {
  struct conn *c = f->c;
  if (!f->relayed || c == NULL)
    return;
  if (f->relay.a_to_b.bytes > c->bytes_in)
    conn_count(c, DIR_IN, f->relay.a_to_b.bytes - c->bytes_in, 0);
  if (f->relay.b_to_a.bytes > c->bytes_out)
    conn_count(c, DIR_OUT, f->relay.b_to_a.bytes - c->bytes_out, 0);
}

/* Ends the pair from inside the mode: with a reset of the client when
 * reset is set (the upstream is closed by the caller or forward_close).
 * Clears c->cut_resets first, so conn_close() leaves the choice to us. */
static void end_pair(struct fwd *f, const char *why, int reset) {
  struct conn *c = f->c;
  c->cut_resets = 0;
  if (reset)
    conn_abort(c, why);
  else
    conn_close(c, why);
}

/* Status 0: both ends were passed on (a TLS peer's FIN without
 * close_notify too: SK_RELAY_TRUNCATION_AS_EOF) and everything read was
 * written. Any failure (a reset, a broken pipe) is passed on to the other
 * side as a reset. */
static void on_relay_done(sk_relay *r, int status) {
  struct fwd *f = r->data;
  struct conn *c = f->c;
  char why[160];
  f->relaying = 0;
  if (c == NULL)
    return;
  sync_counts(f);
  if (status == 0) {
    up_close(f, 0);
    end_pair(f, NULL, 0);
  } else if (r->failed == &c->s) {
    up_close(f, 1);
    snprintf(why, sizeof(why), "client: %s", sk_strerror(status));
    end_pair(f, why, 0);
  } else {
    up_close(f, 1);
    snprintf(why, sizeof(why), "upstream %s: %s", f->u->text,
             sk_strerror(status));
    end_pair(f, why, 1);
  }
}

static void start_relay(struct fwd *f, sk_stream *up) {
  struct conn *c = f->c;
  sk_relay_options opt = {relay_queue, SK_RELAY_TRUNCATION_AS_EOF};
  int rc;
  memset(&f->relay, 0, sizeof(f->relay));
  f->relay.data = f;
  rc = sk_relay_start(&f->relay, &c->s, up, &opt, on_relay_done);
  if (rc == -EMFILE || rc == -ENFILE) {
    /* No descriptors for the pipes: relay through user space. */
    opt.flags |= SK_RELAY_NO_SPLICE;
    rc = sk_relay_start(&f->relay, &c->s, up, &opt, on_relay_done);
  }
  if (rc < 0) {
    char why[96];
    snprintf(why, sizeof(why), "cannot relay: %s", sk_strerror(rc));
    log_error("%s: %s", conn_name(c), why);
    end_pair(f, why, 0); /* nothing passed yet: a FIN to both */
    return;
  }
  f->relay.data = f;
  f->relaying = f->relayed = 1;
  conn_touch(c);
  log_debug("%s: relaying to upstream %s%s", conn_name(c), f->u->text,
            f->relay.spliced ? " (splice)" : "");
}

static void attempt(struct fwd *f);

/* This upstream failed (err, and the TLS reason if any): marked down
 * (unless we lack a resource: that says nothing about the upstream), and
 * the next one tried once; else the client is closed with one line. */
static void attempt_failed(struct fwd *f, int err, const char *tls_why) {
  struct conn *c = f->c;
  char what[200];
  /* With --connect-timeout 0 there is no limit of ours: a timeout is the
   * kernel's, told as it is. */
  if (err == -ETIMEDOUT && connect_ms > 0)
    snprintf(what, sizeof(what), "%s after %.3g s",
             tls_why != NULL ? "TLS handshake not complete" : "no connection",
             (double)connect_ms / 1000.0);
  else if (tls_why != NULL && tls_why[0] != '\0')
    snprintf(what, sizeof(what), "TLS handshake failed: %s", tls_why);
  else
    snprintf(what, sizeof(what), "%s", sk_strerror(err));
  if (!sk_err_is_resource(err))
    forward_down(f->u, sk_loop_now(c->s.h.loop), what);
  up_close(f, 0);
  if (f->n < ATTEMPTS && nups > 1) {
    log_debug("%s: upstream %s: %s; trying the next one", conn_name(c),
              f->u->text, what);
    attempt(f);
    return;
  }
  log_error("%s: cannot forward to upstream %s: %s; closing the connection",
            conn_name(c), f->u->text, what);
  c->close_kind = CLOSE_ERROR;
  end_pair(f, NULL, 0);
}

static void on_handshake(sk_stream *s, int status) {
  struct fwd *f = s->h.data;
  if (f->c == NULL || status == -ECANCELED)
    return;
  if (status < 0) {
    const char *why = sk_stream_tls_error(s);
    attempt_failed(f, status, why[0] != '\0' ? why : sk_strerror(status));
    return;
  }
  log_debug("%s: upstream %s: %s, %s", conn_name(f->c), f->u->text,
            sk_stream_tls_version(s), sk_stream_tls_cipher(s));
  start_relay(f, s);
}

/* The PROXY header naming the client (its PROXY-protocol address when a
 * listener took one: the connection's peer) and the address it reached:
 * the listener's own address (an incoming PROXY header's destination is
 * not kept). An IPv4 side with an IPv6 other is sent IPv4-mapped. */
static int send_proxy_header(struct fwd *f, sk_stream *s) {
  unsigned char hdr[SK_PROXY_MAX_FORMAT];
  sk_endpoint src, dst;
  int have_src = conn_peer(f->c, &src) == 0;
  int have_dst = have_src && sk_socket_local(&f->c->s.sock, &dst) == 0;
  ssize_t n = sk_proxy_format(hdr, sizeof(hdr), send_proxy,
                              have_dst ? &src : NULL, have_dst ? &dst : NULL);
  if (n < 0)
    return (int)n;
  return sk_stream_send(s, hdr, (size_t)n, NULL, NULL);
}

static void on_connect(sk_stream *s, int status) {
  struct fwd *f = s->h.data;
  int rc;
  if (f->c == NULL || status == -ECANCELED)
    return;
  if (status < 0) {
    attempt_failed(f, status, NULL);
    return;
  }
  if (sk_endpoint_family(&f->u->ep) != AF_UNIX)
    sk_opt_set_nodelay(&s->sock, 1);
  if (send_proxy && (rc = send_proxy_header(f, s)) < 0) {
    attempt_failed(f, rc, NULL);
    return;
  }
  if (up_tls) {
    rc = sk_stream_tls_start(
        s, up_ctx, f->u->servername[0] != '\0' ? f->u->servername : NULL,
        on_handshake);
    if (rc < 0)
      attempt_failed(f, rc, sk_tls_last_error());
    return;
  }
  start_relay(f, s);
}

static void attempt(struct fwd *f) {
  struct conn *c = f->c;
  sk_stream *s = &f->up[f->n++];
  int rc;
  f->u = forward_pick(sk_loop_now(c->s.h.loop));
  sk_stream_init(c->s.h.loop, s);
  s->h.data = f;
  f->open++;
  rc = sk_stream_connect(s, f->u->eps, f->u->neps,
                         connect_ms == 0 ? -1 : (int)connect_ms, on_connect);
  if (rc < 0)
    attempt_failed(f, rc, NULL);
}

static void forward_open(struct conn *c) {
  struct fwd *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    log_error("%s: out of memory, connection closed", conn_name(c));
    conn_close(c, "out of memory");
    return;
  }
  f->c = c;
  c->mode_data = f;
  /* Connecting or relaying, a close from outside (idle timeout, end of
   * the grace period) cuts the pair: a reset to both sides, never a clean
   * end of a stream that lost bytes. end_pair() clears it. */
  c->cut_resets = 1;
  attempt(f);
}

/* A graceful stop lets every pair run until it ends; --grace closes the
 * rest. */
static void forward_stop(struct conn *c) {
  (void)c;
}

static void forward_close(struct conn *c) {
  struct fwd *f = c->mode_data;
  if (f == NULL)
    return;
  c->mode_data = NULL;
  sync_counts(f);
  f->c = NULL;
  if (f->relaying) {
    /* Closed from outside (idle timeout, end of the grace period): the
     * client is being reset (c->cut_resets), the upstream is too. */
    sk_relay_stop(&f->relay);
    f->relaying = 0;
  }
  up_close(f, c->reset);
  if (f->open == 0)
    free(f);
}

static uint64_t forward_progress(struct conn *c) {
  struct fwd *f = c->mode_data;
  if (f == NULL || !f->relayed)
    return 0;
  sync_counts(f);
  return f->relay.a_to_b.bytes + f->relay.b_to_a.bytes;
}

static const struct mode_option forward_options[] = {
    {"--to", "ADDR", "upstream address (repeatable: round-robin)", NULL,
     parse_to},
    {"--connect-timeout", "S", "limit for connect and TLS handshake", "5",
     parse_connect_timeout},
    {"--upstream-tls", NULL, "TLS to upstreams", NULL, parse_upstream_tls},
    {"--upstream-ca", "FILE", "CAs for upstreams (default: the system's)", NULL,
     parse_upstream_ca},
    {"--upstream-servername", "NAME", "name upstream certificates must hold",
     NULL, parse_upstream_servername},
    {"--upstream-insecure", NULL, "do not verify upstreams", NULL,
     parse_upstream_insecure},
    {"--upstream-cert", "FILE", "client certificate to upstreams (mTLS)", NULL,
     parse_upstream_cert},
    {"--upstream-key", "FILE", "its private key (default: in the cert)", NULL,
     parse_upstream_key},
    {"--send-proxy", NULL, "PROXY v1 header to upstreams", NULL,
     parse_send_proxy},
    {"--send-proxy-v2", NULL, "PROXY v2 header to upstreams", NULL,
     parse_send_proxy_v2},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct mode mode_forward = {
    .name = "forward",
    .summary = "relay connections to upstreams (--to), like stunnel "
               "or socat",
    .transports = MODE_STREAMS | MODE_UDP,
    .frames = 0, /* bytes are relayed as they come */
    /* The client, the upstream, and a pipe (two ends) per direction for
     * splice(2). */
    .fds_per_conn = 6,
    .owns_stream = 1,
    .options = forward_options,
    .reset_options = forward_reset,
    .setup = forward_setup,
    .teardown = forward_teardown,
    .open = forward_open,
    .stop = forward_stop,
    .close = forward_close,
    .progress = forward_progress,
    .dgram = forward_dgram,
    .udp_close = forward_udp_close,
};
