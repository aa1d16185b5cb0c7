/* Async streams: TCP and Unix-domain connections and listeners.
 *
 * Writes go straight to the kernel; only what it did not take is copied into
 * the write queue and finished when the socket turns writable (one sendmsg
 * gathers many queued requests). Reads land in the loop's shared buffer.
 * Interest in readiness is kept exactly in step with what the stream is
 * doing, so an idle connection costs no wake-ups.
 *
 * What the user's bytes look like on the socket is the transport's business
 * (struct sk__transport in internal.h): "plain", at the end of this file,
 * passes them through; TLS installs its own table. This file only moves
 * bytes between the socket and the transport. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

/* At most this many accepts per readiness event, so one busy listener cannot
 * starve the connections it already has. */
#define ACCEPT_BATCH 64
/* Bytes read per readiness event before yielding to other handles. */
#define READ_BUDGET (2 * 1024 * 1024)
/* Queued requests gathered into one sendmsg. */
#define WRITE_IOV_MAX 64
/* After EMFILE with no spare descriptor, accepting pauses this long. */
#define ACCEPT_BACKOFF_MS 100
/* Bytes of a file read per step when a transport must see them (TLS): one
 * TLS record. */
#define FILE_CHUNK (16 * 1024)

struct sk__sextra {
  sk_stream *s;
  struct sk__tnode timer;   /* connect deadline / accept back-off */
  struct sk__pending cpend; /* connect completion */
  struct sk__pending rpend; /* recv/accept cancellation */
  int cstatus;
  sk_endpoint *eps; /* endpoints still to try while connecting */
  size_t neps, ieps;
  struct sk__connreq *hev; /* connect.c's connect by name, while it runs */
  /* Receive deadline (sk_stream_recv_timeout): rtimer runs while the user
   * receives and is not paused; data moves rlast, and the timer, when it
   * fires early, re-arms for rlast + rtimeout (no heap work per read). */
  struct sk__tnode rtimer;
  uint64_t rlast;
  int rtimeout;
  struct sk_relay *relay; /* the relay that owns the stream (internal.h) */
};

/* The extra state, allocated on first need and freed when the handle's
 * close completes (its pending callbacks may still be queued until then). */
static void recv_deadline(struct sk__tnode *n);

static struct sk__sextra *extra(sk_stream *s) {
  if (s->x == NULL) {
    s->x = calloc(1, sizeof(*s->x));
    if (s->x != NULL) {
      s->x->s = s;
      sk__tnode_init(&s->x->timer, NULL);
      sk__tnode_init(&s->x->rtimer, recv_deadline);
    }
  }
  return s->x;
}

static int timer_active(const sk_stream *s) {
  return s->x != NULL && sk__tnode_active(&s->x->timer);
}

static void timer_stop(sk_stream *s) {
  if (s->x != NULL)
    sk__tnode_stop(s->h.loop, &s->x->timer);
}

/* Called when the handle's close completes. */
void sk__stream_closed(sk_stream *s) {
  free(s->x);
  s->x = NULL;
}

static void stream_io_cb(sk_loop *loop, struct sk__io *w, unsigned revents);

static int is_closing(const sk_stream *s) {
  return sk_is_closing(&s->h);
}

static void stream_update(sk_stream *s);

/* The splicing relay that owns the stream's socket, or NULL. */
static struct sk_relay *splicer(const sk_stream *s) {
  struct sk_relay *r = s->x != NULL ? s->x->relay : NULL;
  return r != NULL && sk__relay_splicing(r) ? r : NULL;
}

static int user_reading(const sk_stream *s) {
  return (s->sflags & SK__S_READING) && s->pauses == 0 && !is_closing(s);
}

/* Starts the receive deadline when the user receives (and is not paused),
 * stops it otherwise. Time spent paused does not count. */
static void recv_deadline_sync(sk_stream *s) {
  struct sk__sextra *x = s->x;
  sk_loop *loop = s->h.loop;
  if (!user_reading(s)) {
    sk__tnode_stop(loop, &x->rtimer);
  } else if (!sk__tnode_active(&x->rtimer)) {
    /* A fresh clock: the loop's may be as old as this iteration, and the
     * deadline must not come sooner than asked. */
    sk_loop_update_time(loop);
    x->rlast = loop->now;
    sk__tnode_start(loop, &x->rtimer, x->rlast + (uint64_t)x->rtimeout);
  }
}

/* Data reached the user: the receive deadline starts over. */
static inline void recv_activity(sk_stream *s) {
  if (s->x != NULL)
    s->x->rlast = s->h.loop->now;
}

static void recv_deadline(struct sk__tnode *n) {
  struct sk__sextra *x = sk__container_of(n, struct sk__sextra, rtimer);
  sk_stream *s = x->s;
  sk_loop *loop = s->h.loop;
  uint64_t due = x->rlast + (uint64_t)x->rtimeout;
  if (!user_reading(s))
    return;
  if (loop->now < due) {
    sk__tnode_start(loop, n, due);
    return;
  }
  s->sflags &= ~SK__S_READING;
  stream_update(s);
  s->recv_cb(s, -ETIMEDOUT, NULL);
}

/* Brings the watcher and the handle's active state in line with what the
 * stream is doing. Called after every state change. */
static void stream_update(sk_stream *s) {
  unsigned ev = 0;
  unsigned f = s->sflags;

  if (is_closing(s))
    return;
  unsigned tp_wants = s->tp->wants(s); /* e.g. a handshake reads */
  struct sk_relay *rl = splicer(s);
  if (rl != NULL)
    ev |= sk__relay_wants(rl, s);
  if ((f & SK__S_ACCEPTING) && !timer_active(s))
    ev |= SK__IO_READ;
  if (((f & SK__S_READING) && s->pauses == 0) || (f & SK__S_PEEKING))
    ev |= SK__IO_READ;
  ev |= tp_wants;
  if (s->wq.head != NULL || (f & SK__S_CONNECTING))
    ev |= SK__IO_WRITE;
  if (s->sock.fd >= 0)
    sk__io_set(s->h.loop, &s->io, ev);
  if ((f &
       (SK__S_ACCEPTING | SK__S_CONNECTING | SK__S_READING | SK__S_PEEKING)) ||
      tp_wants != 0 || s->wq.head != NULL || rl != NULL)
    sk__handle_start(&s->h);
  else
    sk__handle_stop(&s->h);
  if (s->x != NULL && s->x->rtimeout > 0)
    recv_deadline_sync(s);
}

int sk_stream_init(sk_loop *loop, sk_stream *s) {
  memset(s, 0, sizeof(*s));
  sk__handle_init(loop, &s->h, SK_HANDLE_STREAM);
  s->sock.fd = -1;
  sk__io_init(&s->io, &s->sock.fd, stream_io_cb);
  s->tp = &sk__transport_plain;
  return 0;
}

/* The descriptor lives in s->sock alone: the watcher points at it. */
static int stream_set_fd(sk_stream *s, int fd) {
  return sk__socket_from_fd(&s->sock, fd);
}

static void stream_drop_fd(sk_stream *s) {
  sk__io_set(s->h.loop, &s->io, 0);
  sk__close_fd(s->sock.fd);
  s->sock.fd = -1;
}

/* The stream has a socket, or is closing, or is connecting (a connect by
 * name has no socket while the name resolves): it cannot take another. */
static int stream_taken(const sk_stream *s) {
  return is_closing(s) || s->sock.fd >= 0 || (s->sflags & SK__S_CONNECTING);
}

int sk_stream_open(sk_stream *s, int fd) {
  int rc, acc = 0;
  socklen_t len = sizeof(acc);

  if (stream_taken(s))
    return -EBUSY;
  rc = sk__fd_prepare(fd);
  if (rc == 0)
    rc = stream_set_fd(s, fd);
  if (rc != 0)
    return rc;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && acc)
    s->sflags |= SK__S_LISTENING;
  else
    s->sflags |= SK__S_CONNECTED;
  return 0;
}

int sk_stream_open_accepted(sk_stream *s, int fd, int family) {
  if (stream_taken(s))
    return -EBUSY;
  if (fd < 0 || (family != AF_INET && family != AF_INET6 && family != AF_UNIX))
    return -EINVAL;
  s->sock.fd = fd;
  s->sock.family = family;
  s->sock.type = SOCK_STREAM;
  s->sflags |= SK__S_CONNECTED;
  return 0;
}

int sk_stream_listen(sk_stream *s, const sk_endpoint *ep, int backlog,
                     unsigned flags) {
  int fd, rc, one = 1;
  int family = sk_endpoint_family(ep);

  if (stream_taken(s))
    return -EBUSY;
  fd = sk__socket_create(family, SOCK_STREAM, sk__listen_sock_flags(flags));
  if (fd < 0)
    return fd;
  if (family != AF_UNIX)
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if ((flags & SK_LISTEN_REUSEPORT) &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
    goto fail;
  if (bind(fd, &ep->u.sa, ep->len) < 0)
    goto fail;
  if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
    goto fail;
  rc = stream_set_fd(s, fd);
  if (rc != 0) {
    sk__close_fd(fd);
    return rc;
  }
  s->sflags |= SK__S_LISTENING;
  return 0;
fail:
  rc = sk__err();
  sk__close_fd(fd);
  return rc;
}

void sk__stream_unlisten(sk_stream *s) {
  stream_drop_fd(s);
  s->sock = (sk_socket)SK_SOCKET_INIT;
  s->sflags &= ~(unsigned)SK__S_LISTENING;
}

/* ---- accept ---- */

static void accept_resume(struct sk__tnode *n) {
  struct sk__sextra *x = sk__container_of(n, struct sk__sextra, timer);
  stream_update(x->s);
}

/* Out of descriptors: give up the spare one, take the waiting connection
 * and close it at once (the peer sees a clean close, not a hang), then take
 * the spare back. Without a spare, stop polling the listener for a moment;
 * either way the loop never spins on a listener it cannot serve. */
static void accept_shed(sk_stream *s) {
  sk_loop *loop = s->h.loop;
  if (loop->emfile_fd >= 0) {
    sk__close_fd(loop->emfile_fd);
    loop->emfile_fd = -1;
    int fd = accept4(s->sock.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0)
      sk__close_fd(fd);
    loop->emfile_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
      return;
  }
  /* The extra state exists: sk_stream_accept_start() allocated it. */
  s->x->timer.cb = accept_resume;
  sk__tnode_start(loop, &s->x->timer, loop->now + ACCEPT_BACKOFF_MS);
  stream_update(s);
}

static void do_accept(sk_stream *s) {
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    sk_endpoint peer;
    int fd;

    if (!(s->sflags & SK__S_ACCEPTING) || is_closing(s))
      return;
    fd = accept4(s->sock.fd, (struct sockaddr *)&ss, &len,
                 SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK)
        return;
      if (sk__accept_transient(err))
        continue;
      if (sk_err_is_resource(-err)) {
        accept_shed(s);
        s->cb.accept_cb(s, -err, -1, NULL);
        return;
      }
      s->sflags &= ~SK__S_ACCEPTING;
      stream_update(s);
      s->cb.accept_cb(s, -err, -1, NULL);
      return;
    }
    memset(&peer, 0, sizeof(peer));
    if (sk_endpoint_from_sockaddr(&peer, (struct sockaddr *)&ss, len) != 0)
      peer.len = 0;
    s->cb.accept_cb(s, 0, fd, &peer);
  }
}

int sk_stream_accept_start(sk_stream *s, sk_accept_cb cb) {
  if (is_closing(s))
    return -EBADF;
  if (!(s->sflags & SK__S_LISTENING) || cb == NULL)
    return -EINVAL;
  if (extra(s) == NULL)
    return -ENOMEM;
  /* As for receiving: a pending -ECANCELED of accept_stop is dropped. */
  sk__pending_remove(s->h.loop, &s->x->rpend);
  s->cb.accept_cb = cb;
  s->sflags |= SK__S_ACCEPTING;
  stream_update(s);
  return 0;
}

static void rpend_cb(struct sk__pending *p) {
  sk_stream *s = sk__container_of(p, struct sk__sextra, rpend)->s;
  if (s->sflags & SK__S_LISTENING) {
    if (s->cb.accept_cb != NULL)
      s->cb.accept_cb(s, -ECANCELED, -1, NULL);
  } else if (s->recv_cb != NULL) {
    s->recv_cb(s, -ECANCELED, NULL);
  }
}

int sk_stream_accept_stop(sk_stream *s) {
  if (!(s->sflags & SK__S_ACCEPTING))
    return -EINVAL;
  s->sflags &= ~SK__S_ACCEPTING;
  timer_stop(s);
  stream_update(s);
  sk__pending_add(s->h.loop, &s->x->rpend, rpend_cb);
  return 0;
}

/* ---- connect ---- */

static void connect_done(struct sk__pending *p) {
  struct sk__sextra *x = sk__container_of(p, struct sk__sextra, cpend);
  sk_stream *s = x->s;
  sk_connect_cb cb = s->cb.connect_cb;
  s->cb.connect_cb = NULL;
  if (cb != NULL)
    cb(s, x->cstatus);
}

/* Ends the connect operation; the callback runs from the pending phase, so
 * it never runs inside sk_stream_connect() itself. */
static void connect_finish(sk_stream *s, int status) {
  sk_loop *loop = s->h.loop;
  struct sk__sextra *x = s->x; /* allocated by sk_stream_connect() */
  sk__tnode_stop(loop, &x->timer);
  if (x->hev != NULL) {
    sk__connreq_end(x->hev);
    x->hev = NULL;
  }
  free(x->eps);
  x->eps = NULL;
  x->neps = x->ieps = 0;
  s->sflags &= ~SK__S_CONNECTING;
  if (status == 0) {
    s->sflags |= SK__S_CONNECTED;
  } else if (s->sock.fd >= 0) {
    stream_drop_fd(s);
  }
  x->cstatus = status;
  stream_update(s);
  sk__pending_add(loop, &x->cpend, connect_done);
}

/* Starts connecting to the next endpoint; finishes with the last error when
 * none is left. */
static void connect_next(sk_stream *s, int last_err) {
  struct sk__sextra *x = s->x;
  while (x->ieps < x->neps) {
    const sk_endpoint *ep = &x->eps[x->ieps++];
    int fd = sk__socket_create(sk_endpoint_family(ep), SOCK_STREAM, 0);
    if (fd < 0) {
      last_err = fd;
      continue;
    }
    int rc;
    do
      rc = connect(fd, &ep->u.sa, ep->len);
    while (rc < 0 && errno == EINTR);
    if (rc == 0 || errno == EINPROGRESS) {
      stream_set_fd(s, fd);
      if (rc == 0)
        connect_finish(s, 0);
      else
        stream_update(s);
      return;
    }
    /* Unix sockets fail at once, with EAGAIN when the listener's backlog
     * is full: that is reported like a refusal, for the next endpoint. */
    last_err = sk__err();
    sk__close_fd(fd);
  }
  connect_finish(s, last_err);
}

static void connect_timeout(struct sk__tnode *n) {
  connect_finish(sk__container_of(n, struct sk__sextra, timer)->s, -ETIMEDOUT);
}

static void connect_ready(sk_stream *s) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(s->sock.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err == 0) {
    connect_finish(s, 0);
    return;
  }
  stream_drop_fd(s);
  connect_next(s, -err);
}

int sk_stream_connect(sk_stream *s, const sk_endpoint *eps, size_t n,
                      int timeout_ms, sk_connect_cb cb) {
  sk_loop *loop = s->h.loop;
  if (is_closing(s))
    return -EBADF;
  if (s->sock.fd >= 0 || (s->sflags & SK__S_CONNECTING))
    return -EISCONN;
  if (n == 0 || eps == NULL || cb == NULL)
    return -EINVAL;
  if (n > SK_STREAM_CONNECT_MAX)
    n = SK_STREAM_CONNECT_MAX;
  struct sk__sextra *x = extra(s);
  if (x == NULL)
    return -ENOMEM;
  x->eps = malloc(n * sizeof(*eps));
  if (x->eps == NULL)
    return -ENOMEM;
  memcpy(x->eps, eps, n * sizeof(*eps));
  x->neps = n;
  x->ieps = 0;
  s->cb.connect_cb = cb;
  s->sflags |= SK__S_CONNECTING;
  if (timeout_ms >= 0) {
    sk_loop_update_time(loop);
    x->timer.cb = connect_timeout;
    sk__tnode_start(loop, &x->timer, loop->now + (uint64_t)timeout_ms);
  }
  connect_next(s, -ECONNREFUSED);
  return 0;
}

/* connect.c's connect by name: it runs the attempts, this file owns the
 * operation (callback, deadline, cancel, close) and adopts the winner. */
int sk__stream_connect_begin(sk_stream *s, struct sk__connreq *r,
                             int timeout_ms, sk_connect_cb cb) {
  if (is_closing(s))
    return -EBADF;
  if (s->sock.fd >= 0 || (s->sflags & SK__S_CONNECTING))
    return -EISCONN;
  struct sk__sextra *x = extra(s);
  if (x == NULL)
    return -ENOMEM;
  x->hev = r;
  s->cb.connect_cb = cb;
  s->sflags |= SK__S_CONNECTING;
  if (timeout_ms >= 0) {
    sk_loop_update_time(s->h.loop);
    x->timer.cb = connect_timeout;
    sk__tnode_start(s->h.loop, &x->timer,
                    s->h.loop->now + (uint64_t)timeout_ms);
  }
  stream_update(s);
  return 0;
}

void sk__stream_connect_end(sk_stream *s, int fd, int status) {
  if (status == 0 && (status = stream_set_fd(s, fd)) != 0)
    sk__close_fd(fd);
  connect_finish(s, status);
}

int sk_stream_connect_cancel(sk_stream *s) {
  if (!(s->sflags & SK__S_CONNECTING))
    return -EINVAL;
  connect_finish(s, -ECANCELED);
  return 0;
}

/* ---- writing ---- */

/* A request that carries no bytes of the user's, or len held ones. */
static struct sk__wreq *wreq_special(sk_stream *s, int kind, size_t len,
                                     sk_send_cb cb, void *arg) {
  struct sk__wreq *r = sk__wreq_new(s->h.loop, len);
  if (r != NULL) {
    r->kind = kind;
    r->cb.stream = cb;
    r->arg = arg;
  }
  return r;
}

/* wq_append() may add to the last queued request when it carries plain
 * bytes and no callback: many small replies to a peer that does not read
 * then cost their bytes, not a request each. It appends what fits of iov[]
 * (after its first skip bytes) and returns how many bytes it took. */
static int wq_tail_open(const sk_stream *s) {
  const struct sk__wreq *t = s->wq.tail;
  return t != NULL && t->kind == SK__WREQ_BYTES && !sk__wreq_has_cb(t);
}

static size_t wq_append(sk_stream *s, const struct iovec *iov, int iovcnt,
                        size_t skip, size_t len) {
  struct sk__wreq *t = s->wq.tail;
  size_t end = t->off + t->len, room = t->cap - end;
  size_t n = len < room ? len : room;
  if (n == 0)
    return 0;
  sk__iov_copy_n(t->data + end, iov, iovcnt, skip, n);
  t->len += n;
  s->wq.bytes += n;
  return n;
}

/* The head request is done: off the queue, its completion queued. */
static void wq_done(sk_stream *s) {
  sk__wq_complete(&s->h, sk__wq_pop(&s->wq), 0);
}

static ssize_t sendmsg_nosig(int fd, const struct iovec *iov, int iovcnt) {
  struct msghdr msg;
  ssize_t n;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = (struct iovec *)iov;
  msg.msg_iovlen = (size_t)iovcnt;
  do
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  return n < 0 ? sk__err() : n;
}

static ssize_t send_urgent(int fd, unsigned char byte) {
  ssize_t n;
  do
    n = send(fd, &byte, 1, MSG_OOB | MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  return n < 0 ? sk__err() : n;
}

/* Fails every queued request with err (write error or close). */
static void wq_fail(sk_stream *s, int err) {
  sk__wq_fail(&s->h, &s->wq, err);
}

static void write_failed(sk_stream *s, int err) {
  s->sflags |= SK__S_WR_FAILED;
  s->wstatus = err;
  wq_fail(s, err);
}

/* Outcomes of write_special(). */
enum { W_FULL = 0, W_DONE = 1, W_AHEAD = 2 };

/* The kernel sends the file (plain transport). */
static int write_file_kernel(sk_stream *s, struct sk__wreq *r) {
  struct sk__sigpipe sp;
  int rc = W_DONE;
  sk__sigpipe_block(&sp);
  while (r->len > 0) {
    size_t chunk = r->len > SK__SENDFILE_CHUNK ? SK__SENDFILE_CHUNK : r->len;
    ssize_t n = sendfile(s->sock.fd, r->file_fd, &r->file_off, chunk);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = errno == EAGAIN ? W_FULL : sk__err();
      break;
    }
    if (n == 0) {
      rc = SK_EOF; /* the file is shorter than promised */
      break;
    }
    r->len -= (size_t)n;
    r->off += (size_t)n;
    s->wq.bytes -= (size_t)n;
  }
  sk__sigpipe_unblock(&sp, rc == -EPIPE);
  return rc;
}

static int hold(sk_stream *s, int kind, const struct iovec *iov, int iovcnt,
                size_t total, sk_send_cb cb, void *arg);
static int tp_pass(sk_stream *s, const struct iovec *v, sk_send_cb cb,
                   void *arg, int shut);

/* A file queued for a transport that transforms bytes (TLS): one chunk is
 * read and passed through the transport, whose output is queued ahead of
 * the file's request. The next chunk is read
 * only once that output is written, so a file of any size holds one
 * chunk's worth of memory and the peer's pace holds back the reading. */
static int write_file_transport(sk_stream *s, struct sk__wreq *r) {
  unsigned char buf[FILE_CHUNK];
  size_t want = r->len < sizeof(buf) ? r->len : sizeof(buf);
  struct iovec v;
  ssize_t n;
  int rc;
  if (r->len == 0)
    return W_DONE;
  do
    n = pread(r->file_fd, buf, want, r->file_off);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return sk__err();
  if (n == 0)
    return SK_EOF; /* the file is shorter than promised */
  r->file_off += n;
  r->len -= (size_t)n;
  r->off += (size_t)n;
  s->wq.bytes -= (size_t)n;
  v.iov_base = buf;
  v.iov_len = (size_t)n;
  rc = tp_pass(s, &v, NULL, NULL, 0);
  return rc < 0 ? rc : W_AHEAD;
}

/* The held request r at the head goes through the transport now; what the
 * transport makes takes its place. */
static int write_held(sk_stream *s, struct sk__wreq *r) {
  int rc;
  sk__wq_pop(&s->wq);
  s->wq.bytes -= r->len;
  if (r->kind == SK__WREQ_TP_BYTES) {
    struct iovec v = {r->data + r->off, r->len};
    rc = tp_pass(s, &v, r->cb.stream, r->arg, 0);
  } else {
    rc = tp_pass(s, NULL, r->cb.stream, r->arg, 1);
  }
  if (rc < 0) {
    sk__wq_complete(&s->h, r, rc);
    return rc;
  }
  sk__wreq_free(s->h.loop, r);
  return W_AHEAD;
}

/* Runs the head request if it is not plain bytes: W_DONE when it finished,
 * W_FULL when the kernel is full, W_AHEAD when it queued bytes ahead of
 * itself, or a negative errno. */
static int write_special(sk_stream *s, struct sk__wreq *r) {
  if (r->kind == SK__WREQ_SHUTDOWN) {
    if (shutdown(s->sock.fd, SHUT_WR) < 0 && errno != ENOTCONN)
      return sk__err();
    return W_DONE;
  }
  if (r->kind == SK__WREQ_URGENT) {
    ssize_t n = send_urgent(s->sock.fd, r->data[0]);
    if (n == -EAGAIN)
      return W_FULL;
    if (n < 0)
      return (int)n;
    s->wq.bytes -= 1;
    return W_DONE;
  }
  if (r->kind == SK__WREQ_FILE)
    return write_file_kernel(s, r);
  if (r->kind == SK__WREQ_TP_FILE)
    return write_file_transport(s, r);
  return write_held(s, r);
}

/* Writes what the queue holds until the kernel is full. from_io is 0 when
 * called from inside an API call, where the drain callback must not run
 * (callbacks never run inside the call that started an operation). */
static void do_write(sk_stream *s, int from_io) {
  while (s->wq.head != NULL && !is_closing(s)) {
    struct sk__wreq *r = s->wq.head;
    if (r->kind == SK__WREQ_BYTES && r->len == 0) {
      /* An empty send queued behind others completes in its turn. */
      wq_done(s);
      continue;
    }
    if (r->kind != SK__WREQ_BYTES) {
      int rc = write_special(s, r);
      if (rc == W_FULL)
        break; /* wait for writable (below) */
      if (rc == SK_EOF) {
        /* The file is shorter than promised: its send ends with SK_EOF,
         * and the stream, whose peer now misses bytes, fails with -EIO. */
        sk__wq_complete(&s->h, sk__wq_pop(&s->wq), SK_EOF);
        rc = -EIO;
      }
      if (rc < 0) {
        write_failed(s, rc);
        break;
      }
      if (rc == W_DONE)
        wq_done(s);
      continue;
    }
    struct iovec iov[WRITE_IOV_MAX];
    int cnt = 0;
    for (struct sk__wreq *q = r; q != NULL && cnt < WRITE_IOV_MAX;
         q = q->next) {
      if (q->kind != SK__WREQ_BYTES)
        break;
      iov[cnt].iov_base = q->data + q->off;
      iov[cnt].iov_len = q->len;
      cnt++;
    }
    ssize_t n = sendmsg_nosig(s->sock.fd, iov, cnt);
    if (n == -EAGAIN)
      break;
    if (n < 0) {
      write_failed(s, (int)n);
      break;
    }
    size_t left = (size_t)n;
    s->wq.bytes -= left;
    while (left > 0) {
      struct sk__wreq *q = s->wq.head;
      if (q->len > left) {
        q->len -= left;
        q->off += left;
        left = 0;
        break;
      }
      left -= q->len;
      q->len = 0;
      wq_done(s);
    }
  }
  stream_update(s);
  /* Also after a failure: a user that paused reading for back-pressure
   * and sends without callbacks learns of the broken connection only by
   * resuming (a paused stream watches nothing). */
  if (s->wq.head == NULL && from_io && s->drain_cb != NULL && !is_closing(s))
    s->drain_cb(s);
}

/* May bytes still go to the socket? (A transport's output: the user's
 * shutdown may be held behind a file, the socket's is not.) */
static int raw_check(const sk_stream *s) {
  if (is_closing(s) || s->sock.fd < 0)
    return -EBADF;
  if (s->sflags & SK__S_WR_FAILED)
    return s->wstatus;
  if (s->sflags & SK__S_RAW_SHUT)
    return -EPIPE;
  if (!(s->sflags & SK__S_CONNECTED))
    return -ENOTCONN;
  return 0;
}

/* May the user send? */
static int send_check(const sk_stream *s) {
  int rc = raw_check(s);
  if (rc == 0 && (s->sflags & SK__S_SHUT_WR))
    rc = -EPIPE;
  return rc;
}

static int iov_total(const struct iovec *iov, int iovcnt, size_t *total) {
  *total = 0;
  if (iovcnt < 0 || (iovcnt > 0 && iov == NULL))
    return -EINVAL;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_len > SIZE_MAX - *total)
      return -EINVAL;
    *total += iov[i].iov_len;
  }
  return 0;
}

int sk_stream_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                    sk_send_cb cb, void *arg) {
  size_t total;
  int rc = send_check(s);
  if (rc == 0)
    rc = iov_total(iov, iovcnt, &total);
  if (rc != 0)
    return rc;
  if (s->wq.held > 0)
    return hold(s, SK__WREQ_TP_BYTES, iov, iovcnt, total, cb, arg);
  return s->tp->sendv(s, iov, iovcnt, cb, arg);
}

/* ---- held requests ----
 *
 * Files, and the sends and the shutdown made behind a file, for a transport
 * that transforms bytes (TLS) wait in the queue as the user gave them
 * (SK__WREQ_TP_*, counted by the queue in wq.held) and pass through the
 * transport in order when they reach the head (TLS numbers its records, so
 * nothing may be sealed out of turn). tp_pass() is the one place that
 * passes one: for its duration, s->tp_out is the link ahead of the held
 * request where the transport's output goes, in order. Output the
 * transport makes on its own while requests are held (an answer made while
 * reading) goes ahead of the first held request, which it has not seen. */

/* Where output for the socket goes: a link inside the queue, or NULL for
 * the queue's end. */
static struct sk__wreq **transport_out_link(sk_stream *s) {
  if (s->tp_out != NULL || s->wq.held == 0)
    return s->tp_out;
  for (struct sk__wreq **at = &s->wq.head; *at != NULL; at = &(*at)->next)
    if (sk__wreq_held_kind((*at)->kind))
      return at;
  return NULL; /* not reached: wq.held counts the queue's held requests */
}

/* Passes held content to the transport (a user send, a file chunk, or a
 * shutdown when shut is set); its output goes to the queue's head, ahead
 * of what is still held. */
static int tp_pass(sk_stream *s, const struct iovec *v, sk_send_cb cb,
                   void *arg, int shut) {
  int rc;
  s->tp_out = &s->wq.head;
  rc = shut ? s->tp->shutdown(s, cb, arg) : s->tp->sendv(s, v, 1, cb, arg);
  s->tp_out = NULL;
  return rc;
}

/* Queues r at link at (from transport_out_link()), or at the end. */
static void enqueue(sk_stream *s, struct sk__wreq **at, struct sk__wreq *r) {
  if (at == NULL) {
    sk__wq_push(&s->wq, r);
    return;
  }
  at = sk__wq_insert(&s->wq, at, r);
  if (s->tp_out != NULL)
    s->tp_out = at; /* the pass's next output goes after this */
}

/* Bytes for the socket, checked by the caller. */
static int raw_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                     sk_send_cb cb, void *arg) {
  size_t total = 0, done = 0;
  struct sk__wreq *r, **at;
  int rc = iov_total(iov, iovcnt, &total);

  if (rc != 0)
    return rc;
  if ((at = transport_out_link(s)) != NULL) {
    r = wreq_special(s, SK__WREQ_BYTES, total, cb, arg);
    if (r == NULL)
      return -ENOMEM;
    r->len = total;
    sk__iov_copy(r->data, iov, iovcnt, 0);
    enqueue(s, at, r);
    stream_update(s);
    return 0;
  }
  /* Write directly first; queue only what the kernel did not take. */
  if (s->wq.head == NULL && total > 0) {
    ssize_t n = sendmsg_nosig(s->sock.fd, iov, iovcnt > 1024 ? 1024 : iovcnt);
    if (n < 0 && n != -EAGAIN) {
      s->sflags |= SK__S_WR_FAILED;
      s->wstatus = (int)n;
      return (int)n;
    }
    if (n > 0)
      done = (size_t)n;
  }
  if (done == total && cb == NULL && s->wq.head == NULL)
    return 0;
  /* Behind other requests, a send without a callback fills the last
   * buffer's room first. (One with a callback keeps a request of its own,
   * so that it completes, and can be cancelled, on its own bytes.) */
  if (cb == NULL && wq_tail_open(s)) {
    done += wq_append(s, iov, iovcnt, done, total - done);
    if (done == total)
      return 0;
  }
  r = sk__wreq_new(s->h.loop, total - done);
  if (r == NULL) {
    /* Part of this send is in the kernel and the rest cannot follow: the
     * byte stream has a hole, so the write side fails for good (a retry
     * would send the first part twice). */
    if (done > 0)
      write_failed(s, -ENOMEM);
    return -ENOMEM;
  }
  r->kind = SK__WREQ_BYTES;
  r->cb.stream = cb;
  r->arg = arg;
  r->len = total - done;
  if (done == total && s->wq.head == NULL) {
    /* Everything went out: only the completion is left to deliver. */
    sk__wq_complete(&s->h, r, 0);
    return 0;
  }
  sk__iov_copy(r->data, iov, iovcnt, done);
  r->partial = done > 0;
  sk__wq_push(&s->wq, r);
  stream_update(s);
  return 0;
}

int sk__stream_raw_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                         sk_send_cb cb, void *arg) {
  int rc = raw_check(s);
  return rc != 0 ? rc : raw_sendv(s, iov, iovcnt, cb, arg);
}

static int hold(sk_stream *s, int kind, const struct iovec *iov, int iovcnt,
                size_t total, sk_send_cb cb, void *arg) {
  struct sk__wreq *r = wreq_special(s, kind, total, cb, arg);
  if (r == NULL)
    return -ENOMEM;
  sk__iov_copy(r->data, iov, iovcnt, 0);
  r->len = total;
  if (kind == SK__WREQ_TP_SHUTDOWN)
    s->sflags |= SK__S_SHUT_WR;
  sk__wq_push(&s->wq, r);
  return 0;
}

int sk_stream_send_urgent(sk_stream *s, unsigned char byte, sk_send_cb cb,
                          void *arg) {
  struct sk__wreq *r;
  int rc = send_check(s);
  if (rc != 0)
    return rc;
  if (!(s->tp->flags & SK__TP_RAW) || s->sock.family == AF_UNIX)
    return -ENOTSUP;
  if (s->wq.head == NULL) {
    ssize_t n = send_urgent(s->sock.fd, byte);
    if (n < 0 && n != -EAGAIN) {
      s->sflags |= SK__S_WR_FAILED;
      s->wstatus = (int)n;
      return (int)n;
    }
    if (n == 1 && cb == NULL)
      return 0;
    if (n == 1) {
      r = wreq_special(s, SK__WREQ_URGENT, 0, cb, arg);
      if (r == NULL)
        return -ENOMEM;
      sk__wq_complete(&s->h, r, 0);
      return 0;
    }
  }
  r = wreq_special(s, SK__WREQ_URGENT, 1, cb, arg);
  if (r == NULL)
    return -ENOMEM;
  r->data[0] = byte;
  r->len = 1;
  sk__wq_push(&s->wq, r);
  stream_update(s);
  return 0;
}

int sk_stream_send_cancel(sk_stream *s, sk_send_cb cb, void *arg) {
  struct sk__wreq *prev = NULL, *r;
  if (cb == NULL)
    return -EINVAL;
  if (is_closing(s))
    return -EBADF;
  for (r = s->wq.head; r != NULL; prev = r, r = r->next)
    if (r->cb.stream == cb && r->arg == arg && r->kind != SK__WREQ_SHUTDOWN &&
        r->kind != SK__WREQ_TP_SHUTDOWN)
      break;
  if (r == NULL)
    return -ENOENT;
  /* Through a transport that transforms bytes (TLS records, sealed in
   * sequence), leaving some out would break the stream. */
  if (!(s->tp->flags & SK__TP_RAW))
    return -ENOTSUP;
  /* Some of its bytes are in the kernel already: the rest cannot be held
   * back without cutting a message in two. */
  if (r->partial || r->off > 0)
    return -EBUSY;
  sk__wq_remove(&s->wq, prev, r);
  sk__wq_complete(&s->h, r, -ECANCELED);
  stream_update(s);
  return 0;
}

int sk_stream_send(sk_stream *s, const void *buf, size_t len, sk_send_cb cb,
                   void *arg) {
  struct iovec iov;
  iov.iov_base = (void *)buf;
  iov.iov_len = len;
  return sk_stream_sendv(s, &iov, 1, cb, arg);
}

int sk_stream_sendfile(sk_stream *s, int fd, off_t offset, size_t len,
                       sk_send_cb cb, void *arg) {
  struct sk__wreq *r;
  int rc = send_check(s);
  /* The path is chosen now, by the transport the bytes are sent on: one
   * installed later (TLS after STARTTLS) never sees this file. */
  int kind = (s->tp->flags & SK__TP_RAW) ? SK__WREQ_FILE : SK__WREQ_TP_FILE;
  if (rc != 0)
    return rc;
  if (fd < 0 || offset < 0)
    return -EINVAL;
  /* A transport that transforms bytes says now whether it can take any
   * (an empty send queues nothing), not later through a failed stream. */
  if (kind == SK__WREQ_TP_FILE &&
      (rc = s->tp->sendv(s, NULL, 0, NULL, NULL)) != 0)
    return rc;
  r = wreq_special(s, kind, 0, cb, arg);
  if (r == NULL)
    return -ENOMEM;
  r->len = len;
  r->file_fd = fd;
  r->file_off = offset;
  sk__wq_push(&s->wq, r);
  /* Same rule as for bytes: try at once, queue only the rest. */
  if (s->wq.head == r)
    do_write(s, 0);
  return 0;
}

int sk_stream_shutdown(sk_stream *s, sk_send_cb cb, void *arg) {
  int rc = send_check(s);
  if (rc != 0)
    return rc;
  if (s->wq.held > 0)
    return hold(s, SK__WREQ_TP_SHUTDOWN, NULL, 0, 0, cb, arg);
  return s->tp->shutdown(s, cb, arg);
}

static int raw_shutdown(sk_stream *s, sk_send_cb cb, void *arg) {
  struct sk__wreq *r = wreq_special(s, SK__WREQ_SHUTDOWN, 0, cb, arg);
  if (r == NULL)
    return -ENOMEM;
  s->sflags |= SK__S_SHUT_WR | SK__S_RAW_SHUT;
  enqueue(s, transport_out_link(s), r);
  if (s->wq.head == r)
    do_write(s, 0);
  else
    stream_update(s);
  return 0;
}

int sk__stream_raw_shutdown(sk_stream *s, sk_send_cb cb, void *arg) {
  int rc = raw_check(s);
  return rc != 0 ? rc : raw_shutdown(s, cb, arg);
}

int sk__stream_write_fail(sk_stream *s, int err, sk_send_cb cb, void *arg) {
  struct sk__wreq *r;
  if (is_closing(s))
    return err;
  /* What is queued is whole and goes out; nothing after it may. */
  if (!(s->sflags & (SK__S_WR_FAILED | SK__S_RAW_SHUT))) {
    s->sflags |= SK__S_WR_FAILED;
    s->wstatus = err;
  }
  if (cb == NULL || (r = wreq_special(s, SK__WREQ_BYTES, 0, cb, arg)) == NULL)
    return err;
  sk__wq_complete(&s->h, r, err);
  return 0;
}

size_t sk_stream_write_queue_size(const sk_stream *s) {
  return s->wq.bytes;
}

size_t sk_stream_write_queue_memory(const sk_stream *s) {
  return s->wq.mem;
}

void sk_stream_on_drain(sk_stream *s, sk_drain_cb cb) {
  s->drain_cb = cb;
}

/* ---- reading ---- */

int sk__stream_user_reading(const sk_stream *s) {
  return user_reading(s);
}

void sk__stream_update(sk_stream *s) {
  stream_update(s);
}

void sk__stream_deliver(sk_stream *s, ssize_t n, const void *buf) {
  if (!(s->sflags & SK__S_READING) || is_closing(s))
    return;
  if (n > 0)
    recv_activity(s);
  if (n < 0) {
    s->sflags &= ~SK__S_READING;
    stream_update(s);
  }
  s->recv_cb(s, n, buf);
}

static int socket_wanted(const sk_stream *s) {
  return user_reading(s) || (s->tp->wants(s) & SK__IO_READ);
}

static void do_read(sk_stream *s) {
  sk_loop *loop = s->h.loop;
  size_t budget = READ_BUDGET;

  while (budget > 0) {
    ssize_t n;
    if (!socket_wanted(s) || is_closing(s))
      return;
    do
      n = recv(s->sock.fd, loop->rbuf, loop->rbuf_len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
      budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
      s->tp->input(s, loop->rbuf, n);
      /* Level-triggered: a short read means the socket is drained for
       * now, and skipping the read that would say EAGAIN saves a system
       * call per message. */
      if ((size_t)n < loop->rbuf_len)
        return;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    /* The socket said EOF or failed. */
    s->tp->input(s, NULL, n == 0 ? SK_EOF : sk__err());
    return;
  }
}

/* What receiving and peeking both need: an open, connected stream. */
static int recv_check(const sk_stream *s, sk_recv_cb cb) {
  if (is_closing(s) || s->sock.fd < 0)
    return -EBADF;
  if (cb == NULL || (s->sflags & SK__S_LISTENING))
    return -EINVAL;
  if (!(s->sflags & SK__S_CONNECTED))
    return -ENOTCONN;
  return 0;
}

int sk_stream_recv_start(sk_stream *s, sk_recv_cb cb) {
  int rc = recv_check(s, cb);
  if (rc != 0)
    return rc;
  if (s->sflags & SK__S_PEEKING)
    return -EBUSY;
  /* Restarted before the -ECANCELED of an sk_stream_recv_stop() ran: that
   * callback would reach the new operation, so it is dropped. */
  if (s->x != NULL)
    sk__pending_remove(s->h.loop, &s->x->rpend);
  s->recv_cb = cb;
  s->sflags |= SK__S_READING;
  stream_update(s);
  s->tp->resume(s);
  return 0;
}

int sk_stream_recv_stop(sk_stream *s) {
  if (!(s->sflags & (SK__S_READING | SK__S_PEEKING)))
    return -EINVAL;
  if (extra(s) == NULL)
    return -ENOMEM;
  s->sflags &= ~(SK__S_READING | SK__S_PEEKING);
  stream_update(s);
  sk__pending_add(s->h.loop, &s->x->rpend, rpend_cb);
  return 0;
}

int sk_stream_recv_timeout(sk_stream *s, int timeout_ms) {
  if (is_closing(s))
    return -EBADF;
  if (timeout_ms == 0 || timeout_ms < -1)
    return -EINVAL;
  if (timeout_ms == -1) {
    if (s->x != NULL) {
      s->x->rtimeout = 0;
      sk__tnode_stop(s->h.loop, &s->x->rtimer);
    }
    return 0;
  }
  if (extra(s) == NULL)
    return -ENOMEM;
  s->x->rtimeout = timeout_ms;
  sk__tnode_stop(s->h.loop, &s->x->rtimer); /* the clock starts now */
  sk_loop_update_time(s->h.loop);
  stream_update(s);
  return 0;
}

int sk_stream_peek(sk_stream *s, sk_recv_cb cb) {
  int rc = recv_check(s, cb);
  if (rc != 0)
    return rc;
  if (!(s->tp->flags & SK__TP_RAW))
    return -ENOTSUP;
  if (s->sflags & (SK__S_READING | SK__S_PEEKING))
    return -EBUSY;
  if (extra(s) == NULL)
    return -ENOMEM;
  sk__pending_remove(s->h.loop, &s->x->rpend);
  s->recv_cb = cb;
  s->sflags |= SK__S_PEEKING;
  stream_update(s);
  return 0;
}

/* The socket is readable while a peek waits: look without taking. */
static void do_peek(sk_stream *s) {
  sk_loop *loop = s->h.loop;
  ssize_t n;
  do
    n = recv(s->sock.fd, loop->rbuf, loop->rbuf_len, MSG_PEEK);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return;
  if (n < 0)
    n = sk__err();
  else if (n == 0)
    n = SK_EOF;
  s->sflags &= ~SK__S_PEEKING;
  stream_update(s);
  s->recv_cb(s, n, n > 0 ? loop->rbuf : NULL);
}

/* Pauses are counted: several owners (back-pressure, a request being
 * served) can each hold one, and reading resumes when the last lets go. */
void sk_stream_recv_pause(sk_stream *s) {
  if (s->pauses == UINT_MAX)
    return;
  s->pauses++;
  stream_update(s);
}

void sk_stream_recv_resume(sk_stream *s) {
  if (s->pauses == 0 || --s->pauses > 0)
    return;
  stream_update(s);
  s->tp->resume(s);
}

int sk_stream_is_receiving(const sk_stream *s) {
  return (s->sflags & SK__S_READING) && s->pauses == 0;
}

/* ---- dispatch and close ---- */

static void stream_io_cb(sk_loop *loop, struct sk__io *w, unsigned revents) {
  sk_stream *s = sk__container_of(w, sk_stream, io);
  SK__UNUSED(loop);

  if (s->sflags & SK__S_CONNECTING) {
    if (revents & (SK__IO_WRITE | SK__IO_ERR))
      connect_ready(s);
    return;
  }
  if (s->sflags & SK__S_LISTENING) {
    do_accept(s);
    return;
  }
  if (splicer(s) != NULL) {
    /* A splicing relay: the stream's own queue first, then the relay. */
    if ((revents & SK__IO_WRITE) && s->wq.head != NULL && !is_closing(s))
      do_write(s, 1);
    struct sk_relay *rl = splicer(s);
    if (rl != NULL && !is_closing(s))
      sk__relay_io(rl, s, revents);
    return;
  }
  if ((revents & SK__IO_READ) && (s->sflags & SK__S_PEEKING))
    do_peek(s);
  if (revents & SK__IO_READ)
    do_read(s);
  if ((revents & SK__IO_WRITE) && s->wq.head != NULL && !is_closing(s))
    do_write(s, 1);
}

void sk__stream_close(sk_stream *s) {
  sk_loop *loop = s->h.loop;
  if (s->x != NULL && s->x->relay != NULL)
    sk__relay_closing(s->x->relay, s);
  if (s->sflags & SK__S_CONNECTING)
    connect_finish(s, -ECANCELED);
  timer_stop(s);
  if (s->x != NULL)
    sk__tnode_stop(loop, &s->x->rtimer);
  /* A waiting peek is a one-shot operation: it ends with -ECANCELED, like
   * a pending connect or send. (s->x exists: sk_stream_peek made it.) */
  if (s->sflags & SK__S_PEEKING)
    sk__pending_add(loop, &s->x->rpend, rpend_cb);
  s->sflags &= ~(SK__S_ACCEPTING | SK__S_READING | SK__S_PEEKING);
  wq_fail(s, -ECANCELED);
  if (s->sock.fd >= 0) {
    /* Unread data makes close() send RST; drain what is queued so a
     * normal close stays a FIN. */
    if (s->sflags & SK__S_CONNECTED)
      sk__drain_fd(s->sock.fd, 1u << 20);
    stream_drop_fd(s);
  }
  /* s->x is freed by sk__stream_closed(): its callbacks may be queued. */
  s->tp->close(s);
  s->tp = &sk__transport_plain;
  s->tpdata = NULL;
}

void sk_stream_abort(sk_stream *s, sk_close_cb cb) {
  if (s->sock.fd >= 0 && !is_closing(s)) {
    struct linger l = {1, 0};
    setsockopt(s->sock.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    s->sflags &= ~SK__S_CONNECTED; /* no drain: the reset is the point */
  }
  sk_close(&s->h, cb);
}

/* ---- the relay's hook (internal.h) ---- */

int sk__stream_relay_set(sk_stream *s, struct sk_relay *r) {
  if (r == NULL && s->x == NULL)
    return 0;
  if (extra(s) == NULL)
    return -ENOMEM;
  s->x->relay = r;
  stream_update(s);
  return 0;
}

struct sk_relay *sk__stream_relay(const sk_stream *s) {
  return s->x != NULL ? s->x->relay : NULL;
}

/* ---- transports ---- */

int sk__stream_transport_check(const sk_stream *s) {
  if (s->sflags & SK__S_LISTENING)
    return -EINVAL;
  if (is_closing(s))
    return -EBADF;
  if (!(s->sflags & SK__S_CONNECTED) || s->sock.fd < 0)
    return -ENOTCONN;
  if (s->tp != &sk__transport_plain)
    return -EALREADY;
  /* A waiting peek would hand the user what the new transport reads. */
  if (s->sflags & SK__S_PEEKING)
    return -EBUSY;
  return send_check(s);
}

void sk__stream_transport_set(sk_stream *s, const struct sk__transport *tp,
                              void *data) {
  s->tp = tp;
  s->tpdata = data;
  stream_update(s);
}

void sk__stream_transport_end(sk_stream *s) {
  sk__stream_transport_set(s, &sk__transport_plain, NULL);
}

void sk__stream_transport_input(sk_stream *s, const unsigned char *buf,
                                size_t n) {
  if (n > 0 && !is_closing(s))
    s->tp->input(s, buf, (ssize_t)n);
}

/* The plain transport: the user's bytes are the socket's. */
static void plain_input(sk_stream *s, const unsigned char *buf, ssize_t n) {
  sk__stream_deliver(s, n, buf);
}

static void plain_resume(sk_stream *s) {
  SK__UNUSED(s); /* nothing held: the socket has it all */
}

static unsigned plain_wants(const sk_stream *s) {
  SK__UNUSED(s);
  return 0;
}

static void plain_close(sk_stream *s) {
  SK__UNUSED(s);
}

const struct sk__transport sk__transport_plain = {
    .name = "plain",
    .input = plain_input,
    .sendv = raw_sendv,
    .shutdown = raw_shutdown,
    .resume = plain_resume,
    .wants = plain_wants,
    .close = plain_close,
    .flags = SK__TP_RAW,
};
