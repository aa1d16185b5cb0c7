/* The event loop: handles, timers, wake-ups, and the rules of closing.
 *
 * One sk_loop runs on one thread. Every handle (timer, async, signal, poll,
 * stream, udp) belongs to one loop and may be used only from that loop's
 * thread, except sk_async_send() and sk_loop_post(), which are the thread-safe
 * ways in.
 *
 * Backends: the loop waits on the kernel through one backend, chosen at
 * sk_loop_init() time: "epoll" (Linux, default), "poll" (portable) or
 * "uring" (io_uring readiness polls, when built with liburing and allowed by
 * the kernel). The environment variable SK_BACKEND=epoll|poll|uring
 * overrides the default, so a whole program or test suite can be run on
 * any of them.
 *
 * Callbacks run on the loop's thread, from sk_loop_run(), never from inside
 * the call that started an operation.
 *
 * Timeouts, everywhere in sockit, are int milliseconds with one
 * convention:
 *  - a negative value (write -1) means none: wait as long as it takes;
 *  - in a call that waits (the sync API: sk_socket_*, sk_tls_connect, ...),
 *    0 means do not wait: try once and return -ETIMEDOUT (or 0 ready)
 *    at once;
 *  - in a setting kept in an options struct (sk_tls_options'
 *    handshake_timeout_ms, sk_connect_options' timeout_ms), 0 selects the
 *    documented default, since a zeroed struct must mean "defaults";
 *  - in an async deadline set by a call (sk_stream_connect,
 *    sk_stream_recv_timeout), the deadline is measured on the loop's
 *    clock; a deadline of 0 that cannot mean "at once" is -EINVAL
 *    (sk_stream_recv_timeout).
 * A timeout ends the operation with -ETIMEDOUT.
 *
 * Closing: sk_close() stops everything a handle is doing; pending sends and
 * connects complete with -ECANCELED (a continuous recv or accept simply ends,
 * without a callback), and the close callback runs later,
 * from the loop, after every other callback of that handle. The handle's
 * memory must stay valid until the close callback has started; free it there
 * or after. Closing from inside any callback (including the handle's own) is
 * safe.
 */
#ifndef SOCKIT_LOOP_H
#define SOCKIT_LOOP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_loop sk_loop;
typedef struct sk_handle sk_handle;
typedef struct sk_timer sk_timer;
typedef struct sk_async sk_async;
typedef struct sk_post sk_post;
typedef struct sk_signal sk_signal;
typedef struct sk_poll sk_poll;

typedef void (*sk_close_cb)(sk_handle *h);
typedef void (*sk_timer_cb)(sk_timer *t);
typedef void (*sk_async_cb)(sk_async *a);
typedef void (*sk_post_fn)(sk_post *req);
typedef void (*sk_signal_cb)(sk_signal *s, int signum);
typedef void (*sk_poll_cb)(sk_poll *p, int status, int events);

/* ---- private building blocks (fields are not part of the API) ---- */

/* A descriptor watched by the backend. */
struct sk__io;
typedef void (*sk__io_cb)(sk_loop *loop, struct sk__io *w, unsigned revents);
struct sk__io {
  /* The descriptor, kept by the watcher's owner (a stream's or UDP
   * handle's sock.fd, or a field beside the watcher): one truth. */
  const int *fd;
  unsigned events;  /* wanted: SK__IO_READ | SK__IO_WRITE */
  unsigned kevents; /* registered with the kernel */
  int slot;         /* backend bookkeeping (poll: index; -1 = none) */
  sk__io_cb cb;
};

/* A deadline in the loop's timer heap. */
struct sk__tnode {
  uint64_t due;  /* loop time in ms */
  uint64_t seq;  /* insertion order: equal deadlines fire in start order */
  uint32_t heap; /* index in the heap, UINT32_MAX when not queued */
  void (*cb)(struct sk__tnode *n);
};

/* A deferred callback, run after the current poll phase, in FIFO order. */
struct sk__pending {
  struct sk__pending *next, *prev;
  void (*cb)(struct sk__pending *p);
  int queued;
};

/* A write queue (wqueue.c): the requests a stream or a UDP handle could not
 * hand to the kernel at once, in order. */
struct sk__wreq;
struct sk__wq {
  struct sk__wreq *head, *tail;
  size_t bytes;  /* payload still to write */
  size_t mem;    /* bytes allocated for the queued requests */
  unsigned held; /* requests the stream's transport has not seen yet */
};

/* ---- handles ---- */

typedef enum sk_handle_type {
  SK_HANDLE_TIMER = 1,
  SK_HANDLE_ASYNC,
  SK_HANDLE_STREAM,
  SK_HANDLE_UDP,
  SK_HANDLE_SIGNAL,
  SK_HANDLE_POLL
} sk_handle_type;

/* Common head of every handle. Every handle struct starts with one, so a
 * handle pointer can be cast to sk_handle * (or use the .h member). */
struct sk_handle {
  void *data; /* yours */
  sk_loop *loop;
  /* private */
  int type;
  unsigned hflags;
  sk_close_cb close_cb;
  /* The close callback is queued behind every completion the close
   * cancelled, so it is always the handle's last callback. */
  struct sk__pending close_pend;
};

struct sk_loop {
  void *data; /* yours */
  /* private */
  const struct sk__backend *backend;
  void *backend_state;
  uint64_t now;      /* cached monotonic ms */
  unsigned active;   /* referenced, active handles */
  unsigned nhandles; /* initialised, not yet closed handles */
  int stop;
  /* timers: binary min-heap of deadlines */
  struct sk__tnode **heap;
  uint32_t heap_len, heap_cap;
  uint64_t timer_seq;
  /* callbacks deferred to after the poll phase */
  struct sk__pending *pend_head, *pend_tail;
  /* one shared buffer for reads: an idle connection owns none */
  unsigned char *rbuf;
  size_t rbuf_len;
  /* cross-thread wake-up: eventfd (or pipe) plus a locked post list */
  struct sk__io wake_io;
  int wake_rfd;
  int wake_wfd;
  pthread_mutex_t post_lock;
  sk_post *post_head, *post_tail;
  int wake_pending;  /* guarded by post_lock */
  sk_handle *asyncs; /* async handles of this loop */
  int emfile_fd;     /* reserve descriptor for the EMFILE trick */
  void *free_wreqs;  /* cache of write requests (no per-send malloc) */
  unsigned nfree_wreqs;
  /* Output of a transport that transforms bytes (TLS records), between the
   * call that made it and its hand-over to the stream: one per loop, so an
   * idle connection owns none and a send allocates nothing. */
  unsigned char *tbuf;
  size_t tbuf_len, tbuf_cap;
  pthread_t thread;
  void *signals;   /* signal.c's state; NULL while no signal is watched */
  void *udp_batch; /* udp.c's receive slots; NULL until a UDP socket reads */
};

/* ---- loop lifecycle ---- */

/* Initialises a loop with the default backend (SK_BACKEND overrides).
 * Returns 0, SK_EBACKEND for an unknown SK_BACKEND value, or a negative
 * errno. */
SK_EXTERN int sk_loop_init(sk_loop *loop);

/* Initialises with a named backend ("epoll", "poll", "uring"); NULL =
 * default. SK_EBACKEND if that backend is not built in or the kernel
 * refuses it. */
SK_EXTERN int sk_loop_init_backend(sk_loop *loop, const char *backend);

/* Frees the loop's resources. Returns -EBUSY (and frees nothing) while any
 * handle is still open: close them and run the loop until their close
 * callbacks have run. */
SK_EXTERN int sk_loop_free(sk_loop *loop);

typedef enum sk_run_mode {
  SK_RUN_DEFAULT = 0, /* until sk_loop_stop() or nothing is active */
  SK_RUN_ONCE,        /* wait for events once, run callbacks, return */
  SK_RUN_NOWAIT       /* poll without waiting, run callbacks, return */
} sk_run_mode;

/* Runs the loop. Returns 1 if there is still active work (stopped early or
 * ONCE/NOWAIT), 0 when nothing is left, or a negative errno if the backend
 * failed. */
SK_EXTERN int sk_loop_run(sk_loop *loop, sk_run_mode mode);

/* Makes sk_loop_run() return after the current iteration. Loop thread
 * only; from another thread, use sk_loop_post() with a function that calls
 * it. */
SK_EXTERN void sk_loop_stop(sk_loop *loop);

/* Cached monotonic time in milliseconds, updated once per iteration. */
SK_EXTERN uint64_t sk_loop_now(const sk_loop *loop);
SK_EXTERN void sk_loop_update_time(sk_loop *loop);

/* Name of the backend in use: "epoll", "poll" or "uring". */
SK_EXTERN const char *sk_loop_backend(const sk_loop *loop);

/* Number of handles initialised and not yet closed. 0 means the loop can be
 * freed; tests use it to prove nothing leaked. */
SK_EXTERN unsigned sk_loop_handles(const sk_loop *loop);

/* ---- any handle ---- */

/* Closes a handle (see the closing rules at the top). cb may be NULL.
 * Calling it twice is a no-op. */
SK_EXTERN void sk_close(sk_handle *h, sk_close_cb cb);
SK_EXTERN int sk_is_closing(const sk_handle *h);

/* An unreferenced handle does not keep sk_loop_run(SK_RUN_DEFAULT) alive. */
SK_EXTERN void sk_ref(sk_handle *h);
SK_EXTERN void sk_unref(sk_handle *h);

/* ---- timers ---- */

struct sk_timer {
  sk_handle h;
  /* private */
  struct sk__tnode node;
  sk_timer_cb cb;
  uint64_t repeat;
};

SK_EXTERN int sk_timer_init(sk_loop *loop, sk_timer *t);
/* Fires cb after timeout_ms, then every repeat_ms if repeat_ms > 0.
 * Restarting an active timer moves it. Timers are a heap: starting,
 * stopping and moving cost O(log n), so 100k idle timeouts are cheap. */
SK_EXTERN int sk_timer_start(sk_timer *t, sk_timer_cb cb, uint64_t timeout_ms,
                             uint64_t repeat_ms);
SK_EXTERN int sk_timer_stop(sk_timer *t);
SK_EXTERN int sk_timer_active(const sk_timer *t);

/* ---- wake-ups from other threads ---- */

struct sk_async {
  sk_handle h;
  /* private */
  sk_async_cb cb;
  int pending; /* guarded by the loop's post_lock */
  sk_handle *next_async;
};

/* An async handle keeps the loop alive until closed (or unref'd). */
SK_EXTERN int sk_async_init(sk_loop *loop, sk_async *a, sk_async_cb cb);
/* Thread-safe: makes cb run on the loop's thread soon. Several sends before
 * the loop gets to it run cb once. Returns 0 or a negative errno. */
SK_EXTERN int sk_async_send(sk_async *a);

/* A function to run on a loop's thread, handed over from any thread. The
 * caller owns the sk_post and must keep it valid until fn has started. */
struct sk_post {
  sk_post_fn fn;
  void *data;
  sk_post *next; /* private */
};

/* Thread-safe: queues req to run fn(req) on loop's thread, in order of
 * posting. Never blocks on the loop. Returns 0 or a negative errno. */
SK_EXTERN int sk_loop_post(sk_loop *loop, sk_post *req, sk_post_fn fn,
                           void *data);

/* ---- signals ---- *
 * A signal handle runs its callback on the loop's thread when the process
 * receives a signal (SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGCHLD, ... any
 * signal but SIGKILL and SIGSTOP). On Linux each loop reads the signals its
 * handles watch from one signalfd; elsewhere sk_signal_start() returns
 * -ENOSYS.
 *
 * What the library does to the signal mask: a signalfd only sees a signal
 * that is blocked, so sk_signal_start() blocks the signal in the calling
 * thread (which must be the loop's thread, the one that runs sk_loop_run).
 * It changes no signal disposition and installs no handler. The kernel
 * delivers a process-directed signal to any thread that does not block it:
 * a thread created before the signal was blocked (its mask is inherited at
 * creation) still takes it with its disposition, which for most signals is
 * the default action (terminate). So in a program with threads, block the
 * signals you watch in main() before creating any thread, with
 * sk_signal_block() or pthread_sigmask(); every thread created afterwards
 * inherits the blocked mask and the loop is the only taker.
 *
 * Stopping the last handle of a signal on a loop restores the mask for that
 * signal: if sk_signal_start() blocked it, it is unblocked again (an
 * instance pending at that moment is discarded first, so it cannot fire the
 * default action); if it was already blocked (sk_signal_block()), it stays
 * blocked, and an instance that arrives while no handle watches it stays
 * pending: it is delivered when a handle for it starts, and it never kills
 * the process.
 *
 * Delivery: every started handle of the signal on that loop gets the
 * callback, in start order. Standard signals coalesce as POSIX says: one
 * that arrives twice before the loop reads it may be delivered once;
 * real-time signals (SIGRTMIN..SIGRTMAX) are queued and delivered one by
 * one. If several loops (threads) watch the same signal, each instance goes
 * to one of them only, whichever reads it first. The loop sees signals sent
 * to the process (kill(getpid(), sig), a terminal's Ctrl-C, a child's
 * SIGCHLD) and signals sent to its own thread (raise() on the loop's
 * thread); raise() or pthread_kill() aimed at another thread is not seen.
 * Signals caused by a fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL from a bad
 * instruction) cannot be caught this way; the kernel kills the process. */
struct sk_signal {
  sk_handle h;
  /* private */
  sk_signal_cb cb;
  int signum;
  unsigned caught;        /* deliveries not yet made in this dispatch */
  sk_signal *next_signal; /* the loop's list of started handles */
};

/* Initialises a signal handle on loop. Returns 0. */
SK_EXTERN int sk_signal_init(sk_loop *loop, sk_signal *s);
/* Starts watching signum: cb(s, signum) runs on the loop's thread for each
 * delivery. Blocks signum in the calling thread (see above). Starting an
 * active handle replaces its callback and signal. An active handle keeps
 * the loop alive unless unreferenced (sk_unref). Returns 0, -EINVAL for a
 * NULL cb, a closing handle or a signal that cannot be caught (SIGKILL,
 * SIGSTOP, out of range, or reserved by the C library), -ENOSYS without
 * signalfd, or a negative errno (-EMFILE, -ENOMEM). */
SK_EXTERN int sk_signal_start(sk_signal *s, sk_signal_cb cb, int signum);
/* Stops watching; no callback runs after it. The last handle of a signal on
 * the loop restores that signal's mask (see above). Safe on a stopped
 * handle. Returns 0. sk_close() stops the handle too. */
SK_EXTERN int sk_signal_stop(sk_signal *s);
/* Blocks signum in the calling thread (pthread_sigmask), so threads created
 * after it inherit the block and only a loop's signal handle takes the
 * signal. Call it in main() before creating threads, once per signal. The
 * block is not undone by the library. Returns 0 or -EINVAL. */
SK_EXTERN int sk_signal_block(int signum);

/* ---- readiness of any descriptor ---- *
 * A poll handle watches a descriptor the caller owns (a pipe, an eventfd, a
 * socket another library created, a tty) and calls back when it is
 * readable or writable: the way to run a library that does its own I/O
 * (c-ares, libpq, hiredis, libcurl's multi interface) on a sockit loop. It
 * is level-triggered: the callback runs again on every iteration while the
 * condition holds, so read until EAGAIN or stop the events you cannot
 * serve. The handle never reads, writes, closes or changes the flags of the
 * descriptor; use a non-blocking one. Close the descriptor only after
 * sk_poll_stop() or sk_close() of the handle (from the close callback or
 * later is always safe). At most one poll handle per descriptor and loop,
 * and none on a descriptor a stream or UDP handle of that loop uses.
 * Regular files are always ready; the epoll backend refuses them
 * (sk_poll_start returns -EPERM). */
enum {
  SK_POLLH_READABLE = 1,  /* data (or EOF) to read, a connection to accept */
  SK_POLLH_WRITABLE = 2,  /* room to write, a connect finished */
  SK_POLLH_DISCONNECT = 4 /* reported only: hang-up or error (POLLHUP,
                             POLLERR); read or write to learn which */
};

struct sk_poll {
  sk_handle h;
  /* private */
  struct sk__io io;
  int fd;
  sk_poll_cb cb;
  int events;
};

/* Initialises a poll handle on loop for descriptor fd. Returns 0, -EINVAL
 * for a negative fd, or -EBADF if fd is not open. */
SK_EXTERN int sk_poll_init(sk_loop *loop, sk_poll *p, int fd);
/* Starts (or changes, while started) the events watched: a non-empty
 * combination of SK_POLLH_READABLE and SK_POLLH_WRITABLE
 * (SK_POLLH_DISCONNECT may be added and changes nothing: hang-ups are
 * always reported). cb(p, status, events) runs on the loop's thread with
 * status 0 and the ready events (a subset of those watched, plus
 * SK_POLLH_DISCONNECT on hang-up or error), or with status -EBADF and
 * events 0 if the descriptor was found closed while watched (the poll
 * backend sees that; epoll and uring may stay silent), after which the
 * handle is stopped. An active handle keeps the loop alive unless
 * unreferenced. Returns 0, -EINVAL (bad events, NULL cb, closing handle) or
 * the backend's error (-EPERM: epoll cannot watch regular files). */
SK_EXTERN int sk_poll_start(sk_poll *p, int events, sk_poll_cb cb);
/* Stops watching; no callback runs after it, and the descriptor may be
 * closed. Safe on a stopped handle. Returns 0 or a negative errno. */
SK_EXTERN int sk_poll_stop(sk_poll *p);

#ifdef __cplusplus
}
#endif

#endif
