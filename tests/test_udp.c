/* Async datagrams over IPv4 and IPv6: echo round trips, zero-length
 * datagrams, the destination address of what arrived, cancellation and
 * closing with sends pending. SK_TEST_ASYNC: run once per backend. */
#include "sk_test.h"
#include "internal.h"

static sk_udp server, client;
static sk_endpoint server_ep;
static int replies, zero_replies, bad_replies, dest_ok, dest_seen;
static int client_recv_status;
#define NDGRAMS 100

static void server_recv(sk_udp *u, ssize_t n, const void *buf,
                        const sk_endpoint *from, const sk_endpoint *to,
                        unsigned flags) {
  if (n < 0)
    return;
  assert_int_equal(flags & SK_UDP_TRUNCATED, 0);
  if (to != NULL) {
    dest_seen++;
    if (sk_endpoint_equal(to, &server_ep))
      dest_ok++;
  }
  SK_ASSERT_OK(sk_udp_send(u, buf, (size_t)n, from, NULL, NULL));
}

static void client_recv(sk_udp *u, ssize_t n, const void *buf,
                        const sk_endpoint *from, const sk_endpoint *to,
                        unsigned flags) {
  (void)to;
  (void)flags;
  if (n < 0) {
    client_recv_status = (int)n;
    return;
  }
  assert_true(sk_endpoint_equal(from, &server_ep));
  if (n == 0) {
    zero_replies++;
  } else {
    /* Datagram i carries i+1 bytes, each equal to i & 0xff. */
    const unsigned char *b = buf;
    for (ssize_t k = 0; k < n; k++)
      if (b[k] != (unsigned char)((n - 1) & 0xff))
        bad_replies++;
  }
  if (++replies == NDGRAMS + 1) {
    SK_ASSERT_OK(sk_udp_recv_stop(u));
    sk_close(&server.h, NULL);
  }
}

static void udp_echo(int family) {
  sk_loop loop;
  sk_endpoint any;
  static unsigned char buf[NDGRAMS];
  SK_ASSERT_OK(sk_loop_init(&loop));
  replies = zero_replies = bad_replies = dest_ok = dest_seen = 0;
  client_recv_status = 0;

  SK_ASSERT_OK(sk_udp_init(&loop, &server));
  SK_ASSERT_OK(sk_endpoint_loopback(&server_ep, family, 0));
  SK_ASSERT_OK(sk_udp_bind(&server, &server_ep, 0));
  SK_ASSERT_OK(sk_socket_local(&server.sock, &server_ep));
  SK_ASSERT_OK(sk_opt_set_pktinfo(&server.sock, 1));
  SK_ASSERT_OK(sk_udp_recv_start(&server, server_recv));

  SK_ASSERT_OK(sk_udp_init(&loop, &client));
  SK_ASSERT_OK(sk_endpoint_loopback(&any, family, 0));
  SK_ASSERT_OK(sk_udp_bind(&client, &any, 0));
  SK_ASSERT_OK(sk_udp_recv_start(&client, client_recv));
  /* One zero-length datagram, then NDGRAMS of growing size. */
  SK_ASSERT_OK(sk_udp_send(&client, "", 0, &server_ep, NULL, NULL));
  for (int i = 0; i < NDGRAMS; i++) {
    memset(buf, i & 0xff, (size_t)i + 1);
    SK_ASSERT_OK(
        sk_udp_send(&client, buf, (size_t)i + 1, &server_ep, NULL, NULL));
  }
  sk_test_run(&loop, 10000);
  assert_int_equal(replies, NDGRAMS + 1);
  assert_int_equal(zero_replies, 1);
  assert_int_equal(bad_replies, 0);
  /* Every datagram reported the address it was sent to. */
  assert_int_equal(dest_seen, NDGRAMS + 1);
  assert_int_equal(dest_ok, NDGRAMS + 1);
  assert_int_equal(client_recv_status, -ECANCELED);
  sk_close(&client.h, NULL);
  sk_test_loop_done(&loop);
}

static void test_udp4_echo_and_destination(void **state) {
  (void)state;
  udp_echo(AF_INET);
}

static void test_udp6_echo_and_destination(void **state) {
  (void)state;
  udp_echo(AF_INET6);
}

/* A connected UDP socket learns of an unreachable port through ICMP: the
 * error is reported to the receive callback, and receiving goes on. */
static int icmp_errors;
static void icmp_recv(sk_udp *u, ssize_t n, const void *buf,
                      const sk_endpoint *from, const sk_endpoint *to,
                      unsigned flags) {
  (void)buf;
  (void)from;
  (void)to;
  (void)flags;
  if (n == -ECONNREFUSED) {
    icmp_errors++;
    sk_close(&u->h, NULL);
  }
}

static void test_udp_icmp_unreachable_reported(void **state) {
  (void)state;
  sk_loop loop;
  sk_udp u;
  sk_socket tmp = SK_SOCKET_INIT;
  sk_endpoint dead;
  /* A port with nobody on it. */
  SK_ASSERT_OK(sk_endpoint_loopback(&dead, AF_INET, 0));
  SK_ASSERT_OK(sk_socket_open(&tmp, AF_INET, SOCK_DGRAM, 0));
  SK_ASSERT_OK(sk_socket_bind(&tmp, &dead));
  SK_ASSERT_OK(sk_socket_local(&tmp, &dead));
  sk_socket_close(&tmp, 0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_udp_init(&loop, &u));
  SK_ASSERT_OK(sk_udp_connect(&u, &dead));
  SK_ASSERT_OK(sk_udp_recv_start(&u, icmp_recv));
  icmp_errors = 0;
  SK_ASSERT_OK(sk_udp_send(&u, "ping", 4, NULL, NULL, NULL));
  sk_test_run(&loop, 5000);
  assert_int_equal(icmp_errors, 1);
  sk_test_loop_done(&loop);
}

static int send_cb_calls, send_cb_status;
static void udp_sent(sk_udp *u, int status, void *arg) {
  (void)u;
  (void)arg;
  send_cb_calls++;
  send_cb_status = status;
}

/* A new loop with u bound to a loopback port of family; ep is its address. */
static void udp_on_loopback(sk_loop *loop, sk_udp *u, sk_endpoint *ep,
                            int family) {
  SK_ASSERT_OK(sk_loop_init(loop));
  SK_ASSERT_OK(sk_udp_init(loop, u));
  SK_ASSERT_OK(sk_endpoint_loopback(ep, family, 0));
  SK_ASSERT_OK(sk_udp_bind(u, ep, 0));
  SK_ASSERT_OK(sk_socket_local(&u->sock, ep));
}

/* A send callback runs once, from the loop, never inside sk_udp_send. */
static void test_udp_send_callback_deferred(void **state) {
  (void)state;
  sk_loop loop;
  sk_udp u;
  sk_endpoint ep;
  udp_on_loopback(&loop, &u, &ep, AF_INET6);
  send_cb_calls = 0;
  send_cb_status = 1;
  SK_ASSERT_OK(sk_udp_send(&u, "x", 1, &ep, udp_sent, NULL));
  assert_int_equal(send_cb_calls, 0);
  sk_test_run(&loop, 5000);
  assert_int_equal(send_cb_calls, 1);
  assert_int_equal(send_cb_status, 0);
  /* Oversized datagrams fail at once with a clear error. */
  static unsigned char huge[70000];
  assert_int_equal(sk_udp_send(&u, huge, sizeof(huge), &ep, udp_sent, NULL),
                   -EMSGSIZE);
  sk_close(&u.h, NULL);
  assert_int_equal(sk_udp_send(&u, "x", 1, &ep, NULL, NULL), -EBADF);
  sk_test_loop_done(&loop);
  assert_int_equal(send_cb_calls, 1);
}

/* Stopping and restarting receive in one loop iteration: the -ECANCELED of
 * the stop belongs to the old operation and never reaches the new one. */
static int rs_old, rs_data, rs_cancelled;
static void rs_old_recv(sk_udp *u, ssize_t n, const void *buf,
                        const sk_endpoint *from, const sk_endpoint *to,
                        unsigned flags) {
  (void)u, (void)n, (void)buf, (void)from, (void)to, (void)flags;
  rs_old++;
}
static void rs_new_recv(sk_udp *u, ssize_t n, const void *buf,
                        const sk_endpoint *from, const sk_endpoint *to,
                        unsigned flags) {
  (void)buf, (void)from, (void)to, (void)flags;
  if (n == -ECANCELED)
    rs_cancelled++;
  if (n >= 0) {
    rs_data += (int)n;
    sk_loop_stop(u->h.loop);
  }
}

static void test_udp_recv_restart_gets_no_stale_cancel(void **state) {
  (void)state;
  sk_loop loop;
  sk_udp u;
  sk_endpoint ep;
  udp_on_loopback(&loop, &u, &ep, AF_INET);
  rs_old = rs_data = rs_cancelled = 0;
  SK_ASSERT_OK(sk_udp_recv_start(&u, rs_old_recv));
  SK_ASSERT_OK(sk_udp_recv_stop(&u));
  SK_ASSERT_OK(sk_udp_recv_start(&u, rs_new_recv));
  SK_ASSERT_OK(sk_udp_send(&u, "abc", 3, &ep, NULL, NULL));
  sk_test_run(&loop, 20000);
  assert_int_equal(rs_data, 3);
  assert_int_equal(rs_cancelled, 0);
  assert_int_equal(rs_old, 0);
  sk_close(&u.h, NULL);
  sk_test_loop_done(&loop);
}

SK_TEST_MAIN(cmocka_unit_test(test_udp4_echo_and_destination),
             cmocka_unit_test(test_udp6_echo_and_destination),
             cmocka_unit_test(test_udp_icmp_unreachable_reported),
             cmocka_unit_test(test_udp_send_callback_deferred),
             cmocka_unit_test(test_udp_recv_restart_gets_no_stale_cancel))
