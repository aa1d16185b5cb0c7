/* Endpoints: socket addresses you can parse, format, compare and resolve.
 *
 * An sk_endpoint holds one IPv4, IPv6 or Unix-domain socket address. It is a
 * plain value: copy it with assignment, keep it on the stack.
 *
 * Text forms (parse and format agree on them):
 *   127.0.0.1:8888        IPv4 address and port
 *   [::1]:8888            IPv6 address in brackets and port
 *   [fe80::1%lo]:80       IPv6 link-local with a scope (interface name or
 *                         number)
 *   unix:/path/to/sock    Unix-domain socket in the file system
 *   unix:@name            Linux abstract Unix socket (no file)
 * Port 0 is valid and means "let the kernel choose" when binding.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are normalised to plain IPv4
 * wherever sockit reports an endpoint (accept, recvfrom, local/remote
 * address, formatting), so a dual-stack listener reports 127.0.0.1, not
 * [::ffff:127.0.0.1]. This is the one rule; sk_endpoint_normalize() applies
 * it to an endpoint of your own.
 */
#ifndef SOCKIT_ENDPOINT_H
#define SOCKIT_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sk_endpoint {
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    struct sockaddr_storage ss;
  } u;
  /* Length of the address in u, as passed to bind/connect. 0 = empty. */
  socklen_t len;
} sk_endpoint;

/* Enough for any formatted endpoint, including "unix:" and a full path. */
#define SK_ENDPOINT_STRLEN 128

/* Parses a numeric text form (see above) into ep. No name resolution.
 * Returns 0, or:
 *   SK_EBADADDR   empty text, bad IP literal, or a form not listed above
 *   SK_EBADPORT   missing port, non-digits, or a port above 65535
 *   SK_EBRACKET   "[" without "]" or "]" without "["
 *   -ENAMETOOLONG Unix path longer than sun_path allows
 *   -ENODEV       unknown IPv6 scope interface name */
SK_EXTERN int sk_endpoint_parse(sk_endpoint *ep, const char *text);

/* Splits "host:port" / "[v6host]:port" into its host and port parts without
 * resolving. host receives the host text without brackets. Returns 0 or the
 * same errors as sk_endpoint_parse(); -ENAMETOOLONG if host does not fit. */
SK_EXTERN int sk_endpoint_split(const char *text, char *host, size_t hostlen,
                                uint16_t *port);

/* Resolves "host:port" (a name or a numeric form; "unix:" forms pass through)
 * with getaddrinfo and stores up to max endpoints in out, in the order the
 * resolver prefers. socktype is SOCK_STREAM or SOCK_DGRAM (0 = either,
 * duplicates removed). family is AF_UNSPEC, AF_INET or AF_INET6.
 * Returns the number stored (>= 1), or SK_ENOTFOUND, SK_EDNSAGAIN, SK_EDNS,
 * or a parse error. Blocks while the resolver works. */
SK_EXTERN int sk_endpoint_resolve(const char *text, int family, int socktype,
                                  sk_endpoint *out, size_t max);

/* Formats ep into buf (SK_ENDPOINT_STRLEN bytes is always enough). Returns
 * the length written (excluding the NUL), -ENOSPC if buf is too small, or
 * -EAFNOSUPPORT for an empty or unknown endpoint. Mapped IPv4 addresses are
 * printed as IPv4. */
SK_EXTERN int sk_endpoint_format(const sk_endpoint *ep, char *buf,
                                 size_t buflen);

/* Fills ep from a raw sockaddr (as returned by accept, getsockname, ...) and
 * normalises it. Returns 0 or -EAFNOSUPPORT / -EINVAL. */
SK_EXTERN int sk_endpoint_from_sockaddr(sk_endpoint *ep,
                                        const struct sockaddr *sa,
                                        socklen_t len);

/* Rewrites an IPv4-mapped IPv6 endpoint as plain IPv4 (port kept). Other
 * endpoints are left alone. */
SK_EXTERN void sk_endpoint_normalize(sk_endpoint *ep);

/* Builds the wildcard (0.0.0.0 / ::) or loopback (127.0.0.1 / ::1) endpoint
 * of family AF_INET or AF_INET6 with the given port. */
SK_EXTERN int sk_endpoint_any(sk_endpoint *ep, int family, uint16_t port);
SK_EXTERN int sk_endpoint_loopback(sk_endpoint *ep, int family, uint16_t port);

/* Builds a Unix endpoint from a path ("@name" = abstract). -ENAMETOOLONG if
 * the path does not fit. */
SK_EXTERN int sk_endpoint_unix(sk_endpoint *ep, const char *path);

/* AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC for an empty endpoint. */
SK_EXTERN int sk_endpoint_family(const sk_endpoint *ep);

/* Port in host byte order; 0 for Unix endpoints. */
SK_EXTERN uint16_t sk_endpoint_port(const sk_endpoint *ep);

/* Sets the port of an IPv4/IPv6 endpoint. -EAFNOSUPPORT otherwise. */
SK_EXTERN int sk_endpoint_set_port(sk_endpoint *ep, uint16_t port);

/* 1 if a and b name the same address (after normalisation), else 0. */
SK_EXTERN int sk_endpoint_equal(const sk_endpoint *a, const sk_endpoint *b);

#ifdef __cplusplus
}
#endif

#endif
