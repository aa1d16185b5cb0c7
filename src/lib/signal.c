/* Signal handles: signals delivered as loop callbacks. On Linux each loop
 * that watches signals owns one signalfd whose mask is the union of the
 * signals its started handles watch; the signals are blocked in the loop's
 * thread so that the signalfd, not a handler or the default action, takes
 * them. The mask rules are documented in loop.h. */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/signalfd.h>
#endif

static int sig_valid(int signum) {
  sigset_t set;
  if (signum <= 0 || signum == SIGKILL || signum == SIGSTOP)
    return 0;
  sigemptyset(&set);
  /* Fails for numbers out of range and for the C library's own signals. */
  return sigaddset(&set, signum) == 0;
}

#ifdef __linux__

/* Per-loop state (loop->signals), alive while a handle is started. */
struct sk__sigstate {
  struct sk__io io; /* watches fd */
  int fd;           /* the signalfd */
  sigset_t watched; /* the signalfd's mask */
  sigset_t blocked; /* signals this loop blocked: unblocked when unwatched */
  sk_signal *head;  /* started handles, in start order */
  int dispatching;  /* in sig_io_cb: teardown waits until it ends */
};

/* Signal records read per read(2); more are read in the next iteration
 * (the signalfd stays readable). */
#define SK__SIG_BATCH 16
/* Bound on the instances of one signal discarded when it is unwatched
 * (real-time signals queue). */
#define SK__SIG_DRAIN 1024

static void sig_teardown(sk_loop *loop, struct sk__sigstate *st) {
  sk__io_stop(loop, &st->io, SK__IO_READ);
  sk__close_fd(st->fd);
  free(st);
  loop->signals = NULL;
}

/* Runs the callbacks of every started handle of signo: each handle counts
 * its due delivery in caught, and the list is searched again after each
 * callback, since a callback may stop, close or start any handle. */
static void sig_deliver(struct sk__sigstate *st, int signo) {
  sk_signal *s;
  for (s = st->head; s != NULL; s = s->next_signal)
    if (s->signum == signo)
      s->caught++;
  for (;;) {
    for (s = st->head; s != NULL && s->caught == 0; s = s->next_signal)
      ;
    if (s == NULL)
      break;
    s->caught--;
    s->cb(s, s->signum);
  }
}

static void sig_io_cb(sk_loop *loop, struct sk__io *w, unsigned revents) {
  struct sk__sigstate *st = sk__container_of(w, struct sk__sigstate, io);
  struct signalfd_siginfo si[SK__SIG_BATCH];
  ssize_t n;

  SK__UNUSED(revents);
  do
    n = read(*w->fd, si, sizeof(si));
  while (n < 0 && errno == EINTR);
  /* n < 0 (EAGAIN): another loop or sk_signal_stop took the signal. */
  st->dispatching = 1;
  for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(si[0]); i++)
    sig_deliver(st, (int)si[i].ssi_signo);
  st->dispatching = 0;
  if (st->head == NULL)
    sig_teardown(loop, st);
}

static int sig_state(sk_loop *loop, struct sk__sigstate **out) {
  struct sk__sigstate *st = loop->signals;
  int fd, rc;

  *out = NULL; /* set on every path (gcc -O2 cannot tell sk__err() < 0) */
  if (st == NULL) {
    st = calloc(1, sizeof(*st));
    if (st == NULL)
      return -ENOMEM;
    sigemptyset(&st->watched);
    sigemptyset(&st->blocked);
    fd = signalfd(-1, &st->watched, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
      rc = sk__err();
      free(st);
      return rc;
    }
    st->fd = fd;
    sk__io_init(&st->io, &st->fd, sig_io_cb);
    rc = sk__io_start(loop, &st->io, SK__IO_READ);
    if (rc != 0) {
      sk__close_fd(fd);
      free(st);
      return rc;
    }
    loop->signals = st;
  }
  *out = st;
  return 0;
}

static int sig_watched_by_other(const struct sk__sigstate *st,
                                const sk_signal *self, int signum) {
  for (const sk_signal *s = st->head; s != NULL; s = s->next_signal)
    if (s != self && s->signum == signum)
      return 1;
  return 0;
}

/* Adds signum to the loop's signalfd, blocking it in this thread first. */
static int sig_watch(struct sk__sigstate *st, int signum) {
  sigset_t one, old, mask;

  if (sigismember(&st->watched, signum) == 1)
    return 0;
  sigemptyset(&one);
  sigaddset(&one, signum);
  if (pthread_sigmask(SIG_BLOCK, &one, &old) != 0)
    return -EINVAL;
  mask = st->watched;
  sigaddset(&mask, signum);
  if (signalfd(st->fd, &mask, 0) < 0) {
    int rc = sk__err();
    if (sigismember(&old, signum) != 1)
      pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    return rc;
  }
  st->watched = mask;
  if (sigismember(&old, signum) != 1)
    sigaddset(&st->blocked, signum);
  return 0;
}

/* Removes signum from the signalfd; if this loop blocked it, discards the
 * instances pending now (unblocking them would run the default action) and
 * unblocks it. */
static void sig_unwatch(struct sk__sigstate *st, int signum) {
  sigset_t one;
  struct timespec zero = {0, 0};

  sigdelset(&st->watched, signum);
  signalfd(st->fd, &st->watched, 0);
  if (sigismember(&st->blocked, signum) != 1)
    return;
  sigdelset(&st->blocked, signum);
  sigemptyset(&one);
  sigaddset(&one, signum);
  for (int i = 0; i < SK__SIG_DRAIN && sigtimedwait(&one, NULL, &zero) > 0; i++)
    ;
  pthread_sigmask(SIG_UNBLOCK, &one, NULL);
}

int sk_signal_start(sk_signal *s, sk_signal_cb cb, int signum) {
  sk_loop *loop = s->h.loop;
  struct sk__sigstate *st;
  sk_signal **pp;
  int rc;

  if (cb == NULL || sk_is_closing(&s->h) || !sig_valid(signum))
    return -EINVAL;
  if ((s->h.hflags & SK__H_ACTIVE) && s->signum == signum) {
    s->cb = cb;
    return 0;
  }
  sk_signal_stop(s);
  rc = sig_state(loop, &st);
  if (rc != 0)
    return rc;
  rc = sig_watch(st, signum);
  if (rc != 0) {
    if (st->head == NULL && !st->dispatching)
      sig_teardown(loop, st);
    return rc;
  }
  s->cb = cb;
  s->signum = signum;
  s->caught = 0;
  s->next_signal = NULL;
  for (pp = &st->head; *pp != NULL; pp = &(*pp)->next_signal)
    ;
  *pp = s;
  sk__handle_start(&s->h);
  return 0;
}

int sk_signal_stop(sk_signal *s) {
  sk_loop *loop = s->h.loop;
  struct sk__sigstate *st = loop->signals;
  sk_signal **pp;

  if (!(s->h.hflags & SK__H_ACTIVE) || st == NULL)
    return 0;
  for (pp = &st->head; *pp != NULL && *pp != s; pp = &(*pp)->next_signal)
    ;
  if (*pp != NULL)
    *pp = s->next_signal;
  s->next_signal = NULL;
  s->caught = 0;
  sk__handle_stop(&s->h);
  if (!sig_watched_by_other(st, s, s->signum))
    sig_unwatch(st, s->signum);
  if (st->head == NULL && !st->dispatching)
    sig_teardown(loop, st);
  return 0;
}

#else /* no signalfd */

int sk_signal_start(sk_signal *s, sk_signal_cb cb, int signum) {
  SK__UNUSED(s);
  SK__UNUSED(cb);
  SK__UNUSED(signum);
  return -ENOSYS;
}

int sk_signal_stop(sk_signal *s) {
  SK__UNUSED(s);
  return 0;
}

#endif

int sk_signal_block(int signum) {
  sigset_t one;
  if (!sig_valid(signum))
    return -EINVAL;
  sigemptyset(&one);
  sigaddset(&one, signum);
  return -pthread_sigmask(SIG_BLOCK, &one, NULL);
}

int sk_signal_init(sk_loop *loop, sk_signal *s) {
  memset(s, 0, sizeof(*s));
  sk__handle_init(loop, &s->h, SK_HANDLE_SIGNAL);
  return 0;
}
