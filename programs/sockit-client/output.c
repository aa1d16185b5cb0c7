/* The reply printer (see client.h): frame decoding and formatting.
 *
 * Received bytes go through the streaming frame decoder and come out as
 * formatted text in one fixed buffer. The buffer never grows: output_feed()
 * takes only as much input as is sure to fit once formatted (a hex dump
 * needs about five times the input), and the caller keeps the rest until
 * stdout has drained. That is what lets the pump back-pressure the socket
 * instead of buffering without bound when stdout is slow.
 *
 * On a terminal (see output_escape_terminal()), payload is escaped on the
 * way into the buffer, so a server cannot retitle the window, set the
 * clipboard or rewrite the screen; at most four bytes per byte, which the
 * budget counts. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Large enough to format a whole 64 KiB read as a hex dump in one go. */
#define OUTPUT_CAP (512u * 1024u)

static int g_escape;

void output_escape_terminal(int on) {
  g_escape = on;
}

int output_init(struct output *o, sk_frame_mode mode, int hex,
                size_t max_frame) {
  memset(o, 0, sizeof *o);
  o->mode = mode;
  o->hex = hex;
  o->escape = g_escape && !hex;
  sk_frame_decoder_init(&o->dec, mode, max_frame);
  hexdump_init(&o->hd);
  o->buf = malloc(OUTPUT_CAP);
  if (o->buf == NULL)
    return -ENOMEM;
  o->cap = OUTPUT_CAP;
  return 0;
}

void output_free(struct output *o) {
  free(o->buf);
  o->buf = NULL;
}

void output_consume(struct output *o, size_t n) {
  o->pos += n;
  if (o->pos == o->len)
    o->pos = o->len = 0;
}

/* Moves pending bytes to the front so the free space is in one piece. */
static void compact(struct output *o) {
  if (o->pos == 0)
    return;
  memmove(o->buf, o->buf + o->pos, o->len - o->pos);
  o->len -= o->pos;
  o->pos = 0;
}

static void put(struct output *o, const void *data, size_t len) {
  memcpy(o->buf + o->len, data, len);
  o->len += len;
}

/* ---- terminal escaping (see output_escape_terminal()) ---- */

/* Escapes what it can decide of p[0..n) into the buffer and returns the
 * bytes used: all of them with end set, else all but the start of a
 * character (or a "\r\n") that the next bytes may complete. Writes at most
 * four bytes per byte used. */
static size_t put_chars(struct output *o, const unsigned char *p, size_t n,
                        int end) {
  char *out = o->buf + o->len;
  size_t i = 0, w = 0;
  while (i < n) {
    unsigned char c = p[i];
    int k;
    if (c == '\n' || (c == '\r' && i + 1 < n && p[i + 1] == '\n')) {
      k = c == '\n' ? 1 : 2; /* a line end cannot rewrite the line */
    } else if (c == '\r') {
      if (i + 1 == n && !end)
        break;
      k = 0;
    } else if (c == '\\') {
      out[w++] = '\\';
      out[w++] = '\\';
      i++;
      continue;
    } else {
      k = log_text_char(p + i, n - i);
      if (k < 0 && !end)
        break;
    }
    if (k > 0) {
      memcpy(out + w, p + i, (size_t)k);
      w += (size_t)k;
      i += (size_t)k;
    } else {
      log_hex_byte(c, out + w);
      w += 4;
      i++;
    }
  }
  o->len += w;
  return i;
}

/* Escapes data[0..len) behind what an earlier piece left undecided; keeps
 * what is still undecided (at most three bytes) for the next piece unless
 * end is set. */
static void put_text(struct output *o, const unsigned char *data, size_t len,
                     int end) {
  size_t i = 0;
  if (o->ncarry > 0) {
    /* The carried bytes and enough of the new ones to decide them. */
    unsigned char tmp[sizeof o->carry + 4];
    size_t k = o->ncarry;
    size_t add = len < sizeof tmp - k ? len : sizeof tmp - k;
    memcpy(tmp, o->carry, k);
    if (add > 0)
      memcpy(tmp + k, data, add);
    size_t used = put_chars(o, tmp, k + add, end && add == len);
    if (used < k) {
      /* Still undecided, and everything new is in tmp. */
      o->ncarry = k + add - used;
      memmove(o->carry, tmp + used, o->ncarry);
      return;
    }
    o->ncarry = 0;
    i = used - k;
  }
  if (i < len)
    i += put_chars(o, data + i, len - i, end);
  o->ncarry = len - i;
  if (o->ncarry > 0)
    memcpy(o->carry, data + i, o->ncarry);
}

/* A piece of payload: as is, or escaped for the terminal. */
static void put_payload(struct output *o, const void *data, size_t len,
                        int end) {
  if (o->escape)
    put_text(o, data, len, end);
  else if (len > 0)
    put(o, data, len);
}

/* Formats one decoded piece. The caller has made sure it fits. */
static void emit(struct output *o, const sk_frame_piece *pc) {
  if (o->mode == SK_FRAME_RAW) {
    /* Raw replies are one continuous stream, so a hex dump of them runs
     * on across reads and ends only at end of stream. */
    if (o->hex)
      o->len += hexdump_feed(&o->hd, pc->data, pc->len, o->buf + o->len);
    else
      put_payload(o, pc->data, pc->len, 0);
    return;
  }
  if (o->hex) {
    if (pc->len > 0)
      o->len += hexdump_feed(&o->hd, pc->data, pc->len, o->buf + o->len);
  } else if (pc->len > 0 || (pc->flags & SK_FRAME_END)) {
    /* The end of a frame also decides what the escaping held back. */
    put_payload(o, pc->data, pc->len, pc->flags & SK_FRAME_END);
  }
  if (pc->flags & SK_FRAME_END) {
    if (o->hex)
      o->len += hexdump_finish(&o->hd, 1, o->buf + o->len);
    else if (o->mode == SK_FRAME_LINE)
      put(o, "\n", 1);
    o->frames++;
  }
}

ssize_t output_feed(struct output *o, const void *data, size_t len) {
  const unsigned char *p = data;
  size_t used = 0;
  while (used < len) {
    if (o->frame_limit != 0 && o->frames >= o->frame_limit)
      break;
    compact(o);
    size_t room = o->cap - o->len;
    if (room < OUTPUT_RESERVE + HEXDUMP_LINE_MAX)
      break;
    size_t budget = room - OUTPUT_RESERVE;
    if (o->hex)
      budget = budget / HEXDUMP_LINE_MAX * 16;
    else if (o->escape)
      budget /= 4; /* "\xHH" for every byte at worst */
    size_t feed = len - used;
    if (feed > budget)
      feed = budget;
    sk_frame_piece pc;
    int n = sk_frame_decode(&o->dec, p + used, feed, &pc);
    if (n < 0)
      return n;
    used += (size_t)n;
    emit(o, &pc);
  }
  return (ssize_t)used;
}

int output_eof(struct output *o) {
  compact(o);
  if (o->mode == SK_FRAME_RAW) {
    if (o->hex)
      o->len += hexdump_finish(&o->hd, 0, o->buf + o->len);
    else if (o->escape)
      put_text(o, NULL, 0, 1); /* what was held back, in the reserve */
    return 0;
  }
  sk_frame_piece pc;
  int rc = sk_frame_decode_eof(&o->dec, &pc);
  if (rc < 0)
    return rc;
  if (rc == 1) {
    /* A last line without its "\n" still counts as a line. Its only
     * payload here is at most a held-back "\r", so it fits the reserve. */
    emit(o, &pc);
  }
  return 0;
}

int client_write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      /* Somebody made our stdout non-blocking; wait for room rather than
       * spin. */
      struct pollfd pfd = {.fd = fd, .events = POLLOUT, .revents = 0};
      if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
        return -errno;
      continue;
    }
    return n < 0 ? -errno : -EIO;
  }
  return 0;
}

int output_flush(struct output *o, int fd) {
  size_t n = output_pending(o);
  if (n == 0)
    return 0;
  int rc = client_write_all(fd, output_data(o), n);
  if (rc == 0)
    output_consume(o, n);
  return rc;
}

int output_datagram(struct output *o, const void *data, size_t len, int fd) {
  int rc = output_flush(o, fd);
  if (rc < 0)
    return rc;
  const unsigned char *p = data;
  if (o->escape) {
    size_t budget = (o->cap - OUTPUT_RESERVE) / 4;
    do {
      size_t n = len < budget ? len : budget;
      put_text(o, p, n, n == len);
      p += n;
      len -= n;
      if ((rc = output_flush(o, fd)) < 0)
        return rc;
    } while (len > 0);
    return 0;
  }
  if (!o->hex)
    return client_write_all(fd, data, len);
  while (len > 0) {
    size_t budget = (o->cap - OUTPUT_RESERVE) / HEXDUMP_LINE_MAX * 16;
    size_t n = len < budget ? len : budget;
    o->len += hexdump_feed(&o->hd, p, n, o->buf + o->len);
    p += n;
    len -= n;
    if ((rc = output_flush(o, fd)) < 0)
      return rc;
  }
  o->len += hexdump_finish(&o->hd, 1, o->buf + o->len);
  return output_flush(o, fd);
}
