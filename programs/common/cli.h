/* Command-line helpers shared by sockit-server and sockit-client: numbers
 * with range checks (never atoi), sizes with K/M/G suffixes, durations, and
 * the one-line usage error that exits 2. */
#ifndef SK_CLI_H
#define SK_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Parses a decimal integer in [min, max]. Rejects empty text, signs where
 * min >= 0, trailing characters and overflow. Returns 0 or -1. */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a byte count: digits with an optional K, M or G suffix (powers of
 * 1024, case-insensitive, optional trailing "B" or "iB"). Returns 0 or -1. */
int cli_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a duration in seconds, fractional allowed ("0.5"), or with an
 * "ms" suffix. Stores milliseconds. Returns 0 or -1. */
int cli_parse_duration_ms(const char *s, uint64_t min_ms, uint64_t max_ms,
                          uint64_t *out_ms);

/* Fuzz targets replace exit() with a hook that returns to the harness
 * (longjmp), so a parser's usage error ends one input, not the process.
 * NULL restores exit(). The hook must not return. */
void cli_set_exit_hook(void (*hook)(int status));

/* Prints "PROG: message" and "Try 'PROG --help'." on stderr, exits 2. */
void cli_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* Prints "PROG: message" on stderr and exits with status. */
void cli_fatal(const char *prog, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* Opens path for reading and closes it again, so that a missing or
 * unreadable file (--ca, --cert, --key) is named with the errno text
 * before a library reports it in its own words. Returns 0 or a negative
 * errno. */
int cli_check_readable(const char *path);

#endif
