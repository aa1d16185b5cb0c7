/* Async streams over TCP (IPv4, IPv6) and Unix sockets: bulk exchange both
 * ways at once, half-close, slow readers, connect failures and timeouts,
 * cancellation, and closing with sends queued. SK_TEST_ASYNC: registered
 * once per backend. */
#include "sk_test.h"
#include "internal.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a symmetric bulk peer ---- */

#define CHUNK     (64 * 1024)
#define QUEUE_CAP (1024 * 1024)

struct gen {
  uint64_t x;
};
static unsigned char gen_byte(struct gen *g) {
  g->x ^= g->x << 13;
  g->x ^= g->x >> 7;
  g->x ^= g->x << 17;
  return (unsigned char)g->x;
}

struct peer {
  sk_stream s;
  size_t total;       /* bytes to send */
  size_t sent;        /* bytes handed to sk_stream_send */
  size_t received;    /* bytes received and verified */
  size_t mismatches;  /* verification failures */
  struct gen tx, rx;  /* generators for what we send / expect */
  int eof;            /* peer's EOF seen */
  int shut;           /* our shutdown completed */
  int send_after_eof; /* half-close test: send only after EOF */
  int closed;
  int send_errors;
};

static void peer_maybe_close(struct peer *p) {
  if (p->eof && p->shut && !sk_is_closing(&p->s.h))
    sk_close(&p->s.h, NULL);
}

static void shut_cb(sk_stream *s, int status, void *arg) {
  struct peer *p = arg;
  (void)s;
  assert_int_equal(status, 0);
  p->shut = 1;
  peer_maybe_close(p);
}

static void send_cb(sk_stream *s, int status, void *arg) {
  struct peer *p = arg;
  (void)s;
  if (status != 0)
    p->send_errors++;
}

/* Sends while the write queue is under its cap (back-pressure), then
 * half-closes once everything is out. */
static void peer_pump(struct peer *p) {
  unsigned char buf[CHUNK];
  if (sk_is_closing(&p->s.h) || (p->send_after_eof && !p->eof))
    return;
  while (p->sent < p->total && sk_stream_write_queue_size(&p->s) < QUEUE_CAP) {
    size_t n = p->total - p->sent < CHUNK ? p->total - p->sent : CHUNK;
    for (size_t i = 0; i < n; i++)
      buf[i] = gen_byte(&p->tx);
    assert_int_equal(sk_stream_send(&p->s, buf, n, send_cb, p), 0);
    p->sent += n;
  }
  if (p->sent == p->total && !(p->s.sflags & SK__S_SHUT_WR))
    assert_int_equal(sk_stream_shutdown(&p->s, shut_cb, p), 0);
}

static void peer_drain(sk_stream *s) {
  peer_pump(s->h.data);
}

static void peer_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct peer *p = s->h.data;
  if (n > 0) {
    const unsigned char *b = buf;
    for (ssize_t i = 0; i < n; i++)
      if (b[i] != gen_byte(&p->rx))
        p->mismatches++;
    p->received += (size_t)n;
    return;
  }
  assert_int_equal(n, SK_EOF);
  p->eof = 1;
  peer_pump(p);
  peer_maybe_close(p);
}

static void peer_start(struct peer *p) {
  p->s.h.data = p;
  sk_stream_on_drain(&p->s, peer_drain);
  SK_ASSERT_OK(sk_stream_recv_start(&p->s, peer_recv));
  peer_pump(p);
}

static struct peer server_peer, client_peer;
static sk_stream listener;
static int accepted;

static void bulk_accept(sk_stream *server, int status, int fd,
                        const sk_endpoint *peer) {
  (void)peer;
  assert_int_equal(status, 0);
  accepted++;
  SK_ASSERT_OK(sk_stream_init(server->h.loop, &server_peer.s));
  /* The fast path for accepted descriptors; the slow one (sk_stream_open)
   * is used by the other tests. */
  SK_ASSERT_OK(
      sk_stream_open_accepted(&server_peer.s, fd, server->sock.family));
  peer_start(&server_peer);
  sk_close(&server->h, NULL); /* one connection is all this test needs */
}

static void bulk_connected(sk_stream *s, int status) {
  assert_int_equal(status, 0);
  peer_start(s->h.data);
}

static char unix_dir[64];

/* Listens on a fresh endpoint of the family asked for. */
static void listen_on(sk_loop *loop, int family, sk_endpoint *bound) {
  sk_endpoint ep;
  SK_ASSERT_OK(sk_stream_init(loop, &listener));
  if (family == AF_UNIX) {
    char path[128];
    strcpy(unix_dir, "/tmp/sk-test-XXXXXX");
    assert_non_null(mkdtemp(unix_dir));
    snprintf(path, sizeof(path), "%s/s.sock", unix_dir);
    SK_ASSERT_OK(sk_endpoint_unix(&ep, path));
  } else {
    SK_ASSERT_OK(sk_endpoint_loopback(&ep, family, 0));
  }
  SK_ASSERT_OK(sk_stream_listen(&listener, &ep, 0, 0));
  if (family == AF_UNIX)
    *bound = ep;
  else
    SK_ASSERT_OK(sk_socket_local(&listener.sock, bound));
}

static void unix_cleanup(void) {
  char path[128];
  if (unix_dir[0] == '\0')
    return;
  snprintf(path, sizeof(path), "%s/s.sock", unix_dir);
  unlink(path);
  rmdir(unix_dir);
  unix_dir[0] = '\0';
}

static void bulk_exchange(int family, size_t c2s, size_t s2c,
                          int server_waits_for_eof) {
  sk_loop loop;
  sk_endpoint bound;
  SK_ASSERT_OK(sk_loop_init(&loop));
  memset(&server_peer, 0, sizeof(server_peer));
  memset(&client_peer, 0, sizeof(client_peer));
  accepted = 0;
  listen_on(&loop, family, &bound);
  SK_ASSERT_OK(sk_stream_accept_start(&listener, bulk_accept));

  client_peer.total = c2s;
  client_peer.tx.x = server_peer.rx.x = 0x1234567;
  server_peer.total = s2c;
  server_peer.tx.x = client_peer.rx.x = 0x7654321;
  server_peer.send_after_eof = server_waits_for_eof;
  SK_ASSERT_OK(sk_stream_init(&loop, &client_peer.s));
  client_peer.s.h.data = &client_peer;
  SK_ASSERT_OK(
      sk_stream_connect(&client_peer.s, &bound, 1, 5000, bulk_connected));
  sk_test_run(&loop, 60000);

  assert_int_equal(accepted, 1);
  assert_int_equal(server_peer.received, c2s);
  assert_int_equal(client_peer.received, s2c);
  assert_int_equal(server_peer.mismatches, 0);
  assert_int_equal(client_peer.mismatches, 0);
  assert_true(server_peer.eof && client_peer.eof);
  assert_true(server_peer.shut && client_peer.shut);
  assert_int_equal(server_peer.send_errors + client_peer.send_errors, 0);
  sk_test_loop_done(&loop);
  unix_cleanup();
}

/* 16 MiB each way; 4 MiB in a sanitizer build, which is several times
 * slower (the test names keep the plain build's figure). */
#define MIB16 (SK_TEST_SANITIZED ? 4u << 20 : 16u << 20)

static void test_tcp4_exchange_16mib_both_ways(void **state) {
  (void)state;
  bulk_exchange(AF_INET, MIB16, MIB16, 0);
}

static void test_tcp6_exchange_16mib_both_ways(void **state) {
  (void)state;
  bulk_exchange(AF_INET6, MIB16, MIB16, 0);
}

static void test_unix_exchange_16mib_both_ways(void **state) {
  (void)state;
  bulk_exchange(AF_UNIX, MIB16, MIB16, 0);
}

/* The client sends and half-closes; the server answers only after it saw
 * EOF, and the client still receives all of it. */
static void test_half_close_peer_still_sends(void **state) {
  (void)state;
  bulk_exchange(AF_INET, 1u << 20, 4u << 20, 1);
  bulk_exchange(AF_UNIX, 1u << 20, 4u << 20, 1);
}

/* ---- one big send to a slow reader ---- */

static sk_stream slow_srv, slow_cli;
static sk_timer slow_timer;
static size_t slow_received, slow_mismatch;
static int big_send_status = 1, big_send_calls;
static unsigned char *big_buf;
#define BIG (8u * 1024 * 1024)

static void slow_resume(sk_timer *t) {
  (void)t;
  sk_stream_recv_resume(&slow_srv);
}

static void slow_recv(sk_stream *s, ssize_t n, const void *buf) {
  if (n < 0) {
    assert_int_equal(n, SK_EOF);
    sk_close(&s->h, NULL);
    sk_close(&slow_timer.h, NULL);
    return;
  }
  if (memcmp(buf, big_buf + slow_received, (size_t)n) != 0)
    slow_mismatch++;
  slow_received += (size_t)n;
  /* Read slowly: pause after every chunk, resume from a timer. */
  sk_stream_recv_pause(s);
  sk_timer_start(&slow_timer, slow_resume, 1, 0);
}

static void slow_accept(sk_stream *server, int status, int fd,
                        const sk_endpoint *peer) {
  (void)peer;
  assert_int_equal(status, 0);
  SK_ASSERT_OK(sk_stream_init(server->h.loop, &slow_srv));
  SK_ASSERT_OK(sk_stream_open(&slow_srv, fd));
  SK_ASSERT_OK(sk_stream_recv_start(&slow_srv, slow_recv));
  sk_close(&server->h, NULL);
}

static void big_sent(sk_stream *s, int status, void *arg) {
  (void)arg;
  big_send_status = status;
  big_send_calls++;
  /* Completion means every byte was taken by the kernel. */
  assert_int_equal(sk_stream_write_queue_size(s), 0);
  sk_close(&s->h, NULL);
}

static void big_connected(sk_stream *s, int status) {
  assert_int_equal(status, 0);
  SK_ASSERT_OK(sk_stream_send(s, big_buf, BIG, big_sent, NULL));
  /* Far more than any socket buffer: most of it must be queued. */
  assert_true(sk_stream_write_queue_size(s) > 0);
  assert_true(sk_stream_write_queue_size(s) <= BIG);
}

static void test_large_send_to_slow_reader(void **state) {
  (void)state;
  sk_loop loop;
  sk_endpoint bound;
  big_buf = malloc(BIG);
  assert_non_null(big_buf);
  sk_test_fill_random(big_buf, BIG, 99);
  SK_ASSERT_OK(sk_loop_init(&loop));
  slow_received = slow_mismatch = 0;
  big_send_calls = 0;
  big_send_status = 1;
  listen_on(&loop, AF_INET, &bound);
  SK_ASSERT_OK(sk_timer_init(&loop, &slow_timer));
  SK_ASSERT_OK(sk_stream_accept_start(&listener, slow_accept));
  SK_ASSERT_OK(sk_stream_init(&loop, &slow_cli));
  SK_ASSERT_OK(sk_stream_connect(&slow_cli, &bound, 1, 5000, big_connected));
  sk_test_run(&loop, 60000);
  assert_int_equal(big_send_calls, 1);
  assert_int_equal(big_send_status, 0);
  assert_int_equal(slow_received, BIG);
  assert_int_equal(slow_mismatch, 0);
  sk_test_loop_done(&loop);
  free(big_buf);
}

/* ---- connect failures ---- */

static int conn_status, conn_calls;
static void record_connect(sk_stream *s, int status) {
  conn_status = status;
  conn_calls++;
  sk_close(&s->h, NULL);
}

/* A port nobody listens on: bind one, note it, close it. */
static void closed_port(sk_endpoint *ep, int family) {
  sk_socket s = SK_SOCKET_INIT;
  SK_ASSERT_OK(sk_endpoint_loopback(ep, family, 0));
  SK_ASSERT_OK(sk_socket_open(&s, family, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_socket_bind(&s, ep));
  SK_ASSERT_OK(sk_socket_local(&s, ep));
  sk_socket_abort(&s);
}

static void test_connect_refused(void **state) {
  (void)state;
  sk_loop loop;
  sk_stream c;
  sk_endpoint ep;
  SK_ASSERT_OK(sk_loop_init(&loop));
  closed_port(&ep, AF_INET);
  conn_calls = 0;
  SK_ASSERT_OK(sk_stream_init(&loop, &c));
  SK_ASSERT_OK(sk_stream_connect(&c, &ep, 1, 5000, record_connect));
  /* Never called from inside the call that started it. */
  assert_int_equal(conn_calls, 0);
  sk_test_run(&loop, 10000);
  assert_int_equal(conn_calls, 1);
  assert_int_equal(conn_status, -ECONNREFUSED);
  sk_test_loop_done(&loop);
}

/* The first endpoint refuses, the second accepts: like .NET's
 * Connect(host, port) over every resolved address. */
static void test_connect_tries_each_endpoint(void **state) {
  (void)state;
  sk_loop loop;
  sk_stream c;
  sk_endpoint eps[2];
  SK_ASSERT_OK(sk_loop_init(&loop));
  closed_port(&eps[0], AF_INET6);
  listen_on(&loop, AF_INET, &eps[1]);
  conn_calls = 0;
  SK_ASSERT_OK(sk_stream_init(&loop, &c));
  SK_ASSERT_OK(sk_stream_connect(&c, eps, 2, 5000, record_connect));
  sk_test_run(&loop, 10000);
  sk_close(&listener.h, NULL);
  assert_int_equal(conn_calls, 1);
  assert_int_equal(conn_status, 0);
  sk_test_loop_done(&loop);
}

/* A listener whose backlog is full stops answering SYNs: a blackhole on
 * loopback. Returns the sockets filling it (to close later). */
static int fill_backlog(sk_socket *lst, sk_socket *fill, int max,
                        sk_endpoint *ep) {
  int n = 0;
  SK_ASSERT_OK(sk_endpoint_loopback(ep, AF_INET, 0));
  SK_ASSERT_OK(sk_socket_open(lst, AF_INET, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_socket_bind(lst, ep));
  SK_ASSERT_OK(sk_socket_listen(lst, 1));
  SK_ASSERT_OK(sk_socket_local(lst, ep));
  while (n < max) {
    SK_ASSERT_OK(sk_socket_open(&fill[n], AF_INET, SOCK_STREAM, 0));
    int rc = sk_socket_connect(&fill[n], ep, 200);
    n++;
    if (rc == -ETIMEDOUT)
      return n;
    SK_ASSERT_OK(rc);
  }
  fail_msg("backlog never filled after %d connections", max);
  return n;
}

static void test_connect_timeout_on_blackhole(void **state) {
  (void)state;
  sk_loop loop;
  sk_stream c;
  sk_socket lst = SK_SOCKET_INIT, fill[64];
  sk_endpoint ep;
  int n = fill_backlog(&lst, fill, 64, &ep);
  SK_ASSERT_OK(sk_loop_init(&loop));
  conn_calls = 0;
  SK_ASSERT_OK(sk_stream_init(&loop, &c));
  uint64_t t0 = sk__now_ms();
  SK_ASSERT_OK(sk_stream_connect(&c, &ep, 1, 300, record_connect));
  sk_test_run(&loop, 10000);
  uint64_t elapsed = sk__now_ms() - t0;
  assert_int_equal(conn_calls, 1);
  assert_int_equal(conn_status, -ETIMEDOUT);
  assert_true(elapsed >= 290 && elapsed < 2000);
  sk_test_loop_done(&loop);
  for (int i = 0; i < n; i++)
    sk_socket_abort(&fill[i]);
  sk_socket_abort(&lst);
}

static void test_cancel_pending_connect(void **state) {
  (void)state;
  sk_loop loop;
  sk_stream c, d;
  sk_socket lst = SK_SOCKET_INIT, fill[64];
  sk_endpoint ep;
  int n = fill_backlog(&lst, fill, 64, &ep);
  SK_ASSERT_OK(sk_loop_init(&loop));
  conn_calls = 0;
  /* Cancelled explicitly... */
  SK_ASSERT_OK(sk_stream_init(&loop, &c));
  SK_ASSERT_OK(sk_stream_connect(&c, &ep, 1, -1, record_connect));
  SK_ASSERT_OK(sk_stream_connect_cancel(&c));
  sk_test_run(&loop, 10000);
  assert_int_equal(conn_calls, 1);
  assert_int_equal(conn_status, -ECANCELED);
  /* ...and by closing the stream: the callback runs once, before close. */
  SK_ASSERT_OK(sk_stream_init(&loop, &d));
  SK_ASSERT_OK(sk_stream_connect(&d, &ep, 1, -1, record_connect));
  sk_close(&d.h, NULL);
  sk_test_run(&loop, 10000);
  assert_int_equal(conn_calls, 2);
  assert_int_equal(conn_status, -ECANCELED);
  sk_test_loop_done(&loop);
  for (int i = 0; i < n; i++)
    sk_socket_abort(&fill[i]);
  sk_socket_abort(&lst);
}

/* ---- cancelling a recv; closing with sends queued ---- */

static sk_stream pair_a, pair_b;
static int recv_calls, recv_status;

static void recv_record(sk_stream *s, ssize_t n, const void *buf) {
  (void)s;
  (void)buf;
  recv_calls++;
  recv_status = (int)n;
}

static void make_pair(sk_loop *loop) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  SK_ASSERT_OK(sk_stream_init(loop, &pair_a));
  SK_ASSERT_OK(sk_stream_open(&pair_a, sv[0]));
  SK_ASSERT_OK(sk_stream_init(loop, &pair_b));
  SK_ASSERT_OK(sk_stream_open(&pair_b, sv[1]));
}

static void test_cancel_pending_recv(void **state) {
  (void)state;
  sk_loop loop;
  SK_ASSERT_OK(sk_loop_init(&loop));
  make_pair(&loop);
  recv_calls = 0;
  SK_ASSERT_OK(sk_stream_recv_start(&pair_a, recv_record));
  SK_ASSERT_OK(sk_stream_recv_stop(&pair_a));
  assert_int_equal(recv_calls, 0);
  sk_test_run(&loop, 5000);
  assert_int_equal(recv_calls, 1);
  assert_int_equal(recv_status, -ECANCELED);
  /* Data sent afterwards is not delivered: receiving is off. */
  SK_ASSERT_OK(sk_stream_send(&pair_b, "x", 1, NULL, NULL));
  sk_loop_run(&loop, SK_RUN_NOWAIT);
  assert_int_equal(recv_calls, 1);
  assert_int_equal(sk_stream_recv_stop(&pair_a), -EINVAL);
  sk_close(&pair_a.h, NULL);
  sk_close(&pair_b.h, NULL);
  sk_test_loop_done(&loop);
}

#define NSENDS 64
static int send_status[NSENDS], send_order[NSENDS], nsend_done;
static int close_cb_after_sends;

static void queued_send_cb(sk_stream *s, int status, void *arg) {
  (void)s;
  int i = (int)(intptr_t)arg;
  send_status[i] = status;
  send_order[nsend_done++] = i;
}

static void queued_close_cb(sk_handle *h) {
  (void)h;
  close_cb_after_sends = (nsend_done == NSENDS);
}

static void test_close_with_sends_queued(void **state) {
  (void)state;
  sk_loop loop;
  static unsigned char chunk[256 * 1024];
  SK_ASSERT_OK(sk_loop_init(&loop));
  make_pair(&loop);
  nsend_done = 0;
  close_cb_after_sends = 0;
  /* Nobody reads pair_b: the kernel buffer fills, the rest is queued. */
  for (int i = 0; i < NSENDS; i++)
    SK_ASSERT_OK(sk_stream_send(&pair_a, chunk, sizeof(chunk), queued_send_cb,
                                (void *)(intptr_t)i));
  assert_true(sk_stream_write_queue_size(&pair_a) > 0);
  sk_close(&pair_a.h, queued_close_cb);
  assert_int_equal(nsend_done, 0);
  sk_test_run(&loop, 5000);
  /* Every callback ran once, in order, before the close callback; the
   * ones not fully written were cancelled. */
  assert_int_equal(nsend_done, NSENDS);
  assert_int_equal(close_cb_after_sends, 1);
  int cancelled = 0;
  for (int i = 0; i < NSENDS; i++) {
    assert_int_equal(send_order[i], i);
    assert_true(send_status[i] == 0 || send_status[i] == -ECANCELED);
    if (send_status[i] == -ECANCELED)
      cancelled++;
    else
      assert_int_equal(cancelled, 0); /* no success after a cancel */
  }
  assert_true(cancelled > 0);
  sk_close(&pair_b.h, NULL);
  sk_test_loop_done(&loop);
}

/* Sends complete in the order started, whether written at once or
 * queued. */
static void test_sends_complete_in_order(void **state) {
  (void)state;
  sk_loop loop;
  static unsigned char chunk[100 * 1024];
  SK_ASSERT_OK(sk_loop_init(&loop));
  make_pair(&loop);
  nsend_done = 0;
  recv_calls = 0;
  for (int i = 0; i < NSENDS; i++)
    SK_ASSERT_OK(sk_stream_send(&pair_a, chunk, (size_t)(i % 2) * sizeof(chunk),
                                queued_send_cb, (void *)(intptr_t)i));
  SK_ASSERT_OK(sk_stream_shutdown(&pair_a, NULL, NULL));
  /* After shutdown, sending is refused at once. */
  assert_int_equal(sk_stream_send(&pair_a, "x", 1, NULL, NULL), -EPIPE);
  SK_ASSERT_OK(sk_stream_recv_start(&pair_b, recv_record));
  sk_test_run(&loop, 10000);
  assert_int_equal(nsend_done, NSENDS);
  for (int i = 0; i < NSENDS; i++) {
    assert_int_equal(send_order[i], i);
    assert_int_equal(send_status[i], 0);
  }
  assert_int_equal(recv_status, SK_EOF);
  sk_close(&pair_a.h, NULL);
  sk_close(&pair_b.h, NULL);
  sk_test_loop_done(&loop);
}

/* ---- close semantics seen by the peer ---- */

static void test_abort_resets_close_does_not(void **state) {
  (void)state;
  sk_loop loop;
  for (int abort_it = 0; abort_it < 2; abort_it++) {
    sk_endpoint bound;
    sk_socket cli = SK_SOCKET_INIT;
    char buf[16];
    SK_ASSERT_OK(sk_loop_init(&loop));
    listen_on(&loop, AF_INET, &bound);
    SK_ASSERT_OK(sk_socket_open(&cli, AF_INET, SOCK_STREAM, 0));
    SK_ASSERT_OK(sk_socket_connect(&cli, &bound, 5000));
    /* Data the server never reads: a plain close() would reset. */
    SK_ASSERT_OK(sk_socket_send(&cli, "unread", 6, 1000));
    sk_socket srv = SK_SOCKET_INIT;
    SK_ASSERT_OK(sk_socket_accept(&listener.sock, &srv, NULL, 5000));
    sk_stream s;
    SK_ASSERT_OK(sk_stream_init(&loop, &s));
    SK_ASSERT_OK(sk_stream_open(&s, srv.fd));
    /* Wait until the data has arrived on the server side. */
    assert_true(sk_socket_poll(&srv, SK_POLL_READ, 5000) & SK_POLL_READ);
    if (abort_it)
      sk_stream_abort(&s, NULL);
    else
      sk_close(&s.h, NULL);
    sk_close(&listener.h, NULL);
    sk_test_run(&loop, 5000);
    ssize_t n = sk_socket_recv(&cli, buf, sizeof(buf), 5000);
    if (abort_it)
      assert_int_equal(n, -ECONNRESET);
    else
      assert_int_equal(n, 0);
    sk_socket_abort(&cli);
    sk_test_loop_done(&loop);
  }
}

static int accept_calls, accept_status;
static void accept_record(sk_stream *server, int status, int fd,
                          const sk_endpoint *peer) {
  (void)server;
  (void)peer;
  accept_calls++;
  accept_status = status;
  if (fd >= 0)
    close(fd);
}

static void test_accept_stop_cancels(void **state) {
  (void)state;
  sk_loop loop;
  sk_endpoint bound;
  SK_ASSERT_OK(sk_loop_init(&loop));
  listen_on(&loop, AF_INET6, &bound);
  accept_calls = 0;
  SK_ASSERT_OK(sk_stream_accept_start(&listener, accept_record));
  SK_ASSERT_OK(sk_stream_accept_stop(&listener));
  sk_test_run(&loop, 5000);
  assert_int_equal(accept_calls, 1);
  assert_int_equal(accept_status, -ECANCELED);
  sk_close(&listener.h, NULL);
  sk_test_loop_done(&loop);
}

/* Sending before connecting or after close is refused with a clear
 * error, and no callback runs. */
static void test_send_state_errors(void **state) {
  (void)state;
  sk_loop loop;
  sk_stream s;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_stream_init(&loop, &s));
  assert_int_equal(sk_stream_send(&s, "x", 1, NULL, NULL), -EBADF);
  assert_int_equal(sk_stream_recv_start(&s, recv_record), -EBADF);
  sk_close(&s.h, NULL);
  assert_int_equal(sk_stream_send(&s, "x", 1, NULL, NULL), -EBADF);
  sk_test_loop_done(&loop);
}

SK_TEST_MAIN(cmocka_unit_test(test_tcp4_exchange_16mib_both_ways),
             cmocka_unit_test(test_tcp6_exchange_16mib_both_ways),
             cmocka_unit_test(test_unix_exchange_16mib_both_ways),
             cmocka_unit_test(test_half_close_peer_still_sends),
             cmocka_unit_test(test_large_send_to_slow_reader),
             cmocka_unit_test(test_connect_refused),
             cmocka_unit_test(test_connect_tries_each_endpoint),
             cmocka_unit_test(test_connect_timeout_on_blackhole),
             cmocka_unit_test(test_cancel_pending_connect),
             cmocka_unit_test(test_cancel_pending_recv),
             cmocka_unit_test(test_close_with_sends_queued),
             cmocka_unit_test(test_sends_complete_in_order),
             cmocka_unit_test(test_abort_resets_close_does_not),
             cmocka_unit_test(test_accept_stop_cancels),
             cmocka_unit_test(test_send_state_errors))
