#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *g_prog = "sockit";
static int g_level = LOG_INFO;
/* Set by log_configure() before any thread logs; read-only afterwards,
 * except g_fd, which only the writer thread changes once started. */
static int g_format = LOG_FORMAT_TEXT;
static int g_stamps;  /* text lines start with a time stamp */
static int g_journal; /* stderr is the journal: "<N>" prefixes */
static const char *g_file;
static int g_fd = STDERR_FILENO;

/* The writer thread's state (see log.h). Lines wait in `fill` until the
 * writer swaps it with `drain` and writes `drain` out, blocking only
 * itself. A line that does not fit is counted, never waited for. */
#define LOG_BUF (256 * 1024)
static struct {
  pthread_mutex_t mu;
  pthread_cond_t more; /* lines or the stop request arrived */
  pthread_cond_t done; /* the writer ended */
  pthread_t thread;
  char *fill, *drain;
  size_t len;
  uint64_t dropped, dropped_total;
  int started, stopping, ended, reopen;
  size_t reopen_at; /* bytes of fill queued before the reopen was asked */
} g_w = {.mu = PTHREAD_MUTEX_INITIALIZER};

void log_init(const char *prog, int level) {
  g_prog = prog;
  g_level = level;
}

int log_level(void) {
  return g_level;
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(g_fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return; /* stderr closed or broken: nothing else to do with it */
    }
    p += w;
    n -= (size_t)w;
  }
}

static size_t format_line(int level, const char *text, size_t n,
                          const struct log_field *f, size_t nf, char *out);
/* The longest line before escaping; longer ones are cut. */
#define LOG_LINE_MAX 4096
/* Room for one formatted line: JSON escapes a byte in up to 6. */
#define LOG_OUT_MAX (6 * LOG_LINE_MAX + 1024)

/* A line of the logger's own, written directly (writer thread only). */
static void note(int level, const char *text) {
  static char out[LOG_OUT_MAX];
  write_all(out, format_line(level, text, strlen(text), NULL, 0, out));
}

static int open_log_file(const char *path) {
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

/* Writer thread: --log-file was moved away; open the path again. */
static void reopen_file(void) {
  int fd = open_log_file(g_file);
  if (fd < 0) {
    char text[600];
    snprintf(text, sizeof(text),
             "cannot reopen --log-file %.500s: %s; "
             "still writing to the old file",
             g_file, strerror(errno));
    note(LOG_ERROR, text);
    return;
  }
  close(g_fd);
  g_fd = fd;
}

static void *writer(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_w.mu);
  for (;;) {
    while (g_w.len == 0 && g_w.dropped == 0 && !g_w.stopping && !g_w.reopen)
      pthread_cond_wait(&g_w.more, &g_w.mu);
    if (g_w.len == 0 && g_w.dropped == 0 && !g_w.reopen)
      break; /* stopping, and everything is out */
    char *out = g_w.fill;
    size_t n = g_w.len;
    uint64_t dropped = g_w.dropped;
    int reopen = g_w.reopen;
    size_t at = reopen ? g_w.reopen_at : n;
    g_w.fill = g_w.drain;
    g_w.drain = out;
    g_w.len = 0;
    g_w.dropped = 0;
    g_w.reopen = 0;
    pthread_mutex_unlock(&g_w.mu);
    /* Lines queued before the reopen go to the old file, the ones queued
     * after it (the reload's own messages) to the new one. */
    write_all(out, at);
    if (reopen && g_file != NULL)
      reopen_file();
    write_all(out + at, n - at);
    if (dropped > 0) {
      char text[160];
      snprintf(text, sizeof(text),
               "%llu log line%s dropped: the log is not being read fast "
               "enough",
               (unsigned long long)dropped, dropped == 1 ? "" : "s");
      note(LOG_WARN, text);
    }
    pthread_mutex_lock(&g_w.mu);
  }
  g_w.ended = 1;
  pthread_cond_broadcast(&g_w.done);
  pthread_mutex_unlock(&g_w.mu);
  return NULL;
}

int log_start(void) {
  pthread_condattr_t ca;
  if (g_w.started)
    return 0;
  g_w.fill = malloc(LOG_BUF);
  g_w.drain = malloc(LOG_BUF);
  if (g_w.fill == NULL || g_w.drain == NULL)
    goto fail;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g_w.more, NULL);
  pthread_cond_init(&g_w.done, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&g_w.thread, NULL, writer, NULL) != 0) {
    pthread_cond_destroy(&g_w.more);
    pthread_cond_destroy(&g_w.done);
    goto fail;
  }
  pthread_mutex_lock(&g_w.mu);
  g_w.started = 1;
  pthread_mutex_unlock(&g_w.mu);
  return 0;
fail:
  free(g_w.fill);
  free(g_w.drain);
  g_w.fill = g_w.drain = NULL;
  return -1;
}

void log_stop(int timeout_ms) {
  struct timespec dl;
  int ended;
  pthread_mutex_lock(&g_w.mu);
  if (!g_w.started || g_w.stopping) {
    pthread_mutex_unlock(&g_w.mu);
    return;
  }
  g_w.stopping = 1;
  pthread_cond_signal(&g_w.more);
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_sec += timeout_ms / 1000;
  dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  while (!g_w.ended &&
         pthread_cond_timedwait(&g_w.done, &g_w.mu, &dl) != ETIMEDOUT)
    ;
  ended = g_w.ended;
  pthread_mutex_unlock(&g_w.mu);
  if (ended) {
    pthread_join(g_w.thread, NULL);
    free(g_w.fill);
    free(g_w.drain);
    g_w.fill = g_w.drain = NULL;
  }
  /* Otherwise the writer is stuck on a stderr nobody reads: leave it (and
   * its buffers) to the process exit rather than hang the exit too. */
}

/* Queues (or, before log_start(), writes) one finished line. */
static void put_line(const char *line, size_t n) {
  pthread_mutex_lock(&g_w.mu);
  if (!g_w.started || g_w.stopping) {
    /* Before log_start() or once stopping: write it here, in order
     * behind what the writer took (a writer still busy finishes first
     * only if it is not stuck; the mutex is not held while writing). */
    pthread_mutex_unlock(&g_w.mu);
    write_all(line, n);
    return;
  }
  if (n <= LOG_BUF - g_w.len) {
    memcpy(g_w.fill + g_w.len, line, n);
    g_w.len += n;
    if (g_w.len == n)
      pthread_cond_signal(&g_w.more);
  } else {
    g_w.dropped_total++;
    if (g_w.dropped++ == 0)
      pthread_cond_signal(&g_w.more);
  }
  pthread_mutex_unlock(&g_w.mu);
}

unsigned long long log_dropped_total(void) {
  unsigned long long n;
  pthread_mutex_lock(&g_w.mu);
  n = g_w.dropped_total;
  pthread_mutex_unlock(&g_w.mu);
  return n;
}

/* JOURNAL_STREAM is "DEVICE:INODE" of the journal's stream (sd-daemon(3));
 * it counts only if stderr still is that stream (not redirected since). */
static int stderr_is_journal(void) {
  const char *env = getenv("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;
  char end;
  if (env == NULL || sscanf(env, "%llu:%llu%c", &dev, &ino, &end) != 2)
    return 0;
  if (fstat(STDERR_FILENO, &st) < 0)
    return 0;
  return (unsigned long long)st.st_dev == dev &&
         (unsigned long long)st.st_ino == ino;
}

int log_configure(int format, const char *file, int timestamps) {
  g_format = format;
  g_file = file;
  if (file != NULL) {
    int fd = open_log_file(file);
    if (fd < 0)
      return -1;
    g_fd = fd;
  }
  g_journal = file == NULL && format == LOG_FORMAT_TEXT && stderr_is_journal();
  g_stamps = timestamps && !g_journal;
  return 0;
}

void log_reopen(void) {
  if (g_file == NULL)
    return;
  pthread_mutex_lock(&g_w.mu);
  if (g_w.started && !g_w.stopping) {
    if (!g_w.reopen)
      g_w.reopen_at = g_w.len;
    g_w.reopen = 1;
    pthread_cond_signal(&g_w.more);
    pthread_mutex_unlock(&g_w.mu);
    return;
  }
  pthread_mutex_unlock(&g_w.mu);
  /* No writer: nothing else writes to g_fd from another thread now. */
  reopen_file();
}

int log_text_char(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  size_t len;
  uint32_t cp, min;
  if ((c >= 0x20 && c < 0x7f) || c == '\t')
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2, cp = c & 0x1fu, min = 0xa0; /* U+0080..U+009F are C1 */
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3, cp = c & 0x0fu, min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, cp = c & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  for (size_t i = 1; i < len; i++) {
    if (i == n)
      return -1;
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3fu);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return (int)len;
}

void log_hex_byte(unsigned char c, char *out) {
  static const char hex[] = "0123456789abcdef";
  out[0] = '\\';
  out[1] = 'x';
  out[2] = hex[c >> 4];
  out[3] = hex[c & 15];
}

/* RFC 3339, UTC, milliseconds: "2025-01-31T12:00:00.123Z". */
static size_t put_time(char *out) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  return strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm) +
         (size_t)snprintf(out + 19, 13, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* Text: every byte outside printable ASCII becomes \xHH, and so does the
 * backslash, so that nothing a peer sent (a file name, a TLS reason) can
 * move the cursor, recolour a terminal or start a line of its own that
 * looks like ours, and an escape in the log always means a byte that was
 * escaped. */
static size_t escape_text(const char *text, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out[o++] = (char)c;
    } else {
      log_hex_byte(c, out + o);
      o += 4;
    }
  }
  return o;
}

/* JSON string contents: '"' and '\' escaped, well-formed UTF-8 kept (but
 * not C1 controls), every other byte (controls, DEL, invalid UTF-8) as
 * \u00XX, so the line is valid JSON whatever a peer sent. */
static size_t escape_json(const char *text, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)text;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    int k = log_text_char(p + i, n - i);
    if (p[i] == '"' || p[i] == '\\') {
      out[o++] = '\\';
      out[o++] = (char)p[i++];
    } else if (k > 0 && p[i] != '\t') {
      memcpy(out + o, p + i, (size_t)k);
      o += (size_t)k;
      i += (size_t)k;
    } else {
      memcpy(out + o, "\\u00", 4);
      out[o + 4] = hex[p[i] >> 4];
      out[o + 5] = hex[p[i] & 15];
      o += 6;
      i++;
    }
  }
  return o;
}

/* Formats one whole line (with its newline) into out (LOG_OUT_MAX). */
static size_t format_line(int level, const char *text, size_t n,
                          const struct log_field *f, size_t nf, char *out) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  static const int prio[] = {3, 4, 6, 7}; /* LOG_ERR, _WARNING, _INFO, _DEBUG */
  size_t o = 0;
  if (n > LOG_LINE_MAX)
    n = LOG_LINE_MAX;
  if (g_format == LOG_FORMAT_JSON) {
    o += (size_t)sprintf(out, "{\"ts\":\"");
    o += put_time(out + o);
    o += (size_t)sprintf(out + o, "\",\"level\":\"%s\",\"msg\":\"",
                         names[level]);
    o += escape_json(text, n, out + o);
    out[o++] = '"';
    for (size_t i = 0; i < nf && o < LOG_OUT_MAX - 600; i++) {
      o += (size_t)sprintf(out + o, ",\"%s\":", f[i].key);
      if (f[i].str != NULL) {
        size_t len = strnlen(f[i].str, 80);
        out[o++] = '"';
        o += escape_json(f[i].str, len, out + o);
        out[o++] = '"';
      } else {
        o += (size_t)sprintf(out + o, "%llu", f[i].num);
      }
    }
    out[o++] = '}';
    out[o++] = '\n';
    return o;
  }
  if (g_journal) {
    o += (size_t)sprintf(out, "<%d>", prio[level]);
  } else {
    if (g_stamps) {
      o += put_time(out);
      out[o++] = ' ';
    }
    o += escape_text(g_prog, strlen(g_prog), out + o);
    out[o++] = ':';
    out[o++] = ' ';
  }
  if (level != LOG_INFO)
    o += (size_t)sprintf(out + o, "%s: ", names[level]);
  o += escape_text(text, n, out + o);
  out[o++] = '\n';
  return o;
}

/* Formats and queues one line; whole lines only, so lines from different
 * threads never interleave. */
static void emit(int level, const char *text, size_t n,
                 const struct log_field *f, size_t nf) {
  char out[LOG_OUT_MAX];
  put_line(out, format_line(level, text, n, f, nf, out));
}

void log_write(const char *line, size_t n) {
  size_t plen = strlen(g_prog);
  if (n > 0 && line[n - 1] == '\n')
    n--;
  /* The line carries "PROG: "; the format adds its own. */
  if (n >= plen + 2 && memcmp(line, g_prog, plen) == 0 &&
      memcmp(line + plen, ": ", 2) == 0) {
    line += plen + 2;
    n -= plen + 2;
  }
  emit(LOG_INFO, line, n, NULL, 0);
}

static void vlog(int level, const struct log_field *f, size_t nf,
                 const char *fmt, va_list ap) {
  char text[1024];
  int n;
  if (level > g_level)
    return;
  n = vsnprintf(text, sizeof(text), fmt, ap);
  if (n < 0)
    return;
  if (n > (int)sizeof(text) - 1)
    n = (int)sizeof(text) - 1;
  emit(level, text, (size_t)n, f, nf);
}

void log_msg(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, NULL, 0, fmt, ap);
  va_end(ap);
}

void log_event(int level, const struct log_field *f, size_t nf, const char *fmt,
               ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, f, nf, fmt, ap);
  va_end(ap);
}
