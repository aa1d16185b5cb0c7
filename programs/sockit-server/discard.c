/* discard (RFC 863): everything received is dropped; nothing is sent. The
 * server still reads at full speed, so this measures one-way throughput. */
#include "server.h"

static void discard_piece(struct conn *c, const sk_frame_piece *p) {
  (void)c;
  (void)p;
}

static void discard_dgram(struct udp_listener *u, const unsigned char *buf,
                          size_t len, const sk_endpoint *from) {
  (void)u;
  (void)buf;
  (void)len;
  (void)from;
}

const struct mode mode_discard = {
    .name = "discard",
    .summary = "read and drop everything (RFC 863)",
    .transports = MODE_STREAMS | MODE_UDP,
    .frames = MODE_ALL_FRAMES,
    .fds_per_conn = 1,
    .piece = discard_piece,
    .dgram = discard_dgram,
};
