/* The UDP mode (--udp): every message is one datagram, answered by one
 * reply datagram.
 *
 * Datagrams get lost, so each one is sent, and if no reply comes within
 * --timeout it is sent again, --retries times at most; then the run fails
 * with "no reply from ADDR after N tries". What counts as a message:
 *   - each MESSAGE argument, as is;
 *   - --file: the whole file (at most 65507 bytes), like a frame;
 *   - stdin: each line, its "\n" included (what netcat -u sends, so an
 *     echo comes back as a line), or with --hex-input the bytes the line
 *     spells out in hex (no newline).
 *
 * The socket is connected, so the kernel passes on only datagrams from
 * the server's address, and an ICMP "port unreachable" surfaces as
 * ECONNREFUSED, which ends the run at once: nothing listens there, and
 * resending would not change that. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Room for any UDP datagram (65507 over IPv4, 65527 over IPv6) and then
 * some, so a larger one (only possible on Unix sockets) is detected. */
#define REPLY_BUF 65536

/* The longest hex text accepted for one datagram: two digits a byte, with
 * a separator after each. */
#define HEX_TEXT_MAX (3 * CLIENT_UDP_MAX + 2)

struct udp {
  const struct client_opts *o;
  sk_socket sock;
  struct output out;
  unsigned char *reply;
  size_t count; /* datagrams answered */
};

static void fail_refused(const struct udp *u) {
  client_fail("no reply from %s: %s (nothing listens on that port)", u->o->addr,
              sk_strerror(-ECONNREFUSED));
}

/* Throws away replies that arrived late, to an earlier try of an earlier
 * datagram, so they are not taken for the answer to the next one. */
static void drop_stale(struct udp *u) {
  for (;;) {
    ssize_t n = sk_socket_recv(&u->sock, u->reply, REPLY_BUF, 0);
    if (n == -ECONNREFUSED)
      fail_refused(u);
    if (n < 0 && n != -EMSGSIZE)
      return;
    log_debug("dropped a late reply of %zd bytes", n);
  }
}

static void exchange(struct udp *u, const unsigned char *data, size_t len) {
  const struct client_opts *o = u->o;
  unsigned tries = o->retries + 1;
  drop_stale(u);
  for (unsigned t = 1; t <= tries; t++) {
    int rc = sk_socket_send(&u->sock, data, len, o->timeout_ms);
    if (rc == -ECONNREFUSED)
      fail_refused(u);
    if (rc < 0)
      client_fail("send to %s: %s", o->addr, sk_strerror(rc));
    log_debug("sent datagram %zu (%zu bytes, try %u of %u)", u->count + 1, len,
              t, tries);
    ssize_t n = sk_socket_recv(&u->sock, u->reply, REPLY_BUF, o->timeout_ms);
    if (n == -ETIMEDOUT) {
      if (t < tries)
        log_info("no reply to datagram %zu within %s; sending it again",
                 u->count + 1, client_timeout_text(o->timeout_ms));
      continue;
    }
    if (n == -ECONNREFUSED)
      fail_refused(u);
    if (n == -EMSGSIZE)
      client_fail("reply from %s is larger than %d bytes", o->addr, REPLY_BUF);
    if (n < 0)
      client_fail("receive from %s: %s", o->addr, sk_strerror((int)n));
    log_debug("reply %zu: %zd bytes", u->count + 1, n);
    rc = output_datagram(&u->out, u->reply, (size_t)n, STDOUT_FILENO);
    if (rc < 0)
      client_stdout_failed(rc);
    u->count++;
    return;
  }
  client_fail("no reply from %s after %u tr%s", o->addr, tries,
              tries == 1 ? "y" : "ies");
}

/* Decodes hex text in place. Returns the byte count; fails with a message
 * naming what (e.g. "stdin line 3") on bad text. */
static size_t decode_hex(unsigned char *buf, size_t len, const char *what,
                         unsigned long long num) {
  struct hexdecoder d;
  size_t n, bad;
  hexdecoder_init(&d);
  /* Decoding never writes ahead of what it reads (two digits make one
   * byte), so in place is safe. */
  if (hexdecoder_feed(&d, (const char *)buf, len, buf, &n, &bad) < 0)
    client_fail("%s %llu is not hex: unexpected '%c'", what, num, buf[bad]);
  if (hexdecoder_finish(&d) < 0)
    client_fail("%s %llu is not hex: odd number of digits", what, num);
  return n;
}

/* Sends each line of stdin as one datagram. */
static void send_lines(struct udp *u) {
  const struct client_opts *o = u->o;
  size_t cap = o->hex_input ? HEX_TEXT_MAX : CLIENT_UDP_MAX;
  unsigned char *line = malloc(cap + 1);
  if (line == NULL)
    client_fail("out of memory");
  unsigned long long num = 0;
  for (;;) {
    size_t len = 0;
    int c = EOF;
    while (len <= cap && (c = getc(stdin)) != EOF) {
      line[len++] = (unsigned char)c;
      if (c == '\n')
        break;
    }
    if (ferror(stdin))
      client_fail("read stdin: %s", sk_strerror(-errno));
    if (len == 0)
      break;
    num++;
    if (len > cap)
      client_fail("stdin line %llu is longer than a UDP datagram can hold "
                  "(%d bytes)",
                  num, CLIENT_UDP_MAX);
    if (o->hex_input) {
      len = decode_hex(line, len, "stdin line", num);
      if (len > CLIENT_UDP_MAX)
        client_fail("stdin line %llu is longer than a UDP datagram can "
                    "hold (%d bytes)",
                    num, CLIENT_UDP_MAX);
    }
    exchange(u, line, len);
    if (c == EOF)
      break;
  }
  free(line);
}

/* Sends the whole file as one datagram. */
static void send_file(struct udp *u) {
  const struct client_opts *o = u->o;
  size_t cap = o->hex_input ? HEX_TEXT_MAX : CLIENT_UDP_MAX;
  unsigned char *buf = malloc(cap + 1);
  if (buf == NULL)
    client_fail("out of memory");
  int fd = open(o->file, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    client_fail("cannot open %s: %s", o->file, sk_strerror(-errno));
  size_t len = 0;
  for (;;) {
    /* Reading one byte past the limit tells a file that fits from one
     * that does not, without trusting st_size (a pipe has none). */
    ssize_t n = read(fd, buf + len, cap + 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      client_fail("read %s: %s", o->file, sk_strerror(-errno));
    if (n == 0)
      break;
    len += (size_t)n;
    if (len > cap)
      client_fail("%s is larger than a UDP datagram can hold (%d bytes)",
                  o->file, CLIENT_UDP_MAX);
  }
  close(fd);
  if (o->hex_input)
    len = decode_hex(buf, len, o->file, 1);
  exchange(u, buf, len);
  free(buf);
}

int udp_run(const struct client_opts *o) {
  struct udp u;
  memset(&u, 0, sizeof u);
  u.o = o;
  if (output_init(&u.out, SK_FRAME_RAW, o->hex, o->max_frame) < 0)
    client_fail("out of memory");
  u.reply = malloc(REPLY_BUF);
  if (u.reply == NULL)
    client_fail("out of memory");

  client_connect(&u.sock, o, SOCK_DGRAM);
  switch (o->input) {
  case INPUT_MESSAGES:
    for (size_t i = 0; i < o->nmsgs; i++)
      exchange(&u, o->msgs[i].data, o->msgs[i].len);
    break;
  case INPUT_FILE:
    send_file(&u);
    break;
  case INPUT_STDIN:
    send_lines(&u);
    break;
  }
  log_info("%zu datagrams answered", u.count);
  sk_socket_close(&u.sock, 0);
  output_free(&u.out);
  free(u.reply);
  return 0;
}
