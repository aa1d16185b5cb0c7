/* Endpoints: parsing, formatting, comparing and resolving socket addresses.
 *
 * The text grammar is deliberately small and strict, so that every string
 * either names exactly one address or fails with an error that says what is
 * wrong with it:
 *
 *   endpoint = ipv4 ":" port | "[" ipv6 [ "%" scope ] "]" ":" port
 *            | "unix:" path | "unix:@" name
 *   port     = 1*DIGIT, at most 65535 (no sign, no spaces)
 *
 * IPv4 literals are dotted quads as inet_pton() reads them, so shorthand such
 * as "127.1" is refused instead of silently meaning 127.0.0.1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define UNIX_PREFIX     "unix:"
#define UNIX_PREFIX_LEN (sizeof(UNIX_PREFIX) - 1)
#define SUN_PATH_OFF    offsetof(struct sockaddr_un, sun_path)
#define SUN_PATH_MAX    sizeof(((struct sockaddr_un *)0)->sun_path)

/* The pieces of a "host:port" text. host points into the text and is not
 * NUL-terminated; bracketed says it came from "[...]". */
struct hostport {
  const char *host;
  size_t hostlen;
  int bracketed;
  uint16_t port;
};

static int is_unix_text(const char *text) {
  return strncmp(text, UNIX_PREFIX, UNIX_PREFIX_LEN) == 0;
}

/* Reads a decimal port. Only digits are allowed: strtoul() would accept a
 * sign and leading blanks, which the grammar does not. */
static int parse_port(const char *s, uint16_t *port) {
  unsigned long v = 0;

  if (*s == '\0')
    return SK_EBADPORT;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9')
      return SK_EBADPORT;
    v = v * 10 + (unsigned long)(*s - '0');
    if (v > 65535)
      return SK_EBADPORT;
  }
  *port = (uint16_t)v;
  return 0;
}

/* Splits text into host and port, checking brackets and the port but not
 * the host itself. The checks run from the outside in, so that the error
 * names the first thing a reader would notice is wrong. */
static int split_hostport(const char *text, struct hostport *hp) {
  const char *portstr;

  memset(hp, 0, sizeof(*hp));
  if (text == NULL || *text == '\0')
    return SK_EBADADDR;
  /* A Unix path has no port; it is not a host:port form at all. */
  if (is_unix_text(text))
    return SK_EBADADDR;

  if (text[0] == '[') {
    const char *close = strchr(text + 1, ']');
    if (close == NULL)
      return SK_EBRACKET;
    hp->host = text + 1;
    hp->hostlen = (size_t)(close - hp->host);
    if (memchr(hp->host, '[', hp->hostlen) != NULL)
      return SK_EBRACKET;
    if (strpbrk(close + 1, "[]") != NULL)
      return SK_EBRACKET;
    if (hp->hostlen == 0)
      return SK_EBADADDR;
    if (close[1] == '\0')
      return SK_EBADPORT;
    if (close[1] != ':')
      return SK_EBADADDR;
    hp->bracketed = 1;
    portstr = close + 2;
  } else {
    const char *open = strchr(text, '[');
    const char *close = strchr(text, ']');
    const char *colon;
    /* A lone bracket is unbalanced; a balanced pair that does not start
     * the text is simply a form the grammar does not have. */
    if (open != NULL || close != NULL)
      return (open != NULL && close != NULL) ? SK_EBADADDR : SK_EBRACKET;
    colon = strrchr(text, ':');
    if (colon == NULL)
      return SK_EBADPORT;
    /* More than one colon means an IPv6 address without brackets, where the
     * port cannot be told apart from the last group ("::1:80"). */
    if (memchr(text, ':', (size_t)(colon - text)) != NULL)
      return SK_EBADADDR;
    hp->host = text;
    hp->hostlen = (size_t)(colon - text);
    if (hp->hostlen == 0)
      return SK_EBADADDR;
    portstr = colon + 1;
  }
  return parse_port(portstr, &hp->port);
}

/* Reads the interface part of "addr%scope": a number is taken as an index,
 * anything else must name an existing interface. */
static int parse_scope(const char *s, size_t len, uint32_t *scope) {
  size_t i;
  int digits = 1;

  if (len == 0)
    return SK_EBADADDR;
  for (i = 0; i < len; i++)
    if (s[i] < '0' || s[i] > '9')
      digits = 0;

  if (digits) {
    uint64_t v = 0;
    for (i = 0; i < len; i++) {
      v = v * 10 + (uint64_t)(s[i] - '0');
      if (v > UINT32_MAX)
        return SK_EBADADDR;
    }
    *scope = (uint32_t)v;
    return 0;
  }

  {
    char name[IF_NAMESIZE];
    unsigned idx;
    int e;
    if (len >= sizeof(name))
      return -ENODEV;
    memcpy(name, s, len);
    name[len] = '\0';
    errno = 0;
    idx = if_nametoindex(name);
    if (idx != 0) {
      *scope = idx;
      return 0;
    }
    /* if_nametoindex() needs a socket for its ioctl; when that is what
     * failed, say so rather than blaming the name. */
    e = errno;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
      return -e;
    return -ENODEV;
  }
}

/* Parses the inside of the brackets: an IPv6 literal with an optional
 * "%scope". */
static int parse_v6_host(const char *host, size_t len,
                         struct sockaddr_in6 *sin6) {
  char buf[INET6_ADDRSTRLEN];
  const char *pct = memchr(host, '%', len);
  size_t alen = pct != NULL ? (size_t)(pct - host) : len;

  memset(sin6, 0, sizeof(*sin6));
  if (alen == 0 || alen >= sizeof(buf))
    return SK_EBADADDR;
  memcpy(buf, host, alen);
  buf[alen] = '\0';
  if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
    return SK_EBADADDR;
  sin6->sin6_family = AF_INET6;
  if (pct != NULL) {
    uint32_t scope = 0;
    int rc = parse_scope(pct + 1, len - alen - 1, &scope);
    if (rc != 0)
      return rc;
    sin6->sin6_scope_id = scope;
  }
  return 0;
}

static int parse_v4_host(const char *host, size_t len,
                         struct sockaddr_in *sin) {
  char buf[INET_ADDRSTRLEN];

  memset(sin, 0, sizeof(*sin));
  if (len >= sizeof(buf))
    return SK_EBADADDR;
  memcpy(buf, host, len);
  buf[len] = '\0';
  if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1)
    return SK_EBADADDR;
  sin->sin_family = AF_INET;
  return 0;
}

int sk_endpoint_unix(sk_endpoint *ep, const char *path) {
  size_t n;

  if (ep == NULL || path == NULL)
    return -EINVAL;
  memset(ep, 0, sizeof(*ep));
  n = strlen(path);
  if (n == 0)
    return SK_EBADADDR;

  if (path[0] == '@') {
    /* Abstract names are not NUL-terminated: the length alone delimits
     * them, and the leading NUL byte in sun_path marks them as abstract. */
    size_t nlen = n - 1;
    if (nlen == 0)
      return SK_EBADADDR;
    if (1 + nlen > SUN_PATH_MAX)
      return -ENAMETOOLONG;
    ep->u.un.sun_path[0] = '\0';
    memcpy(ep->u.un.sun_path + 1, path + 1, nlen);
    ep->len = (socklen_t)(SUN_PATH_OFF + 1 + nlen);
  } else {
    /* Keep room for the terminating NUL, as the kernel reports it back
     * from getsockname() and portable code expects it. */
    if (n >= SUN_PATH_MAX)
      return -ENAMETOOLONG;
    memcpy(ep->u.un.sun_path, path, n + 1);
    ep->len = (socklen_t)(SUN_PATH_OFF + n + 1);
  }
  ep->u.un.sun_family = AF_UNIX;
  return 0;
}

int sk_endpoint_parse(sk_endpoint *ep, const char *text) {
  struct hostport hp;
  int rc;

  if (ep == NULL)
    return -EINVAL;
  memset(ep, 0, sizeof(*ep));
  if (text == NULL || *text == '\0')
    return SK_EBADADDR;
  if (is_unix_text(text))
    return sk_endpoint_unix(ep, text + UNIX_PREFIX_LEN);

  rc = split_hostport(text, &hp);
  if (rc != 0)
    return rc;

  if (hp.bracketed) {
    rc = parse_v6_host(hp.host, hp.hostlen, &ep->u.in6);
    if (rc != 0)
      goto fail;
    ep->u.in6.sin6_port = htons(hp.port);
    ep->len = sizeof(ep->u.in6);
  } else {
    rc = parse_v4_host(hp.host, hp.hostlen, &ep->u.in4);
    if (rc != 0)
      goto fail;
    ep->u.in4.sin_port = htons(hp.port);
    ep->len = sizeof(ep->u.in4);
  }
  return 0;

fail:
  memset(ep, 0, sizeof(*ep));
  return rc;
}

int sk_endpoint_split(const char *text, char *host, size_t hostlen,
                      uint16_t *port) {
  struct hostport hp;
  int rc;

  if (host != NULL && hostlen > 0)
    host[0] = '\0';
  rc = split_hostport(text, &hp);
  if (rc != 0)
    return rc;
  /* Brackets promise an IPv6 literal; checking it here keeps split and
   * parse in agreement on which texts are valid. */
  if (hp.bracketed) {
    struct sockaddr_in6 sin6;
    rc = parse_v6_host(hp.host, hp.hostlen, &sin6);
    if (rc != 0)
      return rc;
  }
  if (host != NULL) {
    if (hp.hostlen >= hostlen)
      return -ENAMETOOLONG;
    memcpy(host, hp.host, hp.hostlen);
    host[hp.hostlen] = '\0';
  }
  if (port != NULL)
    *port = hp.port;
  return 0;
}

/* Translates a getaddrinfo() failure. sys_errno is errno as it was right
 * after the call, for EAI_SYSTEM. */
static int map_gai_error(int rc, int sys_errno) {
  switch (rc) {
  case EAI_NONAME:
#ifdef EAI_NODATA
  case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
  /* The host exists but has no address of the requested family. */
  case EAI_ADDRFAMILY:
#endif
    return SK_ENOTFOUND;
  case EAI_AGAIN:
    return SK_EDNSAGAIN;
  case EAI_MEMORY:
    return -ENOMEM;
  case EAI_SYSTEM:
    return sys_errno > 0 ? -sys_errno : SK_EDNS;
  default:
    return SK_EDNS;
  }
}

/* Appends ep to out[0..n) unless an equal endpoint is already there.
 * Returns the new count. */
static size_t add_unique(sk_endpoint *out, size_t n, const sk_endpoint *ep) {
  size_t i;

  for (i = 0; i < n; i++)
    if (sk_endpoint_equal(&out[i], ep))
      return n;
  out[n] = *ep;
  return n + 1;
}

int sk_endpoint_resolve(const char *text, int family, int socktype,
                        sk_endpoint *out, size_t max) {
  struct hostport hp;
  struct addrinfo hints, *res = NULL, *ai;
  char host[NI_MAXHOST];
  sk_endpoint ep;
  size_t n = 0;
  int rc, sys_errno;

  if (text == NULL || out == NULL || max == 0)
    return -EINVAL;
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
    return -EAFNOSUPPORT;
  if (socktype != 0 && socktype != SOCK_STREAM && socktype != SOCK_DGRAM)
    return -EINVAL;

  if (is_unix_text(text)) {
    rc = sk_endpoint_parse(&out[0], text);
    return rc != 0 ? rc : 1;
  }

  rc = split_hostport(text, &hp);
  if (rc != 0)
    return rc;

  /* Numeric forms never need the resolver: parse them ourselves so that
   * resolve and parse accept and refuse exactly the same literals, and so
   * that the host's configured interfaces (AI_ADDRCONFIG) cannot hide a
   * literal address the caller asked for. */
  if (hp.bracketed || parse_v4_host(hp.host, hp.hostlen, &ep.u.in4) == 0) {
    rc = sk_endpoint_parse(&ep, text);
    if (rc != 0)
      return rc;
    if (family != AF_UNSPEC && sk_endpoint_family(&ep) != family)
      return SK_ENOTFOUND;
    out[0] = ep;
    return 1;
  }

  if (hp.hostlen >= sizeof(host))
    return -ENAMETOOLONG;
  memcpy(host, hp.host, hp.hostlen);
  host[hp.hostlen] = '\0';

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = family;
  hints.ai_socktype = socktype;
  /* With no family requested, skip families this host cannot reach (no
   * AAAA answers on an IPv4-only machine). With a family requested the
   * caller has decided, and AI_ADDRCONFIG would only turn "localhost" into
   * a failure on machines whose sole address of that family is loopback. */
  if (family == AF_UNSPEC)
    hints.ai_flags = AI_ADDRCONFIG;

  errno = 0;
  rc = getaddrinfo(host, NULL, &hints, &res);
  sys_errno = errno;
  if (rc != 0)
    return map_gai_error(rc, sys_errno);

  for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
      continue;
    if (ai->ai_addr == NULL || ai->ai_addrlen > sizeof(ep.u))
      continue;
    memset(&ep, 0, sizeof(ep));
    memcpy(&ep.u, ai->ai_addr, ai->ai_addrlen);
    ep.len = ai->ai_addrlen;
    sk_endpoint_set_port(&ep, hp.port);
    /* The same address comes back once per socket type when socktype is
     * 0, and /etc/hosts may list it twice; the caller wants addresses. */
    n = add_unique(out, n, &ep);
  }
  freeaddrinfo(res);
  return n > 0 ? (int)n : SK_ENOTFOUND;
}

/* Describes the name of a Unix endpoint: its bytes (without the leading NUL
 * of an abstract name) and whether it is abstract. A file-system path ends
 * at its first NUL, whatever the length says; an abstract name is exactly
 * as long as the length says and may contain any byte. */
static void unix_name(const sk_endpoint *ep, const char **name, size_t *len,
                      int *abstract) {
  size_t plen = ep->len > SUN_PATH_OFF ? ep->len - SUN_PATH_OFF : 0;
  const char *p = ep->u.un.sun_path;

  if (plen > SUN_PATH_MAX)
    plen = SUN_PATH_MAX;
  *abstract = plen > 0 && p[0] == '\0';
  if (*abstract) {
    *name = p + 1;
    *len = plen - 1;
  } else {
    *name = p;
    *len = strnlen(p, plen);
  }
}

int sk_endpoint_format(const sk_endpoint *ep, char *buf, size_t buflen) {
  char tmp[SK_ENDPOINT_STRLEN];
  sk_endpoint n;
  int len;

  if (ep == NULL || (buf == NULL && buflen > 0))
    return -EINVAL;
  n = *ep;
  sk_endpoint_normalize(&n);

  switch (sk_endpoint_family(&n)) {
  case AF_INET: {
    char addr[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &n.u.in4.sin_addr, addr, sizeof(addr)) == NULL)
      return -EAFNOSUPPORT;
    len = snprintf(tmp, sizeof(tmp), "%s:%u", addr,
                   (unsigned)ntohs(n.u.in4.sin_port));
    break;
  }
  case AF_INET6: {
    char addr[INET6_ADDRSTRLEN];
    char scope[IF_NAMESIZE > 16 ? IF_NAMESIZE : 16];
    if (inet_ntop(AF_INET6, &n.u.in6.sin6_addr, addr, sizeof(addr)) == NULL)
      return -EAFNOSUPPORT;
    if (n.u.in6.sin6_scope_id == 0) {
      len = snprintf(tmp, sizeof(tmp), "[%s]:%u", addr,
                     (unsigned)ntohs(n.u.in6.sin6_port));
      break;
    }
    /* Prefer the interface name, which is what people write; an index
     * with no interface behind it still round-trips as a number. */
    if (if_indextoname(n.u.in6.sin6_scope_id, scope) == NULL)
      snprintf(scope, sizeof(scope), "%u", (unsigned)n.u.in6.sin6_scope_id);
    len = snprintf(tmp, sizeof(tmp), "[%s%%%s]:%u", addr, scope,
                   (unsigned)ntohs(n.u.in6.sin6_port));
    break;
  }
  case AF_UNIX: {
    const char *name;
    size_t nlen;
    int abstract;
    unix_name(&n, &name, &nlen, &abstract);
    /* The text form cannot carry a NUL byte, so an abstract name that
     * contains one (possible only from the kernel) is shown up to it. */
    nlen = strnlen(name, nlen);
    len = snprintf(tmp, sizeof(tmp), "%s%s%.*s", UNIX_PREFIX,
                   abstract ? "@" : "", (int)nlen, name);
    break;
  }
  default:
    return -EAFNOSUPPORT;
  }

  if (len < 0 || (size_t)len >= sizeof(tmp))
    return -EAFNOSUPPORT;
  if ((size_t)len >= buflen)
    return -ENOSPC;
  memcpy(buf, tmp, (size_t)len + 1);
  return len;
}

int sk_endpoint_from_sockaddr(sk_endpoint *ep, const struct sockaddr *sa,
                              socklen_t len) {
  if (ep == NULL || sa == NULL)
    return -EINVAL;
  memset(ep, 0, sizeof(*ep));
  if (len < (socklen_t)sizeof(sa_family_t))
    return -EINVAL;

  switch (sa->sa_family) {
  case AF_INET:
    if (len < (socklen_t)sizeof(struct sockaddr_in))
      return -EINVAL;
    memcpy(&ep->u.in4, sa, sizeof(struct sockaddr_in));
    ep->len = sizeof(struct sockaddr_in);
    break;
  case AF_INET6:
    if (len < (socklen_t)sizeof(struct sockaddr_in6))
      return -EINVAL;
    memcpy(&ep->u.in6, sa, sizeof(struct sockaddr_in6));
    ep->len = sizeof(struct sockaddr_in6);
    break;
  case AF_UNIX:
    /* Some kernels report one byte more than sockaddr_un for a path that
     * fills sun_path; the extra byte is the NUL we do not store. */
    if (len > (socklen_t)sizeof(struct sockaddr_un))
      len = sizeof(struct sockaddr_un);
    memcpy(&ep->u.un, sa, len);
    ep->len = len;
    break;
  default:
    return -EAFNOSUPPORT;
  }
  sk_endpoint_normalize(ep);
  return 0;
}

void sk_endpoint_normalize(sk_endpoint *ep) {
  struct sockaddr_in sin;

  if (sk_endpoint_family(ep) != AF_INET6 ||
      !IN6_IS_ADDR_V4MAPPED(&ep->u.in6.sin6_addr))
    return;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = ep->u.in6.sin6_port;
  memcpy(&sin.sin_addr, &ep->u.in6.sin6_addr.s6_addr[12], 4);
  memset(&ep->u, 0, sizeof(ep->u));
  ep->u.in4 = sin;
  ep->len = sizeof(sin);
}

/* Builds a wildcard or loopback endpoint of an IP family. */
static int make_ip(sk_endpoint *ep, int family, uint16_t port, int loopback) {
  if (ep == NULL)
    return -EINVAL;
  memset(ep, 0, sizeof(*ep));
  switch (family) {
  case AF_INET:
    ep->u.in4.sin_family = AF_INET;
    ep->u.in4.sin_port = htons(port);
    ep->u.in4.sin_addr.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY);
    ep->len = sizeof(ep->u.in4);
    return 0;
  case AF_INET6:
    ep->u.in6.sin6_family = AF_INET6;
    ep->u.in6.sin6_port = htons(port);
    ep->u.in6.sin6_addr = loopback ? in6addr_loopback : in6addr_any;
    ep->len = sizeof(ep->u.in6);
    return 0;
  default:
    return -EAFNOSUPPORT;
  }
}

int sk_endpoint_any(sk_endpoint *ep, int family, uint16_t port) {
  return make_ip(ep, family, port, 0);
}

int sk_endpoint_loopback(sk_endpoint *ep, int family, uint16_t port) {
  return make_ip(ep, family, port, 1);
}

int sk_endpoint_family(const sk_endpoint *ep) {
  if (ep == NULL || ep->len == 0)
    return AF_UNSPEC;
  return ep->u.sa.sa_family;
}

uint16_t sk_endpoint_port(const sk_endpoint *ep) {
  switch (sk_endpoint_family(ep)) {
  case AF_INET:
    return ntohs(ep->u.in4.sin_port);
  case AF_INET6:
    return ntohs(ep->u.in6.sin6_port);
  default:
    return 0;
  }
}

int sk_endpoint_set_port(sk_endpoint *ep, uint16_t port) {
  switch (sk_endpoint_family(ep)) {
  case AF_INET:
    ep->u.in4.sin_port = htons(port);
    return 0;
  case AF_INET6:
    ep->u.in6.sin6_port = htons(port);
    return 0;
  default:
    return -EAFNOSUPPORT;
  }
}

int sk_endpoint_equal(const sk_endpoint *a, const sk_endpoint *b) {
  sk_endpoint x, y;

  if (a == NULL || b == NULL)
    return 0;
  x = *a;
  y = *b;
  sk_endpoint_normalize(&x);
  sk_endpoint_normalize(&y);
  if (sk_endpoint_family(&x) != sk_endpoint_family(&y))
    return 0;

  switch (sk_endpoint_family(&x)) {
  case AF_UNSPEC:
    return 1;
  case AF_INET:
    return x.u.in4.sin_port == y.u.in4.sin_port &&
           x.u.in4.sin_addr.s_addr == y.u.in4.sin_addr.s_addr;
  case AF_INET6:
    /* Flow labels are not part of an address's identity and have no text
     * form, so they are ignored. */
    return x.u.in6.sin6_port == y.u.in6.sin6_port &&
           x.u.in6.sin6_scope_id == y.u.in6.sin6_scope_id &&
           memcmp(&x.u.in6.sin6_addr, &y.u.in6.sin6_addr,
                  sizeof(x.u.in6.sin6_addr)) == 0;
  case AF_UNIX: {
    const char *na, *nb;
    size_t la, lb;
    int aa, ab;
    unix_name(&x, &na, &la, &aa);
    unix_name(&y, &nb, &lb, &ab);
    return aa == ab && la == lb && memcmp(na, nb, la) == 0;
  }
  default:
    return x.len == y.len && x.len <= sizeof(x.u) &&
           memcmp(&x.u, &y.u, x.len) == 0;
  }
}
