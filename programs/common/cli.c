#include "cli.h"

#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <unistd.h>

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  char *end;
  unsigned long long v;
  if (s == NULL || !isdigit((unsigned char)s[0]))
    return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

int cli_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  char *end;
  unsigned long long v;
  uint64_t mul = 1;
  if (s == NULL || !isdigit((unsigned char)s[0]))
    return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0)
    return -1;
  switch (toupper((unsigned char)*end)) {
  case 'K':
    mul = 1024ull;
    end++;
    break;
  case 'M':
    mul = 1024ull * 1024;
    end++;
    break;
  case 'G':
    mul = 1024ull * 1024 * 1024;
    end++;
    break;
  default:
    break;
  }
  if (mul > 1 && (*end == 'i' || *end == 'I'))
    end++;
  if (*end == 'b' || *end == 'B')
    end++;
  if (*end != '\0' || v > UINT64_MAX / mul)
    return -1;
  v *= mul;
  if (v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

int cli_parse_duration_ms(const char *s, uint64_t min_ms, uint64_t max_ms,
                          uint64_t *out_ms) {
  char *end;
  double v;
  if (s == NULL || !(isdigit((unsigned char)s[0]) || s[0] == '.'))
    return -1;
  errno = 0;
  v = strtod(s, &end);
  if (errno != 0 || !isfinite(v) || v < 0)
    return -1;
  if (strcasecmp(end, "ms") == 0)
    v /= 1000.0;
  else if (*end == 's' && end[1] == '\0')
    ;
  else if (*end != '\0')
    return -1;
  v *= 1000.0;
  if (v < (double)min_ms || v > (double)max_ms)
    return -1;
  *out_ms = (uint64_t)llround(v);
  return 0;
}

static void (*exit_hook)(int status);

void cli_set_exit_hook(void (*hook)(int status)) {
  exit_hook = hook;
}

static _Noreturn void leave(int status) {
  if (exit_hook != NULL)
    exit_hook(status); /* must not return: it longjmps */
  exit(status);
}

void cli_usage_error(const char *prog, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
  leave(2);
}

void cli_fatal(const char *prog, int status, const char *fmt, ...) {
  va_list ap;
  log_stop(1000); /* the lines logged before come first */
  fprintf(stderr, "%s: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  leave(status);
}

int cli_check_readable(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return -errno;
  close(fd);
  return 0;
}
