/* The load generator behind `sockit-client --bench`. */
#ifndef SK_CLIENT_BENCH_H
#define SK_CLIENT_BENCH_H

/* Parses the --bench command line (argv as given to main) and runs the
 * benchmark. Returns the exit status: 0, 1 (runtime failure) or 2 (usage). */
int bench_main(int argc, char **argv);

#endif
