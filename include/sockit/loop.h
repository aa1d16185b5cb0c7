/* The event loop: handles, timers, wake-ups, and the rules of closing.
 *
 * One sk_loop runs on one thread. Every handle (timer, async, stream, udp)
 * belongs to one loop and may be used only from that loop's thread, except
 * sk_async_send() and sk_loop_post(), which are the thread-safe ways in.
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

typedef struct sk_loop sk_loop;
typedef struct sk_handle sk_handle;
typedef struct sk_timer sk_timer;
typedef struct sk_async sk_async;
typedef struct sk_post sk_post;

typedef void (*sk_close_cb)(sk_handle *h);
typedef void (*sk_timer_cb)(sk_timer *t);
typedef void (*sk_async_cb)(sk_async *a);
typedef void (*sk_post_fn)(sk_post *req);

/* ---- private building blocks (fields are not part of the API) ---- */

/* A descriptor watched by the backend. */
struct sk__io;
typedef void (*sk__io_cb)(sk_loop *loop, struct sk__io *w, unsigned revents);
struct sk__io {
  int fd;
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

/* ---- handles ---- */

typedef enum sk_handle_type {
  SK_HANDLE_TIMER = 1,
  SK_HANDLE_ASYNC,
  SK_HANDLE_STREAM,
  SK_HANDLE_UDP
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
  int wake_wfd;
  pthread_mutex_t post_lock;
  sk_post *post_head, *post_tail;
  int wake_pending;  /* guarded by post_lock */
  sk_handle *asyncs; /* async handles of this loop */
  int emfile_fd;     /* reserve descriptor for the EMFILE trick */
  void *free_wreqs;  /* cache of write requests (no per-send malloc) */
  unsigned nfree_wreqs;
  pthread_t thread;
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

#endif
