/* Listeners and admission: binding every listener (one per worker, sharing
 * the port, or one socket all workers poll), accepting within --max-conns
 * and the descriptor limit, the PROXY header (--proxy-protocol) and the
 * TLS handshake before a mode sees a connection, and the readiness
 * line. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

/* Connections picked up from a listener's backlog when the stop arrives,
 * so that clients the kernel already accepted get a clean close instead of
 * the reset a closing listener would give them. */
#define STOP_ACCEPT_MAX 4096

/* ---- admission ---- */

/* Returns 1 at most once a second per counter, across all workers. */
static int rate_ok(atomic_uint_fast64_t *last_ms, uint64_t now) {
  uint_fast64_t prev = atomic_load_explicit(last_ms, memory_order_relaxed);
  if (prev != 0 && now - prev < 1000)
    return 0;
  return atomic_compare_exchange_strong(last_ms, &prev, now);
}

static void refuse(struct worker *w, int fd, const sk_endpoint *peer) {
  struct server *srv = w->srv;
  uint64_t n = atomic_fetch_add(&srv->refused, 1) + 1;
  close(fd);
  if (rate_ok(&srv->refuse_log_ms, sk_loop_now(&w->loop))) {
    char a[SK_ENDPOINT_STRLEN] = "?";
    if (peer != NULL)
      sk_endpoint_format(peer, a, sizeof(a));
    log_warn("refused connection from %s: --max-conns %llu reached "
             "(%llu refused so far)",
             a, (unsigned long long)srv->cfg.max_conns, (unsigned long long)n);
  }
}

static void accept_error(struct stream_listener *l, int status) {
  struct server *srv = l->w->srv;
  if (status == -ECANCELED)
    return;
  if (sk_err_is_resource(status)) {
    if (rate_ok(&srv->emfile_log_ms, sk_loop_now(&l->w->loop)))
      log_warn("%s: cannot accept: %s (%s); shedding new connections",
               l->spec->url, sk_strerror(status), sk_err_name(status));
    return;
  }
  log_error("%s: accept failed: %s; no longer accepting there", l->spec->url,
            sk_strerror(status));
}

/* Why a TLS call on s failed, in words: the library's reason for that
 * stream when it has one, else the code's own text. */
static const char *tls_error_text(const sk_stream *s, int err) {
  const char *why = sk_stream_tls_error(s);
  if (why[0] == '\0')
    why = sk_tls_last_error(); /* sk_stream_tls_start() itself failed */
  return why[0] != '\0' ? why : sk_strerror(err);
}

/* A failed handshake costs one log line and that connection alone: a port
 * scanner, a plain-text client or a client that rejects our certificate
 * must not disturb anyone else. */
static void on_handshake(sk_stream *s, int status) {
  struct conn *c = s->h.data;
  if (conn_closing(c))
    return; /* -ECANCELED: closed during the handshake */
  stats_handshake(&c->w->stats,
                  status == 0            ? HS_OK
                  : status == -ETIMEDOUT ? HS_TIMEOUT
                                         : HS_FAILED,
                  sk_loop_now(s->h.loop) - c->opened_ms);
  if (status < 0) {
    c->close_kind = CLOSE_TLS;
    if (status == -ETIMEDOUT)
      log_error("%s: TLS handshake failed: not complete after %.3g s",
                conn_name(c), (double)conn_cfg(c)->hs_ms / 1000.0);
    else
      log_error("%s: TLS handshake failed: %s", conn_name(c),
                tls_error_text(s, status));
    conn_close(c, NULL);
    return;
  }
  log_debug("%s: %s, %s", conn_name(c), sk_stream_tls_version(s),
            sk_stream_tls_cipher(s));
  conn_touch(c);
  conn_ready(c);
}

/* The handshake reads by itself; the mode starts once it succeeded. Its
 * deadline (--handshake-timeout) is the context's. */
static void start_tls(struct conn *c) {
  struct server *srv = c->w->srv;
  sk_tls_ctx *ctx;
  int rc;
  /* The context loaded last (SIGHUP reloads it); the stream keeps its own
   * reference for as long as it needs one. */
  pthread_mutex_lock(&srv->tls_lock);
  ctx = sk_tls_ctx_ref(srv->tls_cur);
  pthread_mutex_unlock(&srv->tls_lock);
  rc = sk_stream_tls_start(&c->s, ctx, NULL, on_handshake);
  sk_tls_ctx_free(ctx);
  if (rc < 0) {
    log_error("%s: cannot start TLS: %s", conn_name(c),
              tls_error_text(&c->s, rc));
    c->close_kind = CLOSE_TLS;
    conn_close(c, NULL);
    return;
  }
  if (c->w->stopping)
    conn_stop(c);
}

/* The connection carries data now (its PROXY header read, if any): TLS
 * first if the listeners serve it, else the mode. */
static void start_conn(struct conn *c) {
  conn_log_opened(c);
  if (conn_tls(c))
    start_tls(c);
  else
    conn_ready(c);
}

/* --proxy-protocol: a missing, malformed or truncated header costs one
 * error line (no byte of it is printed) and that connection alone. */
static void on_proxy(sk_stream *s, int status, const sk_proxy_header *h) {
  struct conn *c = s->h.data;
  char real[SK_ENDPOINT_STRLEN];
  c->proxy_wait = 0;
  if (status < 0) {
    const char *why = status == -EPROTO ? "not a valid PROXY header"
                      : status == SK_EOF
                          ? "connection closed before the PROXY header ended"
                          : sk_strerror(status);
    log_error("%s: %s", conn_name(c), why);
    conn_close(c, why);
    return;
  }
  snprintf(real, sizeof(real), "%s", conn_name(c));
  conn_proxied(c, h);
  log_debug("%s: PROXY v%d header%s; real peer %s", conn_name(c), h->version,
            h->local ? " without an address" : "", real);
  conn_touch(c);
  start_conn(c);
}

static void start_proxy(struct conn *c) {
  int rc = sk_stream_proxy_accept(&c->s, on_proxy);
  if (rc < 0) {
    log_error("%s: cannot read a PROXY header: %s", conn_name(c),
              sk_strerror(rc));
    conn_close(c, NULL);
    return;
  }
  c->proxy_wait = 1;
  if (c->w->stopping)
    conn_stop(c);
}

static void on_accept(sk_stream *ls, int status, int fd,
                      const sk_endpoint *peer) {
  struct stream_listener *l = ls->h.data;
  struct worker *w = l->w;
  struct server *srv = w->srv;
  struct conn *c;

  if (status < 0) {
    accept_error(l, status);
    return;
  }
  if (atomic_fetch_add(&srv->nconns, 1) >= srv->cfg.max_conns) {
    atomic_fetch_sub(&srv->nconns, 1);
    refuse(w, fd, peer);
    return;
  }
  c = conn_new(w, fd, l->s.sock.family, l->spec, peer);
  if (c == NULL) {
    atomic_fetch_sub(&srv->nconns, 1);
    return;
  }
  stat_add(&w->stats.accepted, 1);
  if (srv->cfg.proxy_protocol)
    start_proxy(c); /* the open line waits for the real peer */
  else
    start_conn(c);
}

/* ---- binding ---- */

/* The address as the readiness line shows it: tcp://, udp://, unix://,
 * and for TLS listeners tls:// (TCP) or tls+unix:// (Unix), the forms
 * sockit-client accepts as they are. */
static void format_url(struct listen_spec *sp, const sk_endpoint *bound,
                       int tls) {
  char a[SK_ENDPOINT_STRLEN];
  const char *scheme = sp->kind == LISTEN_UDP ? "udp://"
                       : tls                  ? "tls://"
                                              : "tcp://";
  const char *addr = a;
  size_t o = 0;

  if (sk_endpoint_format(bound, a, sizeof(a)) < 0)
    snprintf(a, sizeof(a), "%s", sp->text);
  if (sp->kind == LISTEN_UNIX) {
    scheme = tls ? "tls+unix://" : "unix://";
    if (strncmp(a, "unix:", 5) == 0)
      addr = a + 5;
  }
  o = (size_t)snprintf(sp->url, sizeof(sp->url), "%s", scheme);
  /* The readiness line is split on white space by its readers, so a
   * space in a socket path is written as %20. */
  for (; *addr != '\0' && o + 4 < sizeof(sp->url); addr++) {
    if (*addr == ' ') {
      memcpy(sp->url + o, "%20", 3);
      o += 3;
    } else {
      sp->url[o++] = *addr;
    }
  }
  sp->url[o] = '\0';
}

/* Every worker's listener for spec idx, initialised (not open yet). */
static void init_listeners(struct server *srv, size_t idx) {
  struct listen_spec *sp = &srv->cfg.specs[idx];
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    if (sp->kind == LISTEN_UDP) {
      struct udp_listener *u = &w->udp[idx];
      sk_udp_init(&w->loop, &u->u);
      u->u.h.data = u;
      u->w = w;
      u->spec = sp;
    } else {
      struct stream_listener *l = &w->tcp[idx];
      sk_stream_init(&w->loop, &l->s);
      l->s.h.data = l;
      l->w = w;
      l->spec = sp;
    }
  }
}

static sk_socket *listener_sock(struct worker *w, const struct listen_spec *sp,
                                size_t idx) {
  return sp->kind == LISTEN_UDP ? &w->udp[idx].u.sock : &w->tcp[idx].s.sock;
}

/* TCP and UDP: one listener per worker on one port (sockit/listen.h: port
 * 0 picks a port nobody holds, and a port someone holds is refused rather
 * than shared). */
static void bind_ip(struct server *srv, size_t idx) {
  struct listen_spec *sp = &srv->cfg.specs[idx];
  unsigned n = srv->nworkers;
  void **hs = calloc(n, sizeof(*hs));
  sk_endpoint local;
  int rc;

  if (hs == NULL)
    cli_fatal(SK_PROG_NAME, 1, "out of memory");
  init_listeners(srv, idx);
  for (unsigned i = 0; i < n; i++)
    hs[i] = sp->kind == LISTEN_UDP ? (void *)&srv->workers[i].udp[idx].u
                                   : (void *)&srv->workers[i].tcp[idx].s;
  if (sp->kind == LISTEN_UDP)
    rc = sk_udp_bind_group((sk_udp *const *)hs, n, &sp->ep, 0);
  else
    rc = sk_stream_listen_group((sk_stream *const *)hs, n, &sp->ep, 0, 0);
  free(hs);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "cannot listen on %s: %s", sp->text,
              sk_strerror(rc));
  rc = sk_socket_local(listener_sock(&srv->workers[0], sp, idx), &local);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "%s: getsockname: %s", sp->text,
              sk_strerror(rc));
  format_url(sp, &local, srv->cfg.tls != NULL);
  sk_endpoint_set_port(&sp->ep, sk_endpoint_port(&local));
}

/* A socket file nobody listens on is left over from a server that died;
 * it may be replaced. Anything else (a live socket, a regular file) may
 * not. */
static int unix_stale(const sk_endpoint *ep) {
  struct stat st;
  sk_socket probe;
  int stale;
  if (ep->u.un.sun_path[0] == '\0' || lstat(ep->u.un.sun_path, &st) < 0 ||
      !S_ISSOCK(st.st_mode))
    return 0;
  if (sk_socket_open(&probe, AF_UNIX, SOCK_STREAM, 0) < 0)
    return 0;
  stale = sk_socket_connect(&probe, ep, 0) == -ECONNREFUSED;
  (void)sk_socket_abort(&probe);
  return stale;
}

/* One socket, one queue: the other workers poll a duplicate of worker 0's
 * listener for spec idx (a Unix listener, or a socket systemd passed).
 * Whichever loop reads first takes the connection or datagram. */
static void share_listener(struct server *srv, size_t idx) {
  const struct listen_spec *sp = &srv->cfg.specs[idx];
  int fd0 = listener_sock(&srv->workers[0], sp, idx)->fd;
  int rc;

  for (unsigned i = 1; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    int fd = fcntl(fd0, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
      cli_fatal(SK_PROG_NAME, 1, "%s: dup: %s", sp->text, strerror(errno));
    rc = sp->kind == LISTEN_UDP ? sk_udp_open(&w->udp[idx].u, fd)
                                : sk_stream_open(&w->tcp[idx].s, fd);
    if (rc < 0)
      cli_fatal(SK_PROG_NAME, 1, "%s: %s", sp->text, sk_strerror(rc));
  }
}

static void bind_unix(struct server *srv, size_t idx) {
  struct listen_spec *sp = &srv->cfg.specs[idx];
  struct stream_listener *l0 = &srv->workers[0].tcp[idx];
  sk_endpoint local;
  int rc;

  init_listeners(srv, idx);
  rc = sk_stream_listen(&l0->s, &sp->ep, 0, 0);
  if (rc == -EADDRINUSE && unix_stale(&sp->ep)) {
    unlink(sp->ep.u.un.sun_path);
    rc = sk_stream_listen(&l0->s, &sp->ep, 0, 0);
  }
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "cannot listen on %s: %s", sp->text,
              sk_strerror(rc));
  sp->created_path = sp->ep.u.un.sun_path[0] != '\0';
  if (sp->created_path) {
    struct stat st;
    if (stat(sp->ep.u.un.sun_path, &st) == 0) {
      sp->path_dev = (unsigned long long)st.st_dev;
      sp->path_ino = (unsigned long long)st.st_ino;
    }
  }
  if (sk_socket_local(&l0->s.sock, &local) < 0)
    local = sp->ep;
  format_url(sp, &local, srv->cfg.tls != NULL);
  share_listener(srv, idx);
}

/* A socket systemd passed (spec->sd_fd): served as it is, by every worker
 * through a duplicate of it (see share_listener()). */
static void adopt_passed(struct server *srv, size_t idx) {
  struct listen_spec *sp = &srv->cfg.specs[idx];
  struct worker *w0 = &srv->workers[0];
  sk_endpoint local;
  int rc;

  init_listeners(srv, idx);
  if (sp->kind == LISTEN_UDP)
    rc = sk_udp_open(&w0->udp[idx].u, sp->sd_fd);
  else
    rc = sk_stream_open(&w0->tcp[idx].s, sp->sd_fd);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "%s: %s", sp->text, sk_strerror(rc));
  if (sk_socket_local(listener_sock(w0, sp, idx), &local) == 0) {
    sp->ep = local;
    format_url(sp, &local, srv->cfg.tls != NULL);
  } else {
    snprintf(sp->url, sizeof(sp->url), "%s", sp->text);
  }
  share_listener(srv, idx);
}

void listeners_bind(struct server *srv) {
  const struct server_config *cfg = &srv->cfg;
  for (size_t i = 0; i < cfg->nspecs; i++) {
    if (cfg->specs[i].sd_fd > 0)
      adopt_passed(srv, i);
    else if (cfg->specs[i].kind == LISTEN_UNIX)
      bind_unix(srv, i);
    else
      bind_ip(srv, i);
  }
}

void listeners_start(struct server *srv) {
  const struct server_config *cfg = &srv->cfg;
  int rc;
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    for (size_t j = 0; j < cfg->nspecs; j++) {
      if (cfg->specs[j].kind == LISTEN_UDP)
        rc = udp_listener_start(&w->udp[j]);
      else
        rc = sk_stream_accept_start(&w->tcp[j].s, on_accept);
      if (rc < 0)
        cli_fatal(SK_PROG_NAME, 1, "%s: %s", cfg->specs[j].url,
                  sk_strerror(rc));
    }
  }
}

void listeners_close(struct worker *w) {
  const struct server_config *cfg = &w->srv->cfg;
  for (size_t i = 0; i < cfg->nspecs; i++) {
    if (cfg->specs[i].kind == LISTEN_UDP) {
      sk_close(&w->udp[i].u.h, NULL);
      continue;
    }
    /* What the kernel accepted already is taken and served, not reset by
     * the close. A socket systemd handed over stays open in systemd: what
     * waits in its backlog is for the next instance, not ours to take. */
    if (cfg->specs[i].sd_fd == 0)
      (void)sk_stream_accept_queued(&w->tcp[i].s, on_accept, STOP_ACCEPT_MAX);
    sk_close(&w->tcp[i].s.h, NULL);
  }
}

void listeners_print_ready(const struct server *srv) {
  const struct server_config *cfg = &srv->cfg;
  const struct mode *m = cfg->mode;
  char line[4096];
  size_t o = 0;
  int has_stream = 0;

  o += (size_t)snprintf(line + o, sizeof(line) - o, "%s: listening on",
                        SK_PROG_NAME);
  for (size_t i = 0; i < cfg->nspecs && o < sizeof(line); i++) {
    o += (size_t)snprintf(line + o, sizeof(line) - o, " %s", cfg->specs[i].url);
    if (cfg->specs[i].kind != LISTEN_UDP)
      has_stream = 1;
  }
  /* The frame is shown where it was a choice: a mode that takes one frame
   * only, or none, is named alone. */
  if (o < sizeof(line)) {
    if (has_stream && cfg->frame != SK_FRAME_RAW &&
        (m->frames & (m->frames - 1)) != 0)
      o += (size_t)snprintf(line + o, sizeof(line) - o, " (%s, frame %s)",
                            m->name, sk_frame_mode_name(cfg->frame));
    else
      o += (size_t)snprintf(line + o, sizeof(line) - o, " (%s)", m->name);
  }
  if (o > sizeof(line) - 2)
    o = sizeof(line) - 2;
  line[o++] = '\n';
  /* Printed whatever the log level: scripts and tests wait for it. */
  log_write(line, o);
}
