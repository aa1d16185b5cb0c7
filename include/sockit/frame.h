/* Framing codecs: how a byte stream is cut into messages.
 *
 * Pure code: no I/O, no allocation, no buffering of payload. The decoder is
 * a streaming one: it hands back the payload as pointers into the buffer you
 * give it, marking where each frame begins and ends, so a frame never has to
 * be held in memory whole. The only state kept between calls is a few bytes
 * of a split header, in the caller-owned decoder struct.
 *
 *   raw    whatever bytes arrive (every chunk is one frame)
 *   line   bytes up to "\n"; a "\r" right before the "\n" is dropped; the
 *          "\n" itself is not part of the payload
 *   len16  2-byte big-endian length, then that many bytes
 *   len32  4-byte big-endian length, then that many bytes
 *   ascii4 4 ASCII decimal digits ("0042"), then that many bytes
 *
 * A frame longer than max_frame is an error (SK_EFRAMETOOBIG) detected from
 * the header (length-prefixed modes) or as soon as the line outgrows it, so
 * nothing oversize is ever buffered by anyone. A zero-length frame is legal
 * (a keep-alive) and is reported as a frame with no payload.
 */
#ifndef SOCKIT_FRAME_H
#define SOCKIT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sk_frame_mode {
  SK_FRAME_RAW = 0,
  SK_FRAME_LINE,
  SK_FRAME_LEN16,
  SK_FRAME_LEN32,
  SK_FRAME_ASCII4
} sk_frame_mode;

#define SK_FRAME_MAX_DEFAULT (1024u * 1024u)

/* Parses "raw", "line", "len16", "len32", "ascii4". Returns 0 or
 * -EINVAL. */
SK_EXTERN int sk_frame_mode_parse(const char *name, sk_frame_mode *mode);
SK_EXTERN const char *sk_frame_mode_name(sk_frame_mode mode);

/* The largest payload a mode can express at all (len16: 65535, ascii4:
 * 9999, others: SIZE_MAX). */
SK_EXTERN size_t sk_frame_mode_limit(sk_frame_mode mode);

/* Decoder state. Zero it with sk_frame_decoder_init(); fields starting with
 * an underscore are private. */
typedef struct sk_frame_decoder {
  sk_frame_mode mode;
  size_t max_frame;
  unsigned char _hdr[4];
  unsigned _hdr_have;
  int _in_frame;
  size_t _remaining; /* length-prefixed: payload bytes still to come */
  size_t _seen;      /* line: payload bytes of the current line so far */
  int _pending_cr;   /* line: a "\r" held back at the end of a chunk */
  int _failed;
} sk_frame_decoder;

SK_EXTERN void sk_frame_decoder_init(sk_frame_decoder *d, sk_frame_mode mode,
                                     size_t max_frame);

/* One piece of decoded output. */
enum {
  SK_FRAME_BEGIN = 1u << 0, /* this piece starts a frame */
  SK_FRAME_END = 1u << 1,   /* this piece ends a frame */
};
typedef struct sk_frame_piece {
  const unsigned char *data; /* payload bytes (points into your buffer, or
                                to static storage for a held-back "\r") */
  size_t len;                /* may be 0 (e.g. an empty frame) */
  unsigned flags;            /* SK_FRAME_BEGIN / SK_FRAME_END */
  size_t frame_len;          /* with BEGIN in length-prefixed modes: the
                                whole payload length; else 0 */
} sk_frame_piece;

/* Decodes from buf[0..len). Returns the number of input bytes consumed
 * (>= 0) and, when it produced output, fills *out and sets out->flags or
 * out->len (an empty piece with flags == 0 means "nothing yet": all input
 * was consumed into the header state). Call again with the rest of the
 * buffer until everything is consumed. Returns SK_EFRAMETOOBIG or
 * SK_EFRAMEBAD on bad input; after an error the decoder keeps returning it
 * until re-initialised. */
SK_EXTERN int sk_frame_decode(sk_frame_decoder *d, const void *buf, size_t len,
                              sk_frame_piece *out);

/* The stream ended. Returns 0 when the decoder sits between frames (nothing
 * lost), 1 with *out set when a line without "\n" was pending (it ends that
 * frame: the piece has END set, plus a held-back "\r" as data if any), or
 * SK_EFRAMEBAD when the stream ended inside a header or a length-prefixed
 * payload. */
SK_EXTERN int sk_frame_decode_eof(sk_frame_decoder *d, sk_frame_piece *out);

/* 1 if the decoder is inside a frame or header (bytes of an unfinished
 * frame have been seen). */
SK_EXTERN int sk_frame_decoder_busy(const sk_frame_decoder *d);

/* Encodes the header for a payload of len bytes into hdr (4 bytes is always
 * enough). Returns the header length (0 for raw and line), or
 * SK_EFRAMETOOBIG if len cannot be expressed in this mode. The line mode's
 * terminator is a trailer, not a header: see sk_frame_trailer(). */
SK_EXTERN int sk_frame_header(sk_frame_mode mode, size_t len,
                              unsigned char hdr[4]);

/* The trailer after a payload: "\n" for line, "" otherwise. Returns its
 * length and points *trailer at static storage. */
SK_EXTERN size_t sk_frame_trailer(sk_frame_mode mode, const char **trailer);

#ifdef __cplusplus
}
#endif

#endif
