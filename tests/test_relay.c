/* The relay (src/lib/relay.c): both paths (splice between plain streams,
 * copy with SK_RELAY_NO_SPLICE or TLS), byte-exact both ways at once,
 * half-close, a reset, back-pressure, bytes queued before the start, stop
 * and close while bytes move, and the start's refusals.
 *
 * The world: pa <-TCP-> a [relay] b <-TCP-> pb, all on loopback in one
 * loop; pa and pb are the test's ends (streams, or raw descriptors where a
 * test needs the kernel's view). Direction 0 is pa to pb, 1 pb to pa.
 * SK_TEST_ASYNC: registered once per backend. */
#include "sk_test.h"
#include "tls_certs.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Sanitizers run several times slower: fewer bytes, same paths. */
#define BULK        (SK_TEST_SANITIZED ? 2u << 20 : 8u << 20)
#define HALF        (1u << 20)
#define DEADLINE_MS 60000

static struct {
  sk_loop loop;
  sk_stream pa, a, b, pb;
  sk_relay r;
  int rdone, rstatus;
  sk_stream *rfailed;
  size_t got[2]; /* bytes the test's end of each direction received */
  int end[2];    /* how each direction's receiver ended (0 = not yet) */
  size_t expect[2];
  size_t skip[2]; /* bytes before the pattern (a header) */
  int bad;        /* a byte differed */
  int half;       /* half-close test: pb answers after pa's end */
  int tls;
} w;

static unsigned char pat[2][8u << 20];

static unsigned char pat_at(int d, size_t i) {
  return pat[d][i % sizeof(pat[d])];
}

static void pat_init(void) {
  static int done;
  if (!done) {
    sk_test_fill_random(pat[0], sizeof(pat[0]), 11);
    sk_test_fill_random(pat[1], sizeof(pat[1]), 23);
    done = 1;
  }
}

/* A connected TCP pair on 127.0.0.1 (fds[0] connected, fds[1] accepted). */
static void tcp_pair(int fds[2]) {
  struct sockaddr_in sin;
  uint16_t port;
  int l = sk_test_loopback4(SOCK_STREAM, &port);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fds[0] >= 0);
  assert_int_equal(connect(fds[0], (struct sockaddr *)&sin, sizeof(sin)), 0);
  fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
  assert_true(fds[1] >= 0);
  close(l);
}

/* The world with pa's descriptor left raw (returned) when raw_pa, and pb's
 * in *raw_pb when raw_pb is not NULL. */
static int world_open(int raw_pa, int *raw_pb) {
  int p1[2], p2[2];
  memset(&w, 0, sizeof(w));
  pat_init();
  tcp_pair(p1);
  tcp_pair(p2);
  SK_ASSERT_OK(sk_loop_init(&w.loop));
  SK_ASSERT_OK(sk_stream_init(&w.loop, &w.pa));
  SK_ASSERT_OK(sk_stream_init(&w.loop, &w.a));
  SK_ASSERT_OK(sk_stream_init(&w.loop, &w.b));
  SK_ASSERT_OK(sk_stream_init(&w.loop, &w.pb));
  SK_ASSERT_OK(sk_stream_open(&w.a, p1[1]));
  SK_ASSERT_OK(sk_stream_open(&w.b, p2[0]));
  if (raw_pb != NULL)
    *raw_pb = p2[1];
  else
    SK_ASSERT_OK(sk_stream_open(&w.pb, p2[1]));
  if (raw_pa)
    return p1[0];
  SK_ASSERT_OK(sk_stream_open(&w.pa, p1[0]));
  return -1;
}

static void closed_cb(sk_handle *h) {
  SK__UNUSED(h);
}

static void close_one(sk_stream *s) {
  if (!sk_is_closing(&s->h))
    sk_close(&s->h, closed_cb);
}

static void close_all(void) {
  close_one(&w.pa);
  close_one(&w.a);
  close_one(&w.b);
  close_one(&w.pb);
}

static void world_done(void) {
  close_all();
  sk_test_run(&w.loop, 10000);
  sk_test_loop_done(&w.loop);
}

static void maybe_close(void) {
  if (w.rdone && w.end[0] && w.end[1])
    close_all();
}

static void relay_cb(sk_relay *r, int status) {
  assert_ptr_equal(r, &w.r);
  assert_int_equal(w.rdone, 0); /* exactly once */
  w.rdone = 1;
  w.rstatus = status;
  w.rfailed = r->failed;
  maybe_close();
}

/* The test's receiving ends: pb gets direction 0, pa direction 1, each
 * skip[d] bytes of the other direction's pattern (a header) first. */
static void peer_recv(sk_stream *s, ssize_t n, const void *buf) {
  int d = s == &w.pb ? 0 : 1;
  if (n > 0) {
    const unsigned char *p = buf;
    for (ssize_t i = 0; i < n; i++, w.got[d]++) {
      unsigned char want = w.got[d] < w.skip[d]
                               ? pat_at(1 - d, w.got[d])
                               : pat_at(d, w.got[d] - w.skip[d]);
      if (p[i] != want && !w.bad)
        w.bad = 1 + d;
    }
    return;
  }
  w.end[d] = (int)n;
  if (w.half && d == 0 && n == SK_EOF) {
    /* pa's end reached pb: pb answers only now, then ends too. */
    SK_ASSERT_OK(sk_stream_send(&w.pb, pat[1], HALF, NULL, NULL));
    SK_ASSERT_OK(sk_stream_shutdown(&w.pb, NULL, NULL));
  }
  if (n != SK_EOF)
    close_all();
  maybe_close();
}

static void send_and_end(sk_stream *s, int d, size_t len) {
  SK_ASSERT_OK(sk_stream_send(s, pat[d], len, NULL, NULL));
  SK_ASSERT_OK(sk_stream_shutdown(s, NULL, NULL));
}

static void check_clean_end(size_t n0, size_t n1) {
  assert_int_equal(w.bad, 0);
  assert_int_equal(w.rdone, 1);
  assert_int_equal(w.rstatus, 0);
  assert_null(w.rfailed);
  assert_int_equal(w.end[0], SK_EOF);
  assert_int_equal(w.end[1], SK_EOF);
  assert_int_equal(w.got[0], n0 + w.skip[0]);
  assert_int_equal(w.got[1], n1 + w.skip[1]);
  assert_int_equal(w.r.a_to_b.bytes, n0);
  assert_int_equal(w.r.b_to_a.bytes, n1);
  assert_int_equal(w.r.a_to_b.ended, 1);
  assert_int_equal(w.r.b_to_a.ended, 1);
}

/* ---- bulk, both ways at once ---- */

static void bulk(unsigned flags, int spliced) {
  sk_relay_options o = {0};
  o.flags = flags;
  world_open(0, NULL);
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, relay_cb));
  assert_int_equal(w.r.spliced, spliced);
  SK_ASSERT_OK(sk_stream_recv_start(&w.pa, peer_recv));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, peer_recv));
  send_and_end(&w.pa, 0, BULK);
  send_and_end(&w.pb, 1, BULK);
  assert_int_equal(w.rdone, 0); /* never from inside the start */
  sk_test_run(&w.loop, DEADLINE_MS);
  check_clean_end(BULK, BULK);
  world_done();
}

static void test_bulk_splice(void **state) {
  SK__UNUSED(state);
  bulk(0, 1);
}

static void test_bulk_copy(void **state) {
  SK__UNUSED(state);
  bulk(SK_RELAY_NO_SPLICE, 0);
}

/* ---- TLS on one side: pa is a TLS client, a its server ---- */

static struct pair good;
static sk_tls_ctx *sctx, *cctx;

static sk_relay_options tls_ropt; /* the relay's options in tls_hs_a */
static sk_relay_cb tls_rcb;       /* and its callback (relay_cb if NULL) */

static void tls_hs_a(sk_stream *s, int status) {
  SK_ASSERT_OK(status);
  SK_ASSERT_OK(sk_relay_start(&w.r, s, &w.b, &tls_ropt,
                              tls_rcb != NULL ? tls_rcb : relay_cb));
  assert_int_equal(w.r.spliced, 0);
}

static void tls_hs_pa(sk_stream *s, int status) {
  SK_ASSERT_OK(status);
  SK_ASSERT_OK(sk_stream_recv_start(s, peer_recv));
  send_and_end(s, 0, BULK);
}

/* The world with a TLS server on a and its client pa, the handshakes
 * started (pa_hs: pa's handshake callback); the relay starts with tls_ropt
 * once a's handshake succeeded. */
static void tls_world(sk_tls_handshake_cb pa_hs) {
  (void)cli_field;
  if (certs_begin("/tmp/sk-relay-XXXXXX"))
    make_leaf(&good, "localhost", "localhost", "ca",
              "subjectAltName=DNS:localhost\n"
              "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
              2);
  sk_tls_options co = {0};
  co.ca_file = ca_pem;
  sctx = server_ctx(&good);
  cctx = ctx_new(&co);
  world_open(0, NULL);
  SK_ASSERT_OK(sk_stream_tls_start(&w.a, sctx, NULL, tls_hs_a));
  SK_ASSERT_OK(sk_stream_tls_start(&w.pa, cctx, "localhost", pa_hs));
}

static void test_tls_one_side(void **state) {
  SK__UNUSED(state);
  if (!tls_built())
    skip();
  memset(&tls_ropt, 0, sizeof(tls_ropt));
  tls_rcb = NULL;
  tls_world(tls_hs_pa);
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, peer_recv));
  send_and_end(&w.pb, 1, BULK);
  sk_test_run(&w.loop, DEADLINE_MS);
  /* pa's SK_EOF (not SK_ETLSTRUNCATED) says close_notify came first. */
  check_clean_end(BULK, BULK);
  world_done();
  sk_tls_ctx_free(sctx);
  sk_tls_ctx_free(cctx);
}

/* ---- a TLS source that ends with a bare FIN (no close_notify) ---- */

/* pa's bytes are all out: its end is a FIN without close_notify. */
static void fin_after_send(sk_stream *s, int status, void *arg) {
  SK__UNUSED(arg);
  SK_ASSERT_OK(status);
  assert_int_equal(shutdown(s->sock.fd, SHUT_WR), 0);
}

static void tls_hs_pa_trunc(sk_stream *s, int status) {
  SK_ASSERT_OK(status);
  SK_ASSERT_OK(sk_stream_recv_start(s, peer_recv));
  SK_ASSERT_OK(sk_stream_send(s, pat[0], HALF, fin_after_send, NULL));
}

/* Without the flag the relay fails: the caller closes everything. */
static void trunc_fail_cb(sk_relay *r, int status) {
  relay_cb(r, status);
  close_all();
}

/* pa sends HALF and ends without close_notify; pb answers HALF only after
 * that end reached it (w.half), so direction 1 still has bytes to deliver
 * to pa over TLS after a's truncation. */
static void truncation(int as_eof) {
  if (!tls_built())
    skip();
  memset(&tls_ropt, 0, sizeof(tls_ropt));
  tls_ropt.flags = as_eof ? SK_RELAY_TRUNCATION_AS_EOF : 0;
  tls_rcb = as_eof ? NULL : trunc_fail_cb;
  tls_world(tls_hs_pa_trunc);
  w.half = 1;
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, peer_recv));
  sk_test_run(&w.loop, DEADLINE_MS);
  if (as_eof) {
    /* Like a FIN: passed on after HALF bytes, and the answer flowed. */
    check_clean_end(HALF, HALF);
  } else {
    assert_int_equal(w.rdone, 1);
    assert_int_equal(w.rstatus, SK_ETLSTRUNCATED);
    assert_ptr_equal(w.rfailed, &w.a);
    assert_int_equal(w.r.a_to_b.ended, 0);
  }
  world_done();
  sk_tls_ctx_free(sctx);
  sk_tls_ctx_free(cctx);
}

static void test_truncation_as_eof(void **state) {
  SK__UNUSED(state);
  truncation(1);
}

static void test_truncation_fails(void **state) {
  SK__UNUSED(state);
  truncation(0);
}

static void ignore_recv(sk_stream *s, ssize_t n, const void *buf);

/* ---- a TCP urgent byte in the stream (splice stops at its mark) ---- */

#define URG_BEFORE 1000 /* bytes before the urgent byte, then as many after */

static int urg_pa;   /* pa's raw descriptor */
static int urg_open; /* pa stays open until pb has everything */

/* Fails the test unless fd becomes readable within DEADLINE_MS. */
static void wait_readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  assert_int_equal(poll(&p, 1, DEADLINE_MS), 1);
}

static void urg_recv(sk_stream *s, ssize_t n, const void *buf) {
  peer_recv(s, n, buf);
  if (urg_open && n > 0 && w.got[0] == 2 * URG_BEFORE) {
    /* Everything arrived with pa still open: only now do both end. */
    assert_int_equal(shutdown(urg_pa, SHUT_WR), 0);
    SK_ASSERT_OK(sk_stream_shutdown(&w.pb, NULL, NULL));
  }
}

/* pa sends URG_BEFORE bytes, an urgent byte (MSG_OOB), URG_BEFORE more;
 * pb must get the 2 * URG_BEFORE in-band bytes (the urgent byte skipped,
 * as any reader without SO_OOBINLINE sees it), with pa ending at once
 * (fin) or only after pb got everything (the splice used to stall there,
 * polling at full speed, or, with the FIN, to drop what followed). */
static void urgent(unsigned flags, int spliced, int open) {
  sk_relay_options o = {0};
  o.flags = flags;
  urg_pa = world_open(1, NULL);
  urg_open = open;
  w.end[1] = SK_EOF; /* direction 1 ends at pa's raw descriptor */
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, relay_cb));
  assert_int_equal(w.r.spliced, spliced);
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, urg_recv));
  assert_int_equal(send(urg_pa, pat[0], URG_BEFORE, 0), URG_BEFORE);
  assert_int_equal(send(urg_pa, "!", 1, MSG_OOB), 1);
  assert_int_equal(send(urg_pa, pat[0] + URG_BEFORE, URG_BEFORE, 0),
                   URG_BEFORE);
  if (!open) {
    assert_int_equal(shutdown(urg_pa, SHUT_WR), 0);
    SK_ASSERT_OK(sk_stream_shutdown(&w.pb, NULL, NULL));
  }
  sk_test_run(&w.loop, DEADLINE_MS);
  assert_int_equal(w.bad, 0);
  assert_int_equal(w.got[0], 2 * URG_BEFORE);
  assert_int_equal(w.end[0], SK_EOF);
  assert_int_equal(w.rdone, 1);
  assert_int_equal(w.rstatus, 0);
  assert_int_equal(w.r.a_to_b.bytes, 2 * URG_BEFORE);
  /* pb's end reached pa. */
  char c;
  wait_readable(urg_pa);
  assert_int_equal(recv(urg_pa, &c, 1, MSG_DONTWAIT), 0);
  close(urg_pa);
  world_done();
}

static void test_urgent_open_splice(void **state) {
  SK__UNUSED(state);
  urgent(0, 1, 1);
}

static void test_urgent_fin_splice(void **state) {
  SK__UNUSED(state);
  urgent(0, 1, 0);
}

static void test_urgent_open_copy(void **state) {
  SK__UNUSED(state);
  urgent(SK_RELAY_NO_SPLICE, 0, 1);
}

static void test_urgent_fin_copy(void **state) {
  SK__UNUSED(state);
  urgent(SK_RELAY_NO_SPLICE, 0, 0);
}

/* ---- a close after the end, before the callback ran, withdraws it ---- */

/* Both sources' FINs are in the kernel; the test runs the relay's side of
 * the loop itself (the hook, or the copy path's delivery), so the relay
 * ends outside any callback with its callback queued, and then closes a.
 * The callback must not run: the caller may free r once a stream closed
 * (it used to run on freed memory). */
static void close_before_cb(unsigned flags) {
  sk_relay_options o = {0};
  int pb_fd;
  o.flags = flags;
  int pa_fd = world_open(1, &pb_fd);
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, relay_cb));
  assert_int_equal(shutdown(pa_fd, SHUT_WR), 0);
  assert_int_equal(shutdown(pb_fd, SHUT_WR), 0);
  wait_readable(w.a.sock.fd);
  wait_readable(w.b.sock.fd);
  if (w.r.spliced) {
    sk__relay_io(&w.r, &w.a, SK__IO_READ);
    sk__relay_io(&w.r, &w.b, SK__IO_READ);
  } else {
    sk__stream_deliver(&w.a, SK_EOF, NULL);
    sk__stream_deliver(&w.b, SK_EOF, NULL);
  }
  assert_int_equal(w.r.a_to_b.ended, 1);
  assert_int_equal(w.r.b_to_a.ended, 1);
  assert_true(w.r.pend.queued); /* ended: the callback is due */
  close_one(&w.a);
  assert_false(w.r.pend.queued);
  assert_null(sk__stream_relay(&w.b)); /* b is the caller's again */
  sk_relay_stop(&w.r);                 /* still harmless */
  sk_test_run(&w.loop, DEADLINE_MS);
  assert_int_equal(w.rdone, 0);
  /* b works as a plain stream again. */
  SK_ASSERT_OK(sk_stream_recv_start(&w.b, ignore_recv));
  close(pa_fd);
  close(pb_fd);
  world_done();
  assert_int_equal(w.rdone, 0);
}

static void test_close_before_cb_splice(void **state) {
  SK__UNUSED(state);
  close_before_cb(0);
}

static void test_close_before_cb_copy(void **state) {
  SK__UNUSED(state);
  close_before_cb(SK_RELAY_NO_SPLICE);
}

/* ---- half-close: pa ends first, pb sends 1 MiB after seeing it ---- */

static void half(unsigned flags) {
  sk_relay_options o = {0};
  o.flags = flags;
  world_open(0, NULL);
  w.half = 1;
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, relay_cb));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pa, peer_recv));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, peer_recv));
  send_and_end(&w.pa, 0, 1000);
  sk_test_run(&w.loop, DEADLINE_MS);
  check_clean_end(1000, HALF);
  world_done();
}

static void test_half_close_splice(void **state) {
  SK__UNUSED(state);
  half(0);
}

static void test_half_close_copy(void **state) {
  SK__UNUSED(state);
  half(SK_RELAY_NO_SPLICE);
}

/* ---- reset: pa's end resets; the caller passes it on to b ---- */

static void reset_relay_cb(sk_relay *r, int status) {
  relay_cb(r, status);
  sk_stream_abort(&w.b, closed_cb);
  close_one(&w.a);
}

static void reset_peer_recv(sk_stream *s, ssize_t n, const void *buf) {
  SK__UNUSED(buf);
  if (n > 0)
    return;
  w.end[0] = (int)n;
  close_one(s);
}

static void reset(unsigned flags) {
  sk_relay_options o = {0};
  struct linger l = {1, 0};
  o.flags = flags;
  int fd = world_open(1, NULL);
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, reset_relay_cb));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, reset_peer_recv));
  /* Some bytes through first, then the reset. */
  assert_int_equal(send(fd, "hello", 5, 0), 5);
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
  close(fd);
  sk_test_run(&w.loop, DEADLINE_MS);
  assert_int_equal(w.rdone, 1);
  assert_true(w.rstatus == -ECONNRESET || w.rstatus == -EPIPE);
  assert_ptr_equal(w.rfailed, &w.a);
  assert_int_equal(w.end[0], -ECONNRESET); /* pb saw the passed-on reset */
  world_done();
}

static void test_reset_splice(void **state) {
  SK__UNUSED(state);
  reset(0);
}

static void test_reset_copy(void **state) {
  SK__UNUSED(state);
  reset(SK_RELAY_NO_SPLICE);
}

/* The other way round, while bytes move towards it: pb resets with data
 * unread, the relay fails on b (a splice or send into the reset socket,
 * or reading it), and the caller's abort of a reaches pa. */
static void reset_dest_relay_cb(sk_relay *r, int status) {
  relay_cb(r, status);
  sk_stream_abort(&w.a, closed_cb);
  close_one(&w.b);
}

static void reset_dest(unsigned flags) {
  sk_relay_options o = {0};
  struct linger l = {1, 0};
  int fd;
  o.flags = flags;
  world_open(0, &fd);
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, reset_dest_relay_cb));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pa, reset_peer_recv));
  SK_ASSERT_OK(sk_stream_send(&w.pa, pat[0], BULK, NULL, NULL));
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
  close(fd);
  sk_test_run(&w.loop, DEADLINE_MS);
  assert_int_equal(w.rdone, 1);
  assert_true(w.rstatus == -ECONNRESET || w.rstatus == -EPIPE);
  assert_ptr_equal(w.rfailed, &w.b);
  assert_int_equal(w.end[0], -ECONNRESET); /* pa saw the passed-on reset */
  world_done();
}

static void test_reset_dest_splice(void **state) {
  SK__UNUSED(state);
  reset_dest(0);
}

static void test_reset_dest_copy(void **state) {
  SK__UNUSED(state);
  reset_dest(SK_RELAY_NO_SPLICE);
}

/* ---- back-pressure: pb does not read ---- */

#define BP_QUEUE       (32u * 1024u)
#define BP_QUIET_TICKS 40 /* ticks of 5 ms without progress = stalled */

static struct {
  int fd, pb;
  sk_timer t;
  size_t sent, cap, maxq, maxmem, queue;
  int quiet;
  double cpu0, wall0; /* at the start of the quiet period */
} bp;

static double clock_s(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t sockbuf(int fd, int opt) {
  int v = 0;
  socklen_t len = sizeof(v);
  assert_int_equal(getsockopt(fd, SOL_SOCKET, opt, &v, &len), 0);
  return (size_t)v;
}

/* Everything that may hold bytes between pa's send and pb's reading,
 * twice over: the relay's part is max_queue (+ one read for copying).
 * TCP grows socket buffers while data flows (tcp_rmem/tcp_wmem
 * autotuning), so the bound is the largest seen so far, not the sizes
 * at the start. */
static void bp_raise_cap(void) {
  size_t cap =
      2 *
      (sockbuf(bp.fd, SO_SNDBUF) + sockbuf(w.a.sock.fd, SO_RCVBUF) + bp.queue +
       64 * 1024 + sockbuf(w.b.sock.fd, SO_SNDBUF) + sockbuf(bp.pb, SO_RCVBUF));
  bp.cap = cap > bp.cap ? cap : bp.cap;
}

/* pb starts reading everything and ends; pa (raw) ends too. */
static void bp_phase2(void) {
  assert_int_equal(w.rdone, 0);
  assert_true(bp.sent > 0);
  shutdown(bp.fd, SHUT_WR);
  SK_ASSERT_OK(sk_stream_open(&w.pb, bp.pb));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, peer_recv));
  SK_ASSERT_OK(sk_stream_shutdown(&w.pb, NULL, NULL));
  w.end[1] = SK_EOF; /* pa is raw: its side is read after the loop */
}

static void bp_tick(sk_timer *t) {
  size_t before = bp.sent;
  size_t q = sk_stream_write_queue_size(&w.b);
  size_t m = sk_stream_write_queue_memory(&w.b);
  bp.maxq = q > bp.maxq ? q : bp.maxq;
  bp.maxmem = m > bp.maxmem ? m : bp.maxmem;
  for (;;) {
    size_t off = bp.sent % sizeof(pat[0]);
    size_t k = sizeof(pat[0]) - off < 65536 ? sizeof(pat[0]) - off : 65536;
    ssize_t n = send(bp.fd, pat[0] + off, k, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) {
      assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
      break;
    }
    bp.sent += (size_t)n;
    /* A relay that does not stop reading would go past any bound. */
    if (bp.sent > bp.cap)
      bp_raise_cap();
    if (bp.sent > bp.cap)
      fail_msg("%zu bytes taken, more than the %zu that buffers and the "
               "relay's queue can hold",
               bp.sent, bp.cap);
  }
  /* Stalled: no byte taken for a while. (A slow machine may stall
   * briefly; the bound above is what the test asserts.) */
  bp.quiet = bp.sent == before ? bp.quiet + 1 : 0;
  if (bp.quiet == 1) {
    bp.cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    bp.wall0 = clock_s(CLOCK_MONOTONIC);
  }
  if (bp.quiet >= BP_QUIET_TICKS) {
    /* A stalled relay waits: it does not poll a socket it cannot read
     * (level-triggered readiness would spin the loop at 100% CPU). */
    double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - bp.cpu0;
    double wall = clock_s(CLOCK_MONOTONIC) - bp.wall0;
    if (cpu > 0.5 * wall)
      fail_msg("stalled relay used %.3f s CPU in %.3f s", cpu, wall);
    sk_close(&t->h, NULL);
    bp_phase2();
  }
}

static void backpressure(unsigned flags, size_t queue) {
  sk_relay_options o = {0};
  o.flags = flags;
  o.max_queue = queue;
  memset(&bp, 0, sizeof(bp));
  bp.queue = queue != 0 ? queue : SK_RELAY_DEFAULT_QUEUE;
  bp.fd = world_open(1, &bp.pb);
  assert_int_equal(fcntl(bp.fd, F_SETFL, O_NONBLOCK), 0);
  bp_raise_cap();
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, relay_cb));
  SK_ASSERT_OK(sk_timer_init(&w.loop, &bp.t));
  SK_ASSERT_OK(sk_timer_start(&bp.t, bp_tick, 5, 5));
  sk_test_run(&w.loop, DEADLINE_MS);
  if (!w.r.spliced) {
    /* Read but unwritten: at most max_queue plus one read. */
    assert_true(bp.maxq <= bp.queue + 64 * 1024);
    assert_true(bp.maxmem <= 2 * (bp.queue + 64 * 1024));
  }
  assert_int_equal(w.bad, 0);
  assert_int_equal(w.rdone, 1);
  assert_int_equal(w.rstatus, 0);
  assert_int_equal(w.got[0], bp.sent);
  assert_int_equal(w.r.a_to_b.bytes, bp.sent);
  /* pa got pb's end, passed on, and nothing else. */
  unsigned char c;
  assert_int_equal(fcntl(bp.fd, F_SETFL, 0), 0);
  assert_int_equal(recv(bp.fd, &c, 1, 0), 0);
  close(bp.fd);
  world_done();
}

static void test_backpressure_splice(void **state) {
  SK__UNUSED(state);
  backpressure(0, BP_QUEUE);
}

static void test_backpressure_copy(void **state) {
  SK__UNUSED(state);
  backpressure(SK_RELAY_NO_SPLICE, BP_QUEUE);
}

/* The default queue (256 KiB) is more than a pipe holds (64 KiB): the pipe
 * fills first, and the relay must wait rather than spin. */
static void test_backpressure_splice_default(void **state) {
  SK__UNUSED(state);
  backpressure(0, 0);
}

static void test_backpressure_copy_default(void **state) {
  SK__UNUSED(state);
  backpressure(SK_RELAY_NO_SPLICE, 0);
}

/* ---- bytes queued on b before the start go first ---- */

#define HEADER (4u << 20) /* more than b's socket takes at once */

static void queued_first(unsigned flags) {
  sk_relay_options o = {0};
  o.flags = flags;
  world_open(0, NULL);
  /* The header: the pattern of direction 1, which pb checks too. */
  w.skip[0] = HEADER;
  SK_ASSERT_OK(sk_stream_send(&w.b, pat[1], HEADER, NULL, NULL));
  assert_true(sk_stream_write_queue_size(&w.b) > 0);
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, relay_cb));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pa, peer_recv));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, peer_recv));
  send_and_end(&w.pa, 0, HALF);
  SK_ASSERT_OK(sk_stream_shutdown(&w.pb, NULL, NULL));
  sk_test_run(&w.loop, DEADLINE_MS);
  check_clean_end(HALF, 0);
  world_done();
}

static void test_queued_first_splice(void **state) {
  SK__UNUSED(state);
  queued_first(0);
}

static void test_queued_first_copy(void **state) {
  SK__UNUSED(state);
  queued_first(SK_RELAY_NO_SPLICE);
}

/* ---- stop, or close, while bytes move: no callback, nothing leaks ---- */

static int stop_by_close;

static void stop_recv(sk_stream *s, ssize_t n, const void *buf) {
  SK__UNUSED(buf);
  if (n <= 0) /* the -ECANCELED of the stop below */
    return;
  w.got[0] += (size_t)n;
  if (w.got[0] < 256 * 1024)
    return;
  if (!stop_by_close) {
    sk_relay_stop(&w.r);
    sk_relay_stop(&w.r); /* twice is harmless */
    for (int d = 0; d < 2; d++)
      for (int e = 0; e < 2; e++)
        assert_int_equal(w.r.pipes[d][e], -1);
    assert_false(sk_stream_is_receiving(&w.a));
    assert_false(sk_stream_is_receiving(&w.b));
    /* The streams are the caller's again: b still sends. */
    SK_ASSERT_OK(sk_stream_send(&w.b, "x", 1, NULL, NULL));
  }
  sk_stream_recv_stop(s);
  close_all();
}

static void stop_mid(unsigned flags, int by_close) {
  sk_relay_options o = {0};
  o.flags = flags;
  stop_by_close = by_close;
  world_open(0, NULL);
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, &o, relay_cb));
  SK_ASSERT_OK(sk_stream_recv_start(&w.pb, stop_recv));
  SK_ASSERT_OK(sk_stream_send(&w.pa, pat[0], BULK, NULL, NULL));
  sk_test_run(&w.loop, DEADLINE_MS);
  assert_true(w.got[0] >= 256 * 1024);
  assert_int_equal(w.rdone, 0);
  world_done();
}

static void test_stop_mid_splice(void **state) {
  SK__UNUSED(state);
  stop_mid(0, 0);
}

static void test_stop_mid_copy(void **state) {
  SK__UNUSED(state);
  stop_mid(SK_RELAY_NO_SPLICE, 0);
}

static void test_close_mid_splice(void **state) {
  SK__UNUSED(state);
  stop_mid(0, 1);
}

static void test_close_mid_copy(void **state) {
  SK__UNUSED(state);
  stop_mid(SK_RELAY_NO_SPLICE, 1);
}

/* ---- what the start refuses ---- */

static void ignore_recv(sk_stream *s, ssize_t n, const void *buf) {
  SK__UNUSED(s);
  SK__UNUSED(n);
  SK__UNUSED(buf);
}

static void test_start_errors(void **state) {
  SK__UNUSED(state);
  sk_relay zero;
  sk_stream unopened;
  memset(&zero, 0, sizeof(zero));
  sk_relay_stop(&zero); /* never started: harmless */
  world_open(0, NULL);
  SK_ASSERT_OK(sk_stream_init(&w.loop, &unopened));
  assert_int_equal(sk_relay_start(&w.r, &w.a, &w.a, NULL, relay_cb), -EINVAL);
  assert_int_equal(sk_relay_start(&w.r, &w.a, &w.b, NULL, NULL), -EINVAL);
  assert_int_equal(sk_relay_start(&w.r, &w.a, &unopened, NULL, relay_cb),
                   -EBADF);
  SK_ASSERT_OK(sk_stream_recv_start(&w.b, ignore_recv));
  assert_int_equal(sk_relay_start(&w.r, &w.a, &w.b, NULL, relay_cb), -EBUSY);
  /* Refused whole: a was left alone. */
  assert_false(sk_stream_is_receiving(&w.a));
  assert_null(sk__stream_relay(&w.a));
  SK_ASSERT_OK(sk_stream_recv_stop(&w.b));
  /* A stream one relay owns is busy for another. */
  sk_relay other;
  SK_ASSERT_OK(sk_relay_start(&w.r, &w.a, &w.b, NULL, relay_cb));
  assert_int_equal(sk_relay_start(&other, &w.a, &w.pb, NULL, relay_cb), -EBUSY);
  sk_relay_stop(&w.r);
  close_one(&unopened);
  world_done();
  assert_int_equal(w.rdone, 0);
}

SK_TEST_MAIN(
    cmocka_unit_test(test_bulk_splice), cmocka_unit_test(test_bulk_copy),
    cmocka_unit_test(test_tls_one_side),
    cmocka_unit_test(test_truncation_as_eof),
    cmocka_unit_test(test_truncation_fails),
    cmocka_unit_test(test_urgent_open_splice),
    cmocka_unit_test(test_urgent_fin_splice),
    cmocka_unit_test(test_urgent_open_copy),
    cmocka_unit_test(test_urgent_fin_copy),
    cmocka_unit_test(test_close_before_cb_splice),
    cmocka_unit_test(test_close_before_cb_copy),
    cmocka_unit_test(test_half_close_splice),
    cmocka_unit_test(test_half_close_copy), cmocka_unit_test(test_reset_splice),
    cmocka_unit_test(test_reset_copy), cmocka_unit_test(test_reset_dest_splice),
    cmocka_unit_test(test_reset_dest_copy),
    cmocka_unit_test(test_backpressure_splice),
    cmocka_unit_test(test_backpressure_copy),
    cmocka_unit_test(test_backpressure_splice_default),
    cmocka_unit_test(test_backpressure_copy_default),
    cmocka_unit_test(test_queued_first_splice),
    cmocka_unit_test(test_queued_first_copy),
    cmocka_unit_test(test_stop_mid_splice),
    cmocka_unit_test(test_stop_mid_copy),
    cmocka_unit_test(test_close_mid_splice),
    cmocka_unit_test(test_close_mid_copy), cmocka_unit_test(test_start_errors))
