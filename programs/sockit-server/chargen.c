/* chargen (RFC 864): on connect the server sends the standard pattern until
 * the client closes; input is discarded. UDP: each datagram is answered with
 * the next lines of the pattern, as many as the sender's byte budget allows
 * (six at most).
 *
 * The pattern repeats every 95 lines, so one static copy of a whole period
 * is all the state there is: sending it again and again continues the
 * pattern exactly. */
#include "server.h"

#include <pthread.h>
#include <string.h>

/* Chunks sent per turn while the kernel takes everything at once; the last
 * one carries a completion callback that starts the next turn, so one
 * client never holds the loop for long. */
#define CHARGEN_BURST 16
#define CHARGEN_LINE  74 /* 72 characters + "\r\n" */
#define CHARGEN_LINES 95 /* the pattern repeats after 95 lines */
/* RFC 864 asks for datagram replies of at most 512 bytes. */
#define CHARGEN_UDP_LINES (512 / CHARGEN_LINE)

static unsigned char pattern[CHARGEN_LINES * CHARGEN_LINE];
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;

static void pattern_init(void) {
  for (unsigned line = 0; line < CHARGEN_LINES; line++) {
    unsigned char *p = pattern + line * CHARGEN_LINE;
    for (unsigned i = 0; i < 72; i++)
      p[i] = (unsigned char)(32 + (line + i) % 95);
    p[72] = '\r';
    p[73] = '\n';
  }
}

static const unsigned char *chargen_pattern(void) {
  pthread_once(&pattern_once, pattern_init);
  return pattern;
}

static void chargen_pump(struct conn *c);

static void chargen_sent(sk_stream *s, int status, void *arg) {
  struct conn *c = arg;
  (void)s;
  if (status < 0 || conn_closing(c))
    return;
  conn_touch(c);
  chargen_pump(c);
}

static void chargen_pump(struct conn *c) {
  const unsigned char *p = chargen_pattern();
  int rc;
  if (conn_finishing(c) || conn_stopping(c))
    return;
  /* Generate only while the kernel keeps up: the output queue never holds
   * more than one period of the pattern. */
  for (int i = 0; i < CHARGEN_BURST; i++) {
    if (sk_stream_write_queue_size(&c->s) > 0)
      break;
    rc = sk_stream_send(&c->s, p, sizeof(pattern), NULL, NULL);
    if (rc < 0) {
      conn_close(c, sk_strerror(rc));
      return;
    }
    conn_sent(c, sizeof(pattern));
  }
  rc = sk_stream_send(&c->s, p, sizeof(pattern), chargen_sent, c);
  if (rc < 0)
    conn_close(c, sk_strerror(rc));
  else
    conn_sent(c, sizeof(pattern));
}

static void chargen_open(struct conn *c) {
  chargen_pump(c);
}

static void chargen_piece(struct conn *c, const sk_frame_piece *p) {
  (void)c;
  (void)p;
}

static void chargen_stop(struct conn *c) {
  conn_finish(c);
}

static void chargen_dgram(struct udp_listener *u, const unsigned char *buf,
                          size_t len, const sk_endpoint *from) {
  const unsigned char *p = chargen_pattern();
  unsigned char out[CHARGEN_UDP_LINES * CHARGEN_LINE];
  /* A source is never sent more bytes than it sent (plus a small burst;
   * see udp.c): under a flood the reply shrinks, down to an empty datagram
   * for an empty one. RFC 864 allows any length from 0 to 512. */
  unsigned lines =
      (unsigned)(udp_reply_room(u, from, sizeof(out)) / CHARGEN_LINE);
  (void)buf;
  (void)len;
  for (unsigned i = 0; i < lines; i++) {
    unsigned line = (unsigned)((u->mode_state + i) % CHARGEN_LINES);
    memcpy(out + i * CHARGEN_LINE, p + line * CHARGEN_LINE, CHARGEN_LINE);
  }
  /* The listener's place in the pattern, kept in its mode_state. */
  u->mode_state = (u->mode_state + lines) % CHARGEN_LINES;
  udp_reply(u, out, lines * CHARGEN_LINE, from);
}

const struct mode mode_chargen = {
    .name = "chargen",
    .summary = "send the RFC 864 character pattern until the client closes",
    .transports = MODE_STREAMS | MODE_UDP,
    .frames = MODE_ALL_FRAMES,
    .fds_per_conn = 1,
    .open = chargen_open,
    .piece = chargen_piece,
    .stop = chargen_stop,
    .dgram = chargen_dgram,
};
