/* Shared helpers for the cmocka unit tests.
 *
 * SK_TEST_MAIN(...) runs the listed tests; with one argument it runs only the
 * test of that name (CTest registers every test this way) and fails if no
 * test has that name, so a typo can never pass silently.
 * A file that contains the word SK_TEST_ASYNC is registered once per event
 * loop backend (see tests/CMakeLists.txt). */
#ifndef SK_TEST_H
#define SK_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "sockit.h"

/* SK_TEST_TSAN: 1 in a ThreadSanitizer build. SK_TEST_SANITIZED: 1 in any
 * sanitizer build, where everything runs several times slower: bulk tests
 * move fewer bytes there (the paths are the same) rather than trust a
 * deadline a loaded machine could overrun. (gcc says __SANITIZE_*__,
 * clang __has_feature.) */
#if defined(__SANITIZE_THREAD__)
#define SK_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SK_TEST_TSAN 1
#endif
#endif
#ifndef SK_TEST_TSAN
#define SK_TEST_TSAN 0
#endif
#if SK_TEST_TSAN || defined(__SANITIZE_ADDRESS__)
#define SK_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SK_TEST_SANITIZED 1
#endif
#endif
#ifndef SK_TEST_SANITIZED
#define SK_TEST_SANITIZED 0
#endif

static inline int sk_test_main(const struct CMUnitTest *tests, size_t n,
                               int argc, char **argv) {
  if (argc > 1) {
    size_t i;
    for (i = 0; i < n; i++)
      if (strcmp(tests[i].name, argv[1]) == 0)
        break;
    if (i == n) {
      fprintf(stderr, "no test named %s\n", argv[1]);
      return 1;
    }
    cmocka_set_test_filter(argv[1]);
  }
  return _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
}

#define SK_TEST_MAIN(...)                                                      \
  int main(int argc, char **argv) {                                            \
    const struct CMUnitTest sk__tests[] = {__VA_ARGS__};                       \
    return sk_test_main(sk__tests, sizeof(sk__tests) / sizeof(sk__tests[0]),   \
                        argc, argv);                                           \
  }

/* Asserts that an sk_* call returned 0, printing the error name if not. */
#define SK_ASSERT_OK(expr)                                                     \
  do {                                                                         \
    int sk__rc = (int)(expr);                                                  \
    if (sk__rc != 0)                                                           \
      fail_msg("%s returned %d (%s: %s)", #expr, sk__rc, sk_err_name(sk__rc),  \
               sk_strerror(sk__rc));                                           \
  } while (0)

/* Fills buf with deterministic pseudo-random bytes (xorshift). */
static inline void sk_test_fill_random(void *buf, size_t len, uint64_t seed) {
  unsigned char *p = buf;
  uint64_t x = seed ? seed : 88172645463325252ull;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (unsigned char)x;
  }
}

/* Runs the loop until it has nothing left to do, failing the test if that
 * takes longer than timeout_ms (a watchdog timer, unreferenced so it does not
 * keep the loop alive). */
static inline void sk_test__watchdog_cb(sk_timer *t) {
  fail_msg("loop did not finish within the test deadline (%s backend)",
           sk_loop_backend(t->h.loop));
}
static inline void sk_test_run(sk_loop *loop, uint64_t timeout_ms) {
  sk_timer wd;
  assert_int_equal(sk_timer_init(loop, &wd), 0);
  assert_int_equal(sk_timer_start(&wd, sk_test__watchdog_cb, timeout_ms, 0), 0);
  sk_unref(&wd.h);
  int rc = sk_loop_run(loop, SK_RUN_DEFAULT);
  assert_true(rc >= 0);
  sk_close(&wd.h, NULL);
  sk_loop_run(loop, SK_RUN_NOWAIT);
}

/* Closes a loop and asserts nothing leaked: every handle was closed. */
static inline void sk_test_loop_done(sk_loop *loop) {
  sk_loop_run(loop, SK_RUN_NOWAIT);
  assert_int_equal(sk_loop_handles(loop), 0);
  assert_int_equal(sk_loop_free(loop), 0);
}

/* A plain socket of the given type on 127.0.0.1, on a port the kernel
 * picks (listening, for SOCK_STREAM), made without the library so that
 * a test of one part does not lean on another. Its port in *port. */
static inline int sk_test_loopback4(int type, uint16_t *port) {
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  if (type == SOCK_STREAM)
    assert_int_equal(listen(fd, 8), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
  *port = ntohs(sin.sin_port);
  return fd;
}

/* Descriptors this process has open (a leak check around a call). */
static inline int sk_test_open_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  while (readdir(d) != NULL)
    n++;
  closedir(d);
  return n;
}

#endif
