/* Listening helpers for servers: several listeners on one address (one per
 * event loop, sharing the port with SO_REUSEPORT), and taking what the
 * kernel already accepted on a listener before it closes.
 *
 * These are what a multi-loop server otherwise writes with raw socket(2),
 * bind(2) and accept4(2) calls next to the library; here they go through
 * sk_stream, sk_udp and sk_socket like everything else.
 */
#ifndef SOCKIT_LISTEN_H
#define SOCKIT_LISTEN_H

#include <stddef.h>

#include "endpoint.h"
#include "stream.h"
#include "udp.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Binds the n stream listeners s[0..n) (each initialised with
 * sk_stream_init() on its own loop, not open yet) to ep, all on one port,
 * and starts them listening (backlog as in sk_stream_listen()). With n > 1
 * (or SK_LISTEN_REUSEPORT in flags) they share the port with SO_REUSEPORT,
 * and the kernel spreads new connections between them. Unlike a bare
 * SO_REUSEPORT bind, a port someone already holds is not joined. Before
 * the first listener binds, a plain bind (no SO_REUSEPORT) of a throwaway
 * socket opened with the same flags (SK_LISTEN_V6ONLY/DUALSTACK) checks it:
 *   - a port given in ep that another socket holds (even one with
 *     SO_REUSEPORT) fails with -EADDRINUSE;
 *   - port 0 picks a port nobody holds (retried a few times if it is taken
 *     meanwhile), which every listener then binds.
 * What the check cannot see: a socket with SO_REUSEPORT of the same user
 * (the kernel lets only those share) that binds the port between the check
 * and the first listener's bind shares it with the group. The port bound
 * is sk_socket_local(&s[0]->sock). Returns 0, or a negative errno; on
 * failure the listeners this call bound are closed again, so none is left
 * open that was not open before (one the caller had already opened fails
 * the call with -EBUSY and is left as it was); each may be bound again or
 * closed. */
SK_EXTERN int sk_stream_listen_group(sk_stream *const *s, size_t n,
                                     const sk_endpoint *ep, int backlog,
                                     unsigned flags);

/* The same for n UDP sockets (each initialised with sk_udp_init()), bound
 * with sk_udp_bind(); flags as there. */
SK_EXTERN int sk_udp_bind_group(sk_udp *const *u, size_t n,
                                const sk_endpoint *ep, unsigned flags);

/* Accepts, without waiting, up to max connections that the kernel has
 * already queued on the listening stream l, calling cb(l, 0, fd, peer) for
 * each exactly as accepting would (cb owns fd). Accepting need not be
 * started. Meant for a listener about to close: clients already accepted
 * by the kernel get served (or a clean close) instead of the reset that
 * closing the listener would give them. Returns how many were taken (0
 * when none waits), or a negative errno if accepting failed before any was
 * taken (-EMFILE, -EINVAL if l is not listening, ...). */
SK_EXTERN int sk_stream_accept_queued(sk_stream *l, sk_accept_cb cb,
                                      size_t max);

#ifdef __cplusplus
}
#endif

#endif
