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
 *  - half-close: the end of one stream (FIN, or TLS close_notify then FIN)
 *    becomes sk_stream_shutdown() of the other once everything read before
 *    it has been written; the other direction keeps flowing;
 *  - errors: a read or write error on either stream (a reset: -ECONNRESET,
 *    -EPIPE) ends the relay at once with that error. The relay does not
 *    close the streams: the caller closes both, and to pass a reset on it
 *    closes the other with sk_stream_abort().
 *
 * The relay owns both streams' receiving and their drain callbacks while
 * it runs. Data a stream's transport already holds (e.g. decrypted TLS
 * bytes) and sends queued on either stream before the relay starts go
 * first, in order. */
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
};

typedef struct sk_relay_options {
  /* Bytes per direction read and not yet written: 0 selects
   * SK_RELAY_DEFAULT_QUEUE. With splice, the pipe is sized to it (the
   * kernel rounds to pages and caps it at /proc/sys/fs/pipe-max-size). */
  size_t max_queue;
  unsigned flags; /* SK_RELAY_* */
} sk_relay_options;

#define SK_RELAY_DEFAULT_QUEUE (256u * 1024u)

/* One direction: the bytes moved, and whether its end was passed on. */
typedef struct sk_relay_dir {
  uint64_t bytes; /* read from the source and written to the other stream */
  int ended;      /* 1 once the source's end was passed on as a shutdown */
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
  void *priv;
};

/* Starts relaying a and b (both connected, on the same loop, neither
 * receiving nor closing). opt may be NULL for the defaults. Returns 0, or
 * -EINVAL (same stream twice, different loops), -EBUSY (a stream is
 * receiving or peeking), -ENOTCONN, -EBADF (closing), -EMFILE/-ENFILE (no
 * descriptors for the pipes; retry with SK_RELAY_NO_SPLICE). */
SK_EXTERN int sk_relay_start(sk_relay *r, sk_stream *a, sk_stream *b,
                             const sk_relay_options *opt, sk_relay_cb cb);

/* Stops relaying (cb is not called): both streams stop receiving and are
 * the caller's again. Bytes read and not yet written are dropped, so a
 * stopped relay is for closing the pair (e.g. at a server's stop or an
 * idle timeout). Safe to call after cb and on a relay never started
 * (zeroed). */
SK_EXTERN void sk_relay_stop(sk_relay *r);

#ifdef __cplusplus
}
#endif

#endif
