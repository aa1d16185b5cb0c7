/* The epoll backend (Linux). Level-triggered: a handler may stop reading
 * early (fairness, back-pressure) and the kernel reports the rest later. */
#include "internal.h"

#include <stdlib.h>
#include <sys/epoll.h>

#define MAX_EVENTS 256

struct epoll_state {
  int epfd;
  struct epoll_event events[MAX_EVENTS];
};

static int ep_init(sk_loop *loop) {
  struct epoll_state *st = malloc(sizeof(*st));
  if (st == NULL)
    return -ENOMEM;
  st->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (st->epfd < 0) {
    int rc = sk__err();
    free(st);
    return rc;
  }
  loop->backend_state = st;
  return 0;
}

static void ep_free(sk_loop *loop) {
  struct epoll_state *st = loop->backend_state;
  sk__close_fd(st->epfd);
  free(st);
  loop->backend_state = NULL;
}

static int ep_update(sk_loop *loop, struct sk__io *w, unsigned events) {
  struct epoll_state *st = loop->backend_state;
  struct epoll_event ev = {0};
  int op;

  ev.data.ptr = w;
  if (events & SK__IO_READ)
    ev.events |= EPOLLIN;
  if (events & SK__IO_WRITE)
    ev.events |= EPOLLOUT;
  if (events == 0) {
    /* Removed entirely rather than modified to 0: epoll reports errors
     * and hang-ups even for an empty interest set, which would spin. */
    if (epoll_ctl(st->epfd, EPOLL_CTL_DEL, *w->fd, &ev) < 0 &&
        errno != ENOENT && errno != EBADF)
      return sk__err();
    return 0;
  }
  op = w->kevents == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (epoll_ctl(st->epfd, op, *w->fd, &ev) < 0) {
    /* The descriptor may have been registered before under another
     * watcher state; retry with the other operation once. */
    if (op == EPOLL_CTL_ADD && errno == EEXIST)
      op = EPOLL_CTL_MOD;
    else if (op == EPOLL_CTL_MOD && errno == ENOENT)
      op = EPOLL_CTL_ADD;
    else
      return sk__err();
    if (epoll_ctl(st->epfd, op, *w->fd, &ev) < 0)
      return sk__err();
  }
  return 0;
}

static int ep_poll(sk_loop *loop, int timeout_ms) {
  struct epoll_state *st = loop->backend_state;
  int n = epoll_wait(st->epfd, st->events, MAX_EVENTS, timeout_ms);
  if (n < 0)
    return errno == EINTR ? 0 : sk__err();
  /* Callbacks below read the loop's clock (timers, idle stamps): it must
   * say when the wait ended, not when it began. */
  sk_loop_update_time(loop);
  for (int i = 0; i < n; i++) {
    struct sk__io *w = st->events[i].data.ptr;
    unsigned e = st->events[i].events, rev = 0;
    /* A watcher stopped by an earlier callback in this batch is skipped;
     * its memory stays valid until its handle's close callback, which
     * runs only after this dispatch. */
    if (w->kevents == 0)
      continue;
    if (e & EPOLLIN)
      rev |= SK__IO_READ;
    if (e & EPOLLOUT)
      rev |= SK__IO_WRITE;
    if (e & (EPOLLERR | EPOLLHUP))
      rev |= SK__IO_READ | SK__IO_WRITE | SK__IO_ERR;
    rev &= w->kevents | SK__IO_ERR;
    if (rev != 0)
      w->cb(loop, w, rev);
  }
  return n;
}

const struct sk__backend sk__backend_epoll = {
    "epoll", ep_init, ep_free, ep_update, ep_poll,
};
