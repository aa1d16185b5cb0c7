/* Relaying two streams into each other (relay.h).
 *
 * Two paths, one state machine per direction d (0: a to b, 1: b to a):
 *  - splice: both streams plain. A pipe per direction; the relay owns the
 *    streams' socket readiness through the hook in stream.c (internal.h):
 *    splice(src -> pipe) while the source is readable and fewer than
 *    max_queue bytes sit in the pipe, splice(pipe -> dst) while the
 *    destination is writable and its own write queue (bytes queued before
 *    the relay) is empty. Bytes never enter user space.
 *  - copy: anything else. The streams receive with the relay's callback,
 *    each chunk goes out with sk_stream_send(), and the source pauses
 *    (counted pause) while the destination's queue holds more than
 *    max_queue bytes, until its drain callback.
 * The end of a source (EOF) becomes sk_stream_shutdown() of the
 * destination once the bytes before it were handed over; the relay is done
 * when both directions ended and both write queues are empty. The user's
 * callback always runs from the pending phase, never inside an API call. */
#include "internal.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
  R_RUNNING = 1u << 0,
  R_HOOKED = 1u << 7, /* the streams point to r (until cb runs or a stop) */
  R_SIGIGN = 1u << 8, /* SIGPIPE was ignored at the start: no blocking */
};
#define R_EOF(d)    (1u << (1 + (d))) /* the source said EOF */
#define R_PAUSED(d) (1u << (3 + (d))) /* copy: the relay paused the source */
#define R_FULL(d)   (1u << (5 + (d))) /* splice: the pipe took no more */

/* The kernel's default pipe size, which the relay never exceeds. */
#define PIPE_DEFAULT (64u * 1024u)
/* Bytes one direction moves per readiness event before yielding. */
#define PUMP_BUDGET (2u * 1024u * 1024u)

static sk_stream *src_of(const sk_relay *r, int d) {
  return d == 0 ? r->a : r->b;
}

static sk_stream *dst_of(const sk_relay *r, int d) {
  return d == 0 ? r->b : r->a;
}

static sk_relay_dir *dir_of(sk_relay *r, int d) {
  return d == 0 ? &r->a_to_b : &r->b_to_a;
}

static void close_pipes(sk_relay *r) {
  for (int d = 0; d < 2; d++)
    for (int e = 0; e < 2; e++) {
      if (r->pipes[d][e] >= 0)
        sk__close_fd(r->pipes[d][e]);
      r->pipes[d][e] = -1;
    }
}

/* Gives both streams back to their owner: no receiving, no drain callback,
 * the relay's pauses released, the pipes closed. The hook stays (R_HOOKED)
 * until cb runs, so that closing a stream meanwhile still reaches
 * sk_relay_stop, which withdraws the queued callback. */
static void release(sk_relay *r) {
  r->rflags &= ~R_RUNNING;
  for (int d = 0; d < 2; d++) {
    sk_stream *s = src_of(r, d);
    if (!r->spliced) {
      if (s->sflags & SK__S_READING)
        sk_stream_recv_stop(s);
      s->recv_cb = NULL; /* the -ECANCELED of that stop reaches nobody */
      if (r->rflags & R_PAUSED(d)) {
        if (sk_is_closing(&s->h))
          s->pauses--;
        else
          sk_stream_recv_resume(s);
      }
    }
    r->rflags &= ~R_PAUSED(d);
    sk_stream_on_drain(s, NULL);
  }
  close_pipes(r);
}

/* The streams no longer point to r. */
static void unhook(sk_relay *r) {
  if (!(r->rflags & R_HOOKED))
    return;
  r->rflags &= ~R_HOOKED;
  sk__stream_relay_set(r->a, NULL);
  sk__stream_relay_set(r->b, NULL);
}

static void done_cb(struct sk__pending *p) {
  sk_relay *r = sk__container_of(p, sk_relay, pend);
  unhook(r);
  r->cb(r, r->status);
}

/* Ends the relay with status (failed: the stream at fault, or NULL). */
static void finish(sk_relay *r, int status, sk_stream *failed) {
  if (!(r->rflags & R_RUNNING))
    return;
  r->status = status;
  r->failed = failed;
  release(r);
  sk__pending_add(r->a->h.loop, &r->pend, done_cb);
}

/* A failed write side ends the relay; both directions ended and both
 * queues written (the FINs included) end it well. */
static void check_done(sk_relay *r) {
  if (!(r->rflags & R_RUNNING))
    return;
  for (int d = 0; d < 2; d++) {
    sk_stream *s = src_of(r, d);
    if (s->sflags & SK__S_WR_FAILED) {
      finish(r, s->wstatus, s);
      return;
    }
  }
  if (r->a_to_b.ended && r->b_to_a.ended && r->a->wq.head == NULL &&
      r->b->wq.head == NULL)
    finish(r, 0, NULL);
}

/* Direction d's source ended and everything before was handed over. */
static void pass_end(sk_relay *r, int d) {
  sk_relay_dir *dir = dir_of(r, d);
  if (dir->ended)
    return;
  dir->ended = 1;
  int rc = sk_stream_shutdown(dst_of(r, d), NULL, NULL);
  if (rc != 0)
    finish(r, rc, dst_of(r, d));
}

/* ---- splice ---- */

int sk__relay_splicing(const sk_relay *r) {
  return r->spliced && (r->rflags & R_RUNNING);
}

unsigned sk__relay_wants(const sk_relay *r, const sk_stream *s) {
  unsigned ev = 0;
  if (!(r->rflags & R_RUNNING))
    return 0;
  for (int d = 0; d < 2; d++) {
    if (src_of(r, d) == s && !(r->rflags & (R_EOF(d) | R_FULL(d))) &&
        r->inpipe[d] < r->opt.max_queue)
      ev |= SK__IO_READ;
    if (dst_of(r, d) == s && r->inpipe[d] > 0 && s->wq.head == NULL)
      ev |= SK__IO_WRITE;
  }
  return ev;
}

static ssize_t splice_nb(int from, int to, size_t len) {
  ssize_t n;
  do
    n = splice(from, NULL, to, NULL, len, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
  while (n < 0 && errno == EINTR);
  return n < 0 ? sk__err() : n;
}

/* splice(2) from a socket stops at a TCP urgent mark (it reports 0, or
 * -EAGAIN with data behind the mark). There, with the bytes before the
 * mark out of the pipe, one recv() skips the urgent byte, as the copy path
 * and every ordinary reader do, and returns what follows; those bytes go
 * to the destination through its write queue (the pipe is empty, so the
 * order holds), and splicing goes on behind them. Returns the bytes moved
 * (0: nothing behind the mark yet, the socket is not readable until there
 * is), SK_EOF, or a negative error (the relay has ended). */
static ssize_t past_mark(sk_relay *r, int d) {
  sk_stream *src = src_of(r, d), *dst = dst_of(r, d);
  sk_loop *loop = src->h.loop;
  size_t len =
      loop->rbuf_len < r->opt.max_queue ? loop->rbuf_len : r->opt.max_queue;
  ssize_t n;
  do
    n = recv(src->sock.fd, loop->rbuf, len, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n == 0)
    return SK_EOF;
  if (n < 0) {
    n = sk__err();
    if (n == -EAGAIN || n == -EWOULDBLOCK)
      return 0;
    finish(r, (int)n, src);
    return n;
  }
  int rc = sk_stream_send(dst, loop->rbuf, (size_t)n, NULL, NULL);
  if (rc != 0) {
    finish(r, rc, dst);
    return rc;
  }
  dir_of(r, d)->bytes += (uint64_t)n;
  return n;
}

static int at_mark(int fd) {
  int mark = 0;
  return ioctl(fd, SIOCATMARK, &mark) == 0 && mark;
}

/* Moves direction d's bytes until neither end takes more, the budget is
 * spent or the relay ends. */
static void pump(sk_relay *r, int d) {
  sk_stream *src = src_of(r, d), *dst = dst_of(r, d);
  size_t budget = PUMP_BUDGET;
  struct sk__sigpipe sp;
  int blocked = 0, got_epipe = 0;

  while ((r->rflags & R_RUNNING) && budget > 0) {
    ssize_t in = 0, out = 0;
    if (!(r->rflags & R_EOF(d)) && r->inpipe[d] < r->opt.max_queue) {
      in = splice_nb(src->sock.fd, r->pipes[d][1],
                     r->opt.max_queue - r->inpipe[d]);
      if ((in == 0 || (in == -EAGAIN && r->inpipe[d] == 0)) &&
          at_mark(src->sock.fd)) {
        /* An urgent byte: past it once the pipe is empty (the bytes
         * before the mark go first). */
        if (r->inpipe[d] > 0) {
          r->rflags |= R_FULL(d);
          in = 0;
        } else if ((in = past_mark(r, d)) == SK_EOF) {
          r->rflags |= R_EOF(d);
          in = 0;
        } else if (in < 0) {
          break;
        }
      } else if (in == 0) {
        r->rflags |= R_EOF(d);
      } else if (in == -EAGAIN) {
        /* The socket is empty or the pipe full: with bytes in the pipe,
         * wait for them to leave rather than poll a readable socket. */
        if (r->inpipe[d] > 0)
          r->rflags |= R_FULL(d);
        in = 0;
      } else if (in < 0) {
        finish(r, (int)in, src);
        break;
      } else {
        r->inpipe[d] += (size_t)in;
      }
    }
    if (r->inpipe[d] > 0 && dst->wq.head == NULL) {
      if (!blocked && !(r->rflags & R_SIGIGN)) {
        sk__sigpipe_block(&sp); /* splice(2) has no MSG_NOSIGNAL */
        blocked = 1;
      }
      out = splice_nb(r->pipes[d][0], dst->sock.fd, r->inpipe[d]);
      if (out == -EAGAIN) {
        out = 0;
      } else if (out <= 0) {
        got_epipe = out == -EPIPE;
        finish(r, out < 0 ? (int)out : -EIO, dst);
        break;
      } else {
        r->inpipe[d] -= (size_t)out;
        dir_of(r, d)->bytes += (uint64_t)out;
        r->rflags &= ~R_FULL(d);
      }
    }
    if ((r->rflags & R_EOF(d)) && r->inpipe[d] == 0) {
      pass_end(r, d);
      break;
    }
    if (in == 0 && out == 0)
      break;
    size_t moved = (size_t)in + (size_t)out;
    budget = moved >= budget ? 0 : budget - moved;
  }
  if (blocked)
    sk__sigpipe_unblock(&sp, got_epipe);
}

void sk__relay_io(sk_relay *r, sk_stream *s, unsigned revents) {
  for (int d = 0; d < 2 && (r->rflags & R_RUNNING); d++) {
    if (((revents & SK__IO_READ) && src_of(r, d) == s) ||
        ((revents & SK__IO_WRITE) && dst_of(r, d) == s))
      pump(r, d);
  }
  check_done(r);
  if (r->rflags & R_RUNNING) {
    sk__stream_update(r->a);
    sk__stream_update(r->b);
  }
}

/* A stream's queue emptied: the splice may go on (splice path), the
 * paused source may read again (copy path), or the relay is done. */
static void relay_drain(sk_stream *s) {
  sk_relay *r = sk__stream_relay(s);
  if (r == NULL || !(r->rflags & R_RUNNING))
    return;
  int d = s == r->b ? 0 : 1; /* the direction s is the destination of */
  if (r->rflags & R_PAUSED(d)) {
    r->rflags &= ~R_PAUSED(d);
    sk_stream_recv_resume(src_of(r, d));
  }
  check_done(r);
  if (r->spliced && (r->rflags & R_RUNNING)) {
    /* Bytes waiting in the pipe go now that the queue is out. */
    pump(r, d);
    check_done(r);
    if (r->rflags & R_RUNNING)
      sk__stream_update(src_of(r, d));
  }
}

/* ---- copy ---- */

static void relay_recv(sk_stream *s, ssize_t n, const void *buf) {
  sk_relay *r = sk__stream_relay(s);
  if (r == NULL || !(r->rflags & R_RUNNING))
    return;
  int d = s == r->a ? 0 : 1;
  sk_stream *dst = dst_of(r, d);
  if (n > 0) {
    int rc = sk_stream_send(dst, buf, (size_t)n, NULL, NULL);
    if (rc != 0) {
      finish(r, rc, dst);
      return;
    }
    dir_of(r, d)->bytes += (uint64_t)n;
    if (sk_stream_write_queue_size(dst) > r->opt.max_queue &&
        !(r->rflags & R_PAUSED(d))) {
      r->rflags |= R_PAUSED(d);
      sk_stream_recv_pause(s);
    }
  } else if (n == SK_EOF || (n == SK_ETLSTRUNCATED &&
                             (r->opt.flags & SK_RELAY_TRUNCATION_AS_EOF))) {
    r->rflags |= R_EOF(d);
    pass_end(r, d);
    check_done(r);
  } else {
    finish(r, (int)n, s);
  }
}

/* ---- bytes a transport holds (internal.h) ---- */

/* Sends what s's transport holds to the other stream and makes s plain:
 * those bytes came before anything still in the socket. */
static int take_held(sk_relay *r, sk_stream *s) {
  const unsigned char *data;
  size_t n = sk__stream_held(s, &data);
  if (n == 0)
    return 0;
  int d = s == r->a ? 0 : 1;
  int rc = sk_stream_send(dst_of(r, d), data, n, NULL, NULL);
  sk__stream_held_drop(s);
  if (rc != 0) {
    finish(r, rc, dst_of(r, d));
    return rc;
  }
  dir_of(r, d)->bytes += (uint64_t)n;
  return 0;
}

void sk__relay_held(sk_relay *r, sk_stream *s) {
  if (r->rflags & R_RUNNING) {
    take_held(r, s);
    check_done(r);
  }
}

/* ---- the API ---- */

static int start_check(const sk_stream *s) {
  if (sk_is_closing(&s->h) || s->sock.fd < 0)
    return -EBADF;
  if (!(s->sflags & SK__S_CONNECTED) || (s->sflags & SK__S_LISTENING))
    return -ENOTCONN;
  if ((s->sflags & (SK__S_READING | SK__S_PEEKING)) ||
      sk__stream_relay(s) != NULL)
    return -EBUSY;
  return 0;
}

/* splice(2) has no MSG_NOSIGNAL: unless the process ignores SIGPIPE (as
 * servers do; checked once per start, one system call), each batch that
 * writes blocks it around the writes. */
static int sigpipe_ignored(void) {
  struct sigaction sa;
  return sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
         sa.sa_handler == SIG_IGN;
}

/* Two non-blocking pipes, shrunk (never grown) to max_queue. */
static int open_pipes(sk_relay *r) {
  for (int d = 0; d < 2; d++) {
    if (pipe2(r->pipes[d], O_NONBLOCK | O_CLOEXEC) < 0) {
      int rc = sk__err();
      r->pipes[d][0] = r->pipes[d][1] = -1;
      close_pipes(r);
      return rc;
    }
    if (r->opt.max_queue < PIPE_DEFAULT)
      (void)fcntl(r->pipes[d][1], F_SETPIPE_SZ, (int)r->opt.max_queue);
  }
  return 0;
}

int sk_relay_start(sk_relay *r, sk_stream *a, sk_stream *b,
                   const sk_relay_options *opt, sk_relay_cb cb) {
  int rc;
  if (r == NULL || a == NULL || b == NULL || cb == NULL || a == b ||
      a->h.loop != b->h.loop)
    return -EINVAL;
  if ((rc = start_check(a)) != 0 || (rc = start_check(b)) != 0)
    return rc;

  void *data = r->data;
  memset(r, 0, sizeof(*r));
  r->data = data;
  r->a = a;
  r->b = b;
  r->cb = cb;
  if (opt != NULL)
    r->opt = *opt;
  if (r->opt.max_queue == 0)
    r->opt.max_queue = SK_RELAY_DEFAULT_QUEUE;
  for (int d = 0; d < 2; d++)
    r->pipes[d][0] = r->pipes[d][1] = -1;
  const unsigned char *held;
  int splice_ok =
      (a->tp == &sk__transport_plain || sk__stream_held(a, &held) > 0) &&
      (b->tp == &sk__transport_plain || sk__stream_held(b, &held) > 0) &&
      !(r->opt.flags & SK_RELAY_NO_SPLICE);
  if (splice_ok && (rc = open_pipes(r)) != 0)
    return rc;

  /* The hook first (nothing moves yet: not spliced, not running). */
  if ((rc = sk__stream_relay_set(a, r)) != 0 ||
      (rc = sk__stream_relay_set(b, r)) != 0) {
    sk__stream_relay_set(a, NULL);
    close_pipes(r);
    return rc;
  }
  r->rflags = R_RUNNING | R_HOOKED;
  r->spliced = splice_ok;
  if (splice_ok && sigpipe_ignored())
    r->rflags |= R_SIGIGN;
  sk_stream_on_drain(a, relay_drain);
  sk_stream_on_drain(b, relay_drain);
  /* Held bytes go first (a failure ends the relay: cb tells). */
  if (take_held(r, a) != 0 || take_held(r, b) != 0)
    return 0;
  if (splice_ok) {
    sk__stream_update(a);
    sk__stream_update(b);
    return 0;
  }
  /* Cannot fail: both were checked connected, open and idle. */
  sk_stream_recv_start(a, relay_recv);
  sk_stream_recv_start(b, relay_recv);
  return 0;
}

void sk_relay_stop(sk_relay *r) {
  if (r->rflags & R_RUNNING)
    release(r);
  if (r->pend.queued)
    sk__pending_remove(r->a->h.loop, &r->pend);
  unhook(r);
}

void sk__relay_closing(sk_relay *r, sk_stream *s) {
  SK__UNUSED(s);
  sk_relay_stop(r);
}
