#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *g_prog = "sockit";
static int g_level = LOG_INFO;

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
  uint64_t dropped;
  int started, stopping, ended;
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
    ssize_t w = write(STDERR_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return; /* stderr closed or broken: nothing else to do with it */
    }
    p += w;
    n -= (size_t)w;
  }
}

static void *writer(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_w.mu);
  for (;;) {
    while (g_w.len == 0 && g_w.dropped == 0 && !g_w.stopping)
      pthread_cond_wait(&g_w.more, &g_w.mu);
    if (g_w.len == 0 && g_w.dropped == 0)
      break; /* stopping, and everything is out */
    char *out = g_w.fill;
    size_t n = g_w.len;
    uint64_t dropped = g_w.dropped;
    g_w.fill = g_w.drain;
    g_w.drain = out;
    g_w.len = 0;
    g_w.dropped = 0;
    pthread_mutex_unlock(&g_w.mu);
    write_all(out, n);
    if (dropped > 0) {
      char note[160];
      int m = snprintf(note, sizeof(note),
                       "%s: warn: %llu log line%s dropped: stderr is not "
                       "being read fast enough\n",
                       g_prog, (unsigned long long)dropped,
                       dropped == 1 ? "" : "s");
      if (m > 0)
        write_all(note, (size_t)m < sizeof(note) ? (size_t)m : sizeof(note));
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
    if (g_w.dropped++ == 0)
      pthread_cond_signal(&g_w.more);
  }
  pthread_mutex_unlock(&g_w.mu);
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

/* The longest line before escaping; longer ones are cut. */
#define LOG_LINE_MAX 4096

/* Escapes text[0..n) and ends it with the one newline of the line: every
 * byte outside printable ASCII becomes \xHH, and so does the backslash, so
 * that nothing a peer sent (a file name, a TLS reason) can move the
 * cursor, recolour a terminal or start a line of its own that looks like
 * ours, and an escape in the log always means a byte that was escaped. */
static void emit(const char *text, size_t n) {
  char out[4 * LOG_LINE_MAX + 1];
  size_t o = 0;
  if (n > LOG_LINE_MAX)
    n = LOG_LINE_MAX;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out[o++] = (char)c;
    } else {
      log_hex_byte(c, out + o);
      o += 4;
    }
  }
  out[o++] = '\n';
  /* Whole lines only, so lines from different threads never interleave. */
  put_line(out, o);
}

void log_write(const char *line, size_t n) {
  if (n > 0 && line[n - 1] == '\n')
    n--;
  emit(line, n);
}

void log_msg(int level, const char *fmt, ...) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  char line[1024];
  va_list ap;
  int n, m;

  if (level > g_level)
    return;
  n = snprintf(line, sizeof(line), "%s: ", g_prog);
  if (level != LOG_INFO)
    n += snprintf(line + n, sizeof(line) - (size_t)n, "%s: ", names[level]);
  va_start(ap, fmt);
  m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
  va_end(ap);
  if (m < 0)
    return;
  n += m;
  if (n > (int)sizeof(line) - 1)
    n = (int)sizeof(line) - 1;
  emit(line, (size_t)n);
}
