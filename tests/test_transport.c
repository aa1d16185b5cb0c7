/* Stream transports and the write queue under them (src/lib/stream.c,
 * tls_stream.c): the path of a queued send is fixed when it is queued
 * (STARTTLS behind a queued file), the drain callback and a short file
 * after a write failure, a peek refusing a transport, and transports in
 * sequence (a header reader handing its extra bytes to TLS). Every test
 * runs both ends in one loop over a Unix socket pair. SK_TEST_ASYNC:
 * registered once per backend. */
#include "sk_test.h"
#include "tls_certs.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#define BIG (1024 * 1024) /* more than a Unix socket buffers */

static sk_loop loop;
static sk_stream a, b;
static struct pair good;

static void need_tls(void) {
  (void)cli_field; /* tls_certs.h's; not needed here */
  if (!tls_built())
    skip();
  if (certs_begin("/tmp/sk-tp-XXXXXX"))
    make_leaf(&good, "localhost", "localhost", "ca",
              "subjectAltName=DNS:localhost\n"
              "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
              2);
}

static sk_tls_ctx *client_ctx(void) {
  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  return ctx_new(&o);
}

/* A file of n bytes of 'F', unlinked; the caller closes it. */
static int file_of(size_t n) {
  char path[] = "/tmp/sk-tp-file-XXXXXX";
  char buf[256];
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  memset(buf, 'F', sizeof(buf));
  while (n > 0) {
    size_t k = n < sizeof(buf) ? n : sizeof(buf);
    assert_int_equal(write(fd, buf, k), (ssize_t)k);
    n -= k;
  }
  return fd;
}

static void closed_cb(sk_handle *h) {
  SK__UNUSED(h);
}

static void close_all(void) {
  if (!sk_is_closing(&a.h))
    sk_close(&a.h, closed_cb);
  if (!sk_is_closing(&b.h))
    sk_close(&b.h, closed_cb);
}

/* a on one end; the other end raw (returned) or b when open_b. */
static int pair_open(int open_b) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_stream_init(&loop, &a));
  SK_ASSERT_OK(sk_stream_init(&loop, &b));
  SK_ASSERT_OK(sk_stream_open(&a, sv[0]));
  if (!open_b)
    return sv[1];
  SK_ASSERT_OK(sk_stream_open(&b, sv[1]));
  return -1;
}

static void pair_done(void) {
  close_all();
  sk_test_run(&loop, 10000);
  sk_test_loop_done(&loop);
}

/* ---- STARTTLS behind a queued file ---- */

/* What went into the queue on the plain stream stays plaintext: 1 MiB of
 * 'x', then flen bytes of 'F', then the TLS handshake. The peer reads the
 * plaintext exactly (a poll handle on the raw descriptor, so not one byte of
 * the ClientHello is taken), then adopts the descriptor as a TLS server. */
static struct {
  int peer, file_status, file_done, hs_a, hs_b, bad;
  size_t flen, got, pinged;
  sk_poll poll;
  sk_tls_ctx *sctx;
} st;

static void st_file_cb(sk_stream *s, int status, void *arg) {
  SK__UNUSED(s);
  SK__UNUSED(arg);
  st.file_status = status;
  st.file_done = 1;
}

static void st_b_recv(sk_stream *s, ssize_t n, const void *buf) {
  SK__UNUSED(s);
  if (n > 0 && (size_t)n == 4 && memcmp(buf, "ping", 4) == 0)
    st.pinged = 1;
  close_all();
}

/* Notes a handshake's outcome in *out (1 = done, else the status); a
 * failure ends the test's streams. Returns 1 on success. */
static int hs_result(int *out, int status) {
  *out = status == 0 ? 1 : status;
  if (status != 0)
    close_all();
  return status == 0;
}

static void st_hs_a(sk_stream *s, int status) {
  if (hs_result(&st.hs_a, status))
    SK_ASSERT_OK(sk_stream_send(s, "ping", 4, NULL, NULL));
}

static void st_hs_b(sk_stream *s, int status) {
  if (hs_result(&st.hs_b, status))
    SK_ASSERT_OK(sk_stream_recv_start(s, st_b_recv));
}

static void st_peer_readable(sk_poll *p, int status, int events) {
  unsigned char buf[64 * 1024];
  size_t total = BIG + st.flen;
  SK__UNUSED(events);
  assert_int_equal(status, 0);
  while (st.got < total) {
    size_t want = total - st.got < sizeof(buf) ? total - st.got : sizeof(buf);
    ssize_t n = read(st.peer, buf, want);
    if (n < 0 && errno == EAGAIN)
      return;
    assert_true(n > 0);
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != (st.got + (size_t)i < BIG ? 'x' : 'F'))
        st.bad++;
    st.got += (size_t)n;
  }
  sk_poll_stop(p);
  sk_close(&p->h, NULL);
  SK_ASSERT_OK(sk_stream_open(&b, st.peer));
  SK_ASSERT_OK(sk_stream_tls_start(&b, st.sctx, NULL, st_hs_b));
}

static void starttls_after_file(size_t flen) {
  unsigned char *big;
  sk_tls_ctx *cctx;
  int fd;
  need_tls();
  memset(&st, 0, sizeof(st));
  st.flen = flen;
  st.peer = pair_open(0);
  assert_int_equal(fcntl(st.peer, F_SETFL, O_NONBLOCK), 0);
  big = malloc(BIG);
  assert_non_null(big);
  memset(big, 'x', BIG);
  SK_ASSERT_OK(sk_stream_send(&a, big, BIG, NULL, NULL));
  free(big);
  assert_true(sk_stream_write_queue_size(&a) > 0); /* the kernel is full */
  fd = file_of(flen);
  SK_ASSERT_OK(sk_stream_sendfile(&a, fd, 0, flen, st_file_cb, NULL));
  cctx = client_ctx();
  st.sctx = server_ctx(&good);
  SK_ASSERT_OK(sk_stream_tls_start(&a, cctx, "localhost", st_hs_a));
  SK_ASSERT_OK(sk_poll_init(&loop, &st.poll, st.peer));
  SK_ASSERT_OK(sk_poll_start(&st.poll, SK_POLL_READ, st_peer_readable));
  sk_test_run(&loop, 20000);
  assert_int_equal(st.file_done, 1);
  assert_int_equal(st.file_status, 0);
  assert_int_equal(st.got, BIG + flen);
  assert_int_equal(st.bad, 0);
  assert_int_equal(st.hs_a, 1);
  assert_int_equal(st.hs_b, 1);
  assert_int_equal(st.pinged, 1);
  sk_tls_ctx_free(cctx);
  sk_tls_ctx_free(st.sctx);
  close(fd);
  pair_done();
}

static void test_starttls_after_queued_file(void **state) {
  SK__UNUSED(state);
  starttls_after_file(3000);
}

static void test_starttls_after_queued_empty_file(void **state) {
  SK__UNUSED(state);
  starttls_after_file(0);
}

/* ---- the write side failing ---- */

static int drains, fail_status, fail_done;

static void count_drain(sk_stream *s) {
  SK__UNUSED(s);
  drains++;
}

static void fail_cb(sk_stream *s, int status, void *arg) {
  SK__UNUSED(s);
  SK__UNUSED(arg);
  fail_status = status;
  fail_done = 1;
}

/* A queue emptied by a failed write: the drain callback runs once (a
 * server paused for back-pressure resumes reading and sees the broken
 * connection), and later sends fail with the write's error. */
static void test_drain_after_write_failure(void **state) {
  unsigned char *big = calloc(1, BIG);
  int peer;
  SK__UNUSED(state);
  assert_non_null(big);
  drains = fail_done = 0;
  peer = pair_open(0);
  sk_stream_on_drain(&a, count_drain);
  SK_ASSERT_OK(sk_stream_send(&a, big, BIG, fail_cb, NULL));
  free(big);
  assert_true(sk_stream_write_queue_size(&a) > 0);
  close(peer); /* the next write fails with EPIPE */
  sk_test_run(&loop, 10000);
  assert_int_equal(fail_done, 1);
  assert_true(fail_status < 0);
  /* The queue was dropped: drain says so once, and sends fail. */
  assert_int_equal(drains, 1);
  assert_int_equal(sk_stream_send(&a, "x", 1, NULL, NULL), fail_status);
  pair_done();
}

/* A file shorter than promised: its own send ends with SK_EOF, and the
 * stream (whose peer now misses bytes) fails with -EIO, a negative errno as
 * sk_stream_send promises, not SK_EOF ("peer closed"). */
static void test_short_file_fails_stream_with_eio(void **state) {
  char buf[256];
  int peer, fd = file_of(100);
  size_t got = 0;
  SK__UNUSED(state);
  fail_done = 0;
  peer = pair_open(0);
  SK_ASSERT_OK(sk_stream_sendfile(&a, fd, 0, 200, fail_cb, NULL));
  assert_int_equal(sk_stream_send(&a, "x", 1, NULL, NULL), -EIO);
  sk_test_run(&loop, 10000);
  assert_int_equal(fail_done, 1);
  assert_int_equal(fail_status, SK_EOF);
  assert_int_equal(sk_stream_send(&a, "x", 1, NULL, NULL), -EIO);
  assert_int_equal(sk_stream_shutdown(&a, NULL, NULL), -EIO);
  while (got < 100) {
    ssize_t n = read(peer, buf, sizeof(buf));
    assert_true(n > 0);
    got += (size_t)n;
  }
  assert_int_equal(got, 100);
  close(fd);
  close(peer);
  pair_done();
}

/* ---- a transport refused while a peek waits ---- */

static void peek_cb(sk_stream *s, ssize_t n, const void *buf) {
  SK__UNUSED(s);
  SK__UNUSED(buf);
  assert_int_equal(n, -ECANCELED);
}

static void hs_unused(sk_stream *s, int status) {
  SK__UNUSED(s);
  SK__UNUSED(status);
}

static void test_tls_start_refused_while_peeking(void **state) {
  sk_tls_ctx *cctx;
  int peer;
  SK__UNUSED(state);
  need_tls();
  peer = pair_open(0);
  cctx = client_ctx();
  SK_ASSERT_OK(sk_stream_peek(&a, peek_cb));
  assert_int_equal(sk_stream_tls_start(&a, cctx, "localhost", hs_unused),
                   -EBUSY);
  SK_ASSERT_OK(sk_stream_recv_stop(&a));
  sk_tls_ctx_free(cctx);
  close(peer);
  pair_done();
}

/* ---- transports in sequence ---- */

/* A test-only transport on b: strips "HELLO\n", then hands over to TLS with
 * whatever came in the same read (the ClientHello). */
static struct {
  size_t got;     /* bytes of the prefix seen */
  size_t extra;   /* bytes after the prefix in the read that ended it */
  int hs_a, hs_b; /* 1 = handshake done, else its status */
  int echoed;     /* "ping" came back */
  sk_tls_ctx *sctx;
} hs;

static const char prefix[] = "HELLO\n";

static void hello_input(sk_stream *s, const unsigned char *buf, ssize_t n);

static int hello_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                       sk_send_cb cb, void *arg) {
  return sk__stream_raw_sendv(s, iov, iovcnt, cb, arg);
}

static int hello_shutdown(sk_stream *s, sk_send_cb cb, void *arg) {
  return sk__stream_raw_shutdown(s, cb, arg);
}

static void hello_resume(sk_stream *s) {
  SK__UNUSED(s);
}

static unsigned hello_wants(const sk_stream *s) {
  SK__UNUSED(s);
  return SK__IO_READ; /* the prefix is read whether the user reads or not */
}

static void hello_close(sk_stream *s) {
  SK__UNUSED(s);
}

static const struct sk__transport hello_transport = {
    .name = "hello",
    .input = hello_input,
    .sendv = hello_sendv,
    .shutdown = hello_shutdown,
    .resume = hello_resume,
    .wants = hello_wants,
    .close = hello_close,
    .flags = SK__TP_RAW,
};

static void hs_b_echo(sk_stream *s, ssize_t n, const void *buf) {
  if (n > 0)
    SK_ASSERT_OK(sk_stream_send(s, buf, (size_t)n, NULL, NULL));
}

static void hs_b_cb(sk_stream *s, int status) {
  if (hs_result(&hs.hs_b, status))
    SK_ASSERT_OK(sk_stream_recv_start(s, hs_b_echo));
}

static void hs_a_recv(sk_stream *s, ssize_t n, const void *buf) {
  SK__UNUSED(s);
  hs.echoed = n == 4 && memcmp(buf, "ping", 4) == 0;
  close_all();
}

static void hs_a_cb(sk_stream *s, int status) {
  if (!hs_result(&hs.hs_a, status))
    return;
  SK_ASSERT_OK(sk_stream_recv_start(s, hs_a_recv));
  SK_ASSERT_OK(sk_stream_send(s, "ping", 4, NULL, NULL));
}

static void hello_input(sk_stream *s, const unsigned char *buf, ssize_t n) {
  size_t take, want = sizeof(prefix) - 1 - hs.got;
  if (n <= 0) {
    close_all();
    return;
  }
  take = (size_t)n < want ? (size_t)n : want;
  assert_memory_equal(buf, prefix + hs.got, take);
  hs.got += take;
  if (hs.got < sizeof(prefix) - 1)
    return;
  hs.extra = (size_t)n - take;
  sk__stream_transport_end(s);
  SK_ASSERT_OK(sk_stream_tls_start(s, hs.sctx, NULL, hs_b_cb));
  sk__stream_transport_input(s, buf + take, (size_t)n - take);
}

static void test_transport_hands_over_to_tls(void **state) {
  sk_tls_ctx *cctx;
  SK__UNUSED(state);
  need_tls();
  memset(&hs, 0, sizeof(hs));
  pair_open(1);
  cctx = client_ctx();
  hs.sctx = server_ctx(&good);
  SK_ASSERT_OK(sk__stream_transport_check(&b));
  sk__stream_transport_set(&b, &hello_transport, NULL);
  /* Both go to the kernel now, before b reads: the prefix and the
   * ClientHello arrive in one read. */
  SK_ASSERT_OK(sk_stream_send(&a, prefix, sizeof(prefix) - 1, NULL, NULL));
  SK_ASSERT_OK(sk_stream_tls_start(&a, cctx, "localhost", hs_a_cb));
  sk_test_run(&loop, 20000);
  assert_int_equal(hs.got, sizeof(prefix) - 1);
  assert_true(hs.extra > 0); /* the ClientHello came with the prefix */
  assert_int_equal(hs.hs_a, 1);
  assert_int_equal(hs.hs_b, 1);
  assert_int_equal(hs.echoed, 1);
  sk_tls_ctx_free(cctx);
  sk_tls_ctx_free(hs.sctx);
  pair_done();
}

/* ---- small buffers of one send make one TLS record ---- */

static int gt_done;

static void gt_send(void) {
  static const char head[4] = "HEAD", tail[4] = "TAIL";
  char body[100];
  struct iovec v[3];
  memset(body, 'b', sizeof(body));
  v[0].iov_base = (void *)head;
  v[0].iov_len = sizeof(head);
  v[1].iov_base = body;
  v[1].iov_len = sizeof(body);
  v[2].iov_base = (void *)tail;
  v[2].iov_len = sizeof(tail);
  SK_ASSERT_OK(sk_stream_sendv(&a, v, 3, NULL, NULL));
}

static void gt_hs(sk_stream *s, int status) {
  SK__UNUSED(s);
  assert_int_equal(status, 0);
  if (++gt_done == 2) /* both ends are through: nothing else is in flight */
    gt_send();
}

/* A framed message (header, payload, trailer) in one sendv is one record
 * on the wire, not three: b does not read, so its socket holds exactly the
 * ciphertext of the send. A record adds 22 bytes (TLS 1.3: 5 of header,
 * 1 of type, 16 of tag), so three would add 66. */
static void test_tls_sendv_gathers_one_record(void **state) {
  sk_tls_ctx *cctx, *sctx;
  unsigned char buf[1024];
  ssize_t n;
  SK__UNUSED(state);
  need_tls();
  gt_done = 0;
  pair_open(1);
  cctx = client_ctx();
  sctx = server_ctx(&good);
  SK_ASSERT_OK(sk_stream_tls_start(&a, cctx, "localhost", gt_hs));
  SK_ASSERT_OK(sk_stream_tls_start(&b, sctx, NULL, gt_hs));
  sk_test_run(&loop, 20000);
  assert_int_equal(gt_done, 2);
  n = recv(b.sock.fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
  assert_true(n > 108);
  assert_true(n < 108 + 2 * 22);
  sk_tls_ctx_free(cctx);
  sk_tls_ctx_free(sctx);
  pair_done();
}

SK_TEST_MAIN(cmocka_unit_test(test_starttls_after_queued_file),
             cmocka_unit_test(test_starttls_after_queued_empty_file),
             cmocka_unit_test(test_drain_after_write_failure),
             cmocka_unit_test(test_short_file_fails_stream_with_eio),
             cmocka_unit_test(test_tls_start_refused_while_peeking),
             cmocka_unit_test(test_transport_hands_over_to_tls),
             cmocka_unit_test(test_tls_sendv_gathers_one_record))
