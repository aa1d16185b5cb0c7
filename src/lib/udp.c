/* Async datagrams. A datagram is sent at once when the kernel takes it;
 * only on EAGAIN/ENOBUFS is it copied into a bounded queue. Sends made
 * inside the socket's own receive callbacks (an echo's replies) are
 * gathered in that queue instead and leave together after the batch, with
 * sendmmsg(2) and UDP GSO. Receiving reads a bounded batch per readiness
 * event with recvmmsg(2) into the loop's shared slots, with UDP GRO on. */
#include "internal.h"

#include <netinet/in.h>
#include <limits.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Messages read per readiness event (fairness between sockets). */
#define UDP_RECV_BATCH 64
/* Messages per recvmmsg(2) call, and the loop's slots for them (8, 16 and
 * 32 measured the same in UDP echo; 16 keeps the slots at 1 MiB). */
#ifndef UDP_RECV_SLOTS
#define UDP_RECV_SLOTS 16
#endif
/* Room per slot: the largest datagram (65,507 bytes over IPv4, 65,527 over
 * IPv6), or a GRO train, which the kernel keeps under 64 KiB. */
#define UDP_SLOT_SIZE (64u * 1024u)
/* The largest UDP payload over IPv4; bigger sends are never deferred, and
 * the most bytes of one GSO message. */
#define UDP_MAX_PAYLOAD 65507u
/* Datagrams per sendmmsg(2) call, and replies gathered in one batch. */
#define UDP_SEND_BATCH 64
/* Datagrams per GSO message (the kernel takes up to 64 on every version
 * that has UDP_SEGMENT). */
#define UDP_GSO_SEGS          64
#define UDP_QUEUE_MAX_DEFAULT (1024u * 1024u)

static void udp_io_cb(sk_loop *loop, struct sk__io *w, unsigned revents);

enum {
  UDP_READING = 1u << 0,
  UDP_IN_RECV = 1u << 1,   /* inside the receive callbacks of a batch */
  UDP_NO_GSO = 1u << 2,    /* the kernel refused UDP_SEGMENT */
  UDP_GRO_TRIED = 1u << 3, /* UDP_GRO was asked for */
};

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
  if (u->wq.head != NULL)
    ev |= SK__IO_WRITE;
  if (u->sock.fd >= 0)
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
  sk__io_init(&u->io, &u->sock.fd, udp_io_cb);
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
  return 0;
}

int sk_udp_bind(sk_udp *u, const sk_endpoint *ep, unsigned flags) {
  int fd, rc, one = 1;
  if (sk_is_closing(&u->h) || u->sock.fd >= 0)
    return -EBUSY;
  fd = sk__socket_create(sk_endpoint_family(ep), SOCK_DGRAM,
                         sk__listen_sock_flags(flags));
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
  return 0;
fail:
  rc = sk__err();
  sk__close_fd(fd);
  return rc;
}

void sk__udp_unbind(sk_udp *u) {
  sk__io_set(u->h.loop, &u->io, 0); /* nothing is watched yet: a no-op */
  sk__close_fd(u->sock.fd);
  u->sock = (sk_socket)SK_SOCKET_INIT;
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
  }
  if (connect(u->sock.fd, &peer->u.sa, peer->len) < 0)
    return sk__err();
  return 0;
}

/* ---- sending ---- */

static ssize_t udp_sendto(sk_udp *u, const void *buf, size_t len,
                          const sk_endpoint *dst) {
  ssize_t n;
  do
    n = sendto(u->sock.fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT,
               dst != NULL ? &dst->u.sa : NULL, dst != NULL ? dst->len : 0);
  while (n < 0 && errno == EINTR);
  return n < 0 ? sk__err() : n;
}

static int transient(ssize_t rc) {
  return rc == -EAGAIN || rc == -ENOBUFS;
}

static int udp_inet(const sk_udp *u) {
  return u->sock.family == AF_INET || u->sock.family == AF_INET6;
}

/* Two queued datagrams go to the same destination. Byte equality: a false
 * "different" only costs a GSO opportunity. */
static int same_dst(const struct sk__wreq *a, const struct sk__wreq *b) {
  return a->dst.len == b->dst.len &&
         memcmp(&a->dst.u, &b->dst.u, a->dst.len) == 0;
}

/* Sends the queue, up to UDP_SEND_BATCH datagrams per sendmmsg(2). A run of
 * datagrams to one destination, all of one size but the last (which may be
 * shorter), leaves as one message with UDP_SEGMENT: the kernel cuts it into
 * the datagrams (GSO). Where the kernel refuses GSO (EIO: the route cannot
 * offload checksums; EOPNOTSUPP, ENOPROTOOPT: no support) it stays off for
 * the socket; after any other error (EINVAL: a segment over the path MTU,
 * say) that run is sent again datagram by datagram. */
static void udp_do_write(sk_udp *u) {
  size_t plain = 0; /* the first requests, sent without GSO */
  u->ndefer = 0;
  while (u->wq.head != NULL) {
    struct mmsghdr mm[UDP_SEND_BATCH];
    struct iovec iov[UDP_SEND_BATCH];
    union {
      struct cmsghdr align;
      unsigned char buf[CMSG_SPACE(sizeof(uint16_t))];
    } ctl[UDP_SEND_BATCH];
    int nseg[UDP_SEND_BATCH];
    int nmsg = 0, niov = 0, n, status = 0;
    struct sk__wreq *r = u->wq.head;
    int gso = udp_inet(u) && !(u->uflags & UDP_NO_GSO);

    while (r != NULL && niov < UDP_SEND_BATCH) {
      struct msghdr *m = &mm[nmsg].msg_hdr;
      struct sk__wreq *q = r;
      size_t total = 0;
      int k = 0;
      do {
        iov[niov + k].iov_base = q->data;
        iov[niov + k].iov_len = q->len;
        total += q->len;
        k++;
        q = q->next;
      } while (q != NULL && gso && (size_t)niov >= plain && r->len > 0 &&
               niov + k < UDP_SEND_BATCH && k < UDP_GSO_SEGS &&
               iov[niov + k - 1].iov_len == r->len && q->len > 0 &&
               q->len <= r->len && total + q->len <= UDP_MAX_PAYLOAD &&
               same_dst(q, r));
      memset(m, 0, sizeof(*m));
      if (r->dst.len > 0) {
        m->msg_name = &r->dst.u.sa;
        m->msg_namelen = r->dst.len;
      }
      m->msg_iov = &iov[niov];
      m->msg_iovlen = (size_t)k;
      if (k > 1) {
        uint16_t seg = (uint16_t)r->len;
        struct cmsghdr *c;
        m->msg_control = ctl[nmsg].buf;
        m->msg_controllen = sizeof(ctl[nmsg].buf);
        c = CMSG_FIRSTHDR(m);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(seg));
        memcpy(CMSG_DATA(c), &seg, sizeof(seg));
      }
      nseg[nmsg++] = k;
      niov += k;
      r = q;
    }
    do
      n = sendmmsg(u->sock.fd, mm, (unsigned)nmsg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      status = sk__err();
      if (transient(status))
        break;
      if (nseg[0] > 1) {
        /* Retried one by one, so every datagram gets its own status. */
        if (status == -EIO || status == -EOPNOTSUPP || status == -ENOPROTOOPT)
          u->uflags |= UDP_NO_GSO;
        plain = (size_t)nseg[0];
        continue;
      }
      /* The first datagram failed: reported to its own callback only,
       * the others (to other peers, maybe) go on. */
      n = 1;
    }
    for (int i = 0; i < n; i++)
      for (int j = 0; j < nseg[i]; j++) {
        r = u->wq.head;
        sk__wq_remove(&u->wq, NULL, r);
        sk__wq_complete(&u->h, r, status);
        plain -= plain > 0;
      }
  }
  udp_update(u);
}

/* A send from inside this socket's receive callback is gathered into the
 * queue and leaves with the others after the batch (udp_batch_end), unless
 * datagrams the kernel refused are queued already (then it waits behind
 * them, as any send). Returns 1 if deferred, 0 if not, or -ENOMEM. */
static int udp_defer(sk_udp *u, const void *buf, size_t len,
                     const sk_endpoint *dst, sk_udp_send_cb cb, void *arg) {
  struct sk__wreq *r;

  if (!(u->uflags & UDP_IN_RECV))
    return 0;
  if (len > UDP_MAX_PAYLOAD) {
    /* Sent at once, so that -EMSGSIZE is returned, after those before. */
    if (u->ndefer > 0)
      udp_do_write(u);
    return 0;
  }
  if (u->wq.head != NULL && u->ndefer == 0)
    return 0;
  r = sk__wreq_new(u->h.loop, len);
  if (r == NULL)
    return -ENOMEM;
  /* Bounded: a full batch, or one at the queue's memory cap, leaves now. */
  if (u->ndefer >= UDP_SEND_BATCH ||
      (u->ndefer > 0 && u->wq.mem + sk__wreq_mem(r) > u->wq_max))
    udp_do_write(u);
  if ((u->wq.head != NULL && u->ndefer == 0) ||
      u->wq.mem + sk__wreq_mem(r) > u->wq_max) {
    sk__wreq_free(u->h.loop, r);
    return 0;
  }
  r->kind = SK__WREQ_DGRAM;
  r->cb.udp = cb;
  r->arg = arg;
  memcpy(r->data, buf, len);
  r->len = len;
  if (dst != NULL)
    r->dst = *dst;
  sk__wq_push(&u->wq, r);
  u->ndefer++;
  return 1;
}

int sk_udp_send(sk_udp *u, const void *buf, size_t len, const sk_endpoint *dst,
                sk_udp_send_cb cb, void *arg) {
  struct sk__wreq *r;
  ssize_t n = -EAGAIN;
  int rc;

  if (sk_is_closing(&u->h) || u->sock.fd < 0)
    return -EBADF;
  rc = udp_defer(u, buf, len, dst, cb, arg);
  if (rc != 0)
    return rc < 0 ? rc : 0;
  if (u->wq.head == NULL) {
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
  if (n < 0 && u->wq.mem + sk__wreq_mem(r) > u->wq_max) {
    sk__wreq_free(u->h.loop, r);
    return -ENOBUFS;
  }
  r->kind = SK__WREQ_DGRAM;
  r->cb.udp = cb;
  r->arg = arg;
  if (n >= 0) {
    sk__wq_complete(&u->h, r, 0);
    return 0;
  }
  memcpy(r->data, buf, len);
  r->len = len;
  if (dst != NULL)
    r->dst = *dst;
  sk__wq_push(&u->wq, r);
  udp_update(u);
  return 0;
}

/* The end of a receive batch (or of sk_udp_send_batch): the datagrams
 * gathered during it leave. */
static void udp_batch_end(sk_udp *u) {
  u->uflags &= ~UDP_IN_RECV;
  if (u->ndefer > 0 && !sk_is_closing(&u->h))
    udp_do_write(u);
}

int sk_udp_send_batch(sk_udp *u, const struct iovec *dgrams, size_t n,
                      const sk_endpoint *dst) {
  unsigned inside = u->uflags & UDP_IN_RECV;
  size_t i;
  int rc = 0;

  if (n > INT_MAX)
    n = INT_MAX;
  u->uflags |= UDP_IN_RECV;
  for (i = 0; i < n; i++) {
    rc = sk_udp_send(u, dgrams[i].iov_base, dgrams[i].iov_len, dst, NULL, NULL);
    if (rc < 0)
      break;
  }
  if (!inside)
    udp_batch_end(u);
  return i > 0 ? (int)i : rc;
}

size_t sk_udp_send_queue_size(const sk_udp *u) {
  return u->wq.bytes;
}

void sk_udp_set_send_queue_max(sk_udp *u, size_t bytes) {
  u->wq_max = bytes;
}

/* ---- receiving ---- */

/* The loop's receive slots, shared by its UDP sockets (one reads at a
 * time): recvmmsg(2) fills up to UDP_RECV_SLOTS of them per call, each big
 * enough for the largest datagram or GRO train, so nothing is truncated
 * that the kernel could deliver whole. Allocated on the first UDP read;
 * pages a small datagram does not touch stay unbacked. */
struct udp_rbatch {
  struct mmsghdr mm[UDP_RECV_SLOTS];
  struct iovec iov[UDP_RECV_SLOTS];
  struct sockaddr_storage ss[UDP_RECV_SLOTS];
  union {
    struct cmsghdr align;
    unsigned char buf[SK__CMSG_SPACE];
  } ctl[UDP_RECV_SLOTS];
  unsigned char data[UDP_RECV_SLOTS][UDP_SLOT_SIZE];
};

/* A datagram taken from the kernel in a batch the user stopped receiving
 * in the middle of: kept, and delivered first when receiving restarts. */
struct sk__udp_held {
  struct sk__udp_held *next;
  sk_endpoint from, to;
  unsigned flags;
  size_t len;
  unsigned char data[];
};

static int udp_can_deliver(const sk_udp *u) {
  return (u->uflags & UDP_READING) && !sk_is_closing(&u->h);
}

static void udp_hold(sk_udp *u, const unsigned char *buf, size_t len,
                     const sk_endpoint *from, const sk_endpoint *to,
                     unsigned flags) {
  struct sk__udp_held *h = malloc(sizeof(*h) + len);
  if (h == NULL)
    return; /* lost, as the kernel loses a datagram it has no room for */
  h->next = NULL;
  h->from = *from;
  if (to != NULL)
    h->to = *to;
  else
    h->to.len = 0;
  h->flags = flags;
  h->len = len;
  memcpy(h->data, buf, len);
  if (u->held_tail != NULL)
    u->held_tail->next = h;
  else
    u->held = h;
  u->held_tail = h;
}

static void udp_free_held(sk_udp *u) {
  while (u->held != NULL) {
    struct sk__udp_held *h = u->held;
    u->held = h->next;
    free(h);
  }
  u->held_tail = NULL;
}

/* Hands one received message to the user, one callback per datagram: a GRO
 * train (seg > 0) is cut at its segment size. If the user stops receiving
 * on the way, the rest is held; if it closes, the rest is dropped, as the
 * kernel drops its own queue. */
static void udp_deliver(sk_udp *u, const unsigned char *buf, size_t len,
                        size_t seg, const sk_endpoint *from,
                        const sk_endpoint *to, unsigned flags) {
  size_t off = 0;
  do {
    size_t n = seg > 0 && len - off > seg ? seg : len - off;
    if (sk_is_closing(&u->h))
      return;
    if (u->uflags & UDP_READING)
      u->recv_cb(u, (ssize_t)n, buf + off, from, to, flags);
    else
      udp_hold(u, buf + off, n, from, to, flags);
    off += n;
  } while (off < len);
}

static void udp_deliver_held(sk_udp *u) {
  while (u->held != NULL && udp_can_deliver(u)) {
    struct sk__udp_held *h = u->held;
    u->held = h->next;
    if (u->held == NULL)
      u->held_tail = NULL;
    u->recv_cb(u, (ssize_t)h->len, h->data, &h->from,
               h->to.len > 0 ? &h->to : NULL, h->flags);
    free(h);
  }
}

/* The segment size of a GRO train, 0 for a single datagram. */
static size_t udp_gro_size(struct msghdr *msg) {
  struct cmsghdr *c;
  for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c))
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
        c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int seg;
      memcpy(&seg, CMSG_DATA(c), sizeof(seg));
      return seg > 0 ? (size_t)seg : 0;
    }
  return 0;
}

static void udp_do_read(sk_udp *u) {
  sk_loop *loop = u->h.loop;
  struct udp_rbatch *b = loop->udp_batch;
  sk_endpoint local;
  unsigned done = 0;

  if (u->lport < 0 && sk_socket_local(&u->sock, &local) == 0)
    u->lport = sk_endpoint_port(&local);
  if (b == NULL) {
    b = loop->udp_batch = malloc(sizeof(*b));
    if (b == NULL) {
      u->uflags &= ~UDP_READING;
      udp_update(u);
      u->recv_cb(u, -ENOMEM, NULL, NULL, NULL, 0);
      return;
    }
  }
  u->uflags |= UDP_IN_RECV;
  udp_deliver_held(u);
  /* At most UDP_RECV_BATCH messages per readiness event, so one busy socket
   * cannot starve the rest of the loop. */
  while (done < UDP_RECV_BATCH && u->held == NULL && udp_can_deliver(u)) {
    unsigned want = UDP_RECV_BATCH - done;
    int n;
    if (want > UDP_RECV_SLOTS)
      want = UDP_RECV_SLOTS;
    for (unsigned i = 0; i < want; i++) {
      struct msghdr *m = &b->mm[i].msg_hdr;
      b->iov[i].iov_base = b->data[i];
      b->iov[i].iov_len = UDP_SLOT_SIZE;
      memset(m, 0, sizeof(*m));
      m->msg_name = &b->ss[i];
      m->msg_namelen = sizeof(b->ss[i]);
      m->msg_iov = &b->iov[i];
      m->msg_iovlen = 1;
      m->msg_control = b->ctl[i].buf;
      m->msg_controllen = sizeof(b->ctl[i].buf);
    }
    do
      n = recvmmsg(u->sock.fd, b->mm, want, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      /* ICMP errors for earlier sends: reported, receiving goes on. */
      u->recv_cb(u, sk__err(), NULL, NULL, NULL, 0);
      done++;
      continue;
    }
    done += (unsigned)n;
    for (int i = 0; i < n && !sk_is_closing(&u->h); i++) {
      struct msghdr *m = &b->mm[i].msg_hdr;
      sk_endpoint from, to;
      memset(&from, 0, sizeof(from));
      if (m->msg_namelen > 0)
        sk_endpoint_from_sockaddr(&from, (struct sockaddr *)&b->ss[i],
                                  m->msg_namelen);
      sk__dgram_dest(m, (uint16_t)(u->lport < 0 ? 0 : u->lport), &to, NULL);
      udp_deliver(u, b->data[i], b->mm[i].msg_len, udp_gro_size(m), &from,
                  to.len ? &to : NULL,
                  (m->msg_flags & MSG_TRUNC) ? SK_UDP_TRUNCATED : 0);
    }
    if ((unsigned)n < want)
      break; /* the kernel's queue is empty: spare the EAGAIN call */
  }
  udp_batch_end(u);
}

/* Receiving restarted with datagrams held: they come first, from the loop
 * (never inside sk_udp_recv_start). */
static void udp_hpend_cb(struct sk__pending *p) {
  sk_udp *u = sk__container_of(p, sk_udp, hpend);
  if (sk_is_closing(&u->h))
    return;
  u->uflags |= UDP_IN_RECV;
  udp_deliver_held(u);
  udp_batch_end(u);
}

int sk_udp_recv_start(sk_udp *u, sk_udp_recv_cb cb) {
  if (sk_is_closing(&u->h) || u->sock.fd < 0)
    return -EBADF;
  if (cb == NULL)
    return -EINVAL;
  /* Restarted before the -ECANCELED of an sk_udp_recv_stop() ran: that
   * callback would reach the new operation, so it is dropped. */
  sk__pending_remove(u->h.loop, &u->rpend);
  u->recv_cb = cb;
  u->uflags |= UDP_READING;
  /* GRO: the kernel may hand a train of same-size datagrams from one
   * sender as one message, cut again in udp_deliver. Kernels without it
   * (before 5.0) refuse the option, and nothing changes. */
  if (udp_inet(u) && !(u->uflags & UDP_GRO_TRIED)) {
    int one = 1;
    u->uflags |= UDP_GRO_TRIED;
    (void)setsockopt(u->sock.fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
  }
  if (u->held != NULL) {
    sk__pending_remove(u->h.loop, &u->hpend);
    sk__pending_add(u->h.loop, &u->hpend, udp_hpend_cb);
  }
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
  if ((revents & SK__IO_WRITE) && u->wq.head != NULL && !sk_is_closing(&u->h))
    udp_do_write(u);
}

void sk__udp_close(sk_udp *u) {
  u->uflags &= ~UDP_READING;
  /* Replies gathered in the batch the user closed in still get their
   * chance, as they would have had outside a callback. */
  if (u->ndefer > 0 && u->sock.fd >= 0)
    udp_do_write(u);
  sk__wq_fail(&u->h, &u->wq, -ECANCELED);
  sk__pending_remove(u->h.loop, &u->hpend);
  udp_free_held(u);
  if (u->sock.fd >= 0) {
    sk__io_set(u->h.loop, &u->io, 0);
    sk__close_fd(u->sock.fd);
    u->sock.fd = -1;
  }
}
