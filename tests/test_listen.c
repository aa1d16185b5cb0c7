/* The listening helpers (sockit/listen.h): N listeners on one port that
 * nobody held before, and taking what the kernel already queued on a listener.
 * SK_TEST_ASYNC: run once per backend (the listeners live on a loop). */
#include "sk_test.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define N 3

static sk_loop loop;

static void setup_loop(void) {
  SK_ASSERT_OK(sk_loop_init(&loop));
}

static void close_all_handles(sk_handle **h, size_t n) {
  for (size_t i = 0; i < n; i++)
    sk_close(h[i], NULL);
  assert_true(sk_loop_run(&loop, SK_RUN_DEFAULT) >= 0);
  SK_ASSERT_OK(sk_loop_free(&loop));
}

static uint16_t local_port(const sk_socket *s) {
  sk_endpoint ep;
  SK_ASSERT_OK(sk_socket_local(s, &ep));
  return sk_endpoint_port(&ep);
}

static int accepted[16], naccepted;
static uint16_t peer_ports[16];

static void take(sk_stream *l, int status, int fd, const sk_endpoint *peer) {
  (void)l;
  assert_int_equal(status, 0);
  assert_true(fd >= 0);
  assert_true(naccepted < 16);
  peer_ports[naccepted] = sk_endpoint_port(peer);
  accepted[naccepted++] = fd;
}

static void close_accepted(void) {
  for (int i = 0; i < naccepted; i++)
    close(accepted[i]);
  naccepted = 0;
}

static void connect_client(sk_socket *c, uint16_t port) {
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  sk_endpoint_set_port(&ep, port);
  SK_ASSERT_OK(sk_socket_open(c, AF_INET, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_socket_connect(c, &ep, 5000));
}

/* Waits (about 5 s at most) until the n listeners hold `want` connections ready
 * to accept between them. connect() can return before the listener's side
 * has taken the handshake's last ACK (the kernel may leave that to its
 * softirq thread on a busy machine), so a non-blocking accept right after
 * it could find nothing yet. For a listener, TCP_INFO's tcpi_unacked is the
 * length of its accept queue. */
static void wait_backlog(sk_stream *ls, int n, unsigned want) {
  const struct timespec pause = {0, 1000000};
  for (int tries = 0; tries < 5000; tries++) {
    unsigned have = 0;
    for (int i = 0; i < n; i++) {
      struct tcp_info ti;
      socklen_t len = sizeof(ti);
      assert_int_equal(
          getsockopt(ls[i].sock.fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
      have += ti.tcpi_unacked;
    }
    if (have >= want)
      return;
    nanosleep(&pause, NULL);
  }
  fail_msg("%u connections never reached the accept queue", want);
}

/* Port 0: every listener of the group gets the same port, and a client
 * reaches one of them. */
static void test_listen_group_port0_shares_one_port(void **state) {
  sk_stream s[N], *sp[N];
  sk_handle *h[N];
  sk_endpoint ep;
  sk_socket c;
  uint16_t port;
  int total = 0;
  (void)state;
  setup_loop();
  for (int i = 0; i < N; i++) {
    SK_ASSERT_OK(sk_stream_init(&loop, &s[i]));
    sp[i] = &s[i];
    h[i] = &s[i].h;
  }
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  SK_ASSERT_OK(sk_stream_listen_group(sp, N, &ep, 0, 0));
  port = local_port(&s[0].sock);
  assert_int_not_equal(port, 0);
  for (int i = 1; i < N; i++)
    assert_int_equal(local_port(&s[i].sock), port);
  connect_client(&c, port);
  wait_backlog(s, N, 1);
  for (int i = 0; i < N; i++) {
    int n = sk_stream_accept_queued(&s[i], take, 8);
    assert_true(n >= 0);
    total += n;
  }
  assert_int_equal(total, 1);
  assert_int_equal(peer_ports[0], local_port(&c));
  close_accepted();
  SK_ASSERT_OK(sk_socket_abort(&c));
  close_all_handles(h, N);
}

/* A port another socket holds, even with SO_REUSEPORT, is "address in
 * use", not silently shared (a bare SO_REUSEPORT bind would join it). */
static void test_listen_group_refuses_a_held_port(void **state) {
  sk_stream other, s[2], *sp[2] = {&s[0], &s[1]};
  sk_handle *h[3] = {&other.h, &s[0].h, &s[1].h};
  sk_endpoint ep;
  (void)state;
  setup_loop();
  SK_ASSERT_OK(sk_stream_init(&loop, &other));
  SK_ASSERT_OK(sk_stream_init(&loop, &s[0]));
  SK_ASSERT_OK(sk_stream_init(&loop, &s[1]));
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  SK_ASSERT_OK(sk_stream_listen(&other, &ep, 0, SK_LISTEN_REUSEPORT));
  sk_endpoint_set_port(&ep, local_port(&other.sock));
  assert_int_equal(sk_stream_listen_group(sp, 2, &ep, 0, 0), -EADDRINUSE);
  /* One listener asked to share the port: refused the same way. */
  assert_int_equal(
      sk_stream_listen_group(sp + 1, 1, &ep, 0, SK_LISTEN_REUSEPORT),
      -EADDRINUSE);
  close_all_handles(h, 3);
}

/* A group that fails part way leaves nothing open that was not open
 * before: the members bound before the failing one are closed again and
 * can be bound once more. (A member the caller already opened fails the
 * group with -EBUSY and is left as it was.) */
static void test_group_failing_part_way_leaves_nothing_open(void **state) {
  sk_stream s[3], *sp[3] = {&s[0], &s[1], &s[2]}, *first[2] = {&s[2], &s[0]};
  sk_udp u[3], *up[3] = {&u[0], &u[1], &u[2]};
  sk_handle *h[6] = {&s[0].h, &s[1].h, &s[2].h, &u[0].h, &u[1].h, &u[2].h};
  sk_endpoint ep;
  (void)state;
  setup_loop();
  for (int i = 0; i < 3; i++) {
    SK_ASSERT_OK(sk_stream_init(&loop, &s[i]));
    SK_ASSERT_OK(sk_udp_init(&loop, &u[i]));
  }
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  SK_ASSERT_OK(sk_stream_listen(&s[2], &ep, 0, 0));
  SK_ASSERT_OK(sk_udp_bind(&u[2], &ep, 0));
  const int s2 = s[2].sock.fd, u2 = u[2].sock.fd;

  /* The last member is the caller's: the two before it are undone. */
  int fds = sk_test_open_fds();
  assert_int_equal(sk_stream_listen_group(sp, 3, &ep, 0, 0), -EBUSY);
  assert_int_equal(s[0].sock.fd, -1);
  assert_int_equal(s[1].sock.fd, -1);
  assert_int_equal(s[2].sock.fd, s2); /* the caller's own: untouched */
  /* No longer a listener: accepting is refused. */
  assert_int_equal(sk_stream_accept_start(&s[0], take), -EINVAL);
  assert_int_equal(sk_test_open_fds(), fds); /* the sockets are closed */
  assert_int_equal(sk_udp_bind_group(up, 3, &ep, 0), -EBUSY);
  assert_int_equal(u[0].sock.fd, -1);
  assert_int_equal(u[1].sock.fd, -1);
  assert_int_equal(u[2].sock.fd, u2);
  assert_int_equal(sk_test_open_fds(), fds);
  /* The first member is the caller's: refused before anything is bound,
   * and the caller's socket stays (a guard: no undo runs here). */
  assert_int_equal(sk_stream_listen_group(first, 2, &ep, 0, 0), -EBUSY);
  assert_int_equal(s[0].sock.fd, -1);
  assert_int_equal(s[2].sock.fd, s2);
  assert_int_equal(sk_test_open_fds(), fds);

  /* The members bind again. */
  SK_ASSERT_OK(sk_stream_listen_group(sp, 2, &ep, 0, 0));
  assert_int_equal(local_port(&s[1].sock), local_port(&s[0].sock));
  SK_ASSERT_OK(sk_udp_bind_group(up, 2, &ep, 0));
  assert_int_equal(local_port(&u[1].sock), local_port(&u[0].sock));
  close_all_handles(h, 6);
}

static void test_udp_group_port0_and_held_port(void **state) {
  sk_udp other, u[N], *up[N];
  sk_handle *h[N + 1];
  sk_endpoint ep;
  uint16_t port;
  (void)state;
  setup_loop();
  SK_ASSERT_OK(sk_udp_init(&loop, &other));
  h[0] = &other.h;
  for (int i = 0; i < N; i++) {
    SK_ASSERT_OK(sk_udp_init(&loop, &u[i]));
    up[i] = &u[i];
    h[i + 1] = &u[i].h;
  }
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  SK_ASSERT_OK(sk_udp_bind(&other, &ep, SK_LISTEN_REUSEPORT));
  SK_ASSERT_OK(sk_udp_bind_group(up, N, &ep, 0));
  port = local_port(&u[0].sock);
  assert_int_not_equal(port, 0);
  assert_int_not_equal(port, local_port(&other.sock));
  for (int i = 1; i < N; i++)
    assert_int_equal(local_port(&u[i].sock), port);
  close_all_handles(h, N + 1);

  setup_loop();
  SK_ASSERT_OK(sk_udp_init(&loop, &other));
  SK_ASSERT_OK(sk_udp_init(&loop, &u[0]));
  SK_ASSERT_OK(sk_udp_init(&loop, &u[1]));
  SK_ASSERT_OK(sk_udp_bind(&other, &ep, SK_LISTEN_REUSEPORT));
  sk_endpoint_set_port(&ep, local_port(&other.sock));
  assert_int_equal(sk_udp_bind_group(up, 2, &ep, 0), -EADDRINUSE);
  h[0] = &other.h;
  h[1] = &u[0].h;
  h[2] = &u[1].h;
  close_all_handles(h, 3);
}

/* After the library refused [::]:port as taken: fails the test unless a
 * plain IPv6-only socket is refused there too (another test holds it). */
static void v6only_taken(int type, uint16_t port) {
  struct sockaddr_in6 sin6;
  int on = 1, fd = socket(AF_INET6, type | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)),
                   0);
  /* As the library binds: SO_REUSEADDR for TCP only (on UDP it would
   * let two sockets share a port). */
  if (type == SOCK_STREAM)
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)),
                     0);
  memset(&sin6, 0, sizeof(sin6));
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  sin6.sin6_addr = in6addr_any;
  int rc = bind(fd, (struct sockaddr *)&sin6, sizeof(sin6));
  int err = errno;
  close(fd);
  if (rc == 0)
    fail_msg("[::]:%u refused as taken, but it was free", (unsigned)port);
  assert_int_equal(err, EADDRINUSE);
}

static int group_bind2(int type, sk_stream *const *sp, sk_udp *const *up,
                       const sk_endpoint *ep, unsigned flags) {
  return type == SOCK_STREAM ? sk_stream_listen_group(sp, 2, ep, 0, flags)
                             : sk_udp_bind_group(up, 2, ep, flags);
}

/* Holds 127.0.0.1:P with a plain socket (returned) and binds the group of
 * two (streams sp, or UDP sockets up) to [::]:P: refused dual-stack, bound
 * IPv6-only. The kernel may give another test's IPv6 socket the port it
 * gives us on IPv4: a refused IPv6-only bind is then not the code's fault
 * (checked), and another port is taken (50 tries at most). */
static int v6only_group_beside_v4(int type, sk_stream *const *sp,
                                  sk_udp *const *up, uint16_t *port) {
  sk_endpoint e6;
  int v4 = -1, rc = -EADDRINUSE;
  SK_ASSERT_OK(sk_endpoint_parse(&e6, "[::]:0"));
  for (int tries = 0; rc == -EADDRINUSE && tries < 50; tries++) {
    if (v4 >= 0) {
      v6only_taken(type, *port);
      close(v4);
    }
    v4 = sk_test_loopback4(type, port);
    sk_endpoint_set_port(&e6, *port);
    assert_int_equal(group_bind2(type, sp, up, &e6, SK_LISTEN_DUALSTACK),
                     -EADDRINUSE);
    rc = group_bind2(type, sp, up, &e6, SK_LISTEN_V6ONLY);
  }
  SK_ASSERT_OK(rc);
  return v4;
}

/* [::]:P with V6ONLY does not clash with 127.0.0.1:P: a group binds it as a
 * single listener does (the probe asks with the members' flags), while a
 * dual-stack [::]:P is refused by both. Streams and UDP alike. */
static void test_group_v6only_beside_ipv4(void **state) {
  sk_stream s[2], *sp[2] = {&s[0], &s[1]};
  sk_udp u[2], *up[2] = {&u[0], &u[1]};
  sk_handle *h[4] = {&s[0].h, &s[1].h, &u[0].h, &u[1].h};
  sk_endpoint e6;
  sk_socket probe;
  int v4, u4;
  uint16_t port = 0;
  (void)state;
  SK_ASSERT_OK(sk_endpoint_parse(&e6, "[::1]:0"));
  if (sk_socket_open(&probe, AF_INET6, SOCK_STREAM, 0) < 0)
    skip(); /* no IPv6 here */
  if (sk_socket_bind(&probe, &e6) < 0) {
    (void)sk_socket_abort(&probe);
    skip();
  }
  SK_ASSERT_OK(sk_socket_abort(&probe));
  setup_loop();
  SK_ASSERT_OK(sk_stream_init(&loop, &s[0]));
  SK_ASSERT_OK(sk_stream_init(&loop, &s[1]));
  SK_ASSERT_OK(sk_udp_init(&loop, &u[0]));
  SK_ASSERT_OK(sk_udp_init(&loop, &u[1]));
  v4 = v6only_group_beside_v4(SOCK_STREAM, sp, NULL, &port);
  assert_int_equal(local_port(&s[0].sock), port);
  assert_int_equal(local_port(&s[1].sock), port);
  u4 = v6only_group_beside_v4(SOCK_DGRAM, NULL, up, &port);
  assert_int_equal(local_port(&u[0].sock), port);
  assert_int_equal(local_port(&u[1].sock), port);
  close(v4);
  close(u4);
  close_all_handles(h, 4);
}

static void test_listen_group_bad_arguments(void **state) {
  sk_stream s, *sp[1] = {&s};
  sk_handle *h[1] = {&s.h};
  sk_endpoint ep;
  (void)state;
  setup_loop();
  SK_ASSERT_OK(sk_stream_init(&loop, &s));
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  assert_int_equal(sk_stream_listen_group(sp, 0, &ep, 0, 0), -EINVAL);
  assert_int_equal(sk_stream_listen_group(NULL, 1, &ep, 0, 0), -EINVAL);
  assert_int_equal(sk_stream_listen_group(sp, 1, NULL, 0, 0), -EINVAL);
  assert_int_equal(sk_udp_bind_group(NULL, 1, &ep, 0), -EINVAL);
  close_all_handles(h, 1);
}

/* What waits in the backlog is taken, at most max at a time, each handed
 * to the callback with its peer; an empty backlog gives 0 at once. */
static void test_accept_queued_takes_the_backlog(void **state) {
  sk_stream l, idle;
  sk_handle *h[2] = {&l.h, &idle.h};
  sk_endpoint ep;
  sk_socket c[3];
  (void)state;
  setup_loop();
  SK_ASSERT_OK(sk_stream_init(&loop, &l));
  SK_ASSERT_OK(sk_stream_init(&loop, &idle));
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:0"));
  SK_ASSERT_OK(sk_stream_listen(&l, &ep, 0, 0));
  assert_int_equal(sk_stream_accept_queued(&l, take, 8), 0);
  for (int i = 0; i < 3; i++)
    connect_client(&c[i], local_port(&l.sock));
  wait_backlog(&l, 1, 3);
  assert_int_equal(sk_stream_accept_queued(&l, take, 2), 2);
  assert_int_equal(naccepted, 2);
  assert_int_equal(sk_stream_accept_queued(&l, take, 8), 1);
  assert_int_equal(naccepted, 3);
  assert_int_equal(sk_stream_accept_queued(&l, take, 8), 0);
  for (int i = 0; i < 3; i++) {
    int found = 0;
    for (int j = 0; j < 3; j++)
      found += peer_ports[j] == local_port(&c[i]);
    assert_int_equal(found, 1);
    SK_ASSERT_OK(sk_socket_abort(&c[i]));
  }
  close_accepted();
  /* Not a listener: an error, and the callback is never called. */
  assert_true(sk_stream_accept_queued(&idle, take, 8) < 0);
  assert_int_equal(sk_stream_accept_queued(&l, NULL, 8), -EINVAL);
  assert_int_equal(naccepted, 0);
  close_all_handles(h, 2);
}

/* The one list of "out of descriptors or memory" accept errors, which a
 * listener survives (sockit-server's accept_error() uses it). */
static void test_err_is_resource(void **state) {
  const int yes[] = {-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM};
  const int no[] = {0, -EINVAL, -ECONNABORTED, -EBADF, SK_EOF, EMFILE};
  (void)state;
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
    assert_int_equal(sk_err_is_resource(yes[i]), 1);
  for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
    assert_int_equal(sk_err_is_resource(no[i]), 0);
}

SK_TEST_MAIN(cmocka_unit_test(test_listen_group_port0_shares_one_port),
             cmocka_unit_test(test_listen_group_refuses_a_held_port),
             cmocka_unit_test(test_udp_group_port0_and_held_port),
             cmocka_unit_test(test_group_v6only_beside_ipv4),
             cmocka_unit_test(test_group_failing_part_way_leaves_nothing_open),
             cmocka_unit_test(test_listen_group_bad_arguments),
             cmocka_unit_test(test_accept_queued_takes_the_backlog),
             cmocka_unit_test(test_err_is_resource))
