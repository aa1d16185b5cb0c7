/* floor_echo: the floor of a TCP echo (or discard) server, used as a
 * benchmark peer for sockit (bench/run.py). Not part of sockit itself.
 *
 *   floor_echo [echo|discard] PORT [threads|epoll]
 *
 * threads (the default), the floor of issue 16: only what the kernel must
 * do, one thread per connection, each a blocking recv() into a stack buffer
 * followed by send() of what came in (echo) or nothing (discard). No event
 * loop, no queue, no allocation per message. What sockit-server spends
 * above this per message is user-space work the floor does not do -- but
 * each message also costs this floor a thread wake-up and a context switch,
 * which an event loop serving many ready connections per wait does not pay.
 *
 * epoll: the same work behind one level-triggered epoll loop on one thread
 * (the floor of an event loop): each ready connection gets one recv() and a
 * blocking send() of what came in; no queue (a peer that stops reading
 * stalls the loop: fine for the benchmark's clients, not for a server).
 *
 * Listens on 127.0.0.1:PORT (0: the kernel chooses), sets TCP_NODELAY on
 * each connection like the other peers, prints `listening on
 * 127.0.0.1:PORT` on stderr once bound and exits 0 on SIGINT/SIGTERM. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE   (64 * 1024)
#define STACK_SIZE (256 * 1024) /* the buffer plus room; 1000 threads fit */
#define BACKLOG    4096

static int echo_mode = 1;

static void on_signal(int signum) {
  (void)signum;
  _exit(0);
}

/* send_all: sends all n bytes; 0 on success, -1 once the peer is gone. */
static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* serve_once: one recv() and the echo of what came in; -1 once the
 * connection is done (closed, reset, or the peer went away). */
static int serve_once(int fd, char *buf) {
  ssize_t r = recv(fd, buf, BUF_SIZE, 0);
  if (r < 0 && (errno == EINTR || errno == EAGAIN))
    return 0;
  if (r <= 0)
    return -1;
  if (echo_mode && send_all(fd, buf, (size_t)r) < 0)
    return -1;
  return 0;
}

static void *conn_main(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[BUF_SIZE];
  while (serve_once(fd, buf) == 0)
    ;
  close(fd);
  return NULL;
}

static int set_nodelay(int fd) {
  int one = 1;
  return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int run_epoll(int lfd) {
  static char buf[BUF_SIZE];
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[256];
  int ep = epoll_create1(0);
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
    perror("floor_echo: epoll");
    return 1;
  }
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        int c = accept(lfd, NULL, NULL);
        ev.data.fd = c;
        if (c >= 0 &&
            (set_nodelay(c) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0))
          close(c);
      } else if (serve_once(fd, buf) < 0) {
        close(fd); /* also leaves the epoll set */
      }
    }
  }
}

int main(int argc, char **argv) {
  int epoll = argc == 4 && strcmp(argv[3], "epoll") == 0;
  if (argc < 3 || argc > 4 ||
      (strcmp(argv[1], "echo") && strcmp(argv[1], "discard")) ||
      (argc == 4 && !epoll && strcmp(argv[3], "threads"))) {
    fprintf(stderr, "usage: floor_echo [echo|discard] PORT [threads|epoll]\n");
    return 2;
  }
  echo_mode = strcmp(argv[1], "echo") == 0;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)atoi(argv[2])),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  if (lfd < 0 ||
      setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(lfd, BACKLOG) < 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
    perror("floor_echo: listen");
    return 1;
  }
  fprintf(stderr, "listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
  if (epoll)
    return run_epoll(lfd);

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, STACK_SIZE);
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      perror("floor_echo: accept");
      return 1;
    }
    set_nodelay(fd);
    pthread_t t;
    if (pthread_create(&t, &attr, conn_main, (void *)(intptr_t)fd) != 0) {
      fprintf(stderr, "floor_echo: no thread for a connection\n");
      close(fd);
    }
  }
}
