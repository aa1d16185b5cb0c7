#include "hist.h"

#include <string.h>

void hist_reset(hist *h) {
  memset(h, 0, sizeof(*h));
  h->min = UINT64_MAX;
}

/* Bucket (e, s): values below HIST_SUB map linearly into exponent 0; above,
 * e is how far the top bit sits past HIST_SUB_BITS and s the next bits. */
static void locate(uint64_t v, unsigned *e, unsigned *s) {
  if (v < HIST_SUB) {
    *e = 0;
    *s = (unsigned)v;
    return;
  }
  unsigned top = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = top - HIST_SUB_BITS;
  *e = shift + 1;
  *s = (unsigned)(v >> shift) & (HIST_SUB - 1);
  if (*e >= HIST_EXP) {
    *e = HIST_EXP - 1;
    *s = HIST_SUB - 1;
  }
}

/* The upper edge of a bucket: reporting the upper edge never understates a
 * latency. */
static uint64_t bucket_value(unsigned e, unsigned s) {
  if (e == 0)
    return s;
  return (((uint64_t)(s | HIST_SUB)) << (e - 1)) + ((1ull << (e - 1)) - 1);
}

void hist_add(hist *h, uint64_t v) {
  unsigned e, s;
  locate(v, &e, &s);
  h->buckets[e][s]++;
  h->count++;
  h->sum += v;
  if (v < h->min)
    h->min = v;
  if (v > h->max)
    h->max = v;
}

void hist_merge(hist *dst, const hist *src) {
  for (unsigned e = 0; e < HIST_EXP; e++)
    for (unsigned s = 0; s < HIST_SUB; s++)
      dst->buckets[e][s] += src->buckets[e][s];
  dst->count += src->count;
  dst->sum += src->sum;
  if (src->min < dst->min)
    dst->min = src->min;
  if (src->max > dst->max)
    dst->max = src->max;
}

uint64_t hist_percentile(const hist *h, double p) {
  if (h->count == 0)
    return 0;
  if (p >= 100.0)
    return h->max;
  uint64_t rank = (uint64_t)((p / 100.0) * (double)h->count);
  if (rank >= h->count)
    rank = h->count - 1;
  uint64_t seen = 0;
  for (unsigned e = 0; e < HIST_EXP; e++)
    for (unsigned s = 0; s < HIST_SUB; s++) {
      seen += h->buckets[e][s];
      if (seen > rank) {
        uint64_t v = bucket_value(e, s);
        return v > h->max ? h->max : v;
      }
    }
  return h->max;
}

double hist_mean(const hist *h) {
  return h->count ? (double)(h->sum / h->count) : 0.0;
}
