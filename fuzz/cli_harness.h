/* Shared by the command-line fuzz targets: turns the input into argv (NUL
 * separated arguments), skips inputs that would print help or start real
 * work, and runs the program's main() with --check first, with usage errors
 * returning here through the exit hook instead of ending the process. */
#ifndef SK_FUZZ_CLI_HARNESS_H
#define SK_FUZZ_CLI_HARNESS_H

#include <getopt.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static jmp_buf cli_jb;

static void cli_hook(int status) {
  longjmp(cli_jb, status + 1);
}

/* Options that print and exit(0), or do real work: not for the fuzzer. A
 * long option may be abbreviated, so any prefix of these counts. */
static int cli_unwanted(const char *a) {
  static const char *const banned[] = {"--help", "--version", "--bench"};
  if (a[0] == '-' && a[1] != '-' && a[1] != '\0')
    return strchr(a, 'h') != NULL || strchr(a, 'V') != NULL;
  if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
    return 0;
  size_t n = strcspn(a, "=");
  for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++)
    if (n <= strlen(banned[i]) && strncmp(a, banned[i], n) == 0)
      return 1;
  return 0;
}

static int cli_run(const char *prog, int (*entry)(int, char **),
                   const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  char *argv[40];
  int argc = 0;
  if (buf == NULL)
    return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  argv[argc++] = (char *)prog;
  /* First, so that a "--" in the input cannot turn it into a MESSAGE. */
  argv[argc++] = (char *)"--check";
  for (char *p = buf; p < buf + size && argc < 37; p += strlen(p) + 1) {
    if (cli_unwanted(p)) {
      free(buf);
      return 0;
    }
    argv[argc++] = p;
  }
  argv[argc] = NULL;
  optind = 0; /* glibc: a full reset of getopt's state */
  cli_set_exit_hook(cli_hook);
  if (setjmp(cli_jb) == 0)
    entry(argc, argv);
  free(buf);
  return 0;
}

#endif
