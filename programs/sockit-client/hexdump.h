/* Hex in both directions for sockit-client: a streaming dumper in the
 * format of `hexdump -C -v` (offset, 16 bytes in hex, an ASCII column) for
 * --hex, and a streaming decoder of hex text for --hex-input. */
#ifndef SKC_HEXDUMP_H
#define SKC_HEXDUMP_H

#include <stddef.h>
#include <stdint.h>

/* One dump line is 78 characters and "\n" while offsets fit in eight hex
 * digits; the offset column grows beyond 4 GiB, so leave room for 16. */
#define HEXDUMP_LINE_MAX 96

/* A dump in progress. Bytes are collected until a line of 16 is complete,
 * so a dump can be fed in pieces of any size. */
struct hexdump {
  uint64_t offset;        /* bytes dumped so far (complete lines) */
  unsigned char line[16]; /* the bytes of the current, unfinished line */
  unsigned fill;          /* how many of them there are */
};

void hexdump_init(struct hexdump *h);

/* The most output hexdump_feed() can produce for len input bytes. */
size_t hexdump_room(size_t len);

/* Dumps data[0..len): appends every line it completes to out and returns
 * the number of characters written (out needs hexdump_room(len) bytes). */
size_t hexdump_feed(struct hexdump *h, const void *data, size_t len, char *out);

/* Ends the dump: writes the unfinished line, if any, and the final line
 * holding just the total length, as hexdump does, then resets h for the
 * next dump. With all_empty set, an empty dump still prints its offset
 * line ("00000000"), which is how a zero-length frame stays visible.
 * out needs 2 * HEXDUMP_LINE_MAX bytes. Returns the characters written. */
size_t hexdump_finish(struct hexdump *h, int all_empty, char *out);

/* A hex text decoder. Digits may be separated by white space and ':' (so
 * "08 00", "08:00" and "0800" are the same); anything else is an error. */
struct hexdecoder {
  int have_nibble; /* a first digit is waiting for its partner */
  unsigned nibble;
};

void hexdecoder_init(struct hexdecoder *d);

/* Decodes text[0..len) into out (which needs len / 2 + 1 bytes) and stores
 * the byte count in *outlen. Returns 0, or -1 on a character that is
 * neither a hex digit nor a separator (*bad then indexes it). */
int hexdecoder_feed(struct hexdecoder *d, const char *text, size_t len,
                    unsigned char *out, size_t *outlen, size_t *bad);

/* Returns 0 if the text ended on a whole byte, -1 if a digit was left
 * over; resets d either way. */
int hexdecoder_finish(struct hexdecoder *d);

#endif
