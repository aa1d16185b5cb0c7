/* The framing adapter: what a connection reads goes to the mode, cut into
 * frame pieces by the connection's decoder (--frame), or whole to a mode
 * that parses its own protocol. A frame is never held whole: each piece
 * points into the loop's read buffer and is passed on at once. */
#include "server.h"

#include <errno.h>
#include <stdio.h>

#include "log.h"

static void frame_error(struct conn *c, int err) {
  char why[160];
  if (err == SK_EFRAMETOOBIG)
    snprintf(why, sizeof(why),
             "frame larger than --max-frame (%zu bytes), closing the "
             "connection",
             conn_cfg(c)->max_frame);
  else
    snprintf(why, sizeof(why), "%s, closing the connection", sk_strerror(err));
  log_error("%s: %s", conn_name(c), why);
  c->close_kind = CLOSE_FRAME_ERROR;
  stat_add(
      &c->w->stats.frames_rejected[err == SK_EFRAMETOOBIG ? FRAME_TOO_BIG
                                                          : FRAME_MALFORMED],
      1);
  conn_close(c, sk_strerror(err));
}

/* One decoded piece to the mode, with the per-frame log line (-v). */
static void deliver(struct conn *c, const sk_frame_piece *p) {
  if (conn_framed(c)) {
    if (p->flags & SK_FRAME_BEGIN)
      c->frame_bytes = 0;
    c->frame_bytes += p->len;
    if (p->flags & SK_FRAME_END)
      conn_count(c, DIR_IN, 0, 1);
  }
  if ((p->flags & SK_FRAME_END) && log_level() >= LOG_DEBUG)
    log_msg(LOG_DEBUG, "recv %zu bytes from %s", conn_frame_len(c, p),
            conn_name(c));
  conn_cfg(c)->mode->piece(c, p);
}

static void feed_frames(struct conn *c, const unsigned char *p, size_t len) {
  if (!conn_framed(c)) {
    /* raw: whatever arrived is one whole frame. */
    sk_frame_piece piece = {p, len, SK_FRAME_BEGIN | SK_FRAME_END, 0};
    deliver(c, &piece);
    return;
  }
  while (len > 0) {
    sk_frame_piece piece;
    int was_busy = sk_frame_decoder_busy(&c->dec);
    int used = sk_frame_decode(&c->dec, p, len, &piece);
    if (used < 0) {
      frame_error(c, used);
      return;
    }
    if (!was_busy && sk_frame_decoder_busy(&c->dec))
      c->frame_start = sk_loop_now(c->s.h.loop);
    p += used;
    len -= (size_t)used;
    if (piece.flags == 0 && piece.len == 0)
      continue; /* only header bytes so far */
    deliver(c, &piece);
    if (conn_finishing(c))
      return;
  }
}

/* The peer's FIN: a frame it cut short is reported, a last frame that ends
 * at the end of stream (a line without "\n") is delivered, and our side
 * finishes. */
static void on_eof(struct conn *c) {
  const struct mode *m = conn_cfg(c)->mode;
  if (c->state >= CONN_FINISHING) {
    if (c->state == CONN_FINISHED)
      conn_close(c, NULL);
    return; /* else on_shut closes once the FIN is out */
  }
  if (!mode_unframed(m) && conn_framed(c)) {
    sk_frame_piece p;
    int rc = sk_frame_decode_eof(&c->dec, &p);
    if (rc < 0) {
      /* What was echoed of earlier frames still goes out before the
       * FIN; only the cut frame is lost. */
      log_warn("%s: stream ended inside a frame (%s)", conn_name(c),
               sk_strerror(rc));
      stat_add(&c->w->stats.frames_rejected[FRAME_TRUNCATED], 1);
    } else if (rc == 1) {
      deliver(c, &p);
      if (conn_closing(c))
        return;
    }
  }
  conn_finish(c);
}

void framing_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct conn *c = s->h.data;
  const struct mode *m = conn_cfg(c)->mode;

  if (n > 0) {
    conn_touch(c);
    /* Bytes in count every read; messages in count frames where there is
     * a decoder (deliver()), reads otherwise. */
    conn_count(c, DIR_IN, (uint64_t)n,
               mode_unframed(m) || !conn_framed(c) ? 1 : 0);
    if (conn_finishing(c))
      return;
    if (mode_unframed(m))
      m->data(c, buf, (size_t)n);
    else
      feed_frames(c, buf, (size_t)n);
    if (conn_stopping(c) && !conn_finishing(c) && !mode_unframed(m) &&
        !conn_mid_frame(c)) {
      conn_finish(c);
      return;
    }
    conn_check_queue(c);
    return;
  }
  if (n == SK_EOF) {
    on_eof(c);
    return;
  }
  if (n == -ECANCELED)
    return;
  conn_close(c, sk_strerror((int)n));
}
