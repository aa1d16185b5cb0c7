/* Async datagrams. A datagram is sent at once when the kernel takes it;
 * only on EAGAIN/ENOBUFS is it copied into a bounded queue. Receiving reads
 * a bounded batch per readiness event into the loop's shared buffer. */
#include "internal.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define UDP_RECV_BATCH        64
#define UDP_QUEUE_MAX_DEFAULT (1024u * 1024u)

static void udp_io_cb(sk_loop *loop, struct sk__io *w, unsigned revents);

enum { UDP_READING = 1u << 0 };

void sk__dgram_dest(const struct msghdr *msg, uint16_t port, sk_endpoint *to,
                    unsigned *ifindex) {
  struct cmsghdr *c;
  memset(to, 0, sizeof(*to));
  if (ifindex != NULL)
    *ifindex = 0;
  for (c = CMSG_FIRSTHDR((struct msghdr *)msg); c != NULL;
       c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof(pi));
      /* ipi_addr is the destination in the packet header, what the sender
       * addressed (ipi_spec_dst would be the local source of a reply). */
      to->u.in4.sin_family = AF_INET;
      to->u.in4.sin_addr = pi.ipi_addr;
      to->u.in4.sin_port = htons(port);
      to->len = sizeof(to->u.in4);
      if (ifindex != NULL)
        *ifindex = (unsigned)pi.ipi_ifindex;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof(pi));
      to->u.in6.sin6_family = AF_INET6;
      to->u.in6.sin6_addr = pi.ipi6_addr;
      to->u.in6.sin6_port = htons(port);
      if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr) ||
          IN6_IS_ADDR_MC_LINKLOCAL(&pi.ipi6_addr))
        to->u.in6.sin6_scope_id = pi.ipi6_ifindex;
      to->len = sizeof(to->u.in6);
      sk_endpoint_normalize(to);
      if (ifindex != NULL)
        *ifindex = pi.ipi6_ifindex;
    }
  }
}

static void udp_update(sk_udp *u) {
  unsigned ev = 0;
  if (sk_is_closing(&u->h))
    return;
  if (u->uflags & UDP_READING)
    ev |= SK__IO_READ;
  if (u->wq_head != NULL)
    ev |= SK__IO_WRITE;
  if (u->io.fd >= 0)
    sk__io_set(u->h.loop, &u->io, ev);
  if (ev != 0)
    sk__handle_start(&u->h);
  else
    sk__handle_stop(&u->h);
}

int sk_udp_init(sk_loop *loop, sk_udp *u) {
  memset(u, 0, sizeof(*u));
  sk__handle_init(loop, &u->h, SK_HANDLE_UDP);
  u->sock.fd = -1;
  sk__io_init(&u->io, -1, udp_io_cb);
  u->wq_max = UDP_QUEUE_MAX_DEFAULT;
  u->lport = -1;
  return 0;
}

int sk_udp_open(sk_udp *u, int fd) {
  int rc;
  if (sk_is_closing(&u->h) || u->sock.fd >= 0)
    return -EBUSY;
  rc = sk__fd_prepare(fd);
  if (rc == 0)
    rc = sk__socket_from_fd(&u->sock, fd);
  if (rc != 0)
    return rc;
  if (u->sock.type != SOCK_DGRAM) {
    u->sock.fd = -1;
    return -EINVAL;
  }
  u->io.fd = fd;
  return 0;
}

int sk_udp_bind(sk_udp *u, const sk_endpoint *ep, unsigned flags) {
  unsigned sf = 0;
  int fd, rc, one = 1;
  if (sk_is_closing(&u->h) || u->sock.fd >= 0)
    return -EBUSY;
  if (flags & SK_LISTEN_V6ONLY)
    sf |= SK_SOCK_V6ONLY;
  if (flags & SK_LISTEN_DUALSTACK)
    sf |= SK_SOCK_DUALSTACK;
  fd = sk__socket_create(sk_endpoint_family(ep), SOCK_DGRAM, sf);
  if (fd < 0)
    return fd;
  if ((flags & SK_LISTEN_REUSEPORT) &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
    goto fail;
  if (bind(fd, &ep->u.sa, ep->len) < 0)
    goto fail;
  rc = sk__socket_from_fd(&u->sock, fd);
  if (rc != 0) {
    sk__close_fd(fd);
    return rc;
  }
  u->io.fd = fd;
  return 0;
fail:
  rc = sk__err();
  sk__close_fd(fd);
  return rc;
}

int sk_udp_connect(sk_udp *u, const sk_endpoint *peer) {
  int rc;
  if (sk_is_closing(&u->h))
    return -EBADF;
  if (u->sock.fd < 0) {
    int fd = sk__socket_create(sk_endpoint_family(peer), SOCK_DGRAM, 0);
    if (fd < 0)
      return fd;
    rc = sk__socket_from_fd(&u->sock, fd);
    if (rc != 0) {
      sk__close_fd(fd);
      return rc;
    }
    u->io.fd = fd;
  }
  if (connect(u->sock.fd, &peer->u.sa, peer->len) < 0)
    return sk__err();
  return 0;
}

/* ---- sending ---- */

static void udp_wreq_done(struct sk__pending *p) {
  struct sk__wreq *r = sk__container_of(p, struct sk__wreq, pend);
  sk_udp *u = r->handle;
  sk_udp_send_cb cb = (sk_udp_send_cb)r->cb;
  int status = r->status;
  void *arg = r->arg;
  sk__wreq_free(u->h.loop, r);
  cb(u, status, arg);
}

static void udp_complete(sk_udp *u, struct sk__wreq *r, int status) {
  if (r->cb == NULL) {
    sk__wreq_free(u->h.loop, r);
    return;
  }
  r->status = status;
  r->handle = u;
  sk__pending_add(u->h.loop, &r->pend, udp_wreq_done);
}

static ssize_t udp_sendto(sk_udp *u, const void *buf, size_t len,
                          const sk_endpoint *dst) {
  ssize_t n;
  do
    n = sendto(u->io.fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT,
               dst != NULL ? &dst->u.sa : NULL, dst != NULL ? dst->len : 0);
  while (n < 0 && errno == EINTR);
  return n < 0 ? sk__err() : n;
}

static int transient(ssize_t rc) {
  return rc == -EAGAIN || rc == -ENOBUFS;
}

int sk_udp_send(sk_udp *u, const void *buf, size_t len, const sk_endpoint *dst,
                sk_udp_send_cb cb, void *arg) {
  struct sk__wreq *r;
  ssize_t n = -EAGAIN;

  if (sk_is_closing(&u->h) || u->io.fd < 0)
    return -EBADF;
  if (u->wq_head == NULL) {
    n = udp_sendto(u, buf, len, dst);
    if (n < 0 && !transient(n))
      return (int)n;
  }
  if (n >= 0 && cb == NULL)
    return 0;
  r = sk__wreq_new(u->h.loop, n >= 0 ? 0 : len);
  if (r == NULL)
    return -ENOMEM;
  /* The cap counts memory, not payload: a queue of tiny datagrams costs
   * a request each. */
  if (n < 0 && u->wq_mem + sk__wreq_mem(r) > u->wq_max) {
    sk__wreq_free(u->h.loop, r);
    return -ENOBUFS;
  }
  r->kind = SK__WREQ_DGRAM;
  r->cb = (void (*)(void))cb;
  r->arg = arg;
  if (n >= 0) {
    udp_complete(u, r, 0);
    return 0;
  }
  memcpy(r->data, buf, len);
  r->len = len;
  if (dst != NULL)
    r->dst = *dst;
  r->next = NULL;
  if (u->wq_tail != NULL)
    u->wq_tail->next = r;
  else
    u->wq_head = r;
  u->wq_tail = r;
  u->wq_bytes += len;
  u->wq_mem += sk__wreq_mem(r);
  udp_update(u);
  return 0;
}

static void udp_do_write(sk_udp *u) {
  while (u->wq_head != NULL) {
    struct sk__wreq *r = u->wq_head;
    ssize_t n = udp_sendto(u, r->data, r->len, r->dst.len ? &r->dst : NULL);
    if (transient(n))
      break;
    u->wq_head = r->next;
    if (u->wq_head == NULL)
      u->wq_tail = NULL;
    u->wq_bytes -= r->len;
    u->wq_mem -= sk__wreq_mem(r);
    /* A datagram that fails is reported to its own callback only: other
     * datagrams to other peers are unaffected. */
    udp_complete(u, r, n < 0 ? (int)n : 0);
  }
  udp_update(u);
}

size_t sk_udp_send_queue_size(const sk_udp *u) {
  return u->wq_bytes;
}

/* ---- receiving ---- */

static void udp_do_read(sk_udp *u) {
  sk_loop *loop = u->h.loop;
  sk_endpoint local;

  if (u->lport < 0 && sk_socket_local(&u->sock, &local) == 0)
    u->lport = sk_endpoint_port(&local);
  for (int i = 0; i < UDP_RECV_BATCH; i++) {
    struct sockaddr_storage ss;
    union {
      struct cmsghdr align;
      unsigned char buf[SK__CMSG_SPACE];
    } ctl;
    struct iovec iov = {loop->rbuf, loop->rbuf_len};
    struct msghdr msg;
    sk_endpoint from, to;
    ssize_t n;

    if (!(u->uflags & UDP_READING) || sk_is_closing(&u->h))
      return;
    memset(&msg, 0, sizeof(msg));
    msg.msg_name = &ss;
    msg.msg_namelen = sizeof(ss);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    do
      n = recvmsg(u->io.fd, &msg, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      /* ICMP errors for earlier sends: reported, receiving goes on. */
      u->recv_cb(u, sk__err(), NULL, NULL, NULL, 0);
      continue;
    }
    memset(&from, 0, sizeof(from));
    if (msg.msg_namelen > 0)
      sk_endpoint_from_sockaddr(&from, (struct sockaddr *)&ss, msg.msg_namelen);
    sk__dgram_dest(&msg, (uint16_t)(u->lport < 0 ? 0 : u->lport), &to, NULL);
    u->recv_cb(u, n, loop->rbuf, &from, to.len ? &to : NULL,
               (msg.msg_flags & MSG_TRUNC) ? SK_UDP_TRUNCATED : 0);
  }
}

int sk_udp_recv_start(sk_udp *u, sk_udp_recv_cb cb) {
  if (sk_is_closing(&u->h) || u->io.fd < 0)
    return -EBADF;
  if (cb == NULL)
    return -EINVAL;
  u->recv_cb = cb;
  u->uflags |= UDP_READING;
  udp_update(u);
  return 0;
}

static void udp_rpend_cb(struct sk__pending *p) {
  sk_udp *u = sk__container_of(p, sk_udp, rpend);
  u->recv_cb(u, -ECANCELED, NULL, NULL, NULL, 0);
}

int sk_udp_recv_stop(sk_udp *u) {
  if (!(u->uflags & UDP_READING))
    return -EINVAL;
  u->uflags &= ~UDP_READING;
  udp_update(u);
  sk__pending_add(u->h.loop, &u->rpend, udp_rpend_cb);
  return 0;
}

static void udp_io_cb(sk_loop *loop, struct sk__io *w, unsigned revents) {
  sk_udp *u = sk__container_of(w, sk_udp, io);
  SK__UNUSED(loop);
  if (revents & SK__IO_READ)
    udp_do_read(u);
  if ((revents & SK__IO_WRITE) && u->wq_head != NULL && !sk_is_closing(&u->h))
    udp_do_write(u);
}

void sk__udp_close(sk_udp *u) {
  u->uflags &= ~UDP_READING;
  while (u->wq_head != NULL) {
    struct sk__wreq *r = u->wq_head;
    u->wq_head = r->next;
    udp_complete(u, r, -ECANCELED);
  }
  u->wq_tail = NULL;
  u->wq_bytes = 0;
  u->wq_mem = 0;
  if (u->io.fd >= 0) {
    sk__io_set(u->h.loop, &u->io, 0);
    sk__close_fd(u->io.fd);
    u->io.fd = -1;
    u->sock.fd = -1;
  }
}
