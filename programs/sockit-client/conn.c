/* The connection the stream modes run over: a socket, with TLS on it when
 * --tls (struct client_conn). send.c drives it with calls that wait; the
 * pump (pump.c) with calls that never wait, the same for plain and TLS:
 * they return -EAGAIN with the poll() events to wait for, and
 * client_conn_pending() says when TLS holds decrypted bytes that the
 * descriptor does not show. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

/* Largest plaintext of one TLS record: the most a gathered send copies. */
#define STAGE_MAX 16384u

void client_conn_open(struct client_conn *c, const struct client_opts *o) {
  const char *servername = NULL;
  sk_tls_ctx *ctx = NULL;

  memset(c, 0, sizeof *c);
  c->use_tls = o->tls;
  /* The context first: a bad --ca or --cert is reported before anything
   * goes on the network. */
  if (o->tls)
    ctx = client_tls_ctx(o, &servername);
  client_connect(&c->sock, o, SOCK_STREAM);
  if (!o->tls)
    return;
  int rc = sk_tls_connect(&c->tls, &c->sock, ctx, servername, o->timeout_ms);
  /* The session keeps its own reference. */
  sk_tls_ctx_free(ctx);
  if (rc < 0)
    client_fail_handshake(o, rc);
  const char *version = sk_tls_version(&c->tls);
  const char *cipher = sk_tls_cipher(&c->tls);
  log_info("TLS: %s, %s", version != NULL ? version : "?",
           cipher != NULL ? cipher : "?");
}

int client_conn_send(struct client_conn *c, const void *buf, size_t len,
                     int timeout_ms) {
  if (c->use_tls)
    return sk_tls_send(&c->tls, buf, len, timeout_ms);
  return sk_socket_send(&c->sock, buf, len, timeout_ms);
}

ssize_t client_conn_recv(struct client_conn *c, void *buf, size_t len,
                         int timeout_ms) {
  if (c->use_tls)
    return sk_tls_recv(&c->tls, buf, len, timeout_ms);
  return sk_socket_recv(&c->sock, buf, len, timeout_ms);
}

void client_conn_explain_send_failure(struct client_conn *c,
                                      const struct client_opts *o) {
  unsigned char buf[256];
  if (!c->use_tls)
    return;
  for (int i = 0; i < 16; i++) {
    ssize_t n = client_conn_recv(c, buf, sizeof buf, 200);
    if (n <= 0) {
      if (n < 0)
        client_fail_tls(o, (int)n);
      return;
    }
  }
}

/* The step API's SK_POLL_* as poll() events. */
static short poll_events(int ev) {
  return (short)((ev & SK_POLL_READ ? POLLIN : 0) |
                 (ev & SK_POLL_WRITE ? POLLOUT : 0));
}

ssize_t client_conn_sendv_now(struct client_conn *c, const struct iovec *iov,
                              int n, short *events) {
  if (!c->use_tls) {
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)n;
    ssize_t r;
    do
      r = sendmsg(c->sock.fd, &m, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
      return r;
    *events = POLLOUT;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
  /* SSL takes one buffer: several pieces (a frame's header, payload and
   * trailer) are gathered into one record's worth first, so a frame does
   * not cost three records. After -EAGAIN the caller offers the same
   * pieces again, which gathers the same bytes, as SSL requires. */
  const void *buf = iov[0].iov_base;
  size_t len = iov[0].iov_len;
  if (n > 1) {
    if (c->stage == NULL && (c->stage = malloc(STAGE_MAX)) == NULL)
      client_fail("out of memory");
    len = 0;
    for (int i = 0; i < n && len < STAGE_MAX; i++) {
      size_t k =
          iov[i].iov_len < STAGE_MAX - len ? iov[i].iov_len : STAGE_MAX - len;
      memcpy(c->stage + len, iov[i].iov_base, k);
      len += k;
    }
    buf = c->stage;
  }
  int ev = 0;
  ssize_t r = sk_tls_send_step(&c->tls, buf, len, &ev);
  *events = poll_events(ev);
  return r;
}

ssize_t client_conn_recv_now(struct client_conn *c, void *buf, size_t len,
                             short *events) {
  if (!c->use_tls) {
    ssize_t r;
    do
      r = recv(c->sock.fd, buf, len, 0);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
      return r;
    *events = POLLIN;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
  int ev = 0;
  ssize_t r = sk_tls_recv_step(&c->tls, buf, len, &ev);
  *events = poll_events(ev);
  return r;
}

size_t client_conn_pending(const struct client_conn *c) {
  return c->use_tls ? sk_tls_pending(&c->tls) : 0;
}

int client_conn_shutdown_now(struct client_conn *c, short *events) {
  *events = POLLOUT;
  if (!c->use_tls)
    return sk_socket_shutdown(&c->sock, SK_SHUT_WR);
  /* close_notify, then FIN; the session stays readable. */
  int ev = 0;
  int rc = sk_tls_shutdown_step(&c->tls, &ev);
  *events = poll_events(ev);
  return rc;
}

int client_conn_close(struct client_conn *c, int timeout_ms) {
  int rc = c->use_tls ? sk_tls_close(&c->tls, timeout_ms)
                      : sk_socket_close(&c->sock, timeout_ms);
  free(c->stage);
  c->stage = NULL;
  return rc;
}

void client_conn_abort(struct client_conn *c) {
  if (c->use_tls)
    sk_tls_free(&c->tls);
  sk_socket_abort(&c->sock);
  free(c->stage);
  c->stage = NULL;
}
