/* sockit-client: send messages, a file or stdin to a server and print what
 * comes back.
 *
 *   sockit-client [OPTIONS] ADDR [MESSAGE...]
 *
 * This file only parses and checks the command line, then hands over to
 * one mode from the table below. Exit status: 0 success, 1 runtime failure,
 * 2 usage error; every failure prints exactly one line on stderr. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "bench.h"
#include "client.h"
#include "log.h"

#define PROG SK_PROG_NAME

/* Default for --timeout: long enough for any sane network, short enough
 * that a script waiting on a dead server gets its answer. */
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_RETRIES    3
#define MAX_RETRIES        1000

/* A mode: which invocations it serves, and what runs them. The first row
 * whose test matches wins. The load generator (--bench, bench.c) parses
 * its own options and is dispatched before these; TLS (--tls) is a
 * property of the connection, not a mode, and lives in client_connect()
 * and the I/O helpers the modes share. */
struct client_mode {
  const char *name;
  int (*serves)(const struct client_opts *o);
  int (*run)(const struct client_opts *o);
};

static int serves_udp(const struct client_opts *o) {
  return o->udp;
}

/* MESSAGEs in a framed mode are requests, each answered by one frame, so
 * they go one at a time over the synchronous API. */
static int serves_send(const struct client_opts *o) {
  return o->input == INPUT_MESSAGES && o->frame != SK_FRAME_RAW;
}

/* Everything else on a stream is the bidirectional pump: stdin, --file,
 * interactive use, and raw MESSAGEs (which, like a file, are a stream that
 * ends with a half-close). */
static int serves_pump(const struct client_opts *o) {
  (void)o;
  return 1;
}

static const struct client_mode modes[] = {
    {"udp", serves_udp, udp_run},
    {"send", serves_send, send_run},
    {"pump", serves_pump, pump_run},
};

enum {
  OPT_FILE = 256,
  OPT_MAX_FRAME,
  OPT_HEX_INPUT,
  OPT_RETRIES,
  OPT_TLS,
  OPT_CA,
  OPT_CERT,
  OPT_KEY,
  OPT_SERVERNAME,
  OPT_INSECURE,
  OPT_TLS_STRICT_CLOSE,
  OPT_PIN,
  OPT_CHECK,
  OPT_RAW,
  OPT_PROGRESS,
  OPT_NO_PROGRESS,
};

static const struct option long_options[] = {
    {"udp", no_argument, NULL, 'u'},
    {"frame", required_argument, NULL, 'f'},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"hex", no_argument, NULL, 'x'},
    {"hex-input", no_argument, NULL, OPT_HEX_INPUT},
    {"raw", no_argument, NULL, OPT_RAW},
    {"file", required_argument, NULL, OPT_FILE},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"timeout", required_argument, NULL, 't'},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"tls", no_argument, NULL, OPT_TLS},
    {"ca", required_argument, NULL, OPT_CA},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"servername", required_argument, NULL, OPT_SERVERNAME},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"tls-strict-close", no_argument, NULL, OPT_TLS_STRICT_CLOSE},
    {"pin", required_argument, NULL, OPT_PIN},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"check", no_argument, NULL, OPT_CHECK},
    {NULL, 0, NULL, 0},
};

static void usage(void) {
  printf(
      "Usage: %s [OPTIONS] ADDR [MESSAGE...]\n"
      "Send each MESSAGE (or stdin, or a file) to ADDR and print the "
      "replies.\n"
      "\n"
      "ADDR is host:port, [v6addr]:port or unix:/path; tcp://, udp:// and\n"
      "unix:// forms, as sockit-server prints them, work too. With no "
      "MESSAGE,\n"
      "stdin is sent; when stdin is a terminal the session is interactive,\n"
      "both directions at once. MESSAGE '-' means stdin.\n"
      "\n"
      "  -u, --udp              one datagram per message, one reply each\n"
      "  -f, --frame MODE       raw (default), line, len16, len32 or "
      "ascii4;\n"
      "                         must match the server\n"
      "      --max-frame BYTES  largest reply frame accepted (default 1M)\n"
      "  -x, --hex              print replies as a hex dump (like hexdump "
      "-C)\n"
      "      --hex-input        MESSAGEs and input are hex text (\"08 00\")\n"
      "      --raw              on a terminal: print control bytes as "
      "they come\n"
      "                         (default: shown as \\xHH)\n"
      "      --file PATH        send the file (len16/len32/ascii4 and UDP: "
      "as\n"
      "                         one message)\n"
      "      --progress         show the progress of a --file or stdin "
      "upload\n"
      "                         on stderr (bytes, rate, ETA) even when "
      "stderr\n"
      "                         is not a terminal\n"
      "      --no-progress      never show it (default: shown when stderr "
      "is a\n"
      "                         terminal, unless -q)\n"
      "  -t, --timeout SECONDS  connect timeout, and the longest wait for "
      "the\n"
      "                         server (default 10; 0 = no limit)\n"
      "      --retries N        UDP: resend an unanswered datagram up to N\n"
      "                         times (default 3)\n"
      "\n"
      "TLS (streams only; a tls:// ADDR implies --tls):\n"
      "      --tls              TLS 1.2/1.3; the server's certificate must "
      "chain\n"
      "                         to a trusted CA and name the host of ADDR\n"
      "      --ca FILE          trust these CAs (PEM) instead of the "
      "system's\n"
      "      --servername NAME  the name the certificate must show (default:\n"
      "                         the host part of ADDR); also sent as SNI\n"
      "      --pin SHA256       accept exactly the certificate with this "
      "SHA-256\n"
      "                         fingerprint (e.g. sockit-server "
      "--self-signed)\n"
      "      --insecure         accept any certificate (no protection "
      "against\n"
      "                         interception; a warning says so)\n"
      "      --tls-strict-close a server that ends the session without\n"
      "                         close_notify is an error (default: a warning\n"
      "                         once its replies are complete)\n"
      "      --cert FILE        our certificate, for servers that ask for "
      "one\n"
      "      --key FILE         its private key (default: in --cert)\n"
      "\n"
      "  -q, --quiet            print nothing on stderr but the error line\n"
      "  -v, --verbose          log the connection and byte counts; twice "
      "for\n"
      "                         every read and write\n"
      "      --check            check the options and MESSAGEs, send nothing\n"
      "  -h, --help             show this help and exit\n"
      "  -V, --version          show the version and exit\n"
      "\n"
      "Load generator: %s --bench ADDR [--conns N] [--size BYTES]\n"
      "  [--pipeline D] [--duration S] [--bench-mode echo|oneway|connect|"
      "idle]\n"
      "  [--interval S] [--udp] [--frame MODE] [--json]\n"
      "  (--bench --help for details)\n"
      "\n"
      "Exit status: 0 success, 1 failure (refused, timed out, ...), 2 "
      "usage error.\n"
      "A reader that closes stdout early (| head) ends the client silently "
      "by\n"
      "SIGPIPE, as it ends cat (status 141 in the shell).\n",
      PROG, PROG);
}

/* Accepts the URL forms sockit-server prints on its "listening on" line
 * (tcp://HOST:PORT, udp://HOST:PORT, unix:///path, and for TLS
 * tls://HOST:PORT and tls+unix:///path, which imply --tls), so an address
 * can be pasted from it as is. Returns the address in sockit's own text
 * form. */
static const char *strip_scheme(const char *addr, int *udp, int *tls) {
  static char unix_addr[SK_ENDPOINT_STRLEN + 8];
  if (strncmp(addr, "tcp://", 6) == 0)
    return addr + 6;
  if (strncmp(addr, "tls://", 6) == 0) {
    *tls = 1;
    return addr + 6;
  }
  if (strncmp(addr, "tls+unix://", 11) == 0) {
    *tls = 1;
    addr += 4;
  }
  if (strncmp(addr, "udp://", 6) == 0) {
    *udp = 1;
    return addr + 6;
  }
  if (strncmp(addr, "unix://", 7) == 0) {
    if (strlen(addr + 7) + 6 > sizeof unix_addr)
      cli_usage_error(PROG, "invalid address '%s': %s", addr,
                      sk_strerror(-ENAMETOOLONG));
    snprintf(unix_addr, sizeof unix_addr, "unix:%s", addr + 7);
    return unix_addr;
  }
  return addr;
}

/* 64 hex digits, with or without a colon between pairs: the form
 * `openssl x509 -fingerprint -sha256` and sockit-server print. */
static int pin_ok(const char *pin) {
  size_t digits = 0;
  for (const char *q = pin; *q != '\0'; q++) {
    if (*q == ':') {
      if (digits % 2 != 0 || q[1] == '\0' || q[1] == ':')
        return 0;
      continue;
    }
    if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
          (*q >= 'A' && *q <= 'F')))
      return 0;
    digits++;
  }
  return digits == 64;
}

/* The TLS options must make sense together; what they name is checked
 * when the context is made (runtime errors, exit 1). */
static void check_tls(const struct client_opts *o) {
  if (!o->tls) {
    if (o->ca || o->cert || o->key || o->servername || o->pin || o->insecure ||
        o->tls_strict_close)
      cli_usage_error(PROG, "--ca, --cert, --key, --servername, --pin, "
                            "--insecure and --tls-strict-close need --tls");
    return;
  }
  if (o->udp)
    cli_usage_error(PROG, "--tls works over streams, not --udp");
  if (o->insecure && o->pin)
    cli_usage_error(PROG, "--insecure and --pin exclude each other");
  if ((o->insecure || o->pin) && o->ca)
    cli_usage_error(PROG, "--ca does not apply with %s (no CA is consulted)",
                    o->insecure ? "--insecure" : "--pin");
  if (o->key && !o->cert)
    cli_usage_error(PROG, "--key needs --cert");
  if (o->pin && !pin_ok(o->pin))
    cli_usage_error(PROG,
                    "invalid --pin '%s' (expected a SHA-256 fingerprint: 64 "
                    "hex digits, colons allowed)",
                    o->pin);
  /* A Unix address has no host name for the certificate to show. */
  if (strncmp(o->addr, "unix:", 5) == 0 && !o->servername && !o->pin &&
      !o->insecure)
    cli_usage_error(PROG, "--tls over a Unix socket needs --servername NAME "
                          "(the name the certificate shows), --pin or "
                          "--insecure");
}

/* Checks the form of ADDR without resolving it, so that a typo is a usage
 * error (exit 2) and only a real lookup failure is a runtime one. */
static void check_addr(const char *addr) {
  int rc;
  if (strncmp(addr, "unix:", 5) == 0) {
    sk_endpoint ep;
    rc = sk_endpoint_parse(&ep, addr);
  } else {
    char host[1024];
    uint16_t port;
    rc = sk_endpoint_split(addr, host, sizeof host, &port);
    if (rc == 0 && host[0] == '\0')
      rc = SK_EBADADDR;
  }
  if (rc < 0)
    cli_usage_error(PROG, "invalid address '%s': %s", addr, sk_strerror(rc));
}

/* Turns the MESSAGE arguments into byte strings (decoding hex if asked)
 * and checks each against what the chosen framing can carry. */
static struct message *prepare_messages(char **args, size_t n,
                                        const struct client_opts *o) {
  struct message *msgs = calloc(n ? n : 1, sizeof *msgs);
  if (msgs == NULL)
    cli_fatal(PROG, 1, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const char *arg = args[i];
    size_t len = strlen(arg);
    if (o->hex_input) {
      unsigned char *bin = malloc(len / 2 + 1);
      struct hexdecoder d;
      size_t binlen, bad;
      if (bin == NULL)
        cli_fatal(PROG, 1, "out of memory");
      hexdecoder_init(&d);
      if (hexdecoder_feed(&d, arg, len, bin, &binlen, &bad) < 0)
        cli_usage_error(PROG, "MESSAGE %zu is not hex: unexpected '%c'", i + 1,
                        arg[bad]);
      if (hexdecoder_finish(&d) < 0)
        cli_usage_error(PROG, "MESSAGE %zu is not hex: odd number of digits",
                        i + 1);
      msgs[i].data = bin;
      msgs[i].len = binlen;
    } else {
      msgs[i].data = (const unsigned char *)arg;
      msgs[i].len = len;
    }
    if (o->udp && msgs[i].len > CLIENT_UDP_MAX)
      cli_usage_error(PROG,
                      "MESSAGE %zu is %zu bytes; a UDP datagram holds at "
                      "most %d",
                      i + 1, msgs[i].len, CLIENT_UDP_MAX);
    if (!o->udp && msgs[i].len > sk_frame_mode_limit(o->frame))
      cli_usage_error(PROG,
                      "MESSAGE %zu is %zu bytes; a %s frame holds at most "
                      "%zu",
                      i + 1, msgs[i].len, sk_frame_mode_name(o->frame),
                      sk_frame_mode_limit(o->frame));
    if (!o->udp && o->frame == SK_FRAME_LINE &&
        memchr(msgs[i].data, '\n', msgs[i].len) != NULL)
      cli_usage_error(PROG,
                      "MESSAGE %zu contains a newline; with --frame line "
                      "each MESSAGE is one line",
                      i + 1);
  }
  return msgs;
}

static void free_messages(struct message *msgs, size_t n, int decoded) {
  if (msgs == NULL)
    return;
  /* Decoded MESSAGEs live in buffers of their own; the others point into
   * argv. */
  for (size_t i = 0; decoded && i < n; i++)
    free((void *)msgs[i].data);
  free(msgs);
}

int main(int argc, char **argv) {
  /* Writing to a socket the peer has closed must be an error we report,
   * not a signal that kills us silently; the same holds for stdout. */
  signal(SIGPIPE, SIG_IGN);

  /* --bench is a program of its own (a load generator) with its own
   * options; it takes the command line whole. */
  for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
    if (strcmp(argv[i], "--bench") == 0)
      return bench_main(argc, argv);

  struct client_opts o;
  memset(&o, 0, sizeof o);
  o.frame = SK_FRAME_RAW;
  o.max_frame = SK_FRAME_MAX_DEFAULT;
  o.timeout_ms = DEFAULT_TIMEOUT_MS;
  o.retries = DEFAULT_RETRIES;
  o.progress = -1;
  int verbose = 0, quiet = 0, check_only = 0;
  uint64_t v;
  struct message *msgs = NULL;

  opterr = 0; /* getopt's own messages do not follow our one-line rule */
  int c;
  while ((c = getopt_long(argc, argv, ":uf:xt:qvhV", long_options, NULL)) !=
         -1) {
    switch (c) {
    case 'u':
      o.udp = 1;
      break;
    case 'f':
      if (sk_frame_mode_parse(optarg, &o.frame) < 0)
        cli_usage_error(PROG,
                        "invalid --frame '%s' (expected raw, line, len16, "
                        "len32 or ascii4)",
                        optarg);
      break;
    case OPT_MAX_FRAME:
      if (cli_parse_size(optarg, 0, UINT32_MAX, &v) < 0)
        cli_usage_error(PROG,
                        "invalid --max-frame '%s' (expected a byte count "
                        "up to 4G, e.g. 65536 or 1M)",
                        optarg);
      o.max_frame = (size_t)v;
      break;
    case 'x':
      o.hex = 1;
      break;
    case OPT_HEX_INPUT:
      o.hex_input = 1;
      break;
    case OPT_RAW:
      o.raw = 1;
      break;
    case OPT_FILE:
      o.file = optarg;
      break;
    case OPT_PROGRESS:
      o.progress = 1;
      break;
    case OPT_NO_PROGRESS:
      o.progress = 0;
      break;
    case 't':
      if (cli_parse_duration_ms(optarg, 0, INT32_MAX, &v) < 0)
        cli_usage_error(PROG,
                        "invalid --timeout '%s' (expected seconds, e.g. 10 "
                        "or 0.5; 0 = no limit)",
                        optarg);
      o.timeout_ms = v == 0 ? -1 : (int)v;
      break;
    case OPT_TLS:
      o.tls = 1;
      break;
    case OPT_CA:
      o.ca = optarg;
      break;
    case OPT_CERT:
      o.cert = optarg;
      break;
    case OPT_KEY:
      o.key = optarg;
      break;
    case OPT_SERVERNAME:
      if (optarg[0] == '\0')
        cli_usage_error(PROG, "--servername needs a name");
      o.servername = optarg;
      break;
    case OPT_INSECURE:
      o.insecure = 1;
      break;
    case OPT_TLS_STRICT_CLOSE:
      o.tls_strict_close = 1;
      break;
    case OPT_PIN:
      o.pin = optarg;
      break;
    case OPT_RETRIES:
      if (cli_parse_u64(optarg, 0, MAX_RETRIES, &v) < 0)
        cli_usage_error(PROG, "invalid --retries '%s' (expected 0 to %d)",
                        optarg, MAX_RETRIES);
      o.retries = (unsigned)v;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'v':
      verbose++;
      break;
    case 'h':
      usage();
      return 0;
    case OPT_CHECK:
      check_only = 1;
      break;
    case 'V':
      printf("%s %s (libsockit %s)\n", PROG, SK_VERSION_STRING, sk_version());
      return 0;
    case ':':
      cli_usage_error(PROG, "option '%s' needs a value", argv[optind - 1]);
    default:
      if (optopt != 0)
        cli_usage_error(PROG, "unknown option '-%c'", optopt);
      cli_usage_error(PROG, "unknown option '%s'", argv[optind - 1]);
    }
  }

  int level = LOG_WARN;
  if (quiet)
    level = LOG_ERROR;
  else if (verbose == 1)
    level = LOG_INFO;
  else if (verbose > 1)
    level = LOG_DEBUG;
  log_init(PROG, level);

  if (optind >= argc)
    cli_usage_error(PROG, "missing ADDR");
  o.addr = strip_scheme(argv[optind++], &o.udp, &o.tls);
  check_addr(o.addr);
  check_tls(&o);

  char **args = argv + optind;
  size_t nargs = (size_t)(argc - optind);
  int dash = 0;
  for (size_t i = 0; i < nargs; i++)
    dash += strcmp(args[i], "-") == 0;
  if (o.file != NULL && nargs > 0)
    cli_usage_error(PROG, "--file cannot be combined with MESSAGE arguments");
  if (dash > 0 && nargs > 1)
    cli_usage_error(PROG, "'-' (stdin) cannot be combined with other "
                          "MESSAGE arguments");
  if (o.udp && o.frame != SK_FRAME_RAW)
    cli_usage_error(PROG, "--frame does not apply to --udp (every datagram "
                          "is one message)");
  if (o.file != NULL && strcmp(o.file, "-") == 0) {
    o.file = NULL;
    dash = 1;
  }

  if (o.file != NULL) {
    o.input = INPUT_FILE;
  } else if (nargs == 0 || dash) {
    o.input = INPUT_STDIN;
    o.interactive = isatty(STDIN_FILENO);
  } else {
    o.input = INPUT_MESSAGES;
    msgs = prepare_messages(args, nargs, &o);
    o.msgs = msgs;
    o.nmsgs = nargs;
  }
  /* A person reads what reaches a terminal, interactive session or not:
   * what the server sends must not drive that terminal (escape sequences
   * retitle windows, set the clipboard, rewrite the screen). Pipes and
   * files get the bytes exactly, as does the terminal with --raw. */
  if (!o.raw && !o.hex && isatty(STDOUT_FILENO))
    output_escape_terminal(1);
  if (o.input == INPUT_FILE && o.hex_input && !o.udp &&
      o.frame != SK_FRAME_RAW && o.frame != SK_FRAME_LINE)
    cli_usage_error(PROG,
                    "--hex-input cannot be combined with --file in %s "
                    "mode (the file is sent as one binary frame)",
                    sk_frame_mode_name(o.frame));

  int status = 1;
  if (check_only) {
    /* The options and MESSAGEs are valid; nothing is sent. */
    free_messages(msgs, o.nmsgs, o.hex_input);
    return 0;
  }
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
    if (modes[i].serves(&o)) {
      log_debug("mode %s, frame %s", modes[i].name,
                sk_frame_mode_name(o.frame));
      status = modes[i].run(&o);
      break;
    }
  }
  free_messages(msgs, o.nmsgs, o.hex_input);
  return status;
}
