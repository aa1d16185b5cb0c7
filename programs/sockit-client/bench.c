/* sockit-client --bench: a load generator on one event loop.
 *
 * Modes:
 *   echo    N connections, each keeping D messages in flight; every reply
 *           message completes one round trip, timed into a histogram.
 *   oneway  N connections writing SIZE-byte messages as fast as the kernel
 *           takes them (to a discard server).
 *   connect N connection attempts at a time, each closed once connected;
 *           with --tls, once its handshake is done and both sides sent
 *           close_notify (full handshakes, or resumed ones with
 *           --tls-resume).
 *   idle    N connections opened and held, sending nothing.
 *
 * It uses the same library as the server, so the generator costs about as
 * little CPU per message as the thing it measures: one shared read buffer,
 * writes straight to the kernel, no allocation per message. Everything is
 * bounded by --duration; the run stops by itself. */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>

#include "cli.h"
#include "hist.h"
#include "sockit.h"

#define PROG "sockit-client"

enum bench_mode { B_ECHO, B_ONEWAY, B_CONNECT, B_IDLE };
static const char *mode_names[] = {"echo", "oneway", "connect", "idle"};

struct opts {
  const char *addr;
  enum bench_mode mode;
  int udp;
  sk_frame_mode frame;
  uint64_t conns, size, pipeline;
  uint64_t duration_ms, warmup_ms;
  uint64_t interval_ms; /* --interval; 0 = no interval reports */
  int json;
  int tls, insecure;
  int tls_resume; /* --tls-resume: offer the last session (else full) */
  int sockperf;   /* --sockperf: messages carry sockperf's header */
  const char *ca, *pin, *servername;
};

struct conn {
  sk_stream s;
  sk_udp u;
  struct bench *b;
  uint64_t *sent_at; /* ring of send times, one per message in flight */
  uint64_t head, tail;
  uint64_t rx_partial; /* bytes of the current reply message */
  uint64_t last_rx;    /* UDP: time of the last reply, to detect loss */
  int open;
  int resumed;  /* connect mode over TLS: this handshake resumed a session */
  int pump_due; /* oneway: its pump used its turn; b->tick runs it again */
};

/* One --interval report. */
struct interval {
  double start, end; /* seconds since the measurement began */
  uint64_t messages, bytes, connects, resumed, errors;
  double p50_us, p99_us;
};

struct bench {
  struct opts o;
  sk_loop loop;
  sk_timer phase; /* warm-up end, then measurement end */
  sk_timer tick;  /* UDP loss detection; stream oneway: pumps' next turn */
  sk_timer itick; /* --interval reports */
  struct conn *conns;
  sk_endpoint eps[16];
  int neps;
  unsigned char *msg;  /* one on-wire message: header + payload + trailer */
  size_t wire;         /* its length */
  struct iovec *burst; /* pipeline entries, each {msg, wire} */
  int measuring, stopping;
  uint64_t t_start, t_end;
  uint64_t messages, bytes, connects, errors, lost;
  uint64_t resumed;       /* connect mode over TLS: connects that resumed */
  uint64_t hs_unanswered; /* handshakes whose message never came back */
  uint64_t open_conns, connecting;
  uint64_t next_conn; /* streams not yet started (connects are paced) */
  int idle_announced;
  sk_tls_ctx *tls;
  char host[256]; /* TLS server name: the host part of the address */
  hist lat;
  /* Connections that could not be made (counted from the start, warm-up
   * included): reported as connect_errors and a warning, or, when not one
   * connection could be made, as the one error line. */
  uint64_t connected_ok, connect_errors;
  int connect_err;    /* the last reason */
  int cannot_connect; /* every connection failed: give up */
  /* --interval: the counters when the current interval began. */
  uint64_t mark_t, mark_messages, mark_bytes, mark_connects, mark_errors;
  uint64_t mark_resumed;
  hist ilat;
  struct interval *intervals; /* kept for --json */
  size_t nintervals, cap_intervals;
};

/* sockperf's message header (its client's format, big-endian): an 8-byte
 * sequence number, 2 bytes of flags (1: from a client, 2: asks for a
 * reply) and the 4-byte length of the whole message, header included.
 * sockperf's server answers only messages that carry it; the sequence
 * number is not checked by the server, so every message uses 0. */
#define SOCKPERF_HDR 14
static void sockperf_header(unsigned char *m, size_t len) {
  memset(m, 0, 8);
  m[8] = 0;
  m[9] = 0x03;
  m[10] = (unsigned char)(len >> 24);
  m[11] = (unsigned char)(len >> 16);
  m[12] = (unsigned char)(len >> 8);
  m[13] = (unsigned char)len;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- TCP / Unix streams ---- */

/* At most this many connects in flight: thousands of simultaneous SYNs
 * would overflow the server's backlog and turn into 1 s retransmits. */
#define MAX_CONNECTING 256

static void conn_start(struct bench *b, struct conn *c);
static void stop_all(struct bench *b);

static void start_more(struct bench *b) {
  while (!b->stopping && b->next_conn < b->o.conns &&
         b->connecting < MAX_CONNECTING)
    conn_start(b, &b->conns[b->next_conn++]);
}

static void conn_closed(sk_handle *h) {
  struct conn *c = h->data;
  struct bench *b = c->b;
  c->open = 0;
  /* connect mode: the slot is reused for the next attempt. */
  if (b->o.mode == B_CONNECT && !b->stopping)
    conn_start(b, c);
}

/* A connection could not be made. When none ever could, and every one the
 * run asked for has failed, the run stops at once: there is nothing to
 * measure, and waiting out warm-up and duration would only print zeros. */
static void connect_failed(struct conn *c, int err) {
  struct bench *b = c->b;
  if (!b->stopping) {
    b->connect_errors++;
    b->connect_err = err;
    if (b->connected_ok == 0 && b->connect_errors >= b->o.conns) {
      b->cannot_connect = 1;
      stop_all(b);
    }
  }
  if (!sk_is_closing(&c->s.h))
    sk_close(&c->s.h,
             b->o.mode == B_CONNECT && !b->cannot_connect ? conn_closed : NULL);
}

static void conn_fail(struct conn *c, int err) {
  struct bench *b = c->b;
  if (!b->stopping) {
    b->errors++;
    if (b->errors <= 3)
      fprintf(stderr, PROG ": bench: connection: %s\n", sk_strerror(err));
  }
  if (!sk_is_closing(&c->s.h))
    sk_close(&c->s.h, b->o.mode == B_CONNECT ? conn_closed : NULL);
}

/* Sends k messages with one write, as a pipelining client does (each one
 * on its own write would put every message in its own TCP segment and
 * measure the segment rate, not the server). */
static void send_burst(struct conn *c, uint64_t k) {
  struct bench *b = c->b;
  uint64_t t = now_ns();
  for (uint64_t i = 0; i < k; i++)
    c->sent_at[c->head++ % b->o.pipeline] = t;
  int rc = sk_stream_sendv(&c->s, b->burst, (int)k, NULL, NULL);
  if (rc != 0)
    conn_fail(c, rc);
}

static void echo_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct conn *c = s->h.data;
  struct bench *b = c->b;
  (void)buf;
  if (n < 0) {
    conn_fail(c, (int)n);
    return;
  }
  uint64_t left = (uint64_t)n, t = 0, done = 0;
  while (left > 0) {
    uint64_t need = b->wire - c->rx_partial;
    if (left < need) {
      c->rx_partial += left;
      break;
    }
    left -= need;
    c->rx_partial = 0;
    if (c->tail == c->head) { /* more came back than was sent */
      conn_fail(c, SK_EFRAMEBAD);
      return;
    }
    if (t == 0)
      t = now_ns();
    uint64_t sent = c->sent_at[c->tail++ % b->o.pipeline];
    if (b->measuring) {
      hist_add(&b->lat, t - sent);
      hist_add(&b->ilat, t - sent);
      b->messages++;
      b->bytes += b->wire;
    }
    done++;
  }
  /* Every reply frees a slot in the pipeline: refill them together. */
  if (done > 0 && !b->stopping)
    send_burst(c, done);
}

/* Keeps the kernel's send buffer full and nothing more in user space:
 * write whenever the queue is empty (the library writes directly and
 * queues only the remainder), resume on drain. A connection whose kernel
 * keeps taking everything (a receiver as fast as the sender, as with TLS
 * on both sides) would keep the loop here for ever, its timers (the end
 * of the measurement) starved: each turn writes at most ONEWAY_TURN bytes,
 * then the connection waits for b->tick, which runs the next turns from
 * the loop. */
#define ONEWAY_TURN (1u << 20)
static void oneway_next_turn(sk_timer *t);

static void oneway_pump(sk_stream *s) {
  struct conn *c = s->h.data;
  struct bench *b = c->b;
  size_t turn = 0;
  while (!b->stopping && !sk_is_closing(&s->h) &&
         sk_stream_write_queue_size(s) == 0) {
    if (turn >= ONEWAY_TURN) {
      c->pump_due = 1;
      if (!sk_timer_active(&b->tick) && !sk_is_closing(&b->tick.h))
        sk_timer_start(&b->tick, oneway_next_turn, 0, 0);
      return;
    }
    turn += b->wire;
    int rc = sk_stream_send(s, b->msg, b->wire, NULL, NULL);
    if (rc != 0) {
      conn_fail(c, rc);
      return;
    }
    if (b->measuring) {
      b->messages++;
      b->bytes += b->wire;
    }
  }
}

static void oneway_next_turn(sk_timer *t) {
  struct bench *b = t->h.data;
  for (uint64_t i = 0; i < b->o.conns; i++) {
    struct conn *c = &b->conns[i];
    if (c->pump_due) {
      c->pump_due = 0;
      if (c->open)
        oneway_pump(&c->s);
    }
  }
}

static void sink_recv(sk_stream *s, ssize_t n, const void *buf) {
  (void)buf;
  if (n < 0)
    conn_fail(s->h.data, (int)n);
}

static void maybe_announce_idle(struct bench *b) {
  if (b->o.mode == B_IDLE && !b->idle_announced &&
      b->open_conns == b->o.conns) {
    b->idle_announced = 1;
    fprintf(stderr, PROG ": idle: %" PRIu64 " connections open\n",
            b->open_conns);
  }
}

static void start_mode(struct conn *c);

/* Connect mode over TLS: after the handshake this side sent close_notify
 * (and its FIN); the connection counts once the server's close_notify
 * (or, from a server that does not send one, its FIN) arrives. That
 * proves the server finished its side of the handshake (with TLS 1.2
 * resumed and with TLS 1.3 the client finishes first) and brings the
 * TLS 1.3 session tickets, which a server sends right after the
 * handshake, before its close_notify. Both sides end cleanly: the server
 * sees a complete session, and the client's session stays resumable
 * (OpenSSL stops offering a session whose connection was cut). */
static void probe_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct conn *c = s->h.data;
  struct bench *b = c->b;
  (void)buf;
  if (n >= 0)
    return; /* whatever a server sends first is dropped */
  if (n != SK_EOF && n != SK_ETLSTRUNCATED) {
    conn_fail(c, (int)n);
    return;
  }
  if (b->measuring) {
    b->connects++;
    b->resumed += (uint64_t)c->resumed;
  }
  b->hs_unanswered--;
  sk_close(&s->h, conn_closed);
}

static void handshake_done(sk_stream *s, int status) {
  struct conn *c = s->h.data;
  struct bench *b = c->b;
  int rc;
  if (status != 0) {
    if (!b->stopping && b->errors == 0)
      fprintf(stderr, PROG ": bench: TLS handshake: %s\n",
              sk_stream_tls_error(s));
    conn_fail(c, status);
    return;
  }
  if (b->o.mode != B_CONNECT) {
    start_mode(c);
    return;
  }
  c->resumed = sk_stream_tls_resumed(s) == 1;
  b->hs_unanswered++;
  if ((rc = sk_stream_recv_start(s, probe_recv)) != 0 ||
      (rc = sk_stream_shutdown(s, NULL, NULL)) != 0)
    conn_fail(c, rc);
}

static void connected(sk_stream *s, int status) {
  struct conn *c = s->h.data;
  struct bench *b = c->b;
  b->connecting--;
  if (status != 0) {
    connect_failed(c, status);
    if (b->o.mode != B_CONNECT)
      start_more(b);
    return;
  }
  b->connected_ok++;
  if (b->o.mode == B_CONNECT && b->tls == NULL) {
    if (b->measuring)
      b->connects++;
    /* A reset, not a FIN: a normal close would leave each connection's
     * port in TIME_WAIT on this side for a minute, and past ~28,000 of
     * them (the ephemeral range) every connect pays for the kernel's
     * search for a free port, which then sets the rate, not the server. */
    sk_stream_abort(s, conn_closed);
    return;
  }
  if (b->o.mode != B_CONNECT) {
    b->open_conns++;
    start_more(b);
  }
  if (s->sock.family != AF_UNIX)
    sk_opt_set_nodelay(&s->sock, 1);
  if (b->tls != NULL) {
    int rc = sk_stream_tls_start(s, b->tls, b->host, handshake_done);
    if (rc != 0)
      conn_fail(c, rc);
    return;
  }
  start_mode(c);
}

/* The connection is ready for traffic (after the TLS handshake if any). */
static void start_mode(struct conn *c) {
  struct bench *b = c->b;
  sk_stream *s = &c->s;
  switch (b->o.mode) {
  case B_ECHO:
    sk_stream_recv_start(s, echo_recv);
    send_burst(c, b->o.pipeline);
    break;
  case B_ONEWAY:
    sk_stream_recv_start(s, sink_recv);
    sk_stream_on_drain(s, oneway_pump);
    oneway_pump(s);
    break;
  default:
    sk_stream_recv_start(s, sink_recv);
    maybe_announce_idle(b);
    break;
  }
}

static void conn_start(struct bench *b, struct conn *c) {
  c->b = b;
  c->head = c->tail = c->rx_partial = 0;
  sk_stream_init(&b->loop, &c->s);
  c->s.h.data = c;
  c->open = 1;
  b->connecting++;
  int rc = sk_stream_connect(&c->s, b->eps, (size_t)b->neps, 10000, connected);
  if (rc != 0) {
    b->connecting--;
    connect_failed(c, rc);
  }
}

/* ---- UDP ---- */

/* Called from udp_recv for each reply, the next request is gathered by
 * libsockit and leaves with the others of the receive batch in one
 * sendmmsg(2) (as GSO trains, same size to one server), so one socket can
 * keep a server busy; the first window and the resends after a loss go out
 * at once. */
static void udp_send_one(struct conn *c) {
  struct bench *b = c->b;
  c->sent_at[c->head++ % b->o.pipeline] = now_ns();
  int rc = sk_udp_send(&c->u, b->msg, b->wire, NULL, NULL, NULL);
  if (rc != 0 && rc != -ENOBUFS && !b->stopping)
    b->errors++;
}

static void udp_recv(sk_udp *u, ssize_t n, const void *buf,
                     const sk_endpoint *from, const sk_endpoint *to,
                     unsigned flags) {
  struct conn *c = u->h.data;
  struct bench *b = c->b;
  (void)buf;
  (void)from;
  (void)to;
  (void)flags;
  if (n < 0) {
    if (n != -ECANCELED && !b->stopping)
      b->errors++;
    return;
  }
  uint64_t t = now_ns();
  c->last_rx = t;
  if (c->tail == c->head)
    return; /* a late reply to a datagram already counted lost */
  uint64_t sent = c->sent_at[c->tail++ % b->o.pipeline];
  if (b->measuring) {
    hist_add(&b->lat, t - sent);
    hist_add(&b->ilat, t - sent);
    b->messages++;
    b->bytes += (uint64_t)n;
  }
  if (!b->stopping)
    udp_send_one(c);
}

/* Datagrams get lost: a socket that heard nothing for 200 ms counts what
 * it had in flight as lost and starts over. */
static void udp_tick(sk_timer *t) {
  struct bench *b = t->h.data;
  uint64_t now = now_ns();
  for (uint64_t i = 0; i < b->o.conns; i++) {
    struct conn *c = &b->conns[i];
    if (c->head != c->tail && now - c->last_rx > 200000000ull) {
      b->lost += c->head - c->tail;
      c->tail = c->head;
      c->last_rx = now;
      for (uint64_t k = 0; k < b->o.pipeline; k++)
        udp_send_one(c);
    }
  }
}

/* One-way over UDP: every turn of the loop hands each socket's kernel a
 * window of datagrams in one call (sendmmsg, GSO trains), as fast as it
 * takes them. What the receiver drops is not seen here: the rate is the
 * sender's, as iperf3 -u reports its own. */
#define UDP_PUMP_WINDOW 256
static void udp_pump(sk_timer *t) {
  struct bench *b = t->h.data;
  struct iovec w[UDP_PUMP_WINDOW];
  for (int i = 0; i < UDP_PUMP_WINDOW; i++) {
    w[i].iov_base = b->msg;
    w[i].iov_len = b->wire;
  }
  for (uint64_t i = 0; i < b->o.conns && !b->stopping; i++) {
    struct conn *c = &b->conns[i];
    if (!c->open || sk_is_closing(&c->u.h))
      continue;
    int n = sk_udp_send_batch(&c->u, w, UDP_PUMP_WINDOW, NULL);
    if (n < 0 && n != -ENOBUFS)
      b->errors++;
    if (n > 0 && b->measuring) {
      b->messages += (uint64_t)n;
      b->bytes += (uint64_t)n * b->wire;
    }
  }
  if (!b->stopping)
    sk_timer_start(t, udp_pump, 0, 0);
}

static int udp_start(struct bench *b, struct conn *c) {
  c->b = b;
  sk_udp_init(&b->loop, &c->u);
  c->u.h.data = c;
  int rc = sk_udp_connect(&c->u, &b->eps[0]);
  if (rc == 0)
    rc = sk_udp_recv_start(&c->u, udp_recv);
  if (rc != 0)
    return rc;
  c->open = 1;
  c->last_rx = now_ns();
  b->open_conns++;
  for (uint64_t k = 0; b->o.mode == B_ECHO && k < b->o.pipeline; k++)
    udp_send_one(c);
  return 0;
}

/* ---- phases ---- */

static void stop_all(struct bench *b) {
  b->stopping = 1;
  for (uint64_t i = 0; i < b->o.conns; i++) {
    struct conn *c = &b->conns[i];
    if (b->o.udp) {
      if (c->open && !sk_is_closing(&c->u.h))
        sk_close(&c->u.h, NULL);
    } else if (c->open && !sk_is_closing(&c->s.h)) {
      sk_close(&c->s.h, NULL);
    }
  }
  if (!sk_is_closing(&b->phase.h))
    sk_close(&b->phase.h, NULL);
  if (!sk_is_closing(&b->tick.h))
    sk_close(&b->tick.h, NULL);
  if (!sk_is_closing(&b->itick.h))
    sk_close(&b->itick.h, NULL);
}

/* ---- --interval ---- */

/* Reports the interval that ends now, like iperf3 -i: a line on stdout,
 * or with --json an entry for the "intervals" array. */
static void interval_end(struct bench *b, uint64_t now) {
  struct interval iv;
  double secs = (double)(now - b->mark_t) / 1e9;
  iv.start = (double)(b->mark_t - b->t_start) / 1e9;
  iv.end = (double)(now - b->t_start) / 1e9;
  iv.messages = b->messages - b->mark_messages;
  iv.bytes = b->bytes - b->mark_bytes;
  iv.connects = b->connects - b->mark_connects;
  iv.resumed = b->resumed - b->mark_resumed;
  iv.errors = b->errors - b->mark_errors;
  iv.p50_us = (double)hist_percentile(&b->ilat, 50) / 1000.0;
  iv.p99_us = (double)hist_percentile(&b->ilat, 99) / 1000.0;
  b->mark_t = now;
  b->mark_messages = b->messages;
  b->mark_bytes = b->bytes;
  b->mark_connects = b->connects;
  b->mark_resumed = b->resumed;
  b->mark_errors = b->errors;
  hist_reset(&b->ilat);
  if (b->o.json) {
    if (b->nintervals == b->cap_intervals) {
      size_t cap = b->cap_intervals ? 2 * b->cap_intervals : 64;
      struct interval *n = realloc(b->intervals, cap * sizeof(*n));
      if (n == NULL)
        return; /* the summary still comes; this interval is left out */
      b->intervals = n;
      b->cap_intervals = cap;
    }
    b->intervals[b->nintervals++] = iv;
    return;
  }
  printf("[%6.2f-%6.2f s]", iv.start, iv.end);
  if (b->o.mode == B_CONNECT && b->tls != NULL)
    printf("  handshakes %" PRIu64 "  (%.0f/s)  resumed %" PRIu64, iv.connects,
           secs > 0 ? (double)iv.connects / secs : 0, iv.resumed);
  else if (b->o.mode == B_CONNECT)
    printf("  connects %" PRIu64 "  (%.0f/s)", iv.connects,
           secs > 0 ? (double)iv.connects / secs : 0);
  else if (b->o.mode == B_IDLE)
    printf("  open %" PRIu64, b->open_conns);
  else
    printf("  messages %" PRIu64 "  (%.0f msg/s)  %.2f MB/s", iv.messages,
           secs > 0 ? (double)iv.messages / secs : 0,
           secs > 0 ? (double)iv.bytes / secs / 1e6 : 0);
  if (b->o.mode == B_ECHO)
    printf("  p50 %.1f us  p99 %.1f us", iv.p50_us, iv.p99_us);
  printf("  errors %" PRIu64 "\n", iv.errors);
  fflush(stdout);
}

static void interval_tick(sk_timer *t) {
  struct bench *b = t->h.data;
  if (b->measuring)
    interval_end(b, now_ns());
}

static void phase_end(sk_timer *t) {
  struct bench *b = t->h.data;
  b->measuring = 0;
  b->t_end = now_ns();
  /* The last, partial interval counts if it is not a sliver. */
  if (b->o.interval_ms > 0 &&
      b->t_end - b->mark_t >= b->o.interval_ms * 1000000ull / 10)
    interval_end(b, b->t_end);
  stop_all(b);
}

static void warmup_end(sk_timer *t) {
  struct bench *b = t->h.data;
  b->measuring = 1;
  b->messages = b->bytes = b->connects = b->errors = b->lost = 0;
  b->resumed = b->mark_resumed = 0;
  hist_reset(&b->lat);
  hist_reset(&b->ilat);
  b->t_start = b->mark_t = now_ns();
  b->mark_messages = b->mark_bytes = b->mark_connects = b->mark_errors = 0;
  sk_timer_start(t, phase_end, b->o.duration_ms, 0);
  if (b->o.interval_ms > 0)
    sk_timer_start(&b->itick, interval_tick, b->o.interval_ms,
                   b->o.interval_ms);
}

/* ---- reporting ---- */

static void report(const struct bench *b) {
  double secs = (double)(b->t_end - b->t_start) / 1e9;
  double mps = secs > 0 ? (double)b->messages / secs : 0;
  double mbps = secs > 0 ? (double)b->bytes / secs / 1e6 : 0;
  double cps = secs > 0 ? (double)b->connects / secs : 0;
  /* Handshakes counted: connect mode over TLS counts nothing else. */
  uint64_t hs = b->o.mode == B_CONNECT && b->tls != NULL ? b->connects : 0;
  const hist *h = &b->lat;
#define US(p) ((double)hist_percentile(h, p) / 1000.0)
  if (b->o.json) {
    printf("{\"mode\":\"%s\",\"transport\":\"%s\",\"conns\":%" PRIu64
           ",\"size\":%" PRIu64 ",\"pipeline\":%" PRIu64
           ",\"duration_s\":%.3f,\"messages\":%" PRIu64
           ",\"msgs_per_sec\":%.1f,\"bytes\":%" PRIu64
           ",\"mb_per_sec\":%.2f,\"gbit_per_sec\":%.3f,"
           "\"latency_us\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,"
           "\"p999\":%.2f,\"max\":%.2f,\"mean\":%.2f},"
           "\"tls\":%s,\"tls_resume\":%s,\"connects\":%" PRIu64
           ",\"connects_per_sec\":%.1f,\"handshakes\":%" PRIu64
           ",\"resumed\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"connect_errors\":%" PRIu64 ",\"intervals\":[",
           mode_names[b->o.mode], b->o.udp ? "udp" : "stream", b->o.conns,
           b->o.size, b->o.pipeline, secs, b->messages, mps, b->bytes, mbps,
           mbps * 8 / 1000, US(50), US(90), US(99), US(99.9),
           (double)h->max / 1000.0, hist_mean(h) / 1000.0,
           b->tls ? "true" : "false", b->o.tls_resume ? "true" : "false",
           b->connects, cps, hs, b->resumed, b->lost, b->errors,
           b->connect_errors);
    for (size_t i = 0; i < b->nintervals; i++) {
      const struct interval *iv = &b->intervals[i];
      printf("%s{\"start\":%.3f,\"end\":%.3f,\"messages\":%" PRIu64
             ",\"bytes\":%" PRIu64 ",\"connects\":%" PRIu64
             ",\"resumed\":%" PRIu64 ",\"errors\":%" PRIu64
             ",\"p50_us\":%.2f,\"p99_us\":%.2f}",
             i ? "," : "", iv->start, iv->end, iv->messages, iv->bytes,
             iv->connects, iv->resumed, iv->errors, iv->p50_us, iv->p99_us);
    }
    printf("]}\n");
    return;
  }
  printf("bench %s %s%s conns=%" PRIu64 " size=%" PRIu64 " pipeline=%" PRIu64
         " duration=%.2fs\n",
         mode_names[b->o.mode], b->o.udp ? "udp://" : "", b->o.addr, b->o.conns,
         b->o.size, b->o.pipeline, secs);
  if (b->o.mode == B_CONNECT && b->tls != NULL) {
    printf("  handshakes   %" PRIu64 "  (%.0f/s, %s)\n", b->connects, cps,
           b->o.tls_resume ? "resuming" : "full");
    printf("  resumed      %" PRIu64 "\n", b->resumed);
  } else if (b->o.mode == B_CONNECT) {
    printf("  connects     %" PRIu64 "  (%.0f/s)\n", b->connects, cps);
  } else if (b->o.mode != B_IDLE) {
    printf("  messages     %" PRIu64 "  (%.0f msg/s)\n", b->messages, mps);
    printf("  throughput   %.2f MB/s  (%.3f Gbit/s)\n", mbps, mbps * 8 / 1000);
  }
  if (b->o.mode == B_ECHO)
    printf("  latency us   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max "
           "%.1f  mean %.1f\n",
           US(50), US(90), US(99), US(99.9), (double)h->max / 1000.0,
           hist_mean(h) / 1000.0);
  if (b->o.udp)
    printf("  lost         %" PRIu64 "\n", b->lost);
  printf("  errors       %" PRIu64 "\n", b->errors);
  if (b->connect_errors > 0)
    printf("  connect errors %" PRIu64 "\n", b->connect_errors);
#undef US
}

/* ---- options ---- */

static void usage(void) {
  printf("Usage: " PROG " --bench ADDR [OPTIONS]\n"
         "Load generator: drives ADDR (an echo or discard server) and reports\n"
         "messages/s, MB/s and round-trip latency percentiles.\n\n"
         "  --bench-mode MODE  echo (default), oneway, connect or idle\n"
         "  --conns N          connections (UDP: sockets), default 1\n"
         "  --size BYTES       message payload size, default 64\n"
         "  --pipeline D       messages in flight per connection, default 1;\n"
         "                     replies that arrive together are refilled\n"
         "                     with one write\n"
         "  --duration S       measured time, default 5\n"
         "  --warmup S         unmeasured time before it, default 1\n"
         "  --interval S       a line per S seconds of measurement on "
         "stdout\n"
         "                     before the table (like iperf3 -i), default "
         "1;\n"
         "                     0 = none; with --json an \"intervals\" "
         "array\n"
         "  --frame MODE       raw (default), line, len16, len32, ascii4\n"
         "  --udp              datagrams instead of a stream\n"
         "  --tls              TLS (verifies the server; with --ca FILE,\n"
         "                     --pin SHA256, --insecure, --servername NAME);\n"
         "                     connect mode then counts handshakes: each\n"
         "                     connection ends once both sides sent\n"
         "                     close_notify\n"
         "  --tls-resume       resume TLS sessions: each handshake offers\n"
         "                     the session of an earlier one (openssl s_time\n"
         "                     -reuse); default: every handshake is full\n"
         "                     (-new)\n"
         "  --sockperf         every message starts with sockperf's 14-byte\n"
         "                     header asking for a reply (--size counts it),\n"
         "                     so sockperf's own server answers too: both\n"
         "                     servers measured by one client\n"
         "  --json             one JSON object on stdout\n");
}

static int parse(int argc, char **argv, struct opts *o) {
  static const struct option lo[] = {
      {"bench", no_argument, NULL, 'B'},
      {"bench-mode", required_argument, NULL, 'm'},
      {"conns", required_argument, NULL, 'c'},
      {"size", required_argument, NULL, 's'},
      {"pipeline", required_argument, NULL, 'p'},
      {"duration", required_argument, NULL, 'd'},
      {"warmup", required_argument, NULL, 'w'},
      {"interval", required_argument, NULL, 'i'},
      {"frame", required_argument, NULL, 'f'},
      {"udp", no_argument, NULL, 'u'},
      {"json", no_argument, NULL, 'j'},
      {"tls", no_argument, NULL, 'T'},
      {"ca", required_argument, NULL, 'C'},
      {"pin", required_argument, NULL, 'P'},
      {"insecure", no_argument, NULL, 'I'},
      {"servername", required_argument, NULL, 'S'},
      {"tls-resume", no_argument, NULL, 'R'},
      {"sockperf", no_argument, NULL, 'K'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch;
  memset(o, 0, sizeof(*o));
  o->conns = 1;
  o->size = 64;
  o->pipeline = 1;
  o->duration_ms = 5000;
  o->warmup_ms = 1000;
  o->interval_ms = 1000;
  o->frame = SK_FRAME_RAW;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (ch) {
    case 'B':
      break;
    case 'm': {
      int i;
      for (i = 0; i < 4 && strcmp(optarg, mode_names[i]) != 0; i++)
        ;
      if (i == 4)
        cli_usage_error(PROG, "--bench-mode: unknown mode '%s'", optarg);
      o->mode = (enum bench_mode)i;
      break;
    }
    case 'c':
      if (cli_parse_u64(optarg, 1, 100000, &o->conns) != 0)
        cli_usage_error(PROG, "--conns: expected 1-100000, got '%s'", optarg);
      break;
    case 's':
      if (cli_parse_size(optarg, 1, 64u << 20, &o->size) != 0)
        cli_usage_error(PROG, "--size: expected 1 byte to 64M, got '%s'",
                        optarg);
      break;
    case 'p':
      if (cli_parse_u64(optarg, 1, 4096, &o->pipeline) != 0)
        cli_usage_error(PROG, "--pipeline: expected 1-4096, got '%s'", optarg);
      break;
    case 'd':
      if (cli_parse_duration_ms(optarg, 100, 3600000, &o->duration_ms) != 0)
        cli_usage_error(PROG, "--duration: expected 0.1-3600 seconds, got '%s'",
                        optarg);
      break;
    case 'w':
      if (cli_parse_duration_ms(optarg, 0, 600000, &o->warmup_ms) != 0)
        cli_usage_error(PROG, "--warmup: expected 0-600 seconds, got '%s'",
                        optarg);
      break;
    case 'i':
      if (cli_parse_duration_ms(optarg, 0, 3600000, &o->interval_ms) != 0 ||
          (o->interval_ms > 0 && o->interval_ms < 100))
        cli_usage_error(PROG,
                        "--interval: expected 0 (none) or 0.1-3600 seconds, "
                        "got '%s'",
                        optarg);
      break;
    case 'f':
      if (sk_frame_mode_parse(optarg, &o->frame) != 0)
        cli_usage_error(PROG, "--frame: unknown mode '%s'", optarg);
      break;
    case 'u':
      o->udp = 1;
      break;
    case 'j':
      o->json = 1;
      break;
    case 'T':
      o->tls = 1;
      break;
    case 'C':
      o->ca = optarg;
      break;
    case 'P':
      o->pin = optarg;
      break;
    case 'I':
      o->insecure = 1;
      break;
    case 'S':
      o->servername = optarg;
      break;
    case 'R':
      o->tls_resume = 1;
      break;
    case 'K':
      o->sockperf = 1;
      break;
    case 'h':
      usage();
      exit(0);
    default:
      cli_usage_error(PROG, "invalid --bench option");
    }
  }
  if (optind != argc - 1)
    cli_usage_error(PROG, "--bench needs exactly one ADDR");
  o->addr = argv[optind];
  if (o->udp && (o->mode == B_CONNECT || o->mode == B_IDLE))
    cli_usage_error(PROG, "--udp works with --bench-mode echo or oneway");
  if (o->frame != SK_FRAME_RAW && o->size > sk_frame_mode_limit(o->frame))
    cli_usage_error(PROG, "--size: %" PRIu64 " does not fit a %s frame",
                    o->size, sk_frame_mode_name(o->frame));
  if (!o->tls &&
      (o->ca || o->pin || o->insecure || o->servername || o->tls_resume))
    cli_usage_error(PROG, "--ca, --pin, --insecure, --servername and "
                          "--tls-resume need --tls");
  if (o->tls && o->udp)
    cli_usage_error(PROG, "--tls works over streams, not --udp");
  if (o->insecure && o->pin)
    cli_usage_error(PROG, "--insecure and --pin exclude each other");
  if (o->udp && o->size > 65507)
    cli_usage_error(PROG, "--size: a UDP datagram holds at most 65507 bytes");
  if (o->sockperf &&
      (o->size < SOCKPERF_HDR || o->frame != SK_FRAME_RAW || o->mode != B_ECHO))
    cli_usage_error(PROG, "--sockperf needs --bench-mode echo, --frame raw "
                          "and a --size of at least 14");
  return 0;
}

/* Builds the one message every connection sends: header + payload (+ "\n"
 * for line framing; the payload then avoids "\n"). */
static int build_message(struct bench *b) {
  unsigned char hdr[4];
  const char *trailer;
  int hl = b->o.udp ? 0 : sk_frame_header(b->o.frame, b->o.size, hdr);
  size_t tl = b->o.udp ? 0 : sk_frame_trailer(b->o.frame, &trailer);
  if (hl < 0)
    return hl;
  b->wire = (size_t)hl + b->o.size + tl;
  b->msg = malloc(b->wire);
  if (b->msg == NULL)
    return -ENOMEM;
  memcpy(b->msg, hdr, (size_t)hl);
  for (size_t i = 0; i < b->o.size; i++)
    b->msg[(size_t)hl + i] = (unsigned char)('a' + i % 26);
  if (b->o.sockperf)
    sockperf_header(b->msg, b->wire);
  if (tl)
    memcpy(b->msg + hl + b->o.size, trailer, tl);
  b->burst = malloc(b->o.pipeline * sizeof(*b->burst));
  if (b->burst == NULL)
    return -ENOMEM;
  for (uint64_t i = 0; i < b->o.pipeline; i++) {
    b->burst[i].iov_base = b->msg;
    b->burst[i].iov_len = b->wire;
  }
  return 0;
}

static void raise_nofile(uint64_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need + 64) {
    rl.rlim_cur = need + 64 < rl.rlim_max ? need + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int bench_main(int argc, char **argv) {
  struct bench *b = calloc(1, sizeof(*b));
  int rc;
  if (b == NULL)
    cli_fatal(PROG, 1, "out of memory");
  parse(argc, argv, &b->o);
  signal(SIGPIPE, SIG_IGN);

  rc = sk_endpoint_resolve(b->o.addr, AF_UNSPEC,
                           b->o.udp ? SOCK_DGRAM : SOCK_STREAM, b->eps, 16);
  if (rc < 0)
    cli_fatal(PROG, 1, "cannot resolve %s: %s", b->o.addr, sk_strerror(rc));
  b->neps = rc;
  if ((rc = build_message(b)) != 0)
    cli_fatal(PROG, 1, "bench: %s", sk_strerror(rc));
  if (b->o.tls) {
    sk_tls_options to;
    uint16_t port;
    memset(&to, 0, sizeof(to));
    if (b->o.ca != NULL && (rc = cli_check_readable(b->o.ca)) < 0)
      cli_fatal(PROG, 1, "TLS: cannot load CA certificates: cannot read %s: %s",
                b->o.ca, sk_strerror(rc));
    to.ca_file = b->o.ca;
    to.pin_sha256 = b->o.pin;
    to.insecure_no_verify = b->o.insecure;
    /* Full handshakes unless asked: the client then neither keeps nor
     * offers sessions (the server may still issue tickets; they are
     * read and dropped). */
    to.no_resumption = !b->o.tls_resume;
    if ((rc = sk_tls_ctx_new(&b->tls, &to)) != 0)
      cli_fatal(PROG, 1, "TLS: %s", sk_tls_last_error());
    if (b->o.servername != NULL)
      snprintf(b->host, sizeof(b->host), "%s", b->o.servername);
    else if (sk_endpoint_split(b->o.addr, b->host, sizeof(b->host), &port))
      b->host[0] = '\0';
  }
  raise_nofile(b->o.conns);
  b->conns = calloc(b->o.conns, sizeof(*b->conns));
  if (b->conns == NULL)
    cli_fatal(PROG, 1, "out of memory");
  for (uint64_t i = 0; i < b->o.conns; i++) {
    b->conns[i].sent_at = calloc(b->o.pipeline, sizeof(uint64_t));
    if (b->conns[i].sent_at == NULL)
      cli_fatal(PROG, 1, "out of memory");
  }
  hist_reset(&b->lat);
  hist_reset(&b->ilat);
  if ((rc = sk_loop_init(&b->loop)) != 0)
    cli_fatal(PROG, 1, "event loop: %s", sk_strerror(rc));

  sk_timer_init(&b->loop, &b->phase);
  b->phase.h.data = b;
  sk_timer_init(&b->loop, &b->tick);
  b->tick.h.data = b;
  sk_timer_init(&b->loop, &b->itick);
  b->itick.h.data = b;
  sk_timer_start(&b->phase, warmup_end, b->o.warmup_ms, 0);
  if (b->o.udp && b->o.mode == B_ONEWAY)
    sk_timer_start(&b->tick, udp_pump, 0, 0);
  else if (b->o.udp)
    sk_timer_start(&b->tick, udp_tick, 50, 50);

  if (b->o.udp) {
    for (uint64_t i = 0; i < b->o.conns; i++) {
      rc = udp_start(b, &b->conns[i]);
      if (rc != 0)
        cli_fatal(PROG, 1, "udp socket: %s", sk_strerror(rc));
    }
  } else {
    start_more(b);
  }
  sk_loop_run(&b->loop, SK_RUN_DEFAULT);

  int failed = b->messages == 0 && b->connects == 0 && b->o.mode != B_IDLE;
  if (b->o.mode == B_IDLE && b->open_conns < b->o.conns)
    failed = 1;
  if (b->cannot_connect)
    fprintf(stderr, PROG ": cannot connect to %s: %s\n", b->o.addr,
            sk_strerror(b->connect_err));
  else
    report(b);
  if (b->o.mode == B_CONNECT && b->tls != NULL && b->connects == 0 &&
      b->errors == 0 && b->hs_unanswered > 0)
    fprintf(stderr,
            PROG ": bench: %" PRIu64 " TLS handshake%s done but the server "
                 "never ended the session%s after this side's close_notify\n",
            b->hs_unanswered, b->hs_unanswered == 1 ? "" : "s",
            b->hs_unanswered == 1 ? "" : "s");
  if (!b->cannot_connect && b->connect_errors > 0)
    fprintf(stderr,
            PROG ": warning: %" PRIu64 " connection attempt%s failed (%s)\n",
            b->connect_errors, b->connect_errors == 1 ? "" : "s",
            sk_strerror(b->connect_err));
  if (b->tls != NULL)
    sk_tls_ctx_free(b->tls);
  if (sk_loop_free(&b->loop) != 0)
    fprintf(stderr, PROG ": bench: event loop still busy at exit\n");
  for (uint64_t i = 0; i < b->o.conns; i++)
    free(b->conns[i].sent_at);
  free(b->conns);
  free(b->msg);
  free(b->burst);
  free(b->intervals);
  free(b);
  return failed ? 1 : 0;
}
