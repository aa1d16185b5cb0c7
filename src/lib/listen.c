/* Listening helpers: N listeners on one port, and draining a listener's
 * queue before it closes (include/sockit/listen.h). Built on the public
 * socket, stream and UDP calls (and the socket flags every bind uses, and
 * the undoing of a bind when a group fails part way). */
#include "sockit/listen.h"

#include <errno.h>
#include <sys/socket.h>

#include "internal.h"
#include "sockit/socket.h"

/* Tries at most this many free ports for port 0 when another process takes
 * the one found between the probe and the bind. */
#define GROUP_PORT_TRIES 8

/* One member of a group: a stream listener or a UDP socket. */
struct group {
  int type; /* SOCK_STREAM or SOCK_DGRAM */
  sk_stream *const *s;
  sk_udp *const *u;
  int backlog;
};

static sk_socket *member_sock(const struct group *g, size_t i) {
  return g->type == SOCK_STREAM ? &g->s[i]->sock : &g->u[i]->sock;
}

/* Closes the first n members again (this call bound them, and they have
 * done nothing since): a failed group leaves nothing open. */
static void members_unbind(const struct group *g, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (g->type == SOCK_STREAM)
      sk__stream_unlisten(g->s[i]);
    else
      sk__udp_unbind(g->u[i]);
  }
}

static int member_bind(const struct group *g, size_t i, const sk_endpoint *ep,
                       unsigned flags) {
  if (g->type == SOCK_STREAM)
    return sk_stream_listen(g->s[i], ep, g->backlog, flags);
  return sk_udp_bind(g->u[i], ep, flags);
}

/* A plain bind (no SO_REUSEPORT; SO_REUSEADDR for streams, as listeners
 * have) of a throwaway socket, opened with the members' flags, to ep: fails
 * with -EADDRINUSE if anyone holds the port. *port gets the port bound (the
 * one the kernel chose for port 0). */
static int probe_bind(int type, const sk_endpoint *ep, unsigned flags,
                      uint16_t *port) {
  sk_socket probe;
  sk_endpoint local;
  int rc = sk_socket_open(&probe, sk_endpoint_family(ep), type,
                          sk__listen_sock_flags(flags));
  if (rc < 0)
    return rc;
  if (type == SOCK_STREAM)
    (void)sk_opt_set_reuseaddr(&probe, 1);
  rc = sk_socket_bind(&probe, ep);
  if (rc == 0 && (rc = sk_socket_local(&probe, &local)) == 0)
    *port = sk_endpoint_port(&local);
  (void)sk_socket_abort(&probe);
  return rc;
}

static int group_bind(const struct group *g, size_t n, const sk_endpoint *ep,
                      unsigned flags) {
  sk_endpoint at;
  sk_endpoint local;
  uint16_t port = 0;
  int rc;

  if (n == 0 || ep == NULL)
    return -EINVAL;
  if (n > 1)
    flags |= SK_LISTEN_REUSEPORT;
  at = *ep;
  if (!(flags & SK_LISTEN_REUSEPORT)) {
    rc = member_bind(g, 0, &at, flags);
  } else if (sk_endpoint_port(ep) != 0) {
    /* SO_REUSEPORT would quietly share a port someone else holds. */
    rc = probe_bind(g->type, ep, flags, &port);
    if (rc != -EADDRINUSE) /* any other failure: the bind says it */
      rc = member_bind(g, 0, &at, flags);
  } else {
    /* Port 0 with SO_REUSEPORT: the kernel may hand out a port another
     * SO_REUSEPORT socket holds. A plain bind finds one nobody holds; it
     * can be taken before ours, so try again then. */
    for (int tries = 0;; tries++) {
      rc = probe_bind(g->type, ep, flags, &port);
      if (rc < 0)
        break;
      sk_endpoint_set_port(&at, port);
      rc = member_bind(g, 0, &at, flags);
      if (rc != -EADDRINUSE || tries + 1 == GROUP_PORT_TRIES)
        break;
    }
  }
  if (rc < 0)
    return rc;
  rc = sk_socket_local(member_sock(g, 0), &local);
  if (rc < 0) {
    members_unbind(g, 1);
    return rc;
  }
  sk_endpoint_set_port(&at, sk_endpoint_port(&local));
  for (size_t i = 1; i < n; i++) {
    rc = member_bind(g, i, &at, flags);
    if (rc < 0) {
      members_unbind(g, i);
      return rc;
    }
  }
  return 0;
}

int sk_stream_listen_group(sk_stream *const *s, size_t n, const sk_endpoint *ep,
                           int backlog, unsigned flags) {
  struct group g = {SOCK_STREAM, s, NULL, backlog};
  if (s == NULL)
    return -EINVAL;
  return group_bind(&g, n, ep, flags);
}

int sk_udp_bind_group(sk_udp *const *u, size_t n, const sk_endpoint *ep,
                      unsigned flags) {
  struct group g = {SOCK_DGRAM, NULL, u, 0};
  if (u == NULL)
    return -EINVAL;
  return group_bind(&g, n, ep, flags);
}

int sk_stream_accept_queued(sk_stream *l, sk_accept_cb cb, size_t max) {
  size_t taken = 0;
  if (l == NULL || cb == NULL)
    return -EINVAL;
  while (taken < max) {
    sk_socket client;
    sk_endpoint peer;
    /* A zero timeout: what waits now, nothing that comes later. */
    int rc = sk_socket_accept(&l->sock, &client, &peer, 0);
    if (rc == -ETIMEDOUT)
      break;
    if (rc < 0)
      return taken > 0 ? (int)taken : rc;
    taken++;
    cb(l, 0, client.fd, &peer);
  }
  return (int)taken;
}
