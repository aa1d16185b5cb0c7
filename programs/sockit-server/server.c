/* sockit-server: listeners, workers, connections, the TLS handshake,
 * framing, back-pressure, idle timeouts, connection limits and the graceful
 * stop. The modes only see decoded frames (or raw bytes) and a handful of
 * helpers. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

/* Connections picked up from a listener's backlog when the stop arrives,
 * so that clients the kernel already accepted get a clean close instead of
 * the reset a closing listener would give them. */
#define STOP_ACCEPT_MAX 4096

static void on_recv(sk_stream *s, ssize_t n, const void *buf);

/* ---- rate-limited warnings ---- */

/* Returns 1 at most once a second per counter, across all workers. */
static int rate_ok(atomic_uint_fast64_t *last_ms, uint64_t now) {
  uint_fast64_t prev = atomic_load_explicit(last_ms, memory_order_relaxed);
  if (prev != 0 && now - prev < 1000)
    return 0;
  return atomic_compare_exchange_strong(last_ms, &prev, now);
}

/* ---- connections ---- */

static void conn_freed(sk_handle *h) {
  free(h->data);
}

const char *conn_name(const struct conn *c) {
  static _Thread_local char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep;
  memset(&ep, 0, sizeof(ep));
  if (c->peer_family == AF_INET) {
    ep.u.in4.sin_family = AF_INET;
    memcpy(&ep.u.in4.sin_addr, c->peer_addr, 4);
    ep.u.in4.sin_port = htons(c->peer_port);
    ep.len = sizeof(ep.u.in4);
  } else if (c->peer_family == AF_INET6) {
    ep.u.in6.sin6_family = AF_INET6;
    memcpy(&ep.u.in6.sin6_addr, c->peer_addr, 16);
    ep.u.in6.sin6_port = htons(c->peer_port);
    ep.len = sizeof(ep.u.in6);
  }
  if (ep.len == 0 || sk_endpoint_format(&ep, buf, sizeof(buf)) <= 0)
    snprintf(buf, sizeof(buf), "%.100s#%d", c->spec->url, c->peer_fd);
  return buf;
}

static void worker_maybe_finish(struct worker *w) {
  if (!w->stopping || w->nconns > 0 || w->finished)
    return;
  /* The last thing keeping the loop alive: once it is closed,
   * sk_loop_run() returns and the thread ends. */
  w->finished = 1;
  sk_close(&w->grace.h, NULL);
  sk_close(&w->sweep.h, NULL);
  sk_close(&w->gauges.h, NULL);
}

/* The transport label of c's listener (metrics.h). */
static const char *conn_transport(const struct conn *c) {
  static const char *plain[] = {"tcp", "unix", "udp"};
  static const char *tls[] = {"tls", "tls+unix", "udp"};
  return (conn_tls(c) ? tls : plain)[c->spec->kind];
}

/* The one line a connection gets when it opens (JSON: event "open"). */
static void log_conn_opened(const struct conn *c) {
  struct log_field f[] = {
      {"event", "open", 0},
      {"peer", conn_name(c), 0},
      {"listener", c->spec->url, 0},
      {"mode", conn_cfg(c)->mode->name, 0},
      {"transport", conn_transport(c), 0},
  };
  if (log_level() < LOG_INFO)
    return;
  log_event(LOG_INFO, f, sizeof(f) / sizeof(f[0]), "connection from %s on %s",
            f[1].str, c->spec->url);
}

/* The one line a connection gets when it closes: why, how long, and the
 * bytes and messages each way (JSON: event "close" and those fields). */
static void log_conn_closed(const struct conn *c, const char *why) {
  static const char *kinds[CLOSE_KINDS] = {
      "done",        "error",         "idle_timeout", "frame_timeout",
      "frame_error", "tls_handshake", "stopping"};
  uint64_t ms = sk_loop_now(c->s.h.loop) - c->opened_ms;
  const char *name = conn_name(c);
  struct log_field f[] = {
      {"event", "close", 0},
      {"peer", name, 0},
      {"duration_ms", NULL, ms},
      {"bytes_in", NULL, c->bytes_in},
      {"bytes_out", NULL, c->bytes_out},
      {"msgs_in", NULL, c->msgs_in},
      {"msgs_out", NULL, c->msgs_out},
      {"reason", kinds[c->close_kind], 0},
      {"why", why != NULL ? why : kinds[c->close_kind], 0},
      {"mode", conn_cfg(c)->mode->name, 0},
      {"transport", conn_transport(c), 0},
  };
  if (log_level() < LOG_INFO)
    return;
  log_event(LOG_INFO, f, sizeof(f) / sizeof(f[0]),
            "connection from %s closed%s%s (after %llu.%03llu s; in %llu "
            "bytes, %llu msgs; out %llu bytes, %llu msgs)",
            name, why ? ": " : "", why ? why : "",
            (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
            (unsigned long long)c->bytes_in, (unsigned long long)c->msgs_in,
            (unsigned long long)c->bytes_out, (unsigned long long)c->msgs_out);
}

/* Counts bytes and messages on c and its worker's transport counters. */
static void conn_count(struct conn *c, int dir, uint64_t bytes, uint64_t msgs) {
  struct wstats *st = &c->w->stats;
  if (dir == DIR_IN) {
    c->bytes_in += bytes;
    c->msgs_in += msgs;
  } else {
    c->bytes_out += bytes;
    c->msgs_out += msgs;
  }
  if (bytes > 0)
    stat_add(&st->bytes[c->spec->kind][dir], bytes);
  if (msgs > 0)
    stat_add(&st->msgs[c->spec->kind][dir], msgs);
}

void conn_sent(struct conn *c, size_t bytes) {
  conn_count(c, DIR_OUT, bytes, 1);
}

void conn_sentv(struct conn *c, const struct iovec *iov, int n) {
  size_t bytes = 0;
  for (int i = 0; i < n; i++)
    bytes += iov[i].iov_len;
  conn_sent(c, bytes);
}

void conn_close(struct conn *c, const char *why) {
  struct worker *w = c->w;
  const struct mode *m = w->srv->cfg.mode;

  if (c->flags & C_CLOSING)
    return;
  c->flags |= C_CLOSING;
  /* A connection that failed its TLS handshake never reached the mode. */
  if (m->close != NULL && (c->flags & C_OPEN))
    m->close(c);
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  w->nconns--;
  atomic_fetch_sub_explicit(&w->srv->nconns, 1, memory_order_relaxed);
  if (c->close_kind == CLOSE_DONE && why != NULL)
    c->close_kind = CLOSE_ERROR;
  stat_add(&w->stats.closed[c->close_kind], 1);
  log_conn_closed(c, why);
  /* Over TLS, close_notify tells the peer that the session was ended on
   * purpose (idle timeout, end of the grace period) rather than cut. It is
   * sent only when nothing else waits in the queue: the close drops queued
   * bytes, and a peer that reads nothing would not see it anyway. */
  if (conn_tls(c) && !(c->flags & (C_HANDSHAKE | C_SHUT)) &&
      sk_stream_write_queue_size(&c->s) == 0)
    (void)sk_stream_shutdown(&c->s, NULL, NULL);
  sk_close(&c->s.h, conn_freed);
  worker_maybe_finish(w);
}

int conn_send(struct conn *c, const struct iovec *iov, int n) {
  int rc = sk_stream_sendv(&c->s, iov, n, NULL, NULL);
  if (rc < 0) {
    conn_close(c, sk_strerror(rc));
    return -1;
  }
  conn_sentv(c, iov, n);
  return 0;
}

static void on_shut(sk_stream *s, int status, void *arg) {
  struct conn *c = arg;
  (void)s;
  if (c->flags & C_CLOSING)
    return;
  c->flags |= C_SHUT_DONE;
  if (status < 0)
    conn_close(c, sk_strerror(status));
  else if (c->flags & C_EOF)
    conn_close(c, NULL);
}

void conn_finish(struct conn *c) {
  int rc;
  if (c->flags & (C_CLOSING | C_SHUT))
    return;
  if (c->flags & C_HELD) {
    /* The mode is still producing a reply; the FIN follows it. */
    c->flags |= C_FINISH_DUE;
    return;
  }
  c->flags |= C_SHUT;
  /* From here on input is read and dropped: reading must go on so the
   * peer's FIN is seen and so that unread bytes do not turn the final
   * close into a reset. */
  if (c->flags & C_PAUSED) {
    c->flags &= ~C_PAUSED;
    sk_stream_recv_resume(&c->s);
  }
  rc = sk_stream_shutdown(&c->s, on_shut, c);
  if (rc < 0)
    conn_close(c, sk_strerror(rc));
}

int conn_unread(const struct conn *c) {
  return sk_socket_available(&c->s.sock) > 0;
}

void conn_hold(struct conn *c) {
  if (c->flags & (C_CLOSING | C_HELD))
    return;
  c->flags |= C_HELD;
  sk_stream_recv_pause(&c->s);
}

void conn_release(struct conn *c) {
  if ((c->flags & (C_CLOSING | C_HELD)) != C_HELD)
    return;
  c->flags &= ~C_HELD;
  /* Back-pressure may have paused reading too; its drain resumes it. */
  if (!(c->flags & C_PAUSED))
    sk_stream_recv_resume(&c->s);
  if (c->flags & C_FINISH_DUE) {
    c->flags &= ~C_FINISH_DUE;
    conn_finish(c);
  }
}

/* 1 if the connection carries a frame decoder (not --frame raw). */
static int conn_framed(const struct conn *c) {
  return conn_cfg(c)->frame != SK_FRAME_RAW;
}

/* 1 if bytes of an unfinished frame have arrived. */
static int conn_mid_frame(const struct conn *c) {
  return conn_framed(c) && sk_frame_decoder_busy(&c->dec);
}

/* Server stop, per connection: what the client sent before the stop (read
 * or still in the kernel) is answered, the frame in progress is completed,
 * then everything queued goes out, then the FIN. */
static void conn_stop(struct conn *c) {
  const struct mode *m = conn_cfg(c)->mode;
  if (c->flags & (C_CLOSING | C_STOPPING))
    return;
  c->flags |= C_STOPPING;
  if (c->flags & C_HANDSHAKE) {
    /* Nothing was asked of the mode yet: there is nothing to finish. */
    c->close_kind = CLOSE_STOPPING;
    conn_close(c, "server stopping");
    return;
  }
  if (m->stop != NULL)
    m->stop(c);
  else if (!conn_mid_frame(c) && !conn_unread(c))
    conn_finish(c);
  /* Otherwise on_recv() finishes at the first frame boundary. */
}

size_t conn_frame_len(const struct conn *c, const sk_frame_piece *p) {
  return conn_framed(c) ? c->frame_bytes : p->len;
}

/* 1 if an unfinished frame is being timed (--frame-timeout). */
static int frame_timed(const struct conn *c) {
  return conn_cfg(c)->frame_ms > 0 && conn_mid_frame(c);
}

/* Applies the idle and frame timeouts to one connection. Returns 1 if it
 * closed it. */
static int conn_check_timeouts(struct conn *c, uint64_t now) {
  const struct server_config *cfg = conn_cfg(c);
  size_t q = sk_stream_write_queue_size(&c->s);
  char why[80];

  /* Output still moving to a peer that reads counts as life; a queue
   * that has not shrunk since the last look does not. */
  if (q != 0 && q != c->last_wq)
    c->last_active = now;
  c->last_wq = q;
  if (cfg->idle_ms > 0 && now - c->last_active >= cfg->idle_ms) {
    snprintf(why, sizeof(why), "idle for %llu s",
             (unsigned long long)((now - c->last_active) / 1000));
    c->close_kind = CLOSE_IDLE;
    conn_close(c, why);
    return 1;
  }
  /* The frame timeout is the defence against a peer that trickles a frame
   * a byte at a time, which the idle timeout alone never catches. */
  if (frame_timed(c) && now - c->frame_start >= cfg->frame_ms) {
    snprintf(why, sizeof(why), "frame not complete after %llu s",
             (unsigned long long)((now - c->frame_start) / 1000));
    log_error("%s: %s, closing the connection", conn_name(c), why);
    c->close_kind = CLOSE_FRAME_TIMEOUT;
    stat_add(&c->w->stats.frames_rejected[FRAME_TIMEOUT], 1);
    conn_close(c, why);
    return 1;
  }
  return 0;
}

/* One timer per worker walks its connections a few times per timeout
 * period, instead of one timer per connection: activity only stores a
 * time stamp, and an idle connection carries no timer of its own. A
 * timeout fires between its period and a quarter period later. */
static void sweep_cb(sk_timer *t) {
  struct worker *w = t->h.data;
  uint64_t now = sk_loop_now(t->h.loop);
  struct conn *c, *next;
  for (c = w->conns; c != NULL; c = next) {
    next = c->next;
    if (!(c->flags & C_CLOSING))
      conn_check_timeouts(c, now);
  }
}

/* --metrics: the worker's gauges, refreshed once a second (walking the
 * connections is cheap at that pace, and costs nothing per message). */
static void gauges_cb(sk_timer *t) {
  struct worker *w = t->h.data;
  uint64_t queued = 0, paused = 0;
  for (struct conn *c = w->conns; c != NULL; c = c->next) {
    queued += sk_stream_write_queue_size(&c->s);
    paused += (c->flags & C_PAUSED) != 0;
  }
  stat_set(&w->stats.queued_bytes, queued);
  stat_set(&w->stats.paused, paused);
}

/* How often sweep_cb runs: a quarter of the shortest timeout, between
 * 50 ms and 1 s; 0 when no timeout is set. */
static uint64_t sweep_interval(const struct server_config *cfg) {
  uint64_t t = cfg->idle_ms;
  if (cfg->frame != SK_FRAME_RAW && cfg->frame_ms > 0 &&
      (t == 0 || cfg->frame_ms < t))
    t = cfg->frame_ms;
  if (t == 0)
    return 0;
  t /= 4;
  return t < 50 ? 50 : t > 1000 ? 1000 : t;
}

static void on_drain(sk_stream *s) {
  struct conn *c = s->h.data;
  conn_touch(c);
  if ((c->flags & C_PAUSED) && !(c->flags & C_CLOSING)) {
    c->flags &= ~C_PAUSED;
    if (!(c->flags & C_HELD))
      sk_stream_recv_resume(s);
  }
}

static void frame_error(struct conn *c, int err) {
  char why[160];
  if (err == SK_EFRAMETOOBIG)
    snprintf(why, sizeof(why),
             "frame larger than --max-frame (%zu bytes), closing the "
             "connection",
             conn_cfg(c)->max_frame);
  else
    snprintf(why, sizeof(why), "%s, closing the connection", sk_strerror(err));
  log_error("%s: %s", conn_name(c), why);
  c->close_kind = CLOSE_FRAME_ERROR;
  stat_add(
      &c->w->stats.frames_rejected[err == SK_EFRAMETOOBIG ? FRAME_TOO_BIG
                                                          : FRAME_MALFORMED],
      1);
  conn_close(c, sk_strerror(err));
}

/* One decoded piece to the mode, with the per-frame log line (-v). */
static void deliver(struct conn *c, const sk_frame_piece *p) {
  if (conn_framed(c)) {
    if (p->flags & SK_FRAME_BEGIN)
      c->frame_bytes = 0;
    c->frame_bytes += p->len;
    if (p->flags & SK_FRAME_END)
      conn_count(c, DIR_IN, 0, 1);
  }
  if ((p->flags & SK_FRAME_END) && log_level() >= LOG_DEBUG)
    log_msg(LOG_DEBUG, "recv %zu bytes from %s", conn_frame_len(c, p),
            conn_name(c));
  conn_cfg(c)->mode->piece(c, p);
}

/* Cuts the bytes into frame pieces without ever holding a frame whole:
 * each piece points into the loop's read buffer and is passed on at once. */
static void feed_frames(struct conn *c, const unsigned char *p, size_t len) {
  if (!conn_framed(c)) {
    /* raw: whatever arrived is one whole frame. */
    sk_frame_piece piece = {p, len, SK_FRAME_BEGIN | SK_FRAME_END, 0};
    deliver(c, &piece);
    return;
  }
  while (len > 0) {
    sk_frame_piece piece;
    int was_busy = sk_frame_decoder_busy(&c->dec);
    int used = sk_frame_decode(&c->dec, p, len, &piece);
    if (used < 0) {
      frame_error(c, used);
      return;
    }
    if (!was_busy && sk_frame_decoder_busy(&c->dec))
      c->frame_start = sk_loop_now(c->s.h.loop);
    p += used;
    len -= (size_t)used;
    if (piece.flags == 0 && piece.len == 0)
      continue; /* only header bytes so far */
    deliver(c, &piece);
    if (c->flags & (C_CLOSING | C_SHUT))
      return;
  }
}

static void on_eof(struct conn *c) {
  const struct mode *m = conn_cfg(c)->mode;
  c->flags |= C_EOF;
  if (c->flags & C_SHUT) {
    if (c->flags & C_SHUT_DONE)
      conn_close(c, NULL);
    return;
  }
  if (!(m->flags & MODE_UNFRAMED) && conn_framed(c)) {
    sk_frame_piece p;
    int rc = sk_frame_decode_eof(&c->dec, &p);
    if (rc < 0) {
      /* What was echoed of earlier frames still goes out before the
       * FIN; only the cut frame is lost. */
      log_warn("%s: stream ended inside a frame (%s)", conn_name(c),
               sk_strerror(rc));
      stat_add(&c->w->stats.frames_rejected[FRAME_TRUNCATED], 1);
    } else if (rc == 1) {
      deliver(c, &p);
      if (c->flags & C_CLOSING)
        return;
    }
  }
  conn_finish(c);
}

static void on_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct conn *c = s->h.data;
  const struct server_config *cfg = conn_cfg(c);

  if (n > 0) {
    conn_touch(c);
    /* Bytes in count every read; messages in count frames where there is
     * a decoder (deliver()), reads otherwise. */
    conn_count(c, DIR_IN, (uint64_t)n,
               (cfg->mode->flags & MODE_UNFRAMED) || !conn_framed(c) ? 1 : 0);
    if (c->flags & (C_SHUT | C_CLOSING))
      return;
    if (cfg->mode->flags & MODE_UNFRAMED)
      cfg->mode->data(c, buf, (size_t)n);
    else
      feed_frames(c, buf, (size_t)n);
    if ((c->flags & (C_STOPPING | C_CLOSING | C_SHUT)) == C_STOPPING &&
        !(cfg->mode->flags & MODE_UNFRAMED) && !conn_mid_frame(c)) {
      conn_finish(c);
      return;
    }
    /* Back-pressure: a peer that sends faster than it reads stops being
     * read until its output drains, so memory stays bounded. */
    if (!(c->flags & (C_CLOSING | C_SHUT | C_PAUSED)) &&
        sk_stream_write_queue_memory(s) > cfg->max_queue) {
      c->flags |= C_PAUSED;
      sk_stream_recv_pause(s);
      log_debug("%s: output queue over %zu bytes, reading paused", conn_name(c),
                cfg->max_queue);
    }
    return;
  }
  if (n == SK_EOF) {
    on_eof(c);
    return;
  }
  if (n == -ECANCELED)
    return;
  conn_close(c, sk_strerror((int)n));
}

/* Keeps what conn_name() needs: 32 bytes instead of a formatted string. */
static void conn_set_peer(struct conn *c, const sk_endpoint *peer,
                          const struct stream_listener *l, int fd) {
  c->spec = l->spec;
  c->peer_fd = fd;
  if (peer == NULL)
    return;
  if (sk_endpoint_family(peer) == AF_INET) {
    c->peer_family = AF_INET;
    memcpy(c->peer_addr, &peer->u.in4.sin_addr, 4);
  } else if (sk_endpoint_family(peer) == AF_INET6) {
    c->peer_family = AF_INET6;
    memcpy(c->peer_addr, &peer->u.in6.sin6_addr, 16);
  }
  c->peer_port = sk_endpoint_port(peer);
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
  if (status == -EMFILE || status == -ENFILE || status == -ENOBUFS ||
      status == -ENOMEM) {
    if (rate_ok(&srv->emfile_log_ms, sk_loop_now(&l->w->loop)))
      log_warn("%s: cannot accept: %s (%s); shedding new connections",
               l->spec->url, sk_strerror(status), sk_err_name(status));
    return;
  }
  log_error("%s: accept failed: %s; no longer accepting there", l->spec->url,
            sk_strerror(status));
}

/* Why a TLS call failed, in words: the library's reason when it has one,
 * else the code's own text. */
static const char *tls_error_text(int err) {
  const char *why = sk_tls_last_error();
  return why[0] != '\0' ? why : sk_strerror(err);
}

/* The connection can carry data (accepted, and past the TLS handshake if
 * any): reading starts and the mode takes over. */
static void conn_ready(struct conn *c) {
  const struct server_config *cfg = conn_cfg(c);
  int rc;
  sk_stream_on_drain(&c->s, on_drain);
  rc = sk_stream_recv_start(&c->s, on_recv);
  if (rc < 0) {
    conn_close(c, sk_strerror(rc));
    return;
  }
  c->flags |= C_OPEN;
  if (cfg->mode->open != NULL)
    cfg->mode->open(c);
  if (c->w->stopping && !(c->flags & C_CLOSING))
    conn_stop(c);
}

/* A failed handshake costs one log line and that connection alone: a port
 * scanner, a plain-text client or a client that rejects our certificate
 * must not disturb anyone else. */
static void on_handshake(sk_stream *s, int status) {
  struct conn *c = s->h.data;
  if (c->flags & C_CLOSING)
    return; /* -ECANCELED: closed during the handshake */
  c->flags &= ~C_HANDSHAKE;
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
                tls_error_text(status));
    conn_close(c, NULL);
    return;
  }
  log_debug("%s: %s, %s", conn_name(c), sk_stream_tls_version(s),
            sk_stream_tls_cipher(s));
  conn_touch(c);
  conn_ready(c);
}

static void on_accept(sk_stream *ls, int status, int fd,
                      const sk_endpoint *peer) {
  struct stream_listener *l = ls->h.data;
  struct worker *w = l->w;
  struct server *srv = w->srv;
  const struct server_config *cfg = &srv->cfg;
  struct conn *c;
  int rc;

  if (status < 0) {
    accept_error(l, status);
    return;
  }
  if (atomic_fetch_add(&srv->nconns, 1) >= cfg->max_conns) {
    atomic_fetch_sub(&srv->nconns, 1);
    refuse(w, fd, peer);
    return;
  }
  c = calloc(1, cfg->frame == SK_FRAME_RAW ? CONN_RAW_SIZE : sizeof(*c));
  if (c == NULL) {
    atomic_fetch_sub(&srv->nconns, 1);
    close(fd);
    log_error("out of memory, connection dropped");
    return;
  }
  c->w = w;
  sk_stream_init(&w->loop, &c->s);
  c->s.h.data = c;
  rc = sk_stream_open_accepted(&c->s, fd, l->s.sock.family);
  if (rc < 0) {
    atomic_fetch_sub(&srv->nconns, 1);
    close(fd);
    log_error("cannot use accepted connection: %s", sk_strerror(rc));
    sk_close(&c->s.h, conn_freed);
    return;
  }
  conn_set_peer(c, peer, l, fd);
  /* Echoes are small writes that must not wait for Nagle's algorithm. */
  if (l->spec->kind == LISTEN_TCP)
    sk_opt_set_nodelay(&c->s.sock, 1);
  if (cfg->frame != SK_FRAME_RAW)
    sk_frame_decoder_init(&c->dec, cfg->frame, cfg->max_frame);
  c->next = w->conns;
  if (w->conns != NULL)
    w->conns->prev = c;
  w->conns = c;
  w->nconns++;
  conn_touch(c);
  c->opened_ms = c->last_active;
  stat_add(&w->stats.accepted, 1);
  log_conn_opened(c);
  if (cfg->tls != NULL) {
    /* The handshake reads by itself; the mode starts once it succeeded.
     * Its deadline (--handshake-timeout) is the context's. */
    sk_tls_ctx *ctx;
    c->flags |= C_HANDSHAKE;
    /* The context loaded last (SIGHUP reloads it); the stream keeps its
     * own reference for as long as it needs one. */
    pthread_mutex_lock(&srv->tls_lock);
    ctx = sk_tls_ctx_ref(srv->tls_cur);
    pthread_mutex_unlock(&srv->tls_lock);
    rc = sk_stream_tls_start(&c->s, ctx, NULL, on_handshake);
    sk_tls_ctx_free(ctx);
    if (rc < 0) {
      log_error("%s: cannot start TLS: %s", conn_name(c), tls_error_text(rc));
      c->close_kind = CLOSE_TLS;
      conn_close(c, NULL);
      return;
    }
    if (w->stopping)
      conn_stop(c);
    return;
  }
  conn_ready(c);
}

/* ---- workers ---- */

static void close_all(struct worker *w, const char *why) {
  struct conn *c, *next;
  for (c = w->conns; c != NULL; c = next) {
    next = c->next;
    c->close_kind = CLOSE_STOPPING;
    conn_close(c, why);
  }
}

static void grace_cb(sk_timer *t) {
  struct worker *w = t->h.data;
  if (w->nconns > 0)
    log_warn("grace period over: closing %zu connection%s", w->nconns,
             w->nconns == 1 ? "" : "s");
  close_all(w, "grace period over");
}

/* Takes what the kernel already accepted on a listener about to close. */
static void drain_backlog(struct stream_listener *l) {
  for (int i = 0; i < STOP_ACCEPT_MAX; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    sk_endpoint peer;
    int fd = accept4(l->s.sock.fd, (struct sockaddr *)&ss, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    if (sk_endpoint_from_sockaddr(&peer, (struct sockaddr *)&ss, len) != 0)
      memset(&peer, 0, sizeof(peer));
    on_accept(&l->s, 0, fd, &peer);
  }
}

static void worker_stop_cb(sk_post *p) {
  struct worker *w = p->data;
  const struct server_config *cfg = &w->srv->cfg;
  struct conn *c, *next;

  if (w->stopping)
    return;
  w->stopping = 1;
  for (size_t i = 0; i < cfg->nspecs; i++) {
    if (cfg->specs[i].kind == LISTEN_UDP) {
      sk_close(&w->udp[i].u.h, NULL);
    } else {
      /* A socket systemd handed over stays open in systemd: what waits in
       * its backlog is for the next instance, not ours to take. */
      if (cfg->specs[i].sd_fd == 0)
        drain_backlog(&w->tcp[i]);
      sk_close(&w->tcp[i].s.h, NULL);
    }
  }
  sk_close(&w->keepalive.h, NULL);
  /* conn_stop() may close only the connection it is given, so the saved
   * next pointer stays valid. */
  for (c = w->conns; c != NULL; c = next) {
    next = c->next;
    conn_stop(c);
  }
  if (w->nconns > 0) {
    if (cfg->grace_ms > 0)
      sk_timer_start(&w->grace, grace_cb, cfg->grace_ms, 0);
    else
      close_all(w, "server stopping");
  }
  worker_maybe_finish(w);
}

static void worker_force_cb(sk_post *p) {
  struct worker *w = p->data;
  worker_stop_cb(p);
  close_all(w, "server stopping now");
  worker_maybe_finish(w);
}

static void keepalive_cb(sk_async *a) {
  (void)a;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct server *srv = w->srv;
  int rc;
  /* SK_RUN_DEFAULT one iteration at a time, to count them (--metrics);
   * busy time is the thread's CPU time, read by the metrics thread. */
  while ((rc = sk_loop_run(&w->loop, SK_RUN_ONCE)) > 0)
    stat_add(&w->stats.iterations, 1);
  if (rc < 0) {
    log_error("worker %u: event loop failed: %s", w->id, sk_strerror(rc));
    srv->failed = 1;
  }
  if (atomic_fetch_sub(&srv->running, 1) == 1) {
    uint64_t one = 1;
    ssize_t n;
    do
      n = write(srv->done_fd, &one, sizeof(one));
    while (n < 0 && errno == EINTR);
  }
  return NULL;
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

/* With SO_REUSEPORT a second server on the same port would quietly share
 * it; a plain bind first tells "address in use" apart. */
static void probe_free(const struct listen_spec *sp) {
  int type = sp->kind == LISTEN_UDP ? SOCK_DGRAM : SOCK_STREAM;
  int one = 1, fd, err = 0;
  fd = socket(sk_endpoint_family(&sp->ep), type | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return; /* the real bind will report it */
  if (type == SOCK_STREAM)
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, &sp->ep.u.sa, sp->ep.len) < 0)
    err = errno;
  close(fd);
  if (err == EADDRINUSE)
    cli_fatal(SK_PROG_NAME, 1, "cannot listen on %s: %s", sp->text,
              strerror(err));
}

/* Port 0 with SO_REUSEPORT: the kernel may give a UDP socket a port that
 * another process's SO_REUSEPORT socket holds, and the two would then share
 * it. A plain bind finds a port nobody holds; the workers take that one. */
static uint16_t free_port(const struct listen_spec *sp) {
  int type = sp->kind == LISTEN_UDP ? SOCK_DGRAM : SOCK_STREAM;
  sk_endpoint local;
  socklen_t len = sizeof(local.u);
  uint16_t port = 0;
  int fd = socket(sk_endpoint_family(&sp->ep), type | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  if (bind(fd, &sp->ep.u.sa, sp->ep.len) == 0 &&
      getsockname(fd, &local.u.sa, &len) == 0) {
    local.len = len;
    port = sk_endpoint_port(&local);
  }
  close(fd);
  return port;
}

/* Binds worker w's listener for spec idx (initialised already) to ep. */
static int bind_one(struct worker *w, size_t idx, const sk_endpoint *ep,
                    unsigned flags, sk_socket **sock) {
  if (w->srv->cfg.specs[idx].kind == LISTEN_UDP) {
    *sock = &w->udp[idx].u.sock;
    return sk_udp_bind(&w->udp[idx].u, ep, flags);
  }
  *sock = &w->tcp[idx].s.sock;
  return sk_stream_listen(&w->tcp[idx].s, ep, 0, flags);
}

static void bind_ip(struct server *srv, size_t idx) {
  struct listen_spec *sp = &srv->cfg.specs[idx];
  unsigned flags = srv->nworkers > 1 ? SK_LISTEN_REUSEPORT : 0;
  sk_endpoint ep = sp->ep, local;
  sk_socket *sock;
  int rc;

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
  if (flags && sk_endpoint_port(&ep) != 0)
    probe_free(sp);
  /* Worker 0 first: with port 0 the others join the port it got. A port
   * found free can be taken by someone else before the bind; try again
   * with another one then. */
  for (int attempt = 0;; attempt++) {
    if (flags && sk_endpoint_port(&sp->ep) == 0)
      sk_endpoint_set_port(&ep, free_port(sp));
    rc = bind_one(&srv->workers[0], idx, &ep, flags, &sock);
    if (rc != -EADDRINUSE || sk_endpoint_port(&sp->ep) != 0 || attempt == 8)
      break;
  }
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "cannot listen on %s: %s", sp->text,
              sk_strerror(rc));
  rc = sk_socket_local(sock, &local);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "%s: getsockname: %s", sp->text,
              sk_strerror(rc));
  sk_endpoint_set_port(&ep, sk_endpoint_port(&local));
  format_url(sp, &local, srv->cfg.tls != NULL);
  for (unsigned i = 1; i < srv->nworkers; i++) {
    rc = bind_one(&srv->workers[i], idx, &ep, flags, &sock);
    if (rc < 0)
      cli_fatal(SK_PROG_NAME, 1, "cannot listen on %s: %s", sp->text,
                sk_strerror(rc));
  }
  sp->ep = ep;
}

/* A socket file nobody listens on is left over from a server that died;
 * it may be replaced. Anything else (a live socket, a regular file) may
 * not. */
static int unix_stale(const sk_endpoint *ep) {
  struct stat st;
  int fd, stale = 0;
  if (ep->u.un.sun_path[0] == '\0' || lstat(ep->u.un.sun_path, &st) < 0 ||
      !S_ISSOCK(st.st_mode))
    return 0;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  if (connect(fd, &ep->u.sa, ep->len) < 0 && errno == ECONNREFUSED)
    stale = 1;
  close(fd);
  return stale;
}

/* One socket, one queue: the other workers poll a duplicate of worker 0's
 * listener for spec idx (a Unix listener, or a socket systemd passed).
 * Whichever loop reads first takes the connection or datagram. */
static void share_listener(struct server *srv, size_t idx) {
  const struct listen_spec *sp = &srv->cfg.specs[idx];
  struct worker *w0 = &srv->workers[0];
  int fd0 =
      sp->kind == LISTEN_UDP ? w0->udp[idx].u.sock.fd : w0->tcp[idx].s.sock.fd;
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

  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    struct stream_listener *l = &w->tcp[idx];
    sk_stream_init(&w->loop, &l->s);
    l->s.h.data = l;
    l->w = w;
    l->spec = sp;
  }
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
  sk_socket *sock;
  sk_endpoint local;
  int rc;

  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    if (sp->kind == LISTEN_UDP) {
      sk_udp_init(&w->loop, &w->udp[idx].u);
      w->udp[idx].u.h.data = &w->udp[idx];
      w->udp[idx].w = w;
      w->udp[idx].spec = sp;
    } else {
      sk_stream_init(&w->loop, &w->tcp[idx].s);
      w->tcp[idx].s.h.data = &w->tcp[idx];
      w->tcp[idx].w = w;
      w->tcp[idx].spec = sp;
    }
  }
  if (sp->kind == LISTEN_UDP) {
    sock = &w0->udp[idx].u.sock;
    rc = sk_udp_open(&w0->udp[idx].u, sp->sd_fd);
  } else {
    sock = &w0->tcp[idx].s.sock;
    rc = sk_stream_open(&w0->tcp[idx].s, sp->sd_fd);
  }
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "%s: %s", sp->text, sk_strerror(rc));
  if (sk_socket_local(sock, &local) == 0) {
    sp->ep = local;
    format_url(sp, &local, srv->cfg.tls != NULL);
  } else {
    snprintf(sp->url, sizeof(sp->url), "%s", sp->text);
  }
  share_listener(srv, idx);
}

static void print_ready(const struct server *srv) {
  const struct server_config *cfg = &srv->cfg;
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
  if (o < sizeof(line)) {
    if (has_stream && cfg->frame != SK_FRAME_RAW &&
        !(cfg->mode->flags & MODE_LINES))
      o += (size_t)snprintf(line + o, sizeof(line) - o, " (%s, frame %s)",
                            cfg->mode->name, sk_frame_mode_name(cfg->frame));
    else
      o += (size_t)snprintf(line + o, sizeof(line) - o, " (%s)",
                            cfg->mode->name);
  }
  if (o > sizeof(line) - 2)
    o = sizeof(line) - 2;
  line[o++] = '\n';
  /* Printed whatever the log level: scripts and tests wait for it. */
  log_write(line, o);
}

void server_start(struct server *srv) {
  struct server_config *cfg = &srv->cfg;
  int rc;

  srv->nworkers = cfg->workers;
  srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
  if (srv->workers == NULL)
    cli_fatal(SK_PROG_NAME, 1, "out of memory");
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    w->id = i;
    w->srv = srv;
    rc = sk_loop_init(&w->loop);
    if (rc < 0)
      cli_fatal(SK_PROG_NAME, 1, "cannot create event loop: %s",
                sk_strerror(rc));
    w->loop.data = w;
    sk_async_init(&w->loop, &w->keepalive, keepalive_cb);
    sk_timer_init(&w->loop, &w->grace);
    w->grace.h.data = w;
    sk_timer_init(&w->loop, &w->sweep);
    w->sweep.h.data = w;
    if (sweep_interval(cfg) > 0) {
      uint64_t iv = sweep_interval(cfg);
      sk_timer_start(&w->sweep, sweep_cb, iv, iv);
      /* It never keeps a worker alive by itself. */
      sk_unref(&w->sweep.h);
    }
    sk_timer_init(&w->loop, &w->gauges);
    w->gauges.h.data = w;
    if (srv->metrics != NULL) {
      sk_timer_start(&w->gauges, gauges_cb, 1000, 1000);
      sk_unref(&w->gauges.h);
    }
    w->tcp = calloc(cfg->nspecs, sizeof(*w->tcp));
    w->udp = calloc(cfg->nspecs, sizeof(*w->udp));
    if (w->tcp == NULL || w->udp == NULL)
      cli_fatal(SK_PROG_NAME, 1, "out of memory");
  }
  pthread_mutex_init(&srv->tls_lock, NULL);
  srv->tls_cur = sk_tls_ctx_ref(cfg->tls);
  for (size_t i = 0; i < cfg->nspecs; i++) {
    if (cfg->specs[i].sd_fd > 0)
      adopt_passed(srv, i);
    else if (cfg->specs[i].kind == LISTEN_UNIX)
      bind_unix(srv, i);
    else
      bind_ip(srv, i);
  }
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
  srv->done_fd = eventfd(0, EFD_CLOEXEC);
  if (srv->done_fd < 0)
    cli_fatal(SK_PROG_NAME, 1, "eventfd: %s", strerror(errno));
  print_ready(srv);
  atomic_store(&srv->running, srv->nworkers);
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
      cli_fatal(SK_PROG_NAME, 1, "cannot start worker thread: %s",
                strerror(rc));
    w->started = 1;
  }
}

void server_stop(struct server *srv, int force) {
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    if (force)
      sk_loop_post(&w->loop, &w->force_post, worker_force_cb, w);
    else
      sk_loop_post(&w->loop, &w->stop_post, worker_stop_cb, w);
  }
}

void server_tls_swap(struct server *srv, sk_tls_ctx *ctx) {
  sk_tls_ctx *old;
  pthread_mutex_lock(&srv->tls_lock);
  old = srv->tls_cur;
  srv->tls_cur = ctx;
  pthread_mutex_unlock(&srv->tls_lock);
  sk_tls_ctx_free(old);
}

int server_wait(struct server *srv) {
  const struct server_config *cfg = &srv->cfg;
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    if (w->started)
      pthread_join(w->thread, NULL);
    if (sk_loop_free(&w->loop) < 0)
      log_debug("worker %u: handles left open at exit", i);
    free(w->tcp);
    free(w->udp);
  }
  for (size_t i = 0; i < cfg->nspecs; i++) {
    const struct listen_spec *sp = &cfg->specs[i];
    struct stat st;
    /* Only the socket file made at start: not one put in its place since
     * (another server's, or anything else). */
    if (sp->created_path && lstat(sp->ep.u.un.sun_path, &st) == 0 &&
        S_ISSOCK(st.st_mode) && (unsigned long long)st.st_dev == sp->path_dev &&
        (unsigned long long)st.st_ino == sp->path_ino)
      unlink(sp->ep.u.un.sun_path);
  }
  free(srv->workers);
  srv->workers = NULL;
  close(srv->done_fd);
  if (cfg->mode->teardown != NULL)
    cfg->mode->teardown(srv);
  /* Every connection holding a reference is gone with its loop. */
  sk_tls_ctx_free(srv->tls_cur);
  srv->tls_cur = NULL;
  pthread_mutex_destroy(&srv->tls_lock);
  sk_tls_ctx_free(srv->cfg.tls);
  srv->cfg.tls = NULL;
  return srv->failed ? 1 : 0;
}
