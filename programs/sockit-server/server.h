/* sockit-server internals, by concern:
 *
 *   conn.c       a connection's life: sending, the graceful finish, closing,
 *                back-pressure and holds (each reason to pause reading holds
 *                its own pause of the stream), idle and frame timeouts, the
 *                open and close log lines and counters
 *   framing.c    the framing adapter: bytes read, cut into frame pieces (or
 *                passed whole to modes that parse their own protocol), to
 *                the mode's callbacks; the peer's end of stream
 *   listeners.c  binding every listener, accepting and admission
 *                (--max-conns, running out of descriptors), the TLS
 *                handshake, the readiness line
 *   workers.c    worker threads, the graceful stop, draining the listeners'
 *                backlogs, the grace period
 *   modes.c      the mode table (mode.h: what a mode is)
 *
 * The server runs one event loop per worker thread. Every connection lives
 * on exactly one worker for its whole life, so nothing on the per-message
 * path takes a lock; the only state shared between workers is the global
 * connection count (an atomic) and the read-only configuration.
 *
 * TLS (--tls) is a property of the stream listeners, not a mode: every
 * accepted connection first runs its handshake, and the mode sees the
 * connection only once the handshake has succeeded, with plaintext in and
 * out exactly as on a plain connection (sk_stream_sendfile() included: the
 * library encrypts the file in chunks).
 */
#ifndef SOCKIT_SERVER_H
#define SOCKIT_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "metrics.h"
#include "mode.h"
#include "ratelimit.h"
#include "sockit.h"

#ifndef SK_PROG_NAME
#define SK_PROG_NAME "sockit-server"
#endif

struct server;
struct worker;
struct conn;
struct udp_listener;

/* ---- configuration ---- */

enum listen_kind { LISTEN_TCP, LISTEN_UNIX, LISTEN_UDP };

struct listen_spec {
  int kind;
  sk_endpoint ep;    /* as asked; the real port is filled in once bound */
  const char *text;  /* as given on the command line, for messages */
  char text_buf[96]; /* text's storage when it is not argv's */
  char url[160];     /* "tcp://127.0.0.1:40113", for the readiness line */
  int created_path;  /* a Unix socket file this process created */
  /* systemd socket activation (systemd.c): the socket handed over
   * (SD_LISTEN_FDS_START or above), served as it is; 0 = bind one. */
  int sd_fd;
  /* The file created_path names, to remove it at stop only if it is still
   * the one this process made. */
  unsigned long long path_dev, path_ino;
};

struct server_config {
  const struct mode *mode;
  struct listen_spec *specs;
  size_t nspecs;
  sk_frame_mode frame;
  size_t max_frame;   /* --max-frame */
  size_t max_queue;   /* --max-queue: back-pressure threshold */
  uint64_t max_conns; /* --max-conns, already capped by RLIMIT_NOFILE */
  uint64_t idle_ms;   /* --idle-timeout, 0 = never */
  uint64_t frame_ms;  /* --frame-timeout: a started frame must end within */
  uint64_t grace_ms;  /* --grace */
  unsigned workers;   /* --workers */
  sk_tls_ctx *tls;    /* --tls: the server context; NULL = plain */
  uint64_t hs_ms;     /* --handshake-timeout, 0 = never */
  uint32_t udp_rate;  /* --udp-rate: replies/s per source, 0 = no limit */
  uint32_t udp_burst; /* --udp-burst: replies at once per source */
  /* --proxy-protocol: every stream connection starts with a PROXY header
   * (v1 or v2), read before the TLS handshake and the mode; its source
   * replaces the TCP peer. */
  int proxy_protocol;
};

/* ---- runtime ---- */

struct stream_listener {
  sk_stream s;
  struct worker *w;
  struct listen_spec *spec;
};

struct udp_listener {
  sk_udp u;
  struct worker *w;
  struct listen_spec *spec;
  uintptr_t mode_state; /* the mode's own (chargen: its place) */
  struct rl_entry *cur; /* the sender of the datagram being handled */
  struct rl_table rl;   /* per-source reply limits (udp.c) */
};

struct worker {
  unsigned id;
  struct server *srv;
  sk_loop loop;
  pthread_t thread;
  int started;
  /* Keeps the loop running while it has nothing else to do; closed when
   * the stop arrives. */
  sk_async keepalive;
  sk_post stop_post, force_post;
  sk_timer grace;
  sk_timer sweep;              /* idle and frame timeouts of every connection */
  struct stream_listener *tcp; /* one per stream spec (NULL slot = none) */
  struct udp_listener *udp;    /* one per datagram spec */
  struct conn *conns;          /* every open connection of this worker */
  size_t nconns;
  int stopping, finished;
  /* systemd watchdog (signals.c): set when a ping is posted to the loop,
   * cleared when the loop runs it; still set a period later = stuck. */
  sk_post wd_post;
  atomic_int wd_pending;
  struct wstats stats; /* this worker's counters (metrics.h) */
  sk_timer gauges;     /* --metrics: refreshes the gauges in stats */
};

struct server {
  struct server_config cfg;
  struct worker *workers;
  unsigned nworkers;
  atomic_uint_fast64_t nconns;        /* open connections, all workers */
  atomic_uint_fast64_t emfile_log_ms; /* rate limits for two warnings */
  atomic_uint_fast64_t refuse_log_ms;
  atomic_uint_fast64_t refused;
  atomic_uint running;     /* worker threads still running */
  struct metrics *metrics; /* --metrics: the scrape listener, or NULL */
  int done_fd;             /* written by the last worker to exit */
  int failed;              /* a worker's loop failed */
  /* TLS reload (SIGHUP, signals.c): the options the context was made
   * with, and the context new handshakes use, swapped under tls_lock
   * (cfg.tls stays the first one and only says that TLS is on). */
  sk_tls_options tls_opts;
  pthread_mutex_t tls_lock;
  sk_tls_ctx *tls_cur;
};

/* Where a connection is in its life (struct conn.state). Closing is the
 * stream's own state (sk_is_closing()), and so is whether the peer's end of
 * stream has arrived (sk_stream_is_receiving() once nothing holds a pause):
 * neither is kept here. */
enum conn_state {
  CONN_NEW,       /* accepted; TLS handshake running: the mode has not opened */
  CONN_OPEN,      /* the mode's open ran: it knows the connection */
  CONN_FINISHING, /* conn_finish(): our FIN is queued; input is dropped */
  CONN_FINISHED,  /* our FIN went out; closed when the peer's arrives */
};

/* Reasons to pause reading a connection (struct conn.pauses). Each one
 * holds its own pause of the stream (sk_stream_recv_pause() is counted)
 * and releases exactly that one. */
enum {
  PAUSE_WRITE = 1u << 0, /* back-pressure: the output queue is over the cap */
  PAUSE_HOLD = 1u << 1,  /* the mode holds input back (conn_hold()) */
};

struct conn {
  sk_stream s;
  struct worker *w;
  struct conn *prev, *next;
  uint64_t last_active; /* loop time (ms) of the last sign of life */
  size_t last_wq;       /* write queue size at the last timeout sweep */
  void *mode_data;
  unsigned char state;      /* enum conn_state */
  unsigned char pauses;     /* PAUSE_* held */
  unsigned char finish_due; /* conn_finish() came while held */
  /* The peer, kept compact for log lines (see conn_name()): an IP address
   * and port, or for Unix peers the listener and the descriptor. */
  unsigned char peer_family;
  uint16_t peer_port;
  int peer_fd;
  unsigned char peer_addr[16];
  const struct listen_spec *spec;
  /* For the close line and the metrics: loop time (ms) of the accept, and
   * bytes and messages each way. A message in is a frame (framed modes)
   * or a read (raw and self-parsing modes); a message out is a send the
   * mode made (an echoed frame, a reply, a chunk of a file). */
  uint64_t opened_ms;
  uint64_t bytes_in, bytes_out;
  uint64_t msgs_in, msgs_out;
  unsigned char close_kind; /* enum close_kind, set before conn_close() */
  unsigned char reset;      /* conn_abort(): close with a reset (RST) */
  unsigned char proxy_wait; /* --proxy-protocol: the header is not read yet */
  /* Set by a mode while a close it did not ask for (idle timeout, end of
   * --grace) would drop bytes in flight: conn_close() then resets. */
  unsigned char cut_resets;
  /* Framed modes only: with --frame raw every read is a whole frame, and a
   * connection is allocated without this tail (CONN_RAW_SIZE), which is
   * what keeps an idle connection near 370 bytes
   * (docs/PERFORMANCE-NOTES.md, section 11). */
  uint64_t frame_start; /* loop time (ms) the unfinished frame began */
  size_t frame_bytes;   /* payload bytes of the current frame so far */
  sk_frame_decoder dec;
};

#define CONN_RAW_SIZE offsetof(struct conn, frame_start)

/* Payload bytes of the frame a piece ends (for log lines). */
size_t conn_frame_len(const struct conn *c, const sk_frame_piece *p);

/* The peer's name for log lines ("127.0.0.1:40113", "[::1]:5000",
 * "unix:///tmp/s#7"), formatted on demand into a per-thread buffer that
 * the next call reuses: use one per log statement. */
const char *conn_name(const struct conn *c);

/* ---- workers.c: used by main.c ---- */

/* Binds every listener (exits 1 with one line on failure), prints the
 * readiness line and starts the worker threads. */
void server_start(struct server *srv);
/* From the main thread: graceful stop (force = 0) or close everything now
 * (force = 1). Each may be called once. */
void server_stop(struct server *srv, int force);
/* Joins the workers and releases everything. Returns 0, or 1 if a worker
 * failed. */
int server_wait(struct server *srv);
/* From any thread: new TLS handshakes use ctx from now on (the server takes
 * over the caller's reference); established connections keep theirs. */
void server_tls_swap(struct server *srv, sk_tls_ctx *ctx);

/* ---- systemd.c: socket activation and sd_notify ---- */

/* Takes the sockets systemd passed (LISTEN_FDS), if any, as listeners
 * appended to specs[*n] (at most max in all); exits 1 with one line for a
 * socket it cannot serve. Returns how many were taken. */
size_t systemd_listeners(struct listen_spec *specs, size_t *n, size_t max);
/* sd_notify: READY=1 (and the first STATUS=), STATUS=, STOPPING=1; each a
 * no-op without NOTIFY_SOCKET. */
void systemd_ready(const struct server *srv);
void systemd_status(const struct server *srv);
void systemd_stopping(void);
void systemd_watchdog_ping(void);
/* Watchdog period asked for by systemd (WATCHDOG_USEC), in ms; 0 = none. */
uint64_t systemd_watchdog_ms(void);
/* 1 if there is a notification socket to talk to. */
int systemd_notifying(void);

/* ---- signals.c: the main thread's control loop ---- */

/* Blocks the signals the server handles, before any thread starts. */
void signals_block(void);
/* Runs the main thread until every worker has ended: SIGINT/SIGTERM stop
 * (a second one closes everything at once), SIGHUP reloads TLS files and
 * reopens the log file, SIGUSR1 logs a summary of the counters; also the
 * systemd STATUS= updates and watchdog pings. */
void signals_run(struct server *srv);

/* ---- conn.c: used by the modes ---- */

/* Sends iov[0..n) on c. On failure the connection is closed and -1 is
 * returned. */
int conn_send(struct conn *c, const struct iovec *iov, int n);
/* Graceful end: everything queued goes out, then a FIN; the connection is
 * closed when the peer's FIN arrives (or the idle/grace timer fires). */
void conn_finish(struct conn *c);
/* Closes now (with a reset if c->reset or c->cut_resets is set). why (may
 * be NULL) is logged at info level. */
void conn_close(struct conn *c, const char *why);
/* conn_close() with a reset (RST) instead of a FIN: queued bytes are
 * dropped (a proxy passing on a reset). */
void conn_abort(struct conn *c, const char *why);
/* The peer's address as conn_name() shows it: 0, or -1 when it has none
 * (a Unix peer). */
int conn_peer(const struct conn *c, sk_endpoint *ep);
/* --proxy-protocol: the header's source becomes c's peer everywhere
 * (conn_name(), conn_peer()); a LOCAL or UNKNOWN header keeps the real
 * one, and a Unix source shows as a Unix peer does. */
void conn_proxied(struct conn *c, const sk_proxy_header *h);
/* Counts bytes a mode queued on c without conn_send() (one message). */
void conn_sent(struct conn *c, size_t bytes);
void conn_sentv(struct conn *c, const struct iovec *iov, int n);
/* 1 if bytes from the peer wait in the kernel, not yet read. */
int conn_unread(const struct conn *c);
/* Stops delivering input to the mode until conn_release(), for a mode that
 * produces a long reply over time and must not see the next request
 * before it is done. A graceful finish asked for meanwhile (conn_finish())
 * waits for the release. */
void conn_hold(struct conn *c);
void conn_release(struct conn *c);
/* 1 if the connection runs TLS. */
static inline int conn_tls(const struct conn *c) {
  return c->w->srv->cfg.tls != NULL;
}
/* Records a sign of life for the idle timeout. */
static inline void conn_touch(struct conn *c) {
  c->last_active = sk_loop_now(c->s.h.loop);
}
static inline const struct server_config *conn_cfg(const struct conn *c) {
  return &c->w->srv->cfg;
}
/* 1 once conn_close() ran (the memory goes with the stream's close). */
static inline int conn_closing(const struct conn *c) {
  return sk_is_closing(&c->s.h);
}
/* 1 once conn_finish() queued our FIN (or the connection is closing):
 * nothing more may be sent. */
static inline int conn_finishing(const struct conn *c) {
  return c->state >= CONN_FINISHING || conn_closing(c);
}
/* 1 while the server is stopping: finish what is in flight. */
static inline int conn_stopping(const struct conn *c) {
  return c->w->stopping;
}

/* ---- conn.c, framing.c, listeners.c, workers.c: among themselves ---- */

/* conn.c */
struct conn *conn_new(struct worker *w, int fd, int family,
                      const struct listen_spec *spec, const sk_endpoint *peer);
void conn_ready(struct conn *c);
void conn_stop(struct conn *c);
void conn_log_opened(const struct conn *c);
void conn_count(struct conn *c, int dir, uint64_t bytes, uint64_t msgs);
/* 1 if the connection carries a frame decoder (not --frame raw). */
static inline int conn_framed(const struct conn *c) {
  return conn_cfg(c)->frame != SK_FRAME_RAW;
}
/* 1 if bytes of an unfinished frame have arrived. */
static inline int conn_mid_frame(const struct conn *c) {
  return conn_framed(c) && sk_frame_decoder_busy(&c->dec);
}
/* Back-pressure after the mode handled input: reading pauses while the
 * output queue is over --max-queue. */
void conn_check_queue(struct conn *c);
void conn_sweep_start(struct worker *w);
void conn_gauges_start(struct worker *w);
/* The transport label of c's listener (metrics.h). */
const char *conn_transport(const struct conn *c);

/* framing.c: the stream's receive callback. */
void framing_recv(sk_stream *s, ssize_t n, const void *buf);

/* listeners.c */
void listeners_bind(struct server *srv);
void listeners_start(struct server *srv);
/* Takes what the kernel already accepted on w's listeners and closes
 * them. */
void listeners_close(struct worker *w);
void listeners_print_ready(const struct server *srv);

/* workers.c */
void worker_maybe_finish(struct worker *w);

/* ---- udp.c ---- */

int udp_listener_start(struct udp_listener *u);
/* Sends one datagram back; failures are logged at debug level (UDP is
 * best effort). A reply over the sender's byte budget (see ratelimit.h) is
 * dropped. */
void udp_reply(struct udp_listener *u, const void *buf, size_t len,
               const sk_endpoint *to);
/* The payload bytes, at most want, that a reply to `to` may carry now
 * under its byte budget (chargen sizes its replies with this). */
size_t udp_reply_room(struct udp_listener *u, const sk_endpoint *to,
                      size_t want);

#endif
