/* The synchronous Socket (include/sockit/socket.h) and the descriptor
 * helpers the rest of the library shares (src/lib/internal.h).
 *
 * Every descriptor is non-blocking and close-on-exec. A call that may wait
 * first tries the system call, and only when the kernel says EAGAIN does it
 * wait with poll() for the remaining time of one monotonic deadline that the
 * call computed on entry. EINTR is retried everywhere and the remaining time
 * is recomputed afterwards, so a signal can neither cut a wait short nor
 * stretch it. Sends use MSG_NOSIGNAL so the process never gets SIGPIPE.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "internal.h"

/* A deadline that never passes: the caller asked to wait forever. */
#define DEADLINE_NEVER UINT64_MAX

/* How many addresses the text helpers try at most. */

/* The longest pause between retries of an operation the kernel cannot
 * signal readiness for (see pause_backoff()). */
#define BACKOFF_MAX_MS 64

/* ---- time ---- */

uint64_t sk__now_ms(void) {
  struct timespec ts;
  /* CLOCK_MONOTONIC cannot fail with a valid pointer; it is also immune to
   * wall-clock changes, which is the point of using it for deadlines. */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t deadline_after(int timeout_ms) {
  if (timeout_ms < 0)
    return DEADLINE_NEVER;
  return sk__now_ms() + (uint64_t)timeout_ms;
}

/* Milliseconds left until deadline, in the form poll() takes: -1 forever,
 * 0 when the deadline has passed. */
static int deadline_left(uint64_t deadline) {
  if (deadline == DEADLINE_NEVER)
    return -1;
  uint64_t now = sk__now_ms();
  if (now >= deadline)
    return 0;
  uint64_t left = deadline - now;
  return left > INT_MAX ? INT_MAX : (int)left;
}

/* poll() on n descriptors until one is ready or the deadline passes.
 * Returns the number ready (> 0), -ETIMEDOUT, or a negative errno. A
 * deadline that has already passed still checks once, so a timeout of 0
 * means "only if ready now". */
static int poll_deadline(struct pollfd *pfds, nfds_t n, uint64_t deadline) {
  for (;;) {
    int left = deadline_left(deadline);
    int ready = poll(pfds, n, left);
    if (ready > 0)
      return ready;
    if (ready == 0) {
      if (left == 0)
        return -ETIMEDOUT;
      /* poll() and our clock may disagree by a fraction of a millisecond;
       * recomputing the remaining time settles it. */
      continue;
    }
    if (errno != EINTR)
      return sk__err();
  }
}

/* Waits until fd reports one of events (or an error or hang-up) or the
 * deadline passes. Returns the revents (> 0), -ETIMEDOUT, or a negative
 * errno. */
static int wait_fd(int fd, short events, uint64_t deadline) {
  struct pollfd pfd = {.fd = fd, .events = events, .revents = 0};
  int rc = poll_deadline(&pfd, 1, deadline);
  if (rc < 0)
    return rc;
  if (pfd.revents & POLLNVAL)
    return -EBADF;
  return pfd.revents;
}

/* Sleeps for a retry pause that doubles on every call (*step holds the
 * current pause), never past the deadline. Used only where the kernel
 * offers nothing to poll for. Returns 0, or -ETIMEDOUT if the deadline has
 * already passed. */
static int pause_backoff(uint64_t deadline, int *step) {
  int left = deadline_left(deadline);
  if (left == 0)
    return -ETIMEDOUT;
  int pause = *step;
  if (left > 0 && left < pause)
    pause = left;
  /* An interrupted pause is simply shorter; the caller retries anyway. */
  (void)poll(NULL, 0, pause);
  if (*step < BACKOFF_MAX_MS)
    *step *= 2;
  return 0;
}

static int is_again(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

/* ---- descriptors ---- */

unsigned sk__listen_sock_flags(unsigned listen_flags) {
  unsigned sf = 0;
  /* The probe of a listener group asks the same question as its members
   * (a V6ONLY [::]:P is free while 0.0.0.0:P is held; a dual-stack one is
   * not), so every bind goes through here. */
  if (listen_flags & SK_LISTEN_V6ONLY)
    sf |= SK_SOCK_V6ONLY;
  if (listen_flags & SK_LISTEN_DUALSTACK)
    sf |= SK_SOCK_DUALSTACK;
  return sf;
}

int sk__socket_create(int family, int type, unsigned flags) {
  const unsigned known = SK_SOCK_DUALSTACK | SK_SOCK_V6ONLY;
  if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
    return -EAFNOSUPPORT;
  if (type != SOCK_STREAM && type != SOCK_DGRAM)
    return -EINVAL;
  if ((flags & ~known) != 0 || (flags & known) == known)
    return -EINVAL;
  /* Both flags describe something only an IPv6 socket has. Other families
   * ignore them, so a caller can pass one set of flags for every address
   * it listens on ("127.0.0.1:80" and "[::]:80" alike). */
  if (family != AF_INET6)
    flags = 0;

  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return sk__err();
  if (flags != 0) {
    int on = (flags & SK_SOCK_V6ONLY) != 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0) {
      int err = sk__err();
      sk__close_fd(fd);
      return err;
    }
  }
  return fd;
}

int sk__fd_prepare(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0)
    return sk__err();
  if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return sk__err();
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0)
    return sk__err();
  if (!(fdfl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
    return sk__err();
  return 0;
}

int sk__socket_from_fd(sk_socket *s, int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return sk__err();
  int type = 0;
  socklen_t tlen = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0)
    return sk__err();
  int family = ss.ss_family;
  if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
    return -EAFNOSUPPORT;
  if (type != SOCK_STREAM && type != SOCK_DGRAM)
    return -ESOCKTNOSUPPORT;
  s->fd = fd;
  s->family = family;
  s->type = type;
  return 0;
}

void sk__drain_fd(int fd, size_t max) {
  char buf[4096];
  size_t done = 0;
  int saved = errno;
  while (done < max) {
    size_t want = max - done < sizeof buf ? max - done : sizeof buf;
    ssize_t n = recv(fd, buf, want, MSG_DONTWAIT);
    if (n > 0) {
      done += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    break;
  }
  errno = saved;
}

void sk__close_fd(int fd) {
  if (fd < 0)
    return;
  int saved = errno;
  /* On Linux the descriptor is released even when close() reports EINTR;
   * retrying could close a descriptor another thread just opened. */
  (void)close(fd);
  errno = saved;
}

/* ---- helpers ---- */

static int check_open(const sk_socket *s) {
  if (s == NULL)
    return -EINVAL;
  if (s->fd < 0)
    return -EBADF;
  return 0;
}

/* Copies ep into out in the form the socket s needs. An IPv4 endpoint used
 * with an IPv6 socket becomes the IPv4-mapped IPv6 address, which is how a
 * dual-stack socket reaches IPv4 peers. */
static int prepare_addr(const sk_socket *s, const sk_endpoint *ep,
                        sk_endpoint *out) {
  if (ep == NULL || ep->len == 0 || ep->len > sizeof ep->u)
    return -EINVAL;
  *out = *ep;
  if (s->family == AF_INET6 && ep->u.sa.sa_family == AF_INET) {
    memset(out, 0, sizeof *out);
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_port = ep->u.in4.sin_port;
    out->u.in6.sin6_addr.s6_addr[10] = 0xff;
    out->u.in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&out->u.in6.sin6_addr.s6_addr[12], &ep->u.in4.sin_addr, 4);
    out->len = sizeof out->u.in6;
  }
  return 0;
}

/* Fills ep from an address the kernel returned. sk_endpoint_from_sockaddr
 * normalises it; what it cannot represent (an unnamed Unix socket has only
 * a family) is kept as the kernel gave it rather than reported as an
 * error, because the call that produced it succeeded. */
static void endpoint_from(sk_endpoint *ep, const struct sockaddr_storage *ss,
                          socklen_t len) {
  if (len > sizeof ep->u)
    len = sizeof ep->u;
  if (len > 0 &&
      sk_endpoint_from_sockaddr(ep, (const struct sockaddr *)ss, len) == 0)
    return;
  memset(ep, 0, sizeof *ep);
  memcpy(&ep->u, ss, len);
  ep->len = len;
}

/* Local port of fd in network byte order, 0 if unknown. */
static in_port_t local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return 0;
  if (ss.ss_family == AF_INET)
    return ((struct sockaddr_in *)&ss)->sin_port;
  if (ss.ss_family == AF_INET6)
    return ((struct sockaddr_in6 *)&ss)->sin6_port;
  return 0;
}

/* ---- lifecycle ---- */

int sk_socket_open(sk_socket *s, int family, int type, unsigned flags) {
  if (s == NULL)
    return -EINVAL;
  *s = (sk_socket)SK_SOCKET_INIT;
  int fd = sk__socket_create(family, type, flags);
  if (fd < 0)
    return fd;
  s->fd = fd;
  s->family = family;
  s->type = type;
  return 0;
}

int sk_socket_adopt(sk_socket *s, int fd) {
  if (s == NULL)
    return -EINVAL;
  *s = (sk_socket)SK_SOCKET_INIT;
  if (fd < 0)
    return -EBADF;
  sk_socket tmp;
  int rc = sk__socket_from_fd(&tmp, fd);
  if (rc == 0)
    rc = sk__fd_prepare(fd);
  if (rc < 0)
    return rc;
  *s = tmp;
  return 0;
}

int sk_socket_bind(sk_socket *s, const sk_endpoint *ep) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  sk_endpoint addr;
  rc = prepare_addr(s, ep, &addr);
  if (rc < 0)
    return rc;
  if (bind(s->fd, &addr.u.sa, addr.len) < 0)
    return sk__err();
  return 0;
}

int sk_socket_listen(sk_socket *s, int backlog) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (listen(s->fd, backlog <= 0 ? SOMAXCONN : backlog) < 0)
    return sk__err();
  return 0;
}

int sk__accept_transient(int err) {
  switch (err) {
  case EINTR:
  case ECONNABORTED:
  case EPROTO:
  case EPERM:
  case ENETDOWN:
  case ENOPROTOOPT:
  case EHOSTDOWN:
  case ENONET:
  case EHOSTUNREACH:
  case ENETUNREACH:
    return 1;
  default:
    return 0;
  }
}

int sk_socket_accept(sk_socket *s, sk_socket *client, sk_endpoint *peer,
                     int timeout_ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (client == NULL)
    return -EINVAL;
  uint64_t deadline = deadline_after(timeout_ms);
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    int fd = accept4(s->fd, (struct sockaddr *)&ss, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      if (peer != NULL)
        endpoint_from(peer, &ss, len);
      client->fd = fd;
      client->family = s->family;
      client->type = s->type;
      return 0;
    }
    int err = errno;
    if (sk__accept_transient(err))
      continue;
    if (!is_again(err))
      return -err;
    rc = wait_fd(s->fd, POLLIN, deadline);
    if (rc < 0)
      return rc;
  }
}

int sk_socket_connect(sk_socket *s, const sk_endpoint *ep, int timeout_ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  sk_endpoint addr;
  rc = prepare_addr(s, ep, &addr);
  if (rc < 0)
    return rc;
  uint64_t deadline = deadline_after(timeout_ms);
  int interrupted = 0;
  int step = 1;
  for (;;) {
    if (connect(s->fd, &addr.u.sa, addr.len) == 0)
      return 0;
    int err = errno;
    if (err == EINPROGRESS)
      break;
    if (err == EINTR) {
      /* The attempt may or may not be under way; asking again tells
       * (EALREADY: in progress, EISCONN: done). */
      interrupted = 1;
      continue;
    }
    if (interrupted && err == EALREADY)
      break;
    if (interrupted && err == EISCONN)
      return 0;
    if (is_again(err) && s->family == AF_UNIX) {
      /* A Unix listener whose backlog is full refuses a non-blocking
       * connect with EAGAIN and leaves nothing to poll for, so the only
       * way to wait is to retry after a pause. */
      rc = pause_backoff(deadline, &step);
      if (rc < 0)
        return rc;
      continue;
    }
    return -err;
  }
  rc = wait_fd(s->fd, POLLOUT, deadline);
  if (rc < 0)
    return rc;
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
    return sk__err();
  return soerr != 0 ? -soerr : 0;
}

/* ---- stream and datagram I/O ---- */

/* What the SK_MSG_* flags become for the kernel. */
static int msg_flags_to_sys(unsigned flags) {
  int sys = 0;
  if (flags & SK_MSG_PEEK)
    sys |= MSG_PEEK;
  if (flags & SK_MSG_OOB)
    sys |= MSG_OOB;
  if (flags & SK_MSG_DONTROUTE)
    sys |= MSG_DONTROUTE;
  return sys;
}

/* Urgent data exists only in TCP. */
static int check_oob(const sk_socket *s) {
  if ((s->family != AF_INET && s->family != AF_INET6) || s->type != SOCK_STREAM)
    return -EOPNOTSUPP;
  return 0;
}

/* Checks an iovec array from the caller and returns its total length in
 * *total: iovcnt 1..IOV_MAX, no NULL base with a length, total at most
 * SSIZE_MAX. */
static int iov_total(const struct iovec *iov, int iovcnt, size_t *total) {
  if (iov == NULL || iovcnt < 1 || iovcnt > IOV_MAX)
    return -EINVAL;
  size_t sum = 0;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_base == NULL && iov[i].iov_len > 0)
      return -EINVAL;
    if (iov[i].iov_len > (size_t)SSIZE_MAX - sum)
      return -EINVAL;
    sum += iov[i].iov_len;
  }
  *total = sum;
  return 0;
}

/* A position inside an iovec array that a stream transfer works through. */
struct iov_pos {
  const struct iovec *iov;
  int cnt;
  int i;      /* current element */
  size_t off; /* bytes of it already done */
};

/* How many elements one system call of a stream transfer gets at most; the
 * loop goes on with the rest. */
#define IOV_WINDOW 64

/* Fills win with the next elements after p, at most limit bytes in all.
 * Returns the number of elements filled. */
static int iov_window(const struct iov_pos *p, struct iovec *win,
                      size_t limit) {
  int n = 0;
  size_t off = p->off;
  for (int i = p->i; i < p->cnt && n < IOV_WINDOW && limit > 0; i++) {
    size_t len = p->iov[i].iov_len - off;
    if (len > limit)
      len = limit;
    if (len > 0) {
      win[n].iov_base = (char *)p->iov[i].iov_base + off;
      win[n].iov_len = len;
      n++;
      limit -= len;
    }
    off = 0;
  }
  return n;
}

static void iov_advance(struct iov_pos *p, size_t n) {
  while (p->i < p->cnt) {
    size_t left = p->iov[p->i].iov_len - p->off;
    if (n < left) {
      p->off += n;
      return;
    }
    n -= left;
    p->i++;
    p->off = 0;
  }
}

/* Sends one datagram (or one send call's worth on a stream), waiting for
 * room until the deadline. sa may be NULL on a connected socket. */
static ssize_t send_one(const sk_socket *s, const struct iovec *iov, int iovcnt,
                        const struct sockaddr *sa, socklen_t salen,
                        int sysflags, uint64_t deadline) {
  int step = 1;
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_name = (void *)sa;
  m.msg_namelen = sa != NULL ? salen : 0;
  /* sendmsg() only reads the array; msghdr simply has no const. */
  m.msg_iov = (struct iovec *)iov;
  m.msg_iovlen = (size_t)iovcnt;
  for (;;) {
    ssize_t n = sendmsg(s->fd, &m, sysflags | MSG_NOSIGNAL);
    if (n >= 0)
      return n;
    int err = errno;
    if (err == EINTR)
      continue;
    if (!is_again(err))
      return -err;
    int rc = wait_fd(s->fd, POLLOUT, deadline);
    if (rc < 0)
      return rc;
    if (s->family == AF_UNIX && s->type == SOCK_DGRAM && sa != NULL) {
      /* An unconnected Unix datagram socket polls writable even when the
       * receiver's queue is full, so poll alone would spin; pause with a
       * growing backoff before the next attempt. */
      rc = pause_backoff(deadline, &step);
      if (rc < 0)
        return rc;
    }
  }
}

/* Sends the next want bytes after p on a stream, waiting for room until the
 * deadline; adds what the kernel took to *done. Returns 0 or a negative
 * errno. */
static int send_stream(const sk_socket *s, struct iov_pos *p, size_t want,
                       int sysflags, size_t *done, uint64_t deadline) {
  while (want > 0) {
    struct iovec win[IOV_WINDOW];
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = win;
    m.msg_iovlen = (size_t)iov_window(p, win, want);
    ssize_t n = sendmsg(s->fd, &m, sysflags | MSG_NOSIGNAL);
    if (n > 0) {
      iov_advance(p, (size_t)n);
      want -= (size_t)n;
      *done += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    /* EINPROGRESS: a fast-open connect (TCP_FASTOPEN_CONNECT) sent its SYN
     * without data; the connection is writable once established. */
    if (n < 0 && !is_again(errno) && errno != EINPROGRESS)
      return sk__err();
    int rc = wait_fd(s->fd, POLLOUT, deadline);
    if (rc < 0)
      return rc;
  }
  return 0;
}

int sk_socket_sendv(sk_socket *s, const struct iovec *iov, int iovcnt,
                    unsigned flags, size_t *sent, int timeout_ms) {
  size_t total = 0, done = 0;
  if (sent != NULL)
    *sent = 0;
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if ((rc = iov_total(iov, iovcnt, &total)) < 0)
    return rc;
  if (flags & ~(unsigned)(SK_MSG_OOB | SK_MSG_DONTROUTE))
    return -EINVAL;
  if ((flags & SK_MSG_OOB) && (rc = check_oob(s)) < 0)
    return rc;
  if ((flags & SK_MSG_OOB) && total == 0)
    return -EINVAL;
  int sys = msg_flags_to_sys(flags);
  uint64_t deadline = deadline_after(timeout_ms);
  if (s->type == SOCK_DGRAM) {
    ssize_t n = send_one(s, iov, iovcnt, NULL, 0, sys, deadline);
    if (n < 0)
      return (int)n;
    if (sent != NULL)
      *sent = total;
    return 0;
  }
  struct iov_pos p = {iov, iovcnt, 0, 0};
  if (flags & SK_MSG_OOB) {
    /* Every send with MSG_OOB moves the urgent pointer to its own last
     * byte, so only the very last byte of the buffer goes with it. */
    rc = send_stream(s, &p, total - 1, sys & ~MSG_OOB, &done, deadline);
    if (rc == 0)
      rc = send_stream(s, &p, 1, sys, &done, deadline);
  } else {
    rc = send_stream(s, &p, total, sys, &done, deadline);
  }
  if (sent != NULL)
    *sent = done;
  return rc;
}

int sk_socket_send_flags(sk_socket *s, const void *buf, size_t len,
                         unsigned flags, size_t *sent, int timeout_ms) {
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  return sk_socket_sendv(s, &iov, 1, flags, sent, timeout_ms);
}

int sk_socket_send(sk_socket *s, const void *buf, size_t len, int timeout_ms) {
  return sk_socket_send_flags(s, buf, len, 0, NULL, timeout_ms);
}

int sk_socket_send_all(sk_socket *s, const void *buf, size_t len, size_t *sent,
                       int timeout_ms) {
  return sk_socket_send_flags(s, buf, len, 0, sent, timeout_ms);
}

/* What one recvmsg() call returned besides the data. */
struct recv_meta {
  struct sockaddr_storage from;
  socklen_t fromlen;
  int flags;      /* msg_flags */
  sk_endpoint to; /* from IP_PKTINFO / IPV6_PKTINFO; len 0 if none */
  unsigned ifindex;
};

/* One recvmsg() with waiting, into iov[iovcnt] with the kernel flags
 * sysflags (MSG_PEEK). On a datagram socket MSG_TRUNC makes the kernel
 * return the datagram's real length even when it did not fit; on a stream
 * socket that flag would discard data, so it is not used there. r may be
 * NULL. Returns the length (possibly more than the room for a truncated
 * datagram), 0 at the end of a stream, or a negative errno. */
static ssize_t recv_msg(const sk_socket *s, const struct iovec *iov, int iovcnt,
                        int sysflags, struct recv_meta *r, int want_pktinfo,
                        uint64_t deadline) {
  union {
    char buf[CMSG_SPACE(sizeof(struct in_pktinfo)) +
             CMSG_SPACE(sizeof(struct in6_pktinfo))];
    struct cmsghdr align;
  } ctl;
  struct recv_meta unused;
  if (r == NULL)
    r = &unused;
  if (s->type == SOCK_DGRAM)
    sysflags |= MSG_TRUNC;
  memset(r, 0, sizeof *r);
  for (;;) {
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_name = &r->from;
    m.msg_namelen = sizeof r->from;
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)iovcnt;
    if (want_pktinfo) {
      m.msg_control = ctl.buf;
      m.msg_controllen = sizeof ctl.buf;
    }
    ssize_t n = recvmsg(s->fd, &m, sysflags);
    if (n >= 0) {
      r->fromlen = m.msg_namelen;
      r->flags = m.msg_flags;
      /* The control message carries only the address; the port it was
       * sent to is the one this socket is bound to. */
      if (want_pktinfo && m.msg_controllen > 0)
        sk__dgram_dest(&m, ntohs(local_port(s->fd)), &r->to, &r->ifindex);
      return n;
    }
    int err = errno;
    if (err == EINTR)
      continue;
    if (!is_again(err))
      return -err;
    int rc = wait_fd(s->fd, POLLIN, deadline);
    if (rc < 0)
      return rc;
  }
}

/* Receives on a stream socket: what is there, 0 at end of stream. */
static ssize_t recv_stream(const sk_socket *s, void *buf, size_t len,
                           uint64_t deadline) {
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  return recv_msg(s, &iov, 1, 0, NULL, 0, deadline);
}

/* Receives the urgent byte of a TCP stream. The kernel answers EINVAL while
 * no urgent data is announced (or it was read already) and EAGAIN while it
 * is announced but not here yet; both wait for POLLPRI, which the kernel
 * raises when the byte can be read. A peer that ends its side first ends
 * the wait: 0, like the end of the stream. */
static ssize_t recv_oob(const sk_socket *s, const struct iovec *iov, int iovcnt,
                        int sysflags, uint64_t deadline) {
  int inline_on = 0;
  socklen_t len = sizeof inline_on;
  if (getsockopt(s->fd, SOL_SOCKET, SO_OOBINLINE, &inline_on, &len) < 0)
    return sk__err();
  if (inline_on)
    return -EINVAL;
  int signalled = 0;
  for (;;) {
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)iovcnt;
    ssize_t n = recvmsg(s->fd, &m, sysflags | MSG_OOB);
    if (n >= 0)
      return n;
    int err = errno;
    if (err == EINTR)
      continue;
    /* POLLPRI said the byte was there and it still is not: do not spin. */
    if ((err != EINVAL && !is_again(err)) || (err == EINVAL && signalled))
      return -err;
    int rc = wait_fd(s->fd, POLLPRI | POLLRDHUP, deadline);
    if (rc < 0)
      return rc;
    signalled = (rc & POLLPRI) != 0;
    if (signalled)
      continue;
    int soerr = 0;
    len = sizeof soerr;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
      return sk__err();
    return soerr != 0 ? -soerr : 0;
  }
}

/* SK_MSG_WAITALL on a stream: fills the whole iovec array unless the
 * stream ends or fails first, when it returns what arrived (if anything
 * did; the next call reports the end or the error). */
static ssize_t recv_waitall(const sk_socket *s, const struct iovec *iov,
                            int iovcnt, size_t total, uint64_t deadline) {
  struct iov_pos p = {iov, iovcnt, 0, 0};
  size_t done = 0;
  while (done < total) {
    struct iovec win[IOV_WINDOW];
    int cnt = iov_window(&p, win, total - done);
    ssize_t n = recv_msg(s, win, cnt, 0, NULL, 0, deadline);
    if (n <= 0)
      return done > 0 ? (ssize_t)done : n;
    iov_advance(&p, (size_t)n);
    done += (size_t)n;
  }
  return (ssize_t)done;
}

ssize_t sk_socket_recvv(sk_socket *s, const struct iovec *iov, int iovcnt,
                        unsigned flags, int timeout_ms) {
  size_t total = 0;
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if ((rc = iov_total(iov, iovcnt, &total)) < 0)
    return rc;
  const unsigned known =
      SK_MSG_PEEK | SK_MSG_OOB | SK_MSG_WAITALL | SK_MSG_TRUNC;
  if (flags & ~known)
    return -EINVAL;
  /* Peeking cannot wait for more than is there: it would spin on data
   * that is ready but never consumed. */
  if ((flags & SK_MSG_WAITALL) && (flags & (SK_MSG_PEEK | SK_MSG_OOB)))
    return -EINVAL;
  if ((flags & SK_MSG_OOB) && (rc = check_oob(s)) < 0)
    return rc;
  uint64_t deadline = deadline_after(timeout_ms);
  int sys = msg_flags_to_sys(flags);
  if (s->type == SOCK_DGRAM) {
    if (flags & SK_MSG_WAITALL)
      return -EINVAL;
    struct recv_meta r;
    ssize_t n = recv_msg(s, iov, iovcnt, sys, &r, 0, deadline);
    if (n >= 0 && (r.flags & MSG_TRUNC) && !(flags & SK_MSG_TRUNC))
      return -EMSGSIZE;
    return n;
  }
  /* On a stream a zero-length read would return 0, which means end of
   * stream; refuse it rather than report a false EOF. */
  if (total == 0 || (flags & SK_MSG_TRUNC))
    return -EINVAL;
  if (flags & SK_MSG_OOB)
    return recv_oob(s, iov, iovcnt, sys, deadline);
  if (flags & SK_MSG_WAITALL)
    return recv_waitall(s, iov, iovcnt, total, deadline);
  return recv_msg(s, iov, iovcnt, sys, NULL, 0, deadline);
}

ssize_t sk_socket_recv_flags(sk_socket *s, void *buf, size_t len,
                             unsigned flags, int timeout_ms) {
  if (len > SSIZE_MAX)
    len = SSIZE_MAX;
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  return sk_socket_recvv(s, &iov, 1, flags, timeout_ms);
}

ssize_t sk_socket_recv(sk_socket *s, void *buf, size_t len, int timeout_ms) {
  return sk_socket_recv_flags(s, buf, len, 0, timeout_ms);
}

static ssize_t recvfrom_deadline(sk_socket *s, void *buf, size_t len,
                                 sk_endpoint *from, uint64_t deadline) {
  struct recv_meta r;
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  ssize_t n = recv_msg(s, &iov, 1, 0, &r, 0, deadline);
  if (n < 0)
    return n;
  if (from != NULL)
    endpoint_from(from, &r.from, r.fromlen);
  if (r.flags & MSG_TRUNC)
    return -EMSGSIZE;
  return n;
}

int sk_socket_at_mark(const sk_socket *s) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  int mark = 0;
  if (ioctl(s->fd, SIOCATMARK, &mark) < 0)
    return sk__err();
  return mark != 0;
}

ssize_t sk_socket_recv_all(sk_socket *s, void *buf, size_t len, size_t *got,
                           int timeout_ms) {
  if (got != NULL)
    *got = 0;
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if ((buf == NULL && len > 0) || len > SSIZE_MAX)
    return -EINVAL;
  uint64_t deadline = deadline_after(timeout_ms);
  char *p = buf;
  size_t done = 0;
  while (done < len) {
    ssize_t n;
    if (s->type == SOCK_DGRAM)
      n = recvfrom_deadline(s, p + done, len - done, NULL, deadline);
    else
      n = recv_stream(s, p + done, len - done, deadline);
    if (n < 0)
      return n;
    if (n == 0) {
      /* A zero-length datagram carries no bytes and ends nothing. */
      if (s->type == SOCK_DGRAM)
        continue;
      return SK_EOF;
    }
    done += (size_t)n;
    if (got != NULL)
      *got = done;
  }
  return (ssize_t)len;
}

ssize_t sk_socket_sendto(sk_socket *s, const void *buf, size_t len,
                         const sk_endpoint *dst, int timeout_ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (buf == NULL && len > 0)
    return -EINVAL;
  uint64_t deadline = deadline_after(timeout_ms);
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  if (dst == NULL)
    return send_one(s, &iov, 1, NULL, 0, 0, deadline);
  sk_endpoint addr;
  rc = prepare_addr(s, dst, &addr);
  if (rc < 0)
    return rc;
  return send_one(s, &iov, 1, &addr.u.sa, addr.len, 0, deadline);
}

ssize_t sk_socket_recvfrom(sk_socket *s, void *buf, size_t len,
                           sk_endpoint *from, int timeout_ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if ((buf == NULL && len > 0) || len > SSIZE_MAX)
    return -EINVAL;
  return recvfrom_deadline(s, buf, len, from, deadline_after(timeout_ms));
}

ssize_t sk_socket_recvmsg(sk_socket *s, void *buf, size_t len,
                          sk_dgram_info *info, int timeout_ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if ((buf == NULL && len > 0) || len > SSIZE_MAX)
    return -EINVAL;
  if (info != NULL)
    memset(info, 0, sizeof *info);
  struct recv_meta r;
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  ssize_t n =
      recv_msg(s, &iov, 1, 0, &r, info != NULL, deadline_after(timeout_ms));
  if (n < 0)
    return n;
  size_t stored = (size_t)n > len ? len : (size_t)n;
  if (info != NULL) {
    endpoint_from(&info->from, &r.from, r.fromlen);
    info->full_len = (size_t)n;
    info->truncated = (r.flags & MSG_TRUNC) != 0;
    info->to = r.to;
    info->ifindex = r.ifindex;
  }
  return (ssize_t)stored;
}

int sk_socket_shutdown(sk_socket *s, int how) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  int sys;
  switch (how) {
  case SK_SHUT_RD:
    sys = SHUT_RD;
    break;
  case SK_SHUT_WR:
    sys = SHUT_WR;
    break;
  case SK_SHUT_RDWR:
    sys = SHUT_RDWR;
    break;
  default:
    return -EINVAL;
  }
  if (shutdown(s->fd, sys) < 0)
    return sk__err();
  return 0;
}

/* ---- closing ---- */

/* Sends FIN and reads until the peer's FIN, so that nothing the peer sent
 * is left unread when the descriptor is closed: closing with unread data
 * makes the kernel answer with RST, and the peer could then lose the tail
 * of what we sent. */
static int finish_stream(int fd, uint64_t deadline) {
  if (shutdown(fd, SHUT_WR) < 0) {
    /* ENOTCONN: a listening or never-connected socket, or a connection
     * that is already gone; there is no stream to finish. */
    return errno == ENOTCONN ? 0 : sk__err();
  }
  char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0)
      return 0;
    if (n > 0)
      continue;
    int err = errno;
    if (err == EINTR)
      continue;
    if (!is_again(err))
      return -err;
    int rc = wait_fd(fd, POLLIN, deadline);
    if (rc == -ETIMEDOUT) {
      /* Discard what did arrive, so at least that cannot cause a reset. */
      sk__drain_fd(fd, (size_t)1 << 22);
      return rc;
    }
    if (rc < 0)
      return rc;
  }
}

int sk_socket_close(sk_socket *s, int timeout_ms) {
  if (s == NULL)
    return -EINVAL;
  if (s->fd < 0)
    return 0;
  int fd = s->fd;
  s->fd = -1;
  int rc = 0;
  /* linger(on, 0) asks for a reset at once (sk_opt_set_linger): no FIN,
   * no wait for the peer. */
  struct linger lg = {0, 0};
  socklen_t len = sizeof lg;
  int reset = getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 &&
              lg.l_onoff && lg.l_linger == 0;
  if (s->type == SOCK_STREAM && !reset)
    rc = finish_stream(fd, deadline_after(timeout_ms));
  sk__close_fd(fd);
  return rc;
}

int sk_socket_abort(sk_socket *s) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  /* Linger on with a zero timeout turns close() into an immediate RST. It
   * means nothing for Unix or datagram sockets, so a failure here is no
   * reason not to close. */
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  (void)setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  sk__close_fd(s->fd);
  s->fd = -1;
  return 0;
}

/* ---- information ---- */

/* getsockname and getpeername share a signature; one body serves both. */
static int name_of(const sk_socket *s, sk_endpoint *ep,
                   int (*get)(int, struct sockaddr *, socklen_t *)) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (ep == NULL)
    return -EINVAL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (get(s->fd, (struct sockaddr *)&ss, &len) < 0)
    return sk__err();
  endpoint_from(ep, &ss, len);
  return 0;
}

int sk_socket_local(const sk_socket *s, sk_endpoint *ep) {
  return name_of(s, ep, getsockname);
}

int sk_socket_remote(const sk_socket *s, sk_endpoint *ep) {
  return name_of(s, ep, getpeername);
}

int sk_socket_available(const sk_socket *s) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  int n = 0;
  if (ioctl(s->fd, FIONREAD, &n) < 0)
    return sk__err();
  return n;
}

/* SK_POLL_* events wanted, as poll() events; -1 for unknown bits. */
static int poll_events_to_sys(int events) {
  if (events & ~(SK_POLL_READ | SK_POLL_WRITE | SK_POLL_ERROR))
    return -1;
  int want = 0;
  if (events & SK_POLL_READ)
    want |= POLLIN;
  if (events & SK_POLL_WRITE)
    want |= POLLOUT;
  return want;
}

static int poll_revents_from_sys(int revents) {
  int ready = 0;
  if (revents & POLLIN)
    ready |= SK_POLL_READ;
  if (revents & POLLOUT)
    ready |= SK_POLL_WRITE;
  if (revents & (POLLERR | POLLHUP | POLLNVAL))
    ready |= SK_POLL_ERROR;
  return ready;
}

int sk_socket_poll(const sk_socket *s, int events, int timeout_ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  int want = poll_events_to_sys(events);
  if (want < 0)
    return -EINVAL;
  rc = wait_fd(s->fd, (short)want, deadline_after(timeout_ms));
  if (rc == -ETIMEDOUT)
    return 0;
  if (rc < 0)
    return rc;
  return poll_revents_from_sys(rc);
}

/* Sets up to this many entries use the stack; larger ones allocate. */
#define POLL_SET_STACK 32

int sk_socket_poll_set(sk_pollset_entry *entries, size_t n, int timeout_ms) {
  if (entries == NULL && n > 0)
    return -EINVAL;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      n > rl.rlim_cur)
    return -EINVAL;
  struct pollfd stack[POLL_SET_STACK];
  struct pollfd *pfds = stack;
  for (size_t i = 0; i < n; i++) {
    const sk_socket *s = entries[i].sock;
    entries[i].revents = 0;
    if (poll_events_to_sys(entries[i].events) < 0)
      return -EINVAL;
    if (s != NULL && s->fd < 0)
      return -EBADF;
  }
  if (n > POLL_SET_STACK) {
    pfds = calloc(n, sizeof *pfds);
    if (pfds == NULL)
      return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    const sk_socket *s = entries[i].sock;
    /* poll() skips a negative descriptor, which is what an entry without a
     * socket wants. */
    pfds[i].fd = s != NULL ? s->fd : -1;
    pfds[i].events = (short)poll_events_to_sys(entries[i].events);
    pfds[i].revents = 0;
  }
  int rc = poll_deadline(pfds, (nfds_t)n, deadline_after(timeout_ms));
  if (rc == -ETIMEDOUT)
    rc = 0;
  if (rc > 0) {
    rc = 0;
    for (size_t i = 0; i < n; i++) {
      entries[i].revents = poll_revents_from_sys(pfds[i].revents);
      rc += entries[i].revents != 0;
    }
  }
  if (pfds != stack)
    free(pfds);
  return rc;
}

int sk_socket_is_connected(const sk_socket *s) {
  sk_endpoint ep;
  int rc = sk_socket_remote(s, &ep);
  if (rc == -ENOTCONN)
    return 0;
  return rc < 0 ? rc : 1;
}

int sk_socket_is_bound(const sk_socket *s) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockname(s->fd, (struct sockaddr *)&ss, &len) < 0)
    return sk__err();
  if (ss.ss_family == AF_UNIX)
    /* An unbound Unix socket's name is the family alone. */
    return len > sizeof(sa_family_t);
  return local_port(s->fd) != 0;
}

/* ---- sendfile ---- */

int sk_socket_sendfile(sk_socket *s, int fd, off_t *offset, size_t len,
                       int timeout_ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (fd < 0)
    return -EBADF;
  uint64_t deadline = deadline_after(timeout_ms);

  struct sk__sigpipe sp;
  sk__sigpipe_block(&sp);

  rc = 0;
  while (len > 0) {
    size_t chunk = len > SK__SENDFILE_CHUNK ? SK__SENDFILE_CHUNK : len;
    ssize_t n = sendfile(s->fd, fd, offset, chunk);
    if (n > 0) {
      len -= (size_t)n;
      continue;
    }
    if (n == 0) {
      /* The file ended before len bytes were sent. */
      rc = SK_EOF;
      break;
    }
    int err = errno;
    if (err == EINTR)
      continue;
    if (!is_again(err)) {
      rc = -err;
      break;
    }
    rc = wait_fd(s->fd, POLLOUT, deadline);
    if (rc < 0)
      break;
    rc = 0;
  }

  sk__sigpipe_unblock(&sp, rc == -EPIPE);
  return rc;
}

/* sendfile(2) has no MSG_NOSIGNAL, and writing to a stream the peer has
 * closed raises SIGPIPE. Block it for this thread while we send, and if the
 * send failed with EPIPE, take the signal we caused off the pending set
 * before unblocking, so the process never sees it. A SIGPIPE that was
 * already pending belongs to someone else and is left alone. */
void sk__sigpipe_block(struct sk__sigpipe *sp) {
  sigset_t pending;
  sigemptyset(&sp->pipe_set);
  sigaddset(&sp->pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sp->pipe_set, &sp->old_set);
  sigemptyset(&pending);
  sigpending(&pending);
  sp->was_pending = sigismember(&pending, SIGPIPE) == 1;
}

void sk__sigpipe_unblock(struct sk__sigpipe *sp, int got_epipe) {
  if (got_epipe && !sp->was_pending) {
    const struct timespec zero = {0, 0};
    while (sigtimedwait(&sp->pipe_set, NULL, &zero) < 0 && errno == EINTR)
      ;
  }
  pthread_sigmask(SIG_SETMASK, &sp->old_set, NULL);
}

/* ---- text helpers ---- */

int sk_socket_listen_text(sk_socket *s, const char *addr, int backlog) {
  if (s == NULL || addr == NULL)
    return -EINVAL;
  *s = (sk_socket)SK_SOCKET_INIT;
  sk_endpoint eps[SK_CONNECT_TEXT_MAX];
  int n = sk_endpoint_resolve(addr, AF_UNSPEC, SOCK_STREAM, eps,
                              SK_CONNECT_TEXT_MAX);
  if (n < 0)
    return n;
  int rc = -EADDRNOTAVAIL;
  for (int i = 0; i < n; i++) {
    sk_socket tmp;
    int family = eps[i].u.sa.sa_family;
    rc = sk_socket_open(&tmp, family, SOCK_STREAM, 0);
    if (rc < 0)
      continue;
    if (family != AF_UNIX) {
      /* Lets a restarted server bind while old connections sit in
       * TIME_WAIT; it never allows two listeners on one port. */
      int on = 1;
      if (setsockopt(tmp.fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
        rc = sk__err();
    }
    if (rc == 0)
      rc = sk_socket_bind(&tmp, &eps[i]);
    if (rc == 0)
      rc = sk_socket_listen(&tmp, backlog);
    if (rc == 0) {
      *s = tmp;
      return 0;
    }
    sk__close_fd(tmp.fd);
  }
  return rc;
}

int sk_socket_connect_text(sk_socket *s, const char *addr, int type,
                           int timeout_ms) {
  if (s == NULL || addr == NULL)
    return -EINVAL;
  *s = (sk_socket)SK_SOCKET_INIT;
  if (type == 0)
    type = SOCK_STREAM;
  if (type != SOCK_STREAM && type != SOCK_DGRAM)
    return -EINVAL;
  uint64_t deadline = deadline_after(timeout_ms);
  sk_endpoint eps[SK_CONNECT_TEXT_MAX];
  int n = sk_endpoint_resolve(addr, AF_UNSPEC, type, eps, SK_CONNECT_TEXT_MAX);
  if (n < 0)
    return n;
  /* TCP races the addresses (Happy Eyeballs, connect.c), so a black-holed
   * first address costs one attempt delay, not the whole timeout. Unix
   * sockets (one address, waited for when the backlog is full) and
   * datagrams (connect does not wait) go one by one below. */
  if (type == SOCK_STREAM && eps[0].u.sa.sa_family != AF_UNIX)
    return sk_socket_connect_list(s, eps, (size_t)n, deadline_left(deadline));
  int rc = -EADDRNOTAVAIL;
  for (int i = 0; i < n; i++) {
    int left = deadline_left(deadline);
    if (left == 0 && i > 0)
      return -ETIMEDOUT;
    /* A socket that failed to connect cannot be reused portably, so every
     * attempt gets a fresh one. */
    sk_socket tmp;
    rc = sk_socket_open(&tmp, eps[i].u.sa.sa_family, type, 0);
    if (rc < 0)
      continue;
    rc = sk_socket_connect(&tmp, &eps[i], left);
    if (rc == 0) {
      *s = tmp;
      return 0;
    }
    sk__close_fd(tmp.fd);
  }
  return rc;
}

int sk_socket_bind_text(sk_socket *s, const char *addr) {
  if (s == NULL || addr == NULL)
    return -EINVAL;
  *s = (sk_socket)SK_SOCKET_INIT;
  sk_endpoint eps[SK_CONNECT_TEXT_MAX];
  int n = sk_endpoint_resolve(addr, AF_UNSPEC, SOCK_DGRAM, eps,
                              SK_CONNECT_TEXT_MAX);
  if (n < 0)
    return n;
  int rc = -EADDRNOTAVAIL;
  for (int i = 0; i < n; i++) {
    sk_socket tmp;
    rc = sk_socket_open(&tmp, eps[i].u.sa.sa_family, SOCK_DGRAM, 0);
    if (rc < 0)
      continue;
    rc = sk_socket_bind(&tmp, &eps[i]);
    if (rc == 0) {
      *s = tmp;
      return 0;
    }
    sk__close_fd(tmp.fd);
  }
  return rc;
}
