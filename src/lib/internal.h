/* Internal declarations shared by the files of libsockit. Nothing here is
 * part of the public API; every non-static name starts with sk__. */
#ifndef SOCKIT_INTERNAL_H
#define SOCKIT_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "sockit.h"

#define SK__UNUSED(x) ((void)(x))
#define sk__container_of(ptr, type, member)                                    \
  ((type *)((char *)(ptr)-offsetof(type, member)))

/* Negative errno of the last failed system call. */
static inline int sk__err(void) {
  return -errno;
}

/* ---- descriptors (socket.c) ---- */

/* Creates a non-blocking, close-on-exec socket; applies SK_SOCK_* flags
 * (dual-stack / v6only). Returns the fd or a negative errno. */
int sk__socket_create(int family, int type, unsigned flags);
/* The SK_SOCK_* flags a listener or bound UDP socket with SK_LISTEN_*
 * flags is opened with. */
unsigned sk__listen_sock_flags(unsigned listen_flags);

/* Makes fd non-blocking and close-on-exec. Returns 0 or a negative errno. */
int sk__fd_prepare(int fd);

/* Fills s from an fd (family via getsockname, type via SO_TYPE). */
int sk__socket_from_fd(sk_socket *s, int fd);

/* Reads and discards whatever is queued on fd without blocking, so that a
 * following close() does not make the kernel send RST for unread data.
 * Bounded: at most max bytes. */
void sk__drain_fd(int fd, size_t max);

/* close() that keeps errno of the caller and ignores EINTR. */
void sk__close_fd(int fd);

/* Keeps a sendfile(2) to a closed peer from raising SIGPIPE (it has no
 * MSG_NOSIGNAL): block around the call, then unblock, discarding the signal
 * the call itself raised (got_epipe). */
#include <signal.h>
struct sk__sigpipe {
  sigset_t pipe_set, old_set;
  int was_pending;
};
void sk__sigpipe_block(struct sk__sigpipe *sp);
void sk__sigpipe_unblock(struct sk__sigpipe *sp, int got_epipe);

/* Monotonic clock in milliseconds. */
uint64_t sk__now_ms(void);

/* ---- io watchers and the backend contract (loop.c, backend_*.c) ---- */

enum { SK__IO_READ = 1u, SK__IO_WRITE = 2u, SK__IO_ERR = 4u };

/* Each backend is one file implementing these. poll() must update the
 * loop's clock (sk_loop_update_time) as soon as the wait returns, before
 * dispatching, so callbacks see the time of the event. The loop calls update()
 * whenever a watcher's wanted events differ from what the kernel has
 * (events 0 = remove), and poll() to wait and dispatch: for every ready
 * watcher, poll() calls w->cb(loop, w, revents) with revents a mask of
 * SK__IO_* (errors and hang-ups are reported as READ|WRITE|ERR so both
 * directions notice). A watcher removed during dispatch must not be called
 * afterwards in the same poll. */
struct sk__backend {
  const char *name;
  int (*init)(sk_loop *loop);
  void (*free)(sk_loop *loop);
  int (*update)(sk_loop *loop, struct sk__io *w, unsigned events);
  int (*poll)(sk_loop *loop, int timeout_ms);
};

extern const struct sk__backend sk__backend_epoll;
extern const struct sk__backend sk__backend_poll;
extern const struct sk__backend sk__backend_uring;

void sk__io_init(struct sk__io *w, const int *fd, sk__io_cb cb);
/* Sets the wanted events of a watcher (0 stops it). */
int sk__io_set(sk_loop *loop, struct sk__io *w, unsigned events);
int sk__io_start(sk_loop *loop, struct sk__io *w, unsigned events);
int sk__io_stop(sk_loop *loop, struct sk__io *w, unsigned events);

/* ---- handles (loop.c) ---- */

enum {
  SK__H_ACTIVE = 1u << 0,
  SK__H_REF = 1u << 1,
  SK__H_CLOSING = 1u << 2,
  SK__H_CLOSED = 1u << 3,
};

void sk__handle_init(sk_loop *loop, sk_handle *h, int type);
void sk__handle_start(sk_handle *h); /* mark active */
void sk__handle_stop(sk_handle *h);  /* mark inactive */

/* Queues a callback to run after the current poll phase. */
void sk__pending_add(sk_loop *loop, struct sk__pending *p,
                     void (*cb)(struct sk__pending *p));
/* Removes a queued callback if it is still queued. */
void sk__pending_remove(sk_loop *loop, struct sk__pending *p);

/* ---- timers (timer.c) ---- */

void sk__tnode_init(struct sk__tnode *n, void (*cb)(struct sk__tnode *n));
void sk__tnode_start(sk_loop *loop, struct sk__tnode *n, uint64_t due);
void sk__tnode_stop(sk_loop *loop, struct sk__tnode *n);
static inline int sk__tnode_active(const struct sk__tnode *n) {
  return n->heap != UINT32_MAX;
}
/* Milliseconds until the next deadline, -1 if none, 0 if due. */
int sk__timers_next(const sk_loop *loop);
void sk__timers_run(sk_loop *loop);

/* ---- write queue (wqueue.c), shared by streams and UDP ---- */

enum {
  /* Bytes for the socket: what the kernel is given as it is. */
  SK__WREQ_BYTES = 0, /* data[] holds the bytes still to write */
  SK__WREQ_FILE,      /* sendfile(2) from file_fd at file_off */
  SK__WREQ_SHUTDOWN,  /* shutdown(SHUT_WR) when reached */
  SK__WREQ_DGRAM,     /* a datagram to dst */
  SK__WREQ_URGENT,    /* one byte of urgent data (MSG_OOB) in data[0] */
  /* The user's, for a stream transport that transforms bytes (TLS): they
   * wait in the queue as the user gave them and pass through the transport
   * when they reach the head (stream.c, "held requests"). The path is fixed
   * when the request is queued, never by the transport found at the head:
   * bytes queued before a transport was installed stay plaintext. */
  SK__WREQ_TP_FILE,     /* read in chunks, each passed to the transport */
  SK__WREQ_TP_BYTES,    /* the user's bytes, passed whole */
  SK__WREQ_TP_SHUTDOWN, /* the user's shutdown */
};

/* 1 if r waits to pass through the transport (counted in sk__wq.held). */
static inline int sk__wreq_held_kind(int kind) {
  return kind >= SK__WREQ_TP_FILE;
}

/* The completion of a request, typed by the handle that queued it. */
union sk__wreq_cb {
  sk_send_cb stream;
  sk_udp_send_cb udp;
};

struct sk__wreq {
  struct sk__wreq *next;
  struct sk__pending pend; /* completion, deferred to the loop */
  sk_handle *handle;       /* the stream or udp handle */
  union sk__wreq_cb cb;    /* the member of the handle's type, or NULL */
  void *arg;
  int kind;
  int status;
  size_t len;  /* bytes still to go */
  size_t off;  /* BYTES: offset of the next byte in data[]; FILE: bytes
                  sent */
  int partial; /* part of the send went out before it was queued */
  int file_fd;
  off_t file_off;
  sk_endpoint dst; /* DGRAM only */
  size_t cap;      /* allocated size of data[] */
  unsigned char data[];
};

/* Most bytes one sendfile(2) call is asked for (a stream's file send, and
 * sk_socket_sendfile): what Linux transfers at most per call. */
#define SK__SENDFILE_CHUNK ((size_t)0x7ffff000)

/* Allocates a request with room for len bytes (from the loop's cache when
 * it fits). Returns NULL when out of memory. */
struct sk__wreq *sk__wreq_new(sk_loop *loop, size_t len);
void sk__wreq_free(sk_loop *loop, struct sk__wreq *r);
/* Bytes of memory a queued request holds (header and data room). */
static inline size_t sk__wreq_mem(const struct sk__wreq *r) {
  return sizeof(*r) + r->cap;
}
void sk__wreq_cache_free(sk_loop *loop);
static inline int sk__wreq_has_cb(const struct sk__wreq *r) {
  return r->cb.stream != NULL; /* the members share their representation */
}

/* The queue keeps bytes, mem and held (requests of a held kind) in step
 * with what push, insert, pop, remove and fail do: callers never count. */
/* Appends r to q (its len and memory counted). */
void sk__wq_push(struct sk__wq *q, struct sk__wreq *r);
/* Inserts r at *at (a link inside q: &q->head or &p->next); returns the
 * link after r, for the next insertion in order. */
struct sk__wreq **sk__wq_insert(struct sk__wq *q, struct sk__wreq **at,
                                struct sk__wreq *r);
/* Takes the first request off q (its memory uncounted; len stays counted in
 * q->bytes: the caller subtracts what it wrote). */
struct sk__wreq *sk__wq_pop(struct sk__wq *q);
/* Unlinks r (after prev, NULL if r is the head) and uncounts it. */
void sk__wq_remove(struct sk__wq *q, struct sk__wreq *prev, struct sk__wreq *r);
/* A request is finished: its callback, if any, runs from the pending phase
 * (in order, since the pending queue is FIFO); without one it is freed. */
void sk__wq_complete(sk_handle *h, struct sk__wreq *r, int status);
/* Completes every queued request with err (write error or close). */
void sk__wq_fail(sk_handle *h, struct sk__wq *q, int err);

/* Copies the bytes of iov[] after the first skip bytes to dst. */
void sk__iov_copy(unsigned char *dst, const struct iovec *iov, int iovcnt,
                  size_t skip);
/* The same, at most n bytes. */
void sk__iov_copy_n(unsigned char *dst, const struct iovec *iov, int iovcnt,
                    size_t skip, size_t n);

/* accept(2) failed with err for one connection that died while it waited
 * in the queue (Linux passes pending network errors through accept, and a
 * firewall's refusal as EPERM): the listener is fine, retry like EAGAIN.
 * One list for the sync (socket.c) and the async (stream.c) accept. */
int sk__accept_transient(int err);

/* Handle-type specific parts of sk_close(). */
void sk__stream_close(sk_stream *s);
/* The stream's close completed: free what its callbacks needed. */
void sk__stream_closed(sk_stream *s);
void sk__udp_close(sk_udp *u);

/* Undo sk_stream_listen() / sk_udp_bind() on a handle that has done
 * nothing since (listen.c: a group that failed part way): the socket is
 * closed and the handle is as it was before the bind, ready to bind
 * again. */
void sk__stream_unlisten(sk_stream *s);
void sk__udp_unbind(sk_udp *u);

/* Reads the destination address and interface of a received datagram from
 * its control messages (IP_PKTINFO / IPV6_PKTINFO). to gets the local port
 * given; to->len stays 0 when the message carried none. */
struct msghdr;
void sk__dgram_dest(const struct msghdr *msg, uint16_t port, sk_endpoint *to,
                    unsigned *ifindex);
/* Room for the control messages sk__dgram_dest reads. */
#define SK__CMSG_SPACE 128

/* ---- streams (stream.c) and their transports ---- */

enum {
  SK__S_LISTENING = 1u << 0,
  SK__S_ACCEPTING = 1u << 1,
  SK__S_CONNECTING = 1u << 2,
  SK__S_CONNECTED = 1u << 3,
  SK__S_READING = 1u << 4,
  SK__S_SHUT_WR = 1u << 6,   /* the user shut down (maybe held) */
  SK__S_WR_FAILED = 1u << 7, /* a write failed: later sends fail too */
  SK__S_RAW_SHUT = 1u << 8,  /* shutdown(SHUT_WR) queued for the socket */
  SK__S_PEEKING = 1u << 10,  /* sk_stream_peek() waits for data */
};

/* A transport sits between a connected stream's socket and its user: the
 * stream reads and writes the socket, the transport turns what the socket
 * carries into what the user sees and back. "plain" (stream.c) passes
 * bytes through; TLS (tls_stream.c) installs its own table with
 * sk_stream_tls_start(). A transport keeps its state in s->tpdata and
 * talks to the stream only through the sk__stream_* services below; see
 * docs/ARCHITECTURE.md, "How to add a transport". Every member is set. */
struct sk__transport {
  const char *name;
  /* The socket delivered n > 0 bytes in buf (the loop's buffer, valid
   * during the call), or reached its end: n is SK_EOF or a negative errno
   * and buf is NULL. The transport hands the user's bytes, or the end of
   * the user's stream, to sk__stream_deliver(). */
  void (*input)(sk_stream *s, const unsigned char *buf, ssize_t n);
  /* A user send (the stream checked it may send): the transport passes
   * what goes on the wire to sk__stream_raw_sendv(), cb with its last
   * bytes. */
  int (*sendv)(sk_stream *s, const struct iovec *iov, int iovcnt, sk_send_cb cb,
               void *arg);
  /* A user shutdown: whatever closes the transport's own stream, then
   * sk__stream_raw_shutdown(). */
  int (*shutdown)(sk_stream *s, sk_send_cb cb, void *arg);
  /* The user started or resumed reading: deliver what the transport holds
   * already (from the loop, never inside the API call). */
  void (*resume)(sk_stream *s);
  /* Socket events (SK__IO_READ) the transport needs while the user does
   * not read, e.g. during a handshake. */
  unsigned (*wants)(const sk_stream *s);
  /* The stream is closing: release the state (the transport may keep it
   * until a callback it owes has run). */
  void (*close)(sk_stream *s);
  /* SK__TP_RAW: user bytes reach the socket unchanged, so the kernel may
   * send files, urgent data and peek at input for the user, and a queued
   * send can be cancelled. */
  unsigned flags;
};
enum { SK__TP_RAW = 1u << 0 };

extern const struct sk__transport sk__transport_plain;

/* Services of stream.c for transports. */
/* Fails as sk_stream_tls_start() documents when s cannot take a new
 * transport (listening, closing, not connected, one installed already,
 * write side failed or shut). */
int sk__stream_transport_check(const sk_stream *s);
/* Installs tp with its state; the stream updates its readiness interest. */
void sk__stream_transport_set(sk_stream *s, const struct sk__transport *tp,
                              void *data);
/* Transports in sequence (a PROXY-header reader, then TLS): the installed
 * transport is done and has released its state (its close() is not
 * called); the stream is plain again, so the next transport's start call
 * (sk_stream_tls_start) accepts it. Then the old transport feeds the bytes
 * it read past its own part to sk__stream_transport_input(), which hands
 * them to the installed transport's input() at once, before the socket's
 * next bytes. Call both from input() (or resume()), never from inside a
 * user's API call. When the next transport is plain, the user must be
 * reading (plain holds nothing): otherwise end from resume(). Requests
 * still held pass through the next transport. */
void sk__stream_transport_end(sk_stream *s);
void sk__stream_transport_input(sk_stream *s, const unsigned char *buf,
                                size_t n);
/* Queues bytes for the socket, in order: behind what is queued
 * (write-through when nothing is), or, while the stream passes the
 * transport a held request, ahead of that request (stream.c, "held
 * requests"). Fails when the socket's write side failed or was shut. */
int sk__stream_raw_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                         sk_send_cb cb, void *arg);
int sk__stream_raw_shutdown(sk_stream *s, sk_send_cb cb, void *arg);
/* The transport lost output it had committed to (e.g. a TLS record whose
 * sequence number SSL has used, when queueing it ran out of memory): the
 * write side fails for good with err, every later send returns it (unless
 * it failed or was shut already); what is queued, whole, still goes. With
 * cb, cb also completes with err, from the loop, and 0 is returned (the
 * transport took a send it could not finish); without, err is. */
int sk__stream_write_fail(sk_stream *s, int err, sk_send_cb cb, void *arg);
/* The transport's wants() may have changed: brings the stream's readiness
 * interest in line. */
void sk__stream_update(sk_stream *s);
/* 1 if the user's recv is started and not paused. */
int sk__stream_user_reading(const sk_stream *s);
/* Hands user bytes (n > 0) or the end of the stream (n < 0) to the user's
 * recv callback; n < 0 ends the user's receive operation. */
void sk__stream_deliver(sk_stream *s, ssize_t n, const void *buf);

/* ---- the relay (relay.c) and its hook in stream.c ---- */

/* While a relay (sockit/relay.h) owns a stream, the stream's extra state
 * points to it (sk__stream_relay_set; NULL lets go). Then stream.c:
 *  - if the relay splices (r->spliced), hands the socket's readiness to
 *    sk__relay_io() after writing the stream's own queue (bytes queued
 *    before the relay started go first), and asks sk__relay_wants() which
 *    socket events it needs besides the queue's (the stream counts as
 *    active meanwhile); the relay moves the bytes with splice(2) itself;
 *  - when the stream starts closing, calls sk__relay_closing() first: the
 *    relay stops (no callback) and lets go of both streams. The hook stays
 *    set after the relay ended until its callback runs, so that a close
 *    meanwhile withdraws that callback.
 * Copying relays receive and send through the ordinary API and use the
 * hook only to find the relay and to learn of the close. */
struct sk_relay;
/* Returns 0, or -ENOMEM (the extra state could not be allocated). */
int sk__stream_relay_set(sk_stream *s, struct sk_relay *r);
struct sk_relay *sk__stream_relay(const sk_stream *s);
void sk__relay_io(struct sk_relay *r, sk_stream *s, unsigned revents);
unsigned sk__relay_wants(const struct sk_relay *r, const sk_stream *s);
int sk__relay_splicing(const struct sk_relay *r); /* spliced and running */
/* Bytes a stream's transport keeps for a user that does not read (the
 * bytes that came with a PROXY header, proxy.c): sk__stream_held() gives
 * them (0: none; the stream is otherwise plain), sk__stream_held_drop()
 * frees them and makes the stream plain. A relay starting on such a
 * stream sends them to the other stream first, then splices; and proxy.c
 * calls sk__relay_held() when it comes to hold bytes on a stream a relay
 * already owns (a relay started from the PROXY callback). */
size_t sk__stream_held(const sk_stream *s, const unsigned char **data);
void sk__stream_held_drop(sk_stream *s);
void sk__relay_held(struct sk_relay *r, sk_stream *s);
void sk__relay_closing(struct sk_relay *r, sk_stream *s);

/* ---- connecting by name (connect.c) and its hooks in stream.c ---- */

struct sk__connreq;
/* stream.c calls this whenever a connect by name ends (won, failed, timed
 * out, cancelled, closed): closes the other attempts and the resolver;
 * the memory goes after the current poll phase. */
void sk__connreq_end(struct sk__connreq *r);
/* Starts the stream's connect operation on behalf of r: callback, overall
 * deadline (timeout_ms < 0: none), cancellation. Returns 0 or -EBADF /
 * -EISCONN / -ENOMEM. */
int sk__stream_connect_begin(sk_stream *s, struct sk__connreq *r,
                             int timeout_ms, sk_connect_cb cb);
/* Ends it: status 0 adopts fd as the stream's socket; otherwise fd is -1
 * and cb gets status. */
void sk__stream_connect_end(sk_stream *s, int fd, int status);

#endif
