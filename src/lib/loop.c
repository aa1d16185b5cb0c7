/* The event loop: phases, handles, deferred callbacks and cross-thread
 * wake-ups. The kernel interface lives in backend_*.c. */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef SK_HAVE_EVENTFD
#include <sys/eventfd.h>
#endif

/* 64 KiB: the largest UDP payload fits, and a busy TCP stream needs few
 * reads per event. One per loop, shared by every handle. */
#define SK__RBUF_SIZE (64 * 1024)

static const struct sk__backend *find_backend(const char *name) {
#ifdef SK_HAVE_EPOLL
  if (name == NULL || *name == '\0' || strcmp(name, "epoll") == 0)
    return &sk__backend_epoll;
#else
  if (name == NULL || *name == '\0')
    return &sk__backend_poll;
#endif
  if (strcmp(name, "poll") == 0)
    return &sk__backend_poll;
#ifdef SK_HAVE_URING
  if (strcmp(name, "uring") == 0)
    return &sk__backend_uring;
#endif
  return NULL;
}

static void wake_cb(sk_loop *loop, struct sk__io *w, unsigned revents);

static int wake_open(sk_loop *loop) {
  int rfd, wfd;
#ifdef SK_HAVE_EVENTFD
  rfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (rfd < 0)
    return sk__err();
  wfd = rfd;
#else
  int p[2];
  if (pipe(p) < 0)
    return sk__err();
  rfd = p[0];
  wfd = p[1];
  sk__fd_prepare(rfd);
  sk__fd_prepare(wfd);
#endif
  loop->wake_rfd = rfd;
  sk__io_init(&loop->wake_io, &loop->wake_rfd, wake_cb);
  loop->wake_wfd = wfd;
  return sk__io_start(loop, &loop->wake_io, SK__IO_READ);
}

int sk_loop_init_backend(sk_loop *loop, const char *name) {
  int rc;

  memset(loop, 0, sizeof(*loop));
  loop->wake_wfd = -1;
  loop->emfile_fd = -1;
  loop->wake_rfd = -1;
  if (name == NULL)
    name = getenv("SK_BACKEND");
  loop->backend = find_backend(name);
  if (loop->backend == NULL)
    return SK_EBACKEND;
  loop->rbuf = malloc(SK__RBUF_SIZE);
  if (loop->rbuf == NULL)
    return -ENOMEM;
  loop->rbuf_len = SK__RBUF_SIZE;
  if (pthread_mutex_init(&loop->post_lock, NULL) != 0) {
    free(loop->rbuf);
    return -ENOMEM;
  }
  rc = loop->backend->init(loop);
  if (rc == 0)
    rc = wake_open(loop);
  if (rc != 0) {
    if (loop->wake_rfd >= 0)
      sk__close_fd(loop->wake_rfd);
    if (loop->wake_wfd >= 0 && loop->wake_wfd != loop->wake_rfd)
      sk__close_fd(loop->wake_wfd);
    if (loop->backend_state != NULL)
      loop->backend->free(loop);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop->rbuf);
    return rc;
  }
  /* A spare descriptor to give up when accept() hits EMFILE, so the
   * pending connection can be taken and closed instead of spinning. */
  loop->emfile_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  loop->now = sk__now_ms();
  return 0;
}

int sk_loop_init(sk_loop *loop) {
  return sk_loop_init_backend(loop, NULL);
}

int sk_loop_free(sk_loop *loop) {
  if (loop->nhandles > 0 || loop->pend_head != NULL)
    return -EBUSY;
  sk__io_stop(loop, &loop->wake_io, SK__IO_READ);
  if (loop->wake_wfd >= 0 && loop->wake_wfd != loop->wake_rfd)
    sk__close_fd(loop->wake_wfd);
  sk__close_fd(loop->wake_rfd);
  if (loop->emfile_fd >= 0)
    sk__close_fd(loop->emfile_fd);
  loop->backend->free(loop);
  pthread_mutex_destroy(&loop->post_lock);
  sk__wreq_cache_free(loop);
  free(loop->heap);
  free(loop->rbuf);
  free(loop->tbuf);
  free(loop->udp_batch);
  memset(loop, 0, sizeof(*loop));
  return 0;
}

uint64_t sk_loop_now(const sk_loop *loop) {
  return loop->now;
}

void sk_loop_update_time(sk_loop *loop) {
  loop->now = sk__now_ms();
}

const char *sk_loop_backend(const sk_loop *loop) {
  return loop->backend->name;
}

unsigned sk_loop_handles(const sk_loop *loop) {
  return loop->nhandles;
}

void sk_loop_stop(sk_loop *loop) {
  loop->stop = 1;
}

/* ---- io watchers ---- */

void sk__io_init(struct sk__io *w, const int *fd, sk__io_cb cb) {
  w->fd = fd;
  w->events = 0;
  w->kevents = 0;
  w->slot = -1;
  w->cb = cb;
}

int sk__io_set(sk_loop *loop, struct sk__io *w, unsigned events) {
  int rc;
  w->events = events;
  if (events == w->kevents || *w->fd < 0)
    return 0;
  rc = loop->backend->update(loop, w, events);
  if (rc == 0)
    w->kevents = events;
  return rc;
}

int sk__io_start(sk_loop *loop, struct sk__io *w, unsigned events) {
  return sk__io_set(loop, w, w->events | events);
}

int sk__io_stop(sk_loop *loop, struct sk__io *w, unsigned events) {
  return sk__io_set(loop, w, w->events & ~events);
}

/* ---- deferred callbacks ---- */

void sk__pending_add(sk_loop *loop, struct sk__pending *p,
                     void (*cb)(struct sk__pending *p)) {
  p->cb = cb;
  if (p->queued)
    return;
  p->queued = 1;
  p->next = NULL;
  p->prev = loop->pend_tail;
  if (loop->pend_tail != NULL)
    loop->pend_tail->next = p;
  else
    loop->pend_head = p;
  loop->pend_tail = p;
}

void sk__pending_remove(sk_loop *loop, struct sk__pending *p) {
  if (!p->queued)
    return;
  if (p->prev != NULL)
    p->prev->next = p->next;
  else
    loop->pend_head = p->next;
  if (p->next != NULL)
    p->next->prev = p->prev;
  else
    loop->pend_tail = p->prev;
  p->next = p->prev = NULL;
  p->queued = 0;
}

/* Runs the callbacks queued before this call started; ones they queue run
 * in the next round, so a callback that keeps re-queueing cannot starve
 * I/O. */
static void run_pending(sk_loop *loop) {
  struct sk__pending *last = loop->pend_tail, *p;
  int done = (last == NULL);
  while (!done && (p = loop->pend_head) != NULL) {
    done = (p == last);
    sk__pending_remove(loop, p);
    p->cb(p);
  }
}

/* ---- handles ---- */

void sk__handle_init(sk_loop *loop, sk_handle *h, int type) {
  h->loop = loop;
  h->type = type;
  h->hflags = SK__H_REF;
  h->close_cb = NULL;
  memset(&h->close_pend, 0, sizeof(h->close_pend));
  loop->nhandles++;
}

void sk__handle_start(sk_handle *h) {
  if (h->hflags & SK__H_ACTIVE)
    return;
  h->hflags |= SK__H_ACTIVE;
  if (h->hflags & SK__H_REF)
    h->loop->active++;
}

void sk__handle_stop(sk_handle *h) {
  if (!(h->hflags & SK__H_ACTIVE))
    return;
  h->hflags &= ~SK__H_ACTIVE;
  if (h->hflags & SK__H_REF)
    h->loop->active--;
}

void sk_ref(sk_handle *h) {
  if (h->hflags & SK__H_REF)
    return;
  h->hflags |= SK__H_REF;
  if (h->hflags & SK__H_ACTIVE)
    h->loop->active++;
}

void sk_unref(sk_handle *h) {
  if (!(h->hflags & SK__H_REF))
    return;
  h->hflags &= ~SK__H_REF;
  if (h->hflags & SK__H_ACTIVE)
    h->loop->active--;
}

int sk_is_closing(const sk_handle *h) {
  return (h->hflags & (SK__H_CLOSING | SK__H_CLOSED)) != 0;
}

static void async_unlink(sk_async *a);

static void close_done(struct sk__pending *p) {
  sk_handle *h = sk__container_of(p, sk_handle, close_pend);
  h->hflags |= SK__H_CLOSED;
  h->loop->nhandles--;
  if (h->type == SK_HANDLE_ASYNC)
    async_unlink((sk_async *)h);
  else if (h->type == SK_HANDLE_STREAM)
    sk__stream_closed((sk_stream *)h);
  if (h->close_cb != NULL)
    h->close_cb(h);
}

void sk_close(sk_handle *h, sk_close_cb cb) {
  if (h->hflags & (SK__H_CLOSING | SK__H_CLOSED))
    return;
  h->hflags |= SK__H_CLOSING;
  h->close_cb = cb;
  switch (h->type) {
  case SK_HANDLE_TIMER:
    sk__tnode_stop(h->loop, &((sk_timer *)h)->node);
    break;
  case SK_HANDLE_STREAM:
    sk__stream_close((sk_stream *)h);
    break;
  case SK_HANDLE_UDP:
    sk__udp_close((sk_udp *)h);
    break;
  case SK_HANDLE_SIGNAL:
    sk_signal_stop((sk_signal *)h);
    break;
  case SK_HANDLE_POLL:
    sk_poll_stop((sk_poll *)h);
    break;
  default:
    break;
  }
  sk__handle_stop(h);
  /* Queued last: every completion the close produced runs first. */
  sk__pending_add(h->loop, &h->close_pend, close_done);
}

/* ---- running ---- */

static int loop_alive(const sk_loop *loop) {
  return loop->active > 0 || loop->pend_head != NULL;
}

int sk_loop_run(sk_loop *loop, sk_run_mode mode) {
  int alive, timeout, rc;

  loop->stop = 0;
  sk_loop_update_time(loop);
  alive = loop_alive(loop);
  if (!alive && mode != SK_RUN_DEFAULT) {
    /* Still poll once so posted functions and wake-ups get served. */
    alive = 1;
  }
  while (alive && !loop->stop) {
    sk__timers_run(loop);
    run_pending(loop);
    timeout = 0;
    if (mode != SK_RUN_NOWAIT && loop->pend_head == NULL && !loop->stop &&
        loop_alive(loop))
      timeout = sk__timers_next(loop);
    rc = loop->backend->poll(loop, timeout);
    if (rc < 0)
      return rc;
    sk_loop_update_time(loop);
    sk__timers_run(loop);
    run_pending(loop);
    alive = loop_alive(loop);
    if (mode != SK_RUN_DEFAULT)
      break;
  }
  return loop_alive(loop);
}

/* ---- cross-thread wake-ups ---- */

static void wake_signal(sk_loop *loop) {
  uint64_t one = 1;
  ssize_t n;
  do
    n = write(loop->wake_wfd, &one,
              loop->wake_wfd == loop->wake_rfd ? sizeof(one) : 1);
  while (n < 0 && errno == EINTR);
  /* EAGAIN means a wake-up is already pending: nothing is lost. */
}

static void async_unlink(sk_async *a) {
  sk_loop *loop = a->h.loop;
  sk_handle **pp = &loop->asyncs;
  while (*pp != NULL && *pp != &a->h)
    pp = &((sk_async *)*pp)->next_async;
  if (*pp != NULL)
    *pp = a->next_async;
}

static void wake_cb(sk_loop *loop, struct sk__io *w, unsigned revents) {
  unsigned char buf[64];
  sk_post *posts;
  sk_handle *h;
  ssize_t n;

  do
    n = read(*w->fd, buf, sizeof(buf));
  while (n > 0 || (n < 0 && errno == EINTR));

  pthread_mutex_lock(&loop->post_lock);
  loop->wake_pending = 0;
  posts = loop->post_head;
  loop->post_head = loop->post_tail = NULL;
  pthread_mutex_unlock(&loop->post_lock);

  while (posts != NULL) {
    sk_post *next = posts->next;
    posts->fn(posts);
    posts = next;
  }

  /* Async handles are unlinked only from close_done, which never runs
   * during this dispatch, so walking the list here is safe. */
  for (h = loop->asyncs; h != NULL; h = ((sk_async *)h)->next_async) {
    sk_async *a = (sk_async *)h;
    int fire;
    pthread_mutex_lock(&loop->post_lock);
    fire = a->pending;
    a->pending = 0;
    pthread_mutex_unlock(&loop->post_lock);
    if (fire && !sk_is_closing(h))
      a->cb(a);
  }
}

int sk_async_init(sk_loop *loop, sk_async *a, sk_async_cb cb) {
  memset(a, 0, sizeof(*a));
  sk__handle_init(loop, &a->h, SK_HANDLE_ASYNC);
  a->cb = cb;
  a->next_async = loop->asyncs;
  loop->asyncs = &a->h;
  sk__handle_start(&a->h);
  return 0;
}

/* Marks the loop as woken (call with post_lock held). Returns 1 when the
 * caller must signal the loop: only the first wake-up since the loop last
 * looked costs a system call. */
static int wake_mark(sk_loop *loop) {
  int need = !loop->wake_pending;
  loop->wake_pending = 1;
  return need;
}

int sk_async_send(sk_async *a) {
  sk_loop *loop = a->h.loop;
  pthread_mutex_lock(&loop->post_lock);
  a->pending = 1;
  int need_wake = wake_mark(loop);
  pthread_mutex_unlock(&loop->post_lock);
  if (need_wake)
    wake_signal(loop);
  return 0;
}

int sk_loop_post(sk_loop *loop, sk_post *req, sk_post_fn fn, void *data) {
  int need_wake;
  req->fn = fn;
  req->data = data;
  req->next = NULL;
  pthread_mutex_lock(&loop->post_lock);
  if (loop->post_tail != NULL)
    loop->post_tail->next = req;
  else
    loop->post_head = req;
  loop->post_tail = req;
  need_wake = wake_mark(loop);
  pthread_mutex_unlock(&loop->post_lock);
  if (need_wake)
    wake_signal(loop);
  return 0;
}
