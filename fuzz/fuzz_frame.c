/* libFuzzer target for the framing decoder (src/lib/frame.c).
 *
 * Input layout: byte 0 picks the mode (byte % 5) and max_frame (from a table
 * of interesting sizes, byte / 5); byte 1 seeds how the rest is cut into
 * chunks; the rest is the stream. The stream is decoded three times (whole,
 * one byte at a time, and in chunks drawn from the seed) and each result must
 * equal the reference decoder's in frame_ref.h, which also checks every piece
 * against the header's contract. Any disagreement aborts.
 *
 * Each chunk is copied to the end of a heap block of exactly the stream's
 * size, so AddressSanitizer catches a read past the chunk's end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t max_frames[] = {
    0,     1,      2,       3,        4,       5,    6,     7,     8,
    9,     10,     11,      12,       13,      15,   16,    17,    31,
    32,    33,     38,      39,       40,      63,   64,    65,    99,
    100,   127,    128,     255,      256,     257,  511,   512,   1000,
    1023,  1024,   4095,    4096,     9998,    9999, 10000, 65534, 65535,
    65536, 100000, 1048576, 16777216, SIZE_MAX};

typedef struct place_ctx {
  unsigned char *buf;
  size_t size;
} place_ctx;

static const unsigned char *place_at_end(void *ctx, const unsigned char *p,
                                         size_t n) {
  place_ctx *c = ctx;
  unsigned char *dst = c->buf + c->size - n;
  if (n > 0)
    memcpy(dst, p, n);
  return dst;
}

/* Chunk sizes from a small xorshift generator: mostly tiny so that headers
 * and "\r\n" get split, sometimes large, sometimes an empty read (never two
 * in a row, so 2 * len + 1 entries always suffice). */
static size_t cut(uint64_t seed, size_t len, size_t *chunks) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + len + 1;
  size_t n = 0, pos = 0;
  while (pos < len) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    size_t c;
    switch (x % 8) {
    case 0:
      c = n > 0 && chunks[n - 1] == 0 ? 1 : 0;
      break;
    case 1:
      c = 1 + (size_t)(x >> 8) % 300;
      break;
    default:
      c = 1 + (size_t)(x >> 8) % 5;
      break;
    }
    if (c > len - pos)
      c = len - pos;
    chunks[n++] = c;
    pos += c;
  }
  return n;
}

static void check(sk_frame_mode mode, size_t max_frame, const unsigned char *in,
                  size_t len, const size_t *chunks, size_t nchunks) {
  fr_out ref, got;
  place_ctx pc;

  pc.size = len;
  pc.buf = malloc(len ? len : 1);
  if (pc.buf == NULL)
    abort();
  fr_out_init(&ref);
  fr_out_init(&got);
  fr_ref_decode(mode, max_frame, in, len, chunks, nchunks, &ref);
  const char *err = fr_stream_decode(mode, max_frame, in, len, chunks, nchunks,
                                     place_at_end, &pc, &got);
  if (err != NULL) {
    fprintf(stderr, "mode %s max %zu: %s\n", sk_frame_mode_name(mode),
            max_frame, err);
    abort();
  }
  if (!fr_out_equal(&ref, &got)) {
    fprintf(stderr,
            "mode %s max %zu: %zu frames code %d, reference %zu frames "
            "code %d\n",
            sk_frame_mode_name(mode), max_frame, got.nframes, got.code,
            ref.nframes, ref.code);
    abort();
  }
  fr_out_free(&ref);
  fr_out_free(&got);
  free(pc.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  sk_frame_mode mode = (sk_frame_mode)(data[0] % 5);
  size_t max_frame =
      max_frames[(data[0] / 5) % (sizeof(max_frames) / sizeof(max_frames[0]))];
  uint64_t seed = data[1];
  const unsigned char *in = data + 2;
  size_t len = size - 2;

  size_t *chunks = malloc((2 * len + 1) * sizeof(*chunks));
  if (chunks == NULL)
    abort();
  chunks[0] = len;
  check(mode, max_frame, in, len, chunks, 1);
  for (size_t i = 0; i < len; i++)
    chunks[i] = 1;
  check(mode, max_frame, in, len, chunks, len);
  size_t n = cut(seed, len, chunks);
  check(mode, max_frame, in, len, chunks, n);
  free(chunks);
  return 0;
}
