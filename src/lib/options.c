/* Typed socket options (the sk_opt_* calls of include/sockit/socket.h).
 *
 * Each call checks that the option fits the socket before asking the
 * kernel: an option of another address family returns -EAFNOSUPPORT (the
 * kernel would often accept it and silently do nothing, or fail with a less
 * telling error), a value out of range returns -EINVAL. Everything else is
 * the kernel's answer as a negative errno. Boolean getters report 0 or 1.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "internal.h"

static int check_open(const sk_socket *s) {
  if (s == NULL)
    return -EINVAL;
  if (s->fd < 0)
    return -EBADF;
  return 0;
}

/* An open IPv4 or IPv6 socket: 0, or the error to return. */
static int check_ip(const sk_socket *s) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (s->family != AF_INET && s->family != AF_INET6)
    return -EAFNOSUPPORT;
  return 0;
}

/* An open TCP socket (IPv4 or IPv6 stream). */
static int check_tcp(const sk_socket *s) {
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (s->type != SOCK_STREAM)
    return -EINVAL;
  return 0;
}

/* An open socket of exactly this family. */
static int check_family(const sk_socket *s, int family) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (s->family != family)
    return -EAFNOSUPPORT;
  return 0;
}

static int set_int(const sk_socket *s, int level, int name, int value) {
  if (setsockopt(s->fd, level, name, &value, sizeof value) < 0)
    return sk__err();
  return 0;
}

static int get_int(const sk_socket *s, int level, int name, int *value) {
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(s->fd, level, name, &v, &len) < 0)
    return sk__err();
  *value = v;
  return 0;
}

/* Reads a boolean option as 0 or 1. */
static int get_bool(const sk_socket *s, int level, int name, int *on) {
  if (on == NULL)
    return -EINVAL;
  int v = 0;
  int rc = get_int(s, level, name, &v);
  if (rc == 0)
    *on = v != 0;
  return rc;
}

/* Options that both IP families have under different names: the socket's
 * family picks the IPv4 (IPPROTO_IP) or the IPv6 (IPPROTO_IPV6) one. */
static int set_ip_int(const sk_socket *s, int v4, int v6, int value) {
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (s->family == AF_INET)
    return set_int(s, IPPROTO_IP, v4, value);
  return set_int(s, IPPROTO_IPV6, v6, value);
}

static int get_ip_int(const sk_socket *s, int v4, int v6, int *value) {
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (value == NULL)
    return -EINVAL;
  if (s->family == AF_INET)
    return get_int(s, IPPROTO_IP, v4, value);
  return get_int(s, IPPROTO_IPV6, v6, value);
}

/* ---- TCP ---- */

int sk_opt_set_nodelay(sk_socket *s, int on) {
  int rc = check_tcp(s);
  return rc < 0 ? rc : set_int(s, IPPROTO_TCP, TCP_NODELAY, on != 0);
}

int sk_opt_get_nodelay(const sk_socket *s, int *on) {
  int rc = check_tcp(s);
  return rc < 0 ? rc : get_bool(s, IPPROTO_TCP, TCP_NODELAY, on);
}

int sk_opt_set_keepalive(sk_socket *s, int on, int idle_s, int interval_s,
                         int count) {
  int rc = check_tcp(s);
  if (rc < 0)
    return rc;
  /* The probe timing goes first, so that keep-alive, once on, never runs
   * with the system defaults the caller meant to replace. */
  if (idle_s > 0 && (rc = set_int(s, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0)
    return rc;
  if (interval_s > 0 &&
      (rc = set_int(s, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) < 0)
    return rc;
  if (count > 0 && (rc = set_int(s, IPPROTO_TCP, TCP_KEEPCNT, count)) < 0)
    return rc;
  return set_int(s, SOL_SOCKET, SO_KEEPALIVE, on != 0);
}

int sk_opt_get_keepalive(const sk_socket *s, int *on, int *idle_s,
                         int *interval_s, int *count) {
  int rc = check_tcp(s);
  if (rc < 0)
    return rc;
  if (on != NULL && (rc = get_bool(s, SOL_SOCKET, SO_KEEPALIVE, on)) < 0)
    return rc;
  if (idle_s != NULL &&
      (rc = get_int(s, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0)
    return rc;
  if (interval_s != NULL &&
      (rc = get_int(s, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) < 0)
    return rc;
  if (count != NULL && (rc = get_int(s, IPPROTO_TCP, TCP_KEEPCNT, count)) < 0)
    return rc;
  return 0;
}

/* ---- any socket ---- */

int sk_opt_set_reuseaddr(sk_socket *s, int on) {
  int rc = check_open(s);
  return rc < 0 ? rc : set_int(s, SOL_SOCKET, SO_REUSEADDR, on != 0);
}

int sk_opt_get_reuseaddr(const sk_socket *s, int *on) {
  int rc = check_open(s);
  return rc < 0 ? rc : get_bool(s, SOL_SOCKET, SO_REUSEADDR, on);
}

int sk_opt_set_reuseport(sk_socket *s, int on) {
  int rc = check_open(s);
  return rc < 0 ? rc : set_int(s, SOL_SOCKET, SO_REUSEPORT, on != 0);
}

int sk_opt_get_reuseport(const sk_socket *s, int *on) {
  int rc = check_open(s);
  return rc < 0 ? rc : get_bool(s, SOL_SOCKET, SO_REUSEPORT, on);
}

int sk_opt_set_linger(sk_socket *s, int on, int seconds) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (seconds < 0)
    return -EINVAL;
  struct linger lg = {.l_onoff = on != 0, .l_linger = seconds};
  if (setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
    return sk__err();
  return 0;
}

int sk_opt_get_linger(const sk_socket *s, int *on, int *seconds) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (on == NULL || seconds == NULL)
    return -EINVAL;
  struct linger lg;
  socklen_t len = sizeof lg;
  memset(&lg, 0, sizeof lg);
  if (getsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, &len) < 0)
    return sk__err();
  *on = lg.l_onoff != 0;
  *seconds = lg.l_linger;
  return 0;
}

int sk_opt_set_rcvbuf(sk_socket *s, int bytes) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (bytes <= 0)
    return -EINVAL;
  return set_int(s, SOL_SOCKET, SO_RCVBUF, bytes);
}

int sk_opt_get_rcvbuf(const sk_socket *s, int *bytes) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (bytes == NULL)
    return -EINVAL;
  return get_int(s, SOL_SOCKET, SO_RCVBUF, bytes);
}

int sk_opt_set_sndbuf(sk_socket *s, int bytes) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (bytes <= 0)
    return -EINVAL;
  return set_int(s, SOL_SOCKET, SO_SNDBUF, bytes);
}

int sk_opt_get_sndbuf(const sk_socket *s, int *bytes) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (bytes == NULL)
    return -EINVAL;
  return get_int(s, SOL_SOCKET, SO_SNDBUF, bytes);
}

static int set_timeo(sk_socket *s, int name, int ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (ms < 0)
    return -EINVAL;
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  if (setsockopt(s->fd, SOL_SOCKET, name, &tv, sizeof tv) < 0)
    return sk__err();
  return 0;
}

static int get_timeo(const sk_socket *s, int name, int *ms) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (ms == NULL)
    return -EINVAL;
  struct timeval tv;
  socklen_t len = sizeof tv;
  memset(&tv, 0, sizeof tv);
  if (getsockopt(s->fd, SOL_SOCKET, name, &tv, &len) < 0)
    return sk__err();
  /* Rounded up, so that a timeout shorter than a millisecond is not
   * reported as 0, which would mean "none". */
  long long total = (long long)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
  *ms = total > INT_MAX ? INT_MAX : (int)total;
  return 0;
}

int sk_opt_set_rcvtimeo(sk_socket *s, int ms) {
  return set_timeo(s, SO_RCVTIMEO, ms);
}

int sk_opt_get_rcvtimeo(const sk_socket *s, int *ms) {
  return get_timeo(s, SO_RCVTIMEO, ms);
}

int sk_opt_set_sndtimeo(sk_socket *s, int ms) {
  return set_timeo(s, SO_SNDTIMEO, ms);
}

int sk_opt_get_sndtimeo(const sk_socket *s, int *ms) {
  return get_timeo(s, SO_SNDTIMEO, ms);
}

/* ---- IP ---- */

int sk_opt_set_ttl(sk_socket *s, int ttl) {
  return set_ip_int(s, IP_TTL, IPV6_UNICAST_HOPS, ttl);
}

int sk_opt_get_ttl(const sk_socket *s, int *ttl) {
  return get_ip_int(s, IP_TTL, IPV6_UNICAST_HOPS, ttl);
}

/* Broadcast exists only in IPv4. */
int sk_opt_set_broadcast(sk_socket *s, int on) {
  int rc = check_family(s, AF_INET);
  return rc < 0 ? rc : set_int(s, SOL_SOCKET, SO_BROADCAST, on != 0);
}

int sk_opt_get_broadcast(const sk_socket *s, int *on) {
  int rc = check_family(s, AF_INET);
  return rc < 0 ? rc : get_bool(s, SOL_SOCKET, SO_BROADCAST, on);
}

int sk_opt_set_v6only(sk_socket *s, int on) {
  int rc = check_family(s, AF_INET6);
  return rc < 0 ? rc : set_int(s, IPPROTO_IPV6, IPV6_V6ONLY, on != 0);
}

int sk_opt_get_v6only(const sk_socket *s, int *on) {
  int rc = check_family(s, AF_INET6);
  return rc < 0 ? rc : get_bool(s, IPPROTO_IPV6, IPV6_V6ONLY, on);
}

int sk_opt_set_pktinfo(sk_socket *s, int on) {
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (s->family == AF_INET)
    return set_int(s, IPPROTO_IP, IP_PKTINFO, on != 0);
  rc = set_int(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, on != 0);
  if (rc < 0)
    return rc;
  /* A dual-stack IPv6 socket receives IPv4 datagrams too; their
   * destination comes as IP_PKTINFO, which Linux delivers on an IPv6
   * socket when asked. Where that is refused, IPv6 traffic still has its
   * answer, so the refusal is not an error. */
  (void)set_int(s, IPPROTO_IP, IP_PKTINFO, on != 0);
  return 0;
}

int sk_opt_get_pktinfo(const sk_socket *s, int *on) {
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (s->family == AF_INET)
    return get_bool(s, IPPROTO_IP, IP_PKTINFO, on);
  return get_bool(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, on);
}

/* ---- multicast ---- */

static int group_change(sk_socket *s, const sk_endpoint *group,
                        unsigned ifindex, int join) {
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (group == NULL || group->len == 0)
    return -EINVAL;
  /* A v4-mapped group given for an IPv4 socket is still an IPv4 group. */
  sk_endpoint g = *group;
  sk_endpoint_normalize(&g);
  if (g.u.sa.sa_family != s->family)
    return -EAFNOSUPPORT;
  if (s->family == AF_INET) {
    if (!IN_MULTICAST(ntohl(g.u.in4.sin_addr.s_addr)))
      return -EINVAL;
    struct ip_mreqn mr;
    memset(&mr, 0, sizeof mr);
    mr.imr_multiaddr = g.u.in4.sin_addr;
    mr.imr_ifindex = (int)ifindex;
    if (setsockopt(s->fd, IPPROTO_IP,
                   join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &mr,
                   sizeof mr) < 0)
      return sk__err();
    return 0;
  }
  if (!IN6_IS_ADDR_MULTICAST(&g.u.in6.sin6_addr))
    return -EINVAL;
  struct ipv6_mreq mr6;
  memset(&mr6, 0, sizeof mr6);
  mr6.ipv6mr_multiaddr = g.u.in6.sin6_addr;
  mr6.ipv6mr_interface = ifindex;
  if (setsockopt(s->fd, IPPROTO_IPV6,
                 join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP, &mr6,
                 sizeof mr6) < 0)
    return sk__err();
  return 0;
}

int sk_opt_join_group(sk_socket *s, const sk_endpoint *group,
                      unsigned ifindex) {
  return group_change(s, group, ifindex, 1);
}

int sk_opt_leave_group(sk_socket *s, const sk_endpoint *group,
                       unsigned ifindex) {
  return group_change(s, group, ifindex, 0);
}

int sk_opt_set_multicast_loop(sk_socket *s, int on) {
  return set_ip_int(s, IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP, on != 0);
}

int sk_opt_get_multicast_loop(const sk_socket *s, int *on) {
  int rc = get_ip_int(s, IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP, on);
  if (rc == 0)
    *on = *on != 0;
  return rc;
}

int sk_opt_set_multicast_ttl(sk_socket *s, int ttl) {
  return set_ip_int(s, IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, ttl);
}

int sk_opt_get_multicast_ttl(const sk_socket *s, int *ttl) {
  return get_ip_int(s, IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, ttl);
}

int sk_opt_set_multicast_if(sk_socket *s, unsigned ifindex) {
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (s->family == AF_INET) {
    /* ip_mreqn names the interface by index; the kernel picks its
     * address. Index 0 returns the choice to the routing table. */
    struct ip_mreqn mr;
    memset(&mr, 0, sizeof mr);
    mr.imr_ifindex = (int)ifindex;
    if (setsockopt(s->fd, IPPROTO_IP, IP_MULTICAST_IF, &mr, sizeof mr) < 0)
      return sk__err();
    return 0;
  }
  return set_int(s, IPPROTO_IPV6, IPV6_MULTICAST_IF, (int)ifindex);
}

/* ---- any option ---- */

/* Checks that an option of this level fits the socket (see
 * sk_opt_set_raw()). */
static int check_level(const sk_socket *s, int level) {
  switch (level) {
  case IPPROTO_IP:
    return check_ip(s);
  case IPPROTO_IPV6:
    return check_family(s, AF_INET6);
  case IPPROTO_TCP:
    return check_tcp(s);
  case IPPROTO_UDP: {
    int rc = check_ip(s);
    if (rc == 0 && s->type != SOCK_DGRAM)
      rc = -EINVAL;
    return rc;
  }
  default:
    return check_open(s);
  }
}

int sk_opt_set_raw(sk_socket *s, int level, int name, const void *val,
                   size_t len) {
  int rc = check_level(s, level);
  if (rc < 0)
    return rc;
  if ((val == NULL && len > 0) || len > INT_MAX)
    return -EINVAL;
  if (setsockopt(s->fd, level, name, val, (socklen_t)len) < 0)
    return sk__err();
  return 0;
}

int sk_opt_get_raw(const sk_socket *s, int level, int name, void *val,
                   size_t *len) {
  int rc = check_level(s, level);
  if (rc < 0)
    return rc;
  if (len == NULL || (val == NULL && *len > 0))
    return -EINVAL;
  socklen_t l = *len > INT_MAX ? INT_MAX : (socklen_t)*len;
  if (getsockopt(s->fd, level, name, val, &l) < 0)
    return sk__err();
  *len = l;
  return 0;
}

/* ---- path MTU, type of service ---- */

int sk_opt_set_mtu_discover(sk_socket *s, int mode) {
  /* SK_PMTU_* have the values of IP_PMTUDISC_* and IPV6_PMTUDISC_*. */
  _Static_assert(
      SK_PMTU_DONT == IP_PMTUDISC_DONT && SK_PMTU_WANT == IP_PMTUDISC_WANT &&
          SK_PMTU_DO == IP_PMTUDISC_DO && SK_PMTU_PROBE == IP_PMTUDISC_PROBE &&
          SK_PMTU_DO == IPV6_PMTUDISC_DO &&
          SK_PMTU_PROBE == IPV6_PMTUDISC_PROBE,
      "SK_PMTU_* match the kernel's values");
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (mode < SK_PMTU_DONT || mode > SK_PMTU_PROBE)
    return -EINVAL;
  rc = set_ip_int(s, IP_MTU_DISCOVER, IPV6_MTU_DISCOVER, mode);
  /* IPv4-mapped traffic of a dual-stack socket follows the IPv4 option;
   * as for pktinfo, a refusal leaves the IPv6 setting in force. */
  if (rc == 0 && s->family == AF_INET6)
    (void)set_int(s, IPPROTO_IP, IP_MTU_DISCOVER, mode);
  return rc;
}

int sk_opt_get_mtu_discover(const sk_socket *s, int *mode) {
  return get_ip_int(s, IP_MTU_DISCOVER, IPV6_MTU_DISCOVER, mode);
}

int sk_opt_set_dontfragment(sk_socket *s, int on) {
  return sk_opt_set_mtu_discover(s, on ? SK_PMTU_DO : SK_PMTU_DONT);
}

int sk_opt_get_dontfragment(const sk_socket *s, int *on) {
  int rc = sk_opt_get_mtu_discover(s, on);
  if (rc == 0)
    *on = *on == SK_PMTU_DO || *on == SK_PMTU_PROBE;
  return rc;
}

int sk_opt_get_mtu(const sk_socket *s, int *mtu) {
  return get_ip_int(s, IP_MTU, IPV6_MTU, mtu);
}

int sk_opt_set_tos(sk_socket *s, int tos) {
  int rc = check_ip(s);
  if (rc < 0)
    return rc;
  if (tos < 0 || tos > 255)
    return -EINVAL;
  return set_ip_int(s, IP_TOS, IPV6_TCLASS, tos);
}

int sk_opt_get_tos(const sk_socket *s, int *tos) {
  return get_ip_int(s, IP_TOS, IPV6_TCLASS, tos);
}

/* ---- more TCP ---- */

/* A non-negative integer TCP option. */
static int set_tcp_count(sk_socket *s, int name, int value) {
  int rc = check_tcp(s);
  if (rc < 0)
    return rc;
  if (value < 0)
    return -EINVAL;
  return set_int(s, IPPROTO_TCP, name, value);
}

static int get_tcp_int(const sk_socket *s, int name, int *value) {
  int rc = check_tcp(s);
  if (rc < 0)
    return rc;
  if (value == NULL)
    return -EINVAL;
  return get_int(s, IPPROTO_TCP, name, value);
}

int sk_opt_set_user_timeout(sk_socket *s, int ms) {
  return set_tcp_count(s, TCP_USER_TIMEOUT, ms);
}

int sk_opt_get_user_timeout(const sk_socket *s, int *ms) {
  return get_tcp_int(s, TCP_USER_TIMEOUT, ms);
}

int sk_opt_set_fastopen(sk_socket *s, int qlen) {
  return set_tcp_count(s, TCP_FASTOPEN, qlen);
}

int sk_opt_get_fastopen(const sk_socket *s, int *qlen) {
  return get_tcp_int(s, TCP_FASTOPEN, qlen);
}

int sk_opt_set_fastopen_connect(sk_socket *s, int on) {
  return set_tcp_count(s, TCP_FASTOPEN_CONNECT, on != 0);
}

int sk_opt_get_fastopen_connect(const sk_socket *s, int *on) {
  int rc = check_tcp(s);
  return rc < 0 ? rc : get_bool(s, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, on);
}

int sk_opt_set_oobinline(sk_socket *s, int on) {
  int rc = check_tcp(s);
  return rc < 0 ? rc : set_int(s, SOL_SOCKET, SO_OOBINLINE, on != 0);
}

int sk_opt_get_oobinline(const sk_socket *s, int *on) {
  int rc = check_tcp(s);
  return rc < 0 ? rc : get_bool(s, SOL_SOCKET, SO_OOBINLINE, on);
}

/* ---- any socket, continued ---- */

int sk_opt_set_priority(sk_socket *s, int prio) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (prio < 0)
    return -EINVAL;
  return set_int(s, SOL_SOCKET, SO_PRIORITY, prio);
}

int sk_opt_get_priority(const sk_socket *s, int *prio) {
  int rc = check_open(s);
  if (rc < 0)
    return rc;
  if (prio == NULL)
    return -EINVAL;
  return get_int(s, SOL_SOCKET, SO_PRIORITY, prio);
}
