/* libFuzzer target: sockit-client's command-line parser, through the real
 * main() with --check (nothing is sent). */
int sockit_client_main(int argc, char **argv);
#define main sockit_client_main
#include "../programs/sockit-client/main.c"
#undef main

#include "cli_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return cli_run("sockit-client", sockit_client_main, data, size);
}
