/* Per-operation control on async streams: receive deadlines, cancelling one
 * queued send, peeking, urgent data, restarting receive in one loop
 * iteration, and counted pauses. Each test connects an sk_stream to a plain TCP
 * socket on loopback that the test drives with system calls. SK_TEST_ASYNC:
 * registered once per backend. */
#include "sk_test.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static sk_loop loop;
static sk_stream st;
static int peer = -1; /* the other end, blocking with a 10 s timeout */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A connected pair: st (async) and peer (a plain socket). */
static void pair_open(int small_buffers) {
  sk_socket l = SK_SOCKET_INIT, c = SK_SOCKET_INIT, a = SK_SOCKET_INIT;
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_loopback(&ep, AF_INET, 0));
  SK_ASSERT_OK(sk_socket_open(&l, AF_INET, SOCK_STREAM, 0));
  SK_ASSERT_OK(sk_socket_bind(&l, &ep));
  SK_ASSERT_OK(sk_socket_listen(&l, 1));
  SK_ASSERT_OK(sk_socket_local(&l, &ep));
  SK_ASSERT_OK(sk_socket_open(&c, AF_INET, SOCK_STREAM, 0));
  if (small_buffers) {
    /* Small kernel buffers on both sides: a non-reading peer makes the
     * stream queue after a few KiB. */
    SK_ASSERT_OK(sk_opt_set_sndbuf(&c, 4096));
  }
  SK_ASSERT_OK(sk_socket_connect(&c, &ep, 5000));
  SK_ASSERT_OK(sk_socket_accept(&l, &a, NULL, 5000));
  sk_socket_close(&l, 0);
  if (small_buffers)
    SK_ASSERT_OK(sk_opt_set_rcvbuf(&a, 4096));
  peer = a.fd;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_stream_init(&loop, &st));
  SK_ASSERT_OK(sk_stream_open(&st, c.fd));
}

static void pair_close(void) {
  if (!sk_is_closing(&st.h))
    sk_close(&st.h, NULL);
  sk_loop_run(&loop, SK_RUN_DEFAULT);
  sk_test_loop_done(&loop);
  close(peer);
  peer = -1;
}

/* Reads from the peer until n bytes or EOF/timeout; returns the count. */
static size_t peer_read(unsigned char *buf, size_t n, int timeout_ms) {
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {peer, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
      break;
    ssize_t k = recv(peer, buf + got, n - got, MSG_DONTWAIT);
    if (k <= 0)
      break;
    got += (size_t)k;
  }
  return got;
}

static void peer_send(const void *buf, size_t n) {
  assert_int_equal(send(peer, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* ---- receive deadline ---- */

static int r_data, r_timeouts, r_other;
static uint64_t r_last_data_ms, r_timeout_ms;
static void deadline_recv(sk_stream *s, ssize_t n, const void *buf) {
  (void)s;
  (void)buf;
  if (n > 0) {
    r_data += (int)n;
    /* The loop's time: the library measures silence from the iteration
     * that saw the data, which is before this callback runs (a busy or
     * sanitized process can spend milliseconds in between). */
    r_last_data_ms = sk_loop_now(&loop);
  } else if (n == -ETIMEDOUT) {
    r_timeouts++;
    r_timeout_ms = sk_loop_now(&loop);
  } else {
    r_other++;
  }
}

static void stop_loop_on_timeout(sk_stream *s, ssize_t n, const void *buf) {
  deadline_recv(s, n, buf);
  if (n == -ETIMEDOUT)
    sk_loop_stop(&loop);
}

/* No data: the receive ends with -ETIMEDOUT once, no sooner than asked,
 * and the stream goes on: it sends, and a new receive gets data. */
static void test_recv_timeout_ends_receive_not_stream(void **state) {
  (void)state;
  unsigned char buf[8];
  pair_open(0);
  r_data = r_timeouts = r_other = 0;
  uint64_t t0 = now_ms();
  SK_ASSERT_OK(sk_stream_recv_timeout(&st, 100));
  SK_ASSERT_OK(sk_stream_recv_start(&st, stop_loop_on_timeout));
  sk_test_run(&loop, 20000);
  assert_int_equal(r_timeouts, 1);
  assert_int_equal(r_other, 0);
  assert_true(r_timeout_ms - t0 >= 100);
  assert_false(sk_stream_is_receiving(&st));
  /* Still usable both ways. */
  SK_ASSERT_OK(sk_stream_send(&st, "ok", 2, NULL, NULL));
  assert_int_equal(peer_read(buf, 2, 10000), 2);
  assert_memory_equal(buf, "ok", 2);
  SK_ASSERT_OK(sk_stream_recv_timeout(&st, -1));
  SK_ASSERT_OK(sk_stream_recv_start(&st, deadline_recv));
  peer_send("x", 1);
  while (r_data < 1)
    sk_loop_run(&loop, SK_RUN_ONCE);
  assert_int_equal(r_timeouts, 1);
  assert_int_equal(sk_stream_recv_timeout(&st, 0), -EINVAL);
  assert_int_equal(sk_stream_recv_timeout(&st, -2), -EINVAL);
  pair_close();
}

/* Data arriving well inside the deadline keeps the receive alive; the
 * timeout comes only after the last byte. */
static sk_timer trickle;
static int trickled;
static void trickle_cb(sk_timer *t) {
  peer_send("t", 1);
  if (++trickled == 10)
    sk_timer_stop(t);
}

static void test_recv_timeout_restarts_on_data(void **state) {
  (void)state;
  pair_open(0);
  r_data = r_timeouts = r_other = 0;
  trickled = 0;
  SK_ASSERT_OK(sk_timer_init(&loop, &trickle));
  /* One byte every 20 ms against a 1 s deadline: a margin of 50x. */
  SK_ASSERT_OK(sk_timer_start(&trickle, trickle_cb, 20, 20));
  SK_ASSERT_OK(sk_stream_recv_timeout(&st, 1000));
  SK_ASSERT_OK(sk_stream_recv_start(&st, stop_loop_on_timeout));
  sk_test_run(&loop, 30000);
  assert_int_equal(r_data, 10);
  assert_int_equal(r_timeouts, 1);
  assert_true(r_timeout_ms - r_last_data_ms >= 1000);
  sk_close(&trickle.h, NULL);
  pair_close();
}

/* Time spent paused does not count against the deadline. */
static sk_timer pause_timer;
static int resumed;
static void resume_cb(sk_timer *t) {
  (void)t;
  resumed = 1;
  sk_stream_recv_resume(&st);
}

static void test_recv_timeout_not_while_paused(void **state) {
  (void)state;
  pair_open(0);
  r_data = r_timeouts = r_other = 0;
  resumed = 0;
  SK_ASSERT_OK(sk_stream_recv_timeout(&st, 50));
  SK_ASSERT_OK(sk_stream_recv_start(&st, stop_loop_on_timeout));
  sk_stream_recv_pause(&st);
  SK_ASSERT_OK(sk_timer_init(&loop, &pause_timer));
  SK_ASSERT_OK(sk_timer_start(&pause_timer, resume_cb, 300, 0));
  sk_test_run(&loop, 20000);
  assert_true(resumed); /* the timeout came only after the resume */
  assert_int_equal(r_timeouts, 1);
  sk_close(&pause_timer.h, NULL);
  pair_close();
}

/* ---- restarting receive in one iteration ---- */

static int old_calls, new_data, new_cancelled;
static void old_recv(sk_stream *s, ssize_t n, const void *buf) {
  (void)s;
  (void)n;
  (void)buf;
  old_calls++;
}
static void new_recv(sk_stream *s, ssize_t n, const void *buf) {
  (void)s;
  (void)buf;
  if (n > 0) {
    new_data += (int)n;
    sk_loop_stop(&loop);
  } else if (n == -ECANCELED) {
    new_cancelled++;
  }
}

static void test_recv_restart_gets_no_stale_cancel(void **state) {
  (void)state;
  pair_open(0);
  old_calls = new_data = new_cancelled = 0;
  SK_ASSERT_OK(sk_stream_recv_start(&st, old_recv));
  SK_ASSERT_OK(sk_stream_recv_stop(&st));
  SK_ASSERT_OK(sk_stream_recv_start(&st, new_recv));
  peer_send("abc", 3);
  sk_test_run(&loop, 20000);
  assert_int_equal(new_data, 3);
  assert_int_equal(new_cancelled, 0);
  assert_int_equal(old_calls, 0);
  pair_close();
}

/* ---- pause is counted ---- */

/* Two owners pause; reading resumes only when both have resumed. */
static void test_pause_is_counted(void **state) {
  (void)state;
  pair_open(0);
  old_calls = new_data = new_cancelled = 0;
  SK_ASSERT_OK(sk_stream_recv_start(&st, new_recv));
  sk_stream_recv_pause(&st);
  sk_stream_recv_pause(&st);
  sk_stream_recv_resume(&st);
  assert_false(sk_stream_is_receiving(&st));
  peer_send("abc", 3);
  /* The bytes are in the stream's socket: a loop iteration would read
   * them if the stream were not paused any more. */
  struct pollfd p = {st.sock.fd, POLLIN, 0};
  assert_int_equal(poll(&p, 1, 10000), 1);
  assert_true(sk_loop_run(&loop, SK_RUN_NOWAIT) >= 0);
  assert_int_equal(new_data, 0);
  sk_stream_recv_resume(&st);
  assert_true(sk_stream_is_receiving(&st));
  sk_test_run(&loop, 20000);
  assert_int_equal(new_data, 3);
  /* More resumes than pauses are ignored: one pause still pauses. */
  sk_stream_recv_resume(&st);
  sk_stream_recv_pause(&st);
  assert_false(sk_stream_is_receiving(&st));
  sk_stream_recv_resume(&st);
  assert_true(sk_stream_is_receiving(&st));
  assert_int_equal(new_cancelled, 0);
  pair_close();
}

/* ---- cancelling one send ---- */

struct sent {
  int calls, status;
};
static void sent_cb(sk_stream *s, int status, void *arg) {
  struct sent *r = arg;
  (void)s;
  r->calls++;
  r->status = status;
}

static void test_send_cancel_one(void **state) {
  (void)state;
  enum { FILL = 256 * 1024 };
  unsigned char *fill = malloc(FILL), *got = malloc(FILL + 64);
  struct sent a = {0, 1}, b = {0, 1}, c = {0, 1}, f = {0, 1};
  assert_non_null(fill);
  assert_non_null(got);
  for (size_t i = 0; i < FILL; i++)
    fill[i] = (unsigned char)(i * 7);
  pair_open(1);
  /* The peer reads nothing yet: most of this stays queued, and the part
   * the kernel took makes the request partial. */
  SK_ASSERT_OK(sk_stream_send(&st, fill, FILL, sent_cb, &f));
  assert_true(sk_stream_write_queue_size(&st) > 0);
  SK_ASSERT_OK(sk_stream_send(&st, "AAAA", 4, sent_cb, &a));
  SK_ASSERT_OK(sk_stream_send(&st, "BBBB", 4, sent_cb, &b));
  SK_ASSERT_OK(sk_stream_send(&st, "CCCC", 4, sent_cb, &c));
  size_t queued = sk_stream_write_queue_size(&st);
  SK_ASSERT_OK(sk_stream_send_cancel(&st, sent_cb, &b));
  assert_int_equal(sk_stream_write_queue_size(&st), queued - 4);
  assert_int_equal(b.calls, 0); /* never inside the call */
  /* Already gone, never queued, unnamed, or partly in the kernel. */
  assert_int_equal(sk_stream_send_cancel(&st, sent_cb, &b), -ENOENT);
  assert_int_equal(sk_stream_send_cancel(&st, NULL, &a), -EINVAL);
  assert_int_equal(sk_stream_send_cancel(&st, sent_cb, &f), -EBUSY);
  sk_loop_run(&loop, SK_RUN_NOWAIT);
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.status, -ECANCELED);
  /* The peer drains: everything but BBBB arrives, in order. */
  SK_ASSERT_OK(sk_stream_shutdown(&st, NULL, NULL));
  size_t n = 0;
  uint64_t deadline = now_ms() + 20000;
  while (now_ms() < deadline) {
    sk_loop_run(&loop, SK_RUN_NOWAIT);
    ssize_t k = recv(peer, got + n, FILL + 64 - n, MSG_DONTWAIT);
    if (k == 0)
      break;
    if (k > 0) {
      n += (size_t)k;
    } else {
      struct pollfd p = {peer, POLLIN, 0};
      poll(&p, 1, 10);
    }
  }
  assert_int_equal(n, FILL + 8);
  assert_memory_equal(got, fill, FILL);
  assert_memory_equal(got + FILL, "AAAACCCC", 8);
  assert_int_equal(f.calls, 1);
  assert_int_equal(f.status, 0);
  assert_int_equal(a.status, 0);
  assert_int_equal(c.status, 0);
  pair_close();
  free(fill);
  free(got);
}

/* ---- peek ---- */

static int peeks, peek_first, recvd;
static unsigned char recv_first;
static void on_data(sk_stream *s, ssize_t n, const void *buf) {
  (void)s;
  if (n > 0) {
    if (recvd == 0)
      recv_first = ((const unsigned char *)buf)[0];
    recvd += (int)n;
    if (recvd >= 6)
      sk_loop_stop(&loop);
  }
}
static void on_peek(sk_stream *s, ssize_t n, const void *buf) {
  peeks++;
  assert_true(n > 0);
  peek_first = ((const unsigned char *)buf)[0];
  /* The bytes are still there for the receive. */
  SK_ASSERT_OK(sk_stream_recv_start(s, on_data));
}

static void test_peek_leaves_data(void **state) {
  (void)state;
  pair_open(0);
  peeks = recvd = 0;
  SK_ASSERT_OK(sk_stream_peek(&st, on_peek));
  assert_int_equal(sk_stream_peek(&st, on_peek), -EBUSY);
  assert_int_equal(sk_stream_recv_start(&st, on_data), -EBUSY);
  peer_send("\x16hello", 6);
  sk_test_run(&loop, 20000);
  assert_int_equal(peeks, 1);
  assert_int_equal(peek_first, 0x16);
  assert_int_equal(recvd, 6);
  assert_int_equal(recv_first, 0x16);
  pair_close();
}

static int peek_status_calls;
static ssize_t peek_status;
static void on_peek_status(sk_stream *s, ssize_t n, const void *buf) {
  (void)s;
  (void)buf;
  peek_status_calls++;
  peek_status = n;
}

static void test_peek_cancelled_by_close(void **state) {
  (void)state;
  pair_open(0);
  peek_status_calls = 0;
  SK_ASSERT_OK(sk_stream_peek(&st, on_peek_status));
  sk_close(&st.h, NULL);
  sk_loop_run(&loop, SK_RUN_DEFAULT);
  assert_int_equal(peek_status_calls, 1);
  assert_int_equal(peek_status, -ECANCELED);
  pair_close();
}

/* ---- urgent data ---- */

static void test_send_urgent_in_order(void **state) {
  (void)state;
  unsigned char buf[16], oob = 0;
  struct sent u = {0, 1};
  pair_open(0);
  SK_ASSERT_OK(sk_stream_send(&st, "ab", 2, NULL, NULL));
  SK_ASSERT_OK(sk_stream_send_urgent(&st, '!', sent_cb, &u));
  SK_ASSERT_OK(sk_stream_send(&st, "cd", 2, NULL, NULL));
  sk_loop_run(&loop, SK_RUN_NOWAIT);
  assert_int_equal(u.calls, 1);
  assert_int_equal(u.status, 0);
  /* The urgent byte is out of band; the stream carries the rest. */
  struct pollfd p = {peer, POLLPRI, 0};
  assert_int_equal(poll(&p, 1, 10000), 1);
  assert_int_equal(recv(peer, &oob, 1, MSG_OOB), 1);
  assert_int_equal(oob, '!');
  assert_int_equal(peer_read(buf, 4, 10000), 4);
  assert_memory_equal(buf, "abcd", 4);
  pair_close();
}

/* ---- sendfile that fills the socket at once ---- */

/* A file larger than the socket buffers: the first sendfile(2) fills the
 * kernel, and the rest must go out as the reader makes room (the stream
 * once forgot to wait for writable after queuing it from the API call). */
static void test_sendfile_larger_than_buffers(void **state) {
  (void)state;
  enum { SIZE = 16 * 1024 * 1024 }; /* more than 4 MiB of sndbuf + rcvbuf */
  char path[] = "/tmp/sk-sendfile-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  unsigned char *chunk = malloc(65536), *got = malloc(65536);
  assert_non_null(chunk);
  assert_non_null(got);
  for (size_t off = 0; off < SIZE; off += 65536) {
    for (size_t i = 0; i < 65536; i++)
      chunk[i] = (unsigned char)((off + i) * 131 >> 3);
    assert_int_equal(write(fd, chunk, 65536), 65536);
  }
  struct sent done = {0, 1};
  pair_open(0);
  SK_ASSERT_OK(sk_stream_sendfile(&st, fd, 0, SIZE, sent_cb, &done));
  assert_true(sk_stream_write_queue_size(&st) > 0);
  size_t n = 0, bad = 0;
  uint64_t deadline = now_ms() + 30000;
  while (n < SIZE && now_ms() < deadline) {
    sk_loop_run(&loop, SK_RUN_NOWAIT);
    ssize_t k = recv(peer, got, 65536, MSG_DONTWAIT);
    if (k > 0) {
      for (ssize_t i = 0; i < k; i++)
        if (got[i] != (unsigned char)((n + (size_t)i) * 131 >> 3))
          bad++;
      n += (size_t)k;
    } else {
      struct pollfd p = {peer, POLLIN, 0};
      poll(&p, 1, 10);
    }
  }
  if (n != SIZE)
    print_message("got %zu; send callback %d status %d; queue %zu\n", n,
                  done.calls, done.status, sk_stream_write_queue_size(&st));
  assert_int_equal(n, SIZE);
  assert_int_equal(bad, 0);
  while (done.calls == 0 && now_ms() < deadline)
    sk_loop_run(&loop, SK_RUN_NOWAIT);
  assert_int_equal(done.calls, 1);
  assert_int_equal(done.status, 0);
  pair_close();
  close(fd);
  free(chunk);
  free(got);
}

SK_TEST_MAIN(cmocka_unit_test(test_recv_timeout_ends_receive_not_stream),
             cmocka_unit_test(test_recv_timeout_restarts_on_data),
             cmocka_unit_test(test_recv_timeout_not_while_paused),
             cmocka_unit_test(test_recv_restart_gets_no_stale_cancel),
             cmocka_unit_test(test_pause_is_counted),
             cmocka_unit_test(test_send_cancel_one),
             cmocka_unit_test(test_peek_leaves_data),
             cmocka_unit_test(test_peek_cancelled_by_close),
             cmocka_unit_test(test_send_urgent_in_order),
             cmocka_unit_test(test_sendfile_larger_than_buffers))
