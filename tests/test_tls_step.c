/* The sync TLS session beyond send/recv-with-a-timeout: the step API that
 * never waits (sk_tls_*_step, sk_tls_pending), the half-close
 * (sk_tls_shutdown), partial-send counts (sk_tls_send_all), and the errors
 * named after the handshake. The peer is a sync TLS session of the library
 * on a thread of its own, over loopback with a kernel-chosen port; the
 * certificate is a self-signed one made in memory (no openssl tool).
 *
 * Built without TLS, every test checks that the API says SK_ENOTLS and is
 * skipped. */
#include "sk_test.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

/* The bytes every stream here carries: byte i of a stream is pat(i), so a
 * byte lost, doubled or moved shows at once. */
static unsigned char pat(size_t i) {
  return (unsigned char)((i * 7 + 3) % 251);
}

static void fill_pat(unsigned char *buf, size_t off, size_t len) {
  for (size_t i = 0; i < len; i++)
    buf[i] = pat(off + i);
}

/* A server context with a certificate made in memory; NULL when the
 * library was built without TLS. */
static sk_tls_ctx *self_signed_ctx(void) {
  sk_tls_ctx *ctx = NULL;
  sk_tls_options o = {0};
  o.server = 1;
  o.self_signed = 1;
  int rc = sk_tls_ctx_new(&ctx, &o);
  if (rc == SK_ENOTLS)
    return NULL;
  SK_ASSERT_OK(rc);
  return ctx;
}

/* Skips without TLS, after checking that the library says so. */
static void need_tls(void) {
  sk_tls_ctx *ctx = self_signed_ctx();
  if (ctx == NULL) {
    sk_tls_socket t = {0};
    assert_int_equal(sk_tls_shutdown(&t, 0), SK_ENOTLS);
    assert_int_equal(sk_tls_shutdown_step(&t, NULL), SK_ENOTLS);
    assert_int_equal(sk_tls_handshake_step(&t, NULL), SK_ENOTLS);
    assert_int_equal(sk_tls_pending(&t), 0);
    skip();
  }
  sk_tls_ctx_free(ctx);
}

/* ---- the peer: a sync TLS server on a thread ---- */

enum {
  PEER_READ_CHECK,     /* after "go": reads `expect` bytes of pat(), then
                        * until close_notify */
  PEER_TWO_RECORDS,    /* sends two records of REC bytes, then reads until
                        * close_notify */
  PEER_AFTER_SHUT,     /* reads until close_notify, then sends `expect`
                        * bytes of pat() and closes with close_notify */
  PEER_PLAINTEXT,      /* after the handshake, plain bytes on the socket */
  PEER_CUT_AFTER_DATA, /* reads "hi", sends "bye", then after "go" closes
                        * TCP (FIN) without close_notify */
  PEER_ONE_THEN_ALL    /* sends "h"; after "go" reads one byte of pat()
                        * and says so on `done`; after another "go" reads
                        * the rest until close_notify */
};

#define REC 1000

struct peer {
  int mode;
  sk_socket l;
  sk_tls_ctx *ctx;
  int go[2]; /* the test writes one byte: the peer may start reading */
  size_t expect;
  int hold_handshake; /* answer the ClientHello only after "go" */
  int pair_fd;        /* > 0: serve this connected socket, no listener */
  int done[2];        /* PEER_ONE_THEN_ALL: one byte when it read one */
  /* Results. */
  int rc;
  size_t got;
  int mismatch;
  pthread_t th;
  char addr[64];
};

/* Waits for the test's "go", within a deadline. */
static int wait_go(struct peer *p) {
  struct pollfd pfd = {.fd = p->go[0], .events = POLLIN};
  char c;
  if (poll(&pfd, 1, 20000) != 1 || read(p->go[0], &c, 1) != 1)
    return -ETIMEDOUT;
  return 0;
}

/* Reads until close_notify; counts and checks pat() from p->got on. */
static int read_to_end(struct peer *p, sk_tls_socket *t) {
  unsigned char buf[16384];
  for (;;) {
    ssize_t n = sk_tls_recv(t, buf, sizeof(buf), 20000);
    if (n <= 0)
      return (int)n;
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != pat(p->got + (size_t)i))
        p->mismatch = 1;
    p->got += (size_t)n;
  }
}

static int send_pat(sk_tls_socket *t, size_t total) {
  unsigned char buf[16384];
  for (size_t off = 0; off < total;) {
    size_t k = total - off < sizeof(buf) ? total - off : sizeof(buf);
    fill_pat(buf, off, k);
    int rc = sk_tls_send(t, buf, k, 20000);
    if (rc != 0)
      return rc;
    off += k;
  }
  return 0;
}

static void *peer_main(void *arg) {
  struct peer *p = arg;
  sk_socket c = SK_SOCKET_INIT;
  sk_tls_socket t = {0};
  unsigned char rec[REC];
  p->rc = p->pair_fd > 0 ? sk_socket_adopt(&c, p->pair_fd)
                         : sk_socket_accept(&p->l, &c, NULL, 20000);
  if (p->rc == 0 && p->hold_handshake)
    p->rc = wait_go(p);
  if (p->rc != 0)
    return NULL;
  p->rc = sk_tls_accept(&t, &c, p->ctx, 20000);
  if (p->rc != 0) {
    sk_socket_close(&c, 0);
    return NULL;
  }
  switch (p->mode) {
  case PEER_READ_CHECK:
    p->rc = wait_go(p);
    if (p->rc == 0)
      p->rc = read_to_end(p, &t);
    break;
  case PEER_TWO_RECORDS:
    fill_pat(rec, 0, REC);
    p->rc = sk_tls_send(&t, rec, REC, 20000);
    fill_pat(rec, REC, REC);
    if (p->rc == 0)
      p->rc = sk_tls_send(&t, rec, REC, 20000);
    if (p->rc == 0)
      p->rc = read_to_end(p, &t);
    break;
  case PEER_AFTER_SHUT:
    p->rc = read_to_end(p, &t);
    if (p->rc == 0)
      p->rc = send_pat(&t, p->expect);
    break;
  case PEER_PLAINTEXT:
    p->rc = sk_socket_send(&c, "this is not TLS\r\n\r\n", 19, 20000);
    if (p->rc == 0)
      p->rc = wait_go(p);
    sk_tls_free(&t);
    sk_socket_close(&c, 0);
    return NULL;
  case PEER_ONE_THEN_ALL:
    p->rc = sk_tls_send(&t, "h", 1, 20000);
    if (p->rc == 0)
      p->rc = wait_go(p);
    if (p->rc == 0)
      p->rc =
          sk_tls_recv(&t, rec, 1, 20000) == 1 && rec[0] == pat(0) ? 0 : -EPROTO;
    p->got = 1;
    if (p->rc == 0 && write(p->done[1], "d", 1) != 1)
      p->rc = -EIO;
    if (p->rc == 0)
      p->rc = wait_go(p);
    if (p->rc == 0)
      p->rc = read_to_end(p, &t);
    break;
  case PEER_CUT_AFTER_DATA: {
    char hi[2];
    ssize_t n = sk_tls_recv(&t, hi, 2, 20000);
    p->rc = n == 2 && memcmp(hi, "hi", 2) == 0 ? 0 : -EPROTO;
    if (p->rc == 0)
      p->rc = sk_tls_send(&t, "bye", 3, 20000);
    if (p->rc == 0)
      p->rc = wait_go(p);
    sk_tls_free(&t);
    sk_socket_close(&c, 0);
    return NULL;
  }
  }
  int crc = sk_tls_close(&t, 5000);
  if (p->rc == 0)
    p->rc = crc;
  return NULL;
}

/* Starts the peer (rcvbuf > 0: the accepted socket's receive buffer, set
 * on the listener so the handshake already runs with it). */
static void peer_start(struct peer *p, int mode, int rcvbuf) {
  sk_endpoint ep;
  p->mode = mode;
  p->l = (sk_socket)SK_SOCKET_INIT;
  p->ctx = self_signed_ctx();
  assert_non_null(p->ctx);
  assert_int_equal(pipe(p->go), 0);
  SK_ASSERT_OK(sk_socket_listen_text(&p->l, "127.0.0.1:0", 1));
  if (rcvbuf > 0)
    assert_int_equal(
        setsockopt(p->l.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
  SK_ASSERT_OK(sk_socket_local(&p->l, &ep));
  snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%u", sk_endpoint_port(&ep));
  assert_int_equal(pthread_create(&p->th, NULL, peer_main, p), 0);
}

static void peer_go(struct peer *p) {
  assert_int_equal(write(p->go[1], "g", 1), 1);
}

/* Joins the peer and frees it; returns its result code. */
static int peer_end(struct peer *p) {
  pthread_join(p->th, NULL);
  sk_socket_close(&p->l, 0);
  sk_tls_ctx_free(p->ctx);
  close(p->go[0]);
  close(p->go[1]);
  return p->rc;
}

static sk_tls_ctx *client_ctx(void) {
  sk_tls_options o = {0};
  o.insecure_no_verify = 1;
  sk_tls_ctx *ctx = NULL;
  SK_ASSERT_OK(sk_tls_ctx_new(&ctx, &o));
  return ctx;
}

/* Connects to the peer (sndbuf > 0: our send buffer, set before
 * connecting) and runs the handshake with sk_tls_connect(). */
static void client_open(struct peer *p, sk_socket *s, sk_tls_socket *t,
                        int sndbuf) {
  sk_tls_ctx *ctx = client_ctx();
  sk_endpoint ep;
  *s = (sk_socket)SK_SOCKET_INIT;
  memset(t, 0, sizeof(*t));
  SK_ASSERT_OK(sk_endpoint_parse(&ep, p->addr));
  SK_ASSERT_OK(sk_socket_open(s, sk_endpoint_family(&ep), SOCK_STREAM, 0));
  if (sndbuf > 0)
    assert_int_equal(
        setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
  SK_ASSERT_OK(sk_socket_connect(s, &ep, 20000));
  SK_ASSERT_OK(sk_tls_connect(t, s, ctx, NULL, 20000));
  sk_tls_ctx_free(ctx);
}

/* Waits (bounded) for what a step asked for. */
static void wait_events(sk_tls_socket *t, int events) {
  assert_true(events == SK_POLL_READ || events == SK_POLL_WRITE);
  assert_true(sk_socket_poll(t->sock, events, 20000) > 0);
}

/* Reads the peer's pat() bytes up to its close_notify, by waiting calls or
 * by steps (waiting for the events they name); anything else fails the
 * test. Returns the count, at most max. */
static size_t recv_pat_to_end(sk_tls_socket *t, int by_steps, size_t max) {
  unsigned char buf[16384];
  size_t got = 0;
  int ev = 0;
  for (int i = 0; i < 100000; i++) {
    ssize_t n = by_steps ? sk_tls_recv_step(t, buf, sizeof(buf), &ev)
                         : sk_tls_recv(t, buf, sizeof(buf), 20000);
    if (by_steps && n == -EAGAIN) {
      wait_events(t, ev);
      continue;
    }
    if (n == 0)
      return got;
    if (n < 0)
      fail_msg("receiving: %zd (%s)", n, sk_tls_last_error());
    for (ssize_t j = 0; j < n; j++)
      assert_int_equal(buf[j], pat(got + (size_t)j));
    got += (size_t)n;
    assert_true(got <= max);
  }
  fail_msg("no close_notify after %zu bytes", got);
  return got;
}

/* ---- tests ---- */

static void test_handshake_by_steps(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s = SK_SOCKET_INIT;
  sk_tls_socket t = {0};
  sk_endpoint ep;
  char buf[16];
  int ev = 0, again = 0, rc;
  p.hold_handshake = 1;
  peer_start(&p, PEER_TWO_RECORDS, 0);
  sk_tls_ctx *ctx = client_ctx();
  SK_ASSERT_OK(sk_endpoint_parse(&ep, p.addr));
  SK_ASSERT_OK(sk_socket_connect_text(&s, p.addr, SOCK_STREAM, 20000));
  SK_ASSERT_OK(sk_tls_connect_start(&t, &s, ctx, NULL));
  sk_tls_ctx_free(ctx); /* the session holds its own reference */
  /* Nothing to send or receive before the handshake is complete. */
  assert_int_equal(sk_tls_send_step(&t, "x", 1, &ev), -EINVAL);
  assert_int_equal(sk_tls_recv_step(&t, buf, sizeof(buf), &ev), -EINVAL);
  assert_int_equal(sk_tls_shutdown(&t, 0), -EINVAL);
  assert_int_equal(sk_tls_shutdown_step(&t, &ev), -EINVAL);
  /* The server does not answer yet: the first step sends the ClientHello
   * and says to wait for readability, without waiting itself. */
  assert_int_equal(sk_tls_handshake_step(&t, &ev), -EAGAIN);
  assert_int_equal(ev, SK_POLL_READ);
  assert_int_equal(sk_tls_handshake_step(&t, &ev), -EAGAIN);
  peer_go(&p);
  for (int i = 0; i < 100 && (rc = sk_tls_handshake_step(&t, &ev)) != 0; i++) {
    assert_int_equal(rc, -EAGAIN);
    again++;
    wait_events(&t, ev);
  }
  assert_int_equal(rc, 0);
  assert_true(again < 100);
  assert_string_equal(sk_tls_version(&t), "TLSv1.3");
  SK_ASSERT_OK(sk_tls_handshake_step(&t, &ev)); /* done stays done */

  /* The peer's two records: read them by steps. */
  unsigned char in[2 * REC];
  size_t got = 0;
  for (int i = 0; i < 100 && got < sizeof(in); i++) {
    ssize_t n = sk_tls_recv_step(&t, in + got, sizeof(in) - got, &ev);
    if (n == -EAGAIN) {
      assert_int_equal(ev, SK_POLL_READ);
      wait_events(&t, ev);
      continue;
    }
    assert_true(n > 0);
    got += (size_t)n;
  }
  assert_int_equal(got, sizeof(in));
  for (size_t i = 0; i < got; i++)
    assert_int_equal(in[i], pat(i));
  /* Nothing more: a step says so at once, and wants to read. */
  ev = 0;
  assert_int_equal(sk_tls_recv_step(&t, in, sizeof(in), &ev), -EAGAIN);
  assert_int_equal(ev, SK_POLL_READ);
  SK_ASSERT_OK(sk_tls_close(&t, 5000));
  SK_ASSERT_OK(peer_end(&p));
}

static void test_pending_after_multi_record_read(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s;
  sk_tls_socket t;
  unsigned char in[2 * REC];
  int ev = 0;
  peer_start(&p, PEER_TWO_RECORDS, 0);
  client_open(&p, &s, &t, 0);
  assert_int_equal(sk_tls_pending(&t), 0);
  /* The first 10 bytes of record one: its other 990 wait, decrypted. */
  ssize_t n;
  while ((n = sk_tls_recv_step(&t, in, 10, &ev)) == -EAGAIN)
    wait_events(&t, ev);
  assert_int_equal(n, 10);
  assert_int_equal(sk_tls_pending(&t), REC - 10);
  /* They come without the socket: a step that reads one record at most. */
  n = sk_tls_recv_step(&t, in + 10, sizeof(in) - 10, &ev);
  assert_int_equal(n, REC - 10);
  assert_int_equal(sk_tls_pending(&t), 0);
  /* Record two, from the socket (by now, or after waiting). */
  while ((n = sk_tls_recv_step(&t, in + REC, REC, &ev)) == -EAGAIN)
    wait_events(&t, ev);
  assert_int_equal(n, REC);
  for (size_t i = 0; i < sizeof(in); i++)
    assert_int_equal(in[i], pat(i));
  assert_int_equal(sk_tls_pending(NULL), 0);
  SK_ASSERT_OK(sk_tls_close(&t, 5000));
  SK_ASSERT_OK(peer_end(&p));
}

static void test_step_send_partial_resumes_byte_exact(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s;
  sk_tls_socket t;
  enum { BUF = 256 * 1024 };
  int ev = 0;
  peer_start(&p, PEER_READ_CHECK, 4096);
  client_open(&p, &s, &t, 4096);
  /* A peer that does not read: the path fills, and the step says to wait
   * for writability. Everything the steps counted went out whole. */
  unsigned char *chunk = malloc(BUF);
  assert_non_null(chunk);
  size_t off = 0;
  for (;;) {
    fill_pat(chunk, off, BUF);
    ssize_t n = sk_tls_send_step(&t, chunk, BUF, &ev);
    if (n == -EAGAIN)
      break;
    assert_true(n > 0 && n <= BUF);
    off += (size_t)n;
    assert_true(off < 64u * 1024 * 1024);
  }
  assert_int_equal(ev, SK_POLL_WRITE);
  assert_true(off < 4u * 1024 * 1024); /* small buffers: filled early */
  /* The peer reads now; the same bytes again resume where it stopped. */
  peer_go(&p);
  size_t total = off + 3 * BUF + 123;
  while (off < total) {
    size_t k = total - off < BUF ? total - off : BUF;
    fill_pat(chunk, off, k);
    ssize_t n = sk_tls_send_step(&t, chunk, k, &ev);
    if (n == -EAGAIN) {
      wait_events(&t, ev);
      continue;
    }
    assert_true(n > 0);
    off += (size_t)n;
  }
  SK_ASSERT_OK(sk_tls_close(&t, 20000));
  SK_ASSERT_OK(peer_end(&p));
  assert_int_equal(p.got, total);
  assert_false(p.mismatch);
  free(chunk);
}

static void test_send_all_counts_a_timed_out_send(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s;
  sk_tls_socket t;
  enum { TOTAL = 8 * 1024 * 1024 };
  unsigned char *buf = malloc(TOTAL);
  size_t sent = 12345, sent2 = 0;
  assert_non_null(buf);
  fill_pat(buf, 0, TOTAL);
  /* Buffers that hold a few records (with less, not even one record
   * leaves whole, and the count is rightly 0). */
  peer_start(&p, PEER_READ_CHECK, 65536);
  client_open(&p, &s, &t, 65536);
  /* The peer does not read: the send times out part way, and says how
   * far it got: whole records, the one under way not counted. */
  assert_int_equal(sk_tls_send_all(&t, buf, TOTAL, &sent, 200), -ETIMEDOUT);
  assert_true(sent > 0 && sent < TOTAL);
  /* Resuming at buf + sent delivers the rest, byte-exact. */
  peer_go(&p);
  SK_ASSERT_OK(sk_tls_send_all(&t, buf + sent, TOTAL - sent, &sent2, 20000));
  assert_int_equal(sent2, TOTAL - sent);
  /* Bad arguments: counted as nothing. */
  sent2 = 7;
  assert_int_equal(sk_tls_send_all(&t, NULL, 1, &sent2, 0), -EINVAL);
  assert_int_equal(sent2, 0);
  SK_ASSERT_OK(sk_tls_close(&t, 20000));
  SK_ASSERT_OK(peer_end(&p));
  assert_int_equal(p.got, TOTAL);
  assert_false(p.mismatch);
  free(buf);
}

static void test_shutdown_then_read_the_rest(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s;
  sk_tls_socket t;
  unsigned char buf[16384];
  p.expect = 1024 * 1024; /* sent by the peer after our close_notify */
  peer_start(&p, PEER_AFTER_SHUT, 0);
  client_open(&p, &s, &t, 0);
  SK_ASSERT_OK(sk_tls_send(&t, buf, 0, 1000));
  fill_pat(buf, 0, 100);
  SK_ASSERT_OK(sk_tls_send(&t, buf, 100, 20000));
  SK_ASSERT_OK(sk_tls_shutdown(&t, 20000));
  SK_ASSERT_OK(sk_tls_shutdown(&t, 20000)); /* once is enough */
  /* Our side is closed for sending ... */
  assert_int_equal(sk_tls_send(&t, "x", 1, 1000), -EPIPE);
  int ev = 0;
  assert_int_equal(sk_tls_send_step(&t, "x", 1, &ev), -EPIPE);
  /* ... and the peer's data still comes, to its close_notify. */
  assert_int_equal(recv_pat_to_end(&t, 0, p.expect), p.expect);
  SK_ASSERT_OK(sk_tls_close(&t, 5000));
  SK_ASSERT_OK(peer_end(&p));
  assert_int_equal(p.got, 100); /* it saw our data, then close_notify */
  assert_false(p.mismatch);
}

/* The half-close by steps: close_notify and the FIN go out without
 * waiting (-EAGAIN with the events to wait for while the socket cannot
 * take them); then sending is over and the peer's data still comes. */
static void test_shutdown_step_then_read_the_rest(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s;
  sk_tls_socket t;
  unsigned char buf[100];
  int ev = 0, rc, steps = 0;
  p.expect = 256 * 1024;
  peer_start(&p, PEER_AFTER_SHUT, 0);
  client_open(&p, &s, &t, 0);
  fill_pat(buf, 0, 100);
  SK_ASSERT_OK(sk_tls_send(&t, buf, 100, 20000));
  while ((rc = sk_tls_shutdown_step(&t, &ev)) == -EAGAIN) {
    assert_true(++steps < 100);
    wait_events(&t, ev);
  }
  SK_ASSERT_OK(rc);
  SK_ASSERT_OK(sk_tls_shutdown_step(&t, &ev)); /* done stays done */
  SK_ASSERT_OK(sk_tls_shutdown(&t, 0));
  assert_int_equal(sk_tls_send_step(&t, "x", 1, &ev), -EPIPE);
  assert_int_equal(recv_pat_to_end(&t, 1, p.expect), p.expect);
  SK_ASSERT_OK(sk_tls_close(&t, 5000));
  SK_ASSERT_OK(peer_end(&p));
  assert_int_equal(p.got, 100); /* our data, then close_notify */
  assert_false(p.mismatch);
}

/* close_notify that the socket cannot take yet: sk_tls_shutdown_step()
 * says -EAGAIN and what to wait for, refuses sends meanwhile, and finishes
 * once the peer reads. Over a Unix socketpair, where each write is a buffer
 * of its own that a full socket refuses whole: one-byte records fill our
 * side while the peer reads nothing; the peer then takes exactly one, the
 * refused record goes in its place, and the socket is full with no send
 * unfinished. */
static void test_shutdown_step_waits_for_a_full_socket(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s = SK_SOCKET_INIT;
  sk_tls_socket t = {0};
  sk_tls_ctx *ctx;
  struct pollfd pfd;
  int sv[2], ev = 0, rc, steps = 0, small = 4096;
  unsigned char b;
  char c;
  size_t off = 0;

  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_int_equal(
      setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  p.mode = PEER_ONE_THEN_ALL;
  p.l = (sk_socket)SK_SOCKET_INIT;
  p.ctx = self_signed_ctx();
  p.pair_fd = sv[1];
  assert_int_equal(pipe(p.go), 0);
  assert_int_equal(pipe(p.done), 0);
  assert_int_equal(pthread_create(&p.th, NULL, peer_main, &p), 0);
  SK_ASSERT_OK(sk_socket_adopt(&s, sv[0]));
  ctx = client_ctx();
  SK_ASSERT_OK(sk_tls_connect(&t, &s, ctx, NULL, 20000));
  sk_tls_ctx_free(ctx);
  /* "h": the peer is past the handshake and has read all of ours. */
  assert_int_equal(sk_tls_recv(&t, &c, 1, 20000), 1);
  for (;;) {
    b = pat(off);
    ssize_t n = sk_tls_send_step(&t, &b, 1, &ev);
    if (n == -EAGAIN)
      break;
    assert_int_equal(n, 1);
    assert_true(++off < 100000);
  }
  assert_int_equal(ev, SK_POLL_WRITE);
  peer_go(&p);
  pfd = (struct pollfd){.fd = p.done[0], .events = POLLIN};
  assert_int_equal(poll(&pfd, 1, 20000), 1);
  assert_int_equal(read(p.done[0], &c, 1), 1);
  assert_int_equal(sk_tls_send_step(&t, &b, 1, &ev), 1);
  off++;
  /* Full, and nothing unfinished: close_notify has to wait. */
  ev = 0;
  assert_int_equal(sk_tls_shutdown_step(&t, &ev), -EAGAIN);
  assert_int_equal(ev, SK_POLL_WRITE);
  assert_int_equal(sk_tls_send_step(&t, &b, 1, &ev), -EPIPE);
  peer_go(&p); /* the peer reads the rest */
  while ((rc = sk_tls_shutdown_step(&t, &ev)) == -EAGAIN) {
    assert_true(++steps < 1000);
    wait_events(&t, ev);
  }
  SK_ASSERT_OK(rc);
  /* Then the peer's own close_notify. */
  while ((rc = (int)sk_tls_recv_step(&t, &c, 1, &ev)) == -EAGAIN)
    wait_events(&t, ev);
  assert_int_equal(rc, 0);
  SK_ASSERT_OK(sk_tls_close(&t, 5000));
  SK_ASSERT_OK(peer_end(&p));
  close(p.done[0]);
  close(p.done[1]);
  assert_int_equal(p.got, off);
  assert_false(p.mismatch);
}

static void test_recv_zero_length_is_invalid(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s;
  sk_tls_socket t;
  char buf[4];
  int ev = 0;
  peer_start(&p, PEER_TWO_RECORDS, 0);
  client_open(&p, &s, &t, 0);
  /* 0 would mean "the peer closed". */
  assert_int_equal(sk_tls_recv(&t, buf, 0, 1000), -EINVAL);
  assert_int_equal(sk_tls_recv_step(&t, buf, 0, &ev), -EINVAL);
  assert_int_equal(sk_tls_recv(&t, NULL, 4, 1000), -EINVAL);
  /* The session is still good. */
  ssize_t n = sk_tls_recv(&t, buf, 1, 20000);
  assert_int_equal(n, 1);
  assert_int_equal((unsigned char)buf[0], pat(0));
  SK_ASSERT_OK(sk_tls_close(&t, 5000));
  SK_ASSERT_OK(peer_end(&p));
}

/* Plain bytes after a complete handshake: a TLS error (SK_ETLS) as async
 * says, not "the peer does not speak TLS", which is for handshakes. */
static void test_plaintext_after_handshake_is_etls(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s;
  sk_tls_socket t;
  char buf[64];
  peer_start(&p, PEER_PLAINTEXT, 0);
  client_open(&p, &s, &t, 0);
  ssize_t n = sk_tls_recv(&t, buf, sizeof(buf), 20000);
  if (n != SK_ETLS)
    fail_msg("plain text after the handshake gave %zd (%s): %s", n,
             sk_err_name((int)n), sk_tls_last_error());
  assert_null(strstr(sk_tls_last_error(), "does not speak TLS"));
  /* A failed session sends no close_notify. */
  assert_int_equal(sk_tls_shutdown(&t, 1000), SK_ETLS);
  assert_int_equal(sk_tls_shutdown_step(&t, NULL), SK_ETLS);
  peer_go(&p);
  sk_tls_free(&t);
  sk_socket_close(&s, 0);
  SK_ASSERT_OK(peer_end(&p));
}

/* A connection cut (FIN without close_notify) after data both ways is a
 * truncated session, not a failure of a handshake that finished long ago
 * (OpenSSL's SSL_is_init_finished() turns false after the fatal error). */
static void test_cut_after_data_is_not_a_handshake_failure(void **state) {
  (void)state;
  need_tls();
  struct peer p = {0};
  sk_socket s;
  sk_tls_socket t;
  char buf[16];
  peer_start(&p, PEER_CUT_AFTER_DATA, 0);
  client_open(&p, &s, &t, 0);
  SK_ASSERT_OK(sk_tls_send(&t, "hi", 2, 20000));
  size_t got = 0;
  while (got < 3) {
    ssize_t n = sk_tls_recv(&t, buf + got, sizeof(buf) - got, 20000);
    assert_true(n > 0);
    got += (size_t)n;
  }
  assert_memory_equal(buf, "bye", 3);
  peer_go(&p);
  ssize_t n = sk_tls_recv(&t, buf, sizeof(buf), 20000);
  assert_int_equal(n, SK_ETLSTRUNCATED);
  if (strstr(sk_tls_last_error(), "handshake") != NULL)
    fail_msg("a cut after data was named \"%s\"", sk_tls_last_error());
  sk_tls_free(&t);
  sk_socket_close(&s, 0);
  SK_ASSERT_OK(peer_end(&p));
}

SK_TEST_MAIN(cmocka_unit_test(test_handshake_by_steps),
             cmocka_unit_test(test_pending_after_multi_record_read),
             cmocka_unit_test(test_step_send_partial_resumes_byte_exact),
             cmocka_unit_test(test_send_all_counts_a_timed_out_send),
             cmocka_unit_test(test_shutdown_then_read_the_rest),
             cmocka_unit_test(test_shutdown_step_then_read_the_rest),
             cmocka_unit_test(test_shutdown_step_waits_for_a_full_socket),
             cmocka_unit_test(test_recv_zero_length_is_invalid),
             cmocka_unit_test(test_plaintext_after_handshake_is_etls),
             cmocka_unit_test(test_cut_after_data_is_not_a_handshake_failure))
