/* Hex dumping and hex decoding for sockit-client (see hexdump.h). */
#include "hexdump.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char hexdigits[] = "0123456789abcdef";

void hexdump_init(struct hexdump *h) {
  memset(h, 0, sizeof *h);
}

size_t hexdump_room(size_t len) {
  /* Every 16 input bytes complete at most one line. */
  return (len / 16 + 1) * HEXDUMP_LINE_MAX;
}

/* Writes the offset column. hexdump prints eight hex digits and simply
 * grows the field beyond 4 GiB, which %08 does as well. */
static size_t put_offset(uint64_t off, char *out) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%08" PRIx64, off);
  memcpy(out, tmp, (size_t)n);
  return (size_t)n;
}

/* Formats the n (1..16) bytes of h->line as one dump line. */
static size_t put_line(const struct hexdump *h, unsigned n, char *out) {
  size_t k = put_offset(h->offset, out);
  out[k++] = ' ';
  out[k++] = ' ';
  for (unsigned i = 0; i < 16; i++) {
    /* The extra space after the eighth byte is what splits the hex
     * column into two groups of eight, as in hexdump -C. */
    if (i == 8)
      out[k++] = ' ';
    if (i < n) {
      out[k++] = hexdigits[h->line[i] >> 4];
      out[k++] = hexdigits[h->line[i] & 15];
    } else {
      /* Padding keeps the ASCII column aligned on a short last line. */
      out[k++] = ' ';
      out[k++] = ' ';
    }
    out[k++] = ' ';
  }
  out[k++] = ' ';
  out[k++] = '|';
  for (unsigned i = 0; i < n; i++) {
    unsigned char c = h->line[i];
    out[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '.';
  }
  out[k++] = '|';
  out[k++] = '\n';
  return k;
}

size_t hexdump_feed(struct hexdump *h, const void *data, size_t len,
                    char *out) {
  const unsigned char *p = data;
  size_t k = 0;
  while (len > 0) {
    size_t take = 16 - h->fill;
    if (take > len)
      take = len;
    memcpy(h->line + h->fill, p, take);
    h->fill += (unsigned)take;
    p += take;
    len -= take;
    if (h->fill == 16) {
      k += put_line(h, 16, out + k);
      h->offset += 16;
      h->fill = 0;
    }
  }
  return k;
}

size_t hexdump_finish(struct hexdump *h, int all_empty, char *out) {
  size_t k = 0;
  uint64_t total = h->offset + h->fill;
  if (h->fill > 0)
    k += put_line(h, h->fill, out);
  if (total > 0 || all_empty) {
    k += put_offset(total, out + k);
    out[k++] = '\n';
  }
  hexdump_init(h);
  return k;
}

void hexdecoder_init(struct hexdecoder *d) {
  memset(d, 0, sizeof *d);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int hexdecoder_feed(struct hexdecoder *d, const char *text, size_t len,
                    unsigned char *out, size_t *outlen, size_t *bad) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    int v = hexval(c);
    if (v < 0) {
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ':')
        continue;
      *outlen = n;
      if (bad != NULL)
        *bad = i;
      return -1;
    }
    if (d->have_nibble) {
      out[n++] = (unsigned char)(d->nibble << 4 | (unsigned)v);
      d->have_nibble = 0;
    } else {
      d->nibble = (unsigned)v;
      d->have_nibble = 1;
    }
  }
  *outlen = n;
  return 0;
}

int hexdecoder_finish(struct hexdecoder *d) {
  int rc = d->have_nibble ? -1 : 0;
  hexdecoder_init(d);
  return rc;
}
