/* Logging for the programs (the library never prints). One line per event on
 * stderr: "PROG: [LEVEL] message". Safe from several threads: each line is
 * formatted first and written with one write(2). */
#ifndef SK_LOG_H
#define SK_LOG_H

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_init(const char *prog, int level);
int log_level(void);
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

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
