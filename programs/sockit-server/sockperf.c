/* sockperf: the echo that sockperf's own client expects, so that a load
 * generator nobody here wrote can measure sockit-server (its ping-pong and
 * under-load modes do not accept a plain byte echo).
 *
 * sockperf frames each message with a 14-byte big-endian header: an 8-byte
 * sequence number, 2 bytes of flags and the 4-byte length of the whole
 * message, header included. Flag 1 marks a message from a client and flag 2
 * asks for a reply. A message that asks is sent back with flag 1 cleared;
 * one that does not (throughput mode) is dropped, as sockperf's server
 * does. Only the header is buffered (14 bytes per connection, allocated
 * while a header is split between reads); the rest streams through, and the
 * replies to one read leave in one sendv. Over UDP (sp_dgram) a datagram
 * is a message. */
#include "server.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SP_HDR         14
#define SP_FLAG_CLIENT 0x0001u
#define SP_FLAG_REPLY  0x0002u

struct sp_state {
  unsigned char hdr[SP_HDR];
  unsigned have; /* header bytes so far */
  uint32_t left; /* body bytes of the current message still to come */
  int reply;     /* the current message is echoed */
};

static struct sp_state *state(struct conn *c) {
  if (c->mode_data == NULL)
    c->mode_data = calloc(1, sizeof(struct sp_state));
  return c->mode_data;
}

/* The replies produced by one read, sent with one sendv: header and body of
 * a message must leave in the same segment, or the client wakes up for a
 * bare header and pays a second wake-up for the body. */
#define SP_BATCH 64
struct sp_out {
  struct iovec iov[2 * SP_BATCH];
  unsigned char hdr[SP_BATCH][SP_HDR];
  int niov, nhdr;
};

static int sp_flush(struct conn *c, struct sp_out *o) {
  int rc = o->niov > 0 ? conn_send(c, o->iov, o->niov) : 0;
  o->niov = o->nhdr = 0;
  return rc;
}

static void sp_add(struct sp_out *o, const void *p, size_t n) {
  struct iovec *last = o->niov > 0 ? &o->iov[o->niov - 1] : NULL;
  if (last != NULL && (const char *)last->iov_base + last->iov_len == p) {
    last->iov_len += n; /* contiguous with the previous piece */
    return;
  }
  o->iov[o->niov].iov_base = (void *)p;
  o->iov[o->niov].iov_len = n;
  o->niov++;
}

/* The header is complete: check it, and queue it for sending back (flag
 * cleared) if a reply is asked for. Returns -1 if the connection was
 * closed. */
static int sp_header(struct conn *c, struct sp_state *st, struct sp_out *o) {
  uint16_t flags = (uint16_t)(st->hdr[8] << 8 | st->hdr[9]);
  uint32_t len = (uint32_t)st->hdr[10] << 24 | (uint32_t)st->hdr[11] << 16 |
                 (uint32_t)st->hdr[12] << 8 | st->hdr[13];
  st->have = 0;
  if (len < SP_HDR || len > conn_cfg(c)->max_frame) {
    log_error("%s: sockperf message length %u out of range (14-%zu), "
              "closing the connection",
              conn_name(c), len, conn_cfg(c)->max_frame);
    if (sp_flush(c, o) == 0) /* the replies owed before it still go out */
      conn_close(c, "bad sockperf header");
    return -1;
  }
  st->left = len - SP_HDR;
  st->reply = (flags & SP_FLAG_REPLY) != 0;
  if (!st->reply)
    return 0;
  if (o->nhdr == SP_BATCH && sp_flush(c, o) < 0)
    return -1;
  flags &= (uint16_t)~SP_FLAG_CLIENT;
  st->hdr[8] = (unsigned char)(flags >> 8);
  st->hdr[9] = (unsigned char)flags;
  memcpy(o->hdr[o->nhdr], st->hdr, SP_HDR);
  sp_add(o, o->hdr[o->nhdr++], SP_HDR);
  return 0;
}

static void sp_data(struct conn *c, const unsigned char *buf, size_t len) {
  struct sp_state *st = state(c);
  struct sp_out o;
  if (st == NULL) {
    conn_close(c, "out of memory");
    return;
  }
  o.niov = o.nhdr = 0;
  while (len > 0) {
    if (st->left > 0) {
      size_t n = len < st->left ? len : st->left;
      if (st->reply) {
        if (o.niov == 2 * SP_BATCH && sp_flush(c, &o) < 0)
          return;
        sp_add(&o, buf, n);
      }
      st->left -= (uint32_t)n;
      buf += n;
      len -= n;
      continue;
    }
    size_t n = SP_HDR - st->have < len ? SP_HDR - st->have : len;
    memcpy(st->hdr + st->have, buf, n);
    st->have += (unsigned)n;
    buf += n;
    len -= n;
    if (st->have == SP_HDR && sp_header(c, st, &o) < 0)
      return;
  }
  sp_flush(c, &o);
}

/* Over UDP each datagram is one message, header first. A message that asks
 * for a reply goes back to its sender whole, flag 1 cleared; anything else
 * is dropped (a datagram shorter than the header, or whose length field
 * disagrees with its size, with a debug line). */
#define SP_UDP_STACK 2048
static void sp_dgram(struct udp_listener *u, const unsigned char *buf,
                     size_t len, const sk_endpoint *from) {
  unsigned char small[SP_UDP_STACK], *out = small;
  uint16_t flags;
  uint32_t mlen;
  if (len < SP_HDR)
    goto bad;
  flags = (uint16_t)(buf[8] << 8 | buf[9]);
  mlen = (uint32_t)buf[10] << 24 | (uint32_t)buf[11] << 16 |
         (uint32_t)buf[12] << 8 | buf[13];
  if (mlen != len)
    goto bad;
  if (!(flags & SP_FLAG_REPLY))
    return;
  if (len > sizeof(small) && (out = malloc(len)) == NULL)
    return;
  memcpy(out, buf, len);
  flags &= (uint16_t)~SP_FLAG_CLIENT;
  out[8] = (unsigned char)(flags >> 8);
  out[9] = (unsigned char)flags;
  udp_reply(u, out, len, from);
  if (out != small)
    free(out);
  return;
bad:
  if (log_level() >= LOG_DEBUG) {
    char a[SK_ENDPOINT_STRLEN];
    sk_endpoint_format(from, a, sizeof(a));
    log_msg(LOG_DEBUG, "%s: not a sockperf message (%zu bytes), dropped", a,
            len);
  }
}

static void sp_close(struct conn *c) {
  free(c->mode_data);
  c->mode_data = NULL;
}

const struct mode mode_sockperf = {
    .name = "sockperf",
    .summary = "echo for sockperf's client (its 14-byte message header)",
    .transports = MODE_STREAMS | MODE_UDP,
    .frames = 0, /* its own 14-byte header */
    .fds_per_conn = 1,
    .data = sp_data,
    .dgram = sp_dgram,
    .close = sp_close,
};
