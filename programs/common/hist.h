/* A log-bucketed latency histogram in constant memory (HdrHistogram-like):
 * values are bucketed by power of two, each power split into 64 linear
 * sub-buckets, so any reported percentile is within 1/64 (1.6%) of the true
 * value. Values are nanoseconds; anything above 2^46 (about 19 hours) lands
 * in the last bucket. */
#ifndef SK_HIST_H
#define SK_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_EXP      41

typedef struct hist {
  uint64_t count;
  uint64_t min, max;
  long double sum;
  uint64_t buckets[HIST_EXP][HIST_SUB];
} hist;

void hist_reset(hist *h);
void hist_add(hist *h, uint64_t v);
/* Merges src into dst. */
void hist_merge(hist *dst, const hist *src);
/* The value at percentile p (0..100); 0 when empty. */
uint64_t hist_percentile(const hist *h, double p);
double hist_mean(const hist *h);

#endif
