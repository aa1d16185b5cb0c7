/* The pump: sends a stream (stdin, --file, raw MESSAGEs, or what the user
 * types) while printing what the server sends back, both at once.
 *
 * It is built like OpenBSD netcat's readwrite(): one poll() loop over
 * stdin, the socket and stdout, fixed buffers, and poll interest switched
 * on and off for back-pressure. The input is read only when what was read
 * before has been handed to the socket; the socket is read only when what
 * was received before has been formatted; formatted output waits in a
 * fixed buffer until stdout takes it. So memory stays bounded whatever the
 * sizes, and because reading and writing never wait for each other, an
 * echo of a file of any size cannot deadlock on full buffers.
 *
 * Raw mode: the input goes out as is; at its end the socket's write side
 * is shut down (the server reads end-of-stream) and the pump runs until the
 * server closes and stdout has taken everything.
 *
 * Framed modes: every input line becomes one frame (--file in len16, len32
 * or ascii4 mode is instead sent whole, as one frame). The pump counts the
 * frames sent and, once the input has ended, finishes when as many reply
 * frames have been printed, then closes gracefully. The write side stays
 * open until then, since many request/response servers treat end-of-stream
 * as "abandon the connection".
 *
 * Files go out with sendfile(2) when nothing has to change on the way (raw
 * mode, no --hex-input, a regular file): no copy through user space.
 *
 * TLS runs through the same loop: the connection (conn.c) sends and
 * receives without waiting for plain and TLS alike, and says which poll()
 * events each direction waits for (over TLS a receive may have to write).
 * The differences are three: TLS may hold decrypted bytes the descriptor
 * does not show (client_conn_pending()), a file is read into a buffer and
 * queued (the kernel cannot encrypt what sendfile sends), and the
 * half-close at the end of a raw stream is close_notify then FIN, after
 * which the replies are still read. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "log.h"

#define IO_BUF (64u * 1024u)

/* The most one sendfile() step sends before the loop looks at the other
 * descriptors again. */
#define SENDFILE_STEP (1u << 20)

/* See send.c: all replies are in, so the close only waits briefly. */
#define CLOSE_WAIT_MS 2000

enum src_kind {
  SRC_MESSAGES, /* raw MESSAGE arguments, one after the other */
  SRC_FD,       /* read(2) from stdin or a file that is not regular */
  SRC_SENDFILE, /* a regular file, sent with sendfile(2) */
};

struct pump {
  const struct client_opts *o;
  struct client_conn conn;
  int framed; /* frame mode other than raw */

  /* Input. */
  enum src_kind kind;
  int in_fd;
  const char *in_name; /* "stdin" or the file name, for messages */
  size_t next_msg;     /* SRC_MESSAGES */
  off_t file_off;      /* SRC_SENDFILE */
  uint64_t file_left;
  unsigned char *ibuf; /* SRC_FD: bytes read, ibuf[ipos..ilen) unused */
  size_t ipos, ilen;
  unsigned char *fbuf; /* SRC_SENDFILE over TLS: the file's next chunk */
  int in_eof;          /* read(2) returned 0 */
  int in_done;         /* every input byte has been queued */
  unsigned char *xbuf; /* --hex-input: decoded bytes */
  struct hexdecoder hexd;
  unsigned char *line; /* framed: the line being collected */
  size_t line_len, line_cap, line_max;
  int line_open; /* something of the current line has been read */
  uint64_t line_no;
  unsigned char hdr[4];

  /* What is queued for the socket: up to a header, a payload and a
   * trailer, sent with one sendmsg(). */
  struct iovec iov[3];
  int iov_first, iov_count;

  /* Socket state and the replies. */
  short send_ev, recv_ev; /* poll() events each direction waits for */
  size_t out_step;        /* largest write to stdout (stdout_step()) */
  int wr_shut;            /* the half-close is done */
  int shut_wait;          /* it is under way: waiting for send_ev */
  int sock_eof;
  int tls_truncated; /* the session ended without close_notify */
  int eof_done;      /* output_eof() has run */
  unsigned char *rbuf;
  size_t rpos, rlen;
  struct output out;

  uint64_t frames_sent, bytes_sent, bytes_recv;
  uint64_t last_progress_ms;

  /* The progress line (--file, stdin): input bytes taken so far. */
  struct progress prog;
  uint64_t in_bytes; /* SRC_FD: bytes read */
  uint64_t in_total; /* the input's size when known, else 0 */
  off_t file_start;  /* SRC_SENDFILE: where the file was when we began */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL)
    client_fail("out of memory");
  return p;
}

/* Switches the input to plain read(2). */
static void use_read(struct pump *p) {
  p->kind = SRC_FD;
  if (p->ibuf == NULL)
    p->ibuf = xmalloc(IO_BUF);
  if (p->o->hex_input && p->xbuf == NULL)
    p->xbuf = xmalloc(IO_BUF / 2 + 1);
}

static int queue_empty(const struct pump *p) {
  return p->iov_first == p->iov_count;
}

static void queue_add(struct pump *p, const void *data, size_t len) {
  if (len == 0)
    return;
  p->iov[p->iov_count].iov_base = (void *)data;
  p->iov[p->iov_count].iov_len = len;
  p->iov_count++;
}

static void queue_reset(struct pump *p) {
  p->iov_first = p->iov_count = 0;
}

/* All input has been handed to the kernel. */
static int input_finished(const struct pump *p) {
  return p->in_done && queue_empty(p) && p->file_left == 0;
}

/* ---- input: turning what was read into what goes on the wire ---- */

static void line_append(struct pump *p, const unsigned char *data, size_t len) {
  if (len > p->line_max - p->line_len)
    client_fail("%s line %" PRIu64 " is longer than the largest frame "
                "(%zu bytes; see --max-frame)",
                p->in_name, p->line_no, p->line_max);
  if (p->line_len + len > p->line_cap) {
    /* Grow by doubling; the bound above keeps this finite, and a short
     * line never costs a frame-sized buffer. */
    size_t cap = p->line_cap ? p->line_cap : 4096;
    while (cap < p->line_len + len)
      cap *= 2;
    if (cap > p->line_max)
      cap = p->line_max;
    unsigned char *nl = realloc(p->line, cap ? cap : 1);
    if (nl == NULL)
      client_fail("out of memory");
    p->line = nl;
    p->line_cap = cap;
  }
  memcpy(p->line + p->line_len, data, len);
  p->line_len += len;
}

/* Appends a piece of the current line, decoding it first with
 * --hex-input. */
static void line_piece(struct pump *p, const unsigned char *data, size_t len) {
  if (!p->o->hex_input) {
    line_append(p, data, len);
    return;
  }
  size_t n, bad;
  if (hexdecoder_feed(&p->hexd, (const char *)data, len, p->xbuf, &n, &bad) < 0)
    client_fail("%s line %" PRIu64 " is not hex: unexpected '%c'", p->in_name,
                p->line_no, data[bad]);
  line_append(p, p->xbuf, n);
}

/* The current line is complete: queue it as one frame. */
static void line_frame(struct pump *p) {
  if (p->o->hex_input) {
    if (hexdecoder_finish(&p->hexd) < 0)
      client_fail("%s line %" PRIu64 " is not hex: odd number of digits",
                  p->in_name, p->line_no);
  } else if (p->line_len > 0 && p->line[p->line_len - 1] == '\r') {
    /* "\r\n" ends a line as well as "\n" does, as in the decoder. */
    p->line_len--;
  }
  int hlen = sk_frame_header(p->o->frame, p->line_len, p->hdr);
  if (hlen < 0)
    client_fail("%s line %" PRIu64 ": %s", p->in_name, p->line_no,
                sk_strerror(hlen));
  const char *trailer;
  size_t tlen = sk_frame_trailer(p->o->frame, &trailer);
  queue_reset(p);
  queue_add(p, p->hdr, (size_t)hlen);
  queue_add(p, p->line, p->line_len);
  queue_add(p, trailer, tlen);
  p->frames_sent++;
  log_debug("queued frame %" PRIu64 " (%zu bytes)", p->frames_sent,
            p->line_len);
  /* The queue points into the line buffer; it is emptied only after the
   * queue has been sent (produce() runs only on an empty queue). */
  p->line_len = 0;
  p->line_open = 0;
  p->line_no++;
}

/* Fills the empty socket queue from the input. When it cannot (the input
 * read so far is used up), the loop polls the input for more. */
static void produce(struct pump *p) {
  const struct client_opts *o = p->o;
  queue_reset(p);
  switch (p->kind) {
  case SRC_MESSAGES:
    while (p->next_msg < o->nmsgs && queue_empty(p)) {
      const struct message *m = &o->msgs[p->next_msg++];
      queue_add(p, m->data, m->len);
    }
    if (p->next_msg == o->nmsgs)
      p->in_done = 1;
    return;
  case SRC_SENDFILE:
    /* The header (if any) was queued at the start; sendfile does the
     * rest. */
    p->in_done = 1;
    return;
  case SRC_FD:
    break;
  }

  if (!p->framed) {
    if (p->ipos < p->ilen) {
      const unsigned char *data = p->ibuf + p->ipos;
      size_t len = p->ilen - p->ipos;
      p->ipos = p->ilen;
      if (o->hex_input) {
        size_t n, bad;
        if (hexdecoder_feed(&p->hexd, (const char *)data, len, p->xbuf, &n,
                            &bad) < 0)
          client_fail("%s is not hex: unexpected '%c'", p->in_name, data[bad]);
        queue_add(p, p->xbuf, n);
      } else {
        queue_add(p, data, len);
      }
      return;
    }
    if (p->in_eof) {
      if (o->hex_input && hexdecoder_finish(&p->hexd) < 0)
        client_fail("%s is not hex: odd number of digits", p->in_name);
      p->in_done = 1;
    }
    return;
  }

  /* Framed: cut the input into lines, each one frame. */
  while (p->ipos < p->ilen) {
    const unsigned char *data = p->ibuf + p->ipos;
    size_t len = p->ilen - p->ipos;
    const unsigned char *nl = memchr(data, '\n', len);
    size_t take = nl ? (size_t)(nl - data) : len;
    line_piece(p, data, take);
    p->line_open = 1;
    p->ipos += take;
    if (nl != NULL) {
      p->ipos++;
      line_frame(p);
      return;
    }
  }
  if (p->in_eof) {
    if (p->line_open)
      line_frame(p);
    else
      p->in_done = 1;
    return;
  }
}

/* Reads the next block of input. */
static void read_input(struct pump *p) {
  ssize_t n = read(p->in_fd, p->ibuf, IO_BUF);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    client_fail("read %s: %s", p->in_name, sk_strerror(-errno));
  }
  p->ipos = 0;
  p->ilen = (size_t)n;
  p->in_bytes += (uint64_t)n;
  /* Input counts as progress: the silence limit measures how long the
   * network keeps us waiting, not how long the user took to type. */
  p->last_progress_ms = now_ms();
  if (n == 0) {
    p->in_eof = 1;
    log_debug("end of %s", p->in_name);
  }
}

/* ---- the socket ---- */

static void fail_send(struct pump *p, int err) {
  char why[256];
  snprintf(why, sizeof why, "%s", client_err_text(err));
  client_conn_explain_send_failure(&p->conn, p->o);
  client_fail("send to %s: %s", p->o->addr, why);
}

/* A regular file over a plain socket: the next step of sendfile(2). */
static void send_file(struct pump *p) {
  size_t step =
      p->file_left < SENDFILE_STEP ? (size_t)p->file_left : SENDFILE_STEP;
  off_t before = p->file_off;
  /* Timeout 0: send what the socket takes now, report -ETIMEDOUT when it
   * is full; file_off tells how far it got either way. */
  int rc = sk_socket_sendfile(&p->conn.sock, p->in_fd, &p->file_off, step, 0);
  uint64_t sent = (uint64_t)(p->file_off - before);
  if (sent > 0) {
    p->file_left -= sent;
    p->bytes_sent += sent;
    p->last_progress_ms = now_ms();
  }
  if ((rc == -EINVAL || rc == -ENOSYS) && p->bytes_sent == 0 && !p->framed) {
    /* Some file systems cannot feed sendfile(2). Nothing has gone out yet,
     * and sendfile leaves the file position alone, so reading from where
     * it stands sends exactly the same bytes. */
    log_debug("sendfile: %s; reading %s instead", sk_strerror(rc), p->in_name);
    p->file_left = 0;
    p->in_done = 0;
    use_read(p);
    return;
  }
  if (rc == SK_EOF)
    client_fail("%s shrank while it was being sent", p->in_name);
  if (rc < 0 && rc != -ETIMEDOUT)
    fail_send(p, rc);
}

/* A regular file over TLS: queues its next chunk, read into fbuf. */
static void queue_file_chunk(struct pump *p) {
  size_t step = p->file_left < IO_BUF ? (size_t)p->file_left : IO_BUF;
  ssize_t n = pread(p->in_fd, p->fbuf, step, p->file_off);
  if (n < 0) {
    if (errno == EINTR)
      return;
    client_fail("read %s: %s", p->in_name, sk_strerror(-errno));
  }
  if (n == 0)
    client_fail("%s shrank while it was being sent", p->in_name);
  queue_reset(p);
  queue_add(p, p->fbuf, (size_t)n);
  p->file_off += n;
  p->file_left -= (uint64_t)n;
}

/* Sends what is queued, or the next step of the file; never waits. */
static void write_socket(struct pump *p) {
  if (queue_empty(p) && p->file_left > 0) {
    if (!p->conn.use_tls) {
      send_file(p);
      return;
    }
    queue_file_chunk(p);
  }
  if (queue_empty(p))
    return;
  ssize_t n = client_conn_sendv_now(&p->conn, p->iov + p->iov_first,
                                    p->iov_count - p->iov_first, &p->send_ev);
  if (n == -EAGAIN)
    return;
  if (n < 0)
    fail_send(p, (int)n);
  p->send_ev = POLLOUT;
  p->bytes_sent += (uint64_t)n;
  p->last_progress_ms = now_ms();
  /* A partial write leaves the rest queued, in place. */
  size_t left = (size_t)n;
  while (left > 0) {
    struct iovec *v = &p->iov[p->iov_first];
    if (left < v->iov_len) {
      v->iov_base = (char *)v->iov_base + left;
      v->iov_len -= left;
      break;
    }
    left -= v->iov_len;
    p->iov_first++;
  }
}

/* Receives what is there, or learns how the server ended; never waits. */
static void read_socket(struct pump *p) {
  ssize_t n = client_conn_recv_now(&p->conn, p->rbuf, IO_BUF, &p->recv_ev);
  if (n == -EAGAIN)
    return;
  p->recv_ev = POLLIN;
  p->last_progress_ms = now_ms();
  if (n > 0) {
    p->bytes_recv += (uint64_t)n;
    p->rpos = 0;
    p->rlen = (size_t)n;
    return;
  }
  if (n == 0) {
    p->sock_eof = 1;
    log_debug("%s %s", p->o->addr,
              p->conn.use_tls ? "ended the TLS session" : "closed its side");
    return;
  }
  if (client_tls_truncation_ok(p->o, (int)n, p->bytes_recv)) {
    /* Taken as the end of the replies (warned about once the last frame
     * is known to be whole); a frame it cuts still fails. */
    p->sock_eof = 1;
    p->tls_truncated = 1;
    return;
  }
  client_fail_tls(p->o, (int)n);
  client_fail("receive from %s: %s", p->o->addr, client_err_text((int)n));
}

/* Formats received bytes as far as the output buffer allows. */
static void process_replies(struct pump *p) {
  if (p->rpos < p->rlen) {
    ssize_t used = output_feed(&p->out, p->rbuf + p->rpos, p->rlen - p->rpos);
    if (used < 0) {
      client_conn_abort(&p->conn);
      if (used == SK_EFRAMETOOBIG)
        client_fail("reply from %s: %s (--max-frame %zu)", p->o->addr,
                    sk_strerror((int)used), p->o->max_frame);
      client_fail("reply from %s: %s", p->o->addr, sk_strerror((int)used));
    }
    p->rpos += (size_t)used;
  }
  if (p->sock_eof && p->rpos == p->rlen && !p->eof_done &&
      p->out.cap - p->out.len >= OUTPUT_RESERVE) {
    if (output_eof(&p->out) < 0)
      client_fail("%s closed the connection%s in the middle of a frame",
                  p->o->addr, p->tls_truncated ? " without close_notify" : "");
    if (p->tls_truncated)
      client_tls_truncation_warn(p->o);
    p->eof_done = 1;
  }
}

/* The most one write to stdout may carry without blocking once poll() said
 * POLLOUT: on a pipe or a terminal that only promises room for PIPE_BUF
 * bytes, and a blocking write of more would stall the whole pump (no
 * progress redraw, no timeout, no reading) until the reader catches up.
 * A regular file takes any size. */
static size_t stdout_step(void) {
  struct stat st;
  if (fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode))
    return SIZE_MAX;
  return PIPE_BUF;
}

static void write_stdout(struct pump *p) {
  size_t len = output_pending(&p->out);
  progress_clear(&p->prog);
  if (len > p->out_step)
    len = p->out_step;
  ssize_t n = write(STDOUT_FILENO, output_data(&p->out), len);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    client_stdout_failed(-errno);
  }
  output_consume(&p->out, (size_t)n);
  p->last_progress_ms = now_ms();
}

/* ---- setting up the input ---- */

static void open_input(struct pump *p) {
  const struct client_opts *o = p->o;
  p->in_fd = -1;
  p->in_name = "stdin";
  if (o->input == INPUT_MESSAGES) {
    p->kind = SRC_MESSAGES;
    return;
  }
  if (o->input == INPUT_FILE) {
    p->in_name = o->file;
    p->in_fd = open(o->file, O_RDONLY | O_CLOEXEC);
    if (p->in_fd < 0)
      client_fail("cannot open %s: %s", o->file, sk_strerror(-errno));
  } else {
    p->in_fd = STDIN_FILENO;
  }
  struct stat st;
  if (fstat(p->in_fd, &st) < 0)
    client_fail("%s: %s", p->in_name, sk_strerror(-errno));
  int regular = S_ISREG(st.st_mode);
  int whole_frame =
      o->input == INPUT_FILE && p->framed && o->frame != SK_FRAME_LINE;

  if (whole_frame) {
    if (!regular)
      client_fail("%s is not a regular file; --frame %s needs its size "
                  "up front for the frame header",
                  o->file, sk_frame_mode_name(o->frame));
    uint64_t size = (uint64_t)st.st_size;
    if (size > sk_frame_mode_limit(o->frame))
      client_fail("%s is %" PRIu64 " bytes; a %s frame holds at most %zu",
                  o->file, size, sk_frame_mode_name(o->frame),
                  sk_frame_mode_limit(o->frame));
    int hlen = sk_frame_header(o->frame, (size_t)size, p->hdr);
    if (hlen < 0)
      client_fail("%s: %s", o->file, sk_strerror(hlen));
    queue_add(p, p->hdr, (size_t)hlen);
    p->kind = SRC_SENDFILE;
    p->file_off = 0;
    p->file_left = size;
    p->frames_sent = 1;
    p->in_total = size;
    return;
  }
  /* Files under /proc and /sys call themselves regular but report size 0
   * and have content all the same; only read(2) sees it. */
  if (regular && st.st_size > 0 && !p->framed && !o->hex_input) {
    /* Start where the descriptor stands, so that stdin redirected from a
     * partly read file sends only the rest, as read(2) would. */
    off_t cur = lseek(p->in_fd, 0, SEEK_CUR);
    if (cur < 0)
      cur = 0;
    p->kind = SRC_SENDFILE;
    p->file_off = p->file_start = cur;
    p->file_left = st.st_size > cur ? (uint64_t)(st.st_size - cur) : 0;
    p->in_total = p->file_left;
    return;
  }
  if (regular) {
    off_t cur = lseek(p->in_fd, 0, SEEK_CUR);
    if (cur >= 0 && st.st_size > cur)
      p->in_total = (uint64_t)(st.st_size - cur);
  }
  use_read(p);
}

/* ---- the loop ---- */

/* Input bytes taken so far, for the progress line. */
static uint64_t input_taken(const struct pump *p) {
  if (p->kind == SRC_SENDFILE)
    return (uint64_t)(p->file_off - p->file_start);
  return p->in_bytes;
}

/* Ends the run if the exchange is complete; returns 1 when it is. */
static int finished(struct pump *p) {
  const struct client_opts *o = p->o;
  int replies_done = p->sock_eof && p->eof_done && p->rpos == p->rlen;
  int quiet_out = output_pending(&p->out) == 0;

  if (p->framed && input_finished(p) && p->out.frames >= p->frames_sent &&
      p->rpos == p->rlen && quiet_out)
    return 1;
  if (!replies_done)
    return 0;
  if (p->framed && p->out.frames < p->frames_sent)
    client_fail("%s closed the connection after %" PRIu64 " of %" PRIu64
                " replies",
                o->addr, p->out.frames, p->frames_sent);
  if (!input_finished(p) && !o->interactive)
    client_fail("%s closed the connection before all of %s was sent", o->addr,
                p->in_name);
  return quiet_out;
}

int pump_run(const struct client_opts *o) {
  struct pump pp;
  struct pump *p = &pp;
  memset(p, 0, sizeof *p);
  p->o = o;
  p->framed = o->frame != SK_FRAME_RAW;
  p->line_max = o->max_frame;
  if (p->line_max > sk_frame_mode_limit(o->frame))
    p->line_max = sk_frame_mode_limit(o->frame);
  p->line_no = 1;
  hexdecoder_init(&p->hexd);
  if (output_init(&p->out, o->frame, o->hex, o->max_frame) < 0)
    client_fail("out of memory");
  p->rbuf = xmalloc(IO_BUF);
  open_input(p);

  client_conn_open(&p->conn, o);
  if (p->conn.use_tls && p->kind == SRC_SENDFILE)
    p->fbuf = xmalloc(IO_BUF);
  p->send_ev = POLLOUT;
  p->recv_ev = POLLIN;
  client_set_output(&p->out);
  p->out_step = stdout_step();
  uint64_t start = now_ms();
  p->last_progress_ms = start;
  if (o->input != INPUT_MESSAGES)
    progress_start(&p->prog, o, p->in_total);

  for (;;) {
    if (queue_empty(p) && !p->in_done && p->file_left == 0)
      produce(p);
    process_replies(p);
    if (!p->framed && input_finished(p) && !p->wr_shut) {
      /* The end of a raw stream is told by half-closing: the server reads
       * end-of-stream, and can still send us the rest of its replies. */
      int rc = client_conn_shutdown_now(&p->conn, &p->send_ev);
      p->shut_wait = rc == -EAGAIN;
      /* Once the server has ended (a TLS cut included), there is nobody
       * left to tell. */
      if (rc < 0 && rc != -EAGAIN && rc != -ENOTCONN && !p->sock_eof)
        fail_send(p, rc);
      if (!p->shut_wait) {
        p->wr_shut = 1;
        p->send_ev = POLLOUT;
        log_debug("sent %" PRIu64 " bytes; half-closed", p->bytes_sent);
      }
    }
    if (input_finished(p))
      progress_finish(&p->prog, input_taken(p));
    else
      progress_update(&p->prog, input_taken(p));
    if (finished(p))
      break;

    struct pollfd pfd[3];
    int nfd = 0, i_in = -1, i_sock = -1, i_out = -1;
    int want_in = p->kind == SRC_FD && !p->in_eof && queue_empty(p) &&
                  p->ipos == p->ilen && !p->in_done && !p->sock_eof;
    int want_send = !queue_empty(p) || p->file_left > 0 || p->shut_wait;
    int want_recv = !p->sock_eof && p->rpos == p->rlen;
    int want_out = output_pending(&p->out) > 0;
    /* TLS: decrypted bytes wait, which the descriptor does not show. */
    int recv_now = want_recv && client_conn_pending(&p->conn) > 0;
    if (want_in) {
      pfd[nfd] = (struct pollfd){.fd = p->in_fd, .events = POLLIN};
      i_in = nfd++;
    }
    if (want_send || want_recv) {
      short ev =
          (short)((want_send ? p->send_ev : 0) | (want_recv ? p->recv_ev : 0));
      pfd[nfd] = (struct pollfd){.fd = p->conn.sock.fd, .events = ev};
      i_sock = nfd++;
    }
    if (want_out) {
      pfd[nfd] = (struct pollfd){.fd = STDOUT_FILENO, .events = POLLOUT};
      i_out = nfd++;
    }

    /* The silence limit applies only while we wait for the network:
     * something to send, or the input is over and replies are due. Time
     * spent waiting for the user to type, or for stdout to drain, is
     * nobody's fault on the network. */
    int net_wait =
        !want_out && (want_send || (input_finished(p) && !p->sock_eof));
    int wait = -1;
    if (net_wait && o->timeout_ms >= 0) {
      uint64_t deadline = p->last_progress_ms + (uint64_t)o->timeout_ms;
      uint64_t now = now_ms();
      if (now >= deadline) {
        if (want_send)
          client_fail("timed out: %s took no data for %s", o->addr,
                      client_timeout_text(o->timeout_ms));
        if (p->framed)
          client_fail("timed out: no reply from %s for %s (%" PRIu64
                      " of %" PRIu64 " replies received)",
                      o->addr, client_timeout_text(o->timeout_ms),
                      p->out.frames, p->frames_sent);
        client_fail("timed out: nothing from %s for %s", o->addr,
                    client_timeout_text(o->timeout_ms));
      }
      wait = (int)(deadline - now);
    }
    if (recv_now)
      wait = 0;
    if (nfd == 0 && wait < 0)
      client_fail("internal error: the pump has nothing to wait for");
    /* Wake up to redraw the progress line even while nothing moves, so
     * the rate shown falls when the transfer stalls. */
    if (p->prog.on && !p->prog.finished &&
        (wait < 0 || wait > PROGRESS_REDRAW_MS))
      wait = PROGRESS_REDRAW_MS;

    int n = poll(pfd, (nfds_t)nfd, wait);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      client_fail("poll: %s", sk_strerror(-errno));
    }
    if (n == 0 && !recv_now)
      continue; /* the deadline check above reports it */

    const short readable = POLLIN | POLLHUP | POLLERR;
    /* Either direction may wait for either event (TLS): on any event,
     * both try, and one that cannot go on says so cheaply. */
    int sock_ready = i_sock >= 0 && pfd[i_sock].revents != 0;
    if (sock_ready && want_send && !p->shut_wait)
      write_socket(p);
    if ((sock_ready || recv_now) && want_recv)
      read_socket(p);
    if (i_in >= 0 && (pfd[i_in].revents & (readable | POLLNVAL)))
      read_input(p);
    if (i_out >= 0 && (pfd[i_out].revents & (POLLOUT | POLLERR | POLLHUP)))
      write_stdout(p);
  }

  client_set_output(NULL);
  uint64_t elapsed = now_ms() - start;
  if (p->framed) {
    /* Our FIN (after close_notify over TLS) ends the exchange, and the
     * server's is awaited briefly. */
    int wait_ms = o->timeout_ms < 0 || o->timeout_ms > CLOSE_WAIT_MS
                      ? CLOSE_WAIT_MS
                      : o->timeout_ms;
    int rc = client_conn_close(&p->conn, wait_ms);
    if (rc < 0)
      log_debug("close: %s", client_err_text(rc));
  } else {
    /* The server has closed and everything it sent has been read. */
    client_conn_close(&p->conn, 0);
  }
  if (p->in_fd > STDERR_FILENO)
    close(p->in_fd);
  log_info("sent %" PRIu64 " bytes, received %" PRIu64 " bytes in %.3f s",
           p->bytes_sent, p->bytes_recv, elapsed / 1000.0);
  if (p->framed)
    log_info("%" PRIu64 " frames sent, %" PRIu64 " received", p->frames_sent,
             p->out.frames);
  output_free(&p->out);
  free(p->rbuf);
  free(p->ibuf);
  free(p->fbuf);
  free(p->xbuf);
  free(p->line);
  return 0;
}
