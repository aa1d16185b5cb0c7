/* --metrics ADDR: the Prometheus text format (0.0.4) on GET /metrics, from
 * a thread and event loop of its own (see metrics.h).
 *
 * The listener is deliberately small: HTTP/1.0-style, one request per
 * connection, then the answer and a close. At most SCRAPERS_MAX scrapers
 * at a time (more are closed at once); a request must arrive whole within
 * REQ_MAX bytes (431 beyond) and the whole exchange within SCRAPE_MS, or
 * the connection is closed. A scraper that never reads or never sends
 * thus holds one slot for SCRAPE_MS at most, and never touches a worker. */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

#define SCRAPERS_MAX 8
#define REQ_MAX      8192
#define SCRAPE_MS    10000

struct scraper {
  sk_stream s;
  sk_timer t;
  struct metrics *m;
  struct scraper *prev, *next;
  int closes; /* handles not yet closed */
  int answered;
  size_t len;
  char req[REQ_MAX];
};

struct metrics {
  struct server *srv;
  sk_loop loop;
  sk_stream l;
  sk_async stop;
  pthread_t thread;
  int started;
  unsigned nscrapers;
  struct scraper *scrapers;
  double start_time; /* seconds since the epoch */
};

/* ---- the counters ---- */

/* Upper bounds of the handshake histogram, in tenths of a millisecond. */
static const uint64_t hs_bounds[HS_BUCKETS] = {
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000};

void stats_handshake(struct wstats *st, int result, uint64_t ms) {
  int b = 0;
  while (b < HS_BUCKETS && ms * 10 > hs_bounds[b])
    b++;
  stat_add(&st->hs[result], 1);
  stat_add(&st->hs_bucket[b], 1);
  stat_add(&st->hs_sum_ms, ms);
}

/* ---- the exposition ---- */

struct buf {
  char *p;
  size_t len, cap;
  int failed;
};

static void bprintf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  for (;;) {
    if (b->failed)
      return;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    char *np = realloc(b->p, b->cap * 2 + (size_t)n);
    if (np == NULL) {
      b->failed = 1;
      return;
    }
    b->p = np;
    b->cap = b->cap * 2 + (size_t)n;
  }
}

static void head(struct buf *b, const char *name, const char *type,
                 const char *help) {
  bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t load(const stat_t *s) {
  return atomic_load_explicit(s, memory_order_relaxed);
}

/* Sum of one counter over every worker: offset of the field in wstats. */
static uint64_t sum(const struct server *srv, size_t off) {
  uint64_t t = 0;
  for (unsigned i = 0; i < srv->nworkers; i++)
    t += load((const stat_t *)((const char *)&srv->workers[i].stats + off));
  return t;
}
#define SUM(srv, field) sum(srv, offsetof(struct wstats, field))

static const char *transport_name(const struct server *srv, int kind) {
  static const char *plain[] = {"tcp", "unix", "udp"};
  static const char *tls[] = {"tls", "tls+unix", "udp"};
  return (srv->cfg.tls != NULL ? tls : plain)[kind];
}

static void render(const struct server *srv, double start, struct buf *b) {
  static const char *close_names[CLOSE_KINDS] = {
      "done",        "error",         "idle_timeout", "frame_timeout",
      "frame_error", "tls_handshake", "stopping"};
  static const char *frame_names[FRAME_REASONS] = {"too_big", "malformed",
                                                   "timeout", "truncated"};
  static const char *hs_names[HS_RESULTS] = {"ok", "failed", "timeout"};
  static const char *dirs[2] = {"in", "out"};
  const char *mode = srv->cfg.mode->name;
  int kinds[STAT_TRANSPORTS] = {0};
  uint64_t n, cum;

  for (size_t i = 0; i < srv->cfg.nspecs; i++)
    kinds[srv->cfg.specs[i].kind] = 1;

  head(b, "sockit_connections_open", "gauge", "Connections open now.");
  bprintf(b, "sockit_connections_open %llu\n",
          (unsigned long long)atomic_load_explicit(&srv->nconns,
                                                   memory_order_relaxed));
  head(b, "sockit_connections_accepted_total", "counter",
       "Connections accepted (and not refused).");
  bprintf(b, "sockit_connections_accepted_total %llu\n",
          (unsigned long long)SUM(srv, accepted));
  head(b, "sockit_connections_refused_total", "counter",
       "Connections closed at once because --max-conns was reached.");
  bprintf(b, "sockit_connections_refused_total %llu\n",
          (unsigned long long)atomic_load_explicit(&srv->refused,
                                                   memory_order_relaxed));
  head(b, "sockit_connections_closed_total", "counter",
       "Connections closed, by reason.");
  for (int r = 0; r < CLOSE_KINDS; r++)
    bprintf(b, "sockit_connections_closed_total{reason=\"%s\"} %llu\n",
            close_names[r], (unsigned long long)SUM(srv, closed[r]));

  head(b, "sockit_bytes_total", "counter",
       "Payload bytes read from and queued to peers.");
  for (int k = 0; k < STAT_TRANSPORTS; k++)
    for (int d = 0; d < 2 && kinds[k]; d++)
      bprintf(b,
              "sockit_bytes_total{mode=\"%s\",transport=\"%s\","
              "direction=\"%s\"} %llu\n",
              mode, transport_name(srv, k), dirs[d],
              (unsigned long long)SUM(srv, bytes[k][d]));
  head(b, "sockit_messages_total", "counter",
       "Messages in (frames, or reads and datagrams when unframed) and out "
       "(sends).");
  for (int k = 0; k < STAT_TRANSPORTS; k++)
    for (int d = 0; d < 2 && kinds[k]; d++)
      bprintf(b,
              "sockit_messages_total{mode=\"%s\",transport=\"%s\","
              "direction=\"%s\"} %llu\n",
              mode, transport_name(srv, k), dirs[d],
              (unsigned long long)SUM(srv, msgs[k][d]));
  head(b, "sockit_frames_rejected_total", "counter",
       "Frames rejected, by reason.");
  for (int r = 0; r < FRAME_REASONS; r++)
    bprintf(b, "sockit_frames_rejected_total{reason=\"%s\"} %llu\n",
            frame_names[r], (unsigned long long)SUM(srv, frames_rejected[r]));

  head(b, "sockit_tls_handshakes_total", "counter",
       "TLS handshakes, by result.");
  for (int r = 0; r < HS_RESULTS; r++)
    bprintf(b, "sockit_tls_handshakes_total{result=\"%s\"} %llu\n", hs_names[r],
            (unsigned long long)SUM(srv, hs[r]));
  head(b, "sockit_tls_handshake_duration_seconds", "histogram",
       "Time from accept to the end of the TLS handshake.");
  cum = 0;
  for (int i = 0; i <= HS_BUCKETS; i++) {
    cum += SUM(srv, hs_bucket[i]);
    if (i < HS_BUCKETS)
      bprintf(b,
              "sockit_tls_handshake_duration_seconds_bucket{le=\"%g\"} "
              "%llu\n",
              (double)hs_bounds[i] / 10000.0, (unsigned long long)cum);
    else
      bprintf(b,
              "sockit_tls_handshake_duration_seconds_bucket{le=\"+Inf\"} "
              "%llu\n",
              (unsigned long long)cum);
  }
  bprintf(b, "sockit_tls_handshake_duration_seconds_sum %.3f\n",
          (double)SUM(srv, hs_sum_ms) / 1000.0);
  bprintf(b, "sockit_tls_handshake_duration_seconds_count %llu\n",
          (unsigned long long)cum);

  head(b, "sockit_output_queued_bytes", "gauge",
       "Bytes queued for peers, not yet taken by the kernel (refreshed "
       "every second).");
  bprintf(b, "sockit_output_queued_bytes %llu\n",
          (unsigned long long)SUM(srv, queued_bytes));
  head(b, "sockit_connections_paused", "gauge",
       "Connections whose reading is paused by back-pressure (refreshed "
       "every second).");
  bprintf(b, "sockit_connections_paused %llu\n",
          (unsigned long long)SUM(srv, paused));
  head(b, "sockit_log_lines_dropped_total", "counter",
       "Log lines dropped because the log output did not keep up.");
  bprintf(b, "sockit_log_lines_dropped_total %llu\n", log_dropped_total());

  head(b, "sockit_worker_loop_iterations_total", "counter",
       "Event loop iterations, per worker.");
  for (unsigned i = 0; i < srv->nworkers; i++)
    bprintf(b, "sockit_worker_loop_iterations_total{worker=\"%u\"} %llu\n", i,
            (unsigned long long)load(&srv->workers[i].stats.iterations));
  head(b, "sockit_worker_busy_seconds_total", "counter",
       "CPU time of each worker thread (time not spent waiting).");
  for (unsigned i = 0; i < srv->nworkers; i++) {
    clockid_t cid;
    struct timespec ts;
    if (!srv->workers[i].started ||
        pthread_getcpuclockid(srv->workers[i].thread, &cid) != 0 ||
        clock_gettime(cid, &ts) != 0)
      continue; /* an ended worker: no sample */
    bprintf(b, "sockit_worker_busy_seconds_total{worker=\"%u\"} %.6f\n", i,
            (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  }
  head(b, "sockit_process_start_time_seconds", "gauge",
       "Start time of the server since the Unix epoch, in seconds.");
  bprintf(b, "sockit_process_start_time_seconds %.3f\n", start);
  (void)n;
}

/* ---- the HTTP side ---- */

static void scraper_freed(sk_handle *h) {
  struct scraper *sc = h->data;
  if (--sc->closes == 0)
    free(sc);
}

static void scraper_close(struct scraper *sc) {
  struct metrics *m = sc->m;
  if (sc->closes != 0)
    return;
  sc->closes = 2;
  if (sc->prev != NULL)
    sc->prev->next = sc->next;
  else
    m->scrapers = sc->next;
  if (sc->next != NULL)
    sc->next->prev = sc->prev;
  m->nscrapers--;
  sk_close(&sc->t.h, scraper_freed);
  sk_close(&sc->s.h, scraper_freed);
}

static void scraper_timeout(sk_timer *t) {
  scraper_close(t->h.data);
}

static void answered(sk_stream *s, int status, void *arg) {
  (void)s;
  (void)status;
  scraper_close(arg);
}

/* Sends the status line, headers and body, then a FIN and the close. */
static void reply(struct scraper *sc, const char *status, const char *extra,
                  const char *body, size_t blen) {
  char hdr[256];
  int n = snprintf(hdr, sizeof(hdr),
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: "
                   "%zu\r\n%sConnection: close\r\n\r\n",
                   status,
                   status[0] == '2' ? "text/plain; version=0.0.4; "
                                      "charset=utf-8"
                                    : "text/plain; charset=utf-8",
                   blen, extra);
  struct iovec iov[2] = {{hdr, (size_t)n}, {(void *)body, blen}};
  sc->answered = 1;
  sk_stream_recv_stop(&sc->s);
  if (sk_stream_sendv(&sc->s, iov, blen > 0 ? 2 : 1, NULL, NULL) < 0 ||
      sk_stream_shutdown(&sc->s, answered, sc) < 0)
    scraper_close(sc);
}

static void error_reply(struct scraper *sc, const char *status) {
  char body[64];
  int n = snprintf(body, sizeof(body), "%s\n", status);
  reply(sc, status, strncmp(status, "405", 3) == 0 ? "Allow: GET\r\n" : "",
        body, (size_t)n);
}

/* A whole request head is in sc->req: answer it. */
static void handle(struct scraper *sc) {
  struct metrics *m = sc->m;
  char *sp1, *sp2, *end = memchr(sc->req, '\n', sc->len);
  size_t plen;
  struct buf b = {NULL, 0, 0, 0};

  if (end == NULL ||
      (sp1 = memchr(sc->req, ' ', (size_t)(end - sc->req))) == NULL) {
    error_reply(sc, "400 Bad Request");
    return;
  }
  sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
  if (sp2 == NULL || strncmp(sp2 + 1, "HTTP/", 5) != 0) {
    error_reply(sc, "400 Bad Request");
    return;
  }
  if (sp1 - sc->req != 3 || memcmp(sc->req, "GET", 3) != 0) {
    error_reply(sc, "405 Method Not Allowed");
    return;
  }
  plen = (size_t)(sp2 - sp1 - 1);
  if (!(plen >= 8 && memcmp(sp1 + 1, "/metrics", 8) == 0 &&
        (plen == 8 || sp1[9] == '?'))) {
    error_reply(sc, "404 Not Found");
    return;
  }
  b.cap = 16384;
  b.p = malloc(b.cap);
  if (b.p == NULL) {
    error_reply(sc, "500 Internal Server Error");
    return;
  }
  render(m->srv, m->start_time, &b);
  if (b.failed)
    error_reply(sc, "500 Internal Server Error");
  else
    reply(sc, "200 OK", "", b.p, b.len); /* the stream copies the bytes */
  free(b.p);
}

/* 1 once the request head (up to its empty line) has arrived. */
static int head_complete(const struct scraper *sc) {
  for (size_t i = 1; i < sc->len; i++)
    if (sc->req[i] == '\n' &&
        (sc->req[i - 1] == '\n' ||
         (i >= 2 && sc->req[i - 1] == '\r' && sc->req[i - 2] == '\n')))
      return 1;
  return 0;
}

static void on_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct scraper *sc = s->h.data;
  if (sc->answered)
    return;
  if (n <= 0) {
    if (n != -ECANCELED)
      scraper_close(sc);
    return;
  }
  if ((size_t)n > REQ_MAX - sc->len) {
    error_reply(sc, "431 Request Header Fields Too Large");
    return;
  }
  memcpy(sc->req + sc->len, buf, (size_t)n);
  sc->len += (size_t)n;
  if (head_complete(sc))
    handle(sc);
}

static void on_accept(sk_stream *ls, int status, int fd,
                      const sk_endpoint *peer) {
  struct metrics *m = ls->h.data;
  struct scraper *sc;
  (void)peer;
  if (status < 0)
    return; /* EMFILE and the like: the next scrape tries again */
  if (m->nscrapers >= SCRAPERS_MAX || (sc = calloc(1, sizeof(*sc))) == NULL) {
    close(fd);
    return;
  }
  sc->m = m;
  sk_stream_init(&m->loop, &sc->s);
  sc->s.h.data = sc;
  sk_timer_init(&m->loop, &sc->t);
  sc->t.h.data = sc;
  if (sk_stream_open_accepted(&sc->s, fd, ls->sock.family) < 0) {
    close(fd);
    sc->closes = 2;
    sk_close(&sc->t.h, scraper_freed);
    sk_close(&sc->s.h, scraper_freed);
    return;
  }
  sc->next = m->scrapers;
  if (m->scrapers != NULL)
    m->scrapers->prev = sc;
  m->scrapers = sc;
  m->nscrapers++;
  sk_timer_start(&sc->t, scraper_timeout, SCRAPE_MS, 0);
  if (sk_stream_recv_start(&sc->s, on_recv) < 0)
    scraper_close(sc);
}

static void stop_cb(sk_async *a) {
  struct metrics *m = a->h.data;
  sk_close(&m->l.h, NULL);
  sk_close(&m->stop.h, NULL);
  while (m->scrapers != NULL)
    scraper_close(m->scrapers);
}

static void *metrics_main(void *arg) {
  struct metrics *m = arg;
  int rc = sk_loop_run(&m->loop, SK_RUN_DEFAULT);
  if (rc < 0)
    log_error("metrics: event loop failed: %s", sk_strerror(rc));
  return NULL;
}

void metrics_bind(struct server *srv, const char *addr) {
  struct metrics *m = calloc(1, sizeof(*m));
  sk_endpoint ep, local;
  char a[SK_ENDPOINT_STRLEN], line[SK_ENDPOINT_STRLEN + 64];
  struct timespec now;
  int rc, n;

  if (m == NULL)
    cli_fatal(SK_PROG_NAME, 1, "out of memory");
  rc = sk_endpoint_parse(&ep, addr);
  if (rc == 0 && sk_endpoint_family(&ep) != AF_INET &&
      sk_endpoint_family(&ep) != AF_INET6)
    rc = SK_EBADADDR;
  if (rc < 0)
    cli_usage_error(SK_PROG_NAME,
                    "--metrics: bad address '%s': %s (use "
                    "HOST:PORT, e.g. 127.0.0.1:9100)",
                    addr, sk_strerror(rc));
  m->srv = srv;
  clock_gettime(CLOCK_REALTIME, &now);
  m->start_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
  rc = sk_loop_init(&m->loop);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "--metrics: cannot create event loop: %s",
              sk_strerror(rc));
  sk_stream_init(&m->loop, &m->l);
  m->l.h.data = m;
  rc = sk_stream_listen(&m->l, &ep, 0, 0);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "--metrics: cannot listen on %s: %s", addr,
              sk_strerror(rc));
  rc = sk_stream_accept_start(&m->l, on_accept);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "--metrics: %s: %s", addr, sk_strerror(rc));
  sk_async_init(&m->loop, &m->stop, stop_cb);
  m->stop.h.data = m;
  if (sk_socket_local(&m->l.sock, &local) < 0 ||
      sk_endpoint_format(&local, a, sizeof(a)) < 0)
    snprintf(a, sizeof(a), "%s", addr);
  srv->metrics = m;
  n = snprintf(line, sizeof(line), "%s: metrics on http://%s/metrics",
               SK_PROG_NAME, a);
  log_write(line, (size_t)n);
}

void metrics_start(struct server *srv) {
  struct metrics *m = srv->metrics;
  sigset_t all, old;
  int rc;
  if (m == NULL)
    return;
  /* The thread takes no signal, whatever the main thread does with them. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&m->thread, NULL, metrics_main, m);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    cli_fatal(SK_PROG_NAME, 1, "cannot start the metrics thread: %s",
              strerror(rc));
  m->started = 1;
}

void metrics_stop(struct server *srv) {
  struct metrics *m = srv->metrics;
  if (m == NULL)
    return;
  if (m->started) {
    sk_async_send(&m->stop);
    pthread_join(m->thread, NULL);
  } else {
    sk_close(&m->l.h, NULL);
    sk_close(&m->stop.h, NULL);
    sk_loop_run(&m->loop, SK_RUN_DEFAULT);
  }
  sk_loop_free(&m->loop);
  free(m);
  srv->metrics = NULL;
}
