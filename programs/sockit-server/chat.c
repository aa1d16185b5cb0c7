/* chat: every line a client sends goes to every other client as
 * "[ADDR] line\n"; joins and leaves are announced.
 *
 * The room is the set of connections of one worker: chat runs on a single
 * worker thread (MODE_ONE_WORKER), so broadcasting is a walk over a list
 * with no lock and no cross-thread hand-off. A chat server is bound by its
 * slowest reader, not by CPU, so one thread loses nothing worth the
 * complexity of posting lines between loops.
 *
 * A line that arrives whole in one read is sent on without a copy. Only a
 * line split across reads is gathered (bounded by --max-frame) so that
 * lines from different senders never interleave; the buffer is freed as
 * soon as the line is complete, so an idle client owns none.
 *
 * What a client sends reaches other people's terminals, so it is relayed
 * only as text (as util-linux write(1) and wall(1) do since CVE-2024-28085):
 * C0 controls but the tab, DEL, C1 controls (U+0080..U+009F) and every byte
 * that is not part of well-formed UTF-8 go out as \xHH; printable ASCII,
 * the tab and well-formed UTF-8 pass unchanged. No escape sequence, no
 * carriage return rewinding the line to forge a "[ADDR]" prefix. The
 * escaped line, up to four times longer, counts against --max-frame: a line
 * whose escaped form is longer is refused like an oversize line, so a
 * relayed message is never bigger than before. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct chat_line {
  size_t len, cap;
  unsigned char buf[];
};

/* Sends iov to every other live client. Clients whose output queue passes
 * the cap are marked and disconnected by chat_reap() afterwards, never
 * while the list is being walked. Connections still in their TLS handshake
 * are not in the room yet (and cannot be sent to). */
static int broadcast(struct conn *from, const struct iovec *iov, int n) {
  struct worker *w = from->w;
  size_t cap = conn_cfg(from)->max_queue;
  int count = 0;
  for (struct conn *o = w->conns; o != NULL; o = o->next) {
    if (o == from || !(o->flags & C_OPEN) ||
        (o->flags & (C_CLOSING | C_SHUT | C_KICK)))
      continue;
    if (sk_stream_sendv(&o->s, iov, n, NULL, NULL) < 0 ||
        sk_stream_write_queue_memory(&o->s) > cap)
      o->flags |= C_KICK;
    else
      count++, conn_sentv(o, iov, n);
  }
  return count;
}

/* Disconnects marked clients. Each leave is announced, which may mark more
 * clients; the walk restarts until none is left. */
static void chat_reap(struct worker *w) {
  if (w->reaping)
    return;
  w->reaping = 1;
  for (;;) {
    struct conn *o = w->conns;
    while (o != NULL && (o->flags & (C_KICK | C_CLOSING)) != C_KICK)
      o = o->next;
    if (o == NULL)
      break;
    log_warn("%s: not reading its messages (output queue over %zu bytes), "
             "disconnecting",
             conn_name(o), conn_cfg(o)->max_queue);
    conn_close(o, "slow reader");
  }
  w->reaping = 0;
}

static void announce(struct conn *c, const char *what) {
  char msg[128];
  struct iovec iov;
  int n = snprintf(msg, sizeof(msg), "* %s %s\n", conn_name(c), what);
  iov.iov_base = msg;
  iov.iov_len = (size_t)n;
  broadcast(c, &iov, 1);
  chat_reap(c->w);
}

/* Writes the escaped form of data[0..len) to out (NULL: only counts) and
 * returns its length. */
static size_t escape_line(const unsigned char *data, size_t len,
                          unsigned char *out) {
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    int k = log_text_char(data + i, len - i);
    if (k > 0) {
      if (out != NULL)
        memcpy(out + o, data + i, (size_t)k);
      o += (size_t)k;
      i += (size_t)k;
      continue;
    }
    /* Not text, or a character the end of the line cut short. */
    if (out != NULL)
      log_hex_byte(data[i], (char *)out + o);
    o += 4;
    i++;
  }
  return o;
}

static void send_line(struct conn *c, const unsigned char *data, size_t len) {
  size_t max = conn_cfg(c)->max_frame;
  size_t elen = escape_line(data, len, NULL);
  unsigned char *esc = NULL;
  if (elen > max) {
    log_error("%s: line longer than --max-frame (%zu bytes) once its control "
              "bytes are escaped (%zu bytes), closing the connection",
              conn_name(c), max, elen);
    conn_close(c, "line too long");
    return;
  }
  if (elen != len) {
    esc = malloc(elen);
    if (esc == NULL) {
      conn_close(c, "out of memory");
      return;
    }
    escape_line(data, len, esc);
  }
  /* A copy: conn_name()'s buffer is reused by log lines about the others
   * during the broadcast. */
  char name[SK_ENDPOINT_STRLEN];
  snprintf(name, sizeof(name), "%s", conn_name(c));
  struct iovec iov[5] = {
      {"[", 1},  {name, strlen(name)},
      {"] ", 2}, {esc != NULL ? esc : (void *)data, elen},
      {"\n", 1},
  };
  int n = broadcast(c, iov, 5);
  int escaped = esc != NULL;
  free(esc);
  if (log_level() >= LOG_DEBUG)
    log_msg(LOG_DEBUG, "sent %zu bytes from %s to %d client%s%s", elen, name, n,
            n == 1 ? "" : "s", escaped ? " (control bytes escaped)" : "");
  chat_reap(c->w);
}

static void chat_open(struct conn *c) {
  announce(c, "joined");
}

static void chat_piece(struct conn *c, const sk_frame_piece *p) {
  struct chat_line *l = c->mode_data;

  if ((p->flags & SK_FRAME_BEGIN) && (p->flags & SK_FRAME_END)) {
    send_line(c, p->data, p->len);
    return;
  }
  if (p->len > 0) {
    size_t need = (l ? l->len : 0) + p->len;
    if (l == NULL || need > l->cap) {
      size_t cap = l ? l->cap * 2 : 256;
      while (cap < need)
        cap *= 2;
      struct chat_line *nl = realloc(l, sizeof(*nl) + cap);
      if (nl == NULL) {
        conn_close(c, "out of memory");
        return;
      }
      if (l == NULL)
        nl->len = 0;
      nl->cap = cap;
      l = nl;
      c->mode_data = l;
    }
    memcpy(l->buf + l->len, p->data, p->len);
    l->len += p->len;
  }
  if (p->flags & SK_FRAME_END) {
    send_line(c, l ? l->buf : (const unsigned char *)"", l ? l->len : 0);
    free(c->mode_data);
    c->mode_data = NULL;
  }
}

static void chat_close(struct conn *c) {
  free(c->mode_data);
  c->mode_data = NULL;
  /* At shutdown everyone leaves at once; nobody needs to be told. */
  if (!c->w->stopping)
    announce(c, "left");
}

const struct mode mode_chat = {
    .name = "chat",
    .summary = "relay each line to every other client (line frames)",
    .flags = MODE_LINES | MODE_ONE_WORKER,
    .open = chat_open,
    .piece = chat_piece,
    .close = chat_close,
};
