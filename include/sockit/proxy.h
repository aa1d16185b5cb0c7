/* The PROXY protocol, versions 1 and 2 (HAProxy's specification,
 * https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt): a load
 * balancer or proxy prefixes each connection it opens to a server with a
 * header naming the client's address, so the server sees who really
 * connected.
 *
 *  - sk_proxy_parse() reads a header from memory;
 *  - sk_proxy_format() writes one (v1 text or v2 binary);
 *  - sk_stream_proxy_accept() reads one from the start of a connected
 *    stream, as a transport step: bytes after the header stay in the
 *    stream, so TLS (sk_stream_tls_start() from the callback) or plain
 *    receiving continues with them.
 */
#ifndef SOCKIT_PROXY_H
#define SOCKIT_PROXY_H

#include <stddef.h>
#include <sys/types.h>

#include "endpoint.h"
#include "stream.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest header sk_proxy_format() writes: a v2 header with two Unix
 * addresses (16 + 216 bytes); a v1 header is at most 107 bytes. */
#define SK_PROXY_MAX_FORMAT 232

typedef struct sk_proxy_header {
  int version; /* 1 or 2 */
  /* 1: the header carries no addresses (v2 LOCAL, e.g. a health check
   * from the proxy itself; v1 "UNKNOWN"; v2 PROXY with family UNSPEC):
   * keep the connection's own addresses. src and dst are then empty. */
  int local;
  int socktype;    /* SOCK_STREAM, SOCK_DGRAM, or 0 (unknown/unspecified) */
  sk_endpoint src; /* the client, as the proxy saw it */
  sk_endpoint dst; /* the address the client connected to */
  /* The whole header's length in bytes, TLVs included (v2: 16 + the
   * length field). */
  size_t length;
} sk_proxy_header;

/* Reads a header at the start of buf[0..len).
 *
 * v1 is read strictly: "PROXY", then "TCP4", "TCP6" or "UNKNOWN", each
 * after one space; for TCP4/TCP6 four more fields after single spaces
 * (source and destination address, as inet_pton() of that family takes
 * them, then source and destination port, decimal 0..65535 without sign
 * or leading zero), then CRLF, all within 107 bytes. After "UNKNOWN"
 * anything up to the CRLF is ignored.
 * v2: the 12-byte signature, version 2, command LOCAL or PROXY, for PROXY
 * one of the specification's family/transport bytes: UNSPEC with UNSPEC
 * (0x00), or INET, INET6, UNIX with STREAM or DGRAM (0x11, 0x12, 0x21,
 * 0x22, 0x31, 0x32; any other is malformed), a length at least the
 * family's address block (12, 36, 216 bytes). LOCAL ignores the family
 * and the addresses, as the specification says. A Unix address is a path
 * NUL-terminated within its 108 bytes; one starting with a NUL is a Linux
 * abstract name (up to its last non-NUL byte, "unix:@name"), all NULs an
 * unnamed socket (AF_UNIX, no path). Addresses come out normalised (endpoint.h:
 * an IPv4-mapped IPv6 address is IPv4), so a TCP6 line may give IPv4 endpoints.
 * A first byte other than 'P' or CR fails at once: a client that sends no
 * header fails on its first bytes, without waiting for more.
 *
 * Returns:
 *   > 0  the header is valid: h is filled in, and the value is the number
 *        of bytes of buf that make it up, at most h->length. For v2 it may
 *        be less than h->length when the TLVs have not all arrived: the
 *        caller skips the h->length - returned bytes still to come (TLVs
 *        are not interpreted);
 *   0    buf is a valid beginning of a header, more bytes are needed;
 *   -EPROTO  not a PROXY header, or a malformed one (bad signature,
 *        version, command, family or length, a v1 line over 107 bytes or
 *        without CRLF, addresses that do not parse or do not match the
 *        family, ports out of range).
 * Never reads past buf[len - 1]; no allocation. */
SK_EXTERN ssize_t sk_proxy_parse(const void *buf, size_t len,
                                 sk_proxy_header *h);

/* Writes a header of version 1 or 2 into buf (size bytes;
 * SK_PROXY_MAX_FORMAT is always enough) telling that src connected to dst
 * over a stream. An IPv4 and an IPv6 endpoint (a client of one family
 * reaching a listener of the other) are written as IPv6, the IPv4 one
 * IPv4-mapped (v1 TCP6, v2 INET6). src == NULL (or an IP and a Unix
 * endpoint, or Unix in v1) writes v1 "PROXY UNKNOWN" or a v2 LOCAL
 * header; so does a Unix path filling sun_path without a NUL. v2
 * carries Unix paths and abstract names. Addresses are normalised first
 * (endpoint.h). Returns the header's length, or -EINVAL (bad version),
 * -ENOSPC (size too small). */
SK_EXTERN ssize_t sk_proxy_format(void *buf, size_t size, int version,
                                  const sk_endpoint *src,
                                  const sk_endpoint *dst);

/* The header has been read (status 0, h valid during the call) or could
 * not be (status -EPROTO: not a valid header; SK_EOF or a negative errno:
 * the connection ended or failed before the header was complete). On
 * status 0 the stream is plain again, with the bytes that followed the
 * header still to be received: the callback may start TLS
 * (sk_stream_tls_start()) or receiving. On failure the caller closes the
 * stream. */
typedef void (*sk_proxy_cb)(sk_stream *s, int status, const sk_proxy_header *h);

/* Reads a PROXY header (v1 or v2) from the start of the connected stream
 * s (nothing received from it yet, no transport installed), then calls
 * cb once. Memory held while waiting is bounded by a small fixed buffer
 * (v2 TLVs are skipped as they arrive, not kept). The caller bounds the
 * time (a timer that closes s). Closing s while waiting: no callback, the
 * state is freed.
 * Sends made while the header is awaited go out unchanged (plain).
 * Bytes that came after the header in the same read go to what the
 * callback started: TLS, or the user's receiving. If it started neither,
 * they are kept (at most one read's worth) and delivered when receiving
 * starts; TLS must then be started from the callback itself, since until
 * those bytes are delivered the stream has a transport installed
 * (sk_stream_tls_start() would fail with -EALREADY). A relay (relay.h)
 * started on s, from the callback or later, sends them on first and
 * still splices. If they cannot be kept (out of memory), the stream
 * fails rather than skip them: its sends, and its receiving once started,
 * end with -ENOMEM.
 * Returns 0, or -EBUSY (receiving or a transport installed), -ENOTCONN,
 * -EBADF (closing), -EINVAL (cb NULL), -ENOMEM. */
SK_EXTERN int sk_stream_proxy_accept(sk_stream *s, sk_proxy_cb cb);

#ifdef __cplusplus
}
#endif

#endif
