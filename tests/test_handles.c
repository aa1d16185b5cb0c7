/* Signal and poll handles: signals delivered as loop callbacks, and
 * readiness of descriptors the caller owns (pipes, eventfds, a python3
 * subprocess's pipes). Registered once per backend (SK_TEST_ASYNC). Each
 * CTest test runs one of these in its own process, so the signal masks a
 * test leaves behind touch no other test. */
#include "sk_test.h"
#include "internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* 1 if signum is blocked in the calling thread. */
static int is_blocked(int signum) {
  sigset_t cur;
  assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &cur), 0);
  return sigismember(&cur, signum) == 1;
}

static int is_pending(int signum) {
  sigset_t set;
  assert_int_equal(sigpending(&set), 0);
  return sigismember(&set, signum) == 1;
}

static void unblock(int signum) {
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, signum);
  assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &one, NULL), 0);
}

/* ---- signals ---- */

static int ncaught[3];
static int last_signum;

static void count_and_close_cb(sk_signal *s, int signum) {
  last_signum = signum;
  ncaught[0]++;
  sk_close(&s->h, NULL);
}

static void kill_self_cb(sk_timer *t) {
  assert_int_equal(kill(getpid(), (int)(intptr_t)t->h.data), 0);
  sk_close(&t->h, NULL);
}

/* The signal was not blocked before: sk_signal_start blocks it, so a
 * process-directed kill reaches the loop instead of killing the process. */
static void test_signal_from_loop_thread(void **state) {
  (void)state;
  sk_loop loop;
  sk_signal s;
  sk_timer t;
  unblock(SIGUSR1);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_signal_init(&loop, &s));
  SK_ASSERT_OK(sk_signal_start(&s, count_and_close_cb, SIGUSR1));
  assert_true(is_blocked(SIGUSR1));
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  t.h.data = (void *)(intptr_t)SIGUSR1;
  SK_ASSERT_OK(sk_timer_start(&t, kill_self_cb, 0, 0));
  sk_test_run(&loop, 10000);
  assert_int_equal(ncaught[0], 1);
  assert_int_equal(last_signum, SIGUSR1);
  /* The last handle closed: the mask is as it was, nothing pending. */
  assert_false(is_blocked(SIGUSR1));
  assert_false(is_pending(SIGUSR1));
  assert_null(loop.signals);
  sk_test_loop_done(&loop);
}

static void *kill_thread(void *arg) {
  (void)arg;
  assert_int_equal(kill(getpid(), SIGUSR1), 0);
  return NULL;
}

/* The documented set-up for threads: block first, then create threads. */
static void test_signal_from_other_thread(void **state) {
  (void)state;
  sk_loop loop;
  sk_signal s;
  pthread_t th;
  SK_ASSERT_OK(sk_signal_block(SIGUSR1));
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_signal_init(&loop, &s));
  SK_ASSERT_OK(sk_signal_start(&s, count_and_close_cb, SIGUSR1));
  assert_int_equal(pthread_create(&th, NULL, kill_thread, NULL), 0);
  sk_test_run(&loop, 10000);
  pthread_join(th, NULL);
  assert_int_equal(ncaught[0], 1);
  assert_int_equal(last_signum, SIGUSR1);
  /* Blocked by the caller, not by the library: it stays blocked. */
  assert_true(is_blocked(SIGUSR1));
  sk_test_loop_done(&loop);
}

static sk_signal *two_handles[3];

static void hup_cb(sk_signal *s, int signum) {
  assert_int_equal(signum, SIGHUP);
  assert_ptr_equal(s, two_handles[0]);
  ncaught[0]++;
  /* Delivered from inside a signal callback: runs in a later read. */
  assert_int_equal(kill(getpid(), SIGUSR2), 0);
}

static void usr2_cb(sk_signal *s, int signum) {
  assert_int_equal(signum, SIGUSR2);
  ncaught[s == two_handles[1] ? 1 : 2]++;
  if (ncaught[1] == 1 && ncaught[2] == 1)
    for (int i = 0; i < 3; i++)
      sk_close(&two_handles[i]->h, NULL);
}

/* SIGHUP and SIGUSR2 on their own handles each reach their own; two
 * handles of SIGUSR2 both get it. */
static void test_signal_two_signals_each_own_handle(void **state) {
  (void)state;
  sk_loop loop;
  sk_signal s[3];
  sk_timer t;
  SK_ASSERT_OK(sk_loop_init(&loop));
  for (int i = 0; i < 3; i++) {
    SK_ASSERT_OK(sk_signal_init(&loop, &s[i]));
    two_handles[i] = &s[i];
  }
  SK_ASSERT_OK(sk_signal_start(&s[0], hup_cb, SIGHUP));
  SK_ASSERT_OK(sk_signal_start(&s[1], usr2_cb, SIGUSR2));
  SK_ASSERT_OK(sk_signal_start(&s[2], usr2_cb, SIGUSR2));
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  t.h.data = (void *)(intptr_t)SIGHUP;
  SK_ASSERT_OK(sk_timer_start(&t, kill_self_cb, 0, 0));
  sk_test_run(&loop, 10000);
  assert_int_equal(ncaught[0], 1);
  assert_int_equal(ncaught[1], 1);
  assert_int_equal(ncaught[2], 1);
  sk_test_loop_done(&loop);
}

static void never_cb(sk_signal *s, int signum) {
  (void)s;
  fail_msg("callback of a stopped handle ran (signal %d)", signum);
}

/* Stopped, then raised: no callback, and the process lives because the
 * signal stays blocked (it was blocked with sk_signal_block) and pending. */
static void test_signal_stop_then_raise(void **state) {
  (void)state;
  sk_loop loop;
  sk_signal s, other;
  sk_timer t;
  SK_ASSERT_OK(sk_signal_block(SIGUSR1));
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_signal_init(&loop, &s));
  SK_ASSERT_OK(sk_signal_start(&s, never_cb, SIGUSR1));
  SK_ASSERT_OK(sk_signal_stop(&s));
  SK_ASSERT_OK(sk_signal_stop(&s)); /* again: a no-op */
  assert_true(is_blocked(SIGUSR1));
  assert_int_equal(kill(getpid(), SIGUSR1), 0);
  /* SIGUSR2, raised after SIGUSR1, proves the loop has read its signals
   * when its callback runs. */
  SK_ASSERT_OK(sk_signal_init(&loop, &other));
  SK_ASSERT_OK(sk_signal_start(&other, count_and_close_cb, SIGUSR2));
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  t.h.data = (void *)(intptr_t)SIGUSR2;
  SK_ASSERT_OK(sk_timer_start(&t, kill_self_cb, 0, 0));
  sk_test_run(&loop, 10000);
  assert_int_equal(ncaught[0], 1);
  assert_int_equal(last_signum, SIGUSR2);
  assert_true(is_pending(SIGUSR1));
  /* Started again, the handle gets the instance that waited. */
  SK_ASSERT_OK(sk_signal_start(&s, count_and_close_cb, SIGUSR1));
  sk_test_run(&loop, 10000);
  assert_int_equal(ncaught[0], 2);
  assert_int_equal(last_signum, SIGUSR1);
  assert_false(is_pending(SIGUSR1));
  sk_test_loop_done(&loop);
}

/* Unblocked before: start blocks, the last stop unblocks, and an instance
 * pending at that moment is discarded instead of killing the process. */
static void test_signal_stop_restores_mask(void **state) {
  (void)state;
  sk_loop loop;
  sk_signal a, b;
  unblock(SIGUSR2);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_signal_init(&loop, &a));
  SK_ASSERT_OK(sk_signal_init(&loop, &b));
  SK_ASSERT_OK(sk_signal_start(&a, never_cb, SIGUSR2));
  SK_ASSERT_OK(sk_signal_start(&b, never_cb, SIGUSR2));
  assert_true(is_blocked(SIGUSR2));
  assert_int_equal(kill(getpid(), SIGUSR2), 0);
  assert_true(is_pending(SIGUSR2));
  SK_ASSERT_OK(sk_signal_stop(&a));
  assert_true(is_blocked(SIGUSR2)); /* b still watches it */
  SK_ASSERT_OK(sk_signal_stop(&b));
  assert_false(is_blocked(SIGUSR2));
  assert_false(is_pending(SIGUSR2));
  assert_null(loop.signals);
  /* Switching a started handle to another signal moves the block. */
  SK_ASSERT_OK(sk_signal_start(&a, never_cb, SIGUSR2));
  unblock(SIGHUP);
  SK_ASSERT_OK(sk_signal_start(&a, never_cb, SIGHUP));
  assert_false(is_blocked(SIGUSR2));
  assert_true(is_blocked(SIGHUP));
  sk_close(&a.h, NULL);
  sk_close(&b.h, NULL);
  assert_false(is_blocked(SIGHUP));
  sk_test_loop_done(&loop);
}

static sk_signal *victim;
static int nclosed;

static void on_closed(sk_handle *h) {
  (void)h;
  nclosed++;
}

static void close_both_cb(sk_signal *s, int signum) {
  (void)signum;
  ncaught[0]++;
  sk_close(&s->h, on_closed);
  sk_close(&victim->h, on_closed);
}

/* A callback closes its own handle and the next handle of the same
 * signal, which must then not be called. */
static void test_signal_close_from_own_callback(void **state) {
  (void)state;
  sk_loop loop;
  sk_signal a, b;
  sk_timer t;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_signal_init(&loop, &a));
  SK_ASSERT_OK(sk_signal_init(&loop, &b));
  victim = &b;
  SK_ASSERT_OK(sk_signal_start(&a, close_both_cb, SIGUSR1));
  SK_ASSERT_OK(sk_signal_start(&b, never_cb, SIGUSR1));
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  t.h.data = (void *)(intptr_t)SIGUSR1;
  SK_ASSERT_OK(sk_timer_start(&t, kill_self_cb, 0, 0));
  sk_test_run(&loop, 10000);
  assert_int_equal(ncaught[0], 1);
  assert_int_equal(nclosed, 2);
  assert_null(loop.signals);
  sk_test_loop_done(&loop);
}

/* An unreferenced signal handle does not keep the loop running. */
static void test_signal_unref(void **state) {
  (void)state;
  sk_loop loop;
  sk_signal s;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_signal_init(&loop, &s));
  SK_ASSERT_OK(sk_signal_start(&s, never_cb, SIGUSR1));
  assert_int_equal(sk_loop_run(&loop, SK_RUN_NOWAIT), 1);
  sk_unref(&s.h);
  assert_int_equal(sk_loop_run(&loop, SK_RUN_DEFAULT), 0);
  sk_ref(&s.h);
  assert_int_equal(sk_loop_run(&loop, SK_RUN_NOWAIT), 1);
  sk_close(&s.h, NULL);
  sk_test_loop_done(&loop);
}

static void test_signal_bad_arguments(void **state) {
  (void)state;
  sk_loop loop;
  sk_signal s;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_signal_init(&loop, &s));
  assert_int_equal(sk_signal_start(&s, never_cb, SIGKILL), -EINVAL);
  assert_int_equal(sk_signal_start(&s, never_cb, SIGSTOP), -EINVAL);
  assert_int_equal(sk_signal_start(&s, never_cb, 0), -EINVAL);
  assert_int_equal(sk_signal_start(&s, never_cb, -1), -EINVAL);
  assert_int_equal(sk_signal_start(&s, never_cb, 4096), -EINVAL);
  assert_int_equal(sk_signal_start(&s, NULL, SIGUSR1), -EINVAL);
  assert_int_equal(sk_signal_block(SIGKILL), -EINVAL);
  assert_int_equal(sk_signal_block(0), -EINVAL);
  assert_null(loop.signals);
  sk_close(&s.h, NULL);
  assert_int_equal(sk_signal_start(&s, never_cb, SIGUSR1), -EINVAL);
  sk_test_loop_done(&loop);
}

/* ---- poll handles ---- */

static int order[8];
static int norder;
static int pfd[2];

static void pipe_reader_cb(sk_poll *p, int status, int events) {
  char c = 0;
  assert_int_equal(status, 0);
  assert_int_equal(events, SK_POLLH_READABLE);
  order[norder++] = 'r';
  assert_int_equal(read(pfd[0], &c, 1), 1);
  assert_int_equal(c, 'x');
  sk_close(&p->h, NULL);
}

static void pipe_writer_cb(sk_poll *p, int status, int events) {
  assert_int_equal(status, 0);
  assert_int_equal(events, SK_POLLH_WRITABLE);
  order[norder++] = 'w';
  assert_int_equal(write(pfd[1], "x", 1), 1);
  sk_close(&p->h, NULL);
}

/* A pipe's write end is writable at once; its read end becomes readable
 * only after the write. Both handles close themselves from the callback. */
static void test_poll_pipe_readable_writable(void **state) {
  (void)state;
  sk_loop loop;
  sk_poll r, w;
  assert_int_equal(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_poll_init(&loop, &r, pfd[0]));
  SK_ASSERT_OK(sk_poll_init(&loop, &w, pfd[1]));
  SK_ASSERT_OK(sk_poll_start(&r, SK_POLLH_READABLE, pipe_reader_cb));
  SK_ASSERT_OK(sk_poll_start(&w, SK_POLLH_WRITABLE, pipe_writer_cb));
  sk_test_run(&loop, 10000);
  assert_int_equal(norder, 2);
  assert_int_equal(order[0], 'w');
  assert_int_equal(order[1], 'r');
  sk_test_loop_done(&loop);
  close(pfd[0]);
  close(pfd[1]);
}

static int nready;

static void count_cb(sk_poll *p, int status, int events) {
  assert_int_equal(status, 0);
  assert_int_equal(events, SK_POLLH_READABLE);
  if (++nready == 3)
    sk_poll_stop(p);
}

/* Level-triggered: unread data is reported on every iteration until the
 * handle is stopped; after the stop no callback comes. */
static void test_poll_level_triggered_and_stop(void **state) {
  (void)state;
  sk_loop loop;
  sk_poll r;
  assert_int_equal(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
  assert_int_equal(write(pfd[1], "x", 1), 1);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_poll_init(&loop, &r, pfd[0]));
  SK_ASSERT_OK(sk_poll_start(&r, SK_POLLH_READABLE, count_cb));
  sk_test_run(&loop, 10000);
  assert_int_equal(nready, 3);
  /* Started and stopped before the loop runs: nothing. */
  SK_ASSERT_OK(sk_poll_start(&r, SK_POLLH_READABLE, count_cb));
  SK_ASSERT_OK(sk_poll_stop(&r));
  SK_ASSERT_OK(sk_poll_stop(&r));
  for (int i = 0; i < 3; i++)
    assert_int_equal(sk_loop_run(&loop, SK_RUN_NOWAIT), 0);
  assert_int_equal(nready, 3);
  sk_close(&r.h, NULL);
  sk_test_loop_done(&loop);
  close(pfd[0]);
  close(pfd[1]);
}

static int sv[2];
static int nwritable;

static void switch_cb(sk_poll *p, int status, int events) {
  char c;
  assert_int_equal(status, 0);
  if (events & SK_POLLH_WRITABLE) {
    assert_int_equal(events, SK_POLLH_WRITABLE);
    nwritable++;
    /* Now interested in reading only; the peer sends one byte. */
    SK_ASSERT_OK(sk_poll_start(p, SK_POLLH_READABLE, switch_cb));
    assert_int_equal(send(sv[1], "y", 1, MSG_NOSIGNAL), 1);
    return;
  }
  assert_int_equal(events, SK_POLLH_READABLE);
  assert_int_equal(recv(sv[0], &c, 1, 0), 1);
  assert_int_equal(c, 'y');
  nready++;
  sk_close(&p->h, NULL);
}

/* Changing the events of a started handle takes effect: the socket stays
 * writable, but after the switch only readability is reported. */
static void test_poll_change_events_while_started(void **state) {
  (void)state;
  sk_loop loop;
  sk_poll p;
  assert_int_equal(
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
      0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_poll_init(&loop, &p, sv[0]));
  SK_ASSERT_OK(sk_poll_start(&p, SK_POLLH_WRITABLE, switch_cb));
  sk_test_run(&loop, 10000);
  assert_int_equal(nwritable, 1);
  assert_int_equal(nready, 1);
  sk_test_loop_done(&loop);
  close(sv[0]);
  close(sv[1]);
}

static int hup_events;

static void hup_poll_cb(sk_poll *p, int status, int events) {
  char buf[8];
  assert_int_equal(status, 0);
  hup_events = events;
  assert_int_equal(read(pfd[0], buf, sizeof(buf)), 0); /* EOF */
  sk_close(&p->h, NULL);
}

/* The writer closed: the read end reports the hang-up, and a read gives
 * EOF. */
static void test_poll_peer_closed(void **state) {
  (void)state;
  sk_loop loop;
  sk_poll p;
  assert_int_equal(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
  close(pfd[1]);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_poll_init(&loop, &p, pfd[0]));
  SK_ASSERT_OK(sk_poll_start(&p, SK_POLLH_READABLE, hup_poll_cb));
  sk_test_run(&loop, 10000);
  assert_true(hup_events & SK_POLLH_DISCONNECT);
  assert_true(hup_events & SK_POLLH_READABLE);
  assert_false(hup_events & SK_POLLH_WRITABLE);
  sk_test_loop_done(&loop);
  close(pfd[0]);
}

static int efd_old, efd_new_count;

static void old_efd_cb(sk_poll *p, int status, int events) {
  uint64_t v;
  assert_int_equal(status, 0);
  assert_int_equal(events, SK_POLLH_READABLE);
  assert_int_equal(read(efd_old, &v, sizeof(v)), (ssize_t)sizeof(v));
  /* The owner stops watching, then closes the descriptor at once. */
  SK_ASSERT_OK(sk_poll_stop(p));
  close(efd_old);
  nready++;
}

static void new_efd_cb(sk_poll *p, int status, int events) {
  assert_int_equal(status, 0);
  assert_int_equal(events, SK_POLLH_READABLE);
  efd_new_count++;
  sk_poll_stop(p);
}

/* A descriptor closed right after sk_poll_stop, its number reused by a new
 * eventfd watched by another handle: only the new handle hears of it. */
static void test_poll_fd_closed_after_stop(void **state) {
  (void)state;
  sk_loop loop;
  sk_poll old, fresh;
  uint64_t one = 1;
  int efd_new;
  efd_old = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  assert_true(efd_old >= 0);
  assert_int_equal(write(efd_old, &one, sizeof(one)), (ssize_t)sizeof(one));
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_poll_init(&loop, &old, efd_old));
  SK_ASSERT_OK(sk_poll_start(&old, SK_POLLH_READABLE, old_efd_cb));
  sk_test_run(&loop, 10000);
  assert_int_equal(nready, 1);
  efd_new = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
  assert_int_equal(efd_new, efd_old); /* the lowest free number */
  SK_ASSERT_OK(sk_poll_init(&loop, &fresh, efd_new));
  SK_ASSERT_OK(sk_poll_start(&fresh, SK_POLLH_READABLE, new_efd_cb));
  sk_test_run(&loop, 10000);
  assert_int_equal(efd_new_count, 1);
  assert_int_equal(nready, 1);
  sk_close(&old.h, NULL);
  sk_close(&fresh.h, NULL);
  sk_test_loop_done(&loop);
  close(efd_new);
}

static int badf_status = 1;

static void badf_cb(sk_poll *p, int status, int events) {
  badf_status = status;
  assert_int_equal(events, 0);
  sk_close(&p->h, NULL);
}

/* The owner breaks the rule and closes a watched descriptor: the poll
 * backend sees POLLNVAL and the handle reports -EBADF and stops. (epoll
 * forgets a closed descriptor silently, io_uring's armed poll keeps the file
 * open: neither can tell, which is why the rule exists.) */
static void test_poll_fd_closed_while_watched(void **state) {
  (void)state;
  sk_loop loop;
  sk_poll p;
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  assert_true(efd >= 0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  if (strcmp(sk_loop_backend(&loop), "poll") != 0) {
    sk_test_loop_done(&loop);
    close(efd);
    skip();
  }
  SK_ASSERT_OK(sk_poll_init(&loop, &p, efd));
  SK_ASSERT_OK(sk_poll_start(&p, SK_POLLH_READABLE, badf_cb));
  close(efd);
  sk_test_run(&loop, 10000);
  assert_int_equal(badf_status, -EBADF);
  sk_test_loop_done(&loop);
}

/* ---- another program's pipes, and SIGCHLD, on one loop ---- */

struct child_io {
  sk_poll in, out;
  sk_signal chld;
  int in_fd, out_fd;
  const char *to_send;
  size_t sent, to_send_len;
  char got[64];
  size_t got_len;
  int eof, exited;
  pid_t pid;
  int wstatus;
};

static void child_maybe_done(struct child_io *c) {
  if (c->eof && c->exited)
    sk_close(&c->chld.h, NULL);
}

static void child_stdin_cb(sk_poll *p, int status, int events) {
  struct child_io *c = p->h.data;
  ssize_t n;
  assert_int_equal(status, 0);
  assert_true(events & SK_POLLH_WRITABLE);
  n = write(c->in_fd, c->to_send + c->sent, c->to_send_len - c->sent);
  assert_true(n > 0);
  c->sent += (size_t)n;
  if (c->sent == c->to_send_len) {
    /* All sent: closing the pipe gives the child EOF. */
    sk_close(&p->h, NULL);
    close(c->in_fd);
  }
}

static void child_stdout_cb(sk_poll *p, int status, int events) {
  struct child_io *c = p->h.data;
  ssize_t n;
  assert_int_equal(status, 0);
  assert_true(events & SK_POLLH_READABLE);
  n = read(c->out_fd, c->got + c->got_len, sizeof(c->got) - 1 - c->got_len);
  assert_true(n >= 0);
  c->got_len += (size_t)n;
  if (n == 0) {
    c->eof = 1;
    sk_close(&p->h, NULL);
    child_maybe_done(c);
  }
}

static void child_exit_cb(sk_signal *s, int signum) {
  struct child_io *c = s->h.data;
  assert_int_equal(signum, SIGCHLD);
  /* SIGCHLD coalesces: reap without blocking, maybe on a later one. */
  if (waitpid(c->pid, &c->wstatus, WNOHANG) == c->pid) {
    c->exited = 1;
    child_maybe_done(c);
  }
}

/* python3 upper-cases what it reads on stdin: the loop writes its stdin
 * and reads its stdout through poll handles, and learns of its exit from a
 * SIGCHLD handle. */
static void test_poll_drives_python_subprocess(void **state) {
  (void)state;
  static const char script[] = "import sys\n"
                               "data = sys.stdin.read()\n"
                               "sys.stdout.write(data.upper())\n";
  char *argv[] = {"python3", "-c", (char *)script, NULL};
  struct child_io c;
  int in[2], out[2];
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none;
  sk_loop loop;

  memset(&c, 0, sizeof(c));
  c.to_send = "hello, loop\n";
  c.to_send_len = strlen(c.to_send);
  SK_ASSERT_OK(sk_signal_block(SIGCHLD));
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_signal_init(&loop, &c.chld));
  c.chld.h.data = &c;
  SK_ASSERT_OK(sk_signal_start(&c.chld, child_exit_cb, SIGCHLD));

  assert_int_equal(pipe2(in, O_CLOEXEC), 0);
  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawnattr_init(&attr);
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  assert_int_equal(posix_spawnp(&c.pid, "python3", &fa, &attr, argv, environ),
                   0);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  c.in_fd = in[1];
  c.out_fd = out[0];
  assert_int_equal(fcntl(c.in_fd, F_SETFL, O_NONBLOCK), 0);
  assert_int_equal(fcntl(c.out_fd, F_SETFL, O_NONBLOCK), 0);

  SK_ASSERT_OK(sk_poll_init(&loop, &c.in, c.in_fd));
  SK_ASSERT_OK(sk_poll_init(&loop, &c.out, c.out_fd));
  c.in.h.data = c.out.h.data = &c;
  SK_ASSERT_OK(sk_poll_start(&c.in, SK_POLLH_WRITABLE, child_stdin_cb));
  SK_ASSERT_OK(sk_poll_start(&c.out, SK_POLLH_READABLE, child_stdout_cb));
  sk_test_run(&loop, 30000);
  assert_true(c.eof);
  assert_true(c.exited);
  assert_true(WIFEXITED(c.wstatus));
  assert_int_equal(WEXITSTATUS(c.wstatus), 0);
  c.got[c.got_len] = '\0';
  assert_string_equal(c.got, "HELLO, LOOP\n");
  sk_test_loop_done(&loop);
  close(c.out_fd);
}

static void never_poll_cb(sk_poll *p, int status, int events) {
  (void)p;
  fail_msg("unexpected poll callback (%d, %d)", status, events);
}

static void test_poll_bad_arguments(void **state) {
  (void)state;
  sk_loop loop;
  sk_poll p;
  int fds[2];
  assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  assert_int_equal(sk_poll_init(&loop, &p, -1), -EINVAL);
  close(fds[1]);
  assert_int_equal(sk_poll_init(&loop, &p, fds[1]), -EBADF);
  assert_int_equal(sk_loop_handles(&loop), 0);
  SK_ASSERT_OK(sk_poll_init(&loop, &p, fds[0]));
  assert_int_equal(sk_poll_start(&p, 0, never_poll_cb), -EINVAL);
  assert_int_equal(sk_poll_start(&p, SK_POLLH_DISCONNECT, never_poll_cb),
                   -EINVAL);
  assert_int_equal(sk_poll_start(&p, 8 | SK_POLLH_READABLE, never_poll_cb),
                   -EINVAL);
  assert_int_equal(sk_poll_start(&p, SK_POLLH_READABLE, NULL), -EINVAL);
  /* Nothing was started: the loop has nothing to do. */
  assert_int_equal(sk_loop_run(&loop, SK_RUN_DEFAULT), 0);
  sk_close(&p.h, NULL);
  assert_int_equal(sk_poll_start(&p, SK_POLLH_READABLE, never_poll_cb),
                   -EINVAL);
  sk_test_loop_done(&loop);
  close(fds[0]);
}

SK_TEST_MAIN(cmocka_unit_test(test_signal_from_loop_thread),
             cmocka_unit_test(test_signal_from_other_thread),
             cmocka_unit_test(test_signal_two_signals_each_own_handle),
             cmocka_unit_test(test_signal_stop_then_raise),
             cmocka_unit_test(test_signal_stop_restores_mask),
             cmocka_unit_test(test_signal_close_from_own_callback),
             cmocka_unit_test(test_signal_unref),
             cmocka_unit_test(test_signal_bad_arguments),
             cmocka_unit_test(test_poll_pipe_readable_writable),
             cmocka_unit_test(test_poll_level_triggered_and_stop),
             cmocka_unit_test(test_poll_change_events_while_started),
             cmocka_unit_test(test_poll_peer_closed),
             cmocka_unit_test(test_poll_fd_closed_after_stop),
             cmocka_unit_test(test_poll_fd_closed_while_watched),
             cmocka_unit_test(test_poll_drives_python_subprocess),
             cmocka_unit_test(test_poll_bad_arguments))
