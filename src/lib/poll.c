/* Poll handles: level-triggered readiness of a descriptor the caller owns,
 * so that libraries doing their own I/O run on a sockit loop. The handle is
 * a thin wrapper around an io watcher; it never touches the descriptor
 * beyond watching it. */
#include "internal.h"

#include <fcntl.h>
#include <string.h>

enum {
  SK__POLLH_WATCH = SK_POLLH_READABLE | SK_POLLH_WRITABLE,
  SK__POLLH_ALL = SK__POLLH_WATCH | SK_POLLH_DISCONNECT,
};

static void poll_io_cb(sk_loop *loop, struct sk__io *w, unsigned revents) {
  sk_poll *p = sk__container_of(w, sk_poll, io);
  int events = 0;

  SK__UNUSED(loop);
  if (revents & SK__IO_ERR) {
    /* POLLNVAL (poll), EBADF (uring): the owner closed the descriptor while
     * it was watched. Stop, or the loop would spin on it. */
    if (fcntl(*w->fd, F_GETFD) < 0 && errno == EBADF) {
      sk_poll_stop(p);
      p->cb(p, -EBADF, 0);
      return;
    }
    events |= SK_POLLH_DISCONNECT;
  }
  if (revents & SK__IO_READ)
    events |= SK_POLLH_READABLE;
  if (revents & SK__IO_WRITE)
    events |= SK_POLLH_WRITABLE;
  events &= p->events | SK_POLLH_DISCONNECT;
  if (events != 0)
    p->cb(p, 0, events);
}

int sk_poll_init(sk_loop *loop, sk_poll *p, int fd) {
  if (fd < 0)
    return -EINVAL;
  if (fcntl(fd, F_GETFD) < 0)
    return sk__err();
  memset(p, 0, sizeof(*p));
  sk__handle_init(loop, &p->h, SK_HANDLE_POLL);
  p->fd = fd;
  sk__io_init(&p->io, &p->fd, poll_io_cb);
  return 0;
}

int sk_poll_start(sk_poll *p, int events, sk_poll_cb cb) {
  unsigned want = 0;
  int rc;

  if (cb == NULL || sk_is_closing(&p->h) || (events & ~SK__POLLH_ALL) != 0 ||
      (events & SK__POLLH_WATCH) == 0)
    return -EINVAL;
  if (events & SK_POLLH_READABLE)
    want |= SK__IO_READ;
  if (events & SK_POLLH_WRITABLE)
    want |= SK__IO_WRITE;
  rc = sk__io_set(p->h.loop, &p->io, want);
  if (rc != 0) {
    /* Nothing of the old interest may stay registered half-way. */
    sk_poll_stop(p);
    return rc;
  }
  p->cb = cb;
  p->events = events & SK__POLLH_WATCH;
  sk__handle_start(&p->h);
  return 0;
}

int sk_poll_stop(sk_poll *p) {
  int rc = sk__io_set(p->h.loop, &p->io, 0);
  p->events = 0;
  sk__handle_stop(&p->h);
  return rc;
}
