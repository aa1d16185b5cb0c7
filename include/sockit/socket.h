/* The synchronous Socket: blocking-style calls with timeouts.
 *
 * An sk_socket wraps one descriptor. Internally the descriptor is always
 * non-blocking and close-on-exec; every call that may wait takes a timeout in
 * milliseconds (-1 waits forever, 0 does not wait at all) and waits with
 * poll(), so a call never blocks longer than asked and never spins. EINTR is
 * retried. A timeout returns -ETIMEDOUT.
 *
 * The same descriptor can later be handed to an event loop
 * (sk_stream_open()), and the option calls below work on the sk_socket that
 * every async handle embeds.
 */
#ifndef SOCKIT_SOCKET_H
#define SOCKIT_SOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "endpoint.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_socket {
  int fd;     /* -1 when closed */
  int family; /* AF_INET, AF_INET6, AF_UNIX */
  int type;   /* SOCK_STREAM or SOCK_DGRAM */
} sk_socket;

#define SK_SOCKET_INIT                                                         \
  { -1, 0, 0 }

/* Flags for sk_socket_open(). */
enum {
  /* AF_INET6 only: also accept IPv4 (clears IPV6_V6ONLY). */
  SK_SOCK_DUALSTACK = 1u << 0,
  /* AF_INET6 only: IPv6 traffic only (sets IPV6_V6ONLY). */
  SK_SOCK_V6ONLY = 1u << 1,
};

/* Creates a socket. family: AF_INET, AF_INET6 or AF_UNIX; type: SOCK_STREAM
 * or SOCK_DGRAM. Returns 0 or a negative errno. */
SK_EXTERN int sk_socket_open(sk_socket *s, int family, int type,
                             unsigned flags);

/* Takes ownership of an existing descriptor (makes it non-blocking and
 * close-on-exec, reads its family and type). */
SK_EXTERN int sk_socket_adopt(sk_socket *s, int fd);

SK_EXTERN int sk_socket_bind(sk_socket *s, const sk_endpoint *ep);

/* backlog <= 0 selects SOMAXCONN. */
SK_EXTERN int sk_socket_listen(sk_socket *s, int backlog);

/* Waits up to timeout_ms for a connection. client receives the new socket;
 * peer (may be NULL) its normalised address. Returns 0 or a negative errno
 * (-ETIMEDOUT, -EMFILE, ...). Transient errors (ECONNABORTED, EINTR) are
 * retried within the timeout. */
SK_EXTERN int sk_socket_accept(sk_socket *s, sk_socket *client,
                               sk_endpoint *peer, int timeout_ms);

/* Connects an open socket to ep, waiting up to timeout_ms. For datagram
 * sockets this only sets the default peer. */
SK_EXTERN int sk_socket_connect(sk_socket *s, const sk_endpoint *ep,
                                int timeout_ms);

/* Sends all len bytes or fails: returns 0 when every byte was handed to the
 * kernel, -ETIMEDOUT if the timeout (for the whole call) expired first, or a
 * negative errno (-EPIPE, -ECONNRESET, ...). Never raises SIGPIPE. */
SK_EXTERN int sk_socket_send(sk_socket *s, const void *buf, size_t len,
                             int timeout_ms);

/* sk_socket_send(), and *sent (when sent is not NULL) is the count the
 * kernel took, on success (len) as on a timeout or an error, so the caller
 * knows exactly what went out and can resume at buf + *sent. */
SK_EXTERN int sk_socket_send_all(sk_socket *s, const void *buf, size_t len,
                                 size_t *sent, int timeout_ms);

/* Receives what is there, up to len bytes, waiting up to timeout_ms for
 * something to arrive. Returns the count (> 0), 0 when the peer closed its
 * side (stream sockets), or a negative errno. */
SK_EXTERN ssize_t sk_socket_recv(sk_socket *s, void *buf, size_t len,
                                 int timeout_ms);

/* Receives exactly len bytes. Returns len, SK_EOF if the peer closed first
 * (the bytes read so far stay in buf and are counted in *got when got is not
 * NULL), or a negative errno. */
SK_EXTERN ssize_t sk_socket_recv_all(sk_socket *s, void *buf, size_t len,
                                     size_t *got, int timeout_ms);

/* Datagrams. sendto returns the count sent (the whole datagram) or a
 * negative errno; dst may be NULL on a connected socket. */
SK_EXTERN ssize_t sk_socket_sendto(sk_socket *s, const void *buf, size_t len,
                                   const sk_endpoint *dst, int timeout_ms);

/* Receives one datagram. Returns its length, or -EMSGSIZE when it was longer
 * than len: then buf holds the first len bytes and the rest is lost (never
 * silent). A zero-length datagram returns 0. from may be NULL. */
SK_EXTERN ssize_t sk_socket_recvfrom(sk_socket *s, void *buf, size_t len,
                                     sk_endpoint *from, int timeout_ms);

/* Everything known about one received datagram. */
typedef struct sk_dgram_info {
  sk_endpoint from; /* sender, normalised */
  sk_endpoint to;   /* local destination address (needs sk_opt_set_pktinfo);
                       len == 0 when unknown; the port is the local port */
  unsigned ifindex; /* interface it arrived on, 0 if unknown */
  size_t full_len;  /* the datagram's real length */
  int truncated;    /* 1 if full_len > the buffer given */
} sk_dgram_info;

/* Like sk_socket_recvfrom() but returns the number of bytes stored (never
 * an error for truncation) and fills info. */
SK_EXTERN ssize_t sk_socket_recvmsg(sk_socket *s, void *buf, size_t len,
                                    sk_dgram_info *info, int timeout_ms);

/* ---- Flags, scatter/gather, urgent data (.NET SocketFlags) ---- */

/* Flags for sk_socket_recv_flags(), sk_socket_recvv(), sk_socket_send_flags()
 * and sk_socket_sendv(). sockit's own values, mapped to the kernel's MSG_*.
 * A flag a call or socket type cannot honour returns -EINVAL (urgent data on
 * anything but TCP: -EOPNOTSUPP); sockit always adds MSG_NOSIGNAL to sends. */
enum {
  /* Receive: look at the data without taking it; the next receive returns
   * it again (MSG_PEEK). On a datagram socket the datagram stays queued. */
  SK_MSG_PEEK = 1u << 0,
  /* TCP urgent data (MSG_OOB). Send: the last byte of the buffer goes out
   * as the urgent byte. Receive: waits until the urgent byte has arrived
   * and returns it (1 byte); -EINVAL while SO_OOBINLINE is on. */
  SK_MSG_OOB = 1u << 1,
  /* Stream receive: wait until every byte asked for has arrived (or end of
   * stream, error or timeout, which return what arrived if anything did).
   * Not with SK_MSG_PEEK or SK_MSG_OOB. */
  SK_MSG_WAITALL = 1u << 2,
  /* Datagram receive: a datagram longer than the buffer returns its real
   * length (larger than what was stored) instead of -EMSGSIZE. With
   * SK_MSG_PEEK and a small buffer it tells a datagram's size. */
  SK_MSG_TRUNC = 1u << 3,
  /* Send: bypass routing, reach only directly connected hosts
   * (MSG_DONTROUTE). */
  SK_MSG_DONTROUTE = 1u << 4,
};

/* sk_socket_recv() with flags (SK_MSG_PEEK, SK_MSG_OOB, SK_MSG_WAITALL,
 * SK_MSG_TRUNC). Returns the count (> 0), 0 at end of stream, or a negative
 * errno; -ETIMEDOUT when nothing arrived in time. A datagram longer than len
 * returns -EMSGSIZE (buf holds its first len bytes; with SK_MSG_PEEK it is
 * still queued) unless SK_MSG_TRUNC is given. */
SK_EXTERN ssize_t sk_socket_recv_flags(sk_socket *s, void *buf, size_t len,
                                       unsigned flags, int timeout_ms);

/* sk_socket_send_all() with flags (SK_MSG_OOB, SK_MSG_DONTROUTE): all len
 * bytes or fail, *sent (may be NULL) being the count the kernel took. With
 * SK_MSG_OOB, len must be >= 1 and the last byte is the urgent one. */
SK_EXTERN int sk_socket_send_flags(sk_socket *s, const void *buf, size_t len,
                                   unsigned flags, size_t *sent,
                                   int timeout_ms);

/* Scatter receive: like sk_socket_recv_flags() into iovcnt buffers filled
 * in order (one datagram over all of them on a datagram socket). iovcnt is
 * 1..IOV_MAX and the total length at most SSIZE_MAX (-EINVAL otherwise; a
 * stream needs a total > 0). The array and buffers stay the caller's. */
SK_EXTERN ssize_t sk_socket_recvv(sk_socket *s, const struct iovec *iov,
                                  int iovcnt, unsigned flags, int timeout_ms);

/* Gather send: like sk_socket_send_flags() of the buffers one after another
 * (one datagram on a datagram socket). Sends all or fails within timeout_ms
 * for the whole call; *sent (may be NULL) is the count the kernel took, on
 * success as on a timeout or an error. */
SK_EXTERN int sk_socket_sendv(sk_socket *s, const struct iovec *iov, int iovcnt,
                              unsigned flags, size_t *sent, int timeout_ms);

/* 1 if the next byte to read is the one right after the urgent byte (the
 * stream is "at the mark", SIOCATMARK), 0 if not, or a negative errno. */
SK_EXTERN int sk_socket_at_mark(const sk_socket *s);

enum { SK_SHUT_RD = 0, SK_SHUT_WR = 1, SK_SHUT_RDWR = 2 };

/* Half-closes. After SK_SHUT_WR the peer reads end-of-stream while this side
 * can still receive what the peer sends. */
SK_EXTERN int sk_socket_shutdown(sk_socket *s, int how);

/* Graceful close of a stream socket: sends FIN (shutdown write), then reads
 * and discards until the peer closes too or timeout_ms expires, then closes
 * the descriptor. Draining first is what keeps the kernel from answering
 * unread data with a reset. Returns 0, -ETIMEDOUT if the peer did not close
 * in time (the descriptor is closed anyway), or a negative errno. Datagram
 * sockets are simply closed. Safe on an already closed socket (returns 0).
 * With SO_LINGER on and a zero timeout (sk_opt_set_linger(s, 1, 0)) it
 * resets at once instead, like sk_socket_abort(). */
SK_EXTERN int sk_socket_close(sk_socket *s, int timeout_ms);

/* Abortive close: the peer gets a reset (RST) at once and unsent data is
 * dropped. Use it deliberately; sockit never resets implicitly. */
SK_EXTERN int sk_socket_abort(sk_socket *s);

SK_EXTERN int sk_socket_local(const sk_socket *s, sk_endpoint *ep);
SK_EXTERN int sk_socket_remote(const sk_socket *s, sk_endpoint *ep);

/* Bytes that can be read without blocking (FIONREAD), or a negative errno. */
SK_EXTERN int sk_socket_available(const sk_socket *s);

enum { SK_POLL_READ = 1, SK_POLL_WRITE = 2, SK_POLL_ERROR = 4 };

/* Waits up to timeout_ms until the socket is readable and/or writable (as
 * asked in events). Returns the ready set (0 on timeout) or a negative errno.
 * SK_POLL_ERROR is reported on error or hang-up. */
SK_EXTERN int sk_socket_poll(const sk_socket *s, int events, int timeout_ms);

/* One socket of a poll set: fill sock and events (SK_POLL_READ and/or
 * SK_POLL_WRITE); sk_socket_poll_set() fills revents. */
typedef struct sk_pollset_entry {
  const sk_socket *sock; /* NULL: entry skipped, revents 0 */
  int events;
  int revents;
} sk_pollset_entry;

/* Waits up to timeout_ms until at least one socket of the set is ready as
 * asked (like .NET Socket.Select), then sets every entry's revents to its
 * ready set (SK_POLL_ERROR on error, hang-up or a descriptor that is not
 * open). Returns how many entries are ready, 0 on timeout, or a negative
 * errno: -EINVAL for bad events or n over the descriptor limit, -EBADF for
 * a closed sk_socket. n == 0 just waits. */
SK_EXTERN int sk_socket_poll_set(sk_pollset_entry *entries, size_t n,
                                 int timeout_ms);

/* 1 if the socket has a peer (getpeername succeeds: a connected stream, or
 * a datagram socket with a default peer), 0 if not, or a negative errno. */
SK_EXTERN int sk_socket_is_connected(const sk_socket *s);

/* 1 if the socket has a local address (bound explicitly or by connect,
 * an IP port other than 0 or a named Unix socket), 0 if not, or a negative
 * errno. */
SK_EXTERN int sk_socket_is_bound(const sk_socket *s);

/* Sends len bytes of the file fd starting at *offset with sendfile(2) (no
 * copy through user space), advancing *offset. Sends all or fails, like
 * sk_socket_send(). */
SK_EXTERN int sk_socket_sendfile(sk_socket *s, int fd, off_t *offset,
                                 size_t len, int timeout_ms);

/* ---- One-call helpers, like TcpListener / TcpClient / UdpClient ---- */

/* Binds and listens on a text address ("127.0.0.1:0", "[::]:80",
 * "unix:/path"). SO_REUSEADDR is set for TCP; an existing Unix socket file
 * is not removed (-EADDRINUSE). backlog <= 0 selects SOMAXCONN. */
SK_EXTERN int sk_socket_listen_text(sk_socket *s, const char *addr,
                                    int backlog);

/* Most addresses sk_socket_connect_text() tries from one name. */
#define SK_CONNECT_TEXT_MAX 16

/* Resolves a text address ("localhost:8888", "[::1]:80", "unix:/path") and
 * connects to its first SK_CONNECT_TEXT_MAX addresses, all within
 * timeout_ms in total: TCP addresses are raced (Happy Eyeballs, see
 * sk_socket_connect_list() in connect.h), so a black-holed first address
 * costs an attempt delay, not the whole timeout; Unix and datagram
 * addresses are tried in turn. Returns 0 or the error of the last
 * attempt. */
SK_EXTERN int sk_socket_connect_text(sk_socket *s, const char *addr, int type,
                                     int timeout_ms);

/* Opens a datagram socket bound to a text address (port 0 allowed). */
SK_EXTERN int sk_socket_bind_text(sk_socket *s, const char *addr);

/* ---- Typed socket options ---- *
 * Each setter returns 0 or a negative errno; each getter stores the current
 * value and returns 0 or a negative errno. Times are in milliseconds or
 * seconds as named. */

SK_EXTERN int sk_opt_set_nodelay(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_nodelay(const sk_socket *s, int *on);
SK_EXTERN int sk_opt_set_reuseaddr(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_reuseaddr(const sk_socket *s, int *on);
SK_EXTERN int sk_opt_set_reuseport(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_reuseport(const sk_socket *s, int *on);
/* Keep-alive with its probe timing; idle/interval/count <= 0 leave the
 * system default for that value. */
SK_EXTERN int sk_opt_set_keepalive(sk_socket *s, int on, int idle_s,
                                   int interval_s, int count);
SK_EXTERN int sk_opt_get_keepalive(const sk_socket *s, int *on, int *idle_s,
                                   int *interval_s, int *count);
/* SO_LINGER. on=1 with seconds=0 makes close() send RST: prefer
 * sk_socket_abort(), which says so. */
SK_EXTERN int sk_opt_set_linger(sk_socket *s, int on, int seconds);
SK_EXTERN int sk_opt_get_linger(const sk_socket *s, int *on, int *seconds);
/* Buffer sizes as the kernel reports them (Linux doubles what you set). */
SK_EXTERN int sk_opt_set_rcvbuf(sk_socket *s, int bytes);
SK_EXTERN int sk_opt_get_rcvbuf(const sk_socket *s, int *bytes);
SK_EXTERN int sk_opt_set_sndbuf(sk_socket *s, int bytes);
SK_EXTERN int sk_opt_get_sndbuf(const sk_socket *s, int *bytes);
/* Kernel-level SO_RCVTIMEO / SO_SNDTIMEO (0 = none). They have no effect on
 * the descriptors sockit makes, which are all non-blocking (sockit's calls
 * take a timeout argument instead); they matter only if you switch the
 * descriptor to blocking mode yourself and call recv/send on it directly.
 * Kept for completeness (.NET's ReceiveTimeout/SendTimeout). */
SK_EXTERN int sk_opt_set_rcvtimeo(sk_socket *s, int ms);
SK_EXTERN int sk_opt_get_rcvtimeo(const sk_socket *s, int *ms);
SK_EXTERN int sk_opt_set_sndtimeo(sk_socket *s, int ms);
SK_EXTERN int sk_opt_get_sndtimeo(const sk_socket *s, int *ms);
/* Unicast TTL (IPv4) or hop limit (IPv6), by the socket's family. */
SK_EXTERN int sk_opt_set_ttl(sk_socket *s, int ttl);
SK_EXTERN int sk_opt_get_ttl(const sk_socket *s, int *ttl);
SK_EXTERN int sk_opt_set_broadcast(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_broadcast(const sk_socket *s, int *on);
SK_EXTERN int sk_opt_set_v6only(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_v6only(const sk_socket *s, int *on);
/* Delivers each datagram's destination address (IP_PKTINFO /
 * IPV6_RECVPKTINFO) to sk_socket_recvmsg() and sk_udp receive callbacks. */
SK_EXTERN int sk_opt_set_pktinfo(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_pktinfo(const sk_socket *s, int *on);
/* Multicast. group is an IPv4 or IPv6 multicast endpoint (port ignored);
 * ifindex 0 lets the kernel choose the interface. */
SK_EXTERN int sk_opt_join_group(sk_socket *s, const sk_endpoint *group,
                                unsigned ifindex);
SK_EXTERN int sk_opt_leave_group(sk_socket *s, const sk_endpoint *group,
                                 unsigned ifindex);
SK_EXTERN int sk_opt_set_multicast_loop(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_multicast_loop(const sk_socket *s, int *on);
SK_EXTERN int sk_opt_set_multicast_ttl(sk_socket *s, int ttl);
SK_EXTERN int sk_opt_get_multicast_ttl(const sk_socket *s, int *ttl);
/* Interface for outgoing multicast (IPv4: index resolved to the
 * interface's address via ip_mreqn; IPv6: IPV6_MULTICAST_IF). */
SK_EXTERN int sk_opt_set_multicast_if(sk_socket *s, unsigned ifindex);

/* Any option, by level and name (setsockopt / getsockopt). The socket's
 * kind is checked for the common levels first: IPPROTO_IP needs an IPv4 or
 * IPv6 socket, IPPROTO_IPV6 an IPv6 one (-EAFNOSUPPORT otherwise),
 * IPPROTO_TCP a TCP socket, IPPROTO_UDP an IP datagram socket (-EAFNOSUPPORT
 * for another family, -EINVAL for another type); other levels go to the
 * kernel as they are. get_raw: *len is the room in val on entry and the
 * option's length on return. val may be NULL only with a length of 0. */
SK_EXTERN int sk_opt_set_raw(sk_socket *s, int level, int name, const void *val,
                             size_t len);
SK_EXTERN int sk_opt_get_raw(const sk_socket *s, int level, int name, void *val,
                             size_t *len);

/* Path-MTU discovery (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER by the socket's
 * family; an IPv6 socket sets the IPv4 option too, for its IPv4-mapped
 * traffic, where the kernel allows it). */
enum {
  SK_PMTU_DONT = 0,  /* never set Don't Fragment; fragment locally */
  SK_PMTU_WANT = 1,  /* per-route discovery (the system default) */
  SK_PMTU_DO = 2,    /* always set Don't Fragment: -EMSGSIZE if too big */
  SK_PMTU_PROBE = 3, /* set DF and ignore the path MTU (probing) */
};
SK_EXTERN int sk_opt_set_mtu_discover(sk_socket *s, int mode);
SK_EXTERN int sk_opt_get_mtu_discover(const sk_socket *s, int *mode);
/* .NET's DontFragment: on = SK_PMTU_DO, off = SK_PMTU_DONT; the getter
 * reports 1 for SK_PMTU_DO and SK_PMTU_PROBE. */
SK_EXTERN int sk_opt_set_dontfragment(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_dontfragment(const sk_socket *s, int *on);
/* The path MTU known for a connected socket (IP_MTU / IPV6_MTU); -ENOTCONN
 * if it is not connected. */
SK_EXTERN int sk_opt_get_mtu(const sk_socket *s, int *mtu);
/* Type of service (IPv4 IP_TOS) or traffic class (IPv6 IPV6_TCLASS), by the
 * socket's family: 0..255, the DSCP in the upper six bits. */
SK_EXTERN int sk_opt_set_tos(sk_socket *s, int tos);
SK_EXTERN int sk_opt_get_tos(const sk_socket *s, int *tos);
/* TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the
 * connection is dropped (-ETIMEDOUT), in ms; 0 is the system default. */
SK_EXTERN int sk_opt_set_user_timeout(sk_socket *s, int ms);
SK_EXTERN int sk_opt_get_user_timeout(const sk_socket *s, int *ms);
/* TCP Fast Open on a listener (TCP_FASTOPEN, set before listen): qlen is
 * the queue of pending fast-open requests, 0 turns it off. Needs bit 1 of
 * /proc/sys/net/ipv4/tcp_fastopen for servers. */
SK_EXTERN int sk_opt_set_fastopen(sk_socket *s, int qlen);
SK_EXTERN int sk_opt_get_fastopen(const sk_socket *s, int *qlen);
/* TCP Fast Open on a client (TCP_FASTOPEN_CONNECT, set before connect):
 * connect returns at once and the first send rides on the SYN when the
 * client holds a cookie for the server (bit 0 of tcp_fastopen). */
SK_EXTERN int sk_opt_set_fastopen_connect(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_fastopen_connect(const sk_socket *s, int *on);
/* SO_PRIORITY: the queueing priority of outgoing packets; 0..6 without
 * CAP_NET_ADMIN (-EPERM above). */
SK_EXTERN int sk_opt_set_priority(sk_socket *s, int prio);
SK_EXTERN int sk_opt_get_priority(const sk_socket *s, int *prio);
/* SO_OOBINLINE (TCP): the urgent byte stays in the normal stream instead
 * of being read with SK_MSG_OOB. */
SK_EXTERN int sk_opt_set_oobinline(sk_socket *s, int on);
SK_EXTERN int sk_opt_get_oobinline(const sk_socket *s, int *on);

#ifdef __cplusplus
}
#endif

#endif
