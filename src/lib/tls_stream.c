/* TLS with OpenSSL 3, async: a stream transport (struct sk__transport).
 *
 * The stream stays byte-oriented on ciphertext and this file sits between
 * it and the user. OpenSSL never touches the socket. Its BIO is our own
 * in-memory one: reads are served from a window over the ciphertext the
 * stream just read (the loop's shared buffer, borrowed for the duration of
 * tls_input(); whatever SSL did not consume is copied to a private buffer
 * before returning), and writes append to the loop's transport buffer
 * (loop->tbuf), handed to sk__stream_raw_sendv() after each SSL call, so a
 * send allocates nothing of its own. The private input buffer is freed as
 * soon as it is empty, so an idle TLS connection owns no I/O buffer
 * (SSL_MODE_RELEASE_BUFFERS does the same inside SSL).
 */
#include "tls_internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

/* Plaintext a user send is cut into before encrypting: the ciphertext of one
 * piece is flushed before the next is encrypted, which bounds the output
 * buffer whatever the size of the send. */
#define SEND_PIECE (64 * 1024)
/* Buffers smaller than one record are gathered into one piece (at most a
 * record) so that a framed message (header, payload, trailer) becomes one
 * record, not one each. */
#define GATHER_MAX SK__TLS_RECORD_MAX

/* ---- the async filter ---- */

enum {
  ST_HANDSHAKE, /* handshake running */
  ST_HS_DONE,   /* handshake succeeded, its callback not yet run */
  ST_OPEN,      /* plaintext flows */
  ST_FAILED,    /* handshake failed */
};

struct tls_stream {
  sk_stream *s;
  sk_tls_ctx *ctx;
  SSL *ssl;
  int state;
  int hs_status;
  int hs_owed; /* the handshake callback has not run yet */
  sk_tls_handshake_cb hs_cb;
  struct sk__tnode timer;
  struct sk__pending hs_pend; /* handshake completion */
  struct sk__pending rd_pend; /* delivery of buffered plaintext */
  /* Ciphertext not yet consumed by SSL: in_ptr/in_len is a window over the
   * caller's buffer inside tls_input(), over ibuf otherwise. */
  const unsigned char *in_ptr;
  size_t in_len;
  unsigned char *ibuf;
  size_t ibuf_cap;
  int in_eof;  /* the socket reached EOF or failed (the only record of it) */
  int in_err;  /* its errno (negative) if it failed */
  int bio_eof; /* SSL read that EOF (unexpected: no close_notify before) */
  int got_bytes;
  int read_failed; /* code that ended reading for good, or 0 */
  int write_failed;
  int out_err; /* the output could not be kept (-ENOMEM) */
  /* Closing from a callback must not free what the caller still uses. */
  int busy;
  char err[256]; /* text of the last failure (sk_stream_tls_error) */
  char alpn[256];
  struct sk__tls_conn conn;
};

/* Plaintext from SSL_read, handed to the recv callback. One per thread like
 * the loop's read buffer (callbacks never nest). */
static _Thread_local unsigned char pt_buf[SK__TLS_RECORD_MAX];
/* Small buffers of one send, gathered (tls_sendv; never across a call). */
static _Thread_local unsigned char gather_buf[GATHER_MAX];

static const struct sk__transport tls_transport;

/* The stream was closed: nothing more goes to it or its user (the state
 * lives on while a callback it owes is queued or running). */
static int dead(const struct tls_stream *t) {
  return sk_is_closing(&t->s->h);
}

/* The text of a failure: kept per stream, and published as the thread's
 * sk_tls_last_error() when a callback reports it. */
static void note_error(struct tls_stream *t) {
  memcpy(t->err, sk__tls_errbuf, sizeof(t->err));
}

static void publish_error(const struct tls_stream *t) {
  memcpy(sk__tls_errbuf, t->err, sizeof(sk__tls_errbuf));
}

static BIO_METHOD *abio_method;
static pthread_once_t abio_once = PTHREAD_ONCE_INIT;

static int abio_read(BIO *b, char *out, int len) {
  struct tls_stream *t = BIO_get_data(b);
  size_t n;
  BIO_clear_retry_flags(b);
  if (t->in_len == 0) {
    if (t->in_eof) {
      t->bio_eof = t->in_err == 0;
      return t->in_err != 0 ? -1 : 0;
    }
    BIO_set_retry_read(b);
    return -1;
  }
  n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
  memcpy(out, t->in_ptr, n);
  t->in_ptr += n;
  t->in_len -= n;
  return (int)n;
}

/* Ciphertext goes to the loop's transport buffer: every SSL call is
 * followed by tls_flush() before anything else runs, so the buffer only
 * ever holds the output of one call of one stream. It grows to what one
 * SEND_PIECE makes and stays, one per loop. */
static int abio_write(BIO *b, const char *in, int len) {
  struct tls_stream *t = BIO_get_data(b);
  sk_loop *loop = t->s->h.loop;
  size_t need = loop->tbuf_len + (size_t)len;
  BIO_clear_retry_flags(b);
  if (need > loop->tbuf_cap) {
    size_t cap = loop->tbuf_cap * 2;
    if (cap < need)
      cap = need;
    if (cap < 4096)
      cap = 4096;
    unsigned char *p = realloc(loop->tbuf, cap);
    if (p == NULL) {
      t->out_err = -ENOMEM;
      return -1;
    }
    loop->tbuf = p;
    loop->tbuf_cap = cap;
  }
  memcpy(loop->tbuf + loop->tbuf_len, in, (size_t)len);
  loop->tbuf_len = need;
  return len;
}

static long abio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  struct tls_stream *t = BIO_get_data(b);
  SK__UNUSED(num);
  SK__UNUSED(ptr);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_EOF:
    /* What makes SSL report a cut connection as "unexpected EOF". */
    return t->in_eof && t->in_len == 0 && t->in_err == 0;
  case BIO_CTRL_PENDING:
    return (long)t->in_len;
  case BIO_CTRL_WPENDING:
    return (long)t->s->h.loop->tbuf_len;
  default:
    return 0;
  }
}

static void abio_init(void) {
  abio_method =
      sk__tls_bio_method("sockit stream", abio_read, abio_write, abio_ctrl);
}

static void tls_destroy(struct tls_stream *t) {
  SSL_free(t->ssl);
  sk_tls_ctx_free(t->ctx);
  free(t->ibuf);
  free(t);
}

/* Ends a stretch of work during which user callbacks may have closed the
 * stream. Returns 1 if t was freed. */
static int tls_release(struct tls_stream *t) {
  if (--t->busy == 0 && dead(t) && !t->hs_owed) {
    tls_destroy(t);
    return 1;
  }
  return 0;
}

/* Hands the ciphertext SSL produced to the stream (written at once when
 * the kernel takes it, copied to the write queue otherwise); cb (if any)
 * runs once it is all written. The loop's buffer is empty afterwards,
 * whatever happens, so no byte can reach another stream. Output that could
 * not be kept is a record lost after SSL counted it: the peer would fail
 * every later one (bad_record_mac), so the write side fails for good. */
static int tls_flush(struct tls_stream *t, sk_send_cb cb, void *arg) {
  sk_loop *loop = t->s->h.loop;
  struct iovec v;
  int rc;
  if (dead(t))
    rc = -ECANCELED;
  else if (t->out_err != 0)
    rc = t->out_err;
  else if (loop->tbuf_len == 0 && cb == NULL)
    rc = 0;
  else {
    v.iov_base = loop->tbuf;
    v.iov_len = loop->tbuf_len;
    rc = sk__stream_raw_sendv(t->s, &v, 1, cb, arg);
  }
  if (rc != 0 && (loop->tbuf_len > 0 || t->out_err != 0) && !dead(t)) {
    if (t->write_failed == 0)
      t->write_failed = rc;
    sk__stream_write_fail(t->s, rc, NULL, NULL);
  }
  loop->tbuf_len = 0;
  return rc;
}

/* Keeps what SSL has not consumed of a borrowed window, and frees the
 * private buffer once it is empty. */
static int tls_stash(struct tls_stream *t) {
  if (t->in_len == 0) {
    free(t->ibuf);
    t->ibuf = NULL;
    t->ibuf_cap = 0;
    t->in_ptr = NULL;
    return 0;
  }
  if (t->ibuf != NULL && t->in_ptr >= t->ibuf &&
      t->in_ptr < t->ibuf + t->ibuf_cap)
    return 0;
  unsigned char *p = malloc(t->in_len);
  if (p == NULL)
    return -ENOMEM;
  memcpy(p, t->in_ptr, t->in_len);
  free(t->ibuf);
  t->ibuf = p;
  t->ibuf_cap = t->in_len;
  t->in_ptr = p;
  return 0;
}

/* Appends new ciphertext behind what is still stashed. */
static int tls_append(struct tls_stream *t, const unsigned char *buf,
                      size_t n) {
  size_t keep = t->in_len;
  if (t->in_ptr != t->ibuf)
    memmove(t->ibuf, t->in_ptr, keep);
  if (keep + n > t->ibuf_cap) {
    unsigned char *p = realloc(t->ibuf, keep + n);
    if (p == NULL)
      return -ENOMEM;
    t->ibuf = p;
    t->ibuf_cap = keep + n;
  }
  memcpy(t->ibuf + keep, buf, n);
  t->in_ptr = t->ibuf;
  t->in_len = keep + n;
  return 0;
}

static int tls_fail(struct tls_stream *t, int sslerr) {
  struct sk__tls_fail fi;
  fi.ctx = t->ctx;
  fi.handshaking = t->state == ST_HANDSHAKE;
  fi.got_bytes = t->got_bytes;
  fi.io_err = t->out_err != 0 ? t->out_err : t->in_err;
  int code = sk__tls_classify(t->ssl, sslerr, &fi);
  note_error(t);
  return code;
}

static void hs_done_cb(struct sk__pending *p);

/* The handshake is over: stop its timer and the forced reading, and report
 * from the loop. */
static void hs_finish(struct tls_stream *t, int status) {
  sk_loop *loop = t->s->h.loop;
  sk__tnode_stop(loop, &t->timer);
  t->hs_status = status;
  t->state = status == 0 ? ST_HS_DONE : ST_FAILED;
  /* A FIN without close_notify after the handshake ends reading only
   * (SK_ETLSTRUNCATED, read_pump): without the option SSL would fail the
   * whole session and send a fatal alert, so a peer that half-closed that
   * way could no longer be answered. */
  if (status == 0)
    SSL_set_options(t->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (status != 0) {
    free(t->ibuf);
    t->ibuf = NULL;
    t->ibuf_cap = 0;
    t->in_len = 0;
  }
  sk__stream_update(t->s); /* wants() changed */
  sk__pending_add(loop, &t->hs_pend, hs_done_cb);
}

static void hs_step(struct tls_stream *t) {
  int r, e = SSL_ERROR_NONE, frc;
  ERR_clear_error();
  r = SSL_do_handshake(t->ssl);
  if (r != 1)
    e = SSL_get_error(t->ssl, r);
  /* Flush even on failure: the alert tells the peer why. */
  frc = tls_flush(t, NULL, NULL);
  if (r != 1 && e != SSL_ERROR_WANT_READ) {
    hs_finish(t, tls_fail(t, e));
  } else if (frc < 0) {
    sk__tls_set_error("connection failed: %s", sk_strerror(frc));
    note_error(t);
    hs_finish(t, frc);
  } else if (r == 1) {
    hs_finish(t, 0);
  }
}

/* Decrypts and delivers while the user reads; what is left stays in SSL
 * and in the input window (the stream stops reading the socket, and the
 * kernel pushes back on the peer). */
static void read_pump(struct tls_stream *t) {
  sk_stream *s = t->s;
  while (!dead(t) && sk__stream_user_reading(s)) {
    size_t got = 0;
    int r, e;
    if (t->read_failed != 0) {
      publish_error(t);
      sk__stream_deliver(s, t->read_failed, NULL);
      return;
    }
    ERR_clear_error();
    r = SSL_read_ex(t->ssl, pt_buf, sizeof(pt_buf), &got);
    e = r ? SSL_ERROR_NONE : SSL_get_error(t->ssl, 0);
    /* Reading can produce output: a KeyUpdate answer, or an alert. A
     * failed write shows up on the next send. */
    if (s->h.loop->tbuf_len > 0)
      tls_flush(t, NULL, NULL);
    if (r) {
      sk__stream_deliver(s, (ssize_t)got, pt_buf);
      continue;
    }
    if (e == SSL_ERROR_WANT_READ)
      return;
    if (e == SSL_ERROR_ZERO_RETURN && t->bio_eof) {
      /* The EOF SSL_OP_IGNORE_UNEXPECTED_EOF let pass as a clean end. */
      sk__tls_set_error("unexpected EOF: the peer closed the connection "
                        "without close_notify");
      note_error(t);
      t->read_failed = SK_ETLSTRUNCATED;
      continue;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      sk__stream_deliver(s, SK_EOF, NULL); /* close_notify */
      return;
    }
    t->read_failed = tls_fail(t, e);
  }
}

/* Moves the connection on after new input or a change of state. */
static void tls_advance(struct tls_stream *t) {
  switch (t->state) {
  case ST_HANDSHAKE:
    hs_step(t);
    break;
  case ST_OPEN:
    read_pump(t);
    break;
  case ST_FAILED:
    /* Input after a failure is dropped; a reader still waiting learns the
     * failure (after the handshake callback has told it first). */
    t->in_len = 0;
    if (!t->hs_owed && sk__stream_user_reading(t->s)) {
      publish_error(t);
      sk__stream_deliver(t->s, t->hs_status, NULL);
    }
    break;
  default: /* ST_HS_DONE: data waits until the callback has run */
    break;
  }
}

/* One round of work from a stream hook or a deferred callback. */
/* Input could not be kept: the handshake, or reading, fails. */
static void tls_no_memory(struct tls_stream *t) {
  sk__tls_set_error("out of memory");
  if (t->state == ST_HANDSHAKE) {
    note_error(t);
    hs_finish(t, -ENOMEM);
  } else if (t->read_failed == 0) {
    note_error(t);
    t->read_failed = -ENOMEM;
  }
}

static void tls_run(struct tls_stream *t) {
  t->busy++;
  tls_advance(t);
  if (!dead(t) && tls_stash(t) != 0) {
    /* The rest of the window cannot be kept: the stream is broken. */
    t->in_len = 0;
    tls_no_memory(t);
  }
  tls_release(t);
}

static void hs_done_cb(struct sk__pending *p) {
  struct tls_stream *t = sk__container_of(p, struct tls_stream, hs_pend);
  sk_stream *s = t->s;
  int status = dead(t) ? -ECANCELED : t->hs_status;

  t->hs_owed = 0;
  if (status == 0)
    t->state = ST_OPEN;
  else if (status != -ECANCELED)
    publish_error(t);
  t->busy++;
  t->hs_cb(s, status);
  /* Data that arrived with the end of the handshake, or later while the
   * callback was pending, is delivered now if the user reads. */
  if (!dead(t))
    tls_advance(t);
  if (!dead(t))
    tls_stash(t);
  tls_release(t);
}

static void rd_pend_cb(struct sk__pending *p) {
  struct tls_stream *t = sk__container_of(p, struct tls_stream, rd_pend);
  tls_run(t);
}

static void hs_timeout(struct sk__tnode *n) {
  struct tls_stream *t = sk__container_of(n, struct tls_stream, timer);
  sk__tls_set_error("TLS handshake timed out");
  note_error(t);
  hs_finish(t, -ETIMEDOUT);
}

/* The transport's input: ciphertext, or the socket's end. */
static void tls_input(sk_stream *s, const unsigned char *buf, ssize_t n) {
  struct tls_stream *t = s->tpdata;
  if (dead(t))
    return;
  if (n <= 0) {
    t->in_eof = 1;
    t->in_err = n == SK_EOF ? 0 : (int)n;
    sk__stream_update(s); /* the socket is not wanted for a handshake now */
    tls_run(t);
    return;
  }
  t->got_bytes = 1;
  if (t->state == ST_FAILED)
    return;
  if (t->in_len == 0) {
    t->in_ptr = buf; /* borrowed until tls_run() stashes the rest */
    t->in_len = (size_t)n;
  } else if (tls_append(t, buf, (size_t)n) != 0) {
    tls_no_memory(t);
  }
  tls_run(t);
}

static void tls_resume(sk_stream *s) {
  struct tls_stream *t = s->tpdata;
  if (dead(t) || t->hs_owed)
    return;
  sk__pending_add(s->h.loop, &t->rd_pend, rd_pend_cb);
}

/* The socket is read for the handshake even when the user does not read. */
static unsigned tls_wants(const sk_stream *s) {
  const struct tls_stream *t = s->tpdata;
  return t->state == ST_HANDSHAKE && !t->in_eof ? SK__IO_READ : 0;
}

static int tls_check_open(const struct tls_stream *t) {
  if (t->state == ST_FAILED)
    return t->hs_status;
  if (t->state == ST_HANDSHAKE)
    return -ENOTCONN;
  if (t->write_failed != 0)
    return t->write_failed;
  return 0;
}

/* Encrypts n bytes into the loop's buffer. */
static int tls_write(struct tls_stream *t, const void *p, size_t n) {
  size_t done = 0;
  ERR_clear_error();
  if (SSL_write_ex(t->ssl, p, n, &done) && done == n)
    return 0;
  t->write_failed = tls_fail(t, SSL_get_error(t->ssl, 0));
  tls_flush(t, NULL, NULL); /* the alert, if any */
  return t->write_failed;
}

/* A send failed after some of its ciphertext was queued: it cannot be taken
 * back, so the send counts as taken (0) and cb reports err. Before that,
 * nothing of it went out: err is returned. Either way the write side has
 * failed for good (SSL's state moved on). */
static int send_failed(struct tls_stream *t, int err, int queued, sk_send_cb cb,
                       void *arg) {
  if (t->write_failed == 0)
    t->write_failed = err;
  int rc = sk__stream_write_fail(t->s, err, queued ? cb : NULL, arg);
  return queued && cb == NULL ? 0 : rc;
}

/* Each piece is encrypted into the loop's buffer and handed over before the
 * next, which bounds that buffer whatever the size of the send. Small
 * buffers are gathered into one piece of at most a record; a buffer of a
 * record or more is encrypted in place, up to SEND_PIECE at a time. */
static int tls_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                     sk_send_cb cb, void *arg) {
  struct tls_stream *t = s->tpdata;
  size_t total = 0, fill = 0;
  int queued = 0;
  int rc = tls_check_open(t);
  if (rc != 0)
    return rc;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len; /* the stream checked it does not wrap */
  for (int i = 0; i < iovcnt; i++) {
    const unsigned char *p = iov[i].iov_base;
    size_t left = iov[i].iov_len;
    while (left > 0) {
      const unsigned char *src = p;
      size_t n;
      int direct = fill == 0 && left >= GATHER_MAX;
      if (direct) {
        n = left < SEND_PIECE ? left : SEND_PIECE;
      } else {
        n = left < GATHER_MAX - fill ? left : GATHER_MAX - fill;
        memcpy(gather_buf + fill, p, n);
        fill += n;
      }
      p += n;
      left -= n;
      total -= n;
      if (!direct) {
        if (fill < GATHER_MAX && total > 0)
          continue;
        src = gather_buf;
        n = fill;
        fill = 0;
      }
      rc = tls_write(t, src, n);
      /* The last piece goes out with the callback, below. */
      if (rc == 0 && total > 0)
        rc = tls_flush(t, NULL, NULL);
      if (rc != 0)
        return send_failed(t, rc, queued, cb, arg);
      queued = 1;
    }
  }
  /* Attached to the last ciphertext of this send: the stream's queue is
   * FIFO, so cb runs once every byte before it was written too. */
  rc = tls_flush(t, cb, arg);
  return rc != 0 ? send_failed(t, rc, queued, cb, arg) : 0;
}

static int tls_shutdown(sk_stream *s, sk_send_cb cb, void *arg) {
  struct tls_stream *t = s->tpdata;
  int rc = tls_check_open(t);
  if (rc != 0)
    return rc;
  ERR_clear_error();
  if (SSL_shutdown(t->ssl) < 0)
    ERR_clear_error(); /* nothing to tell the peer; the FIN still goes */
  rc = tls_flush(t, NULL, NULL);
  if (rc != 0)
    return rc;
  return sk__stream_raw_shutdown(s, cb, arg);
}

/* The stream is closing (dead(t) holds from now on). */
static void tls_close(sk_stream *s) {
  struct tls_stream *t = s->tpdata;
  sk_loop *loop = s->h.loop;
  sk__tnode_stop(loop, &t->timer);
  sk__pending_remove(loop, &t->rd_pend);
  if (t->hs_owed) {
    /* Like a connect, an unfinished handshake completes with -ECANCELED,
     * before the close callback (queued after this returns). */
    sk__pending_add(loop, &t->hs_pend, hs_done_cb);
    return;
  }
  if (t->busy == 0)
    tls_destroy(t);
}

static const struct sk__transport tls_transport = {
    .name = "tls",
    .input = tls_input,
    .sendv = tls_sendv,
    .shutdown = tls_shutdown,
    .resume = tls_resume,
    .wants = tls_wants,
    .close = tls_close,
    .flags = 0,
};

int sk_stream_tls_start(sk_stream *s, sk_tls_ctx *ctx, const char *servername,
                        sk_tls_handshake_cb cb) {
  struct tls_stream *t;
  sk_loop *loop;
  int rc;

  if (s == NULL || ctx == NULL || cb == NULL)
    return -EINVAL;
  rc = sk__stream_transport_check(s);
  if (rc != 0)
    return rc;
  loop = s->h.loop;
  t = calloc(1, sizeof(*t));
  if (t == NULL)
    return -ENOMEM;
  pthread_once(&abio_once, abio_init);
  rc = sk__tls_ssl_with_bio(ctx, servername, &t->conn, abio_method, t, &t->ssl);
  if (rc != 0) {
    free(t);
    return rc;
  }
  t->s = s;
  t->ctx = ctx;
  sk__tls_ctx_hold(ctx);
  t->hs_cb = cb;
  t->hs_owed = 1;
  t->state = ST_HANDSHAKE;
  sk__tnode_init(&t->timer, hs_timeout);
  sk__stream_transport_set(s, &tls_transport, t);
  if (ctx->timeout_ms > 0) {
    sk_loop_update_time(loop);
    sk__tnode_start(loop, &t->timer, loop->now + (uint64_t)ctx->timeout_ms);
  }
  /* A client speaks first: its ClientHello goes out now. Any outcome is
   * reported through cb, from the loop. */
  hs_step(t);
  return 0;
}

static struct tls_stream *tls_of(const sk_stream *s) {
  return s != NULL && s->tp == &tls_transport ? s->tpdata : NULL;
}

static struct tls_stream *open_tls(const sk_stream *s) {
  struct tls_stream *t = tls_of(s);
  if (t == NULL || (t->state != ST_OPEN && t->state != ST_HS_DONE))
    return NULL;
  return t;
}

const char *sk_stream_tls_error(const sk_stream *s) {
  struct tls_stream *t = tls_of(s);
  return t != NULL ? t->err : "";
}

const char *sk_stream_tls_version(const sk_stream *s) {
  struct tls_stream *t = open_tls(s);
  return t != NULL ? SSL_get_version(t->ssl) : NULL;
}

const char *sk_stream_tls_cipher(const sk_stream *s) {
  struct tls_stream *t = open_tls(s);
  return t != NULL ? SSL_get_cipher_name(t->ssl) : NULL;
}

const char *sk_stream_tls_alpn(const sk_stream *s) {
  struct tls_stream *t = open_tls(s);
  return t != NULL ? sk__tls_alpn_of(t->ssl, t->alpn) : NULL;
}

int sk_stream_tls_peer_fingerprint(const sk_stream *s, char *buf, size_t len) {
  struct tls_stream *t = open_tls(s);
  if (t == NULL)
    return -ENOTCONN;
  return sk__tls_fingerprint(SSL_get0_peer_certificate(t->ssl), buf, len);
}

int sk_stream_tls_peer_cert(const sk_stream *s, sk_tls_cert *out) {
  struct tls_stream *t = open_tls(s);
  if (t == NULL) {
    if (out != NULL)
      memset(out, 0, sizeof(*out));
    return out == NULL ? -EINVAL : -ENOTCONN;
  }
  return sk__tls_cert_decode(SSL_get0_peer_certificate(t->ssl), out);
}

int sk_stream_tls_resumed(const sk_stream *s) {
  struct tls_stream *t = open_tls(s);
  return t != NULL ? SSL_session_reused(t->ssl) == 1 : -ENOTCONN;
}
