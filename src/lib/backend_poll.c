/* The poll(2) backend: portable, O(n) per wait. It exists as a fallback and
 * to prove the backend contract: the async test suite runs on it too. */
#include "internal.h"

#include <poll.h>
#include <stdlib.h>

struct poll_state {
  struct pollfd *fds;
  struct sk__io **ios;
  struct sk__io **ready; /* scratch: watchers that fired */
  unsigned *revents;
  size_t n, cap;
};

static int pl_init(sk_loop *loop) {
  struct poll_state *st = calloc(1, sizeof(*st));
  if (st == NULL)
    return -ENOMEM;
  loop->backend_state = st;
  return 0;
}

static void pl_free(sk_loop *loop) {
  struct poll_state *st = loop->backend_state;
  free(st->fds);
  free(st->ios);
  free(st->ready);
  free(st->revents);
  free(st);
  loop->backend_state = NULL;
}

static int pl_grow(struct poll_state *st) {
  size_t cap = st->cap ? st->cap * 2 : 64;
  struct pollfd *fds = realloc(st->fds, cap * sizeof(*fds));
  if (fds == NULL)
    return -ENOMEM;
  st->fds = fds;
  struct sk__io **ios = realloc(st->ios, cap * sizeof(*ios));
  if (ios == NULL)
    return -ENOMEM;
  st->ios = ios;
  struct sk__io **ready = realloc(st->ready, cap * sizeof(*ready));
  if (ready == NULL)
    return -ENOMEM;
  st->ready = ready;
  unsigned *rev = realloc(st->revents, cap * sizeof(*rev));
  if (rev == NULL)
    return -ENOMEM;
  st->revents = rev;
  st->cap = cap;
  return 0;
}

static short to_poll(unsigned events) {
  short e = 0;
  if (events & SK__IO_READ)
    e |= POLLIN;
  if (events & SK__IO_WRITE)
    e |= POLLOUT;
  return e;
}

static int pl_update(sk_loop *loop, struct sk__io *w, unsigned events) {
  struct poll_state *st = loop->backend_state;
  if (events == 0) {
    if (w->slot < 0)
      return 0;
    /* Swap-remove keeps the arrays dense. */
    size_t last = --st->n;
    if ((size_t)w->slot != last) {
      st->fds[w->slot] = st->fds[last];
      st->ios[w->slot] = st->ios[last];
      st->ios[w->slot]->slot = w->slot;
    }
    w->slot = -1;
    return 0;
  }
  if (w->slot < 0) {
    if (st->n == st->cap && pl_grow(st) != 0)
      return -ENOMEM;
    w->slot = (int)st->n++;
    st->ios[w->slot] = w;
    st->fds[w->slot].fd = *w->fd;
  }
  st->fds[w->slot].events = to_poll(events);
  st->fds[w->slot].revents = 0;
  return 0;
}

static int pl_poll(sk_loop *loop, int timeout_ms) {
  struct poll_state *st = loop->backend_state;
  size_t nready = 0;
  int n = poll(st->fds, st->n, timeout_ms);
  if (n < 0)
    return errno == EINTR ? 0 : sk__err();
  /* The clock must say when the wait ended before any callback runs. */
  sk_loop_update_time(loop);
  /* Collect first, dispatch second: callbacks add and remove watchers,
   * which reorders the arrays. */
  for (size_t i = 0; i < st->n && nready < (size_t)n; i++) {
    short e = st->fds[i].revents;
    unsigned rev = 0;
    if (e == 0)
      continue;
    if (e & POLLIN)
      rev |= SK__IO_READ;
    if (e & POLLOUT)
      rev |= SK__IO_WRITE;
    if (e & (POLLERR | POLLHUP | POLLNVAL))
      rev |= SK__IO_READ | SK__IO_WRITE | SK__IO_ERR;
    st->ready[nready] = st->ios[i];
    st->revents[nready] = rev;
    nready++;
  }
  for (size_t i = 0; i < nready; i++) {
    struct sk__io *w = st->ready[i];
    unsigned rev = st->revents[i] & (w->kevents | SK__IO_ERR);
    if (w->slot < 0 || w->kevents == 0 || rev == 0)
      continue;
    w->cb(loop, w, rev);
  }
  return n;
}

const struct sk__backend sk__backend_poll = {
    "poll", pl_init, pl_free, pl_update, pl_poll,
};
