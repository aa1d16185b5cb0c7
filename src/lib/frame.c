/* Framing codecs: cutting a byte stream into messages.
 *
 * Everything here is pure: no I/O, no allocation and no payload buffering.
 * The decoder hands out pieces that point into the caller's buffer; the only
 * bytes it ever keeps are those of a length header split across two reads
 * (at most four) and, in line mode, the knowledge that a "\r" ended the last
 * chunk.
 *
 * Decisions on points the header leaves open, chosen as the simplest
 * consistent behaviour:
 *  - Raw mode ignores max_frame: every chunk is one frame, so the caller's
 *    read size already bounds it, and nothing is ever buffered.
 *  - max_frame is taken literally; 0 means that only empty frames are legal.
 *  - Each call yields at most one piece. A piece with flags == 0 always has
 *    len > 0 (a middle piece); an empty piece with flags == 0 means "nothing
 *    yet".
 *  - Length-prefixed modes report the BEGIN piece as soon as the header is
 *    complete, together with whatever payload follows it in the same chunk,
 *    so the piece may have BEGIN, frame_len > 0 and len 0 when the header
 *    ended the chunk.
 *  - ascii4 digits are checked as they arrive, so a bad header byte fails at
 *    once instead of after all four bytes.
 *  - Line mode: a "\r" held back at the end of a chunk that turns out to be
 *    payload is emitted on the next call as a one-byte piece that consumes no
 *    input (the call returns 0 with output); the caller simply calls again.
 *  - A "\r" held back when the stream ends is payload. If it makes the line
 *    longer than max_frame, sk_frame_decode_eof() returns SK_EFRAMETOOBIG.
 *  - sk_frame_decode_eof() leaves the decoder between frames when it
 *    succeeds, and any error it returns sticks like a decoding error.
 *  - The return value is an int, so one call consumes at most INT_MAX bytes;
 *    a raw chunk larger than that comes out as several frames.
 *  - sk_frame_mode_limit(SK_FRAME_LEN32) is UINT32_MAX (what a 4-byte length
 *    can express), matching sk_frame_header().
 *  - Unknown modes: sk_frame_mode_name() returns NULL, sk_frame_header() and
 *    sk_frame_decode() return -EINVAL, sk_frame_mode_limit() returns 0.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "sockit/error.h"
#include "sockit/frame.h"

/* Storage for a held-back "\r" that turned out to be payload: it no longer
 * lives in any buffer of the caller, so the piece points here. */
static const unsigned char sk__frame_cr = '\r';
static const unsigned char sk__frame_empty = 0;

static const char *const sk__frame_names[] = {"raw", "line", "len16", "len32",
                                              "ascii4"};

#define SK__FRAME_NMODES (sizeof(sk__frame_names) / sizeof(sk__frame_names[0]))

int sk_frame_mode_parse(const char *name, sk_frame_mode *mode) {
  if (name == NULL || mode == NULL)
    return -EINVAL;
  for (size_t i = 0; i < SK__FRAME_NMODES; i++) {
    if (strcmp(name, sk__frame_names[i]) == 0) {
      *mode = (sk_frame_mode)i;
      return 0;
    }
  }
  return -EINVAL;
}

const char *sk_frame_mode_name(sk_frame_mode mode) {
  if ((unsigned)mode >= SK__FRAME_NMODES)
    return NULL;
  return sk__frame_names[mode];
}

size_t sk_frame_mode_limit(sk_frame_mode mode) {
  switch (mode) {
  case SK_FRAME_RAW:
  case SK_FRAME_LINE:
    return SIZE_MAX;
  case SK_FRAME_LEN16:
    return 65535;
  case SK_FRAME_LEN32:
#if SIZE_MAX > UINT32_MAX
    return UINT32_MAX;
#else
    return SIZE_MAX;
#endif
  case SK_FRAME_ASCII4:
    return 9999;
  }
  return 0;
}

void sk_frame_decoder_init(sk_frame_decoder *d, sk_frame_mode mode,
                           size_t max_frame) {
  memset(d, 0, sizeof(*d));
  d->mode = mode;
  d->max_frame = max_frame;
}

int sk_frame_decoder_busy(const sk_frame_decoder *d) {
  switch (d->mode) {
  case SK_FRAME_LINE:
    return d->_in_frame || d->_pending_cr;
  case SK_FRAME_LEN16:
  case SK_FRAME_LEN32:
  case SK_FRAME_ASCII4:
    return d->_in_frame || d->_hdr_have > 0;
  default:
    return 0;
  }
}

/* Records an error so that every later call returns it too. */
static int sk__frame_fail(sk_frame_decoder *d, int err) {
  d->_failed = err;
  return err;
}

static void sk__frame_piece(sk_frame_piece *out, const unsigned char *data,
                            size_t len, unsigned flags, size_t frame_len) {
  out->data = data;
  out->len = len;
  out->flags = flags;
  out->frame_len = frame_len;
}

static int sk__frame_decode_line(sk_frame_decoder *d, const unsigned char *p,
                                 size_t len, sk_frame_piece *out) {
  unsigned begin = d->_in_frame ? 0 : SK_FRAME_BEGIN;

  if (d->_pending_cr) {
    d->_pending_cr = 0;
    if (p[0] == '\n') {
      /* The held "\r" was the first half of "\r\n": it is dropped and the
       * line ends here. */
      d->_in_frame = 0;
      d->_seen = 0;
      sk__frame_piece(out, p, 0, begin | SK_FRAME_END, 0);
      return 1;
    }
    /* A lone "\r" is ordinary payload; it counts toward the line length. */
    if (d->max_frame - d->_seen < 1)
      return sk__frame_fail(d, SK_EFRAMETOOBIG);
    d->_in_frame = 1;
    d->_seen++;
    sk__frame_piece(out, &sk__frame_cr, 1, begin, 0);
    return 0;
  }

  const unsigned char *nl = memchr(p, '\n', len);
  if (nl != NULL) {
    size_t n = (size_t)(nl - p);
    size_t consumed = n + 1;
    if (n > 0 && p[n - 1] == '\r')
      n--;
    if (n > d->max_frame - d->_seen)
      return sk__frame_fail(d, SK_EFRAMETOOBIG);
    d->_in_frame = 0;
    d->_seen = 0;
    sk__frame_piece(out, p, n, begin | SK_FRAME_END, 0);
    return (int)consumed;
  }

  /* No terminator in this chunk. A "\r" at its very end may be the start of
   * "\r\n", so it is held back until the next byte shows which. */
  size_t n = len;
  if (p[len - 1] == '\r') {
    n--;
    d->_pending_cr = 1;
  }
  if (n > d->max_frame - d->_seen)
    return sk__frame_fail(d, SK_EFRAMETOOBIG);
  if (n > 0) {
    d->_in_frame = 1;
    d->_seen += n;
    sk__frame_piece(out, p, n, begin, 0);
  }
  return (int)len;
}

static unsigned sk__frame_header_size(sk_frame_mode mode) {
  return mode == SK_FRAME_LEN16 ? 2u : 4u;
}

static int sk__frame_decode_prefixed(sk_frame_decoder *d,
                                     const unsigned char *p, size_t len,
                                     sk_frame_piece *out) {
  if (d->_in_frame) {
    size_t n = len < d->_remaining ? len : d->_remaining;
    d->_remaining -= n;
    unsigned flags = 0;
    if (d->_remaining == 0) {
      d->_in_frame = 0;
      flags = SK_FRAME_END;
    }
    sk__frame_piece(out, p, n, flags, 0);
    return (int)n;
  }

  unsigned hsize = sk__frame_header_size(d->mode);
  size_t used = 0;
  while (d->_hdr_have < hsize && used < len) {
    unsigned char c = p[used++];
    if (d->mode == SK_FRAME_ASCII4 && (c < '0' || c > '9'))
      return sk__frame_fail(d, SK_EFRAMEBAD);
    d->_hdr[d->_hdr_have++] = c;
  }
  if (d->_hdr_have < hsize)
    return (int)used; /* all of it went into the header; nothing yet */

  size_t flen = 0;
  for (unsigned i = 0; i < hsize; i++) {
    if (d->mode == SK_FRAME_ASCII4)
      flen = flen * 10 + (size_t)(d->_hdr[i] - '0');
    else
      flen = (flen << 8) | d->_hdr[i];
  }
  d->_hdr_have = 0;
  /* Refusing here, before a single payload byte is handed out, is what
   * keeps an oversize frame from ever being buffered by the caller. */
  if (flen > d->max_frame)
    return sk__frame_fail(d, SK_EFRAMETOOBIG);

  size_t rest = len - used;
  size_t n = rest < flen ? rest : flen;
  unsigned flags = SK_FRAME_BEGIN;
  if (n == flen) {
    flags |= SK_FRAME_END;
  } else {
    d->_in_frame = 1;
    d->_remaining = flen - n;
  }
  sk__frame_piece(out, p + used, n, flags, flen);
  return (int)(used + n);
}

int sk_frame_decode(sk_frame_decoder *d, const void *buf, size_t len,
                    sk_frame_piece *out) {
  const unsigned char *p = buf;

  sk__frame_piece(out, NULL, 0, 0, 0);
  if (d->_failed)
    return d->_failed;
  /* The return value is an int, so one call never looks at more than
   * INT_MAX bytes; the caller comes back for the rest. */
  if (len > INT_MAX)
    len = INT_MAX;
  if (len == 0)
    return 0;

  switch (d->mode) {
  case SK_FRAME_RAW:
    sk__frame_piece(out, p, len, SK_FRAME_BEGIN | SK_FRAME_END, 0);
    return (int)len;
  case SK_FRAME_LINE:
    return sk__frame_decode_line(d, p, len, out);
  case SK_FRAME_LEN16:
  case SK_FRAME_LEN32:
  case SK_FRAME_ASCII4:
    return sk__frame_decode_prefixed(d, p, len, out);
  }
  return sk__frame_fail(d, -EINVAL);
}

int sk_frame_decode_eof(sk_frame_decoder *d, sk_frame_piece *out) {
  sk__frame_piece(out, NULL, 0, 0, 0);
  if (d->_failed)
    return d->_failed;

  switch (d->mode) {
  case SK_FRAME_LINE:
    if (!d->_in_frame && !d->_pending_cr)
      return 0;
    {
      unsigned flags = SK_FRAME_END | (d->_in_frame ? 0u : SK_FRAME_BEGIN);
      if (d->_pending_cr) {
        if (d->max_frame - d->_seen < 1)
          return sk__frame_fail(d, SK_EFRAMETOOBIG);
        sk__frame_piece(out, &sk__frame_cr, 1, flags, 0);
      } else {
        sk__frame_piece(out, &sk__frame_empty, 0, flags, 0);
      }
    }
    d->_in_frame = 0;
    d->_pending_cr = 0;
    d->_seen = 0;
    return 1;
  case SK_FRAME_LEN16:
  case SK_FRAME_LEN32:
  case SK_FRAME_ASCII4:
    if (sk_frame_decoder_busy(d))
      return sk__frame_fail(d, SK_EFRAMEBAD);
    return 0;
  default:
    return 0;
  }
}

int sk_frame_header(sk_frame_mode mode, size_t len, unsigned char hdr[4]) {
  switch (mode) {
  case SK_FRAME_RAW:
  case SK_FRAME_LINE:
    return 0;
  case SK_FRAME_LEN16:
    if (len > 65535)
      return SK_EFRAMETOOBIG;
    hdr[0] = (unsigned char)(len >> 8);
    hdr[1] = (unsigned char)len;
    return 2;
  case SK_FRAME_LEN32:
#if SIZE_MAX > UINT32_MAX
    if (len > UINT32_MAX)
      return SK_EFRAMETOOBIG;
#endif
    hdr[0] = (unsigned char)(len >> 24);
    hdr[1] = (unsigned char)(len >> 16);
    hdr[2] = (unsigned char)(len >> 8);
    hdr[3] = (unsigned char)len;
    return 4;
  case SK_FRAME_ASCII4: {
    if (len > 9999)
      return SK_EFRAMETOOBIG;
    /* snprintf needs room for its NUL; hdr has exactly four bytes. */
    char tmp[5];
    snprintf(tmp, sizeof(tmp), "%04zu", len);
    memcpy(hdr, tmp, 4);
    return 4;
  }
  }
  return -EINVAL;
}

size_t sk_frame_trailer(sk_frame_mode mode, const char **trailer) {
  const char *t = mode == SK_FRAME_LINE ? "\n" : "";
  if (trailer != NULL)
    *trailer = t;
  return mode == SK_FRAME_LINE ? 1 : 0;
}
