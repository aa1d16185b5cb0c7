/* Tests for receive/send flags, scatter/gather, urgent data, the poll set,
 * the connected/bound accessors (src/lib/socket.c) and the generic and
 * newer typed options (src/lib/options.c).
 *
 * Everything talks over loopback (or a network namespace the fast-open
 * test creates for itself). A helper thread never asserts; it records its
 * result for the main thread to check. Waits are bounded by timeouts.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sk_test.h"
#include "internal.h"

/* ---- helpers ---- */

struct pair {
  sk_socket lis, cli, srv;
};

/* A connected TCP pair on loopback. sndbuf/rcvbuf > 0 shrink the client's
 * send and the server's receive buffer before the handshake. */
static void pair_open_bufs(struct pair *p, const char *addr, int sndbuf,
                           int rcvbuf) {
  sk_endpoint ep;
  SK_ASSERT_OK(sk_socket_listen_text(&p->lis, addr, 4));
  if (rcvbuf > 0)
    SK_ASSERT_OK(sk_opt_set_rcvbuf(&p->lis, rcvbuf));
  SK_ASSERT_OK(sk_socket_local(&p->lis, &ep));
  SK_ASSERT_OK(sk_socket_open(&p->cli, p->lis.family, SOCK_STREAM, 0));
  if (sndbuf > 0)
    SK_ASSERT_OK(sk_opt_set_sndbuf(&p->cli, sndbuf));
  SK_ASSERT_OK(sk_socket_connect(&p->cli, &ep, 5000));
  SK_ASSERT_OK(sk_socket_accept(&p->lis, &p->srv, NULL, 5000));
}

static void pair_open(struct pair *p) {
  pair_open_bufs(p, "127.0.0.1:0", 0, 0);
}

static void pair_close(struct pair *p) {
  sk_socket_abort(&p->cli);
  sk_socket_abort(&p->srv);
  sk_socket_close(&p->lis, 0);
}

/* Two UDP sockets on loopback, a connected to b and b to a. */
static void udp_pair(sk_socket *a, sk_socket *b, const char *addr) {
  sk_endpoint ea, eb;
  SK_ASSERT_OK(sk_socket_bind_text(a, addr));
  SK_ASSERT_OK(sk_socket_bind_text(b, addr));
  SK_ASSERT_OK(sk_socket_local(a, &ea));
  SK_ASSERT_OK(sk_socket_local(b, &eb));
  SK_ASSERT_OK(sk_socket_connect(a, &eb, 1000));
  SK_ASSERT_OK(sk_socket_connect(b, &ea, 1000));
}

static void *malloc_or_fail(size_t len) {
  void *p = malloc(len);
  assert_non_null(p);
  return p;
}

/* ---- peek ---- */

/* Peeked bytes are still there for the next receive. */
static void test_peek_then_recv(void **state) {
  (void)state;
  struct pair p;
  pair_open(&p);
  SK_ASSERT_OK(sk_socket_send(&p.cli, "\x16hello", 6, 5000));
  char buf[16] = {0};
  /* Peeking one byte waits for it like a receive does. */
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 1, SK_MSG_PEEK, 5000), 1);
  assert_int_equal((unsigned char)buf[0], 0x16);
  memset(buf, 0, sizeof buf);
  assert_int_equal(sk_socket_recv_all(&p.srv, buf, 6, NULL, 5000), 6);
  assert_memory_equal(buf, "\x16hello", 6);
  /* Nothing is left. */
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 1, SK_MSG_PEEK, 0),
                   -ETIMEDOUT);
  pair_close(&p);
}

/* A peeked datagram stays queued; SK_MSG_TRUNC tells its size. */
static void test_peek_datagram_size(void **state) {
  (void)state;
  sk_socket a, b;
  udp_pair(&a, &b, "127.0.0.1:0");
  unsigned char data[300], buf[400];
  sk_test_fill_random(data, sizeof data, 5);
  SK_ASSERT_OK(sk_socket_send(&a, data, sizeof data, 1000));
  assert_int_equal(
      sk_socket_recv_flags(&b, buf, 10, SK_MSG_PEEK | SK_MSG_TRUNC, 5000), 300);
  assert_memory_equal(buf, data, 10);
  assert_int_equal(sk_socket_recv_flags(&b, buf, 10, SK_MSG_PEEK, 5000),
                   -EMSGSIZE);
  assert_int_equal(sk_socket_recv(&b, buf, sizeof buf, 5000), 300);
  assert_memory_equal(buf, data, sizeof data);
  /* Without peek a truncated datagram is consumed: TRUNC reports it. */
  SK_ASSERT_OK(sk_socket_send(&a, data, sizeof data, 1000));
  assert_int_equal(sk_socket_recv_flags(&b, buf, 20, SK_MSG_TRUNC, 5000), 300);
  assert_int_equal(sk_socket_recv_flags(&b, buf, 20, 0, 0), -ETIMEDOUT);
  sk_socket_close(&a, 0);
  sk_socket_close(&b, 0);
}

/* ---- urgent data ---- */

static void test_oob_byte_and_mark(void **state) {
  (void)state;
  struct pair p;
  pair_open(&p);
  char buf[8] = {0};
  /* No urgent data announced: a receive for it waits and times out. */
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 1, SK_MSG_OOB, 50),
                   -ETIMEDOUT);
  SK_ASSERT_OK(sk_socket_send(&p.cli, "ab", 2, 5000));
  /* "xyz" with OOB: "xy" is normal data, 'z' the urgent byte. */
  SK_ASSERT_OK(sk_socket_send_flags(&p.cli, "xyz", 3, SK_MSG_OOB, NULL, 5000));
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 1, SK_MSG_OOB, 5000), 1);
  assert_int_equal(buf[0], 'z');
  /* The mark sits after "abxy". */
  assert_int_equal(sk_socket_at_mark(&p.srv), 0);
  assert_int_equal(sk_socket_recv_all(&p.srv, buf, 4, NULL, 5000), 4);
  assert_memory_equal(buf, "abxy", 4);
  assert_int_equal(sk_socket_at_mark(&p.srv), 1);
  /* The urgent byte is gone from the normal stream. */
  SK_ASSERT_OK(sk_socket_send(&p.cli, "c", 1, 5000));
  assert_int_equal(sk_socket_recv(&p.srv, buf, sizeof buf, 5000), 1);
  assert_int_equal(buf[0], 'c');
  assert_int_equal(sk_socket_at_mark(&p.srv), 0);
  /* Read once, it cannot be read again. */
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 1, SK_MSG_OOB, 50),
                   -ETIMEDOUT);
  pair_close(&p);
}

static void test_oob_inline(void **state) {
  (void)state;
  struct pair p;
  pair_open(&p);
  int on = 0;
  SK_ASSERT_OK(sk_opt_set_oobinline(&p.srv, 1));
  SK_ASSERT_OK(sk_opt_get_oobinline(&p.srv, &on));
  assert_int_equal(on, 1);
  SK_ASSERT_OK(sk_socket_send_flags(&p.cli, "q!", 2, SK_MSG_OOB, NULL, 5000));
  char buf[4] = {0};
  /* Inline, the urgent byte is read as normal data, not with SK_MSG_OOB. */
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 1, SK_MSG_OOB, 0),
                   -EINVAL);
  assert_int_equal(sk_socket_recv_all(&p.srv, buf, 2, NULL, 5000), 2);
  assert_memory_equal(buf, "q!", 2);
  SK_ASSERT_OK(sk_opt_set_oobinline(&p.srv, 0));
  SK_ASSERT_OK(sk_opt_get_oobinline(&p.srv, &on));
  assert_int_equal(on, 0);
  pair_close(&p);
}

/* Flags that a socket or call cannot honour are refused up front. */
static void test_flags_refused(void **state) {
  (void)state;
  struct pair p;
  pair_open(&p);
  sk_socket a, b;
  udp_pair(&a, &b, "127.0.0.1:0");
  char buf[4];
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 4, 1u << 20, 0), -EINVAL);
  assert_int_equal(
      sk_socket_recv_flags(&p.srv, buf, 4, SK_MSG_PEEK | SK_MSG_WAITALL, 0),
      -EINVAL);
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 4, SK_MSG_TRUNC, 0),
                   -EINVAL);
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 0, SK_MSG_PEEK, 0),
                   -EINVAL);
  assert_int_equal(sk_socket_send_flags(&p.cli, buf, 4, SK_MSG_PEEK, NULL, 0),
                   -EINVAL);
  assert_int_equal(sk_socket_send_flags(&p.cli, buf, 0, SK_MSG_OOB, NULL, 0),
                   -EINVAL);
  assert_int_equal(sk_socket_recv_flags(&b, buf, 4, SK_MSG_WAITALL, 0),
                   -EINVAL);
  assert_int_equal(sk_socket_recv_flags(&b, buf, 4, SK_MSG_OOB, 0),
                   -EOPNOTSUPP);
  assert_int_equal(sk_socket_send_flags(&a, "x", 1, SK_MSG_OOB, NULL, 0),
                   -EOPNOTSUPP);
  struct iovec iov = {.iov_base = buf, .iov_len = 4};
  assert_int_equal(sk_socket_recvv(&p.srv, &iov, 0, 0, 0), -EINVAL);
  assert_int_equal(sk_socket_recvv(&p.srv, NULL, 1, 0, 0), -EINVAL);
  assert_int_equal(sk_socket_sendv(&p.cli, &iov, IOV_MAX + 1, 0, NULL, 0),
                   -EINVAL);
  sk_socket_close(&a, 0);
  sk_socket_close(&b, 0);
  pair_close(&p);
}

/* WAITALL fills the whole buffer, or returns what came before the end. */
static void test_waitall(void **state) {
  (void)state;
  struct pair p;
  pair_open(&p);
  char buf[16] = {0};
  SK_ASSERT_OK(sk_socket_send(&p.cli, "0123", 4, 5000));
  SK_ASSERT_OK(sk_socket_send(&p.cli, "4567", 4, 5000));
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 8, SK_MSG_WAITALL, 5000),
                   8);
  assert_memory_equal(buf, "01234567", 8);
  SK_ASSERT_OK(sk_socket_send(&p.cli, "abc", 3, 5000));
  /* Not enough yet: the timeout returns what did arrive. */
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 8, SK_MSG_WAITALL, 100),
                   3);
  SK_ASSERT_OK(sk_socket_send(&p.cli, "de", 2, 5000));
  SK_ASSERT_OK(sk_socket_shutdown(&p.cli, SK_SHUT_WR));
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 8, SK_MSG_WAITALL, 5000),
                   2);
  assert_memory_equal(buf, "de", 2);
  assert_int_equal(sk_socket_recv_flags(&p.srv, buf, 8, SK_MSG_WAITALL, 5000),
                   0);
  pair_close(&p);
}

/* ---- scatter / gather ---- */

static void test_sendv_recvv_roundtrip(void **state) {
  (void)state;
  struct pair p;
  pair_open(&p);
  struct iovec out[4] = {{(void *)"head:", 5},
                         {NULL, 0},
                         {(void *)"body-body", 9},
                         {(void *)":tail", 5}};
  size_t sent = 0;
  SK_ASSERT_OK(sk_socket_sendv(&p.cli, out, 4, 0, &sent, 5000));
  assert_int_equal(sent, 19);
  char a[3], b[7], c[9];
  struct iovec in[3] = {{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
  assert_int_equal(sk_socket_recvv(&p.srv, in, 3, SK_MSG_WAITALL, 5000), 19);
  assert_memory_equal(a, "hea", 3);
  assert_memory_equal(b, "d:body-", 7);
  assert_memory_equal(c, "body:tail", 9);
  pair_close(&p);
}

static void test_udp_gather_scatter(void **state) {
  (void)state;
  sk_socket a, b;
  udp_pair(&a, &b, "[::1]:0");
  struct iovec out[3] = {
      {(void *)"one ", 4}, {(void *)"datagram ", 9}, {(void *)"only", 4}};
  SK_ASSERT_OK(sk_socket_sendv(&a, out, 3, 0, NULL, 1000));
  char x[10], y[10];
  struct iovec in[2] = {{x, sizeof x}, {y, sizeof y}};
  assert_int_equal(sk_socket_recvv(&b, in, 2, 0, 5000), 17);
  assert_memory_equal(x, "one datagr", 10);
  assert_memory_equal(y, "am only", 7);
  /* Too small for the datagram. */
  SK_ASSERT_OK(sk_socket_sendv(&a, out, 3, 0, NULL, 1000));
  in[1].iov_len = 2;
  assert_int_equal(sk_socket_recvv(&b, in, 2, 0, 5000), -EMSGSIZE);
  sk_socket_close(&a, 0);
  sk_socket_close(&b, 0);
}

/* Many segments (more than one system call takes) of random sizes. */
struct segs {
  unsigned char *data;
  size_t total;
  struct iovec iov[300];
  int cnt;
};

static void segs_make(struct segs *s, size_t total, uint64_t seed) {
  s->data = malloc_or_fail(total);
  s->total = total;
  sk_test_fill_random(s->data, total, seed);
  size_t off = 0;
  s->cnt = 0;
  int n = (int)(sizeof s->iov / sizeof s->iov[0]);
  for (int i = 0; i < n; i++) {
    size_t len = i == n - 1 ? total - off : (total / n) * (size_t)(i % 3) / 2;
    if (len > total - off)
      len = total - off;
    s->iov[i].iov_base = s->data + off;
    s->iov[i].iov_len = len;
    off += len;
  }
  s->cnt = n;
}

struct sender {
  sk_socket *s;
  struct segs *segs;
  size_t sent;
  int rc;
  atomic_int done;
};

static void *sender_main(void *arg) {
  struct sender *a = arg;
  a->rc = sk_socket_sendv(a->s, a->segs->iov, a->segs->cnt, 0, &a->sent, 30000);
  atomic_store(&a->done, 1);
  return NULL;
}

/* A large gather send to a reader that takes small scattered pieces: the
 * sender waits for room again and again; every byte arrives in order. */
static void test_sendv_slow_reader(void **state) {
  (void)state;
  const size_t len = SK_TEST_SANITIZED ? (size_t)256 << 10 : (size_t)2 << 20;
  struct pair p;
  pair_open_bufs(&p, "127.0.0.1:0", 4096, 4096);
  struct segs segs;
  segs_make(&segs, len, 21);
  unsigned char *got = malloc_or_fail(len);
  struct sender snd = {.s = &p.cli, .segs = &segs};
  atomic_init(&snd.done, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, sender_main, &snd), 0);
  size_t off = 0;
  unsigned round = 0;
  while (off < len) {
    size_t a = 1 + round % 700, b = 1 + round % 1300;
    round++;
    if (a > len - off)
      a = len - off;
    if (b > len - off - a)
      b = len - off - a;
    struct iovec in[2] = {{got + off, a}, {got + off + a, b}};
    ssize_t n = sk_socket_recvv(&p.srv, in, b > 0 ? 2 : 1, 0, 10000);
    assert_true(n > 0);
    off += (size_t)n;
  }
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(snd.rc, 0);
  assert_int_equal(snd.sent, len);
  assert_memory_equal(got, segs.data, len);
  free(got);
  free(segs.data);
  pair_close(&p);
}

/* A gather send that times out counts exactly what the peer gets. */
static void test_sendv_counts_on_timeout(void **state) {
  (void)state;
  const size_t len = (size_t)8 << 20;
  struct pair p;
  pair_open_bufs(&p, "127.0.0.1:0", 4096, 4096);
  struct segs segs;
  segs_make(&segs, len, 22);
  unsigned char *got = malloc_or_fail(len);
  size_t sent = SIZE_MAX;
  assert_int_equal(sk_socket_sendv(&p.cli, segs.iov, segs.cnt, 0, &sent, 200),
                   -ETIMEDOUT);
  assert_true(sent > 0 && sent < len);
  SK_ASSERT_OK(sk_socket_shutdown(&p.cli, SK_SHUT_WR));
  size_t off = 0;
  for (;;) {
    ssize_t n = sk_socket_recv(&p.srv, got + off, len - off, 5000);
    assert_true(n >= 0);
    if (n == 0)
      break;
    off += (size_t)n;
  }
  assert_int_equal(off, sent);
  assert_memory_equal(got, segs.data, sent);
  free(got);
  free(segs.data);
  pair_close(&p);
}

/* ---- poll set ---- */

static void test_poll_set(void **state) {
  (void)state;
  struct pair p[3];
  for (int i = 0; i < 3; i++)
    pair_open(&p[i]);
  sk_pollset_entry e[4];
  for (int i = 0; i < 3; i++)
    e[i] = (sk_pollset_entry){&p[i].srv, SK_POLL_READ, -1};
  e[3] = (sk_pollset_entry){NULL, SK_POLL_READ, -1};

  /* Nothing readable: a timeout, after at least the time asked. */
  uint64_t t0 = sk__now_ms();
  assert_int_equal(sk_socket_poll_set(e, 4, 100), 0);
  assert_true(sk__now_ms() - t0 >= 100);
  for (int i = 0; i < 4; i++)
    assert_int_equal(e[i].revents, 0);

  SK_ASSERT_OK(sk_socket_send(&p[1].cli, "x", 1, 5000));
  assert_int_equal(sk_socket_poll_set(e, 4, 5000), 1);
  assert_int_equal(e[0].revents, 0);
  assert_int_equal(e[1].revents, SK_POLL_READ);
  assert_int_equal(e[2].revents, 0);
  assert_int_equal(e[3].revents, 0);

  /* All three can be written to; the one with data is also readable. */
  for (int i = 0; i < 3; i++)
    e[i].events = SK_POLL_READ | SK_POLL_WRITE;
  assert_int_equal(sk_socket_poll_set(e, 3, 5000), 3);
  assert_int_equal(e[0].revents, SK_POLL_WRITE);
  assert_int_equal(e[1].revents, SK_POLL_READ | SK_POLL_WRITE);
  assert_int_equal(e[2].revents, SK_POLL_WRITE);

  /* A peer that resets shows as an error. */
  sk_socket_abort(&p[2].cli);
  e[2].events = SK_POLL_READ;
  assert_true(sk_socket_poll_set(&e[2], 1, 5000) == 1);
  assert_true(e[2].revents & SK_POLL_ERROR);

  e[0].events = 1 << 10;
  assert_int_equal(sk_socket_poll_set(e, 3, 0), -EINVAL);
  e[0].events = SK_POLL_READ;
  sk_socket_abort(&p[0].srv);
  assert_int_equal(sk_socket_poll_set(e, 3, 0), -EBADF);
  assert_int_equal(sk_socket_poll_set(NULL, 1, 0), -EINVAL);
  assert_int_equal(sk_socket_poll_set(NULL, 0, 0), 0);
  for (int i = 0; i < 3; i++)
    pair_close(&p[i]);
}

/* ---- connected / bound ---- */

static void test_connected_and_bound(void **state) {
  (void)state;
  sk_socket s = SK_SOCKET_INIT;
  assert_int_equal(sk_socket_is_bound(&s), -EBADF);
  assert_int_equal(sk_socket_is_connected(&s), -EBADF);
  SK_ASSERT_OK(sk_socket_open(&s, AF_INET, SOCK_STREAM, 0));
  assert_int_equal(sk_socket_is_bound(&s), 0);
  assert_int_equal(sk_socket_is_connected(&s), 0);
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  SK_ASSERT_OK(sk_socket_bind(&s, &ep));
  assert_int_equal(sk_socket_is_bound(&s), 1);
  assert_int_equal(sk_socket_is_connected(&s), 0);
  sk_socket_close(&s, 0);

  struct pair p;
  pair_open(&p);
  assert_int_equal(sk_socket_is_connected(&p.lis), 0);
  assert_int_equal(sk_socket_is_bound(&p.lis), 1);
  assert_int_equal(sk_socket_is_connected(&p.cli), 1);
  assert_int_equal(sk_socket_is_bound(&p.cli), 1);
  assert_int_equal(sk_socket_is_connected(&p.srv), 1);
  pair_close(&p);

  SK_ASSERT_OK(sk_socket_open(&s, AF_UNIX, SOCK_DGRAM, 0));
  assert_int_equal(sk_socket_is_bound(&s), 0);
  char path[64];
  snprintf(path, sizeof path, "unix:/tmp/sk-sockopt-%d.sock", (int)getpid());
  SK_ASSERT_OK(sk_endpoint_parse(&ep, path));
  SK_ASSERT_OK(sk_socket_bind(&s, &ep));
  assert_int_equal(sk_socket_is_bound(&s), 1);
  unlink(path + 5);
  sk_socket_close(&s, 0);
}

/* ---- options ---- */

static void test_opt_raw(void **state) {
  (void)state;
  sk_socket t, u, x;
  SK_ASSERT_OK(sk_socket_open(&t, AF_INET, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_socket_open(&u, AF_INET6, SOCK_DGRAM, 0));
  SK_ASSERT_OK(sk_socket_open(&x, AF_UNIX, SOCK_STREAM, 0));
  int v = 1, got = 0;
  size_t len = sizeof got;
  SK_ASSERT_OK(sk_opt_set_raw(&t, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
  SK_ASSERT_OK(sk_opt_get_raw(&t, SOL_SOCKET, SO_KEEPALIVE, &got, &len));
  assert_int_equal(len, sizeof got);
  assert_int_equal(got, 1);
  v = 7;
  SK_ASSERT_OK(sk_opt_set_raw(&t, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof v));
  len = sizeof got;
  SK_ASSERT_OK(sk_opt_get_raw(&t, IPPROTO_TCP, TCP_KEEPCNT, &got, &len));
  assert_int_equal(got, 7);
  /* The level must fit the socket. */
  assert_int_equal(sk_opt_set_raw(&t, IPPROTO_IPV6, IPV6_TCLASS, &v, sizeof v),
                   -EAFNOSUPPORT);
  assert_int_equal(sk_opt_set_raw(&x, IPPROTO_IP, IP_TOS, &v, sizeof v),
                   -EAFNOSUPPORT);
  assert_int_equal(sk_opt_set_raw(&u, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v),
                   -EINVAL);
  assert_int_equal(sk_opt_set_raw(&t, IPPROTO_UDP, 1, &v, sizeof v), -EINVAL);
  /* Bad arguments and the kernel's own answer. */
  assert_int_equal(sk_opt_set_raw(&t, SOL_SOCKET, SO_KEEPALIVE, NULL, 4),
                   -EINVAL);
  assert_int_equal(sk_opt_get_raw(&t, SOL_SOCKET, SO_KEEPALIVE, &got, NULL),
                   -EINVAL);
  assert_int_equal(sk_opt_set_raw(&t, SOL_SOCKET, 12345, &v, sizeof v),
                   -ENOPROTOOPT);
  v = 0x28;
  SK_ASSERT_OK(sk_opt_set_raw(&u, IPPROTO_IPV6, IPV6_TCLASS, &v, sizeof v));
  len = sizeof got;
  SK_ASSERT_OK(sk_opt_get_raw(&u, IPPROTO_IPV6, IPV6_TCLASS, &got, &len));
  assert_int_equal(got, 0x28);
  sk_socket_close(&t, 0);
  sk_socket_close(&u, 0);
  sk_socket_close(&x, 0);
}

static void test_opt_tos(void **state) {
  (void)state;
  sk_socket s4, s6, x;
  SK_ASSERT_OK(sk_socket_open(&s4, AF_INET, SOCK_DGRAM, 0));
  SK_ASSERT_OK(sk_socket_open(&s6, AF_INET6, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_socket_open(&x, AF_UNIX, SOCK_DGRAM, 0));
  int v = -1;
  SK_ASSERT_OK(sk_opt_set_tos(&s4, 0x20));
  SK_ASSERT_OK(sk_opt_get_tos(&s4, &v));
  assert_int_equal(v, 0x20);
  SK_ASSERT_OK(sk_opt_set_tos(&s6, 0xb8));
  SK_ASSERT_OK(sk_opt_get_tos(&s6, &v));
  assert_int_equal(v, 0xb8);
  assert_int_equal(sk_opt_set_tos(&s4, 256), -EINVAL);
  assert_int_equal(sk_opt_set_tos(&s4, -1), -EINVAL);
  assert_int_equal(sk_opt_set_tos(&x, 0x20), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_get_tos(&x, &v), -EAFNOSUPPORT);
  sk_socket_close(&s4, 0);
  sk_socket_close(&s6, 0);
  sk_socket_close(&x, 0);
}

static int read_int_file(const char *path) {
  FILE *f = fopen(path, "r");
  int v = -1;
  if (f == NULL)
    return -1;
  if (fscanf(f, "%d", &v) != 1)
    v = -1;
  fclose(f);
  return v;
}

static void mtu_roundtrip(const char *addr) {
  sk_socket a, b;
  udp_pair(&a, &b, addr);
  int v = -1;
  SK_ASSERT_OK(sk_opt_set_mtu_discover(&a, SK_PMTU_DO));
  SK_ASSERT_OK(sk_opt_get_mtu_discover(&a, &v));
  assert_int_equal(v, SK_PMTU_DO);
  SK_ASSERT_OK(sk_opt_get_dontfragment(&a, &v));
  assert_int_equal(v, 1);
  SK_ASSERT_OK(sk_opt_set_dontfragment(&a, 0));
  SK_ASSERT_OK(sk_opt_get_mtu_discover(&a, &v));
  assert_int_equal(v, SK_PMTU_DONT);
  SK_ASSERT_OK(sk_opt_get_dontfragment(&a, &v));
  assert_int_equal(v, 0);
  SK_ASSERT_OK(sk_opt_set_mtu_discover(&a, SK_PMTU_PROBE));
  SK_ASSERT_OK(sk_opt_get_dontfragment(&a, &v));
  assert_int_equal(v, 1);
  assert_int_equal(sk_opt_set_mtu_discover(&a, 9), -EINVAL);
  /* Loopback's MTU, on a connected socket (IPv4 caps a route's MTU at
   * 65535, the largest IPv4 packet). */
  int lo_mtu = read_int_file("/sys/class/net/lo/mtu");
  assert_true(lo_mtu > 0);
  if (a.family == AF_INET && lo_mtu > 65535)
    lo_mtu = 65535;
  SK_ASSERT_OK(sk_opt_get_mtu(&a, &v));
  assert_int_equal(v, lo_mtu);
  /* With DF set, a datagram over the path MTU is refused. */
  SK_ASSERT_OK(sk_opt_set_dontfragment(&a, 1));
  static unsigned char big[65536 + 100];
  assert_int_equal(sk_socket_send(&a, big, sizeof big, 1000), -EMSGSIZE);
  sk_socket_close(&a, 0);
  sk_socket_close(&b, 0);
}

static void test_opt_mtu(void **state) {
  (void)state;
  mtu_roundtrip("127.0.0.1:0");
  mtu_roundtrip("[::1]:0");
  sk_socket s, x;
  int v;
  SK_ASSERT_OK(sk_socket_open(&s, AF_INET, SOCK_DGRAM, 0));
  assert_int_equal(sk_opt_get_mtu(&s, &v), -ENOTCONN);
  SK_ASSERT_OK(sk_socket_open(&x, AF_UNIX, SOCK_STREAM, 0));
  assert_int_equal(sk_opt_set_dontfragment(&x, 1), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_get_mtu(&x, &v), -EAFNOSUPPORT);
  sk_socket_close(&s, 0);
  sk_socket_close(&x, 0);
}

static void test_opt_tcp_and_priority(void **state) {
  (void)state;
  sk_socket t, u;
  SK_ASSERT_OK(sk_socket_open(&t, AF_INET6, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_socket_open(&u, AF_INET, SOCK_DGRAM, 0));
  int v = -1;
  SK_ASSERT_OK(sk_opt_set_user_timeout(&t, 4500));
  SK_ASSERT_OK(sk_opt_get_user_timeout(&t, &v));
  assert_int_equal(v, 4500);
  assert_int_equal(sk_opt_set_user_timeout(&t, -1), -EINVAL);
  assert_int_equal(sk_opt_set_user_timeout(&u, 100), -EINVAL);
  SK_ASSERT_OK(sk_opt_set_fastopen_connect(&t, 1));
  SK_ASSERT_OK(sk_opt_get_fastopen_connect(&t, &v));
  assert_int_equal(v, 1);
  assert_int_equal(sk_opt_set_fastopen(&u, 5), -EINVAL);
  assert_int_equal(sk_opt_set_oobinline(&u, 1), -EINVAL);
  SK_ASSERT_OK(sk_opt_set_priority(&u, 5));
  SK_ASSERT_OK(sk_opt_get_priority(&u, &v));
  assert_int_equal(v, 5);
  assert_int_equal(sk_opt_set_priority(&u, -1), -EINVAL);
  assert_int_equal(sk_opt_get_priority(&u, NULL), -EINVAL);
  sk_socket_close(&t, 0);
  sk_socket_close(&u, 0);
}

/* ---- TCP Fast Open ---- */

/* Tries to run the rest of this test process in a network namespace of
 * its own, with loopback up and fast open on for both sides. Returns 1 on
 * success; 0 when not allowed (the host's setting then decides). */
static int private_netns_with_fastopen(void) {
  if (unshare(CLONE_NEWNET) != 0)
    return 0;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  assert_int_equal(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
  ifr.ifr_flags |= IFF_UP;
  assert_int_equal(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
  close(fd);
  FILE *f = fopen("/proc/sys/net/ipv4/tcp_fastopen", "w");
  if (f == NULL)
    return 1;
  fputs("3\n", f);
  fclose(f);
  return 1;
}

/* One fast-open connection: returns 1 if the data rode on the SYN. */
static int fastopen_exchange(const sk_endpoint *ep, sk_socket *lis,
                             const char *msg) {
  sk_socket c, a;
  SK_ASSERT_OK(sk_socket_open(&c, AF_INET, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_opt_set_fastopen_connect(&c, 1));
  SK_ASSERT_OK(sk_socket_connect(&c, ep, 5000));
  SK_ASSERT_OK(sk_socket_send(&c, msg, strlen(msg), 5000));
  SK_ASSERT_OK(sk_socket_accept(lis, &a, NULL, 5000));
  char buf[64] = {0};
  assert_int_equal(sk_socket_recv_all(&a, buf, strlen(msg), NULL, 5000),
                   (ssize_t)strlen(msg));
  assert_string_equal(buf, msg);
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  memset(&ti, 0, sizeof ti);
  assert_int_equal(getsockopt(c.fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
  sk_socket_abort(&c);
  sk_socket_abort(&a);
  return (ti.tcpi_options & TCPI_OPT_SYN_DATA) != 0;
}

static void test_fastopen(void **state) {
  (void)state;
  int own_ns = private_netns_with_fastopen();
  int mode = read_int_file("/proc/sys/net/ipv4/tcp_fastopen");
  sk_socket lis;
  sk_endpoint ep;
  SK_ASSERT_OK(sk_socket_open(&lis, AF_INET, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  SK_ASSERT_OK(sk_socket_bind(&lis, &ep));
  int qlen = -1;
  SK_ASSERT_OK(sk_opt_set_fastopen(&lis, 8));
  SK_ASSERT_OK(sk_opt_get_fastopen(&lis, &qlen));
  assert_int_equal(qlen, 8);
  assert_int_equal(sk_opt_set_fastopen(&lis, -1), -EINVAL);
  SK_ASSERT_OK(sk_socket_listen(&lis, 8));
  SK_ASSERT_OK(sk_socket_local(&lis, &ep));

  /* The first connection fetches the cookie; the second carries its data
   * on the SYN. Either way every byte arrives. */
  (void)fastopen_exchange(&ep, &lis, "first");
  int on_syn = fastopen_exchange(&ep, &lis, "second, on the SYN");
  if (mode >= 0 && (mode & 3) == 3) {
    assert_int_equal(on_syn, 1);
  } else {
    print_message("tcp_fastopen is %d here (own namespace: %s): the data "
                  "arrived but its riding on the SYN is not checked\n",
                  mode, own_ns ? "yes" : "no");
  }
  sk_socket_close(&lis, 0);
}

/* linger(on, 0) then sk_socket_close(): a reset at once, as the option
 * (and .NET's LingerState) promise, not a FIN and a wait for a peer that
 * never closes (which ended in -ETIMEDOUT, then the reset). */
static void test_close_with_zero_linger_resets(void **state) {
  (void)state;
  struct pair p = {SK_SOCKET_INIT, SK_SOCKET_INIT, SK_SOCKET_INIT};
  char b;
  pair_open(&p);
  SK_ASSERT_OK(sk_opt_set_linger(&p.cli, 1, 0));
  assert_int_equal(sk_socket_close(&p.cli, 2000), 0);
  assert_int_equal(sk_socket_recv(&p.srv, &b, 1, 5000), -ECONNRESET);
  pair_close(&p);
}

SK_TEST_MAIN(
    cmocka_unit_test(test_peek_then_recv),
    cmocka_unit_test(test_peek_datagram_size),
    cmocka_unit_test(test_oob_byte_and_mark), cmocka_unit_test(test_oob_inline),
    cmocka_unit_test(test_flags_refused), cmocka_unit_test(test_waitall),
    cmocka_unit_test(test_sendv_recvv_roundtrip),
    cmocka_unit_test(test_udp_gather_scatter),
    cmocka_unit_test(test_sendv_slow_reader),
    cmocka_unit_test(test_sendv_counts_on_timeout),
    cmocka_unit_test(test_poll_set), cmocka_unit_test(test_connected_and_bound),
    cmocka_unit_test(test_opt_raw), cmocka_unit_test(test_opt_tos),
    cmocka_unit_test(test_opt_mtu), cmocka_unit_test(test_opt_tcp_and_priority),
    cmocka_unit_test(test_fastopen),
    cmocka_unit_test(test_close_with_zero_linger_resets))
