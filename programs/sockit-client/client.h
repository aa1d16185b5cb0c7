/* sockit-client internals: the options every mode reads, the reply
 * printer, the connection helpers, and one entry point per mode.
 *
 * A mode is one file (send.c, pump.c, udp.c; bench.c later) with a run
 * function; main.c parses the options, picks the mode from its table and
 * calls it. Every run function either returns 0 or ends the process with
 * exactly one line on stderr through client_fail(). */
#ifndef SKC_CLIENT_H
#define SKC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sockit.h>

#include "hexdump.h"

#ifndef SK_PROG_NAME
#define SK_PROG_NAME "sockit-client"
#endif

/* The largest payload of one UDP datagram over IPv4 (65535 minus the IP
 * and UDP headers); IPv6 allows a little more, but one limit is simpler to
 * document and holds everywhere. */
#define CLIENT_UDP_MAX 65507

/* One MESSAGE from the command line, after --hex-input decoding. */
struct message {
  const unsigned char *data;
  size_t len;
};

/* Where the bytes to send come from. */
enum input_kind {
  INPUT_MESSAGES, /* MESSAGE arguments */
  INPUT_STDIN,    /* "-", or no MESSAGE at all */
  INPUT_FILE,     /* --file PATH */
};

struct client_opts {
  const char *addr; /* ADDR as given, without a tcp:// or udp:// prefix */
  enum input_kind input;
  const struct message *msgs; /* INPUT_MESSAGES */
  size_t nmsgs;
  const char *file; /* INPUT_FILE */
  int interactive;  /* INPUT_STDIN and stdin is a terminal */
  int udp;          /* --udp */
  sk_frame_mode frame;
  size_t max_frame; /* --max-frame */
  int hex;          /* --hex: print replies as a hex dump */
  int hex_input;    /* --hex-input: MESSAGEs and input lines are hex */
  int timeout_ms;   /* --timeout; -1 = no limit */
  unsigned retries; /* --retries (UDP) */
};

/* ---- client.c: failing, connecting, writing ---- */

/* Prints "sockit-client: MESSAGE" on stderr and exits 1. Replies already
 * received and formatted (see client_set_output()) are written to stdout
 * first, so a failure never swallows what did arrive. */
void client_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

struct output;
/* Names the reply printer client_fail() flushes; NULL for none. */
void client_set_output(struct output *o);

/* "10 s", "0.5 s": a timeout as the user gave it, for messages. */
const char *client_timeout_text(int timeout_ms);

/* Connects to o->addr (type SOCK_STREAM or SOCK_DGRAM) within the connect
 * timeout, trying every address the name resolves to. On failure prints
 * the one error line and exits 1. Logs the connection with -v. */
void client_connect(sk_socket *s, const struct client_opts *o, int type);

/* Writes all of buf to a descriptor that may or may not be non-blocking
 * (stdout is whatever the caller inherited). Returns 0 or a negative
 * errno. */
int client_write_all(int fd, const void *buf, size_t len);

/* Bytes that need room in the output buffer beyond the payload itself:
 * the end of a hex dump (two lines) plus a line terminator, with margin. */
#define OUTPUT_RESERVE (4 * HEXDUMP_LINE_MAX)

/* ---- output.c: decoding replies and formatting them for stdout ---- */

/* The reply printer: cuts the bytes received into frames (--frame) and
 * formats each one into a fixed buffer (raw bytes, a line, or a hex dump),
 * from which the caller writes to stdout when stdout can take it. */
struct output {
  sk_frame_mode mode;
  int hex;
  sk_frame_decoder dec;
  struct hexdump hd;
  char *buf;            /* formatted bytes waiting for stdout: */
  size_t cap, pos, len; /* buf[pos..len) */
  uint64_t frames;      /* complete frames printed (framed modes) */
  uint64_t frame_limit; /* stop taking input after this many; 0 = none */
};

/* Returns 0 or -ENOMEM. */
int output_init(struct output *o, sk_frame_mode mode, int hex,
                size_t max_frame);
void output_free(struct output *o);

/* Decodes and formats as much of data[0..len) as fits in the buffer.
 * Returns the bytes consumed (less than len when the buffer filled up or
 * frame_limit was reached), or SK_EFRAMETOOBIG / SK_EFRAMEBAD. */
ssize_t output_feed(struct output *o, const void *data, size_t len);

/* The peer closed: ends a pending line or hex dump. Returns 0, or
 * SK_EFRAMEBAD if the stream stopped inside a frame. */
int output_eof(struct output *o);

/* Formatted bytes waiting for stdout. */
static inline size_t output_pending(const struct output *o) {
  return o->len - o->pos;
}
static inline const char *output_data(const struct output *o) {
  return o->buf + o->pos;
}
/* n bytes of output_data() were written. */
void output_consume(struct output *o, size_t n);

/* Writes everything pending to fd, waiting as long as it takes. */
int output_flush(struct output *o, int fd);

/* Prints one datagram as one message (raw, or its own hex dump) on fd. */
int output_datagram(struct output *o, const void *data, size_t len, int fd);

/* ---- the modes ---- */

/* send.c: MESSAGEs as frames, each answered by one reply frame. */
int send_run(const struct client_opts *o);

/* pump.c: the netcat-style bidirectional pump for stdin, --file, raw
 * MESSAGEs and interactive use. */
int pump_run(const struct client_opts *o);

/* udp.c: one datagram per message, one reply each, with retries. */
int udp_run(const struct client_opts *o);

#endif
