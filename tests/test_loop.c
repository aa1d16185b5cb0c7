/* Event loop: timers, wake-ups from other threads, posting, closing rules,
 * and one loop per thread. Registered once per backend (SK_TEST_ASYNC). */
#include "sk_test.h"
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- timers ---- */

static int fired[8];
static int nfired;

static void order_cb(sk_timer *t) {
  fired[nfired++] = (int)(intptr_t)t->h.data;
}

static void test_backend_selected_by_env(void **state) {
  (void)state;
  sk_loop loop;
  const char *want = getenv("SK_BACKEND");
  SK_ASSERT_OK(sk_loop_init(&loop));
  if (want != NULL)
    assert_string_equal(sk_loop_backend(&loop), want);
  sk_test_loop_done(&loop);
  assert_int_equal(sk_loop_init_backend(&loop, "nosuch"), SK_EBACKEND);
}

static void test_timer_order(void **state) {
  (void)state;
  sk_loop loop;
  sk_timer t[5];
  /* Timeouts 30, 10, 20, 10, 0: 0 first, the two 10s in start order. */
  static const int ms[5] = {30, 10, 20, 10, 0};
  static const int want[5] = {4, 1, 3, 2, 0};
  /* Taken before the loop's clock starts, so every deadline lies at
   * least its timeout after t0. */
  uint64_t t0 = sk__now_ms();
  SK_ASSERT_OK(sk_loop_init(&loop));
  nfired = 0;
  for (int i = 0; i < 5; i++) {
    SK_ASSERT_OK(sk_timer_init(&loop, &t[i]));
    t[i].h.data = (void *)(intptr_t)i;
    SK_ASSERT_OK(sk_timer_start(&t[i], order_cb, (uint64_t)ms[i], 0));
  }
  sk_test_run(&loop, 5000);
  assert_true(sk__now_ms() - t0 >= 30);
  assert_int_equal(nfired, 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(fired[i], want[i]);
  for (int i = 0; i < 5; i++)
    sk_close(&t[i].h, NULL);
  sk_test_loop_done(&loop);
}

static int repeat_count;
static void repeat_cb(sk_timer *t) {
  if (++repeat_count == 5)
    sk_timer_stop(t);
}

static void test_timer_repeat_and_stop(void **state) {
  (void)state;
  sk_loop loop;
  sk_timer t;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  repeat_count = 0;
  SK_ASSERT_OK(sk_timer_start(&t, repeat_cb, 1, 2));
  sk_test_run(&loop, 5000);
  assert_int_equal(repeat_count, 5);
  assert_false(sk_timer_active(&t));
  sk_close(&t.h, NULL);
  sk_test_loop_done(&loop);
}

/* 100k timers: all fire, in deadline order, in bounded time. */
#define MANY 100000
static uint64_t last_due;
static int many_fired, many_out_of_order;
static void many_cb(sk_timer *t) {
  uint64_t due = (uint64_t)(uintptr_t)t->h.data;
  if (due < last_due)
    many_out_of_order++;
  last_due = due;
  many_fired++;
}

static void test_timer_many(void **state) {
  (void)state;
  sk_loop loop;
  sk_timer *t = calloc(MANY, sizeof(*t));
  assert_non_null(t);
  SK_ASSERT_OK(sk_loop_init(&loop));
  uint64_t x = 12345;
  many_fired = many_out_of_order = 0;
  last_due = 0;
  for (int i = 0; i < MANY; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t ms = (x >> 33) % 200;
    SK_ASSERT_OK(sk_timer_init(&loop, &t[i]));
    t[i].h.data = (void *)(uintptr_t)(sk_loop_now(&loop) + ms);
    SK_ASSERT_OK(sk_timer_start(&t[i], many_cb, ms, 0));
  }
  /* Stop every tenth again: stopped timers must not fire. */
  for (int i = 0; i < MANY; i += 10)
    SK_ASSERT_OK(sk_timer_stop(&t[i]));
  sk_test_run(&loop, 20000);
  assert_int_equal(many_fired, MANY - MANY / 10);
  assert_int_equal(many_out_of_order, 0);
  for (int i = 0; i < MANY; i++)
    sk_close(&t[i].h, NULL);
  sk_test_loop_done(&loop);
  free(t);
}

/* A timer restarted with timeout 0 from its own callback runs once per loop
 * iteration instead of spinning inside one. */
static int zero_runs;
static sk_loop *zero_loop;
static void zero_cb(sk_timer *t) {
  zero_runs++;
  if (zero_runs < 100)
    sk_timer_start(t, zero_cb, 0, 0);
}
static void test_timer_zero_restart_yields(void **state) {
  (void)state;
  sk_loop loop;
  sk_timer t;
  SK_ASSERT_OK(sk_loop_init(&loop));
  zero_loop = &loop;
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  zero_runs = 0;
  SK_ASSERT_OK(sk_timer_start(&t, zero_cb, 0, 0));
  /* One iteration runs due timers before and after polling: at most twice. */
  sk_loop_run(&loop, SK_RUN_NOWAIT);
  assert_true(zero_runs >= 1 && zero_runs <= 2);
  sk_test_run(&loop, 5000);
  assert_int_equal(zero_runs, 100);
  sk_close(&t.h, NULL);
  sk_test_loop_done(&loop);
}

/* ---- closing ---- */

static int close_calls;
static void count_close(sk_handle *h) {
  (void)h;
  close_calls++;
}
static void close_self_cb(sk_timer *t) {
  sk_close(&t->h, count_close);
  sk_close(&t->h, count_close); /* twice is a no-op */
}

static void test_close_from_own_callback(void **state) {
  (void)state;
  sk_loop loop;
  sk_timer t;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  close_calls = 0;
  SK_ASSERT_OK(sk_timer_start(&t, close_self_cb, 1, 1));
  sk_test_run(&loop, 5000);
  assert_int_equal(close_calls, 1);
  assert_true(sk_is_closing(&t.h));
  sk_test_loop_done(&loop);
}

static void test_loop_free_refuses_open_handles(void **state) {
  (void)state;
  sk_loop loop;
  sk_timer t;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  assert_int_equal(sk_loop_free(&loop), -EBUSY);
  assert_int_equal(sk_loop_handles(&loop), 1);
  sk_close(&t.h, NULL);
  /* The close callback has not run yet: still busy. */
  assert_int_equal(sk_loop_free(&loop), -EBUSY);
  sk_test_loop_done(&loop);
}

/* ---- wake-ups and posts from other threads ---- */

static sk_async wake;
static int async_calls;
static int async_seen_done;
static volatile int producer_done;

static void async_cb(sk_async *a) {
  async_calls++;
  if (__atomic_load_n(&producer_done, __ATOMIC_ACQUIRE)) {
    async_seen_done = 1;
    sk_close(&a->h, NULL);
  }
}

static void *producer(void *arg) {
  (void)arg;
  for (int i = 0; i < 10000; i++)
    sk_async_send(&wake);
  __atomic_store_n(&producer_done, 1, __ATOMIC_RELEASE);
  sk_async_send(&wake);
  return NULL;
}

static void test_async_wakeup_from_thread(void **state) {
  (void)state;
  sk_loop loop;
  pthread_t th;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_async_init(&loop, &wake, async_cb));
  async_calls = async_seen_done = 0;
  producer_done = 0;
  assert_int_equal(pthread_create(&th, NULL, producer, NULL), 0);
  sk_test_run(&loop, 10000);
  pthread_join(th, NULL);
  /* Sends coalesce: at least one callback, at most one per send, and the
   * last send is never lost. */
  assert_true(async_calls >= 1 && async_calls <= 10001);
  assert_int_equal(async_seen_done, 1);
  sk_test_loop_done(&loop);
}

#define NPOSTS 1000
static sk_post posts[NPOSTS];
static int post_next, post_misordered;
static sk_async keepalive;

static void post_fn(sk_post *req) {
  int i = (int)(intptr_t)req->data;
  if (i != post_next)
    post_misordered++;
  post_next++;
  if (post_next == NPOSTS)
    sk_close(&keepalive.h, NULL);
}

static void *poster(void *arg) {
  sk_loop *loop = arg;
  for (int i = 0; i < NPOSTS; i++)
    sk_loop_post(loop, &posts[i], post_fn, (void *)(intptr_t)i);
  return NULL;
}

static void noop_async(sk_async *a) {
  (void)a;
}

static void test_post_runs_in_order_on_loop(void **state) {
  (void)state;
  sk_loop loop;
  pthread_t th;
  SK_ASSERT_OK(sk_loop_init(&loop));
  /* An async handle keeps the loop running until the last post closes it. */
  SK_ASSERT_OK(sk_async_init(&loop, &keepalive, noop_async));
  post_next = post_misordered = 0;
  assert_int_equal(pthread_create(&th, NULL, poster, &loop), 0);
  sk_test_run(&loop, 10000);
  pthread_join(th, NULL);
  assert_int_equal(post_next, NPOSTS);
  assert_int_equal(post_misordered, 0);
  sk_test_loop_done(&loop);
}

/* ---- eight loops on eight threads, each echoing on its own listener ---- */

#define NLOOPS 8
struct echo_loop {
  sk_loop loop;
  sk_stream listener;
  sk_stream conns[4];
  int nconns;
  sk_async stop;
  uint16_t port;
  pthread_t thread;
  sk_post stop_post;
};

static void eloop_recv(sk_stream *s, ssize_t n, const void *buf) {
  if (n > 0) {
    assert_int_equal(sk_stream_send(s, buf, (size_t)n, NULL, NULL), 0);
    return;
  }
  sk_close(&s->h, NULL);
}

static void eloop_accept(sk_stream *server, int status, int fd,
                         const sk_endpoint *peer) {
  struct echo_loop *el = server->h.data;
  (void)peer;
  if (status != 0)
    return;
  assert_true(el->nconns < 4);
  sk_stream *c = &el->conns[el->nconns++];
  SK_ASSERT_OK(sk_stream_init(&el->loop, c));
  SK_ASSERT_OK(sk_stream_open(c, fd));
  SK_ASSERT_OK(sk_stream_recv_start(c, eloop_recv));
}

static void eloop_stop(sk_post *req) {
  struct echo_loop *el = req->data;
  sk_close(&el->listener.h, NULL);
  sk_close(&el->stop.h, NULL);
}

static void *eloop_main(void *arg) {
  struct echo_loop *el = arg;
  sk_loop_run(&el->loop, SK_RUN_DEFAULT);
  return NULL;
}

/* A blocking client written against the kernel directly, so this test
 * depends only on the loop. */
static int plain_connect(uint16_t port) {
  struct sockaddr_in a = {0};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  return fd;
}

static void plain_read_exact(int fd, unsigned char *buf, size_t n) {
  while (n > 0) {
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 10000), 1);
    ssize_t r = read(fd, buf, n);
    assert_true(r > 0);
    buf += r;
    n -= (size_t)r;
  }
}

static void test_eight_loops_on_eight_threads(void **state) {
  (void)state;
  static struct echo_loop el[NLOOPS];
  int fds[NLOOPS];
  for (int i = 0; i < NLOOPS; i++) {
    sk_endpoint ep, bound;
    SK_ASSERT_OK(sk_loop_init(&el[i].loop));
    el[i].nconns = 0;
    SK_ASSERT_OK(sk_stream_init(&el[i].loop, &el[i].listener));
    el[i].listener.h.data = &el[i];
    SK_ASSERT_OK(sk_endpoint_loopback(&ep, AF_INET, 0));
    SK_ASSERT_OK(sk_stream_listen(&el[i].listener, &ep, 16, 0));
    SK_ASSERT_OK(sk_socket_local(&el[i].listener.sock, &bound));
    el[i].port = sk_endpoint_port(&bound);
    SK_ASSERT_OK(sk_stream_accept_start(&el[i].listener, eloop_accept));
    SK_ASSERT_OK(sk_async_init(&el[i].loop, &el[i].stop, noop_async));
    assert_int_equal(pthread_create(&el[i].thread, NULL, eloop_main, &el[i]),
                     0);
  }
  for (int i = 0; i < NLOOPS; i++)
    fds[i] = plain_connect(el[i].port);
  /* All eight echo at once: write to every loop, then read every echo. */
  for (int round = 0; round < 50; round++) {
    unsigned char out[NLOOPS][512], in[512];
    for (int i = 0; i < NLOOPS; i++) {
      sk_test_fill_random(out[i], sizeof(out[i]),
                          (uint64_t)(round * NLOOPS + i + 1));
      assert_int_equal(write(fds[i], out[i], sizeof(out[i])), 512);
    }
    for (int i = 0; i < NLOOPS; i++) {
      plain_read_exact(fds[i], in, sizeof(in));
      assert_memory_equal(in, out[i], sizeof(in));
    }
  }
  for (int i = 0; i < NLOOPS; i++) {
    close(fds[i]);
    sk_loop_post(&el[i].loop, &el[i].stop_post, eloop_stop, &el[i]);
  }
  for (int i = 0; i < NLOOPS; i++) {
    pthread_join(el[i].thread, NULL);
    assert_int_equal(el[i].nconns, 1);
    sk_test_loop_done(&el[i].loop);
  }
}

/* ---- the clock seen by I/O callbacks ---- */

static uint64_t io_seen_now, io_real_now;
static void clock_recv(sk_stream *s, ssize_t n, const void *buf) {
  (void)buf;
  (void)n;
  io_seen_now = sk_loop_now(s->h.loop);
  io_real_now = sk__now_ms();
  sk_close(&s->h, NULL);
}

static void *late_writer(void *arg) {
  int fd = *(int *)arg;
  /* A delay, not synchronisation: the loop must be blocked in its wait
   * (no timers) when the byte arrives. */
  poll(NULL, 0, 300);
  assert_int_equal(write(fd, "x", 1), 1);
  return NULL;
}

/* After a long wait, a callback must see the time the wait ended: idle
 * timeouts stamped with a stale clock close fresh connections at once. */
static void test_clock_is_fresh_in_io_callbacks(void **state) {
  (void)state;
  sk_loop loop;
  sk_stream s;
  int sv[2];
  pthread_t th;
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_stream_init(&loop, &s));
  SK_ASSERT_OK(sk_stream_open(&s, sv[0]));
  SK_ASSERT_OK(sk_stream_recv_start(&s, clock_recv));
  sk_loop_run(&loop, SK_RUN_NOWAIT);
  assert_int_equal(pthread_create(&th, NULL, late_writer, &sv[1]), 0);
  sk_test_run(&loop, 10000);
  pthread_join(th, NULL);
  assert_true(io_real_now - io_seen_now < 50);
  close(sv[1]);
  sk_test_loop_done(&loop);
}

SK_TEST_MAIN(cmocka_unit_test(test_backend_selected_by_env),
             cmocka_unit_test(test_timer_order),
             cmocka_unit_test(test_timer_repeat_and_stop),
             cmocka_unit_test(test_timer_many),
             cmocka_unit_test(test_timer_zero_restart_yields),
             cmocka_unit_test(test_close_from_own_callback),
             cmocka_unit_test(test_loop_free_refuses_open_handles),
             cmocka_unit_test(test_async_wakeup_from_thread),
             cmocka_unit_test(test_post_runs_in_order_on_loop),
             cmocka_unit_test(test_eight_loops_on_eight_threads),
             cmocka_unit_test(test_clock_is_fresh_in_io_callbacks))
