/* TLS with OpenSSL 3, sync sessions (sk_tls_socket).
 *
 * SSL runs on the socket's descriptor through a small BIO of our own that
 * uses send(MSG_NOSIGNAL) and recv(), so a peer that vanished can never
 * raise SIGPIPE (OpenSSL's own socket BIO uses write()). Every SSL call
 * runs once without waiting (step_op(): the step API returns its -EAGAIN
 * and the events SSL wants); the waiting calls loop over it, waiting for
 * those events with sk_socket_poll() within one deadline.
 */
#include "tls_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

static BIO_METHOD *fbio_method;
static pthread_once_t fbio_once = PTHREAD_ONCE_INIT;

/* The sync session's state; its BIO reads and writes the descriptor. */
struct tls_sync {
  SSL *ssl;
  sk_tls_ctx *ctx;
  int fd;
  int io_err;
  int eof;
  int got_bytes;
  int failed;
  /* The handshake completed. Kept here because SSL_is_init_finished()
   * turns false again after a fatal error (OpenSSL puts its state machine
   * in an error state), which would name every later failure a handshake
   * failure. */
  int hs_done;
  int shutting; /* our close_notify was begun: no more sends */
  int shut;     /* our close_notify went out */
  char alpn[256];
  struct sk__tls_conn conn;
};

static int fbio_read(BIO *b, char *out, int len) {
  struct tls_sync *ts = BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  do
    n = recv(ts->fd, out, (size_t)len, 0);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    ts->got_bytes = 1;
    return (int)n;
  }
  if (n == 0) {
    ts->eof = 1;
    return 0;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    BIO_set_retry_read(b);
    return -1;
  }
  ts->io_err = sk__err();
  return -1;
}

static int fbio_write(BIO *b, const char *in, int len) {
  struct tls_sync *ts = BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  do
    n = send(ts->fd, in, (size_t)len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n >= 0)
    return (int)n;
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    BIO_set_retry_write(b);
    return -1;
  }
  ts->io_err = sk__err();
  return -1;
}

static long fbio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  struct tls_sync *ts = BIO_get_data(b);
  SK__UNUSED(num);
  SK__UNUSED(ptr);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_EOF:
    return ts->eof;
  default:
    return 0;
  }
}

static void fbio_init(void) {
  fbio_method =
      sk__tls_bio_method("sockit socket", fbio_read, fbio_write, fbio_ctrl);
}

/* ---- sync sessions ---- */

enum { OP_HANDSHAKE, OP_READ, OP_WRITE, OP_SHUTDOWN };

static int time_left(uint64_t deadline, int timeout_ms) {
  uint64_t now;
  if (timeout_ms < 0)
    return -1;
  now = sk__now_ms();
  return now >= deadline ? 0 : (int)(deadline - now);
}

static uint64_t deadline_of(int timeout_ms) {
  return sk__now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
}

/* Runs one SSL operation once, without waiting. Returns 0 (count in
 * *done), SK_EOF for a clean close_notify, -EAGAIN with what to wait for
 * in *events (SK_POLL_READ or SK_POLL_WRITE), or a failure code. */
static int step_op(sk_tls_socket *ts, int op, void *buf, size_t len,
                   size_t *done, int *events) {
  struct tls_sync *st = ts->priv;
  int r, e;
  size_t n = 0;
  if (op == OP_WRITE && st->shutting) {
    sk__tls_set_error("the TLS session was shut down (sk_tls_shutdown)");
    return -EPIPE;
  }
  ERR_clear_error();
  st->io_err = 0;
  switch (op) {
  case OP_HANDSHAKE:
    r = SSL_do_handshake(st->ssl);
    break;
  case OP_READ:
    r = SSL_read_ex(st->ssl, buf, len, &n);
    break;
  case OP_WRITE:
    r = SSL_write_ex(st->ssl, buf, len, &n);
    break;
  default:
    r = SSL_shutdown(st->ssl) >= 0 ? 1 : -1;
    break;
  }
  if (r == 1) {
    if (op == OP_HANDSHAKE)
      st->hs_done = 1;
    if (done != NULL)
      *done = n;
    return 0;
  }
  e = SSL_get_error(st->ssl, r);
  if (e == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return SK_EOF;
  }
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    if (events != NULL)
      *events = e == SSL_ERROR_WANT_READ ? SK_POLL_READ : SK_POLL_WRITE;
    return -EAGAIN;
  }
  struct sk__tls_fail fi;
  fi.ctx = st->ctx;
  fi.handshaking = !st->hs_done;
  fi.got_bytes = st->got_bytes;
  fi.io_err = st->io_err;
  st->failed = 1;
  return sk__tls_classify(st->ssl, e, &fi);
}

/* Runs one SSL operation to completion, waiting on the socket for what SSL
 * wants, until the deadline. Returns 0 (count in *done), SK_EOF for a clean
 * close_notify, or a negative code. */
static int sync_op(sk_tls_socket *ts, int op, void *buf, size_t len,
                   size_t *done, uint64_t deadline, int timeout_ms) {
  for (;;) {
    int ev = 0;
    int rc = step_op(ts, op, buf, len, done, &ev);
    if (rc != -EAGAIN)
      return rc;
    rc = sk_socket_poll(ts->sock, ev, time_left(deadline, timeout_ms));
    if (rc < 0)
      return rc;
    if (rc == 0) {
      sk__tls_set_error(op == OP_HANDSHAKE ? "TLS handshake timed out"
                                           : "TLS operation timed out");
      return -ETIMEDOUT;
    }
  }
}

static int sync_start(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                      const char *servername, int server) {
  struct tls_sync *st;
  int rc;

  if (t == NULL || sock == NULL || ctx == NULL || ctx->server != server) {
    sk__tls_set_error(ctx != NULL && ctx->server != server
                          ? "the context is for the other side of connections"
                          : "missing argument");
    return -EINVAL;
  }
  t->sock = sock;
  t->priv = NULL;
  if (sock->fd < 0)
    return -EBADF;
  st = calloc(1, sizeof(*st));
  if (st == NULL)
    return -ENOMEM;
  pthread_once(&fbio_once, fbio_init);
  rc = sk__tls_ssl_with_bio(ctx, servername, &st->conn, fbio_method, st,
                            &st->ssl);
  if (rc != 0) {
    free(st);
    return rc;
  }
  /* Writes may be retried with a moved buffer and may complete in parts:
   * sk_tls_send() loops until everything is out. */
  SSL_set_mode(st->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  st->fd = sock->fd;
  st->ctx = ctx;
  sk__tls_ctx_hold(ctx);
  t->priv = st;
  return 0;
}

/* What a finished handshake (step or whole) returned: a close_notify in
 * the middle of it is a failure; any failure frees the state. */
static int handshake_end(sk_tls_socket *t, int rc) {
  if (rc == SK_EOF) {
    sk__tls_set_error("unexpected close_notify during the TLS handshake");
    rc = SK_ETLS;
  }
  if (rc != 0 && rc != -EAGAIN)
    sk_tls_free(t);
  return rc;
}

static int sync_handshake(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                          const char *servername, int server, int timeout_ms) {
  uint64_t deadline = deadline_of(timeout_ms);
  int rc = sync_start(t, sock, ctx, servername, server);
  if (rc != 0)
    return rc;
  rc = sync_op(t, OP_HANDSHAKE, NULL, 0, NULL, deadline, timeout_ms);
  return handshake_end(t, rc);
}

int sk_tls_connect(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                   const char *servername, int timeout_ms) {
  return sync_handshake(t, sock, ctx, servername, 0, timeout_ms);
}

int sk_tls_accept(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                  int timeout_ms) {
  return sync_handshake(t, sock, ctx, NULL, 1, timeout_ms);
}

int sk_tls_connect_start(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                         const char *servername) {
  return sync_start(t, sock, ctx, servername, 0);
}

int sk_tls_accept_start(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx) {
  return sync_start(t, sock, ctx, NULL, 1);
}

int sk_tls_handshake_step(sk_tls_socket *t, int *events) {
  struct tls_sync *st = t != NULL ? t->priv : NULL;
  if (st == NULL)
    return -ENOTCONN;
  if (st->hs_done)
    return 0;
  return handshake_end(t, step_op(t, OP_HANDSHAKE, NULL, 0, NULL, events));
}

/* The session of t, ready for data: NULL (and the code in *rc) without one
 * or before the handshake is complete. */
static struct tls_sync *data_session(sk_tls_socket *t, int *rc) {
  struct tls_sync *st = t != NULL ? t->priv : NULL;
  *rc = st == NULL ? -ENOTCONN : !st->hs_done ? -EINVAL : 0;
  return *rc == 0 ? st : NULL;
}

/* What a write that met the peer's close_notify returns. */
static int write_rc(int rc) {
  if (rc != SK_EOF)
    return rc;
  sk__tls_set_error("the TLS session was closed");
  return -EPIPE;
}

ssize_t sk_tls_send_step(sk_tls_socket *t, const void *buf, size_t len,
                         int *events) {
  size_t n = 0;
  int rc;
  if (data_session(t, &rc) == NULL)
    return rc;
  if (len == 0)
    return 0;
  if (buf == NULL)
    return -EINVAL;
  rc = write_rc(step_op(t, OP_WRITE, (void *)buf, len, &n, events));
  return rc != 0 ? rc : (ssize_t)n;
}

/* sk_tls_recv() (wait) and sk_tls_recv_step() (no wait, *events). */
static ssize_t recv_op(sk_tls_socket *t, void *buf, size_t len, int wait,
                       int timeout_ms, int *events) {
  uint64_t deadline = deadline_of(timeout_ms);
  size_t n = 0;
  int rc;
  if (data_session(t, &rc) == NULL)
    return rc;
  if (len == 0 || buf == NULL)
    return -EINVAL;
  rc = wait ? sync_op(t, OP_READ, buf, len, &n, deadline, timeout_ms)
            : step_op(t, OP_READ, buf, len, &n, events);
  if (rc == SK_EOF)
    return 0;
  return rc != 0 ? rc : (ssize_t)n;
}

ssize_t sk_tls_recv_step(sk_tls_socket *t, void *buf, size_t len, int *events) {
  return recv_op(t, buf, len, 0, 0, events);
}

size_t sk_tls_pending(const sk_tls_socket *t) {
  struct tls_sync *st = t != NULL ? t->priv : NULL;
  int n = st != NULL ? SSL_pending(st->ssl) : 0;
  return n > 0 ? (size_t)n : 0;
}

int sk_tls_send_all(sk_tls_socket *t, const void *buf, size_t len, size_t *sent,
                    int timeout_ms) {
  uint64_t deadline = deadline_of(timeout_ms);
  const unsigned char *p = buf;
  size_t total = 0;
  int rc = 0;

  if (sent != NULL)
    *sent = 0;
  if (data_session(t, &rc) == NULL)
    return rc;
  if (len > 0 && buf == NULL)
    return -EINVAL;
  while (total < len) {
    size_t n = 0;
    rc = write_rc(sync_op(t, OP_WRITE, (void *)(p + total), len - total, &n,
                          deadline, timeout_ms));
    if (rc != 0)
      break;
    total += n;
  }
  if (sent != NULL)
    *sent = total;
  return rc;
}

int sk_tls_send(sk_tls_socket *t, const void *buf, size_t len, int timeout_ms) {
  return sk_tls_send_all(t, buf, len, NULL, timeout_ms);
}

ssize_t sk_tls_recv(sk_tls_socket *t, void *buf, size_t len, int timeout_ms) {
  return recv_op(t, buf, len, 1, timeout_ms, NULL);
}

/* close_notify, once: within the deadline (wait), or what goes out now
 * (-EAGAIN with *events otherwise). Returns 0 when it is out (or needs no
 * sending), or a negative code. */
static int send_close_notify(sk_tls_socket *t, int wait, uint64_t deadline,
                             int timeout_ms, int *events) {
  struct tls_sync *st = t->priv;
  int rc;
  if (st->failed || !st->hs_done || st->shut)
    return 0;
  st->shutting = 1;
  rc = wait ? sync_op(t, OP_SHUTDOWN, NULL, 0, NULL, deadline, timeout_ms)
            : step_op(t, OP_SHUTDOWN, NULL, 0, NULL, events);
  /* The peer already ended the session cleanly: failing to answer its
   * close_notify (it may be gone) loses nothing. */
  if (rc == SK_EOF ||
      (rc < 0 && (SSL_get_shutdown(st->ssl) & SSL_RECEIVED_SHUTDOWN)))
    rc = 0;
  if (rc == 0)
    st->shut = 1;
  return rc;
}

/* sk_tls_shutdown() (wait) and sk_tls_shutdown_step() (no wait, *events). */
static int shutdown_op(sk_tls_socket *t, int wait, int timeout_ms,
                       int *events) {
  struct tls_sync *st = t != NULL ? t->priv : NULL;
  int rc;
  if (st == NULL)
    return -ENOTCONN;
  if (!st->hs_done)
    return -EINVAL;
  if (st->failed) {
    sk__tls_set_error("the TLS session failed earlier");
    return SK_ETLS;
  }
  if (st->shut)
    return 0;
  rc = send_close_notify(t, wait, deadline_of(timeout_ms), timeout_ms, events);
  if (rc != 0)
    return rc;
  /* A FIN after the close_notify, as sk_stream_shutdown() does. */
  rc = sk_socket_shutdown(t->sock, SK_SHUT_WR);
  return rc == -ENOTCONN ? 0 : rc;
}

int sk_tls_shutdown(sk_tls_socket *t, int timeout_ms) {
  return shutdown_op(t, 1, timeout_ms, NULL);
}

int sk_tls_shutdown_step(sk_tls_socket *t, int *events) {
  return shutdown_op(t, 0, 0, events);
}

int sk_tls_close(sk_tls_socket *t, int timeout_ms) {
  uint64_t deadline = deadline_of(timeout_ms);
  struct tls_sync *st = t != NULL ? t->priv : NULL;
  int rc = 0, crc;

  if (t == NULL)
    return -EINVAL;
  if (st != NULL)
    rc = send_close_notify(t, 1, deadline, timeout_ms, NULL);
  sk_tls_free(t);
  crc = t->sock != NULL
            ? sk_socket_close(t->sock, time_left(deadline, timeout_ms))
            : 0;
  return rc != 0 ? rc : crc;
}

void sk_tls_free(sk_tls_socket *t) {
  struct tls_sync *st = t != NULL ? t->priv : NULL;
  if (st == NULL)
    return;
  t->priv = NULL;
  SSL_free(st->ssl);
  sk_tls_ctx_free(st->ctx);
  free(st);
}

static SSL *sync_ssl(const sk_tls_socket *t) {
  struct tls_sync *st = t != NULL ? t->priv : NULL;
  return st != NULL ? st->ssl : NULL;
}

const char *sk_tls_version(const sk_tls_socket *t) {
  SSL *ssl = sync_ssl(t);
  return ssl != NULL ? SSL_get_version(ssl) : NULL;
}

const char *sk_tls_cipher(const sk_tls_socket *t) {
  SSL *ssl = sync_ssl(t);
  return ssl != NULL ? SSL_get_cipher_name(ssl) : NULL;
}

const char *sk_tls_alpn(const sk_tls_socket *t) {
  SSL *ssl = sync_ssl(t);
  struct tls_sync *st = ssl != NULL ? t->priv : NULL;
  return st != NULL ? sk__tls_alpn_of(ssl, st->alpn) : NULL;
}

int sk_tls_peer_fingerprint(const sk_tls_socket *t, char *buf, size_t len) {
  SSL *ssl = sync_ssl(t);
  if (ssl == NULL)
    return -ENOTCONN;
  return sk__tls_fingerprint(SSL_get0_peer_certificate(ssl), buf, len);
}

int sk_tls_peer_cert(const sk_tls_socket *t, sk_tls_cert *out) {
  SSL *ssl = sync_ssl(t);
  if (ssl == NULL) {
    if (out != NULL)
      memset(out, 0, sizeof(*out));
    return out == NULL ? -EINVAL : -ENOTCONN;
  }
  return sk__tls_cert_decode(SSL_get0_peer_certificate(ssl), out);
}

int sk_tls_resumed(const sk_tls_socket *t) {
  SSL *ssl = sync_ssl(t);
  return ssl != NULL ? SSL_session_reused(ssl) == 1 : -ENOTCONN;
}
