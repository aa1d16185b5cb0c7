/* Logging for the programs (the library never prints). One line per event on
 * stderr: "PROG: [LEVEL: ]message". Safe from several threads: each line is
 * formatted whole before it is written.
 *
 * log_configure() (the server) adds the rest: an RFC 3339 time stamp in UTC
 * with milliseconds at the start of each line ("2025-01-31T12:00:00.123Z
 * sockit-server: ..."), or, when stderr is the journal (JOURNAL_STREAM
 * names stderr's device and inode, see sd-daemon(3)), a "<N>" syslog
 * priority instead of the time stamp and the program name; a JSON format
 * (one object per line: ts, level, msg, and the structured fields of
 * log_event()); and a log file in place of stderr (opened for appending,
 * reopened by log_reopen()).
 *
 * Every byte of a line outside printable ASCII (controls, DEL, bytes of
 * UTF-8 and anything else above 0x7e), and the backslash itself, is written
 * as \xHH (lower-case hex), as nginx does: callers may pass what a peer
 * sent (a file name, say) as is, and it can neither forge a line nor reach
 * the terminal as an escape sequence. Only the line's own newline ends it.
 *
 * Until log_start(), lines are written by the caller. A long-running program
 * (the server) calls log_start(): from then on a writer thread does the
 * writing, and the event loops only copy the line into a 256 KiB buffer. A
 * stderr that nobody reads (a full pipe) then stalls only the writer, never
 * a loop: lines that do not fit are dropped and counted, and the writer
 * reports the count ("N log lines dropped") once it can write again. */
#ifndef SK_LOG_H
#define SK_LOG_H

#include <stddef.h>

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_init(const char *prog, int level);

enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };
/* Before log_start(): format, file (NULL = stderr), and whether text lines
 * carry time stamps. Returns 0, or -1 with errno if the file cannot be
 * opened. */
int log_configure(int format, const char *file, int timestamps);
/* Reopens the log file (after logrotate moved it), or does nothing when
 * logging to stderr. The writer thread does the reopening; if the file
 * cannot be opened, the old one stays and a line says why. Call it from a
 * normal thread (a signalfd or sk_signal callback), not a signal handler. */
void log_reopen(void);
/* Lines dropped since the start because the output did not keep up. */
unsigned long long log_dropped_total(void);
/* Starts the writer thread (with the caller's signal mask). 0 or -1. */
int log_start(void);
/* Flushes what is buffered and ends the writer, waiting at most timeout_ms
 * for a stderr that does not drain; later lines are written directly. */
void log_stop(int timeout_ms);
/* Writes one line (n bytes, its final newline optional), escaped as
 * log_msg() escapes, through the writer once started. */
void log_write(const char *line, size_t n);
int log_level(void);

/* Text that may reach a terminal (chat's relay, sockit-client's screen).
 * log_text_char() tells how p[0..n) (n >= 1) begins: the length, 1 to 4,
 * of a character that may be shown as it is (printable ASCII, the tab, or
 * well-formed UTF-8 other than a C1 control U+0080..U+009F: no overlong
 * form, no surrogate, nothing past U+10FFFF); 0 if p[0] must be escaped;
 * -1 if p[0..n) is such a character cut short, which more bytes may
 * complete. */
int log_text_char(const unsigned char *p, size_t n);
/* Writes byte c as "\xHH" (four bytes, lower-case hex) at out. */
void log_hex_byte(unsigned char c, char *out);
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A structured field of a JSON line: a string (str != NULL, escaped as
 * JSON) or else a number. Text lines show only the message. */
struct log_field {
  const char *key;
  const char *str;
  unsigned long long num;
};
/* log_msg() with fields for --log-format json. */
void log_event(int level, const struct log_field *f, size_t nf, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)                                                          \
  do {                                                                         \
    if (log_level() >= LOG_INFO)                                               \
      log_msg(LOG_INFO, __VA_ARGS__);                                          \
  } while (0)
#define log_debug(...)                                                         \
  do {                                                                         \
    if (log_level() >= LOG_DEBUG)                                              \
      log_msg(LOG_DEBUG, __VA_ARGS__);                                         \
  } while (0)

#endif
