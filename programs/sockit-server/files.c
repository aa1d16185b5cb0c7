/* files: a small request/response protocol for moving whole files, served
 * from --root (docs/PROTOCOL.md):
 *
 *   GET <name>\n                    ->  OK <size>\n<bytes>   or  ERR <text>\n
 *   PUT <name> <size>\n<size bytes> ->  OK <size>\n          or  ERR <text>\n
 *
 * Safety: a name is checked strictly (characters, length, no absolute
 * path, no "." / ".." / empty components), and then opened with openat2()
 * relative to the root with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, so the
 * kernel itself refuses anything that would leave the root or pass through
 * a symbolic link, whatever the name check missed. A PUT goes to a
 * temporary file in the target's directory and is renamed into place only
 * when the whole body has arrived. A GET is sent with sendfile(2), no copy
 * through user space.
 *
 * Over TLS the kernel cannot send the file (the bytes must be encrypted on
 * the way), so a GET reads it in chunks and sends those, with at most
 * GET_INFLIGHT chunks waiting for the socket at a time; each chunk's
 * completion sends the next. While a GET is being sent, input is held back
 * (conn_hold()): a request pipelined behind it is answered only after its
 * last byte, so replies never interleave.
 *
 * Per-connection state exists only while a request is in progress; between
 * requests a connection owns no buffer. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

#define FILES_NAME_MAX 255
#define FILES_HDR_MAX  512
#define TMP_PREFIX     ".sockit-put."
/* GET over TLS: bytes read per chunk, and chunks queued at most. */
#define GET_CHUNK    (64 * 1024)
#define GET_INFLIGHT 4

enum { F_HEADER, F_PUT, F_SKIP, F_GET };

struct files_req {
  int state;
  size_t hlen;
  uint64_t size, left;
  int fd, dirfd;
  /* GET over TLS: the file, where the next chunk starts, bytes still to
   * read, chunks not yet written, and input that arrived behind the GET. */
  int get_fd;
  off_t get_off;
  uint64_t get_left;
  int get_inflight;
  unsigned char *held;
  size_t held_len;
  char tmp[64];
  char base[FILES_NAME_MAX + 1];
  char name[FILES_NAME_MAX + 1];
  char hdr[FILES_HDR_MAX];
};

static atomic_uint tmp_seq;

static int open_beneath(int dirfd, const char *path, int flags) {
  struct open_how how;
  long fd;
  memset(&how, 0, sizeof(how));
  how.flags = (uint64_t)flags;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  do
    fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
  while (fd < 0 && errno == EINTR);
  return fd < 0 ? -errno : (int)fd;
}

static int valid_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' ||
         ch == '/';
}

/* The protocol's name rule, checked before the kernel ever sees the name. */
static int name_ok(const char *name) {
  size_t len = strlen(name);
  const char *comp = name;

  if (len == 0 || len > FILES_NAME_MAX || name[0] == '/')
    return 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && !valid_char(name[i]))
      return 0;
    if (i == len || name[i] == '/') {
      size_t clen = (size_t)(name + i - comp);
      if (clen == 0 || (clen == 1 && comp[0] == '.') ||
          (clen == 2 && comp[0] == '.' && comp[1] == '.'))
        return 0;
      comp = name + i + 1;
    }
  }
  return 1;
}

static const char *err_text(int err) {
  switch (err) {
  case -ENOENT:
    return "no such file";
  case -EXDEV:
  case -ELOOP:
    return "access denied (outside the root or through a symlink)";
  case -EACCES:
  case -EPERM:
    return "permission denied";
  case -EISDIR:
    return "is a directory";
  case -ENOTDIR:
    return "not a directory";
  case -ENOSPC:
    return "no space left on device";
  default:
    return sk_strerror(err);
  }
}

static void reply(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply(struct conn *c, const char *fmt, ...) {
  char buf[160];
  struct iovec iov;
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof(buf))
    n = (int)sizeof(buf) - 1;
  iov.iov_base = buf;
  iov.iov_len = (size_t)n;
  conn_send(c, &iov, 1);
}

static void reply_err(struct conn *c, const char *req, const char *name,
                      const char *text) {
  log_info("%s: %s %s: ERR %s", conn_name(c), req, name, text);
  reply(c, "ERR %s\n", text);
}

static void get_sent(sk_stream *s, int status, void *arg) {
  (void)s;
  (void)status;
  close((int)(intptr_t)arg);
}

/* One chunk's plaintext at a time: sk_stream_send() has encrypted and
 * queued it (or written it) before it returns, so one buffer per worker
 * thread serves every connection. */
static _Thread_local unsigned char get_buf[GET_CHUNK];

static void get_done(struct conn *c, struct files_req *r);
static void get_chunk_sent(sk_stream *s, int status, void *arg);

static void get_pump(struct conn *c, struct files_req *r) {
  while (r->get_left > 0 && r->get_inflight < GET_INFLIGHT) {
    size_t want = r->get_left < GET_CHUNK ? (size_t)r->get_left : GET_CHUNK;
    ssize_t n;
    int rc;
    do
      n = pread(r->get_fd, get_buf, want, r->get_off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
      /* The size is promised already; the only honest end is a cut. */
      log_error("%s: GET %s: %s after %lld bytes, closing the connection",
                conn_name(c), r->name,
                n == 0 ? "the file shrank" : strerror(errno),
                (long long)r->get_off);
      conn_close(c, "file read failed");
      return;
    }
    rc = sk_stream_send(&c->s, get_buf, (size_t)n, get_chunk_sent, c);
    if (rc < 0) {
      conn_close(c, sk_strerror(rc));
      return;
    }
    r->get_inflight++;
    r->get_off += n;
    r->get_left -= (uint64_t)n;
  }
  if (r->get_left == 0 && r->get_inflight == 0)
    get_done(c, r);
}

/* The connection (not the request) is the argument: it outlives every
 * completion of its stream, while the request may be freed by a close. */
static void get_chunk_sent(sk_stream *s, int status, void *arg) {
  struct conn *c = arg;
  struct files_req *r = c->mode_data;
  (void)s;
  if ((c->flags & C_CLOSING) || r == NULL || r->state != F_GET)
    return;
  r->get_inflight--;
  if (status < 0) {
    conn_close(c, sk_strerror(status));
    return;
  }
  conn_touch(c);
  get_pump(c, r);
}

static void get_start_tls(struct conn *c, struct files_req *r, int fd,
                          uint64_t size, const char *name) {
  snprintf(r->name, sizeof(r->name), "%s", name);
  r->get_fd = fd;
  r->get_off = 0;
  r->get_left = size;
  r->get_inflight = 0;
  r->state = F_GET;
  conn_hold(c);
  get_pump(c, r);
}

static void do_get(struct conn *c, struct files_req *r, const char *name) {
  int root = c->w->srv->root_fd;
  struct stat st;
  int fd, rc;

  if (!name_ok(name)) {
    reply_err(c, "GET", name, "bad file name");
    return;
  }
  /* O_NONBLOCK: opening a FIFO must not stall the event loop. */
  fd = open_beneath(root, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    reply_err(c, "GET", name, err_text(fd));
    return;
  }
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    reply_err(c, "GET", name, "not a regular file");
    return;
  }
  log_info("%s: GET %s: OK %lld bytes", conn_name(c), name,
           (long long)st.st_size);
  reply(c, "OK %lld\n", (long long)st.st_size);
  if (c->flags & C_CLOSING) {
    close(fd);
    return;
  }
  if (st.st_size == 0) {
    close(fd);
    return;
  }
  if (conn_tls(c)) {
    get_start_tls(c, r, fd, (uint64_t)st.st_size, name);
    return;
  }
  rc = sk_stream_sendfile(&c->s, fd, 0, (size_t)st.st_size, get_sent,
                          (void *)(intptr_t)fd);
  if (rc < 0) {
    close(fd);
    conn_close(c, sk_strerror(rc));
  }
}

static void put_abort(struct files_req *r) {
  if (r->fd >= 0) {
    close(r->fd);
    r->fd = -1;
    unlinkat(r->dirfd, r->tmp, 0);
  }
  if (r->dirfd >= 0) {
    close(r->dirfd);
    r->dirfd = -1;
  }
}

static void put_done(struct conn *c, struct files_req *r) {
  int err = 0;
  if (close(r->fd) < 0)
    err = -errno;
  r->fd = -1;
  if (err == 0 && renameat(r->dirfd, r->tmp, r->dirfd, r->base) < 0)
    err = -errno;
  if (err != 0) {
    unlinkat(r->dirfd, r->tmp, 0);
    reply_err(c, "PUT", r->name, err_text(err));
  } else {
    log_info("%s: PUT %s: OK %llu bytes", conn_name(c), r->name,
             (unsigned long long)r->size);
    reply(c, "OK %llu\n", (unsigned long long)r->size);
  }
  close(r->dirfd);
  r->dirfd = -1;
  r->state = F_HEADER;
}

/* A rejected upload's body still has to be read past to stay in step. */
static void put_skip(struct files_req *r, uint64_t size) {
  r->left = size;
  r->state = size > 0 ? F_SKIP : F_HEADER;
}

static void do_put(struct conn *c, struct files_req *r, char *args) {
  const struct server_config *cfg = conn_cfg(c);
  char *sp = strrchr(args, ' ');
  uint64_t size;
  const char *dir;
  char dirbuf[FILES_NAME_MAX + 1];
  int rc;

  if (sp == NULL || cli_parse_u64(sp + 1, 0, UINT64_MAX, &size) < 0) {
    /* Without a size there is no telling where the next request starts. */
    reply_err(c, "PUT", args, "bad request (expected PUT <name> <size>)");
    conn_finish(c);
    return;
  }
  *sp = '\0';
  if (size > cfg->max_file) {
    char text[80];
    snprintf(text, sizeof(text), "file too large (limit %llu bytes)",
             (unsigned long long)cfg->max_file);
    reply_err(c, "PUT", args, text);
    conn_finish(c);
    return;
  }
  if (!name_ok(args)) {
    reply_err(c, "PUT", args, "bad file name");
    put_skip(r, size);
    return;
  }
  snprintf(r->name, sizeof(r->name), "%s", args);
  sp = strrchr(args, '/');
  if (sp != NULL) {
    memcpy(dirbuf, args, (size_t)(sp - args));
    dirbuf[sp - args] = '\0';
    dir = dirbuf;
    snprintf(r->base, sizeof(r->base), "%s", sp + 1);
  } else {
    dir = ".";
    snprintf(r->base, sizeof(r->base), "%s", args);
  }
  rc = open_beneath(c->w->srv->root_fd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rc < 0) {
    reply_err(c, "PUT", r->name, err_text(rc));
    put_skip(r, size);
    return;
  }
  r->dirfd = rc;
  snprintf(r->tmp, sizeof(r->tmp), TMP_PREFIX "%ld.%u", (long)getpid(),
           atomic_fetch_add(&tmp_seq, 1));
  /* A single path component under a directory opened beneath the root;
   * O_EXCL refuses to follow or reuse anything already there. */
  r->fd = openat(r->dirfd, r->tmp,
                 O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (r->fd < 0) {
    rc = -errno;
    close(r->dirfd);
    r->dirfd = -1;
    reply_err(c, "PUT", r->name, err_text(rc));
    put_skip(r, size);
    return;
  }
  r->size = r->left = size;
  r->state = F_PUT;
  if (size == 0)
    put_done(c, r);
}

static void handle_request(struct conn *c, struct files_req *r) {
  char *line = r->hdr;
  if (strncmp(line, "GET ", 4) == 0)
    do_get(c, r, line + 4);
  else if (strncmp(line, "PUT ", 4) == 0)
    do_put(c, r, line + 4);
  else
    reply_err(c, "request", "", "unknown request (expected GET or PUT)");
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static struct files_req *req_get(struct conn *c) {
  struct files_req *r = c->mode_data;
  if (r == NULL) {
    r = calloc(1, sizeof(*r));
    if (r == NULL)
      return NULL;
    r->fd = r->dirfd = r->get_fd = -1;
    c->mode_data = r;
  }
  return r;
}

static int between_requests(const struct conn *c) {
  const struct files_req *r = c->mode_data;
  return r == NULL || (r->state == F_HEADER && r->hlen == 0);
}

/* Keeps input that arrived behind a GET still being sent over TLS. At
 * most what one read delivered: reading is paused while the GET runs. */
static int hold_input(struct files_req *r, const unsigned char *buf,
                      size_t len) {
  unsigned char *p = realloc(r->held, r->held_len + len);
  if (p == NULL)
    return -1;
  memcpy(p + r->held_len, buf, len);
  r->held = p;
  r->held_len += len;
  return 0;
}

/* Between two requests a connection owns no state, and a stopping server
 * finishes it there. */
static void request_boundary(struct conn *c) {
  if (c->flags & C_CLOSING)
    return;
  if (between_requests(c)) {
    free(c->mode_data);
    c->mode_data = NULL;
    if (c->flags & C_STOPPING)
      conn_finish(c);
  }
}

static void files_data(struct conn *c, const unsigned char *buf, size_t len) {
  while (len > 0 && !(c->flags & (C_CLOSING | C_SHUT))) {
    struct files_req *r = req_get(c);
    size_t n;
    if (r == NULL) {
      conn_close(c, "out of memory");
      return;
    }
    switch (r->state) {
    case F_GET:
      if (hold_input(r, buf, len) < 0)
        conn_close(c, "out of memory");
      return;
    case F_HEADER: {
      const unsigned char *nl = memchr(buf, '\n', len);
      n = nl != NULL ? (size_t)(nl - buf) + 1 : len;
      if (r->hlen + n > sizeof(r->hdr)) {
        reply_err(c, "request", "", "request line too long");
        conn_finish(c);
        return;
      }
      memcpy(r->hdr + r->hlen, buf, n);
      r->hlen += n;
      buf += n;
      len -= n;
      if (nl == NULL)
        break;
      r->hlen--; /* the "\n" */
      if (r->hlen > 0 && r->hdr[r->hlen - 1] == '\r')
        r->hlen--;
      r->hdr[r->hlen] = '\0';
      r->hlen = 0;
      handle_request(c, r);
      break;
    }
    case F_PUT: {
      int rc;
      n = len < r->left ? len : (size_t)r->left;
      rc = write_all(r->fd, buf, n);
      buf += n;
      len -= n;
      r->left -= n;
      if (rc < 0) {
        put_abort(r);
        reply_err(c, "PUT", r->name, err_text(rc));
        put_skip(r, r->left);
      } else if (r->left == 0) {
        put_done(c, r);
      }
      break;
    }
    case F_SKIP:
      n = len < r->left ? len : (size_t)r->left;
      buf += n;
      len -= n;
      r->left -= n;
      if (r->left == 0)
        r->state = F_HEADER;
      break;
    }
  }
  request_boundary(c);
}

/* The last chunk of a GET over TLS was written: what arrived behind it is
 * handled now, then input flows again (unless that started another GET). */
static void get_done(struct conn *c, struct files_req *r) {
  unsigned char *held = r->held;
  size_t held_len = r->held_len;

  close(r->get_fd);
  r->get_fd = -1;
  r->held = NULL;
  r->held_len = 0;
  r->state = F_HEADER;
  if (held != NULL)
    files_data(c, held, held_len);
  free(held);
  if (c->flags & C_CLOSING)
    return;
  r = c->mode_data;
  if (r == NULL || r->state != F_GET) {
    conn_release(c);
    request_boundary(c);
  }
}

static void files_stop(struct conn *c) {
  /* A request in progress, or one already sent, is completed first
   * (bounded by --grace); files_data() finishes after it. */
  if (between_requests(c) && !conn_unread(c))
    conn_finish(c);
}

static void files_close(struct conn *c) {
  struct files_req *r = c->mode_data;
  if (r == NULL)
    return;
  /* The temporary file goes before the log line says so. */
  if (r->state == F_PUT) {
    put_abort(r);
    log_info("%s: PUT %s: connection closed after %llu of %llu bytes, "
             "upload discarded",
             conn_name(c), r->name, (unsigned long long)(r->size - r->left),
             (unsigned long long)r->size);
  }
  put_abort(r);
  if (r->get_fd >= 0)
    close(r->get_fd);
  free(r->held);
  free(r);
  c->mode_data = NULL;
}

static int files_setup(struct server *srv) {
  const char *root = srv->cfg.root != NULL ? srv->cfg.root : ".";
  int fd;
  srv->root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (srv->root_fd < 0) {
    fprintf(stderr, "%s: --root %s: %s\n", SK_PROG_NAME, root, strerror(errno));
    return -1;
  }
  /* openat2() is what makes serving a directory safe; without it (Linux
   * older than 5.6) the mode refuses to start rather than fall back. */
  fd = open_beneath(srv->root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "%s: files mode needs openat2() (Linux 5.6 or newer): %s\n",
            SK_PROG_NAME, sk_strerror(fd));
    close(srv->root_fd);
    return -1;
  }
  close(fd);
  return 0;
}

static void files_teardown(struct server *srv) {
  if (srv->root_fd >= 0)
    close(srv->root_fd);
  srv->root_fd = -1;
}

const struct mode mode_files = {
    .name = "files",
    .summary = "GET and PUT whole files under --root",
    .flags = MODE_UNFRAMED,
    .setup = files_setup,
    .teardown = files_teardown,
    .data = files_data,
    .stop = files_stop,
    .close = files_close,
};
