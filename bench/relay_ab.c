/* A/B of the relay's two paths (sk_relay, include/sockit/relay.h): splice(2)
 * between plain streams against copying (SK_RELAY_NO_SPLICE), one relay,
 * plain TCP on loopback. A writer thread pushes the bytes into one side, a
 * reader thread takes them from the other; the main thread runs the loop
 * with the relay. Prints the wall time, the relay thread's CPU time and the
 * throughput of each path.
 *
 *   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && \
 *     cmake --build build-rel --target sockit_static
 *   cc -O2 -Iinclude bench/relay_ab.c build-rel/libsockit.a \
 *     $(pkg-config --libs openssl liburing libcares 2>/dev/null) -lpthread \
 *     -o /tmp/relay_ab
 *   /tmp/relay_ab [MiB, default 1024] [runs, default 3]
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockit.h"

static size_t total;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void tcp_pair(int fds[2]) {
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
      listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&sin, &len) < 0)
    die("listen");
  fds[0] = socket(AF_INET, SOCK_STREAM, 0);
  if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&sin, sizeof(sin)) < 0)
    die("connect");
  fds[1] = accept(l, NULL, NULL);
  if (fds[1] < 0)
    die("accept");
  close(l);
}

static void *writer(void *arg) {
  int fd = *(int *)arg;
  static char buf[256 * 1024];
  memset(buf, 'x', sizeof(buf));
  for (size_t left = total; left > 0;) {
    ssize_t n = write(fd, buf, left < sizeof(buf) ? left : sizeof(buf));
    if (n <= 0)
      die("write");
    left -= (size_t)n;
  }
  shutdown(fd, SHUT_WR);
  return NULL;
}

static void *reader(void *arg) {
  int fd = *(int *)arg;
  static char buf[256 * 1024];
  size_t got = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    got += (size_t)n;
  if (got != total) {
    fprintf(stderr, "reader got %zu of %zu\n", got, total);
    exit(1);
  }
  shutdown(fd, SHUT_WR);
  return NULL;
}

static int relay_status = 1;

static void relay_done(sk_relay *r, int status) {
  relay_status = status;
  sk_close(&r->a->h, NULL);
  sk_close(&r->b->h, NULL);
}

static double secs(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run(unsigned flags) {
  int p1[2], p2[2];
  sk_loop loop;
  sk_stream a, b;
  sk_relay r;
  sk_relay_options o = {0};
  pthread_t tw, tr;

  tcp_pair(p1);
  tcp_pair(p2);
  if (sk_loop_init(&loop) != 0 || sk_stream_init(&loop, &a) != 0 ||
      sk_stream_init(&loop, &b) != 0 || sk_stream_open(&a, p1[1]) != 0 ||
      sk_stream_open(&b, p2[0]) != 0)
    die("sockit setup");
  o.flags = flags;
  memset(&r, 0, sizeof(r));
  int rc = sk_relay_start(&r, &a, &b, &o, relay_done);
  if (rc != 0) {
    fprintf(stderr, "sk_relay_start: %s\n", sk_strerror(rc));
    exit(1);
  }
  double w0 = secs(CLOCK_MONOTONIC), c0 = secs(CLOCK_THREAD_CPUTIME_ID);
  pthread_create(&tw, NULL, writer, &p1[0]);
  pthread_create(&tr, NULL, reader, &p2[1]);
  sk_loop_run(&loop, SK_RUN_DEFAULT);
  double w1 = secs(CLOCK_MONOTONIC), c1 = secs(CLOCK_THREAD_CPUTIME_ID);
  pthread_join(tw, NULL);
  pthread_join(tr, NULL);
  close(p1[0]);
  close(p2[1]);
  sk_loop_free(&loop);
  if (relay_status != 0 || r.a_to_b.bytes != total) {
    fprintf(stderr, "relay ended with %d after %llu bytes\n", relay_status,
            (unsigned long long)r.a_to_b.bytes);
    exit(1);
  }
  printf("%-8s spliced=%d wall %6.3f s  relay cpu %6.3f s  %7.1f MiB/s  "
         "%.2f cpu-s/GiB\n",
         flags ? "copy" : "splice", r.spliced, w1 - w0, c1 - c0,
         (double)total / (1 << 20) / (w1 - w0),
         (c1 - c0) / ((double)total / (1 << 30)));
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
  int runs = argc > 2 ? atoi(argv[2]) : 3;
  total = mib << 20;
  printf("relay A/B: %zu MiB one way over loopback TCP, backend %s\n", mib,
         getenv("SK_BACKEND") ? getenv("SK_BACKEND") : "default");
  for (int i = 0; i < runs; i++) {
    run(0);
    run(SK_RELAY_NO_SPLICE);
  }
  return 0;
}
