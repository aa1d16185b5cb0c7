/* chat: every line a client sends goes to every other client as
 * "[ADDR] line\n"; joins and leaves are announced.
 *
 * The room is chat's own list of the connections that joined (opened): chat
 * runs on a single worker thread (one_worker), so the room is this file's,
 * touched by that thread alone, and broadcasting is a walk over it with no
 * lock and no cross-thread hand-off. A chat server is bound by its
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

/* A client in the room (its connection's mode_data). */
struct member {
  struct conn *c;
  struct member *prev, *next;
  struct chat_line *line; /* a line split across reads, being gathered */
  int kick;               /* to be disconnected (slow reader) */
};

/* The room, and whether a sweep of kicked clients is running. */
static struct member *room;
static int reaping;

/* Sends iov to every other client still in the room. Clients whose output
 * queue passes the cap are marked and disconnected by chat_reap()
 * afterwards, never while the room is being walked. Connections still in
 * their TLS handshake are not in the room yet (they join when they open). */
static int broadcast(struct conn *from, const struct iovec *iov, int n) {
  size_t cap = conn_cfg(from)->max_queue;
  int count = 0;
  for (struct member *m = room; m != NULL; m = m->next) {
    struct conn *o = m->c;
    if (o == from || m->kick || conn_finishing(o))
      continue;
    if (sk_stream_sendv(&o->s, iov, n, NULL, NULL) < 0 ||
        sk_stream_write_queue_memory(&o->s) > cap)
      m->kick = 1;
    else
      count++, conn_sentv(o, iov, n);
  }
  return count;
}

/* Disconnects marked clients. Each leave is announced, which may mark more
 * clients; the walk restarts until none is left. A closed client leaves
 * the room at once (chat_close()). */
static void chat_reap(void) {
  if (reaping)
    return;
  reaping = 1;
  for (;;) {
    struct member *m = room;
    while (m != NULL && !m->kick)
      m = m->next;
    if (m == NULL)
      break;
    log_warn("%s: not reading its messages (output queue over %zu bytes), "
             "disconnecting",
             conn_name(m->c), conn_cfg(m->c)->max_queue);
    conn_close(m->c, "slow reader");
  }
  reaping = 0;
}

static void announce(struct conn *c, const char *what) {
  char msg[128];
  struct iovec iov;
  int n = snprintf(msg, sizeof(msg), "* %s %s\n", conn_name(c), what);
  iov.iov_base = msg;
  iov.iov_len = (size_t)n;
  broadcast(c, &iov, 1);
  chat_reap();
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
  chat_reap();
}

static void chat_open(struct conn *c) {
  struct member *m = calloc(1, sizeof(*m));
  if (m == NULL) {
    conn_close(c, "out of memory");
    return;
  }
  m->c = c;
  m->next = room;
  if (room != NULL)
    room->prev = m;
  room = m;
  c->mode_data = m;
  announce(c, "joined");
}

static void chat_piece(struct conn *c, const sk_frame_piece *p) {
  struct member *m = c->mode_data;
  struct chat_line *l = m->line;

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
      m->line = l;
    }
    memcpy(l->buf + l->len, p->data, p->len);
    l->len += p->len;
  }
  if (p->flags & SK_FRAME_END) {
    send_line(c, l ? l->buf : (const unsigned char *)"", l ? l->len : 0);
    /* send_line() may have closed c, and with it freed m. */
    if (!conn_closing(c)) {
      free(m->line);
      m->line = NULL;
    }
  }
}

static void chat_close(struct conn *c) {
  struct member *m = c->mode_data;
  if (m == NULL)
    return;
  if (m->prev != NULL)
    m->prev->next = m->next;
  else
    room = m->next;
  if (m->next != NULL)
    m->next->prev = m->prev;
  free(m->line);
  free(m);
  c->mode_data = NULL;
  /* At shutdown everyone leaves at once; nobody needs to be told. */
  if (!conn_stopping(c))
    announce(c, "left");
}

const struct mode mode_chat = {
    .name = "chat",
    .summary = "relay each line to every other client (line frames)",
    .transports = MODE_STREAMS,
    .frames = MODE_FRAME(SK_FRAME_LINE),
    .fds_per_conn = 1,
    .one_worker = 1,
    .open = chat_open,
    .piece = chat_piece,
    .close = chat_close,
};
