/* Connecting by name, with Happy Eyeballs version 2 (RFC 8305).
 *
 * sk_stream_connect_host() resolves a host name on the event loop (c-ares,
 * never blocking it) and races connections to its addresses the way RFC
 * 8305 describes:
 *  - AAAA and A are asked in parallel. Connecting starts as soon as a
 *    usable answer arrives; when A answers first, IPv6 gets 50 ms (the
 *    resolution delay) to catch up.
 *  - Addresses are tried alternating between the families, preferred
 *    family first (IPv6 unless only IPv4 is asked for).
 *  - A new attempt starts every attempt delay (250 ms) while earlier ones
 *    are still pending, and at once when one fails. The first connection
 *    wins; every other attempt is closed. At most SK_CONNECT_MAX_ADDRS
 *    addresses are tried.
 *
 * sk_socket_connect_list() does the same racing for a blocking caller
 * with a list of addresses it already has; sk_socket_connect_text() uses
 * it, so one black-holed address no longer eats the whole timeout.
 */
#ifndef SOCKIT_CONNECT_H
#define SOCKIT_CONNECT_H

#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"
#include "socket.h"
#include "stream.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most addresses one connect tries (the rest of the answers are ignored). */
#define SK_CONNECT_MAX_ADDRS 32
/* Defaults of sk_connect_opts. */
#define SK_CONNECT_TIMEOUT_DEFAULT  30000 /* ms, the whole operation */
#define SK_CONNECT_ATTEMPT_DELAY    250   /* ms between attempts */
#define SK_CONNECT_RESOLUTION_DELAY 50    /* ms IPv6 may lag behind IPv4 */

/* Options of sk_stream_connect_host(). A zeroed struct (or NULL) means
 * the defaults. */
typedef struct sk_connect_opts {
  /* Limit for the whole operation, resolution included: > 0 ms; 0 =
   * SK_CONNECT_TIMEOUT_DEFAULT; < 0 = no limit. */
  int timeout_ms;
  /* AF_UNSPEC (both families, IPv6 first), AF_INET or AF_INET6 (only that
   * family is asked for and tried). */
  int family;
  /* Time between the starts of two attempts: 0 = SK_CONNECT_ATTEMPT_DELAY;
   * clamped to 10..2000 ms as RFC 8305 recommends. */
  int attempt_delay_ms;
  /* DNS servers to ask instead of those of /etc/resolv.conf, like curl's
   * CURLOPT_DNS_SERVERS: "ip[:port],..." with IPv6 in brackets when a
   * port is given ("127.0.0.1:5353,[::1]:53"). NULL = the system's. The
   * hosts file is still read first. */
  const char *dns_servers;
} sk_connect_opts;

/* Connects stream s (initialised, not open) to host at port without ever
 * blocking the loop. host is a name ("example.com"), an IPv4 literal, or
 * an IPv6 literal with or without brackets; literals skip DNS. With port
 * 0, host is a whole text address instead: "example.com:443",
 * "[::1]:80", "10.0.0.1:25" or "unix:/path" (the numeric forms of
 * sk_endpoint_parse() connect directly).
 *
 * cb runs exactly once, never inside this call: 0 when connected (the
 * stream is then open as after sk_stream_connect()); -ETIMEDOUT when
 * opts->timeout_ms passed; -ECANCELED after sk_stream_connect_cancel() or
 * sk_close(), at any stage (resolution or attempts in flight; nothing is
 * left behind); SK_ENOTFOUND when the name has no address, SK_EDNSAGAIN
 * when the DNS servers did not answer, SK_EDNS for other resolver
 * failures; otherwise the error of the last failed attempt
 * (-ECONNREFUSED, -ENETUNREACH, ...).
 * Returns 0, or -EINVAL (bad arguments, malformed dns_servers), SK_EBADADDR
 * / SK_EBADPORT / SK_EBRACKET for a malformed text address, -EISCONN when
 * the stream is open or connecting, -EBADF when it is closing, -ENOMEM; on
 * error cb is not called. */
SK_EXTERN int sk_stream_connect_host(sk_stream *s, const char *host,
                                     uint16_t port, const sk_connect_opts *opts,
                                     sk_connect_cb cb);

/* Blocking: creates a stream socket and connects it to one of eps[0..n-1]
 * (at most SK_CONNECT_MAX_ADDRS), racing them as above: the families are
 * interleaved starting with the family of eps[0], a new attempt starts
 * every SK_CONNECT_ATTEMPT_DELAY ms (at once when one fails), the first
 * connection wins and the others are closed. All within timeout_ms (-1 =
 * no limit). Returns 0 with s open and connected, -ETIMEDOUT, -EINVAL, or
 * the error of the last failed attempt. A Unix endpoint whose listener's
 * backlog is full fails with -EAGAIN instead of being waited for. */
SK_EXTERN int sk_socket_connect_list(sk_socket *s, const sk_endpoint *eps,
                                     size_t n, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
