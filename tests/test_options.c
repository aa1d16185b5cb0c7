/* Tests for the typed socket options (src/lib/options.c).
 *
 * Each option is set and read back, so a setter that silently does nothing
 * or a getter that reads the wrong option fails. Multicast runs on the
 * loopback interface only; where this machine's loopback cannot do it (no
 * MULTICAST flag, no IPv6), the test says so and skips.
 */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "sk_test.h"

static void open_or_fail(sk_socket *s, int family, int type) {
  SK_ASSERT_OK(sk_socket_open(s, family, type, 0));
}

static void test_nodelay(void **state) {
  (void)state;
  int families[] = {AF_INET, AF_INET6};
  for (int i = 0; i < 2; i++) {
    sk_socket s;
    int on = -1;
    open_or_fail(&s, families[i], SOCK_STREAM);
    SK_ASSERT_OK(sk_opt_get_nodelay(&s, &on));
    assert_int_equal(on, 0);
    SK_ASSERT_OK(sk_opt_set_nodelay(&s, 1));
    SK_ASSERT_OK(sk_opt_get_nodelay(&s, &on));
    assert_int_equal(on, 1);
    SK_ASSERT_OK(sk_opt_set_nodelay(&s, 0));
    SK_ASSERT_OK(sk_opt_get_nodelay(&s, &on));
    assert_int_equal(on, 0);
    sk_socket_close(&s, 0);
  }
  /* TCP options on sockets that are not TCP. */
  sk_socket u, x;
  open_or_fail(&u, AF_INET, SOCK_DGRAM);
  assert_int_equal(sk_opt_set_nodelay(&u, 1), -EINVAL);
  open_or_fail(&x, AF_UNIX, SOCK_STREAM);
  assert_int_equal(sk_opt_set_nodelay(&x, 1), -EAFNOSUPPORT);
  sk_socket_close(&u, 0);
  sk_socket_close(&x, 0);
}

static void test_reuse(void **state) {
  (void)state;
  sk_socket s;
  int on = -1;
  open_or_fail(&s, AF_INET, SOCK_STREAM);
  SK_ASSERT_OK(sk_opt_set_reuseaddr(&s, 1));
  SK_ASSERT_OK(sk_opt_get_reuseaddr(&s, &on));
  assert_int_equal(on, 1);
  SK_ASSERT_OK(sk_opt_set_reuseaddr(&s, 0));
  SK_ASSERT_OK(sk_opt_get_reuseaddr(&s, &on));
  assert_int_equal(on, 0);
  SK_ASSERT_OK(sk_opt_set_reuseport(&s, 1));
  SK_ASSERT_OK(sk_opt_get_reuseport(&s, &on));
  assert_int_equal(on, 1);
  SK_ASSERT_OK(sk_opt_set_reuseport(&s, 0));
  SK_ASSERT_OK(sk_opt_get_reuseport(&s, &on));
  assert_int_equal(on, 0);
  sk_socket_close(&s, 0);

  /* SO_REUSEPORT does what it says: two sockets bind one UDP port. */
  sk_socket a, b;
  sk_endpoint ep;
  open_or_fail(&a, AF_INET, SOCK_DGRAM);
  open_or_fail(&b, AF_INET, SOCK_DGRAM);
  SK_ASSERT_OK(sk_opt_set_reuseport(&a, 1));
  SK_ASSERT_OK(sk_opt_set_reuseport(&b, 1));
  SK_ASSERT_OK(sk_endpoint_loopback(&ep, AF_INET, 0));
  SK_ASSERT_OK(sk_socket_bind(&a, &ep));
  SK_ASSERT_OK(sk_socket_local(&a, &ep));
  SK_ASSERT_OK(sk_socket_bind(&b, &ep));
  sk_socket_close(&a, 0);
  sk_socket_close(&b, 0);
}

static void test_keepalive(void **state) {
  (void)state;
  int families[] = {AF_INET, AF_INET6};
  for (int i = 0; i < 2; i++) {
    sk_socket s;
    int on = -1, idle = -1, intvl = -1, cnt = -1;
    open_or_fail(&s, families[i], SOCK_STREAM);
    SK_ASSERT_OK(sk_opt_get_keepalive(&s, &on, NULL, NULL, NULL));
    assert_int_equal(on, 0);
    SK_ASSERT_OK(sk_opt_set_keepalive(&s, 1, 31, 7, 4));
    SK_ASSERT_OK(sk_opt_get_keepalive(&s, &on, &idle, &intvl, &cnt));
    assert_int_equal(on, 1);
    assert_int_equal(idle, 31);
    assert_int_equal(intvl, 7);
    assert_int_equal(cnt, 4);
    /* Values <= 0 leave what is there. */
    SK_ASSERT_OK(sk_opt_set_keepalive(&s, 1, 0, -1, 9));
    SK_ASSERT_OK(sk_opt_get_keepalive(&s, &on, &idle, &intvl, &cnt));
    assert_int_equal(idle, 31);
    assert_int_equal(intvl, 7);
    assert_int_equal(cnt, 9);
    SK_ASSERT_OK(sk_opt_set_keepalive(&s, 0, 0, 0, 0));
    SK_ASSERT_OK(sk_opt_get_keepalive(&s, &on, NULL, NULL, NULL));
    assert_int_equal(on, 0);
    sk_socket_close(&s, 0);
  }
  sk_socket u;
  int on;
  open_or_fail(&u, AF_UNIX, SOCK_STREAM);
  assert_int_equal(sk_opt_set_keepalive(&u, 1, 10, 10, 3), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_get_keepalive(&u, &on, NULL, NULL, NULL),
                   -EAFNOSUPPORT);
  sk_socket_close(&u, 0);
}

static void test_linger(void **state) {
  (void)state;
  sk_socket s;
  int on = -1, secs = -1;
  open_or_fail(&s, AF_INET, SOCK_STREAM);
  SK_ASSERT_OK(sk_opt_get_linger(&s, &on, &secs));
  assert_int_equal(on, 0);
  SK_ASSERT_OK(sk_opt_set_linger(&s, 1, 7));
  SK_ASSERT_OK(sk_opt_get_linger(&s, &on, &secs));
  assert_int_equal(on, 1);
  assert_int_equal(secs, 7);
  SK_ASSERT_OK(sk_opt_set_linger(&s, 0, 0));
  SK_ASSERT_OK(sk_opt_get_linger(&s, &on, &secs));
  assert_int_equal(on, 0);
  assert_int_equal(sk_opt_set_linger(&s, 1, -1), -EINVAL);
  sk_socket_close(&s, 0);
}

static void test_buffers(void **state) {
  (void)state;
  int types[] = {SOCK_STREAM, SOCK_DGRAM};
  for (int i = 0; i < 2; i++) {
    sk_socket s;
    int rcv = 0, snd = 0;
    open_or_fail(&s, AF_INET, types[i]);
    /* Linux doubles the value for its bookkeeping; what was asked for is
     * the lower bound. */
    SK_ASSERT_OK(sk_opt_set_rcvbuf(&s, 65536));
    SK_ASSERT_OK(sk_opt_get_rcvbuf(&s, &rcv));
    assert_true(rcv >= 65536);
    SK_ASSERT_OK(sk_opt_set_sndbuf(&s, 98304));
    SK_ASSERT_OK(sk_opt_get_sndbuf(&s, &snd));
    assert_true(snd >= 98304);
    /* A smaller request gives a smaller buffer: the setter took effect. */
    SK_ASSERT_OK(sk_opt_set_rcvbuf(&s, 8192));
    SK_ASSERT_OK(sk_opt_get_rcvbuf(&s, &rcv));
    assert_true(rcv >= 8192 && rcv < 65536);
    assert_int_equal(sk_opt_set_rcvbuf(&s, 0), -EINVAL);
    assert_int_equal(sk_opt_set_sndbuf(&s, -5), -EINVAL);
    sk_socket_close(&s, 0);
  }
}

static void test_timeouts(void **state) {
  (void)state;
  sk_socket s;
  int ms = -1;
  open_or_fail(&s, AF_INET, SOCK_STREAM);
  SK_ASSERT_OK(sk_opt_get_rcvtimeo(&s, &ms));
  assert_int_equal(ms, 0);
  /* 1.5 s and 2 s are whole numbers of ticks at every usual HZ, so the
   * kernel gives them back exactly. */
  SK_ASSERT_OK(sk_opt_set_rcvtimeo(&s, 1500));
  SK_ASSERT_OK(sk_opt_get_rcvtimeo(&s, &ms));
  assert_int_equal(ms, 1500);
  SK_ASSERT_OK(sk_opt_set_sndtimeo(&s, 2000));
  SK_ASSERT_OK(sk_opt_get_sndtimeo(&s, &ms));
  assert_int_equal(ms, 2000);
  /* The two are independent. */
  SK_ASSERT_OK(sk_opt_get_rcvtimeo(&s, &ms));
  assert_int_equal(ms, 1500);
  SK_ASSERT_OK(sk_opt_set_rcvtimeo(&s, 0));
  SK_ASSERT_OK(sk_opt_get_rcvtimeo(&s, &ms));
  assert_int_equal(ms, 0);
  assert_int_equal(sk_opt_set_sndtimeo(&s, -1), -EINVAL);
  sk_socket_close(&s, 0);
}

static void test_ttl(void **state) {
  (void)state;
  sk_socket s4, s6, u;
  int ttl = -1;
  open_or_fail(&s4, AF_INET, SOCK_DGRAM);
  SK_ASSERT_OK(sk_opt_set_ttl(&s4, 17));
  SK_ASSERT_OK(sk_opt_get_ttl(&s4, &ttl));
  assert_int_equal(ttl, 17);
  assert_true(sk_opt_set_ttl(&s4, 256) < 0);

  /* IPv6 calls it the hop limit. */
  open_or_fail(&s6, AF_INET6, SOCK_STREAM);
  SK_ASSERT_OK(sk_opt_set_ttl(&s6, 33));
  SK_ASSERT_OK(sk_opt_get_ttl(&s6, &ttl));
  assert_int_equal(ttl, 33);

  open_or_fail(&u, AF_UNIX, SOCK_DGRAM);
  assert_int_equal(sk_opt_set_ttl(&u, 5), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_get_ttl(&u, &ttl), -EAFNOSUPPORT);
  sk_socket_close(&s4, 0);
  sk_socket_close(&s6, 0);
  sk_socket_close(&u, 0);
}

static void test_broadcast(void **state) {
  (void)state;
  sk_socket s, s6;
  int on = -1;
  open_or_fail(&s, AF_INET, SOCK_DGRAM);
  SK_ASSERT_OK(sk_opt_get_broadcast(&s, &on));
  assert_int_equal(on, 0);
  SK_ASSERT_OK(sk_opt_set_broadcast(&s, 1));
  SK_ASSERT_OK(sk_opt_get_broadcast(&s, &on));
  assert_int_equal(on, 1);
  SK_ASSERT_OK(sk_opt_set_broadcast(&s, 0));
  SK_ASSERT_OK(sk_opt_get_broadcast(&s, &on));
  assert_int_equal(on, 0);
  /* IPv6 has no broadcast. */
  open_or_fail(&s6, AF_INET6, SOCK_DGRAM);
  assert_int_equal(sk_opt_set_broadcast(&s6, 1), -EAFNOSUPPORT);
  sk_socket_close(&s, 0);
  sk_socket_close(&s6, 0);
}

static void test_v6only(void **state) {
  (void)state;
  sk_socket s;
  int on = -1;
  open_or_fail(&s, AF_INET6, SOCK_STREAM);
  SK_ASSERT_OK(sk_opt_set_v6only(&s, 1));
  SK_ASSERT_OK(sk_opt_get_v6only(&s, &on));
  assert_int_equal(on, 1);
  SK_ASSERT_OK(sk_opt_set_v6only(&s, 0));
  SK_ASSERT_OK(sk_opt_get_v6only(&s, &on));
  assert_int_equal(on, 0);
  sk_socket_close(&s, 0);

  /* The open flags set it too. */
  SK_ASSERT_OK(sk_socket_open(&s, AF_INET6, SOCK_DGRAM, SK_SOCK_V6ONLY));
  SK_ASSERT_OK(sk_opt_get_v6only(&s, &on));
  assert_int_equal(on, 1);
  sk_socket_close(&s, 0);
  SK_ASSERT_OK(sk_socket_open(&s, AF_INET6, SOCK_DGRAM, SK_SOCK_DUALSTACK));
  SK_ASSERT_OK(sk_opt_get_v6only(&s, &on));
  assert_int_equal(on, 0);
  sk_socket_close(&s, 0);

  open_or_fail(&s, AF_INET, SOCK_STREAM);
  assert_int_equal(sk_opt_set_v6only(&s, 1), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_get_v6only(&s, &on), -EAFNOSUPPORT);
  sk_socket_close(&s, 0);
}

static void test_pktinfo(void **state) {
  (void)state;
  int families[] = {AF_INET, AF_INET6};
  for (int i = 0; i < 2; i++) {
    sk_socket s;
    int on = -1;
    open_or_fail(&s, families[i], SOCK_DGRAM);
    SK_ASSERT_OK(sk_opt_get_pktinfo(&s, &on));
    assert_int_equal(on, 0);
    SK_ASSERT_OK(sk_opt_set_pktinfo(&s, 1));
    SK_ASSERT_OK(sk_opt_get_pktinfo(&s, &on));
    assert_int_equal(on, 1);
    SK_ASSERT_OK(sk_opt_set_pktinfo(&s, 0));
    SK_ASSERT_OK(sk_opt_get_pktinfo(&s, &on));
    assert_int_equal(on, 0);
    sk_socket_close(&s, 0);
  }
  sk_socket u;
  open_or_fail(&u, AF_UNIX, SOCK_DGRAM);
  assert_int_equal(sk_opt_set_pktinfo(&u, 1), -EAFNOSUPPORT);
  sk_socket_close(&u, 0);
}

static void multicast_loop_ttl(int family) {
  sk_socket s;
  int v = -1;
  open_or_fail(&s, family, SOCK_DGRAM);
  SK_ASSERT_OK(sk_opt_get_multicast_loop(&s, &v));
  assert_int_equal(v, 1); /* the system default */
  SK_ASSERT_OK(sk_opt_set_multicast_loop(&s, 0));
  SK_ASSERT_OK(sk_opt_get_multicast_loop(&s, &v));
  assert_int_equal(v, 0);
  SK_ASSERT_OK(sk_opt_set_multicast_loop(&s, 1));
  SK_ASSERT_OK(sk_opt_get_multicast_loop(&s, &v));
  assert_int_equal(v, 1);

  SK_ASSERT_OK(sk_opt_set_multicast_ttl(&s, 5));
  SK_ASSERT_OK(sk_opt_get_multicast_ttl(&s, &v));
  assert_int_equal(v, 5);
  SK_ASSERT_OK(sk_opt_set_multicast_ttl(&s, 1));
  SK_ASSERT_OK(sk_opt_get_multicast_ttl(&s, &v));
  assert_int_equal(v, 1);

  /* Choosing the outgoing interface: loopback, then the default again. */
  SK_ASSERT_OK(sk_opt_set_multicast_if(&s, if_nametoindex("lo")));
  SK_ASSERT_OK(sk_opt_set_multicast_if(&s, 0));
  sk_socket_close(&s, 0);
}

static void test_multicast_loop_ttl_v4(void **state) {
  (void)state;
  multicast_loop_ttl(AF_INET);
}

static void test_multicast_loop_ttl_v6(void **state) {
  (void)state;
  multicast_loop_ttl(AF_INET6);
}

/* Joins group on lo, or on the kernel's choice (0) if lo refuses. Returns
 * the interface index used, or -1 (after printing why) if neither works. */
static int join_lo_or_default(sk_socket *s, const sk_endpoint *group) {
  unsigned lo = if_nametoindex("lo");
  int rc = sk_opt_join_group(s, group, lo);
  if (rc == 0)
    return (int)lo;
  if (rc != -ENODEV && rc != -EADDRNOTAVAIL)
    fail_msg("join on lo failed: %d (%s)", rc, sk_strerror(rc));
  int rc0 = sk_opt_join_group(s, group, 0);
  if (rc0 == 0)
    return 0;
  print_message("multicast join failed on lo (%s) and on the default "
                "interface (%s); skipping\n",
                sk_strerror(rc), sk_strerror(rc0));
  return -1;
}

static void join_leave(int family, const char *group_text) {
  sk_socket s;
  sk_endpoint group;
  SK_ASSERT_OK(sk_endpoint_parse(&group, group_text));
  open_or_fail(&s, family, SOCK_DGRAM);
  int ifindex = join_lo_or_default(&s, &group);
  if (ifindex < 0) {
    sk_socket_close(&s, 0);
    skip();
  }
  /* Joining twice is refused: the first join is real. */
  assert_true(sk_opt_join_group(&s, &group, (unsigned)ifindex) < 0);
  SK_ASSERT_OK(sk_opt_leave_group(&s, &group, (unsigned)ifindex));
  /* Leaving a group not joined is an error, so the leave was real too. */
  assert_true(sk_opt_leave_group(&s, &group, (unsigned)ifindex) < 0);
  sk_socket_close(&s, 0);
}

static void test_join_leave_v4(void **state) {
  (void)state;
  join_leave(AF_INET, "239.1.2.3:0");
}

static void test_join_leave_v6(void **state) {
  (void)state;
  join_leave(AF_INET6, "[ff02::1:3]:0");
}

static void test_group_errors(void **state) {
  (void)state;
  sk_socket s4, s6, u;
  sk_endpoint g4, g6, unicast;
  SK_ASSERT_OK(sk_endpoint_parse(&g4, "239.1.2.3:0"));
  SK_ASSERT_OK(sk_endpoint_parse(&g6, "[ff02::1:3]:0"));
  SK_ASSERT_OK(sk_endpoint_parse(&unicast, "127.0.0.1:0"));
  open_or_fail(&s4, AF_INET, SOCK_DGRAM);
  open_or_fail(&s6, AF_INET6, SOCK_DGRAM);
  open_or_fail(&u, AF_UNIX, SOCK_DGRAM);
  /* A group of the other family. */
  assert_int_equal(sk_opt_join_group(&s4, &g6, 0), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_join_group(&s6, &g4, 0), -EAFNOSUPPORT);
  /* Not a multicast address. */
  assert_int_equal(sk_opt_join_group(&s4, &unicast, 0), -EINVAL);
  assert_int_equal(sk_opt_join_group(&s4, NULL, 0), -EINVAL);
  /* Unix sockets have no multicast at all. */
  int v;
  assert_int_equal(sk_opt_join_group(&u, &g4, 0), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_set_multicast_loop(&u, 1), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_get_multicast_ttl(&u, &v), -EAFNOSUPPORT);
  assert_int_equal(sk_opt_set_multicast_if(&u, 1), -EAFNOSUPPORT);
  sk_socket_close(&s4, 0);
  sk_socket_close(&s6, 0);
  sk_socket_close(&u, 0);
}

/* Sends a datagram to a group on lo and receives it through the
 * membership. */
static void multicast_roundtrip(int family, const char *group_text,
                                const char *bind_text) {
  sk_socket rx, tx;
  sk_endpoint group, bound;
  unsigned lo = if_nametoindex("lo");
  SK_ASSERT_OK(sk_endpoint_parse(&group, group_text));
  SK_ASSERT_OK(sk_socket_bind_text(&rx, bind_text));
  int rc = sk_opt_join_group(&rx, &group, lo);
  if (rc != 0) {
    print_message("cannot join %s on lo (%s); skipping\n", group_text,
                  sk_strerror(rc));
    sk_socket_close(&rx, 0);
    skip();
  }
  SK_ASSERT_OK(sk_socket_local(&rx, &bound));
  SK_ASSERT_OK(sk_endpoint_set_port(&group, sk_endpoint_port(&bound)));

  open_or_fail(&tx, family, SOCK_DGRAM);
  SK_ASSERT_OK(sk_opt_set_multicast_if(&tx, lo));
  SK_ASSERT_OK(sk_opt_set_multicast_loop(&tx, 1));
  SK_ASSERT_OK(sk_opt_set_multicast_ttl(&tx, 1));
  ssize_t n = sk_socket_sendto(&tx, "to the group", 12, &group, 1000);
  if (n == -ENETUNREACH || n == -EADDRNOTAVAIL || n == -ENODEV) {
    print_message("cannot send to %s over lo (%s); skipping\n", group_text,
                  sk_strerror((int)n));
    sk_socket_close(&tx, 0);
    sk_socket_close(&rx, 0);
    skip();
  }
  assert_int_equal(n, 12);
  char buf[32];
  sk_endpoint from, txlocal;
  assert_int_equal(sk_socket_recvfrom(&rx, buf, sizeof buf, &from, 5000), 12);
  assert_memory_equal(buf, "to the group", 12);
  SK_ASSERT_OK(sk_socket_local(&tx, &txlocal));
  assert_int_equal(sk_endpoint_port(&from), sk_endpoint_port(&txlocal));

  /* After leaving, the group's traffic no longer arrives. */
  SK_ASSERT_OK(sk_opt_leave_group(&rx, &group, lo));
  assert_int_equal(sk_socket_sendto(&tx, "gone", 4, &group, 1000), 4);
  assert_int_equal(sk_socket_recvfrom(&rx, buf, sizeof buf, NULL, 300),
                   -ETIMEDOUT);
  sk_socket_close(&tx, 0);
  sk_socket_close(&rx, 0);
}

static void test_multicast_roundtrip_v4(void **state) {
  (void)state;
  /* Bound to the group itself, the socket hears nothing else. */
  multicast_roundtrip(AF_INET, "239.1.2.3:0", "239.1.2.3:0");
}

static void test_multicast_roundtrip_v6(void **state) {
  (void)state;
  multicast_roundtrip(AF_INET6, "[ff02::1:3]:0", "[ff02::1:3%lo]:0");
}

static void test_closed_ebadf(void **state) {
  (void)state;
  sk_socket s;
  sk_endpoint g;
  int v;
  SK_ASSERT_OK(sk_endpoint_parse(&g, "239.1.2.3:0"));
  open_or_fail(&s, AF_INET, SOCK_STREAM);
  sk_socket_close(&s, 0);
  assert_int_equal(sk_opt_set_nodelay(&s, 1), -EBADF);
  assert_int_equal(sk_opt_get_nodelay(&s, &v), -EBADF);
  assert_int_equal(sk_opt_set_reuseaddr(&s, 1), -EBADF);
  assert_int_equal(sk_opt_set_reuseport(&s, 1), -EBADF);
  assert_int_equal(sk_opt_set_keepalive(&s, 1, 1, 1, 1), -EBADF);
  assert_int_equal(sk_opt_set_linger(&s, 1, 1), -EBADF);
  assert_int_equal(sk_opt_set_rcvbuf(&s, 4096), -EBADF);
  assert_int_equal(sk_opt_get_sndbuf(&s, &v), -EBADF);
  assert_int_equal(sk_opt_set_rcvtimeo(&s, 10), -EBADF);
  assert_int_equal(sk_opt_get_sndtimeo(&s, &v), -EBADF);
  assert_int_equal(sk_opt_set_ttl(&s, 3), -EBADF);
  assert_int_equal(sk_opt_set_broadcast(&s, 1), -EBADF);
  assert_int_equal(sk_opt_set_v6only(&s, 1), -EBADF);
  assert_int_equal(sk_opt_set_pktinfo(&s, 1), -EBADF);
  assert_int_equal(sk_opt_join_group(&s, &g, 0), -EBADF);
  assert_int_equal(sk_opt_leave_group(&s, &g, 0), -EBADF);
  assert_int_equal(sk_opt_set_multicast_loop(&s, 1), -EBADF);
  assert_int_equal(sk_opt_set_multicast_ttl(&s, 1), -EBADF);
  assert_int_equal(sk_opt_set_multicast_if(&s, 0), -EBADF);
  assert_int_equal(sk_opt_get_linger(NULL, &v, &v), -EINVAL);
}

/* One test per line: tests/CMakeLists.txt registers each line. */
/* clang-format off */
SK_TEST_MAIN(
    cmocka_unit_test(test_nodelay),
    cmocka_unit_test(test_reuse),
    cmocka_unit_test(test_keepalive),
    cmocka_unit_test(test_linger),
    cmocka_unit_test(test_buffers),
    cmocka_unit_test(test_timeouts),
    cmocka_unit_test(test_ttl),
    cmocka_unit_test(test_broadcast),
    cmocka_unit_test(test_v6only),
    cmocka_unit_test(test_pktinfo),
    cmocka_unit_test(test_multicast_loop_ttl_v4),
    cmocka_unit_test(test_multicast_loop_ttl_v6),
    cmocka_unit_test(test_join_leave_v4),
    cmocka_unit_test(test_join_leave_v6),
    cmocka_unit_test(test_group_errors),
    cmocka_unit_test(test_multicast_roundtrip_v4),
    cmocka_unit_test(test_multicast_roundtrip_v6),
    cmocka_unit_test(test_closed_ebadf))
/* clang-format on */
