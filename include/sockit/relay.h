/* Relaying two connected streams into each other, both directions, until
 * both have ended: what a TCP proxy, a TLS terminator (stunnel) or a
 * socket bridge (socat) does with each connection pair.
 *
 * Bytes read from one stream are sent on the other as they arrive. When
 * both streams are plain (no TLS or other transport on either), the relay
 * moves them with splice(2) through a pipe per direction, so they never
 * enter user space; otherwise it reads and sends through the streams'
 * transports. Either way:
 *  - back-pressure: at most max_queue bytes per direction are read from a
 *    stream and not yet written to the other; reading from a stream stops
 *    while the other side's queue (or pipe) holds that much;
 *  - half-close: the end of one stream (FIN, or TLS close_notify then FIN;
 *    with SK_RELAY_TRUNCATION_AS_EOF also a TLS FIN without close_notify)
 *    becomes sk_stream_shutdown() of the other once everything read before
 *    it has been written; the other direction keeps flowing;
 *  - errors: a read or write error on either stream (a reset: -ECONNRESET,
 *    -EPIPE) ends the relay at once with that error. The relay does not
 *    close the streams: the caller closes both, and to pass a reset on it
 *    closes the other with sk_stream_abort().
 *
 * The relay owns both streams' receiving and their drain callbacks while
 * it runs (and, when splicing, their sockets: do not send on them then;
 * the caller's own sk_stream_recv_pause() holds while copying, but a
 * splicing relay reads the sockets itself and does not see it: to hold a
 * spliced direction, stop the relay, or use SK_RELAY_NO_SPLICE).
 * A TCP urgent byte (MSG_OOB) is skipped, as by any reader without
 * SO_OOBINLINE: the bytes around it are relayed, it is not.
 * Data a stream's transport already holds (e.g. decrypted TLS bytes, or
 * the bytes that came with a PROXY header: those are sent on at the start,
 * and the stream still counts as plain for splicing) and sends queued on
 * either stream before the relay starts (e.g. a PROXY header) go first,
 * in order. Start it once a TLS stream's handshake has
 * succeeded: sends before that fail, and a failed send ends the relay.
 * Closing either stream while the relay runs stops it (no callback).
 * Idle timeouts are the caller's (a timer, the counters, sk_relay_stop and
 * close): remove a stream's receive deadline (sk_stream_recv_timeout -1)
 * before the start, since it would end a copying relay with -ETIMEDOUT
 * and does not run while splicing.
 *
 * Costs: splicing holds two pipes (four descriptors) and at most
 * min(max_queue, 64 KiB) bytes per direction in each pipe, in the kernel;
 * copying holds at most max_queue plus one read (64 KiB) per direction in
 * the streams' write queues, and no descriptor. */
#ifndef SOCKIT_RELAY_H
#define SOCKIT_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_relay sk_relay;

/* Both directions have ended (status 0: each stream's end was passed on
 * and everything read was written), or one failed (status: that negative
 * error; r->failed says which stream). Called once, from the loop; the
 * relay is stopped and the caller may free r or close the streams. */
typedef void (*sk_relay_cb)(sk_relay *r, int status);

enum {
  /* Never splice, even between two plain streams (for measuring, and for
   * streams whose descriptors splice(2) refuses). */
  SK_RELAY_NO_SPLICE = 1u << 0,
  /* A TLS source whose connection ends without close_notify (its stream
   * reports SK_ETLSTRUNCATED, after all the data it sent) ends that
   * direction as a FIN would: the shutdown is passed on after the bytes
   * before it, and the other direction keeps flowing. Without the flag it
   * is an error that ends the relay (status SK_ETLSTRUNCATED, failed that
   * stream). Many TLS peers end sessions that way (see sk_stream_tls_start
   * in tls.h); a relay that must not vouch for the completeness of what it
   * passed on leaves the flag off. */
  SK_RELAY_TRUNCATION_AS_EOF = 1u << 1,
};

typedef struct sk_relay_options {
  /* Bytes per direction read and not yet written: 0 selects
   * SK_RELAY_DEFAULT_QUEUE. With splice, no more than this is asked of
   * splice(2), and the pipe, whose kernel default is 64 KiB, is shrunk
   * (never grown) to it when it is smaller: an unprivileged user's pipes
   * share /proc/sys/fs/pipe-user-pages-soft (64 MiB), so growing them
   * would shrink every later pipe of a busy server. The pipe is then the
   * bound, and a failure to shrink it is harmless. */
  size_t max_queue;
  unsigned flags; /* SK_RELAY_* */
} sk_relay_options;

#define SK_RELAY_DEFAULT_QUEUE (256u * 1024u)

/* One direction: the bytes moved, and whether its end was passed on. */
typedef struct sk_relay_dir {
  /* Read from the source and written to the other stream (copying:
   * handed to it with sk_stream_send, which writes or queues them). */
  uint64_t bytes;
  int ended; /* 1 once the source's end was passed on as a shutdown */
} sk_relay_dir;

struct sk_relay {
  /* read-only */
  sk_stream *a, *b;
  sk_relay_dir a_to_b, b_to_a;
  sk_stream *failed; /* the stream whose error ended the relay, or NULL */
  int spliced;       /* 1 if bytes move with splice(2) */
  void *data;        /* the caller's */
  /* private */
  sk_relay_cb cb;
  sk_relay_options opt;
  unsigned rflags;
  int pipes[2][2]; /* splice: a->b, b->a pipes (read end, write end) */
  size_t inpipe[2];
  int status;
  struct sk__pending pend; /* cb, from the loop */
};

/* Starts relaying a and b (both connected, on the same loop, neither
 * receiving nor closing). opt may be NULL for the defaults. r->data is
 * kept; the rest of r is set here: to reuse an r whose cb has not run yet,
 * call sk_relay_stop(r) first. Returns 0, or -EINVAL (same stream
 * twice, different loops, NULL), -EBUSY (a stream is receiving or peeking,
 * or a relay owns it: also an ended one whose cb has not run yet),
 * -ENOTCONN, -EBADF (closing, or not open), -EMFILE/-ENFILE (no descriptors for
 * the pipes; retry with SK_RELAY_NO_SPLICE). On an error the streams are left
 * as they were and cb will not run. */
SK_EXTERN int sk_relay_start(sk_relay *r, sk_stream *a, sk_stream *b,
                             const sk_relay_options *opt, sk_relay_cb cb);

/* Stops relaying (cb is not called, also when the relay has ended and cb
 * is due but has not run): both streams stop receiving and are the
 * caller's again. Bytes read and not yet written are dropped, so a stopped
 * relay is for closing the pair (e.g. at a server's stop or an idle
 * timeout). Closing either stream before cb ran does the same. Safe to
 * call after cb and on a relay never started (zeroed). */
SK_EXTERN void sk_relay_stop(sk_relay *r);

#ifdef __cplusplus
}
#endif

#endif
