/* The progress line of an upload (--file, stdin): one line on stderr,
 * redrawn in place, like curl's or pv's. It goes to stderr only, so stdout
 * carries exactly the replies whatever is shown; it is drawn with a bare
 * carriage return and padding (no terminal escape sequences), so that
 * --progress into a file or pipe stays plain text. */
#include "client.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static struct progress *g_progress; /* for progress_interrupt() */

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* "512 B", "1.5 KiB", "12.3 MiB". */
static void fmt_bytes(char *buf, size_t n, double v) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  size_t u = 0;
  while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, n, "%.0f B", v);
  else
    snprintf(buf, n, "%.1f %s", v, units[u]);
}

/* "0:07", "1:02:03". */
static void fmt_eta(char *buf, size_t n, uint64_t secs) {
  if (secs >= 3600)
    snprintf(buf, n, "%" PRIu64 ":%02u:%02u", secs / 3600,
             (unsigned)(secs / 60 % 60), (unsigned)(secs % 60));
  else
    snprintf(buf, n, "%u:%02u", (unsigned)(secs / 60), (unsigned)(secs % 60));
}

/* Writes text over the line on screen, padding out what was longer. */
static void draw(struct progress *pg, const char *text, int end_line) {
  char line[256];
  size_t len = strlen(text);
  size_t pad = pg->shown > len ? pg->shown - len : 0;
  if (pad > sizeof line - len - 3)
    pad = sizeof line - len - 3;
  int n = snprintf(line, sizeof line, "\r%s%*s%s", text, (int)pad, "",
                   end_line ? "\n" : "");
  if (n > 0 && (size_t)n < sizeof line)
    (void)!write(STDERR_FILENO, line, (size_t)n);
  pg->shown = end_line ? 0 : len;
}

void progress_start(struct progress *pg, const struct client_opts *o,
                    uint64_t total) {
  memset(pg, 0, sizeof *pg);
  if (o->interactive)
    return; /* the user is typing on that terminal */
  if (o->progress >= 0)
    pg->on = o->progress;
  else
    pg->on = isatty(STDERR_FILENO) && log_level() > LOG_ERROR;
  if (!pg->on)
    return;
  pg->clear_for_stdout = isatty(STDOUT_FILENO);
  pg->total = total;
  pg->start_ms = pg->last_ms = mono_ms();
  g_progress = pg;
}

void progress_update(struct progress *pg, uint64_t bytes) {
  if (!pg->on || pg->finished)
    return;
  uint64_t now = mono_ms();
  if (now - pg->last_ms < PROGRESS_REDRAW_MS)
    return;
  pg->last_ms = now;
  double secs = (double)(now - pg->start_ms) / 1000.0;
  double rate = secs > 0 ? (double)bytes / secs : 0;
  char done[32], all[32], speed[32], eta[32], text[160];
  fmt_bytes(done, sizeof done, (double)bytes);
  fmt_bytes(speed, sizeof speed, rate);
  if (pg->total > 0) {
    uint64_t b = bytes < pg->total ? bytes : pg->total;
    fmt_bytes(all, sizeof all, (double)pg->total);
    if (rate >= 1)
      fmt_eta(eta, sizeof eta, (uint64_t)((double)(pg->total - b) / rate));
    else
      snprintf(eta, sizeof eta, "-:--");
    snprintf(text, sizeof text, "sent %s of %s (%u%%), %s/s, ETA %s", done, all,
             (unsigned)(b * 100 / pg->total), speed, eta);
  } else {
    snprintf(text, sizeof text, "sent %s, %s/s", done, speed);
  }
  draw(pg, text, 0);
}

void progress_finish(struct progress *pg, uint64_t bytes) {
  if (!pg->on || pg->finished)
    return;
  pg->finished = 1;
  g_progress = NULL;
  if (bytes == 0 && pg->shown == 0)
    return; /* empty input: nothing worth a line */
  uint64_t ms = mono_ms() - pg->start_ms;
  double rate = (double)bytes * 1000.0 / (double)(ms > 0 ? ms : 1);
  char done[32], speed[32], text[160];
  fmt_bytes(done, sizeof done, (double)bytes);
  fmt_bytes(speed, sizeof speed, rate);
  snprintf(text, sizeof text, "sent %" PRIu64 " bytes (%s) in %.1f s, %s/s",
           bytes, done, (double)ms / 1000.0, speed);
  draw(pg, text, 1);
}

void progress_clear(struct progress *pg) {
  if (!pg->on || pg->shown == 0 || !pg->clear_for_stdout)
    return;
  draw(pg, "", 0);
  (void)!write(STDERR_FILENO, "\r", 1);
}

void progress_interrupt(void) {
  struct progress *pg = g_progress;
  if (pg == NULL || pg->shown == 0)
    return;
  (void)!write(STDERR_FILENO, "\n", 1);
  pg->shown = 0;
}
