/* Tests for the framing codecs (src/lib/frame.c).
 *
 * Besides hand-written cases, every mode is checked property-style: random
 * frame sequences are encoded with sk_frame_header() and sk_frame_trailer(),
 * then decoded all at once, one byte at a time and in random-sized chunks,
 * and each run must match a whole-buffer reference decoder (the one in
 * fuzz/frame_ref.h, shared with the fuzzer) and the frames that were encoded.
 * Every chunk the decoder sees sits at the very end of a page followed by an
 * inaccessible guard page, so reading even one byte too far crashes the test.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sk_test.h"
#include "../fuzz/frame_ref.h"

/* Property tests run a fixed number of random cases; a ThreadSanitizer
 * build, many times slower and with nothing to find in this single-threaded
 * code, runs a quarter of them. (ASan runs them all: a heap overrun is what
 * it is there to catch.) */
#define PROP_SHRINK (SK_TEST_TSAN ? 4 : 1)

/* ---- helpers ---- */

/* A buffer whose last byte is followed by a PROT_NONE page. */
typedef struct guarded {
  unsigned char *base;
  size_t usable;
  size_t page;
} guarded;

static void guarded_init(guarded *g, size_t max_bytes) {
  long pg = sysconf(_SC_PAGESIZE);
  assert_true(pg > 0);
  g->page = (size_t)pg;
  g->usable = (max_bytes + g->page - 1) / g->page * g->page;
  if (g->usable == 0)
    g->usable = g->page;
  void *m = mmap(NULL, g->usable + g->page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  g->base = m;
  assert_int_equal(mprotect(g->base + g->usable, g->page, PROT_NONE), 0);
}

static void guarded_free(guarded *g) {
  munmap(g->base, g->usable + g->page);
}

/* Copies n bytes so that they end right at the guard page. */
static const unsigned char *guarded_place(void *ctx, const unsigned char *p,
                                          size_t n) {
  guarded *g = ctx;
  assert_true(n <= g->usable);
  unsigned char *dst = g->base + g->usable - n;
  if (n > 0)
    memmove(dst, p, n);
  return dst;
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

static size_t rng_below(uint64_t *s, size_t n) {
  return n ? (size_t)(rng_next(s) % n) : 0;
}

/* A growable byte string for building encoded input. */
typedef struct bytes {
  unsigned char *p;
  size_t len, cap;
} bytes;

static void bytes_add(bytes *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
  }
  if (n > 0)
    memcpy(b->p + b->len, p, n);
  b->len += n;
}

/* Appends one frame: header, payload and trailer, the way a sender would. */
static void encode_frame(bytes *b, sk_frame_mode mode, const void *payload,
                         size_t n) {
  unsigned char hdr[4];
  const char *trailer;
  int hl = sk_frame_header(mode, n, hdr);
  /* The return also tells the optimizer that hl fits hdr (gcc -O2 warns
   * otherwise). */
  if (hl < 0 || (size_t)hl > sizeof(hdr)) {
    fail_msg("sk_frame_header returned %d", hl);
    return;
  }
  bytes_add(b, hdr, (size_t)hl);
  bytes_add(b, payload, n);
  size_t tl = sk_frame_trailer(mode, &trailer);
  bytes_add(b, trailer, tl);
}

/* An ISO 8583 0800 network management request (echo test): MTI, a binary
 * primary bitmap with bits 1 (secondary bitmap present), 7 and 11, a
 * secondary bitmap with bit 70, then fields 7, 11 and 70. The bitmaps hold
 * NUL and high bytes, which is the point: the payload is binary. */
static const unsigned char iso8583_0800[] = {
    '0',  '8',  '0',  '0',                          /* MTI */
    0x82, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* primary bitmap */
    0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* secondary bitmap */
    '0',  '6',  '1',  '2',  '1',  '0',  '3',  '0',
    '0',  '0',                         /* DE7 transmission date and time */
    '0',  '0',  '0',  '1',  '2',  '3', /* DE11 STAN */
    '3',  '0',  '1',                   /* DE70 network code: echo test */
};

/* The three ways of cutting len bytes: whole, byte by byte, random. */
enum { CUT_WHOLE, CUT_BYTES, CUT_RANDOM, CUT_COUNT };

/* chunks must have room for 2 * len + 1 entries: an empty read is never
 * followed by another. */
static size_t make_chunks(int how, size_t len, uint64_t *rng, size_t *chunks) {
  size_t n = 0, pos = 0;
  if (how == CUT_WHOLE) {
    chunks[n++] = len;
    return n;
  }
  while (pos < len) {
    size_t c = 1;
    if (how == CUT_RANDOM) {
      /* Mostly small chunks so that headers and "\r\n" get split, now and
       * then a large one; an occasional empty read too. */
      switch (rng_below(rng, 8)) {
      case 0:
        c = n > 0 && chunks[n - 1] == 0 ? 1 : 0;
        break;
      case 1:
        c = 1 + rng_below(rng, 4096);
        break;
      default:
        c = 1 + rng_below(rng, 7);
        break;
      }
      if (c > len - pos)
        c = len - pos;
    }
    chunks[n++] = c;
    pos += c;
  }
  return n;
}

/* Decodes in[0..len) with all three cuttings and checks each against the
 * reference. If want is given (every mode but raw), the reference itself
 * must produce exactly want. */
static void check_cuttings(sk_frame_mode mode, size_t max_frame,
                           const unsigned char *in, size_t len,
                           const fr_out *want, uint64_t *rng) {
  guarded g;
  size_t *chunks = malloc((len * 2 + 2) * sizeof(*chunks));
  assert_non_null(chunks);
  guarded_init(&g, len);
  for (int how = 0; how < CUT_COUNT; how++) {
    fr_out ref, got;
    size_t nchunks = make_chunks(how, len, rng, chunks);
    fr_out_init(&ref);
    fr_out_init(&got);
    fr_ref_decode(mode, max_frame, in, len, chunks, nchunks, &ref);
    const char *err = fr_stream_decode(mode, max_frame, in, len, chunks,
                                       nchunks, guarded_place, &g, &got);
    if (err != NULL)
      fail_msg("mode %s max %zu cut %d: %s", sk_frame_mode_name(mode),
               max_frame, how, err);
    if (!fr_out_equal(&ref, &got))
      fail_msg("mode %s max %zu cut %d: %zu frames code %d, reference %zu "
               "frames code %d",
               sk_frame_mode_name(mode), max_frame, how, got.nframes, got.code,
               ref.nframes, ref.code);
    if (want != NULL && !fr_out_equal(&ref, want))
      fail_msg("mode %s max %zu: reference %zu frames code %d, encoded %zu "
               "frames code %d",
               sk_frame_mode_name(mode), max_frame, ref.nframes, ref.code,
               want->nframes, want->code);
    if (mode == SK_FRAME_RAW) {
      /* Raw frames are the chunks, so together they are the input. */
      assert_int_equal(got.len, len);
      if (len > 0)
        assert_memory_equal(got.buf, in, len);
    }
    fr_out_free(&ref);
    fr_out_free(&got);
  }
  guarded_free(&g);
  free(chunks);
}

/* Decodes one whole buffer (guarded) and returns how the stream ended. */
static int decode_whole(sk_frame_mode mode, size_t max_frame, const void *in,
                        size_t len, fr_out *got) {
  guarded g;
  size_t chunk = len;
  guarded_init(&g, len);
  fr_out_init(got);
  const char *err = fr_stream_decode(mode, max_frame, in, len, &chunk, 1,
                                     guarded_place, &g, got);
  if (err != NULL)
    fail_msg("%s", err);
  guarded_free(&g);
  return got->code;
}

static void assert_frame(const fr_out *o, size_t i, const void *want,
                         size_t n) {
  const unsigned char *p;
  assert_true(i < o->nframes);
  assert_int_equal(fr_out_frame(o, i, &p), n);
  if (n > 0)
    assert_memory_equal(p, want, n);
}

/* ---- modes, headers, trailers ---- */

static void test_mode_names(void **state) {
  static const char *names[] = {"raw", "line", "len16", "len32", "ascii4"};
  (void)state;
  for (int i = 0; i < 5; i++) {
    sk_frame_mode m = SK_FRAME_RAW;
    assert_int_equal(sk_frame_mode_parse(names[i], &m), 0);
    assert_int_equal(m, (sk_frame_mode)i);
    assert_string_equal(sk_frame_mode_name(m), names[i]);
  }
  sk_frame_mode m = SK_FRAME_LEN16;
  assert_int_equal(sk_frame_mode_parse("LINE", &m), -EINVAL);
  assert_int_equal(sk_frame_mode_parse("len", &m), -EINVAL);
  assert_int_equal(sk_frame_mode_parse("", &m), -EINVAL);
  assert_int_equal(sk_frame_mode_parse("len16 ", &m), -EINVAL);
  assert_int_equal(sk_frame_mode_parse(NULL, &m), -EINVAL);
  assert_int_equal(m, SK_FRAME_LEN16);
  assert_null(sk_frame_mode_name((sk_frame_mode)99));
}

static void test_mode_limits(void **state) {
  (void)state;
  assert_true(sk_frame_mode_limit(SK_FRAME_RAW) == SIZE_MAX);
  assert_true(sk_frame_mode_limit(SK_FRAME_LINE) == SIZE_MAX);
  assert_int_equal(sk_frame_mode_limit(SK_FRAME_LEN16), 65535);
  assert_int_equal(sk_frame_mode_limit(SK_FRAME_ASCII4), 9999);
  assert_true(sk_frame_mode_limit(SK_FRAME_LEN32) == (size_t)UINT32_MAX);
  /* Every mode's limit is exactly what its header can still encode. */
  for (int i = SK_FRAME_LEN16; i <= SK_FRAME_ASCII4; i++) {
    unsigned char h[4];
    size_t lim = sk_frame_mode_limit((sk_frame_mode)i);
    assert_true(sk_frame_header((sk_frame_mode)i, lim, h) > 0);
    if (lim < SIZE_MAX)
      assert_int_equal(sk_frame_header((sk_frame_mode)i, lim + 1, h),
                       SK_EFRAMETOOBIG);
  }
}

static void test_header_encoding(void **state) {
  unsigned char h[4];
  (void)state;
  memset(h, 0xee, sizeof(h));
  assert_int_equal(sk_frame_header(SK_FRAME_RAW, 123, h), 0);
  assert_int_equal(sk_frame_header(SK_FRAME_LINE, 123, h), 0);
  assert_int_equal(h[0], 0xee); /* untouched */

  assert_int_equal(sk_frame_header(SK_FRAME_LEN16, 0, h), 2);
  assert_memory_equal(h, "\x00\x00", 2);
  assert_int_equal(sk_frame_header(SK_FRAME_LEN16, 0x1234, h), 2);
  assert_memory_equal(h, "\x12\x34", 2);
  assert_int_equal(sk_frame_header(SK_FRAME_LEN16, 65535, h), 2);
  assert_memory_equal(h, "\xff\xff", 2);
  assert_int_equal(sk_frame_header(SK_FRAME_LEN16, 65536, h), SK_EFRAMETOOBIG);

  assert_int_equal(sk_frame_header(SK_FRAME_LEN32, 0x01020304, h), 4);
  assert_memory_equal(h, "\x01\x02\x03\x04", 4);
  assert_int_equal(sk_frame_header(SK_FRAME_LEN32, UINT32_MAX, h), 4);
  assert_memory_equal(h, "\xff\xff\xff\xff", 4);
#if SIZE_MAX > UINT32_MAX
  assert_int_equal(sk_frame_header(SK_FRAME_LEN32, (size_t)UINT32_MAX + 1, h),
                   SK_EFRAMETOOBIG);
#endif

  assert_int_equal(sk_frame_header(SK_FRAME_ASCII4, 0, h), 4);
  assert_memory_equal(h, "0000", 4);
  assert_int_equal(sk_frame_header(SK_FRAME_ASCII4, 42, h), 4);
  assert_memory_equal(h, "0042", 4);
  assert_int_equal(sk_frame_header(SK_FRAME_ASCII4, 9999, h), 4);
  assert_memory_equal(h, "9999", 4);
  assert_int_equal(sk_frame_header(SK_FRAME_ASCII4, 10000, h), SK_EFRAMETOOBIG);

  assert_int_equal(sk_frame_header((sk_frame_mode)99, 1, h), -EINVAL);
}

static void test_trailer(void **state) {
  const char *t = NULL;
  (void)state;
  assert_int_equal(sk_frame_trailer(SK_FRAME_LINE, &t), 1);
  assert_string_equal(t, "\n");
  for (int i = 0; i <= SK_FRAME_ASCII4; i++) {
    if (i == SK_FRAME_LINE)
      continue;
    t = NULL;
    assert_int_equal(sk_frame_trailer((sk_frame_mode)i, &t), 0);
    assert_string_equal(t, "");
  }
}

/* ---- raw ---- */

static void test_raw_chunks(void **state) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  (void)state;
  sk_frame_decoder_init(&d, SK_FRAME_RAW, 2); /* max_frame is ignored */
  assert_int_equal(sk_frame_decode(&d, "hello", 5, &pc), 5);
  assert_int_equal(pc.len, 5);
  assert_int_equal(pc.flags, SK_FRAME_BEGIN | SK_FRAME_END);
  assert_int_equal(pc.frame_len, 0);
  assert_memory_equal(pc.data, "hello", 5);
  assert_false(sk_frame_decoder_busy(&d));
  assert_int_equal(sk_frame_decode(&d, "x", 0, &pc), 0);
  assert_int_equal(pc.flags, 0);
  assert_int_equal(pc.len, 0);
  assert_int_equal(sk_frame_decode_eof(&d, &pc), 0);
}

/* ---- line ---- */

static void test_line_basic(void **state) {
  static const char in[] = "one\ntwo\r\n\n\r\nthree\rfour\n";
  fr_out o;
  (void)state;
  assert_int_equal(decode_whole(SK_FRAME_LINE, 100, in, sizeof(in) - 1, &o), 0);
  assert_int_equal(o.nframes, 5);
  assert_frame(&o, 0, "one", 3);
  assert_frame(&o, 1, "two", 3);
  assert_frame(&o, 2, "", 0); /* an empty line is an empty frame */
  assert_frame(&o, 3, "", 0);
  assert_frame(&o, 4, "three\rfour", 10); /* a lone "\r" is payload */
  fr_out_free(&o);
}

static void test_line_only_one_cr_dropped(void **state) {
  static const char in[] = "a\r\r\n";
  fr_out o;
  (void)state;
  assert_int_equal(decode_whole(SK_FRAME_LINE, 100, in, sizeof(in) - 1, &o), 0);
  assert_int_equal(o.nframes, 1);
  assert_frame(&o, 0, "a\r", 2);
  fr_out_free(&o);
}

static void test_line_cr_split_from_lf(void **state) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  (void)state;
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 100);
  /* The "\r" ends the chunk: it is held back, not reported. */
  assert_int_equal(sk_frame_decode(&d, "ab\r", 3, &pc), 3);
  assert_int_equal(pc.len, 2);
  assert_int_equal(pc.flags, SK_FRAME_BEGIN);
  assert_true(d._pending_cr);
  assert_true(sk_frame_decoder_busy(&d));
  /* A "\n" follows: the "\r" was part of the terminator. */
  assert_int_equal(sk_frame_decode(&d, "\nx", 2, &pc), 1);
  assert_int_equal(pc.len, 0);
  assert_int_equal(pc.flags, SK_FRAME_END);
  assert_false(sk_frame_decoder_busy(&d));

  /* A line that is only "\r" + "\n" split apart is an empty frame. */
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 100);
  assert_int_equal(sk_frame_decode(&d, "\r", 1, &pc), 1);
  assert_int_equal(pc.flags, 0); /* nothing yet */
  assert_int_equal(pc.len, 0);
  assert_true(sk_frame_decoder_busy(&d));
  assert_int_equal(sk_frame_decode(&d, "\n", 1, &pc), 1);
  assert_int_equal(pc.flags, SK_FRAME_BEGIN | SK_FRAME_END);
  assert_int_equal(pc.len, 0);
}

static void test_line_cr_held_then_payload(void **state) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  static const char second[] = "z\n";
  (void)state;
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 100);
  assert_int_equal(sk_frame_decode(&d, "\r", 1, &pc), 1);
  /* Something other than "\n" follows: the held "\r" comes out first, from
   * static storage, consuming nothing. */
  assert_int_equal(sk_frame_decode(&d, second, 2, &pc), 0);
  assert_int_equal(pc.len, 1);
  assert_int_equal(pc.data[0], '\r');
  assert_true(pc.data < (const unsigned char *)second ||
              pc.data >= (const unsigned char *)second + sizeof(second));
  assert_int_equal(pc.flags, SK_FRAME_BEGIN);
  assert_int_equal(sk_frame_decode(&d, second, 2, &pc), 2);
  assert_int_equal(pc.len, 1);
  assert_int_equal(pc.data[0], 'z');
  assert_int_equal(pc.flags, SK_FRAME_END);

  /* Two chunks that each end in "\r". */
  fr_out o;
  static const char in[] = "a\r\rb\r\n";
  size_t cuts[] = {2, 1, 3};
  guarded g;
  guarded_init(&g, 16);
  fr_out_init(&o);
  assert_null(fr_stream_decode(SK_FRAME_LINE, 100, (const unsigned char *)in, 6,
                               cuts, 3, guarded_place, &g, &o));
  assert_int_equal(o.nframes, 1);
  assert_frame(&o, 0, "a\r\rb", 4);
  fr_out_free(&o);
  guarded_free(&g);
}

static void test_line_too_long(void **state) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  fr_out o;
  (void)state;

  /* Exactly max_frame bytes is fine, with or without "\r". */
  assert_int_equal(decode_whole(SK_FRAME_LINE, 4, "abcd\nabcd\r\n", 11, &o), 0);
  assert_int_equal(o.nframes, 2);
  fr_out_free(&o);
  assert_int_equal(decode_whole(SK_FRAME_LINE, 4, "abcde\n", 6, &o),
                   SK_EFRAMETOOBIG);
  fr_out_free(&o);
  assert_int_equal(decode_whole(SK_FRAME_LINE, 0, "\n\r\nx\n", 5, &o),
                   SK_EFRAMETOOBIG);
  assert_int_equal(o.nframes, 2);
  fr_out_free(&o);

  /* No "\n" anywhere yet: refused as soon as the line outgrows the limit,
   * not when (if ever) it ends. */
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 4);
  assert_int_equal(sk_frame_decode(&d, "abc", 3, &pc), 3);
  assert_int_equal(sk_frame_decode(&d, "d", 1, &pc), 1);
  assert_int_equal(sk_frame_decode(&d, "e", 1, &pc), SK_EFRAMETOOBIG);
  assert_int_equal(sk_frame_decode(&d, "\n", 1, &pc), SK_EFRAMETOOBIG);
  assert_int_equal(sk_frame_decode_eof(&d, &pc), SK_EFRAMETOOBIG);

  sk_frame_decoder_init(&d, SK_FRAME_LINE, 4);
  assert_int_equal(sk_frame_decode(&d, "abcdefgh", 8, &pc), SK_EFRAMETOOBIG);
  assert_int_equal(pc.len, 0);
  assert_int_equal(pc.flags, 0);

  /* A held "\r" that turns out to be payload counts. */
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 4);
  assert_int_equal(sk_frame_decode(&d, "abcd\r", 5, &pc), 5);
  assert_int_equal(sk_frame_decode(&d, "x", 1, &pc), SK_EFRAMETOOBIG);
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 4);
  assert_int_equal(sk_frame_decode(&d, "abcd\r", 5, &pc), 5);
  assert_int_equal(sk_frame_decode(&d, "\n", 1, &pc), 1);
  assert_int_equal(pc.flags, SK_FRAME_END);
}

static void test_line_eof_pending(void **state) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  fr_out o;
  (void)state;

  /* An unterminated last line is a frame when the stream ends. */
  assert_int_equal(decode_whole(SK_FRAME_LINE, 100, "a\nlast", 6, &o), 0);
  assert_int_equal(o.nframes, 2);
  assert_frame(&o, 1, "last", 4);
  fr_out_free(&o);

  sk_frame_decoder_init(&d, SK_FRAME_LINE, 100);
  assert_int_equal(sk_frame_decode(&d, "tail", 4, &pc), 4);
  assert_int_equal(sk_frame_decode_eof(&d, &pc), 1);
  assert_int_equal(pc.flags, SK_FRAME_END);
  assert_int_equal(pc.len, 0);
  assert_false(sk_frame_decoder_busy(&d));
  assert_int_equal(sk_frame_decode_eof(&d, &pc), 0);

  /* A held-back "\r" at the end is payload. */
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 100);
  assert_int_equal(sk_frame_decode(&d, "tail\r", 5, &pc), 5);
  assert_int_equal(sk_frame_decode_eof(&d, &pc), 1);
  assert_int_equal(pc.flags, SK_FRAME_END);
  assert_int_equal(pc.len, 1);
  assert_int_equal(pc.data[0], '\r');

  /* A stream of just "\r" is a one-byte line. */
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 100);
  assert_int_equal(sk_frame_decode(&d, "\r", 1, &pc), 1);
  assert_int_equal(sk_frame_decode_eof(&d, &pc), 1);
  assert_int_equal(pc.flags, SK_FRAME_BEGIN | SK_FRAME_END);
  assert_int_equal(pc.len, 1);

  /* ...unless that "\r" makes the line too long. */
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 4);
  assert_int_equal(sk_frame_decode(&d, "abcd\r", 5, &pc), 5);
  assert_int_equal(sk_frame_decode_eof(&d, &pc), SK_EFRAMETOOBIG);

  /* Nothing pending: nothing to report. */
  sk_frame_decoder_init(&d, SK_FRAME_LINE, 100);
  assert_int_equal(sk_frame_decode(&d, "x\n", 2, &pc), 2);
  assert_int_equal(sk_frame_decode_eof(&d, &pc), 0);
}

/* ---- length-prefixed ---- */

static void test_len16_iso8583(void **state) {
  bytes b = {0};
  fr_out o;
  (void)state;
  encode_frame(&b, SK_FRAME_LEN16, iso8583_0800, sizeof(iso8583_0800));
  assert_int_equal(b.len, 2 + 39);
  assert_memory_equal(b.p, "\x00\x27", 2);
  assert_int_equal(decode_whole(SK_FRAME_LEN16, 39, b.p, b.len, &o), 0);
  assert_int_equal(o.nframes, 1);
  assert_frame(&o, 0, iso8583_0800, sizeof(iso8583_0800));
  fr_out_free(&o);
  assert_int_equal(decode_whole(SK_FRAME_LEN16, 38, b.p, b.len, &o),
                   SK_EFRAMETOOBIG);
  fr_out_free(&o);
  free(b.p);
}

static void test_ascii4_iso8583(void **state) {
  bytes b = {0};
  uint64_t rng = 8583;
  (void)state;
  encode_frame(&b, SK_FRAME_ASCII4, iso8583_0800, sizeof(iso8583_0800));
  encode_frame(&b, SK_FRAME_ASCII4, iso8583_0800, sizeof(iso8583_0800));
  assert_memory_equal(b.p, "0039", 4);
  fr_out want;
  fr_out_init(&want);
  for (int i = 0; i < 2; i++) {
    fr_out_bytes(&want, iso8583_0800, sizeof(iso8583_0800));
    fr_out_end_frame(&want);
  }
  check_cuttings(SK_FRAME_ASCII4, 9999, b.p, b.len, &want, &rng);
  fr_out_free(&want);
  free(b.p);
}

static void test_len32_split_header(void **state) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  (void)state;
  sk_frame_decoder_init(&d, SK_FRAME_LEN32, 1000);
  assert_false(sk_frame_decoder_busy(&d));
  assert_int_equal(sk_frame_decode(&d, "\x00\x00", 2, &pc), 2);
  assert_int_equal(pc.flags, 0);
  assert_int_equal(pc.len, 0);
  assert_true(sk_frame_decoder_busy(&d));
  assert_int_equal(sk_frame_decode(&d, "\x00", 1, &pc), 1);
  assert_int_equal(pc.flags, 0);
  /* The header completes at the end of the chunk: BEGIN comes at once,
   * with the frame length and no bytes yet. */
  assert_int_equal(sk_frame_decode(&d, "\x05", 1, &pc), 1);
  assert_int_equal(pc.flags, SK_FRAME_BEGIN);
  assert_int_equal(pc.frame_len, 5);
  assert_int_equal(pc.len, 0);
  assert_int_equal(sk_frame_decode(&d, "hel", 3, &pc), 3);
  assert_int_equal(pc.flags, 0);
  assert_int_equal(pc.frame_len, 0);
  assert_int_equal(pc.len, 3);
  assert_int_equal(sk_frame_decode(&d, "lo\x00\x00", 4, &pc), 2);
  assert_int_equal(pc.flags, SK_FRAME_END);
  assert_int_equal(pc.len, 2);
  assert_memory_equal(pc.data, "lo", 2);
  assert_false(sk_frame_decoder_busy(&d));
}

static void test_zero_length_frames(void **state) {
  (void)state;
  for (int m = SK_FRAME_LEN16; m <= SK_FRAME_ASCII4; m++) {
    sk_frame_decoder d;
    sk_frame_piece pc;
    bytes b = {0};
    encode_frame(&b, (sk_frame_mode)m, "", 0);
    encode_frame(&b, (sk_frame_mode)m, "", 0);
    /* Legal even when max_frame is 0. */
    sk_frame_decoder_init(&d, (sk_frame_mode)m, 0);
    size_t hl = b.len / 2;
    assert_int_equal(sk_frame_decode(&d, b.p, b.len, &pc), (int)hl);
    assert_int_equal(pc.flags, SK_FRAME_BEGIN | SK_FRAME_END);
    assert_int_equal(pc.len, 0);
    assert_int_equal(pc.frame_len, 0);
    assert_int_equal(sk_frame_decode(&d, b.p + hl, hl, &pc), (int)hl);
    assert_int_equal(pc.flags, SK_FRAME_BEGIN | SK_FRAME_END);
    assert_int_equal(sk_frame_decode_eof(&d, &pc), 0);
    free(b.p);
  }
}

static void test_oversize_header_rejected(void **state) {
  (void)state;
  /* Headers that claim more than max_frame, followed by only a few bytes:
   * the refusal comes right after the header, before any payload. */
  static const struct {
    sk_frame_mode mode;
    const char *in;
    size_t len;
  } cases[] = {
      {SK_FRAME_LEN16, "\x00\x65xx", 4},
      {SK_FRAME_LEN16, "\xff\xffxx", 4},
      {SK_FRAME_LEN32, "\x00\x00\x00\x65xx", 6},
      {SK_FRAME_LEN32, "\xff\xff\xff\xffxx", 6},
      {SK_FRAME_ASCII4, "0101xx", 6},
      {SK_FRAME_ASCII4, "9999xx", 6},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    for (size_t split = 1; split <= cases[i].len - 2; split++) {
      sk_frame_decoder d;
      sk_frame_piece pc;
      sk_frame_decoder_init(&d, cases[i].mode, 100);
      int rc = sk_frame_decode(&d, cases[i].in, split, &pc);
      if (split < cases[i].len - 2) {
        assert_int_equal(rc, (int)split);
        rc =
            sk_frame_decode(&d, cases[i].in + split, cases[i].len - split, &pc);
      }
      assert_int_equal(rc, SK_EFRAMETOOBIG);
      assert_int_equal(pc.len, 0);
      assert_int_equal(pc.flags, 0);
      assert_int_equal(sk_frame_decode(&d, "\x00\x00\x00\x00", 4, &pc),
                       SK_EFRAMETOOBIG);
      assert_int_equal(sk_frame_decode_eof(&d, &pc), SK_EFRAMETOOBIG);
    }
  }
  /* One byte over the limit is refused; the limit itself is not. */
  fr_out o;
  bytes b = {0};
  unsigned char payload[101] = {0};
  encode_frame(&b, SK_FRAME_LEN16, payload, 100);
  encode_frame(&b, SK_FRAME_LEN16, payload, 101);
  assert_int_equal(decode_whole(SK_FRAME_LEN16, 100, b.p, b.len, &o),
                   SK_EFRAMETOOBIG);
  assert_int_equal(o.nframes, 1);
  fr_out_free(&o);
  free(b.p);
}

static void test_ascii4_non_digit_rejected(void **state) {
  static const char *bad[] = {"00a1",
                              "a001",
                              "000:",
                              "/000",
                              " 042",
                              "+042",
                              "-042",
                              "0x10",
                              "\x00"
                              "000",
                              "00\xb0"
                              "0"};
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sk_frame_decoder d;
    sk_frame_piece pc;
    fr_out o;
    char in[16];
    memcpy(in, bad[i], 4);
    memcpy(in + 4, "payload", 7);
    assert_int_equal(decode_whole(SK_FRAME_ASCII4, 9999, in, 11, &o),
                     SK_EFRAMEBAD);
    assert_int_equal(o.nframes, 0);
    fr_out_free(&o);
    /* Refused byte by byte too, and the error sticks. */
    sk_frame_decoder_init(&d, SK_FRAME_ASCII4, 9999);
    int rc = 0;
    for (size_t j = 0; j < 11 && rc >= 0; j++)
      rc = sk_frame_decode(&d, in + j, 1, &pc);
    assert_int_equal(rc, SK_EFRAMEBAD);
    assert_int_equal(sk_frame_decode(&d, "0000", 4, &pc), SK_EFRAMEBAD);
  }
  /* A good frame, then a bad header. */
  fr_out o;
  assert_int_equal(decode_whole(SK_FRAME_ASCII4, 9999, "0002hi00x2hi", 12, &o),
                   SK_EFRAMEBAD);
  assert_int_equal(o.nframes, 1);
  assert_frame(&o, 0, "hi", 2);
  fr_out_free(&o);
}

static void test_eof_mid_header(void **state) {
  (void)state;
  static const struct {
    sk_frame_mode mode;
    const char *in;
    size_t len;
  } cases[] = {
      {SK_FRAME_LEN16, "\x00", 1},         {SK_FRAME_LEN32, "\x00", 1},
      {SK_FRAME_LEN32, "\x00\x00\x00", 3}, {SK_FRAME_ASCII4, "0", 1},
      {SK_FRAME_ASCII4, "000", 3},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sk_frame_decoder d;
    sk_frame_piece pc;
    sk_frame_decoder_init(&d, cases[i].mode, 100);
    assert_int_equal(sk_frame_decode(&d, cases[i].in, cases[i].len, &pc),
                     (int)cases[i].len);
    assert_int_equal(pc.flags, 0);
    assert_true(sk_frame_decoder_busy(&d));
    assert_int_equal(sk_frame_decode_eof(&d, &pc), SK_EFRAMEBAD);
    assert_int_equal(sk_frame_decode_eof(&d, &pc), SK_EFRAMEBAD);
  }
}

static void test_eof_mid_payload(void **state) {
  (void)state;
  for (int m = SK_FRAME_LEN16; m <= SK_FRAME_ASCII4; m++) {
    sk_frame_decoder d;
    sk_frame_piece pc;
    bytes b = {0};
    encode_frame(&b, (sk_frame_mode)m, "abcdef", 6);
    sk_frame_decoder_init(&d, (sk_frame_mode)m, 100);
    /* Everything but the last payload byte. */
    assert_int_equal(sk_frame_decode(&d, b.p, b.len - 1, &pc), (int)b.len - 1);
    assert_int_equal(pc.flags, SK_FRAME_BEGIN);
    assert_int_equal(pc.frame_len, 6);
    assert_int_equal(pc.len, 5);
    assert_true(sk_frame_decoder_busy(&d));
    assert_int_equal(sk_frame_decode_eof(&d, &pc), SK_EFRAMEBAD);
    /* The whole frame: a clean end. */
    sk_frame_decoder_init(&d, (sk_frame_mode)m, 100);
    assert_int_equal(sk_frame_decode(&d, b.p, b.len, &pc), (int)b.len);
    assert_int_equal(pc.flags, SK_FRAME_BEGIN | SK_FRAME_END);
    assert_false(sk_frame_decoder_busy(&d));
    assert_int_equal(sk_frame_decode_eof(&d, &pc), 0);
    free(b.p);
  }
}

static void test_reinit_clears_error(void **state) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  (void)state;
  sk_frame_decoder_init(&d, SK_FRAME_LEN16, 1);
  assert_int_equal(sk_frame_decode(&d, "\x00\x02", 2, &pc), SK_EFRAMETOOBIG);
  assert_int_equal(sk_frame_decode(&d, "\x00\x00", 2, &pc), SK_EFRAMETOOBIG);
  sk_frame_decoder_init(&d, SK_FRAME_LEN16, 1);
  assert_int_equal(sk_frame_decode(&d, "\x00\x01z", 3, &pc), 3);
  assert_int_equal(pc.flags, SK_FRAME_BEGIN | SK_FRAME_END);
  assert_int_equal(pc.data[0], 'z');
}

static void test_unknown_mode(void **state) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  (void)state;
  sk_frame_decoder_init(&d, (sk_frame_mode)42, 100);
  assert_int_equal(sk_frame_decode(&d, "abc", 3, &pc), -EINVAL);
  assert_int_equal(sk_frame_decode_eof(&d, &pc), -EINVAL);
}

/* ---- property checks ---- */

/* A random line payload: mostly "\r" and a few letters, never "\n". */
static void random_line(uint64_t *rng, unsigned char *p, size_t n) {
  static const char alphabet[] = "\r\rab c\t\x01\xff";
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)alphabet[rng_below(rng, sizeof(alphabet) - 1)];
}

/* Encodes a random sequence of frames of the given mode into b and records
 * them in want, so that decoding b must give back exactly want. */
static void random_frames(sk_frame_mode mode, size_t max_frame, uint64_t *rng,
                          bytes *b, fr_out *want) {
  size_t nframes = rng_below(rng, 40);
  size_t big = max_frame < 70000 ? max_frame : 70000;
  unsigned char *payload = malloc(big + 1);
  assert_non_null(payload);
  for (size_t f = 0; f < nframes; f++) {
    size_t n;
    int iso = 0;
    switch (rng_below(rng, 10)) {
    case 0:
    case 1:
      n = 0;
      break;
    case 2:
      n = big; /* as large as allowed (up to a test-time cap) */
      break;
    case 3:
      iso = mode != SK_FRAME_LINE && big >= sizeof(iso8583_0800);
      n = iso ? sizeof(iso8583_0800) : big > 0;
      break;
    case 4:
    case 5:
      n = rng_below(rng, big < 2000 ? big + 1 : 2001);
      break;
    default:
      n = rng_below(rng, big < 16 ? big + 1 : 17);
      break;
    }
    if (iso)
      memcpy(payload, iso8583_0800, n);
    else if (mode == SK_FRAME_LINE)
      random_line(rng, payload, n);
    else
      sk_test_fill_random(payload, n, rng_next(rng));
    fr_out_bytes(want, payload, n);
    fr_out_end_frame(want);
    if (mode != SK_FRAME_LINE) {
      encode_frame(b, mode, payload, n);
      continue;
    }
    bytes_add(b, payload, n);
    int last = f + 1 == nframes;
    if (last && n > 0 && rng_below(rng, 3) == 0)
      continue; /* an unterminated last line, ended by eof */
    /* A payload ending in "\r" needs "\r\n", or its own "\r" would be taken
     * for half of the terminator; other lines get it now and then. */
    if ((n > 0 && payload[n - 1] == '\r') || rng_below(rng, 4) == 0)
      bytes_add(b, "\r", 1);
    const char *t;
    size_t tl = sk_frame_trailer(mode, &t);
    bytes_add(b, t, tl);
  }
  free(payload);
}

static size_t random_max(sk_frame_mode mode, uint64_t *rng) {
  size_t lim = sk_frame_mode_limit(mode);
  switch (rng_below(rng, 5)) {
  case 0:
    return lim < 70000 ? lim : 70000;
  case 1:
    return sizeof(iso8583_0800);
  case 2:
    return rng_below(rng, 5);
  default:
    return rng_below(rng, 3000);
  }
}

static void property_roundtrip(sk_frame_mode mode, uint64_t seed) {
  uint64_t rng = seed;
  for (int iter = 0; iter < 150 / PROP_SHRINK; iter++) {
    size_t max_frame = random_max(mode, &rng);
    bytes b = {0};
    fr_out want;
    fr_out_init(&want);
    random_frames(mode, max_frame, &rng, &b, &want);
    check_cuttings(mode, max_frame, b.p, b.len,
                   mode == SK_FRAME_RAW ? NULL : &want, &rng);
    fr_out_free(&want);
    free(b.p);
  }
}

static void test_property_raw(void **state) {
  (void)state;
  property_roundtrip(SK_FRAME_RAW, 1);
}

static void test_property_line(void **state) {
  (void)state;
  property_roundtrip(SK_FRAME_LINE, 2);
}

static void test_property_len16(void **state) {
  (void)state;
  property_roundtrip(SK_FRAME_LEN16, 3);
}

static void test_property_len32(void **state) {
  (void)state;
  property_roundtrip(SK_FRAME_LEN32, 4);
}

static void test_property_ascii4(void **state) {
  (void)state;
  property_roundtrip(SK_FRAME_ASCII4, 5);
}

/* Valid streams with something wrong spliced in: a lying header, a cut-off
 * end, random garbage. Only agreement with the reference is required. */
static void test_property_damaged(void **state) {
  uint64_t rng = 6;
  (void)state;
  for (int iter = 0; iter < 600 / PROP_SHRINK; iter++) {
    sk_frame_mode mode = (sk_frame_mode)rng_below(&rng, 5);
    size_t max_frame = random_max(mode, &rng);
    bytes b = {0};
    fr_out want;
    fr_out_init(&want);
    random_frames(mode, max_frame, &rng, &b, &want);
    fr_out_free(&want);
    switch (rng_below(&rng, 4)) {
    case 0:
      if (b.len > 0)
        b.len -= 1 + rng_below(&rng, b.len); /* cut short */
      break;
    case 1: {
      unsigned char junk[64];
      size_t n = rng_below(&rng, sizeof(junk));
      sk_test_fill_random(junk, n, rng_next(&rng));
      bytes_add(&b, junk, n);
      break;
    }
    case 2: {
      unsigned char hdr[4];
      size_t claim = max_frame + 1 + rng_below(&rng, 3);
      int hl = sk_frame_header(mode, claim, hdr);
      if (hl > 0)
        bytes_add(&b, hdr, (size_t)hl);
      bytes_add(&b, "tail", 4);
      break;
    }
    default:
      if (b.len > 0)
        b.p[rng_below(&rng, b.len)] = (unsigned char)rng_next(&rng);
      break;
    }
    check_cuttings(mode, max_frame, b.p, b.len, NULL, &rng);
    free(b.p);
  }
}

/* Pure noise, with alphabets that hit each mode's interesting bytes. */
static void test_property_noise(void **state) {
  uint64_t rng = 7;
  unsigned char buf[512];
  (void)state;
  for (int iter = 0; iter < 1000 / PROP_SHRINK; iter++) {
    sk_frame_mode mode = (sk_frame_mode)rng_below(&rng, 5);
    size_t n = rng_below(&rng, sizeof(buf) + 1);
    for (size_t i = 0; i < n; i++) {
      uint64_t r = rng_next(&rng);
      if (mode == SK_FRAME_LINE)
        buf[i] = (unsigned char)"\r\n\nab"[r % 5];
      else if (mode == SK_FRAME_ASCII4)
        buf[i] = (unsigned char)(r % 16 ? '0' + r % 3 : r >> 8);
      else
        buf[i] = (unsigned char)(r % 4 ? r % 3 : r >> 8);
    }
    check_cuttings(mode, rng_below(&rng, 40), buf, n, NULL, &rng);
  }
}

/* One test per line: tests/CMakeLists.txt registers only the first test
 * named on each line with CTest, so clang-format must not join them. */
/* clang-format off */
SK_TEST_MAIN(
    cmocka_unit_test(test_mode_names),
    cmocka_unit_test(test_mode_limits),
    cmocka_unit_test(test_header_encoding),
    cmocka_unit_test(test_trailer),
    cmocka_unit_test(test_raw_chunks),
    cmocka_unit_test(test_line_basic),
    cmocka_unit_test(test_line_only_one_cr_dropped),
    cmocka_unit_test(test_line_cr_split_from_lf),
    cmocka_unit_test(test_line_cr_held_then_payload),
    cmocka_unit_test(test_line_too_long),
    cmocka_unit_test(test_line_eof_pending),
    cmocka_unit_test(test_len16_iso8583),
    cmocka_unit_test(test_ascii4_iso8583),
    cmocka_unit_test(test_len32_split_header),
    cmocka_unit_test(test_zero_length_frames),
    cmocka_unit_test(test_oversize_header_rejected),
    cmocka_unit_test(test_ascii4_non_digit_rejected),
    cmocka_unit_test(test_eof_mid_header),
    cmocka_unit_test(test_eof_mid_payload),
    cmocka_unit_test(test_reinit_clears_error),
    cmocka_unit_test(test_unknown_mode),
    cmocka_unit_test(test_property_raw),
    cmocka_unit_test(test_property_line),
    cmocka_unit_test(test_property_len16),
    cmocka_unit_test(test_property_len32),
    cmocka_unit_test(test_property_ascii4),
    cmocka_unit_test(test_property_damaged),
    cmocka_unit_test(test_property_noise))
/* clang-format on */
