/* TLS for sockit-client: the context every mode shares, the synchronous
 * connection of the send mode, and the "link" the pump runs over.
 *
 * Why the pump does not use the synchronous API (sk_tls_send/sk_tls_recv):
 * a raw stream ends with a half-close, and over TLS that is a close_notify
 * followed by a FIN while the reading side stays open for the rest of the
 * replies. The synchronous API can send close_notify only in sk_tls_close(),
 * which closes the socket too, and its send reports neither how much of a
 * timed-out write went out nor whether it may be retried, which a pump that
 * must never block on one direction needs. The async stream has both: a
 * sk_stream_shutdown() that sends close_notify and keeps receiving, and a
 * write queue that takes everything and says how much is waiting.
 *
 * So the link is an sk_stream with TLS on a loop of its own, and the pump's
 * poll() drives it: the pump watches the descriptor for what the link wants
 * (readable while receiving, writable while ciphertext is queued) and runs
 * the loop once without waiting whenever something may have happened.
 * Plaintext lands in a buffer here, which the pump drains as it does a
 * socket; receiving pauses while that buffer is full, so memory stays
 * bounded and TCP flow control slows the server down. Since decrypted bytes
 * wait here, never unseen inside SSL, "is there something to read?" is a
 * question about this buffer, not about the descriptor. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "cli.h"
#include "log.h"

/* Plaintext buffered for the pump before receiving pauses. */
#define LINK_IN_HIGH (64u * 1024u)
/* Callback rounds one tls_link_run() allows: each round runs what the
 * previous one queued. */
#define LINK_RUN_ROUNDS 8

/* ---- shared ---- */

static int is_tls_error(int err) {
  return err == SK_ETLS || err == SK_ETLSVERIFY || err == SK_ETLSNOTLS ||
         err == SK_ETLSTRUNCATED;
}

int client_tls_truncation_ok(const struct client_opts *o, int err,
                             uint64_t received) {
  return err == SK_ETLSTRUNCATED && !o->tls_strict_close && received > 0;
}

void client_tls_truncation_warn(const struct client_opts *o) {
  log_warn("%s ended the TLS session without close_notify; taking it as "
           "the end of its replies (--tls-strict-close makes this an error)",
           o->addr);
}

const char *client_err_text(int err) {
  const char *why = sk_tls_last_error();
  if (is_tls_error(err) && why[0] != '\0')
    return why;
  return sk_strerror(err);
}

void client_check_file(const char *path, const char *what) {
  int rc = path != NULL ? cli_check_readable(path) : 0;
  if (rc < 0)
    client_fail("TLS: cannot load %s: cannot read %s: %s", what, path,
                sk_strerror(rc));
}

sk_tls_ctx *client_tls_ctx(const struct client_opts *o,
                           const char **servername) {
  static char host[256];
  sk_tls_options to;
  sk_tls_ctx *ctx = NULL;
  uint16_t port;

  /* A file that cannot be opened is named with the reason before the
   * library gets to report it in its own words. */
  client_check_file(o->ca, "CA certificates");
  client_check_file(o->cert, "certificate");
  client_check_file(o->key, "private key");

  memset(&to, 0, sizeof to);
  to.ca_file = o->ca;
  to.cert_file = o->cert;
  to.key_file = o->key;
  to.pin_sha256 = o->pin;
  to.insecure_no_verify = o->insecure;
  /* 0 would mean the library's default; --timeout 0 is "no limit". */
  to.handshake_timeout_ms = o->timeout_ms < 0 ? -1 : o->timeout_ms;
  int rc = sk_tls_ctx_new(&ctx, &to);
  if (rc < 0)
    client_fail("TLS: %s", sk_tls_last_error()[0] != '\0' ? sk_tls_last_error()
                                                          : sk_strerror(rc));
  if (o->insecure)
    log_warn("--insecure: the server's certificate is not checked; anyone "
             "on the path can read and change this connection");
  *servername = NULL;
  if (o->servername != NULL)
    *servername = o->servername;
  else if (strncmp(o->addr, "unix:", 5) != 0 &&
           sk_endpoint_split(o->addr, host, sizeof host, &port) == 0)
    *servername = host;
  return ctx;
}

static void fail_handshake(const struct client_opts *o, int err,
                           const char *why) {
  if (err == -ETIMEDOUT)
    client_fail("TLS handshake with %s timed out (after %s)", o->addr,
                client_timeout_text(o->timeout_ms));
  if (why == NULL || why[0] == '\0')
    why = sk_strerror(err);
  /* A plain echo server answers our ClientHello with itself, which TLS
   * names "unexpected message" rather than "not TLS": say what it most
   * likely means. */
  if (err == SK_ETLS && strcmp(why, "unexpected message") == 0)
    client_fail("TLS handshake with %s failed: unexpected message: the peer "
                "probably does not speak TLS (a plain echo server sends our "
                "ClientHello back)",
                o->addr);
  client_fail("TLS handshake with %s failed: %s", o->addr, why);
}

void client_fail_tls(const struct client_opts *o, int err) {
  /* A verification failure or a peer that is not TLS at all can only
   * come from the handshake, even when it shows up at the first read. */
  if (err == SK_ETLSVERIFY || err == SK_ETLSNOTLS)
    fail_handshake(o, err, client_err_text(err));
}

static void log_session(const char *version, const char *cipher) {
  log_info("TLS: %s, %s", version != NULL ? version : "?",
           cipher != NULL ? cipher : "?");
}

/* ---- the synchronous connection (send.c) ---- */

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
    fail_handshake(o, rc, client_err_text(rc));
  log_session(sk_tls_version(&c->tls), sk_tls_cipher(&c->tls));
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

int client_conn_close(struct client_conn *c, int timeout_ms) {
  if (c->use_tls)
    return sk_tls_close(&c->tls, timeout_ms);
  return sk_socket_close(&c->sock, timeout_ms);
}

void client_conn_abort(struct client_conn *c) {
  if (c->use_tls)
    sk_tls_free(&c->tls);
  sk_socket_abort(&c->sock);
}

/* ---- the pump's link ---- */

struct tls_link {
  sk_loop loop;
  sk_stream s;
  sk_timer timer;
  int hs_done, hs_status;
  int eof;      /* the server's close_notify arrived */
  int err;      /* receiving failed with this code */
  int paused;   /* receiving paused: the buffer below is full */
  int shut;     /* our close_notify and FIN are queued */
  int discard;  /* closing: received bytes are no longer wanted */
  int progress; /* a callback ran during the last loop run */
  int timed_out;
  int closed;
  char why[256]; /* the library's reason for a failure, kept */
  unsigned char *in;
  size_t in_pos, in_len, in_cap;
};

static void link_keep_reason(struct tls_link *l) {
  snprintf(l->why, sizeof l->why, "%s", sk_tls_last_error());
}

static void link_handshake_done(sk_stream *s, int status) {
  struct tls_link *l = s->h.data;
  l->hs_done = 1;
  l->hs_status = status;
  if (status < 0)
    link_keep_reason(l);
}

static void link_store(struct tls_link *l, const void *buf, size_t n) {
  if (l->in_pos > 0 && l->in_len + n > l->in_cap) {
    memmove(l->in, l->in + l->in_pos, l->in_len - l->in_pos);
    l->in_len -= l->in_pos;
    l->in_pos = 0;
  }
  if (l->in_len + n > l->in_cap) {
    size_t cap = l->in_cap ? l->in_cap * 2 : LINK_IN_HIGH + 16384;
    while (cap < l->in_len + n)
      cap *= 2;
    unsigned char *p = realloc(l->in, cap);
    if (p == NULL)
      client_fail("out of memory");
    l->in = p;
    l->in_cap = cap;
  }
  memcpy(l->in + l->in_len, buf, n);
  l->in_len += n;
}

static void link_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct tls_link *l = s->h.data;
  l->progress = 1;
  if (n > 0) {
    if (l->discard)
      return;
    link_store(l, buf, (size_t)n);
    /* Pausing inside the callback stops delivery at once: the rest stays
     * in SSL and in the kernel until the pump has taken this. */
    if (!l->paused && l->in_len - l->in_pos >= LINK_IN_HIGH) {
      sk_stream_recv_pause(s);
      l->paused = 1;
    }
    return;
  }
  if (n == SK_EOF) {
    l->eof = 1;
    return;
  }
  if (n == -ECANCELED)
    return;
  l->err = (int)n;
  link_keep_reason(l);
}

static void link_run_loop(struct tls_link *l, sk_run_mode mode) {
  int rc = sk_loop_run(&l->loop, mode);
  if (rc < 0)
    client_fail("event loop: %s", sk_strerror(rc));
}

struct tls_link *tls_link_open(sk_socket *sock, const struct client_opts *o,
                               sk_tls_ctx *ctx, const char *servername) {
  struct tls_link *l = calloc(1, sizeof *l);
  if (l == NULL)
    client_fail("out of memory");
  /* The pump polls the descriptor itself and then lets the loop look at
   * it without waiting, which needs a loop that reports readiness as it
   * is at that moment: epoll, or poll where there is no epoll. */
  int rc = sk_loop_init_backend(&l->loop, "epoll");
  if (rc < 0)
    rc = sk_loop_init_backend(&l->loop, "poll");
  if (rc < 0)
    client_fail("event loop: %s", sk_strerror(rc));
  sk_stream_init(&l->loop, &l->s);
  l->s.h.data = l;
  rc = sk_stream_open(&l->s, sock->fd);
  if (rc < 0)
    client_fail("%s: %s", o->addr, sk_strerror(rc));
  sock->fd = -1; /* the stream owns the descriptor now */
  rc = sk_stream_tls_start(&l->s, ctx, servername, link_handshake_done);
  if (rc < 0)
    fail_handshake(o, rc, client_err_text(rc));
  /* Nothing else to do until the handshake is over; the context's
   * deadline (--timeout) bounds it. */
  while (!l->hs_done)
    link_run_loop(l, SK_RUN_ONCE);
  if (l->hs_status < 0)
    fail_handshake(o, l->hs_status, l->why);
  log_session(sk_stream_tls_version(&l->s), sk_stream_tls_cipher(&l->s));
  rc = sk_stream_recv_start(&l->s, link_recv);
  if (rc < 0)
    client_fail("receive from %s: %s", o->addr, sk_strerror(rc));
  return l;
}

int tls_link_fd(const struct tls_link *l) {
  return l->s.sock.fd;
}

void tls_link_run(struct tls_link *l) {
  for (int i = 0; i < LINK_RUN_ROUNDS; i++) {
    l->progress = 0;
    link_run_loop(l, SK_RUN_NOWAIT);
    if (!l->progress)
      break;
  }
}

short tls_link_events(const struct tls_link *l) {
  short ev = 0;
  if (!l->paused && !l->eof && !l->err)
    ev |= POLLIN;
  if (sk_stream_write_queue_size(&l->s) > 0)
    ev |= POLLOUT;
  return ev;
}

size_t tls_link_queued(const struct tls_link *l) {
  return sk_stream_write_queue_size(&l->s);
}

int tls_link_sendv(struct tls_link *l, const struct iovec *iov, int n) {
  int rc = sk_stream_sendv(&l->s, iov, n, NULL, NULL);
  if (rc < 0 && l->why[0] == '\0')
    link_keep_reason(l);
  return rc;
}

size_t tls_link_take(struct tls_link *l, void *buf, size_t len) {
  size_t have = l->in_len - l->in_pos;
  size_t n = have < len ? have : len;
  if (n == 0)
    return 0;
  memcpy(buf, l->in + l->in_pos, n);
  l->in_pos += n;
  if (l->in_pos == l->in_len)
    l->in_pos = l->in_len = 0;
  if (l->paused && l->in_len - l->in_pos < LINK_IN_HIGH / 2) {
    l->paused = 0;
    sk_stream_recv_resume(&l->s);
    /* What SSL kept while paused is delivered by the loop, not by any
     * readiness of the descriptor: let it run now. */
    tls_link_run(l);
  }
  return n;
}

int tls_link_ready(const struct tls_link *l) {
  return l->in_len > l->in_pos || l->eof || l->err != 0;
}

int tls_link_status(const struct tls_link *l) {
  if (l->err != 0)
    return l->err;
  return l->eof ? 1 : 0;
}

const char *tls_link_error(const struct tls_link *l) {
  return l->why[0] != '\0' ? l->why : NULL;
}

int tls_link_shutdown(struct tls_link *l) {
  if (l->shut)
    return 0;
  l->shut = 1;
  return sk_stream_shutdown(&l->s, NULL, NULL);
}

static void link_timer(sk_timer *t) {
  struct tls_link *l = t->h.data;
  l->timed_out = 1;
}

static void link_closed(sk_handle *h) {
  struct tls_link *l = h->data;
  l->closed = 1;
}

void tls_link_close(struct tls_link *l, int wait_ms) {
  /* A server reads our close_notify as the end of a complete session; a
   * bare FIN would look like a cut connection to it. */
  if (!l->shut && !l->err && tls_link_shutdown(l) < 0)
    wait_ms = 0;
  l->discard = 1;
  if (l->paused) {
    l->paused = 0;
    sk_stream_recv_resume(&l->s);
  }
  sk_timer_init(&l->loop, &l->timer);
  l->timer.h.data = l;
  if (wait_ms > 0 && !l->eof && !l->err) {
    sk_timer_start(&l->timer, link_timer, (uint64_t)wait_ms, 0);
    while (!l->eof && !l->err && !l->timed_out)
      link_run_loop(l, SK_RUN_ONCE);
  } else {
    /* Give the close_notify its chance to leave before the close. */
    tls_link_run(l);
  }
  sk_close(&l->timer.h, NULL);
  sk_close(&l->s.h, link_closed);
  while (!l->closed)
    link_run_loop(l, SK_RUN_ONCE);
  link_run_loop(l, SK_RUN_DEFAULT);
  if (sk_loop_free(&l->loop) < 0)
    log_debug("TLS link: handles left open at exit");
  free(l->in);
  free(l);
}
