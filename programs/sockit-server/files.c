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
 * a symbolic link, whatever the name check missed.
 *
 * A PUT has no name anyone can reach until its whole body has arrived: it
 * is written to an unnamed file (O_TMPFILE) in the target's directory,
 * which linkat(2) then names (straight to the target when that is free,
 * else to a temporary name renamed over the target, atomically). Where the
 * filesystem has no O_TMPFILE the file is created under a temporary name,
 * TMP_PREFIX<pid>.<random>, which the name rule refuses, so no client can
 * read or replace it; a failed upload removes it, and leftovers of a
 * server that died are removed at the next start (clean_leftovers()).
 *
 * A GET is sent with sk_stream_sendfile(): sendfile(2), no copy through
 * user space, on plain transports; over TLS the library reads and encrypts
 * the file in bounded chunks. While a GET is being sent input is held back
 * (conn_hold()): a request pipelined behind it is read only after its last
 * byte, so replies never interleave and a connection holds at most
 * one open file (an upload: the file and its directory).
 *
 * Per-connection state exists only while a request is in progress; between
 * requests a connection owns no buffer. */
#include "server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

#define FILES_NAME_MAX 255
#define FILES_HDR_MAX  512
/* Temporary names of uploads; the name rule refuses them. */
#define TMP_PREFIX     ".sockit-put."
#define TMP_PREFIX_LEN (sizeof(TMP_PREFIX) - 1)

enum { F_HEADER, F_PUT, F_SKIP, F_GET };

struct files_req {
  int state;
  size_t hlen;
  uint64_t size, left;
  int fd, dirfd; /* PUT: the file being written and its directory */
  /* GET: the file (size is its promised size), and input that arrived
   * behind the GET. */
  int get_fd;
  unsigned char *held;
  size_t held_len;
  char tmp[64];
  char base[FILES_NAME_MAX + 1];
  char name[FILES_NAME_MAX + 1];
  char hdr[FILES_HDR_MAX];
};

/* The root directory (O_PATH), opened by files_setup(). */
static int root_fd = -1;
/* --root and --max-file, as the options at the end of this file set them. */
static const char *root_dir;
static uint64_t max_file;
static atomic_uint tmp_seq;
/* O_TMPFILE files are named through /proc/self/fd (set by files_setup()). */
static int tmpfile_ok;

static int open_beneath(int dirfd, const char *path, int flags, mode_t mode) {
  struct open_how how;
  long fd;
  memset(&how, 0, sizeof(how));
  how.flags = (uint64_t)flags;
  how.mode = mode;
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
          (clen == 2 && comp[0] == '.' && comp[1] == '.') ||
          (clen >= TMP_PREFIX_LEN &&
           memcmp(comp, TMP_PREFIX, TMP_PREFIX_LEN) == 0))
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

/* The promised size can no longer be sent; the only honest end is a cut. */
static void get_cut(struct conn *c, struct files_req *r, const char *what) {
  log_error("%s: GET %s: %s before its %llu bytes were sent, closing the "
            "connection",
            conn_name(c), r->name, what, (unsigned long long)r->size);
  conn_close(c, "GET cut short");
}

static void get_done(struct conn *c, struct files_req *r);

/* The GET's sk_stream_sendfile() completed. The library ends the request
 * with SK_EOF when the file has fewer bytes than were promised. */
static void get_file_sent(sk_stream *s, int status, void *arg) {
  struct conn *c = arg;
  struct files_req *r = c->mode_data;
  (void)s;
  if (conn_closing(c) || r == NULL || r->state != F_GET)
    return;
  if (status == SK_EOF)
    get_cut(c, r, "the file shrank");
  else if (status < 0)
    conn_close(c, sk_strerror(status));
  else
    get_done(c, r);
}

static void do_get(struct conn *c, struct files_req *r, const char *name) {
  int root = root_fd;
  struct stat st;
  int fd, rc;

  if (!name_ok(name)) {
    reply_err(c, "GET", name, "bad file name");
    return;
  }
  /* O_NONBLOCK: opening a FIFO must not stall the event loop. */
  fd =
      open_beneath(root, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0);
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
  if (conn_closing(c) || st.st_size == 0) {
    close(fd);
    return;
  }
  /* From here the request owns the file (files_close() closes it), and
   * nothing more is read from the connection until get_done(). */
  snprintf(r->name, sizeof(r->name), "%s", name);
  r->get_fd = fd;
  r->size = (uint64_t)st.st_size;
  r->state = F_GET;
  rc = sk_stream_sendfile(&c->s, fd, 0, (size_t)st.st_size, get_file_sent, c);
  if (rc < 0) {
    conn_close(c, sk_strerror(rc));
    return;
  }
  conn_sent(c, (size_t)st.st_size);
  /* One request in flight: the next one is read once this reply is out
   * (get_done() releases the hold). */
  conn_hold(c);
}

/* TMP_PREFIX<pid>.<64 random bits>: the pid tells a later start whether
 * the upload's server is gone (clean_leftovers()). */
static void tmp_name(char *buf, size_t size) {
  uint64_t v;
  if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
    v = ((uint64_t)atomic_fetch_add(&tmp_seq, 1) << 32) ^ (uint64_t)time(NULL);
  snprintf(buf, size, TMP_PREFIX "%ld.%016llx", (long)getpid(),
           (unsigned long long)v);
}

/* The upload's file, in r->dirfd: unnamed if the filesystem can, else
 * under a temporary name (kept in r->tmp). Returns the descriptor or a
 * negative errno. */
static int put_open(struct files_req *r) {
  int fd;
  r->tmp[0] = '\0';
  if (tmpfile_ok) {
    fd = open_beneath(r->dirfd, ".", O_WRONLY | O_TMPFILE | O_CLOEXEC, 0644);
    if (fd != -EOPNOTSUPP && fd != -EISDIR && fd != -EINVAL)
      return fd;
  }
  tmp_name(r->tmp, sizeof(r->tmp));
  /* O_EXCL refuses to follow or reuse anything already there. */
  fd = open_beneath(r->dirfd, r->tmp,
                    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    r->tmp[0] = '\0';
  return fd;
}

/* Gives the complete upload its name, replacing what had it, atomically.
 * Returns 0 or a negative errno; r->tmp names what is left to remove. */
static int put_commit(struct files_req *r) {
  char proc[40];
  if (r->tmp[0] == '\0') {
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", r->fd);
    if (linkat(AT_FDCWD, proc, r->dirfd, r->base, AT_SYMLINK_FOLLOW) == 0)
      return 0;
    if (errno != EEXIST)
      return -errno;
    /* linkat() never replaces: a temporary name, renamed over the old. */
    tmp_name(r->tmp, sizeof(r->tmp));
    if (linkat(AT_FDCWD, proc, r->dirfd, r->tmp, AT_SYMLINK_FOLLOW) < 0) {
      r->tmp[0] = '\0';
      return -errno;
    }
  }
  if (renameat(r->dirfd, r->tmp, r->dirfd, r->base) < 0)
    return -errno;
  r->tmp[0] = '\0';
  return 0;
}

static void put_abort(struct files_req *r) {
  if (r->fd >= 0) {
    close(r->fd);
    r->fd = -1;
  }
  if (r->tmp[0] != '\0' && r->dirfd >= 0)
    unlinkat(r->dirfd, r->tmp, 0);
  r->tmp[0] = '\0';
  if (r->dirfd >= 0) {
    close(r->dirfd);
    r->dirfd = -1;
  }
}

static void put_done(struct conn *c, struct files_req *r) {
  int err = put_commit(r);
  if (close(r->fd) < 0 && err == 0)
    err = -errno;
  r->fd = -1;
  if (err != 0) {
    reply_err(c, "PUT", r->name, err_text(err));
  } else {
    log_info("%s: PUT %s: OK %llu bytes", conn_name(c), r->name,
             (unsigned long long)r->size);
    reply(c, "OK %llu\n", (unsigned long long)r->size);
  }
  put_abort(r);
  r->state = F_HEADER;
}

/* A rejected upload's body still has to be read past to stay in step. */
static void put_skip(struct files_req *r, uint64_t size) {
  r->left = size;
  r->state = size > 0 ? F_SKIP : F_HEADER;
}

static void do_put(struct conn *c, struct files_req *r, char *args) {
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
  if (size > max_file) {
    char text[80];
    snprintf(text, sizeof(text), "file too large (limit %llu bytes)",
             (unsigned long long)max_file);
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
  rc = open_beneath(root_fd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  if (rc < 0) {
    reply_err(c, "PUT", r->name, err_text(rc));
    put_skip(r, size);
    return;
  }
  r->dirfd = rc;
  rc = put_open(r);
  if (rc < 0) {
    put_abort(r);
    reply_err(c, "PUT", r->name, err_text(rc));
    put_skip(r, size);
    return;
  }
  r->fd = rc;
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

/* Keeps input that arrived behind a GET still being sent. At
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
  if (conn_closing(c))
    return;
  if (between_requests(c)) {
    free(c->mode_data);
    c->mode_data = NULL;
    /* Requests still in the kernel came before the stop: answered too
     * (reading was held back while a GET was being sent). */
    if (conn_stopping(c) && !conn_unread(c))
      conn_finish(c);
  }
}

static void files_data(struct conn *c, const unsigned char *buf, size_t len) {
  while (len > 0 && !conn_finishing(c)) {
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

/* The GET's last byte was written: what arrived behind it is
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
  if (conn_closing(c))
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

/* 1 if name is TMP_PREFIX<pid>.<anything> and that process is gone. A
 * running process's uploads stay: another server may serve the same tree
 * (a reused pid only delays a removal to a later start). */
static int leftover(const char *name) {
  const char *p = name + TMP_PREFIX_LEN;
  char *end;
  long pid;
  if (strncmp(name, TMP_PREFIX, TMP_PREFIX_LEN) != 0 || *p < '1' || *p > '9')
    return 0;
  errno = 0;
  pid = strtol(p, &end, 10);
  if (errno != 0 || *end != '.' || pid > INT32_MAX)
    return 0;
  return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* Removes, below dfd (which it closes), the temporary files of uploads
 * whose server died. Only directories a client can name are walked (the
 * name rule, within FILES_NAME_MAX bytes of path), without following
 * symbolic links. */
static void clean_dir(int dfd, size_t path_len, unsigned long *removed) {
  DIR *d = fdopendir(dfd);
  struct dirent *e;
  if (d == NULL) {
    close(dfd);
    return;
  }
  while ((e = readdir(d)) != NULL) {
    const char *n = e->d_name;
    unsigned char type = e->d_type;
    struct stat st;
    int sub;
    if (type == DT_UNKNOWN) {
      if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0)
        continue;
      type = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : 0;
    }
    if (type == DT_REG && leftover(n)) {
      if (unlinkat(dirfd(d), n, 0) == 0)
        (*removed)++;
    } else if (type == DT_DIR && name_ok(n) &&
               path_len + strlen(n) + 2 <= FILES_NAME_MAX) {
      sub = open_beneath(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
      if (sub >= 0)
        clean_dir(sub, path_len + strlen(n) + 1, removed);
    }
  }
  closedir(d);
}

static void clean_leftovers(void) {
  unsigned long removed = 0;
  int fd = open_beneath(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (fd < 0)
    return;
  clean_dir(fd, 0, &removed);
  if (removed > 0)
    log_info("--root: removed %lu unfinished uploads left by a server that "
             "stopped",
             removed);
}

static int files_setup(const struct server_config *cfg) {
  const char *root = root_dir;
  int fd;
  (void)cfg;
  root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) {
    fprintf(stderr, "%s: cannot open --root %s: %s\n", SK_PROG_NAME, root,
            strerror(errno));
    return -1;
  }
  /* openat2() is what makes serving a directory safe; without it (Linux
   * older than 5.6) the mode refuses to start rather than fall back. Any
   * other failure here is the directory's (no search permission, ...). */
  fd = open_beneath(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  if (fd < 0) {
    if (fd == -ENOSYS)
      fprintf(stderr, "%s: files mode needs openat2() (Linux 5.6 or newer)\n",
              SK_PROG_NAME);
    else
      fprintf(stderr, "%s: cannot open --root %s: %s\n", SK_PROG_NAME, root,
              sk_strerror(fd));
    close(root_fd);
    root_fd = -1;
    return -1;
  }
  close(fd);
  tmpfile_ok = access("/proc/self/fd", X_OK) == 0;
  clean_leftovers();
  return 0;
}

static void files_teardown(void) {
  if (root_fd >= 0)
    close(root_fd);
  root_fd = -1;
}

/* --root and --max-file (files_options at the end). */
static const char *parse_root(const char *value) {
  root_dir = value;
  return NULL;
}

static const char *parse_max_file(const char *value) {
  static char why[48];
  if (cli_parse_size(value, 0, UINT64_MAX, &max_file) == 0)
    return NULL;
  snprintf(why, sizeof(why), "is not a size in 0..%llu bytes",
           (unsigned long long)UINT64_MAX);
  return why;
}

static const struct mode_option files_options[] = {
    {"--root", "DIR", "directory to serve", ".", parse_root},
    {"--max-file", "BYTES", "largest PUT", "1G", parse_max_file},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct mode mode_files = {
    .name = "files",
    .summary = "GET and PUT whole files under --root",
    .transports = MODE_STREAMS,
    .frames = 0, /* GET and PUT lines, and raw file bytes */
    /* An upload holds its socket, the file being written and its
     * directory (a download only the socket and the file: one request is
     * in flight per connection). */
    .fds_per_conn = 3,
    .options = files_options,
    .setup = files_setup,
    .teardown = files_teardown,
    .data = files_data,
    .stop = files_stop,
    .close = files_close,
};
