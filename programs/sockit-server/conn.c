/* A connection's life: created at accept, ready (the mode opens it), the
 * graceful finish (FIN after everything queued) and the close; what it
 * sends and receives is counted, and it gets one log line when it opens
 * and one when it closes. Back-pressure and the modes' holds each own a
 * pause of the stream's reading; idle and frame timeouts are checked by
 * one sweep timer per worker. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static void conn_freed(sk_handle *h) {
  free(h->data);
}

int conn_peer(const struct conn *c, sk_endpoint *ep) {
  memset(ep, 0, sizeof(*ep));
  if (c->peer_family == AF_INET) {
    ep->u.in4.sin_family = AF_INET;
    memcpy(&ep->u.in4.sin_addr, c->peer_addr, 4);
    ep->u.in4.sin_port = htons(c->peer_port);
    ep->len = sizeof(ep->u.in4);
  } else if (c->peer_family == AF_INET6) {
    ep->u.in6.sin6_family = AF_INET6;
    memcpy(&ep->u.in6.sin6_addr, c->peer_addr, 16);
    ep->u.in6.sin6_port = htons(c->peer_port);
    ep->len = sizeof(ep->u.in6);
  }
  return ep->len > 0 ? 0 : -1;
}

const char *conn_name(const struct conn *c) {
  static _Thread_local char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep;
  if (conn_peer(c, &ep) < 0 || sk_endpoint_format(&ep, buf, sizeof(buf)) <= 0)
    snprintf(buf, sizeof(buf), "%.100s#%d", c->spec->url, c->peer_fd);
  return buf;
}

const char *conn_transport(const struct conn *c) {
  static const char *plain[] = {"tcp", "unix", "udp"};
  static const char *tls[] = {"tls", "tls+unix", "udp"};
  return (conn_tls(c) ? tls : plain)[c->spec->kind];
}

/* The one line a connection gets when it opens (JSON: event "open"). */
void conn_log_opened(const struct conn *c) {
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
void conn_count(struct conn *c, int dir, uint64_t bytes, uint64_t msgs) {
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

/* ---- pauses: one per reason ---- */

static void conn_pause(struct conn *c, unsigned why) {
  if (c->pauses & why)
    return;
  c->pauses |= why;
  sk_stream_recv_pause(&c->s);
}

static void conn_unpause(struct conn *c, unsigned why) {
  if (!(c->pauses & why))
    return;
  c->pauses &= ~why;
  sk_stream_recv_resume(&c->s);
}

void conn_check_queue(struct conn *c) {
  size_t max = conn_cfg(c)->max_queue;
  if (conn_finishing(c) || (c->pauses & PAUSE_WRITE) ||
      sk_stream_write_queue_memory(&c->s) <= max)
    return;
  /* A peer that sends faster than it reads stops being read until its
   * output drains, so memory stays bounded. */
  conn_pause(c, PAUSE_WRITE);
  log_debug("%s: output queue over %zu bytes, reading paused", conn_name(c),
            max);
}

static void on_drain(sk_stream *s) {
  struct conn *c = s->h.data;
  conn_touch(c);
  if (!conn_closing(c))
    conn_unpause(c, PAUSE_WRITE);
}

void conn_hold(struct conn *c) {
  /* Finishing, input is only read and dropped: nothing to hold back. */
  if (!conn_finishing(c))
    conn_pause(c, PAUSE_HOLD);
}

void conn_release(struct conn *c) {
  if (conn_closing(c) || !(c->pauses & PAUSE_HOLD))
    return;
  conn_unpause(c, PAUSE_HOLD);
  if (c->finish_due) {
    c->finish_due = 0;
    conn_finish(c);
  }
}

/* ---- the end ---- */

void conn_close(struct conn *c, const char *why) {
  struct worker *w = c->w;
  const struct mode *m = w->srv->cfg.mode;
  int opened = c->state != CONN_NEW;

  if (conn_closing(c))
    return;
  /* A mode with bytes in flight (forward's relay) asks for a reset when
   * the close comes from outside it: a FIN would tell the peer that a cut
   * stream ended normally. */
  if (c->cut_resets)
    c->reset = 1;
  /* Over TLS, close_notify tells the peer that the session was ended on
   * purpose (idle timeout, end of the grace period) rather than cut. It is
   * sent only when nothing else waits in the queue: the close drops queued
   * bytes, and a peer that reads nothing would not see it anyway. */
  if (conn_tls(c) && c->state == CONN_OPEN && !c->reset &&
      sk_stream_write_queue_size(&c->s) == 0)
    (void)sk_stream_shutdown(&c->s, NULL, NULL);
  /* From here conn_closing(c) is 1, for the mode's close too. */
  if (c->reset)
    sk_stream_abort(&c->s, conn_freed);
  else
    sk_close(&c->s.h, conn_freed);
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  w->nconns--;
  atomic_fetch_sub_explicit(&w->srv->nconns, 1, memory_order_relaxed);
  /* A connection that failed its TLS handshake never reached the mode. */
  if (m->close != NULL && opened)
    m->close(c);
  if (c->close_kind == CLOSE_DONE && why != NULL)
    c->close_kind = CLOSE_ERROR;
  stat_add(&w->stats.closed[c->close_kind], 1);
  log_conn_closed(c, why);
  worker_maybe_finish(w);
}

void conn_abort(struct conn *c, const char *why) {
  c->reset = 1;
  conn_close(c, why);
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
  if (conn_closing(c))
    return;
  c->state = CONN_FINISHED;
  /* Nothing holds a pause once finishing, so a stream no longer receiving
   * has had the peer's FIN. */
  if (status < 0)
    conn_close(c, sk_strerror(status));
  else if (!sk_stream_is_receiving(s))
    conn_close(c, NULL);
}

void conn_finish(struct conn *c) {
  int rc;
  if (conn_finishing(c))
    return;
  if (c->pauses & PAUSE_HOLD) {
    /* The mode is still producing a reply; the FIN follows it. */
    c->finish_due = 1;
    return;
  }
  c->state = CONN_FINISHING;
  /* From here on input is read and dropped: reading must go on so the
   * peer's FIN is seen and so that unread bytes do not turn the final
   * close into a reset. */
  conn_unpause(c, PAUSE_WRITE);
  rc = sk_stream_shutdown(&c->s, on_shut, c);
  if (rc < 0)
    conn_close(c, sk_strerror(rc));
}

int conn_unread(const struct conn *c) {
  return sk_socket_available(&c->s.sock) > 0;
}

/* Server stop, per connection (once): what the client sent before the stop
 * (read or still in the kernel) is answered, the frame in progress is
 * completed, then everything queued goes out, then the FIN. */
void conn_stop(struct conn *c) {
  const struct mode *m = conn_cfg(c)->mode;
  if (conn_closing(c))
    return;
  if (c->state == CONN_NEW) {
    /* Nothing was asked of the mode yet: there is nothing to finish. */
    c->close_kind = CLOSE_STOPPING;
    conn_close(c, "server stopping");
    return;
  }
  if (m->stop != NULL)
    m->stop(c);
  else if (!conn_mid_frame(c) && !conn_unread(c))
    conn_finish(c);
  /* Otherwise framing_recv() finishes at the first frame boundary. */
}

size_t conn_frame_len(const struct conn *c, const sk_frame_piece *p) {
  return conn_framed(c) ? c->frame_bytes : p->len;
}

/* ---- birth ---- */

/* Keeps what conn_name() needs: 32 bytes instead of a formatted string. */
static void conn_set_peer(struct conn *c, const sk_endpoint *peer,
                          const struct listen_spec *spec, int fd) {
  c->spec = spec;
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

void conn_proxied(struct conn *c, const sk_proxy_header *h) {
  int fam = sk_endpoint_family(&h->src);
  if (h->local)
    return;
  c->peer_family = 0;
  c->peer_port = 0;
  if (fam == AF_INET || fam == AF_INET6)
    conn_set_peer(c, &h->src, c->spec, c->peer_fd);
}

struct conn *conn_new(struct worker *w, int fd, int family,
                      const struct listen_spec *spec, const sk_endpoint *peer) {
  const struct server_config *cfg = &w->srv->cfg;
  struct conn *c;
  int rc;

  c = calloc(1, cfg->frame == SK_FRAME_RAW ? CONN_RAW_SIZE : sizeof(*c));
  if (c == NULL) {
    close(fd);
    log_error("out of memory, connection dropped");
    return NULL;
  }
  c->w = w;
  sk_stream_init(&w->loop, &c->s);
  c->s.h.data = c;
  rc = sk_stream_open_accepted(&c->s, fd, family);
  if (rc < 0) {
    close(fd);
    log_error("cannot use accepted connection: %s", sk_strerror(rc));
    sk_close(&c->s.h, conn_freed);
    return NULL;
  }
  conn_set_peer(c, peer, spec, fd);
  /* Echoes are small writes that must not wait for Nagle's algorithm. */
  if (spec->kind == LISTEN_TCP)
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
  return c;
}

/* The connection can carry data (accepted, and past the TLS handshake if
 * any): reading starts and the mode takes over. */
void conn_ready(struct conn *c) {
  const struct server_config *cfg = conn_cfg(c);
  int rc;
  if (!cfg->mode->owns_stream) {
    sk_stream_on_drain(&c->s, on_drain);
    rc = sk_stream_recv_start(&c->s, framing_recv);
    if (rc < 0) {
      conn_close(c, sk_strerror(rc));
      return;
    }
  }
  c->state = CONN_OPEN;
  if (cfg->mode->open != NULL)
    cfg->mode->open(c);
  if (c->w->stopping)
    conn_stop(c);
}

/* ---- timeouts and gauges ---- */

/* 1 if an unfinished frame is being timed (--frame-timeout). */
static int frame_timed(const struct conn *c) {
  return conn_cfg(c)->frame_ms > 0 && conn_mid_frame(c);
}

/* Applies the idle and frame timeouts to one connection. */
static void conn_check_timeouts(struct conn *c, uint64_t now) {
  const struct server_config *cfg = conn_cfg(c);
  /* A mode that moves the bytes itself tells how many it moved. */
  size_t q = cfg->mode->progress != NULL && c->state != CONN_NEW
                 ? (size_t)cfg->mode->progress(c)
                 : sk_stream_write_queue_size(&c->s);
  char why[80];

  /* --proxy-protocol: a header trickling in is bounded like a frame. */
  if (c->proxy_wait && cfg->frame_ms > 0 &&
      now - c->opened_ms >= cfg->frame_ms) {
    snprintf(why, sizeof(why), "PROXY header not complete after %llu s",
             (unsigned long long)((now - c->opened_ms) / 1000));
    log_error("%s: %s, closing the connection", conn_name(c), why);
    c->close_kind = CLOSE_FRAME_TIMEOUT;
    conn_close(c, why);
    return;
  }
  /* Output still moving to a peer that reads counts as life; a queue
   * that has not shrunk since the last look does not (nor a mode's byte
   * count that has not grown). */
  if (q != 0 && q != c->last_wq)
    c->last_active = now;
  c->last_wq = q;
  if (cfg->idle_ms > 0 && now - c->last_active >= cfg->idle_ms) {
    snprintf(why, sizeof(why), "idle for %llu s",
             (unsigned long long)((now - c->last_active) / 1000));
    c->close_kind = CLOSE_IDLE;
    conn_close(c, why);
    return;
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
  }
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
    conn_check_timeouts(c, now);
  }
}

/* How often sweep_cb runs: a quarter of the shortest timeout, between
 * 50 ms and 1 s; 0 when no timeout is set. */
static uint64_t sweep_interval(const struct server_config *cfg) {
  uint64_t t = cfg->idle_ms;
  if ((cfg->frame != SK_FRAME_RAW || cfg->proxy_protocol) &&
      cfg->frame_ms > 0 && (t == 0 || cfg->frame_ms < t))
    t = cfg->frame_ms;
  if (t == 0)
    return 0;
  t /= 4;
  return t < 50 ? 50 : t > 1000 ? 1000 : t;
}

void conn_sweep_start(struct worker *w) {
  uint64_t iv = sweep_interval(&w->srv->cfg);
  sk_timer_init(&w->loop, &w->sweep);
  w->sweep.h.data = w;
  if (iv > 0) {
    sk_timer_start(&w->sweep, sweep_cb, iv, iv);
    /* It never keeps a worker alive by itself. */
    sk_unref(&w->sweep.h);
  }
}

/* --metrics: the worker's gauges, refreshed once a second (walking the
 * connections is cheap at that pace, and costs nothing per message). */
static void gauges_cb(sk_timer *t) {
  struct worker *w = t->h.data;
  uint64_t queued = 0, paused = 0;
  for (struct conn *c = w->conns; c != NULL; c = c->next) {
    queued += sk_stream_write_queue_size(&c->s);
    paused += (c->pauses & PAUSE_WRITE) != 0;
  }
  stat_set(&w->stats.queued_bytes, queued);
  stat_set(&w->stats.paused, paused);
}

void conn_gauges_start(struct worker *w) {
  sk_timer_init(&w->loop, &w->gauges);
  w->gauges.h.data = w;
  if (w->srv->metrics != NULL) {
    sk_timer_start(&w->gauges, gauges_cb, 1000, 1000);
    sk_unref(&w->gauges.h);
  }
}
