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
#include <sys/uio.h>

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
  int raw;          /* --raw: never escape what goes to the terminal */
  int udp;          /* --udp */
  sk_frame_mode frame;
  size_t max_frame; /* --max-frame */
  int hex;          /* --hex: print replies as a hex dump */
  int hex_input;    /* --hex-input: MESSAGEs and input lines are hex */
  int timeout_ms;   /* --timeout; -1 = no limit */
  unsigned retries; /* --retries (UDP) */
  /* TLS (--tls, or a tls:// address). */
  int tls;
  const char *ca;   /* --ca: trust these CAs instead of the system's */
  const char *cert; /* --cert / --key: our certificate (mutual TLS) */
  const char *key;
  const char *servername; /* --servername, else the host part of ADDR */
  const char *pin;        /* --pin: accept exactly this certificate */
  int insecure;           /* --insecure: no verification at all */
  int tls_strict_close;   /* --tls-strict-close: no close_notify = error */
  int progress;           /* --progress 1, --no-progress 0, else -1: auto */
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

/* Writing stdout failed with err (a negative errno). A reader that went
 * away (EPIPE: `sockit-client ... | head`) ends the client the way it ends
 * cat: silently, killed by SIGPIPE (status 141 in the shell). Anything
 * else is the usual one-line failure. */
void client_stdout_failed(int err) __attribute__((noreturn));

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

/* ---- tls.c: TLS for the modes ---- */

/* The client context for o (trust, pin, our certificate). On failure (a
 * file that cannot be loaded, ...) prints the one error line and exits 1.
 * The servername the server's certificate must show goes to *servername
 * (NULL for a Unix socket without --servername). */
sk_tls_ctx *client_tls_ctx(const struct client_opts *o,
                           const char **servername);

/* Fails (exit 1) with "TLS: cannot load WHAT: cannot read PATH: reason"
 * when PATH (--ca, --cert, --key; NULL for none) cannot be opened. */
void client_check_file(const char *path, const char *what);

/* Why a call failed, in words: for TLS failures the library's reason
 * ("certificate verify failed: certificate has expired"), else the code's
 * text. */
const char *client_err_text(int err);

/* Fails (exit 1) with the line for a failed handshake, or for a TLS error
 * that ends the session later (with TLS 1.3 a server rejects a client
 * certificate only after the client's handshake is done). Returns when
 * err is not a TLS failure. */
void client_fail_tls(const struct client_opts *o, int err);
/* 1 if err is a TLS session cut without close_notify that may be taken as
 * the end of the replies: not under --tls-strict-close, and only after
 * some reply arrived. */
int client_tls_truncation_ok(const struct client_opts *o, int err,
                             uint64_t received);
/* The one-line warning for such a cut. */
void client_tls_truncation_warn(const struct client_opts *o);

/* Fails (exit 1) with the line for a failed handshake (err from
 * sk_tls_connect(), or SK_ETLSVERIFY / SK_ETLSNOTLS seen later). */
void client_fail_handshake(const struct client_opts *o, int err)
    __attribute__((noreturn));

/* ---- conn.c: the connection of the stream modes ---- */

/* A socket, with TLS on it when o->tls. send.c uses the calls that wait;
 * the pump the ones that never do (_now), the same for plain and TLS. */
struct client_conn {
  sk_socket sock;
  sk_tls_socket tls;
  int use_tls;
  unsigned char *stage; /* TLS: gathered pieces of one send */
};

/* Connects (client_connect()) and runs the TLS handshake within
 * o->timeout_ms; exits 1 with one line on failure. */
void client_conn_open(struct client_conn *c, const struct client_opts *o);
/* sk_socket_send() / sk_tls_send(), sk_socket_recv() / sk_tls_recv(). */
int client_conn_send(struct client_conn *c, const void *buf, size_t len,
                     int timeout_ms);
ssize_t client_conn_recv(struct client_conn *c, void *buf, size_t len,
                         int timeout_ms);
/* Over TLS a send fails when the server has already closed, and the
 * reason (an alert saying it rejected our certificate, say) waits unread:
 * a short look at the input fails with it (client_fail_tls()) if it is
 * there. Returns otherwise, and at once for plain connections. */
void client_conn_explain_send_failure(struct client_conn *c,
                                      const struct client_opts *o);

/* Without waiting. Each returns -EAGAIN with the poll() events to wait for
 * in *events (POLLIN and/or POLLOUT: over TLS a receive may have to write
 * and a send to read), or a negative code (TLS reasons in
 * client_err_text()). */
/* Sends from iov[0..n) what the connection takes now: the count (> 0).
 * After -EAGAIN, offer the same bytes again. */
ssize_t client_conn_sendv_now(struct client_conn *c, const struct iovec *iov,
                              int n, short *events);
/* Receives what is there: the count (> 0), or 0 at the end (FIN, or the
 * server's close_notify). */
ssize_t client_conn_recv_now(struct client_conn *c, void *buf, size_t len,
                             short *events);
/* Bytes a receive returns without the descriptor showing readable (TLS
 * plaintext already decrypted). */
size_t client_conn_pending(const struct client_conn *c);
/* Half-close: FIN, or close_notify then FIN; receiving goes on. 0 when
 * done (call again after -EAGAIN). */
int client_conn_shutdown_now(struct client_conn *c, short *events);

/* Graceful close (close_notify first over TLS, unless sent already). */
int client_conn_close(struct client_conn *c, int timeout_ms);
/* Closes with a reset, dropping the TLS state. */
void client_conn_abort(struct client_conn *c);

/* ---- output.c: decoding replies and formatting them for stdout ---- */

/* The reply printer: cuts the bytes received into frames (--frame) and
 * formats each one into a fixed buffer (raw bytes, a line, or a hex dump),
 * from which the caller writes to stdout when stdout can take it. */
struct output {
  sk_frame_mode mode;
  int hex;
  int escape;             /* show control bytes as \xHH (see below) */
  unsigned char carry[4]; /* escape: a character cut short by a read */
  size_t ncarry;
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

/* Terminal escaping, decided once for the process (stdout is the
 * process's): from the call on, every printer output_init() makes without
 * --hex shows what would drive the terminal as text. Bytes that are not
 * printable ASCII, tab, newline or well-formed UTF-8 (other than C1
 * controls) are written as \xHH, a carriage return too unless a newline
 * follows it, and a backslash as \\; everything else, UTF-8 included,
 * passes unchanged. main.c turns it on for an interactive session whose
 * stdout is a terminal, unless --raw. */
void output_escape_terminal(int on);
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

/* ---- progress.c: the upload progress line on stderr ---- */

/* One line, redrawn in place with \r at most PROGRESS_REDRAW_MS apart:
 * bytes sent, the average rate, and with a known size the share done and
 * the time left. It is finished with a newline (a last line with the
 * totals) when the upload ends, and cut with a newline if the client
 * fails first. */
#define PROGRESS_REDRAW_MS 250

struct progress {
  int on;
  int clear_for_stdout; /* stdout is a terminal too: blank the line first */
  uint64_t total;       /* bytes to send; 0 = unknown */
  uint64_t start_ms, last_ms;
  size_t shown; /* length of the line on screen; 0 = none */
  int finished;
};

/* Decides whether to show progress (o->progress, else stderr is a
 * terminal) and starts the clock. total 0 = size unknown. */
void progress_start(struct progress *pg, const struct client_opts *o,
                    uint64_t total);
/* bytes of the input sent so far: redraws if the last drawing is older
 * than PROGRESS_REDRAW_MS. */
void progress_update(struct progress *pg, uint64_t bytes);
/* The upload is over: the last line, with the totals, and a newline. */
void progress_finish(struct progress *pg, uint64_t bytes);
/* Blanks the line (before replies go to the same terminal); the next
 * update draws it again. */
void progress_clear(struct progress *pg);
/* A failure is about to be reported: ends a line on screen with a
 * newline, so the message starts a line of its own. */
void progress_interrupt(void);

/* ---- the modes ---- */

/* send.c: MESSAGEs as frames, each answered by one reply frame. */
int send_run(const struct client_opts *o);

/* pump.c: the netcat-style bidirectional pump for stdin, --file, raw
 * MESSAGEs and interactive use. */
int pump_run(const struct client_opts *o);

/* udp.c: one datagram per message, one reply each, with retries. */
int udp_run(const struct client_opts *o);

#endif
