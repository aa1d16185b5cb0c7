/* echo (RFC 862): every frame comes back unchanged, in order.
 *
 * Nothing is buffered here: each decoded piece is written straight back
 * (header on the first piece, payload as it comes, trailer on the last), so
 * a frame of any size costs no memory beyond what the kernel does not take
 * at once. */
#include "server.h"

#include "log.h"

static void echo_piece(struct conn *c, const sk_frame_piece *p) {
  sk_frame_mode fm = conn_cfg(c)->frame;
  unsigned char hdr[4];
  struct iovec iov[3];
  int n = 0;

  if (p->flags & SK_FRAME_BEGIN) {
    int hl = sk_frame_header(fm, p->frame_len, hdr);
    if (hl > 0) {
      iov[n].iov_base = hdr;
      iov[n++].iov_len = (size_t)hl;
    }
  }
  if (p->len > 0) {
    iov[n].iov_base = (void *)p->data;
    iov[n++].iov_len = p->len;
  }
  if (p->flags & SK_FRAME_END) {
    const char *t;
    size_t tl = sk_frame_trailer(fm, &t);
    if (tl > 0) {
      iov[n].iov_base = (void *)t;
      iov[n++].iov_len = tl;
    }
  }
  if (n > 0 && conn_send(c, iov, n) < 0)
    return;
  if ((p->flags & SK_FRAME_END) && log_level() >= LOG_DEBUG)
    log_msg(LOG_DEBUG, "sent %zu bytes to %s", conn_frame_len(c, p),
            conn_name(c));
}

static void echo_dgram(struct udp_listener *u, const unsigned char *buf,
                       size_t len, const sk_endpoint *from) {
  udp_reply(u, buf, len, from);
}

const struct mode mode_echo = {
    .name = "echo",
    .summary = "send every message back (RFC 862)",
    .transports = MODE_STREAMS | MODE_UDP,
    .frames = MODE_ALL_FRAMES,
    .fds_per_conn = 1,
    .piece = echo_piece,
    .dgram = echo_dgram,
};
