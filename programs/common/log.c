#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *g_prog = "sockit";
static int g_level = LOG_INFO;

void log_init(const char *prog, int level) {
  g_prog = prog;
  g_level = level;
}

int log_level(void) {
  return g_level;
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
  if (n > (int)sizeof(line) - 2)
    n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  /* One write per line keeps lines from different threads whole. */
  const char *p = line;
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, p, (size_t)n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    p += w;
    n -= (int)w;
  }
}
