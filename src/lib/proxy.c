/* The PROXY protocol, versions 1 and 2 (proxy.h), after HAProxy's
 * proxy-protocol.txt: a parser and a formatter working on memory, and a
 * stream transport that reads a header off the start of a connection and
 * then hands the stream on (docs/ARCHITECTURE.md, "Transports in
 * sequence"). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "sockit/proxy.h"

/* ---- the format ---- */

#define V1_MAX       107 /* "PROXY ..." line, CRLF included */
#define V2_HDR       16  /* signature, ver_cmd, fam, len */
#define V2_UNIX_PATH 108
static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

enum { V2_LOCAL = 0x0, V2_PROXY = 0x1 };
enum { V2_UNSPEC = 0x0, V2_INET = 0x1, V2_INET6 = 0x2, V2_UNIX = 0x3 };
enum { V2_SOCK_UNSPEC = 0x0, V2_STREAM = 0x1, V2_DGRAM = 0x2 };

/* Bytes of the address block of a v2 family. */
static size_t v2_addr_size(unsigned fam) {
  switch (fam) {
  case V2_INET:
    return 12;
  case V2_INET6:
    return 36;
  case V2_UNIX:
    return 2 * V2_UNIX_PATH;
  default:
    return 0;
  }
}

/* ---- v1: one text line ---- */

enum { TOK_PROTO, TOK_SRC, TOK_DST, TOK_SPORT, TOK_DPORT, TOK_COUNT };

/* Checks one token of a "TCP4"/"TCP6" line: in full when whole, else
 * only that it may still become valid (characters and length). */
static int v1_token(int idx, int family, const char *t, size_t n, int whole,
                    sk_endpoint *src, sk_endpoint *dst, unsigned *sport,
                    unsigned *dport) {
  size_t i, max;
  char tmp[INET6_ADDRSTRLEN];

  if (n == 0)
    return whole ? -EPROTO : 0;
  if (idx == TOK_SRC || idx == TOK_DST) {
    max = family == AF_INET ? 15 : 39;
    if (n > max)
      return -EPROTO;
    for (i = 0; i < n; i++) {
      unsigned char c = (unsigned char)t[i];
      int ok = (c >= '0' && c <= '9') || c == '.' ||
               (family == AF_INET6 &&
                (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
      if (!ok)
        return -EPROTO;
    }
    if (!whole)
      return 0;
    memcpy(tmp, t, n);
    tmp[n] = '\0';
    sk_endpoint *ep = idx == TOK_SRC ? src : dst;
    if (family == AF_INET) {
      ep->u.in4.sin_family = AF_INET;
      if (inet_pton(AF_INET, tmp, &ep->u.in4.sin_addr) != 1)
        return -EPROTO;
      ep->len = sizeof(ep->u.in4);
    } else {
      ep->u.in6.sin6_family = AF_INET6;
      if (inet_pton(AF_INET6, tmp, &ep->u.in6.sin6_addr) != 1)
        return -EPROTO;
      ep->len = sizeof(ep->u.in6);
    }
    return 0;
  }
  /* A port: decimal 0..65535, no sign, no leading zero. */
  if (n > 5 || (t[0] == '0' && n > 1))
    return -EPROTO;
  unsigned v = 0;
  for (i = 0; i < n; i++) {
    if (t[i] < '0' || t[i] > '9')
      return -EPROTO;
    v = v * 10 + (unsigned)(t[i] - '0');
  }
  if (v > 65535)
    return -EPROTO;
  *(idx == TOK_SPORT ? sport : dport) = v;
  return 0;
}

/* Checks line[0..n) (no CRLF): the whole line when whole, else a
 * beginning of one. */
static int v1_line(const char *line, size_t n, int whole, sk_proxy_header *h) {
  static const char *const protos[] = {"TCP4", "TCP6", "UNKNOWN"};
  size_t pos = sizeof(v1_sig) - 1, i, start;
  int idx = TOK_PROTO, family = 0, rc;
  unsigned sport = 0, dport = 0;

  if (memcmp(line, v1_sig, n < pos ? n : pos) != 0)
    return -EPROTO;
  if (n < pos)
    return whole ? -EPROTO : 0;
  while (1) {
    int tok_whole;
    start = pos;
    while (pos < n && line[pos] != ' ')
      pos++;
    tok_whole = pos < n || whole;
    if (idx == TOK_PROTO) {
      size_t tn = pos - start, k;
      int match = -1;
      for (k = 0; k < 3; k++) {
        size_t pn = strlen(protos[k]);
        if (tok_whole ? tn == pn && memcmp(line + start, protos[k], pn) == 0
                      : tn <= pn && memcmp(line + start, protos[k], tn) == 0) {
          match = (int)k;
          break;
        }
      }
      if (match < 0)
        return -EPROTO;
      if (!tok_whole)
        return 0;
      if (match == 2) {
        /* "UNKNOWN": whatever follows up to the CRLF is ignored. */
        h->local = 1;
        return 0;
      }
      family = match == 0 ? AF_INET : AF_INET6;
    } else {
      rc = v1_token(idx, family, line + start, pos - start, tok_whole, &h->src,
                    &h->dst, &sport, &dport);
      if (rc != 0 || !tok_whole)
        return rc;
    }
    if (pos == n) /* the line ends here */
      break;
    /* A single space, then the next token. */
    pos++;
    if (++idx == TOK_COUNT)
      return -EPROTO;
    if (pos == n && !whole)
      return 0;
  }
  if (!whole)
    return 0;
  if (idx != TOK_DPORT)
    return -EPROTO;
  h->socktype = SOCK_STREAM;
  sk_endpoint_set_port(&h->src, (uint16_t)sport);
  sk_endpoint_set_port(&h->dst, (uint16_t)dport);
  for (i = 0; i < 2; i++)
    sk_endpoint_normalize(i == 0 ? &h->src : &h->dst);
  return 0;
}

static ssize_t parse_v1(const char *p, size_t len, sk_proxy_header *h) {
  /* The CR of the CRLF is at most at index V1_MAX - 2. */
  size_t lim = len < V1_MAX - 1 ? len : V1_MAX - 1, i;
  int rc;

  h->version = 1;
  for (i = 0; i < lim; i++) {
    if (p[i] == '\n')
      return -EPROTO; /* a LF not after a CR */
    if (p[i] != '\r')
      continue;
    if (i + 1 == len)
      break; /* the LF may still come */
    if (p[i + 1] != '\n')
      return -EPROTO;
    rc = v1_line(p, i, 1, h);
    if (rc != 0)
      return rc;
    h->length = i + 2;
    return (ssize_t)h->length;
  }
  if (i == lim && len >= V1_MAX)
    return -EPROTO; /* no CRLF within 107 bytes */
  /* A beginning: a CR may only be the very last byte. */
  rc = v1_line(p, i, 0, h);
  return rc != 0 ? rc : 0;
}

/* ---- v2: binary ---- */

/* A v2 Unix address: a NUL-terminated path, or, after a leading NUL, a
 * Linux abstract name (up to its last non-NUL byte); all NULs is an
 * unnamed socket. */
static int v2_unix(sk_endpoint *ep, const unsigned char *a) {
  size_t n;
  memset(ep, 0, sizeof(*ep));
  ep->u.un.sun_family = AF_UNIX;
  if (a[0] == 0) {
    n = V2_UNIX_PATH;
    while (n > 1 && a[n - 1] == 0)
      n--;
    if (n == 1)
      n = 0; /* unnamed */
    memcpy(ep->u.un.sun_path, a, n);
  } else {
    n = strnlen((const char *)a, V2_UNIX_PATH);
    if (n == V2_UNIX_PATH)
      return -EPROTO; /* no NUL within the field */
    memcpy(ep->u.un.sun_path, a, n);
    n++; /* the NUL, as sk_endpoint_unix() keeps it */
  }
  ep->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  return 0;
}

static ssize_t parse_v2(const unsigned char *p, size_t len,
                        sk_proxy_header *h) {
  unsigned cmd, fam = 0, proto = 0;
  size_t total, need;

  h->version = 2;
  if (memcmp(p, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0)
    return -EPROTO;
  if (len < 13)
    return 0;
  if ((p[12] >> 4) != 2)
    return -EPROTO;
  cmd = p[12] & 0xF;
  if (cmd != V2_LOCAL && cmd != V2_PROXY)
    return -EPROTO;
  if (len < 14)
    return 0;
  /* LOCAL: the family is ignored, as the specification says. PROXY: the
   * specification's combinations only, UNSPEC with UNSPEC or a known family
   * with STREAM or DGRAM. */
  if (cmd == V2_PROXY) {
    fam = p[13] >> 4;
    proto = p[13] & 0xF;
    if (fam > V2_UNIX || proto > V2_DGRAM ||
        (fam == V2_UNSPEC) != (proto == V2_SOCK_UNSPEC))
      return -EPROTO;
  }
  if (len < V2_HDR)
    return 0;
  total = V2_HDR + (((size_t)p[14] << 8) | p[15]);
  need = v2_addr_size(fam);
  if (total < V2_HDR + need)
    return -EPROTO;
  if (len < V2_HDR + need)
    return 0;
  h->length = total;
  h->socktype = proto == V2_STREAM  ? SOCK_STREAM
                : proto == V2_DGRAM ? SOCK_DGRAM
                                    : 0;
  const unsigned char *a = p + V2_HDR;
  switch (fam) {
  case V2_INET:
    h->src.u.in4.sin_family = h->dst.u.in4.sin_family = AF_INET;
    memcpy(&h->src.u.in4.sin_addr, a, 4);
    memcpy(&h->dst.u.in4.sin_addr, a + 4, 4);
    memcpy(&h->src.u.in4.sin_port, a + 8, 2);
    memcpy(&h->dst.u.in4.sin_port, a + 10, 2);
    h->src.len = h->dst.len = sizeof(struct sockaddr_in);
    break;
  case V2_INET6:
    h->src.u.in6.sin6_family = h->dst.u.in6.sin6_family = AF_INET6;
    memcpy(&h->src.u.in6.sin6_addr, a, 16);
    memcpy(&h->dst.u.in6.sin6_addr, a + 16, 16);
    memcpy(&h->src.u.in6.sin6_port, a + 32, 2);
    memcpy(&h->dst.u.in6.sin6_port, a + 34, 2);
    h->src.len = h->dst.len = sizeof(struct sockaddr_in6);
    sk_endpoint_normalize(&h->src);
    sk_endpoint_normalize(&h->dst);
    break;
  case V2_UNIX:
    if (v2_unix(&h->src, a) != 0 || v2_unix(&h->dst, a + V2_UNIX_PATH) != 0)
      return -EPROTO;
    break;
  default: /* LOCAL, or PROXY with family UNSPEC: no addresses */
    h->local = 1;
    break;
  }
  return (ssize_t)(len < total ? len : total);
}

ssize_t sk_proxy_parse(const void *buf, size_t len, sk_proxy_header *h) {
  const unsigned char *p = buf;
  ssize_t rc;

  if (h == NULL || (buf == NULL && len > 0))
    return -EINVAL;
  memset(h, 0, sizeof(*h));
  if (len == 0)
    return 0;
  if (p[0] == v1_sig[0])
    rc = parse_v1(buf, len, h);
  else if (p[0] == v2_sig[0])
    rc = parse_v2(p, len, h);
  else
    rc = -EPROTO;
  if (rc <= 0 || h->local) {
    /* Nothing half-filled is left behind. */
    memset(&h->src, 0, sizeof(h->src));
    memset(&h->dst, 0, sizeof(h->dst));
    if (rc <= 0)
      memset(h, 0, sizeof(*h));
  }
  return rc;
}

/* ---- formatting ---- */

/* Writes sun_path of ep into a 108-byte v2 field. -1 if it cannot. */
static int v2_put_unix(unsigned char *f, const sk_endpoint *ep) {
  size_t off = offsetof(struct sockaddr_un, sun_path);
  size_t n = ep->len > off ? ep->len - off : 0;
  memset(f, 0, V2_UNIX_PATH);
  if (n > V2_UNIX_PATH)
    n = V2_UNIX_PATH;
  if (n > 0 && ep->u.un.sun_path[0] != 0) {
    n = strnlen(ep->u.un.sun_path, n);
    if (n >= V2_UNIX_PATH)
      return -1; /* no room for the NUL */
  }
  memcpy(f, ep->u.un.sun_path, n);
  return 0;
}

/* ep (IPv4) as its IPv4-mapped IPv6 address; returns AF_INET6. */
static int map_v6(sk_endpoint *ep) {
  struct sockaddr_in in4 = ep->u.in4;
  memset(ep, 0, sizeof(*ep));
  ep->u.in6.sin6_family = AF_INET6;
  ep->u.in6.sin6_port = in4.sin_port;
  ep->u.in6.sin6_addr.s6_addr[10] = ep->u.in6.sin6_addr.s6_addr[11] = 0xff;
  memcpy(&ep->u.in6.sin6_addr.s6_addr[12], &in4.sin_addr, 4);
  ep->len = sizeof(ep->u.in6);
  return AF_INET6;
}

ssize_t sk_proxy_format(void *buf, size_t size, int version,
                        const sk_endpoint *src, const sk_endpoint *dst) {
  unsigned char out[SK_PROXY_MAX_FORMAT];
  sk_endpoint s, d;
  int fam = AF_UNSPEC;

  memset(&s, 0, sizeof(s));
  memset(&d, 0, sizeof(d));
  size_t n;

  if ((version != 1 && version != 2) || (buf == NULL && size > 0))
    return -EINVAL;
  if (src != NULL && dst != NULL) {
    s = *src;
    d = *dst;
    sk_endpoint_normalize(&s);
    sk_endpoint_normalize(&d);
    fam = sk_endpoint_family(&s);
    /* One IPv4, one IPv6: both as IPv6, the IPv4 one mapped. */
    if (fam == AF_INET && sk_endpoint_family(&d) == AF_INET6)
      fam = map_v6(&s);
    else if (fam == AF_INET6 && sk_endpoint_family(&d) == AF_INET)
      map_v6(&d);
    if (fam != sk_endpoint_family(&d) ||
        (fam != AF_INET && fam != AF_INET6 && (fam != AF_UNIX || version == 1)))
      fam = AF_UNSPEC;
  }
  if (version == 1) {
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    int len;
    if (fam == AF_INET &&
        inet_ntop(AF_INET, &s.u.in4.sin_addr, a, sizeof(a)) != NULL &&
        inet_ntop(AF_INET, &d.u.in4.sin_addr, b, sizeof(b)) != NULL)
      len = snprintf((char *)out, sizeof(out), "PROXY TCP4 %s %s %u %u\r\n", a,
                     b, (unsigned)sk_endpoint_port(&s),
                     (unsigned)sk_endpoint_port(&d));
    else if (fam == AF_INET6 &&
             inet_ntop(AF_INET6, &s.u.in6.sin6_addr, a, sizeof(a)) != NULL &&
             inet_ntop(AF_INET6, &d.u.in6.sin6_addr, b, sizeof(b)) != NULL)
      len = snprintf((char *)out, sizeof(out), "PROXY TCP6 %s %s %u %u\r\n", a,
                     b, (unsigned)sk_endpoint_port(&s),
                     (unsigned)sk_endpoint_port(&d));
    else
      len = snprintf((char *)out, sizeof(out), "PROXY UNKNOWN\r\n");
    n = (size_t)len;
  } else {
    unsigned char *a = out + V2_HDR;
    size_t alen = 0;
    memcpy(out, v2_sig, sizeof(v2_sig));
    switch (fam) {
    case AF_INET:
      memcpy(a, &s.u.in4.sin_addr, 4);
      memcpy(a + 4, &d.u.in4.sin_addr, 4);
      memcpy(a + 8, &s.u.in4.sin_port, 2);
      memcpy(a + 10, &d.u.in4.sin_port, 2);
      alen = 12;
      out[13] = V2_INET << 4 | V2_STREAM;
      break;
    case AF_INET6:
      memcpy(a, &s.u.in6.sin6_addr, 16);
      memcpy(a + 16, &d.u.in6.sin6_addr, 16);
      memcpy(a + 32, &s.u.in6.sin6_port, 2);
      memcpy(a + 34, &d.u.in6.sin6_port, 2);
      alen = 36;
      out[13] = V2_INET6 << 4 | V2_STREAM;
      break;
    case AF_UNIX:
      if (v2_put_unix(a, &s) == 0 && v2_put_unix(a + V2_UNIX_PATH, &d) == 0) {
        alen = 2 * V2_UNIX_PATH;
        out[13] = V2_UNIX << 4 | V2_STREAM;
      }
      break;
    default:
      break;
    }
    out[12] = (unsigned char)(0x20 | (alen > 0 ? V2_PROXY : V2_LOCAL));
    if (alen == 0)
      out[13] = 0;
    out[14] = (unsigned char)(alen >> 8);
    out[15] = (unsigned char)(alen & 0xFF);
    n = V2_HDR + alen;
  }
  if (n > size)
    return -ENOSPC;
  memcpy(buf, out, n);
  return (ssize_t)n;
}

/* ---- the transport: reading a header off a stream ---- */

/* Room for the part of a header that is kept: a v1 line, or a v2 header
 * up to the end of its address block (TLVs are skipped, not kept). */
#define KEEP_MAX (V2_HDR + 2 * V2_UNIX_PATH)

struct proxy_rd {
  sk_proxy_cb cb;
  size_t have;       /* bytes in buf */
  size_t skip;       /* v2 TLV bytes still to skip */
  sk_proxy_header h; /* parsed, while skipping */
  unsigned char buf[KEEP_MAX];
};

/* Bytes that followed the header, kept because the stream went plain
 * while its user did not read: delivered when reading starts. */
struct proxy_hold {
  struct sk__pending pend;
  sk_stream *s;
  size_t len;
  unsigned char data[];
};

static const struct sk__transport hold_transport;
static const struct sk__transport fail_transport;
static void hold_close(sk_stream *s);

static int tp_sendv(sk_stream *s, const struct iovec *iov, int iovcnt,
                    sk_send_cb cb, void *arg) {
  return sk__stream_raw_sendv(s, iov, iovcnt, cb, arg);
}

static int tp_shutdown(sk_stream *s, sk_send_cb cb, void *arg) {
  return sk__stream_raw_shutdown(s, cb, arg);
}

/* Bytes that could not be kept (out of memory) fail the stream, rather
 * than leave a gap: sends fail with -ENOMEM, and so does reading, at once
 * (the socket, shut for reading, is readable, and whatever it gives is
 * -ENOMEM to the user). */
static void fail_stream(sk_stream *s) {
  if (s->tp == &hold_transport)
    s->tp->close(s);
  sk__stream_write_fail(s, -ENOMEM, NULL, NULL);
  (void)shutdown(s->sock.fd, SHUT_RD);
  sk__stream_transport_set(s, &fail_transport, NULL);
}

static void fail_input(sk_stream *s, const unsigned char *buf, ssize_t n) {
  SK__UNUSED(buf);
  SK__UNUSED(n);
  sk__stream_deliver(s, -ENOMEM, NULL);
}

static void fail_resume(sk_stream *s) {
  SK__UNUSED(s); /* the socket is readable: input() tells the user */
}

static unsigned fail_wants(const sk_stream *s) {
  SK__UNUSED(s);
  return 0;
}

static void fail_close(sk_stream *s) {
  SK__UNUSED(s);
}

static const struct sk__transport fail_transport = {
    .name = "proxy-failed",
    .input = fail_input,
    .sendv = tp_sendv,
    .shutdown = tp_shutdown,
    .resume = fail_resume,
    .wants = fail_wants,
    .close = fail_close,
    .flags = 0,
};

/* Hands buf[0..n) to the stream's transport now if it can take it (a
 * next transport, or a plain stream whose user reads); else keeps it, and
 * offers it to a relay that owns the stream (relay.c sends it on and ends
 * the hold, so that a splicing relay does not leave it behind). */
static void feed(sk_stream *s, const unsigned char *buf, size_t n) {
  struct proxy_hold *k;
  if (n == 0 || sk_is_closing(&s->h))
    return;
  if (s->tp == &hold_transport) { /* keeps more */
    struct proxy_hold *o = s->tpdata;
    sk__pending_remove(s->h.loop, &o->pend); /* it moves */
    k = realloc(o, sizeof(*o) + o->len + n);
    if (k == NULL) {
      fail_stream(s);
      return;
    }
    memcpy(k->data + k->len, buf, n);
    k->len += n;
    s->tpdata = k;
  } else if (s->tp != &sk__transport_plain || sk__stream_user_reading(s)) {
    sk__stream_transport_input(s, buf, n);
    return;
  } else {
    k = malloc(sizeof(*k) + n);
    if (k == NULL) {
      fail_stream(s);
      return;
    }
    memset(&k->pend, 0, sizeof(k->pend));
    k->s = s;
    k->len = n;
    memcpy(k->data, buf, n);
    sk__stream_transport_set(s, &hold_transport, k);
  }
  if (sk__stream_relay(s) != NULL)
    sk__relay_held(sk__stream_relay(s), s);
}

/* ---- what a relay needs of the hold (internal.h) ---- */

size_t sk__stream_held(const sk_stream *s, const unsigned char **data) {
  const struct proxy_hold *k = s->tpdata;
  if (s->tp != &hold_transport)
    return 0;
  *data = k->data;
  return k->len;
}

void sk__stream_held_drop(sk_stream *s) {
  if (s->tp == &hold_transport) {
    hold_close(s);
    sk__stream_transport_end(s);
  }
}

/* Leaves the hold: the stream goes plain, the kept bytes go on. */
static void hold_release(sk_stream *s) {
  struct proxy_hold *k = s->tpdata;
  sk__pending_remove(s->h.loop, &k->pend);
  sk__stream_transport_end(s);
  feed(s, k->data, k->len);
  free(k);
}

static void hold_input(sk_stream *s, const unsigned char *buf, ssize_t n) {
  /* Only read while the user reads (wants() is 0): the kept bytes first. */
  hold_release(s);
  if (n > 0) {
    feed(s, buf, (size_t)n);
  } else if (s->tp == &sk__transport_plain) {
    s->tp->input(s, buf, n);
  } else if (s->tp == &hold_transport) {
    /* The user stopped reading: the end comes again when it reads. */
  } else {
    s->tp->input(s, buf, n);
  }
}

static void hold_pending(struct sk__pending *p) {
  struct proxy_hold *k = sk__container_of(p, struct proxy_hold, pend);
  sk_stream *s = k->s;
  if (!sk_is_closing(&s->h) && s->tp == &hold_transport &&
      sk__stream_user_reading(s))
    hold_release(s);
}

static void hold_resume(sk_stream *s) {
  struct proxy_hold *k = s->tpdata;
  sk__pending_add(s->h.loop, &k->pend, hold_pending);
}

static unsigned hold_wants(const sk_stream *s) {
  SK__UNUSED(s);
  return 0;
}

static void hold_close(sk_stream *s) {
  struct proxy_hold *k = s->tpdata;
  sk__pending_remove(s->h.loop, &k->pend);
  free(k);
}

static const struct sk__transport hold_transport = {
    .name = "proxy-hold",
    .input = hold_input,
    .sendv = tp_sendv,
    .shutdown = tp_shutdown,
    .resume = hold_resume,
    .wants = hold_wants,
    .close = hold_close,
    .flags = 0, /* the kernel must not peek past the kept bytes */
};

/* The header is read (status 0, rest the bytes after it) or failed: the
 * stream goes plain, the state goes, the user hears. */
static void rd_done(sk_stream *s, int status, const unsigned char *rest,
                    size_t n) {
  struct proxy_rd *r = s->tpdata;
  sk_proxy_cb cb = r->cb;
  sk_proxy_header h = r->h;
  sk__stream_transport_end(s);
  free(r);
  cb(s, status, status == 0 ? &h : NULL);
  if (status == 0)
    feed(s, rest, n);
}

static void rd_input(sk_stream *s, const unsigned char *buf, ssize_t n) {
  struct proxy_rd *r = s->tpdata;
  size_t take;
  ssize_t rc;

  if (n <= 0) {
    rd_done(s, (int)n, NULL, 0);
    return;
  }
  if (r->skip > 0) {
    take = (size_t)n < r->skip ? (size_t)n : r->skip;
    r->skip -= take;
    if (r->skip == 0)
      rd_done(s, 0, buf + take, (size_t)n - take);
    return;
  }
  /* Keep what may belong to the header, parse what is kept. */
  take = sizeof(r->buf) - r->have;
  if (take > (size_t)n)
    take = (size_t)n;
  memcpy(r->buf + r->have, buf, take);
  rc = sk_proxy_parse(r->buf, r->have + take, &r->h);
  if (rc == 0 && r->have + take < sizeof(r->buf)) {
    r->have += take;
    return;
  }
  if (rc <= 0) {
    rd_done(s, -EPROTO, NULL, 0);
    return;
  }
  /* The header ends h.length bytes into the stream, of which r->have came
   * before this read. */
  size_t in_hdr = r->h.length - r->have;
  if (in_hdr > (size_t)n) {
    r->skip = in_hdr - (size_t)n;
    return;
  }
  rd_done(s, 0, buf + in_hdr, (size_t)n - in_hdr);
}

static void rd_resume(sk_stream *s) {
  SK__UNUSED(s); /* nothing for the user until the header is read */
}

static unsigned rd_wants(const sk_stream *s) {
  SK__UNUSED(s);
  return SK__IO_READ; /* the header is read whether the user reads or not */
}

static void rd_close(sk_stream *s) {
  free(s->tpdata); /* no callback after close */
}

static const struct sk__transport proxy_transport = {
    .name = "proxy",
    .input = rd_input,
    .sendv = tp_sendv,
    .shutdown = tp_shutdown,
    .resume = rd_resume,
    .wants = rd_wants,
    .close = rd_close,
    .flags = SK__TP_RAW,
};

int sk_stream_proxy_accept(sk_stream *s, sk_proxy_cb cb) {
  struct proxy_rd *r;
  int rc;

  if (s == NULL || cb == NULL)
    return -EINVAL;
  rc = sk__stream_transport_check(s);
  if (rc == -EALREADY || (rc == 0 && (s->sflags & SK__S_READING)))
    return -EBUSY;
  if (rc != 0)
    return rc;
  r = calloc(1, sizeof(*r));
  if (r == NULL)
    return -ENOMEM;
  r->cb = cb;
  sk__stream_transport_set(s, &proxy_transport, r);
  return 0;
}
