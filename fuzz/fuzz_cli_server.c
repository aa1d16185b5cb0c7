/* libFuzzer target: sockit-server's command-line parser, through the real
 * main() with --check (nothing is bound). Usage errors must be clean exits
 * (status 2 via the hook), never crashes or sanitizer reports. */
int sockit_server_main(int argc, char **argv);
#define main sockit_server_main
#include "../programs/sockit-server/main.c"
#undef main

#include "cli_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return cli_run("sockit-server", sockit_server_main, data, size);
}
