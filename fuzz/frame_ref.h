/* A reference framing decoder and a streaming harness, shared by
 * tests/test_frame.c and fuzz/fuzz_frame.c.
 *
 * The reference decoder sees the whole input at once and is written to be
 * obviously correct rather than fast. The harness drives the real streaming
 * decoder over the same input cut into chunks, checks every piece it returns
 * against the contract in sockit/frame.h, and reassembles complete frames.
 * Both produce an fr_out; equal fr_outs mean the streaming decoder agreed
 * with the reference for that chunking.
 *
 * Test-only code: it allocates freely and reports problems as strings.
 */
#ifndef SOCKIT_FUZZ_FRAME_REF_H
#define SOCKIT_FUZZ_FRAME_REF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockit/error.h"
#include "sockit/frame.h"

/* Complete frames, concatenated in buf with their end offsets in ends, and
 * how the stream finished: 0, or the error either decoder reported. */
typedef struct fr_out {
  unsigned char *buf;
  size_t len, cap;
  size_t *ends;
  size_t nframes, fcap;
  int code;
} fr_out;

static inline void fr_out_init(fr_out *o) {
  memset(o, 0, sizeof(*o));
}

static inline void fr_out_free(fr_out *o) {
  free(o->buf);
  free(o->ends);
  memset(o, 0, sizeof(*o));
}

static inline void fr_out_bytes(fr_out *o, const unsigned char *p, size_t n) {
  if (n == 0)
    return;
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n)
      cap *= 2;
    unsigned char *nb = realloc(o->buf, cap);
    if (nb == NULL)
      abort();
    o->buf = nb;
    o->cap = cap;
  }
  memcpy(o->buf + o->len, p, n);
  o->len += n;
}

static inline void fr_out_end_frame(fr_out *o) {
  if (o->nframes == o->fcap) {
    size_t cap = o->fcap ? o->fcap * 2 : 64;
    size_t *ne = realloc(o->ends, cap * sizeof(*ne));
    if (ne == NULL)
      abort();
    o->ends = ne;
    o->fcap = cap;
  }
  o->ends[o->nframes++] = o->len;
}

/* Drops bytes of a frame that never completed. */
static inline void fr_out_drop_partial(fr_out *o) {
  o->len = o->nframes ? o->ends[o->nframes - 1] : 0;
}

static inline size_t fr_out_frame(const fr_out *o, size_t i,
                                  const unsigned char **p) {
  size_t start = i ? o->ends[i - 1] : 0;
  *p = o->buf + start;
  return o->ends[i] - start;
}

static inline int fr_out_equal(const fr_out *a, const fr_out *b) {
  if (a->code != b->code || a->nframes != b->nframes || a->len != b->len)
    return 0;
  if (a->nframes && memcmp(a->ends, b->ends, a->nframes * sizeof(size_t)))
    return 0;
  return a->len == 0 || memcmp(a->buf, b->buf, a->len) == 0;
}

/* The reference decoder. Raw mode depends on how the input was cut (each
 * chunk is a frame), so it takes the chunk sizes too; the other modes ignore
 * them. */
static inline void fr_ref_decode(sk_frame_mode mode, size_t max_frame,
                                 const unsigned char *in, size_t len,
                                 const size_t *chunks, size_t nchunks,
                                 fr_out *o) {
  size_t pos = 0;

  o->code = 0;
  if (mode == SK_FRAME_RAW) {
    for (size_t i = 0; i < nchunks; i++) {
      if (chunks[i] == 0)
        continue; /* an empty read yields nothing */
      fr_out_bytes(o, in + pos, chunks[i]);
      fr_out_end_frame(o);
      pos += chunks[i];
    }
    return;
  }

  if (mode == SK_FRAME_LINE) {
    while (pos < len) {
      size_t end = pos;
      while (end < len && in[end] != '\n')
        end++;
      size_t n = end - pos;
      /* One "\r" right before the "\n" is dropped; an unterminated line at
       * the end of the stream keeps all its bytes. */
      if (end < len && n > 0 && in[end - 1] == '\r')
        n--;
      if (n > max_frame) {
        o->code = SK_EFRAMETOOBIG;
        return;
      }
      fr_out_bytes(o, in + pos, n);
      fr_out_end_frame(o);
      pos = end + 1;
    }
    return;
  }

  size_t hsize = mode == SK_FRAME_LEN16 ? 2 : 4;
  while (pos < len) {
    size_t avail = len - pos;
    size_t flen = 0;
    for (size_t i = 0; i < hsize && i < avail; i++) {
      unsigned char c = in[pos + i];
      if (mode == SK_FRAME_ASCII4) {
        if (c < '0' || c > '9') {
          o->code = SK_EFRAMEBAD;
          return;
        }
        flen = flen * 10 + (size_t)(c - '0');
      } else {
        flen = flen * 256 + c;
      }
    }
    if (avail < hsize) {
      o->code = SK_EFRAMEBAD; /* the stream ended inside a header */
      return;
    }
    if (flen > max_frame) {
      o->code = SK_EFRAMETOOBIG;
      return;
    }
    if (avail - hsize < flen) {
      o->code = SK_EFRAMEBAD; /* the stream ended inside a payload */
      return;
    }
    fr_out_bytes(o, in + pos + hsize, flen);
    fr_out_end_frame(o);
    pos += hsize + flen;
  }
}

/* Where the harness puts each chunk before decoding it: tests copy it to the
 * end of a page followed by a guard page, the fuzzer to an exact-size heap
 * block, so that reading past the chunk faults. */
typedef const unsigned char *(*fr_place_fn)(void *ctx, const unsigned char *p,
                                            size_t n);

static inline int fr_is_prefixed(sk_frame_mode mode) {
  return mode == SK_FRAME_LEN16 || mode == SK_FRAME_LEN32 ||
         mode == SK_FRAME_ASCII4;
}

/* Checks one piece against the contract and appends it. Returns NULL or a
 * description of the violation. */
static inline const char *fr_take_piece(sk_frame_mode mode, fr_out *o,
                                        const sk_frame_piece *pc, int *in_frame,
                                        size_t *frame_len,
                                        size_t *frame_start) {
  if (pc->flags & ~(unsigned)(SK_FRAME_BEGIN | SK_FRAME_END))
    return "unknown flag bits";
  if (pc->len > 0 && pc->data == NULL)
    return "piece with bytes but no data pointer";
  if (pc->flags == 0 && pc->len == 0)
    return NULL; /* nothing yet */
  if (!(pc->flags & SK_FRAME_BEGIN) != !!*in_frame)
    return *in_frame ? "BEGIN inside a frame" : "piece outside a frame";
  if (pc->flags & SK_FRAME_BEGIN) {
    if (!fr_is_prefixed(mode) && pc->frame_len != 0)
      return "frame_len set in a mode without a length";
    if (fr_is_prefixed(mode) && pc->len > pc->frame_len)
      return "BEGIN piece longer than frame_len";
    *in_frame = 1;
    *frame_len = pc->frame_len;
    *frame_start = o->len;
  } else if (pc->frame_len != 0) {
    return "frame_len set without BEGIN";
  }
  fr_out_bytes(o, pc->data, pc->len);
  if (fr_is_prefixed(mode) && o->len - *frame_start > *frame_len)
    return "frame longer than its frame_len";
  if (pc->flags & SK_FRAME_END) {
    if (fr_is_prefixed(mode) && o->len - *frame_start != *frame_len)
      return "frame shorter than its frame_len";
    fr_out_end_frame(o);
    *in_frame = 0;
  }
  return NULL;
}

/* Runs the streaming decoder over in[0..len) cut into the given chunks, then
 * signals the end of the stream. Returns NULL when every call kept the
 * contract (o then holds what was decoded), else what went wrong. */
static inline const char *fr_stream_decode(sk_frame_mode mode, size_t max_frame,
                                           const unsigned char *in, size_t len,
                                           const size_t *chunks, size_t nchunks,
                                           fr_place_fn place, void *ctx,
                                           fr_out *o) {
  sk_frame_decoder d;
  sk_frame_piece pc;
  int in_frame = 0;
  size_t frame_len = 0, frame_start = 0, pos = 0;
  const char *err;

  sk_frame_decoder_init(&d, mode, max_frame);
  if (d.mode != mode || d.max_frame != max_frame || sk_frame_decoder_busy(&d))
    return "bad initial state";
  o->code = 0;
  for (size_t c = 0; c < nchunks; c++) {
    size_t n = chunks[c];
    if (n > len - pos)
      return "chunks longer than the input";
    /* No pointer arithmetic on a NULL input of length 0. */
    const unsigned char *p = place(ctx, n ? in + pos : in, n);
    size_t off = 0;
    pos += n;
    if (n == 0) {
      int rc = sk_frame_decode(&d, p, 0, &pc);
      if (rc != 0 || pc.flags != 0 || pc.len != 0)
        return "empty input produced something";
      continue;
    }
    while (off < n) {
      int rc = sk_frame_decode(&d, p + off, n - off, &pc);
      if (rc < 0) {
        if (rc != SK_EFRAMETOOBIG && rc != SK_EFRAMEBAD)
          return "unexpected error code";
        if (sk_frame_decode(&d, p + off, n - off, &pc) != rc)
          return "error did not stick";
        if (sk_frame_decode_eof(&d, &pc) != rc)
          return "error did not stick at eof";
        fr_out_drop_partial(o);
        o->code = rc;
        return NULL;
      }
      if ((size_t)rc > n - off)
        return "consumed more than given";
      if (pc.len > 0) {
        /* Compared as integers: the held-back "\r" lives in another object. */
        uintptr_t lo = (uintptr_t)(p + off), hi = lo + (size_t)rc;
        uintptr_t at = (uintptr_t)pc.data;
        int inside = at >= lo && at + pc.len <= hi;
        int held_cr = mode == SK_FRAME_LINE && rc == 0 && pc.len == 1 &&
                      pc.data[0] == '\r';
        if (!inside && !held_cr)
          return "piece points outside the consumed input";
      }
      if (pc.flags == 0 && pc.len == 0 && (size_t)rc != n - off)
        return "no output but input left unconsumed";
      if (mode == SK_FRAME_RAW &&
          (pc.flags != (SK_FRAME_BEGIN | SK_FRAME_END) || pc.data != p ||
           pc.len != n || (size_t)rc != n))
        return "raw piece is not the whole chunk";
      if ((err = fr_take_piece(mode, o, &pc, &in_frame, &frame_len,
                               &frame_start)) != NULL)
        return err;
      if (in_frame && !sk_frame_decoder_busy(&d))
        return "not busy inside a frame";
      off += (size_t)rc;
    }
  }
  if (pos != len)
    return "chunks shorter than the input";

  int busy = sk_frame_decoder_busy(&d);
  int rc = sk_frame_decode_eof(&d, &pc);
  if (rc < 0) {
    if (rc != SK_EFRAMETOOBIG && rc != SK_EFRAMEBAD)
      return "unexpected error code at eof";
    if (!busy)
      return "eof error while not busy";
    if (sk_frame_decode_eof(&d, &pc) != rc)
      return "eof error did not stick";
    if (sk_frame_decode(&d, "x", 1, &pc) != rc)
      return "eof error did not stick for decode";
    fr_out_drop_partial(o);
    o->code = rc;
    return NULL;
  }
  if (rc == 0) {
    if (busy || in_frame)
      return "eof returned 0 while busy";
    return NULL;
  }
  if (rc != 1 || mode != SK_FRAME_LINE || !busy)
    return "eof returned 1 unexpectedly";
  if (!(pc.flags & SK_FRAME_END))
    return "eof piece without END";
  if (pc.len > 0 && !(pc.len == 1 && pc.data[0] == '\r'))
    return "eof piece carries more than a held-back CR";
  if ((err = fr_take_piece(mode, o, &pc, &in_frame, &frame_len,
                           &frame_start)) != NULL)
    return err;
  if (sk_frame_decoder_busy(&d) || sk_frame_decode_eof(&d, &pc) != 0)
    return "decoder still busy after eof";
  return NULL;
}

#endif
