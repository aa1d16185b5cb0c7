/* UDP batching: recvmmsg batches delivered whole and in order with their
 * addresses, stop and close inside a callback in the middle of a batch,
 * GRO trains split into datagrams, replies gathered and sent with
 * sendmmsg after the batch, GSO seen at a receiver as the right datagram
 * boundaries, and the send queue's memory cap with gathered replies.
 * SK_TEST_ASYNC: run once per backend. */
#include "sk_test.h"
#include "internal.h"

#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>

/* A plain blocking UDP socket on a loopback port of family, for the side
 * of a test that must see exactly what the wire carries. */
static int raw_socket(int family, sk_endpoint *ep) {
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int big = 4 << 20;
  assert_true(fd >= 0);
  SK_ASSERT_OK(sk_endpoint_loopback(ep, family, 0));
  assert_int_equal(bind(fd, &ep->u.sa, ep->len), 0);
  ep->len = sizeof(ep->u);
  assert_int_equal(getsockname(fd, &ep->u.sa, &ep->len), 0);
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  return fd;
}

/* Receives one message on fd within 10 s; returns its length. seg gets the
 * UDP_GRO segment size of a coalesced train, 0 if it was one datagram. */
static ssize_t raw_recv(int fd, void *buf, size_t cap, int *seg) {
  union {
    struct cmsghdr align;
    unsigned char b[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {buf, cap};
  struct msghdr m;
  struct pollfd p = {fd, POLLIN, 0};
  ssize_t n;
  assert_int_equal(poll(&p, 1, 10000), 1);
  memset(&m, 0, sizeof(m));
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.b;
  m.msg_controllen = sizeof(ctl.b);
  n = recvmsg(fd, &m, MSG_DONTWAIT);
  assert_true(n >= 0);
  *seg = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO)
      memcpy(seg, CMSG_DATA(c), sizeof(*seg));
  return n;
}

static void set_rcvbuf(sk_udp *u) {
  int big = 4 << 20;
  (void)setsockopt(u->sock.fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

/* Datagram i of a test: its size, and its bytes (a function of i and k). */
#define NBATCH    50
#define BIG_INDEX 25
static size_t dgram_size(int i) {
  if (i == BIG_INDEX)
    return 65507; /* the largest IPv4 UDP payload */
  return (size_t)(i * 37 % 1400);
}
static unsigned char dgram_byte(int i, size_t k) {
  return (unsigned char)(i * 7 + k * 13);
}
static void send_dgrams(int fd, const sk_endpoint *to, int first, int n) {
  static unsigned char buf[65507];
  for (int i = first; i < first + n; i++) {
    size_t len = dgram_size(i);
    for (size_t k = 0; k < len; k++)
      buf[k] = dgram_byte(i, k);
    assert_int_equal(sendto(fd, buf, len, 0, &to->u.sa, to->len), (ssize_t)len);
  }
}
/* 1 if buf holds datagram i exactly. */
static int dgram_ok(int i, const void *buf, ssize_t n) {
  const unsigned char *b = buf;
  if (n != (ssize_t)dgram_size(i))
    return 0;
  for (size_t k = 0; k < (size_t)n; k++)
    if (b[k] != dgram_byte(i, k))
      return 0;
  return 1;
}

/* ---- a batch delivered whole, in order, with from and to ---- */

static sk_endpoint b_sender, b_self;
static int b_next, b_bad, b_addr_bad, b_after_stop, b_cancelled, b_stop_at,
    b_held_at_cancel;
static int b_close_at, b_close_on_cancel, b_stopped;

static void batch_recv(sk_udp *u, ssize_t n, const void *buf,
                       const sk_endpoint *from, const sk_endpoint *to,
                       unsigned flags) {
  if (n == -ECANCELED) {
    b_cancelled++;
    b_held_at_cancel = u->held != NULL;
    if (b_close_on_cancel)
      sk_close(&u->h, NULL);
    else
      SK_ASSERT_OK(sk_udp_recv_start(u, batch_recv));
    b_stopped = 0;
    return;
  }
  assert_true(n >= 0);
  if (b_stopped)
    b_after_stop++;
  if (flags != 0 || !dgram_ok(b_next, buf, n))
    b_bad++;
  if (!sk_endpoint_equal(from, &b_sender) || to == NULL ||
      !sk_endpoint_equal(to, &b_self))
    b_addr_bad++;
  b_next++;
  if (b_next == b_stop_at) {
    SK_ASSERT_OK(sk_udp_recv_stop(u));
    b_stopped = 1;
  }
  if (b_next == b_close_at || b_next == NBATCH)
    sk_close(&u->h, NULL);
}

/* Sends NBATCH datagrams before the loop runs, so the receiver takes them
 * in several recvmmsg batches. */
static void batch_run(int family, int stop_at, int close_at,
                      int close_on_cancel) {
  sk_loop loop;
  sk_udp u;
  int fd;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_udp_init(&loop, &u));
  SK_ASSERT_OK(sk_endpoint_loopback(&b_self, family, 0));
  SK_ASSERT_OK(sk_udp_bind(&u, &b_self, 0));
  SK_ASSERT_OK(sk_socket_local(&u.sock, &b_self));
  SK_ASSERT_OK(sk_opt_set_pktinfo(&u.sock, 1));
  set_rcvbuf(&u);
  fd = raw_socket(family, &b_sender);
  b_next = b_bad = b_addr_bad = b_after_stop = b_cancelled = 0;
  b_held_at_cancel = b_stopped = 0;
  b_stop_at = stop_at;
  b_close_at = close_at;
  b_close_on_cancel = close_on_cancel;
  send_dgrams(fd, &b_self, 0, NBATCH);
  SK_ASSERT_OK(sk_udp_recv_start(&u, batch_recv));
  sk_test_run(&loop, 20000);
  close(fd);
  sk_test_loop_done(&loop);
}

static void test_udp_batch_whole_in_order_v4(void **state) {
  (void)state;
  batch_run(AF_INET, -1, -1, 0);
  assert_int_equal(b_next, NBATCH);
  assert_int_equal(b_bad, 0);
  assert_int_equal(b_addr_bad, 0);
}

static void test_udp_batch_whole_in_order_v6(void **state) {
  (void)state;
  batch_run(AF_INET6, -1, -1, 0);
  assert_int_equal(b_next, NBATCH);
  assert_int_equal(b_bad, 0);
  assert_int_equal(b_addr_bad, 0);
}

/* Stopped after the 5th datagram of a batch of 16: the rest of the batch
 * is not delivered until receiving restarts, and then it comes first, in
 * order, nothing lost. */
static void test_udp_batch_stop_mid_batch_resumes(void **state) {
  (void)state;
  batch_run(AF_INET, 5, -1, 0);
  assert_int_equal(b_cancelled, 1);
  assert_int_equal(b_held_at_cancel, 1); /* the batch was taken whole */
  assert_int_equal(b_after_stop, 0);
  assert_int_equal(b_next, NBATCH);
  assert_int_equal(b_bad, 0);
  assert_int_equal(b_addr_bad, 0);
}

/* Closed inside the 5th callback: nothing more is delivered. */
static void test_udp_batch_close_mid_batch(void **state) {
  (void)state;
  batch_run(AF_INET, -1, 5, 0);
  assert_int_equal(b_next, 5);
  assert_int_equal(b_bad, 0);
}

/* Stopped mid-batch, then closed with datagrams held: they are freed (the
 * sanitizer build checks the memory), never delivered. */
static void test_udp_batch_close_with_held(void **state) {
  (void)state;
  batch_run(AF_INET, 5, -1, 1);
  assert_int_equal(b_cancelled, 1);
  assert_int_equal(b_held_at_cancel, 1);
  assert_int_equal(b_next, 5);
  assert_int_equal(b_after_stop, 0);
}

/* ---- GRO: a train sent with UDP_SEGMENT arrives as its datagrams ---- */

#define GRO_SEG  1000
#define GRO_N    11 /* ten of GRO_SEG and a shorter last one */
#define GRO_LAST 500
static int g_n, g_bad;
static sk_endpoint g_sender;

static void gro_recv(sk_udp *u, ssize_t n, const void *buf,
                     const sk_endpoint *from, const sk_endpoint *to,
                     unsigned flags) {
  (void)to;
  if (n < 0)
    return;
  size_t want = g_n == GRO_N - 1 ? GRO_LAST : GRO_SEG;
  if (flags != 0 || !sk_endpoint_equal(from, &g_sender) || n != (ssize_t)want ||
      ((const unsigned char *)buf)[0] != g_n ||
      ((const unsigned char *)buf)[n - 1] != g_n)
    g_bad++;
  if (++g_n == GRO_N)
    sk_close(&u->h, NULL);
}

static void test_udp_gro_train_split(void **state) {
  (void)state;
  sk_loop loop;
  sk_udp u;
  sk_endpoint self;
  static unsigned char buf[GRO_SEG * GRO_N];
  union {
    struct cmsghdr align;
    unsigned char b[CMSG_SPACE(sizeof(uint16_t))];
  } ctl;
  uint16_t seg = GRO_SEG;
  int on = 0, fd;
  socklen_t ol = sizeof(on);
  size_t total = GRO_SEG * (GRO_N - 1) + GRO_LAST;

  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_udp_init(&loop, &u));
  SK_ASSERT_OK(sk_endpoint_loopback(&self, AF_INET, 0));
  SK_ASSERT_OK(sk_udp_bind(&u, &self, 0));
  SK_ASSERT_OK(sk_socket_local(&u.sock, &self));
  SK_ASSERT_OK(sk_udp_recv_start(&u, gro_recv));
  if (getsockopt(u.sock.fd, SOL_UDP, UDP_GRO, &on, &ol) < 0) {
    sk_close(&u.h, NULL);
    sk_test_loop_done(&loop);
    skip(); /* a kernel without UDP_GRO (before 5.0) */
  }
  assert_int_equal(on, 1); /* receiving turned GRO on */
  fd = raw_socket(AF_INET, &g_sender);
  for (int i = 0; i < GRO_N; i++)
    memset(buf + (size_t)i * GRO_SEG, i, GRO_SEG);
  struct iovec iov = {buf, total};
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_name = &self.u.sa;
  m.msg_namelen = self.len;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.b;
  m.msg_controllen = sizeof(ctl.b);
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(seg));
  memcpy(CMSG_DATA(c), &seg, sizeof(seg));
  assert_int_equal(sendmsg(fd, &m, 0), (ssize_t)total);
  g_n = g_bad = 0;
  sk_test_run(&loop, 20000);
  close(fd);
  assert_int_equal(g_n, GRO_N);
  assert_int_equal(g_bad, 0);
  sk_test_loop_done(&loop);
}

/* ---- replies gathered in a batch: sendmmsg, GSO, the cap ---- */

#define NREPLY 40
static int r_seen, r_deferred, r_cap_bad, r_cb, r_cb_bad, r_close_at;
static size_t r_reply_len;

static void reply_sent(sk_udp *u, int status, void *arg) {
  (void)u;
  (void)arg;
  r_cb++;
  if (status != 0)
    r_cb_bad++;
}

/* Answers every datagram with r_reply_len bytes (the last of NREPLY with
 * half that), or echoes it when r_reply_len is 0. */
static void reply_recv(sk_udp *u, ssize_t n, const void *buf,
                       const sk_endpoint *from, const sk_endpoint *to,
                       unsigned flags) {
  static unsigned char out[4096];
  size_t len = (size_t)n;
  (void)to;
  (void)flags;
  if (n < 0)
    return;
  if (r_reply_len > 0) {
    len = r_seen == NREPLY - 1 ? r_reply_len / 2 : r_reply_len;
    memset(out, r_seen, len);
    buf = out;
  }
  size_t before = sk_udp_send_queue_size(u);
  unsigned gathered = u->ndefer;
  SK_ASSERT_OK(sk_udp_send(u, buf, len, from, reply_sent, NULL));
  /* Gathered, not sent inside the call (nor queued as refused). */
  if (sk_udp_send_queue_size(u) == before + len && u->ndefer == gathered + 1)
    r_deferred++;
  if (u->wq.mem > u->wq_max)
    r_cap_bad++;
  if (++r_seen == r_close_at)
    sk_close(&u->h, NULL);
}

/* A server socket answering NREPLY datagrams that wait in its queue before
 * the loop runs; the client is a plain socket (with GRO if gro). Returns
 * the client's fd, the server closed and the loop freed. */
#define CAP_DEFAULT SIZE_MAX /* reply_run: leave the queue's cap alone */
static int reply_run(size_t reply_len, size_t cap, int gro, int close_at) {
  sk_loop loop;
  sk_udp u;
  sk_endpoint self, client;
  int fd, on = 1;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_udp_init(&loop, &u));
  SK_ASSERT_OK(sk_endpoint_loopback(&self, AF_INET, 0));
  SK_ASSERT_OK(sk_udp_bind(&u, &self, 0));
  SK_ASSERT_OK(sk_socket_local(&u.sock, &self));
  set_rcvbuf(&u);
  if (cap != CAP_DEFAULT)
    sk_udp_set_send_queue_max(&u, cap);
  fd = raw_socket(AF_INET, &client);
  if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) < 0) {
    close(fd);
    sk_close(&u.h, NULL);
    sk_test_loop_done(&loop);
    return -1;
  }
  r_seen = r_deferred = r_cap_bad = r_cb = r_cb_bad = 0;
  r_reply_len = reply_len;
  r_close_at = close_at > 0 ? close_at : NREPLY;
  send_dgrams(fd, &self, 0, NREPLY);
  SK_ASSERT_OK(sk_udp_recv_start(&u, reply_recv));
  sk_test_run(&loop, 20000);
  sk_test_loop_done(&loop);
  return fd;
}

/* Reads the NREPLY echo replies in order from fd, closes it, and checks
 * every reply's callback ran with status 0. */
static void expect_replies(int fd) {
  static unsigned char buf[65536];
  int seg;
  for (int i = 0; i < NREPLY; i++) {
    ssize_t n = raw_recv(fd, buf, sizeof(buf), &seg);
    assert_true(dgram_ok(i, buf, n));
  }
  close(fd);
  assert_int_equal(r_cb, NREPLY);
  assert_int_equal(r_cb_bad, 0);
}

/* Echo replies sent inside the receive callbacks are gathered (the queue
 * holds them after sk_udp_send returns) and all arrive, in order, with
 * their callbacks run with status 0. */
static void test_udp_replies_gathered_and_flushed(void **state) {
  (void)state;
  int fd = reply_run(0, CAP_DEFAULT, 0, -1);
  assert_int_equal(r_seen, NREPLY);
  assert_int_equal(r_deferred, NREPLY);
  expect_replies(fd);
}

/* The server closes inside its last callback: the replies gathered in that
 * batch still leave, as they would have outside a callback. */
static void test_udp_replies_flushed_on_close(void **state) {
  (void)state;
  expect_replies(reply_run(0, CAP_DEFAULT, 0, NREPLY));
}

/* Same-size replies to one peer leave as GSO trains: a plain receiver sees
 * the right datagram boundaries (the shorter last one included). */
static void test_udp_gso_boundaries(void **state) {
  (void)state;
  static unsigned char buf[65536];
  int seg;
  int fd = reply_run(1200, CAP_DEFAULT, 0, -1);
  for (int i = 0; i < NREPLY; i++) {
    ssize_t n = raw_recv(fd, buf, sizeof(buf), &seg);
    assert_int_equal(seg, 0);
    assert_int_equal(n, i == NREPLY - 1 ? 600 : 1200);
    assert_int_equal(buf[0], i);
    assert_int_equal(buf[n - 1], i);
  }
  close(fd);
  assert_int_equal(r_cb, NREPLY);
  assert_int_equal(r_cb_bad, 0);
}

/* ... and a receiver with GRO gets them as trains: the proof that GSO was
 * used (without it, loopback delivers single datagrams). */
static void test_udp_gso_seen_as_trains(void **state) {
  (void)state;
  static unsigned char buf[65536];
  int seg, trains = 0;
  size_t total = 0, want = 1200 * (NREPLY - 1) + 600;
  int fd = reply_run(1200, CAP_DEFAULT, 1, -1);
  if (fd < 0)
    skip(); /* no UDP_GRO in this kernel */
  while (total < want) {
    ssize_t n = raw_recv(fd, buf, sizeof(buf), &seg);
    if (seg > 0) {
      assert_int_equal(seg, 1200);
      trains++;
    }
    total += (size_t)n;
  }
  close(fd);
  assert_int_equal(total, want);
  assert_true(trains > 0);
}

/* The queue's memory cap holds with gathered replies: a cap of a few
 * requests makes the batch leave early, never exceeds the cap, and every
 * reply still arrives. */
static void test_udp_gathered_replies_respect_cap(void **state) {
  (void)state;
  struct sk__wreq probe;
  size_t one = sizeof(probe) + 4096; /* a small request's memory */
  int fd = reply_run(0, 3 * one, 0, -1);
  assert_int_equal(r_cap_bad, 0);
  assert_true(r_deferred > 0);
  expect_replies(fd);
}

/* With no send queue (cap 0) nothing is gathered: every reply leaves
 * inside its sk_udp_send() call, and all arrive. */
static void test_udp_no_queue_sends_at_once(void **state) {
  (void)state;
  int fd = reply_run(0, 0, 0, -1);
  assert_int_equal(r_seen, NREPLY);
  assert_int_equal(r_deferred, 0);
  assert_int_equal(r_cap_bad, 0);
  expect_replies(fd);
}

/* A datagram too big for UDP, sent inside the receive callback after a
 * gathered reply: -EMSGSIZE at once, as outside a callback, and the reply
 * gathered before it still leaves. */
static int o_rc;
static void oversize_recv(sk_udp *u, ssize_t n, const void *buf,
                          const sk_endpoint *from, const sk_endpoint *to,
                          unsigned flags) {
  static unsigned char huge[70000];
  (void)to;
  (void)flags;
  if (n < 0)
    return;
  SK_ASSERT_OK(sk_udp_send(u, buf, (size_t)n, from, NULL, NULL));
  o_rc = sk_udp_send(u, huge, sizeof(huge), from, NULL, NULL);
  sk_close(&u->h, NULL);
}

static void test_udp_oversize_in_callback_fails_at_once(void **state) {
  (void)state;
  sk_loop loop;
  sk_udp u;
  sk_endpoint self, client;
  static unsigned char buf[65536];
  int seg, fd;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_udp_init(&loop, &u));
  SK_ASSERT_OK(sk_endpoint_loopback(&self, AF_INET, 0));
  SK_ASSERT_OK(sk_udp_bind(&u, &self, 0));
  SK_ASSERT_OK(sk_socket_local(&u.sock, &self));
  fd = raw_socket(AF_INET, &client);
  send_dgrams(fd, &self, 1, 1);
  o_rc = 0;
  SK_ASSERT_OK(sk_udp_recv_start(&u, oversize_recv));
  sk_test_run(&loop, 20000);
  sk_test_loop_done(&loop);
  assert_int_equal(o_rc, -EMSGSIZE);
  assert_true(dgram_ok(1, buf, raw_recv(fd, buf, sizeof(buf), &seg)));
  close(fd);
}

/* sk_udp_send_batch outside any callback: every datagram is accepted and
 * handed to the kernel before the call returns (the receiver sees them
 * without the loop running), in order, with their boundaries; one GRO
 * receiver shows the GSO trains. */
static void test_udp_send_batch(void **state) {
  (void)state;
  sk_loop loop;
  sk_udp u;
  sk_endpoint self, plain, gro;
  static unsigned char data[100][1000];
  static unsigned char buf[65536];
  struct iovec iov[100];
  int fd_plain, fd_gro, on = 1, seg, trains = 0;
  size_t total = 0;

  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_udp_init(&loop, &u));
  SK_ASSERT_OK(sk_endpoint_loopback(&self, AF_INET, 0));
  SK_ASSERT_OK(sk_udp_bind(&u, &self, 0));
  fd_plain = raw_socket(AF_INET, &plain);
  fd_gro = raw_socket(AF_INET, &gro);
  int have_gro = setsockopt(fd_gro, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
  for (int i = 0; i < 100; i++) {
    memset(data[i], i, sizeof(data[i]));
    iov[i].iov_base = data[i];
    iov[i].iov_len = i == 99 ? 10 : sizeof(data[i]);
  }
  assert_int_equal(sk_udp_send_batch(&u, iov, 100, &plain), 100);
  assert_int_equal(sk_udp_send_queue_size(&u), 0);
  for (int i = 0; i < 100; i++) {
    ssize_t n = raw_recv(fd_plain, buf, sizeof(buf), &seg);
    assert_int_equal(n, i == 99 ? 10 : 1000);
    assert_int_equal(buf[0], i);
    assert_int_equal(buf[n - 1], i);
  }
  assert_int_equal(sk_udp_send_batch(&u, iov, 100, &gro), 100);
  while (total < 99 * 1000 + 10) {
    ssize_t n = raw_recv(fd_gro, buf, sizeof(buf), &seg);
    trains += seg > 0;
    total += (size_t)n;
  }
  assert_int_equal(total, 99 * 1000 + 10);
  if (have_gro)
    assert_true(trains > 0);
  /* Oversized: refused at once, nothing accepted. */
  static unsigned char huge[70000];
  iov[0].iov_base = huge;
  iov[0].iov_len = sizeof(huge);
  assert_int_equal(sk_udp_send_batch(&u, iov, 1, &plain), -EMSGSIZE);
  close(fd_plain);
  close(fd_gro);
  sk_close(&u.h, NULL);
  sk_test_loop_done(&loop);
}

SK_TEST_MAIN(cmocka_unit_test(test_udp_batch_whole_in_order_v4),
             cmocka_unit_test(test_udp_batch_whole_in_order_v6),
             cmocka_unit_test(test_udp_batch_stop_mid_batch_resumes),
             cmocka_unit_test(test_udp_batch_close_mid_batch),
             cmocka_unit_test(test_udp_batch_close_with_held),
             cmocka_unit_test(test_udp_gro_train_split),
             cmocka_unit_test(test_udp_replies_gathered_and_flushed),
             cmocka_unit_test(test_udp_replies_flushed_on_close),
             cmocka_unit_test(test_udp_gso_boundaries),
             cmocka_unit_test(test_udp_gso_seen_as_trains),
             cmocka_unit_test(test_udp_gathered_replies_respect_cap),
             cmocka_unit_test(test_udp_no_queue_sends_at_once),
             cmocka_unit_test(test_udp_oversize_in_callback_fails_at_once),
             cmocka_unit_test(test_udp_send_batch))
