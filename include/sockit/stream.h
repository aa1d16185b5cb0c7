/* Async byte streams: TCP and Unix-domain sockets (and TLS over them) on an
 * event loop, with completion-based operations.
 *
 * A stream is either a listener (sk_stream_listen / sk_stream_accept_start)
 * or a connection (sk_stream_connect, or sk_stream_open on an accepted
 * descriptor). Operations:
 *
 *  - accept:  continuous; the callback runs once per new connection.
 *  - connect: one-shot with a timeout; tries each endpoint given in turn.
 *  - send:    the bytes are written to the kernel at once when possible;
 *             only what the kernel did not take is copied into the stream's
 *             write queue and written when the socket becomes writable.
 *             The callback (optional) runs once every byte of that send was
 *             written, or with an error. Sends complete in the order started.
 *  - recv:    continuous; the callback receives data in the loop's shared
 *             read buffer, valid only during the callback. An idle
 *             connection owns no user-space buffer.
 *  - shutdown: half-close (FIN) after everything queued was written; the
 *             stream keeps receiving.
 *
 * Back-pressure: sk_stream_write_queue_size() tells how many bytes wait in
 * user space; pause reading from the source that feeds a slow writer with
 * sk_stream_recv_pause() until its queue drains (the drain callback helps).
 *
 * If a function that takes a callback returns an error, that callback will
 * not be called for that operation.
 */
#ifndef SOCKIT_STREAM_H
#define SOCKIT_STREAM_H

#include <stddef.h>
#include <sys/types.h>

#include "endpoint.h"
#include "loop.h"
#include "socket.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_stream sk_stream;

/* A new connection. On success (status 0) you own fd: wrap it with
 * sk_stream_init() + sk_stream_open(), hand it to another loop, or close
 * it. peer is its normalised address (valid during the call). A negative
 * status reports a problem with accepting (fd is -1): -EMFILE/-ENFILE when
 * the process ran out of descriptors (sockit sheds that connection and keeps
 * accepting without spinning), or a fatal error, after which accepting has
 * stopped. -ECANCELED after sk_stream_accept_stop(). */
typedef void (*sk_accept_cb)(sk_stream *server, int status, int fd,
                             const sk_endpoint *peer);

/* status 0 = connected; otherwise -ECONNREFUSED, -ETIMEDOUT, -ECANCELED,... */
typedef void (*sk_connect_cb)(sk_stream *s, int status);

/* Data arrived (nread > 0, buf valid only during the call), or the
 * operation ended: SK_EOF when the peer closed its side, -ECANCELED after
 * sk_stream_recv_stop(), or a negative errno. Once ended, receiving is
 * stopped; call sk_stream_recv_start() again to restart. */
typedef void (*sk_recv_cb)(sk_stream *s, ssize_t nread, const void *buf);

/* A send (or shutdown) finished: 0 = all written, else a negative errno
 * (-EPIPE, -ECONNRESET, -ECANCELED when the stream was closed first). */
typedef void (*sk_send_cb)(sk_stream *s, int status, void *arg);

/* The write queue just became empty. */
typedef void (*sk_drain_cb)(sk_stream *s);

/* State only a connecting or listening stream needs (deadline, endpoints
 * to try, cancellation callbacks). Private; allocated when needed so an
 * established connection stays small. */
struct sk__sextra;
struct sk__transport;

struct sk_stream {
  sk_handle h;
  /* read-only */
  sk_socket sock;
  /* private */
  unsigned sflags;
  struct sk__io io;
  union {
    sk_accept_cb accept_cb;   /* listeners */
    sk_connect_cb connect_cb; /* connections */
  } cb;
  sk_recv_cb recv_cb;
  sk_drain_cb drain_cb;
  struct sk__wq wq;
  /* While a held request passes through the transport (stream.c,
   * tp_pass): where the transport's output goes, ahead of what is still
   * held. NULL otherwise. */
  struct sk__wreq **tp_out;
  struct sk__sextra *x;
  /* What carries the user's bytes on the socket (plain, TLS) and its state. */
  const struct sk__transport *tp;
  void *tpdata;
  unsigned pauses; /* sk_stream_recv_pause() calls not yet resumed */
  int wstatus;     /* error that failed the write side */
};

/* Initialises a stream handle with no socket yet. */
SK_EXTERN int sk_stream_init(sk_loop *loop, sk_stream *s);

/* Adopts a connected or listening descriptor (made non-blocking and
 * close-on-exec). The stream owns it from now on. */
SK_EXTERN int sk_stream_open(sk_stream *s, int fd);

/* Like sk_stream_open() for a descriptor exactly as an accept callback
 * delivered it (already non-blocking and close-on-exec, connected, of the
 * listener's family): skips the system calls sk_stream_open() spends
 * finding that out, which matters when accepting thousands per second. */
SK_EXTERN int sk_stream_open_accepted(sk_stream *s, int fd, int family);

/* Flags for sk_stream_listen(). */
enum {
  SK_LISTEN_REUSEPORT = 1u << 0, /* SO_REUSEPORT: several listeners share */
  SK_LISTEN_V6ONLY = 1u << 1,    /* [::] takes IPv6 only */
  SK_LISTEN_DUALSTACK = 1u << 2, /* [::] takes IPv4 too */
};

/* Creates a socket, binds it to ep (SO_REUSEADDR on for TCP) and listens.
 * backlog <= 0 = SOMAXCONN. Accepting starts with sk_stream_accept_start().
 * The bound address (with the real port) is sk_socket_local(&s->sock). */
SK_EXTERN int sk_stream_listen(sk_stream *s, const sk_endpoint *ep, int backlog,
                               unsigned flags);

/* Starts accepting continuously on a listening stream. Up to 64 connections
 * are accepted per readiness event so others get their turn. */
SK_EXTERN int sk_stream_accept_start(sk_stream *s, sk_accept_cb cb);
/* Stops accepting; the accept callback runs once with -ECANCELED. */
SK_EXTERN int sk_stream_accept_stop(sk_stream *s);

/* Most endpoints sk_stream_connect() tries; later ones are ignored. */
#define SK_STREAM_CONNECT_MAX 32

/* Connects to eps[0..n-1] (the first SK_STREAM_CONNECT_MAX of them) in turn
 * until one succeeds, within timeout_ms in total (-1 = no timeout). The
 * stream must not be open yet. cb runs once. */
SK_EXTERN int sk_stream_connect(sk_stream *s, const sk_endpoint *eps, size_t n,
                                int timeout_ms, sk_connect_cb cb);
/* Cancels a pending connect: cb runs with -ECANCELED. */
SK_EXTERN int sk_stream_connect_cancel(sk_stream *s);

/* Sends len bytes (see the top of this file). cb may be NULL. Returns 0, or
 * a negative errno if the stream cannot send (closed, shut down, or already
 * failed), in which case nothing was sent. A send taken (0) that fails
 * later reports through cb; once the write side failed, every later send
 * returns the same negative errno. */
SK_EXTERN int sk_stream_send(sk_stream *s, const void *buf, size_t len,
                             sk_send_cb cb, void *arg);

/* Gathers several buffers into one ordered send. */
struct iovec;
SK_EXTERN int sk_stream_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                              sk_send_cb cb, void *arg);

/* Queues len bytes of file fd from offset, written with sendfile(2) in
 * order with the other sends. fd must stay open until cb runs. A file
 * shorter than len ends the send with SK_EOF and fails the stream's write
 * side with -EIO (the peer misses bytes). Over TLS
 * the library reads the file in 16 KiB chunks as the send reaches the head
 * of the queue and encrypts them, one chunk in memory at a time; sends and
 * a shutdown made meanwhile follow the file, in order. */
SK_EXTERN int sk_stream_sendfile(sk_stream *s, int fd, off_t offset, size_t len,
                                 sk_send_cb cb, void *arg);

/* Sends one byte of urgent (out-of-band) data, TCP's MSG_OOB, in order with
 * the other sends: the peer reads it with sk_socket_recv_flags(...,
 * SK_MSG_OOB, ...) or sees it inline with SO_OOBINLINE. TCP carries one
 * urgent byte at a time; a later one replaces an unread earlier one.
 * Returns 0, -ENOTSUP over TLS or on a Unix socket, or what sk_stream_send
 * returns. */
SK_EXTERN int sk_stream_send_urgent(sk_stream *s, unsigned char byte,
                                    sk_send_cb cb, void *arg);

/* Cancels a queued send, found by the callback and argument it was started
 * with (the first still queued if several match): its callback runs with
 * -ECANCELED, none of its bytes are sent, and the stream stays usable; the
 * sends before and after it go out as if it had never been made. Returns
 * 0, or says why it cannot:
 *   -ENOENT   no such send is queued: it completed (its callback reports
 *             the result) or it went to the kernel at once (every send with
 *             a callback that the kernel took whole is no longer queued);
 *   -EBUSY    part of it is in the kernel already: cancelling the rest
 *             would cut a message in two (sk_stream_abort() ends the
 *             stream instead, if that is what you want);
 *   -ENOTSUP  over TLS, where queued bytes are records already sealed in
 *             sequence;
 *   -EINVAL   cb is NULL (a send without a callback cannot be named).
 * A queued shutdown cannot be cancelled. Closing the stream cancels every
 * queued send (-ECANCELED); a shutdown queued after a cancelled send still
 * goes out after the sends that remain. */
SK_EXTERN int sk_stream_send_cancel(sk_stream *s, sk_send_cb cb, void *arg);

/* Bytes waiting in the write queue (not yet taken by the kernel). */
SK_EXTERN size_t sk_stream_write_queue_size(const sk_stream *s);

/* Bytes of memory the write queue holds: the queued payload plus every
 * request's allocation and bookkeeping. Small sends without a callback are
 * appended to the last queued buffer, so many tiny sends cost about their
 * payload; each send with a callback costs at least one request (a few
 * KiB). Cap this, not sk_stream_write_queue_size(), to bound memory per
 * connection against a peer that sends many small messages and never
 * reads. */
SK_EXTERN size_t sk_stream_write_queue_memory(const sk_stream *s);

/* cb runs each time the loop empties the write queue (from readiness; not
 * when a send, a cancel or a close inside an API call leaves it empty,
 * since callbacks never run inside the call): by writing it, or because a
 * write failed and the queue was dropped; then sends return the error, and
 * a reader paused for back-pressure that resumes sees the broken
 * connection (a paused stream watches nothing, so without this it would
 * never learn). NULL turns it off. */
SK_EXTERN void sk_stream_on_drain(sk_stream *s, sk_drain_cb cb);

/* Half-closes the sending side once every queued byte was written. cb (may
 * be NULL) runs once the FIN was sent, or with an error. */
SK_EXTERN int sk_stream_shutdown(sk_stream *s, sk_send_cb cb, void *arg);

/* Starts receiving continuously. If receiving was stopped and the
 * -ECANCELED of that stop has not run yet, it is dropped: the new callback
 * never sees the end of the old operation. */
SK_EXTERN int sk_stream_recv_start(sk_stream *s, sk_recv_cb cb);
/* Cancels receiving (or a waiting sk_stream_peek): the callback runs once
 * with -ECANCELED. */
SK_EXTERN int sk_stream_recv_stop(sk_stream *s);

/* A deadline for receiving, like ReceiveAsync with a timeout: when no data
 * reaches the recv callback for timeout_ms while receiving (time spent
 * paused does not count), receiving ends with -ETIMEDOUT in the callback.
 * The stream stays open and usable: send, shut down, or start receiving
 * again (the clock starts over). Every delivery restarts the clock. The
 * setting stays until changed; -1 removes it; 0 or below -1 is -EINVAL.
 * Closing the stream stops the clock (no -ETIMEDOUT after sk_close). */
SK_EXTERN int sk_stream_recv_timeout(sk_stream *s, int timeout_ms);

/* One-shot look at the data waiting, without taking it (MSG_PEEK): cb runs
 * once with what has arrived (at least one byte, at most the loop's 64 KiB
 * read buffer; buf valid during the call), SK_EOF, a negative errno, or
 * -ECANCELED after sk_stream_recv_stop() or sk_close(). The bytes stay in
 * the kernel for sk_stream_recv_start() or a TLS handshake: this is how a
 * server tells a TLS ClientHello (first byte 0x16) from plaintext on one
 * port. -EBUSY while receiving or peeking, -ENOTSUP over TLS. */
SK_EXTERN int sk_stream_peek(sk_stream *s, sk_recv_cb cb);
/* Pauses and resumes delivery without ending the operation (back-pressure:
 * the kernel buffer fills and TCP flow control slows the peer). Pauses are
 * counted, so several owners can each hold one: every sk_stream_recv_pause()
 * needs its own sk_stream_recv_resume(), and delivery resumes when the last
 * is released. A resume without a pause is ignored; the count survives
 * sk_stream_recv_stop() / sk_stream_recv_start(). */
SK_EXTERN void sk_stream_recv_pause(sk_stream *s);
SK_EXTERN void sk_stream_recv_resume(sk_stream *s);
SK_EXTERN int sk_stream_is_receiving(const sk_stream *s);

/* Closes with a reset (RST) instead of a FIN: queued sends are dropped
 * (their callbacks get -ECANCELED). Then behaves like sk_close(). */
SK_EXTERN void sk_stream_abort(sk_stream *s, sk_close_cb cb);

/* Note on sk_close() for a stream: pending sends are cancelled, unread data
 * already in the kernel is drained (so the peer is not reset for it), and
 * the descriptor is closed. For a FIN only after your data is out, call
 * sk_stream_shutdown() and close in its callback, or once SK_EOF arrives. */

#ifdef __cplusplus
}
#endif

#endif
