/* sockit-server metrics: per-worker counters and the --metrics listener.
 *
 * Every worker owns a struct wstats and is the only thread that writes it:
 * an update is a relaxed load and a relaxed store (no read-modify-write, no
 * lock), as cheap as a plain increment. The metrics thread reads every
 * worker's counters with relaxed loads and sums them at scrape time, so a
 * scrape costs the workers nothing.
 *
 * The listener (--metrics ADDR) runs on its own thread and event loop and
 * answers GET /metrics with the Prometheus text format 0.0.4; a slow or
 * stuck scraper can only hold one of its few slots, never a worker. */
#ifndef SOCKIT_METRICS_H
#define SOCKIT_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct server;

typedef _Atomic uint64_t stat_t;

/* Transports, indexed like enum listen_kind (TCP, Unix, UDP). */
#define STAT_TRANSPORTS 3
enum { DIR_IN = 0, DIR_OUT = 1 };

/* Why a connection closed (the reason label). */
enum close_kind {
  CLOSE_DONE = 0,      /* ended normally (FINs exchanged) */
  CLOSE_ERROR,         /* a socket error or a mode's own reason */
  CLOSE_IDLE,          /* --idle-timeout */
  CLOSE_FRAME_TIMEOUT, /* --frame-timeout */
  CLOSE_FRAME_ERROR,   /* a frame too big or malformed */
  CLOSE_TLS,           /* the TLS handshake failed */
  CLOSE_STOPPING,      /* the server stopped */
  CLOSE_KINDS
};

/* Why a frame was rejected. */
enum {
  FRAME_TOO_BIG = 0,
  FRAME_MALFORMED,
  FRAME_TIMEOUT,
  FRAME_TRUNCATED,
  FRAME_REASONS
};

/* TLS handshake results. */
enum { HS_OK = 0, HS_FAILED, HS_TIMEOUT, HS_RESULTS };
#define HS_BUCKETS 12 /* finite buckets of the duration histogram */

struct wstats {
  stat_t accepted;
  stat_t iterations; /* event loop iterations */
  stat_t closed[CLOSE_KINDS];
  stat_t bytes[STAT_TRANSPORTS][2];
  stat_t msgs[STAT_TRANSPORTS][2];
  stat_t frames_rejected[FRAME_REASONS];
  stat_t hs[HS_RESULTS];
  stat_t hs_bucket[HS_BUCKETS + 1]; /* per bucket, last = above all */
  stat_t hs_sum_ms;
  /* Gauges, refreshed once a second by the worker (with --metrics). */
  stat_t queued_bytes, paused;
};

/* Adds n to a counter its worker owns (single writer). */
static inline void stat_add(stat_t *s, uint64_t n) {
  atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

static inline void stat_set(stat_t *s, uint64_t v) {
  atomic_store_explicit(s, v, memory_order_relaxed);
}

/* Records one handshake duration (ms) in the histogram. */
void stats_handshake(struct wstats *st, int result, uint64_t ms);

/* Binds the listener (exits 1 with one line if it cannot) and prints
 * "metrics on http://ADDR/metrics" whatever the log level. */
void metrics_bind(struct server *srv, const char *addr);
/* Starts the metrics thread, once the workers run. */
void metrics_start(struct server *srv);
/* Ends the thread and frees everything; before server_wait(). */
void metrics_stop(struct server *srv);

#endif
