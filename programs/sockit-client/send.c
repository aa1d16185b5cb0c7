/* The "send" mode: MESSAGE arguments in a framed mode (--frame line,
 * len16, len32, ascii4), over the synchronous socket API.
 *
 * Each MESSAGE is one request frame and is answered by one reply frame,
 * and the exchange is lock-step: send a frame, print its reply, then send
 * the next. That is how ISO 8583 hosts and most request/response servers
 * expect to be driven, and it cannot deadlock on full socket buffers: a
 * MESSAGE is at most 128 KiB (the kernel's limit for one argument), less
 * than the buffers of even a Unix socket, so the server can always echo a
 * whole frame before we start reading. Streams of unknown size go through
 * the pump instead, which reads and writes at the same time.
 *
 * Replies are printed as they arrive, piece by piece, so a frame is never
 * held whole in memory here either.
 *
 * Over TLS the same exchange runs on sk_tls_send() / sk_tls_recv() (see
 * struct client_conn), and the final close sends close_notify first. */
#include "client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define RECV_BUF (64u * 1024u)

/* How long the final graceful close waits for the server to close its
 * side after all replies are in. Nothing is lost if it does not: every
 * reply has been read, so closing sends a clean FIN. */
#define CLOSE_WAIT_MS 2000

static void fail_frame(const struct client_opts *o, int err) {
  if (err == SK_EFRAMETOOBIG)
    client_fail("reply from %s: %s (--max-frame %zu)", o->addr,
                sk_strerror(err), o->max_frame);
  client_fail("reply from %s: %s", o->addr, sk_strerror(err));
}

/* Sends one MESSAGE as one frame: header, payload and trailer go out in a
 * single send so the frame leaves in as few segments as possible. */
static void send_frame(struct client_conn *s, const struct client_opts *o,
                       const struct message *m, size_t index) {
  unsigned char hdr[4];
  int hlen = sk_frame_header(o->frame, m->len, hdr);
  if (hlen < 0)
    client_fail("MESSAGE %zu: %s", index + 1, sk_strerror(hlen));
  const char *trailer;
  size_t tlen = sk_frame_trailer(o->frame, &trailer);
  size_t total = (size_t)hlen + m->len + tlen;
  unsigned char *frame = malloc(total ? total : 1);
  if (frame == NULL)
    client_fail("out of memory");
  memcpy(frame, hdr, (size_t)hlen);
  if (m->len > 0)
    memcpy(frame + hlen, m->data, m->len);
  memcpy(frame + (size_t)hlen + m->len, trailer, tlen);
  int rc = client_conn_send(s, frame, total, o->timeout_ms);
  free(frame);
  if (rc == -ETIMEDOUT)
    client_fail("timed out: %s took no data for %s", o->addr,
                client_timeout_text(o->timeout_ms));
  if (rc < 0) {
    char why[256];
    snprintf(why, sizeof why, "%s", client_err_text(rc));
    client_conn_explain_send_failure(s, o);
    client_fail("send to %s: %s", o->addr, why);
  }
  log_debug("sent frame %zu (%zu bytes of payload)", index + 1, m->len);
}

int send_run(const struct client_opts *o) {
  struct client_conn s;
  struct output out;
  if (output_init(&out, o->frame, o->hex, o->max_frame) < 0)
    client_fail("out of memory");
  unsigned char *rbuf = malloc(RECV_BUF);
  if (rbuf == NULL)
    client_fail("out of memory");
  size_t rpos = 0, rlen = 0;
  int eof = 0;
  uint64_t received = 0;

  client_conn_open(&s, o);
  client_set_output(&out);

  for (size_t i = 0; i < o->nmsgs; i++) {
    if (eof)
      client_fail("%s closed the connection after %" PRIu64 " of %zu replies",
                  o->addr, out.frames, o->nmsgs);
    send_frame(&s, o, &o->msgs[i], i);
    /* Stop decoding at the end of this message's reply, so that nothing
     * beyond the replies we asked for is ever printed. */
    out.frame_limit = i + 1;
    while (out.frames < i + 1) {
      if (rpos == rlen) {
        if (eof)
          client_fail("%s closed the connection after %" PRIu64
                      " of %zu replies",
                      o->addr, out.frames, o->nmsgs);
        /* Show what has arrived before waiting for more. */
        int rc = output_flush(&out, STDOUT_FILENO);
        if (rc < 0)
          client_stdout_failed(rc);
        ssize_t n = client_conn_recv(&s, rbuf, RECV_BUF, o->timeout_ms);
        if (n == -ETIMEDOUT)
          client_fail("timed out: no reply from %s for %s (reply %zu of %zu)",
                      o->addr, client_timeout_text(o->timeout_ms), i + 1,
                      o->nmsgs);
        if (n < 0) {
          client_fail_tls(o, (int)n);
          /* A session cut without close_notify while replies are still
           * owed is a failure whatever --tls-strict-close says. */
          if (n == SK_ETLSTRUNCATED)
            client_fail("%s closed the connection without close_notify "
                        "after %" PRIu64 " of %zu replies",
                        o->addr, out.frames, o->nmsgs);
          client_fail("receive from %s: %s", o->addr, client_err_text((int)n));
        }
        if (n == 0) {
          eof = 1;
          rc = output_eof(&out);
          if (rc < 0)
            client_fail("%s closed the connection in the middle of a frame",
                        o->addr);
          continue;
        }
        log_debug("received %zd bytes", n);
        received += (uint64_t)n;
        rpos = 0;
        rlen = (size_t)n;
      }
      ssize_t used = output_feed(&out, rbuf + rpos, rlen - rpos);
      if (used < 0) {
        client_conn_abort(&s);
        fail_frame(o, (int)used);
      }
      rpos += (size_t)used;
      if (used == 0 || out.frames >= i + 1) {
        int rc = output_flush(&out, STDOUT_FILENO);
        if (rc < 0)
          client_stdout_failed(rc);
      }
    }
  }

  int rc = output_flush(&out, STDOUT_FILENO);
  if (rc < 0)
    client_stdout_failed(rc);
  client_set_output(NULL);
  int wait_ms = o->timeout_ms < 0 || o->timeout_ms > CLOSE_WAIT_MS
                    ? CLOSE_WAIT_MS
                    : o->timeout_ms;
  rc = client_conn_close(&s, wait_ms);
  if (rc == SK_ETLSTRUNCATED && o->tls_strict_close)
    client_fail("%s ended the TLS session without close_notify "
                "(--tls-strict-close)",
                o->addr);
  else if (rc == SK_ETLSTRUNCATED)
    client_tls_truncation_warn(o);
  else if (rc < 0)
    log_debug("close: %s", sk_strerror(rc));
  log_info("sent %zu frames, received %" PRIu64 " frames (%" PRIu64 " bytes)",
           o->nmsgs, out.frames, received);
  output_free(&out);
  free(rbuf);
  return 0;
}
