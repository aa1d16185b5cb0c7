/* Async datagrams (UDP over IPv4/IPv6, Unix datagram sockets) on a loop.
 *
 * Sends are attempted at once; a datagram the kernel cannot take right now
 * (EAGAIN) is copied into a bounded queue and sent when the socket is
 * writable. Receiving is continuous, into the loop's shared buffer; a
 * datagram larger than that buffer (64 KiB, the largest UDP payload) cannot
 * occur for UDP, and truncation is reported in the flags all the same.
 */
#ifndef SOCKIT_UDP_H
#define SOCKIT_UDP_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "endpoint.h"
#include "loop.h"
#include "socket.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_udp sk_udp;
struct sk__udp_held;

enum {
  SK_UDP_TRUNCATED = 1u << 0, /* the datagram was longer than delivered */
};

/* A datagram arrived (nread >= 0; zero-length datagrams are delivered), or
 * receiving ended (nread < 0: -ECANCELED, or a negative errno). from is the
 * normalised sender; to is the local destination address when pktinfo is on
 * (sk_opt_set_pktinfo), else NULL. buf is valid only during the call.
 * ICMP errors for earlier sends (-ECONNREFUSED on a connected socket) are
 * reported with nread < 0 but do not end receiving. */
typedef void (*sk_udp_recv_cb)(sk_udp *u, ssize_t nread, const void *buf,
                               const sk_endpoint *from, const sk_endpoint *to,
                               unsigned flags);

/* A send finished: 0, or a negative errno (-ECANCELED when closed first). */
typedef void (*sk_udp_send_cb)(sk_udp *u, int status, void *arg);

struct sk_udp {
  sk_handle h;
  /* read-only */
  sk_socket sock;
  /* private */
  struct sk__io io;
  unsigned uflags;
  sk_udp_recv_cb recv_cb;
  struct sk__pending rpend; /* recv cancellation */
  int lport;                /* local port, -1 until known */
  struct sk__wq wq;         /* datagrams the kernel did not take at once,
                               and replies gathered in a receive batch */
  size_t wq_max;            /* cap on wq.mem */
  unsigned ndefer;          /* gathered replies in wq (then all of wq) */
  struct sk__pending hpend; /* delivery of held datagrams after a restart */
  struct sk__udp_held *held, *held_tail; /* received, not yet delivered */
};

SK_EXTERN int sk_udp_init(sk_loop *loop, sk_udp *u);

/* Creates a datagram socket of ep's family and binds it (port 0 allowed).
 * flags: SK_LISTEN_REUSEPORT, SK_LISTEN_V6ONLY, SK_LISTEN_DUALSTACK. */
SK_EXTERN int sk_udp_bind(sk_udp *u, const sk_endpoint *ep, unsigned flags);

/* Adopts an existing datagram descriptor. */
SK_EXTERN int sk_udp_open(sk_udp *u, int fd);

/* Sets a default peer (connected UDP): sends may pass dst = NULL, and
 * ICMP port-unreachable shows up as -ECONNREFUSED. */
SK_EXTERN int sk_udp_connect(sk_udp *u, const sk_endpoint *peer);

/* Sends one datagram to dst (NULL on a connected socket). cb may be NULL.
 * Returns 0, -ENOBUFS when the queue of unsent datagrams is over its cap,
 * or a negative errno (-EMSGSIZE, ...), in which case cb is not called.
 * The cap is 1 MiB of memory, counted as each queued datagram's allocation
 * (a few KiB even for a tiny one), so a flood of tiny datagrams cannot
 * cost more than the cap. */
SK_EXTERN int sk_udp_send(sk_udp *u, const void *buf, size_t len,
                          const sk_endpoint *dst, sk_udp_send_cb cb, void *arg);

/* Sends n datagrams (one per dgrams[i]) to dst together: gathered as
 * replies inside a receive callback are, then handed to the kernel with
 * sendmmsg and GSO. Returns how many were accepted (sent, or queued behind
 * datagrams the kernel refused), or the negative errno of sk_udp_send for
 * the first one. No callbacks: a gathered datagram that fails is dropped. */
SK_EXTERN int sk_udp_send_batch(sk_udp *u, const struct iovec *dgrams, size_t n,
                                const sk_endpoint *dst);

SK_EXTERN int sk_udp_recv_start(sk_udp *u, sk_udp_recv_cb cb);
/* Cancels receiving: the callback runs once with -ECANCELED. Receiving
 * started again before that callback ran drops it: the new callback never
 * sees the end of the old operation. */
SK_EXTERN int sk_udp_recv_stop(sk_udp *u);

/* Bytes of datagrams waiting in the send queue. */
SK_EXTERN size_t sk_udp_send_queue_size(const sk_udp *u);

/* Sets the cap on the send queue's memory (default 1 MiB), counted as
 * sk_udp_send() documents. 0 means no queue: a datagram the kernel does
 * not take at once is dropped with -ENOBUFS, so the handle never holds
 * more than its struct (a forwarder's per-client socket). Datagrams
 * already queued stay. */
SK_EXTERN void sk_udp_set_send_queue_max(sk_udp *u, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
