/* sockit-server: options, the TLS context, signals, and starting and
 * stopping the workers. Connections, framing, listeners and workers each
 * have their file (server.h); each mode is one file and one row of the
 * table in modes.c, and nothing here names a mode. */
#include "server.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "forward.h"
#include "log.h"

#define PROG          SK_PROG_NAME
#define DEFAULT_ADDR  "127.0.0.1:8888"
#define MAX_LISTENERS 64
#define MAX_WORKERS   1024
/* Descriptors kept free for listeners, loops, logging and the like when
 * --max-conns is capped by RLIMIT_NOFILE. */
#define FD_MARGIN 64

enum {
  OPT_MAX_FRAME = 256,
  OPT_MAX_CONNS,
  OPT_MAX_QUEUE,
  OPT_IDLE,
  OPT_FRAME_TIMEOUT,
  OPT_CHECK,
  OPT_GRACE,
  OPT_TLS,
  OPT_CERT,
  OPT_KEY,
  OPT_CLIENT_CA,
  OPT_SELF_SIGNED,
  OPT_HS_TIMEOUT,
  OPT_UDP_RATE,
  OPT_UDP_BURST,
  OPT_LOG_FORMAT,
  OPT_LOG_FILE,
  OPT_METRICS,
  OPT_PROXY_PROTOCOL,
  OPT_MODE_FIRST, /* the modes' own options, OPT_MODE_FIRST + k */
};

/* The mode-only options of the table (struct mode_option), at most this
 * many names in all, given at most MAX_MODE_OPTION_USES times in all (some
 * repeat: --to). */
#define MAX_MODE_OPTIONS     32
#define MAX_MODE_OPTION_USES 256

/* One mode-only option as given: the k-th name (mode_opt_names) and its
 * value ("1" for a flag). */
struct mode_opt_use {
  size_t k;
  const char *value;
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, 'l'},
    {"udp", no_argument, NULL, 'u'},
    {"mode", required_argument, NULL, 'm'},
    {"frame", required_argument, NULL, 'f'},
    {"workers", required_argument, NULL, 'w'},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"frame-timeout", required_argument, NULL, OPT_FRAME_TIMEOUT},
    {"grace", required_argument, NULL, OPT_GRACE},
    {"tls", no_argument, NULL, OPT_TLS},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"client-ca", required_argument, NULL, OPT_CLIENT_CA},
    {"self-signed", no_argument, NULL, OPT_SELF_SIGNED},
    {"handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT},
    {"udp-rate", required_argument, NULL, OPT_UDP_RATE},
    {"udp-burst", required_argument, NULL, OPT_UDP_BURST},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-file", required_argument, NULL, OPT_LOG_FILE},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"check", no_argument, NULL, OPT_CHECK},
    {NULL, 0, NULL, 0},
};

/* Every name of a mode-only option in the table, once each ("--root");
 * getopt gives the k-th as OPT_MODE_FIRST + k. */
static const char *mode_opt_names[MAX_MODE_OPTIONS];
static size_t nmode_opts;

/* long_opts followed by the modes' own options, for getopt_long. */
static const struct option *all_options(void) {
  static struct option
      all[sizeof(long_opts) / sizeof(long_opts[0]) + MAX_MODE_OPTIONS];
  size_t n = sizeof(long_opts) / sizeof(long_opts[0]) - 1;
  memcpy(all, long_opts, n * sizeof(all[0]));
  nmode_opts = 0;
  for (size_t i = 0; i < nmodes; i++)
    for (const struct mode_option *o = modes[i]->options;
         o != NULL && o->name != NULL; o++) {
      size_t k = 0;
      while (k < nmode_opts && strcmp(mode_opt_names[k], o->name) != 0)
        k++;
      if (k < nmode_opts)
        continue; /* another mode has one of the same name */
      if (k == MAX_MODE_OPTIONS)
        cli_fatal(PROG, 1, "more than %d mode options", MAX_MODE_OPTIONS);
      mode_opt_names[nmode_opts++] = o->name;
      /* An option without a value (arg NULL) is a flag. */
      all[n++] = (struct option){
          o->name + 2, o->arg != NULL ? required_argument : no_argument, NULL,
          OPT_MODE_FIRST + (int)k};
    }
  all[n] = (struct option){NULL, 0, NULL, 0};
  return all;
}

/* The modes' own options, given or not: each option of mode m is set to
 * its default, then parse() sees every value given, in command-line order
 * (a repeatable option such as --to keeps each one; others keep the
 * last); an option given to a mode that does not take it is an error.
 * given[0..ngiven) are the options as given. */
static void apply_mode_options(const struct mode *m,
                               const struct mode_opt_use *given,
                               size_t ngiven) {
  for (size_t i = 0; i < ngiven; i++) {
    char names[256];
    if (mode_option(m, mode_opt_names[given[i].k]) != NULL)
      continue;
    mode_names_taking(names, sizeof(names), mode_opt_names[given[i].k]);
    cli_usage_error(PROG, "%s applies only to --mode %s",
                    mode_opt_names[given[i].k], names);
  }
  if (m->reset_options != NULL)
    m->reset_options();
  for (const struct mode_option *o = m->options; o != NULL && o->name != NULL;
       o++) {
    const char *why;
    if (o->def != NULL && (why = o->parse(o->def)) != NULL)
      cli_fatal(PROG, 1, "%s: bad default '%s': %s", o->name, o->def, why);
  }
  for (size_t i = 0; i < ngiven; i++) {
    const struct mode_option *o = mode_option(m, mode_opt_names[given[i].k]);
    const char *why = o->parse(given[i].value);
    if (why != NULL && o->arg == NULL)
      cli_usage_error(PROG, "%s: %s", o->name, why);
    if (why != NULL)
      cli_usage_error(PROG, "%s: '%s' %s", o->name, given[i].value, why);
  }
}

static void usage(void) {
  char names[256];
  mode_names(names, sizeof(names), " (default)");
  printf(
      "Usage: %s [OPTIONS]\n"
      "A fast, safe multi-client server: echo (RFC 862), discard, chargen,\n"
      "chat, file transfer and forwarding (TLS on either side) over TCP,\n"
      "Unix sockets and UDP.\n"
      "With no options: TCP echo on " DEFAULT_ADDR ".\n"
      "\n"
      "Listening:\n"
      "  -l, --listen ADDR      listen on ADDR (repeatable): 127.0.0.1:8888,\n"
      "                         [::1]:0, unix:/path, unix:@abstract,\n"
      "                         tcp://HOST:PORT, udp://HOST:PORT; port 0\n"
      "                         lets the kernel choose\n"
      "  -u, --udp              HOST:PORT listeners are UDP (RFC 862 style)\n"
      "  -w, --workers N        event loops, one thread each (default: one\n"
      "                         per online CPU; chat always uses one)\n"
      "\n"
      "What to serve:\n"
      "  -m, --mode MODE        %s\n"
      "  -f, --frame FRAME      raw (default), line, len16, len32, ascii4\n",
      PROG, names);
  /* The modes' own options, from the table. */
  for (size_t i = 0; i < nmodes; i++)
    for (const struct mode_option *o = modes[i]->options;
         o != NULL && o->name != NULL; o++) {
      char opt[64];
      snprintf(opt, sizeof(opt), "%s%s%s", o->name, o->arg != NULL ? " " : "",
               o->arg != NULL ? o->arg : "");
      /* A long option name gets a line of its own. */
      printf("      %-18s%s %s%s: %s%s%s%s\n", opt,
             strlen(opt) > 18 ? "\n" : "",
             strlen(opt) > 18 ? "                        " : "", modes[i]->name,
             o->help, o->def != NULL ? " (default: " : "",
             o->def != NULL ? o->def : "", o->def != NULL ? ")" : "");
    }
  printf(
      "\n"
      "TLS (stream listeners; the readiness line shows them as tls://):\n"
      "      --tls              serve TLS 1.2/1.3 on every TCP and Unix "
      "listener\n"
      "      --cert FILE        certificate chain (PEM, leaf first); repeat "
      "for SNI:\n"
      "                         each client gets the one naming the host it "
      "asks\n"
      "                         for, the first is the default\n"
      "      --key FILE         its private key (default: in --cert); one "
      "per --cert,\n"
      "                         paired in order\n"
      "      --client-ca FILE   require client certificates signed by these "
      "CAs\n"
      "      --self-signed      make a throwaway key and certificate in "
      "memory;\n"
      "                         its SHA-256 fingerprint (for sockit-client "
      "--pin)\n"
      "                         is printed before the readiness line\n"
      "      --handshake-timeout S  close connections whose handshake is "
      "not\n"
      "                         done after S seconds (default 10; 0 = "
      "never)\n"
      "\n"
      "Behind a load balancer (stream listeners, not UDP):\n"
      "      --proxy-protocol   every connection must start with a PROXY "
      "protocol\n"
      "                         header (v1 or v2: HAProxy send-proxy, nginx\n"
      "                         proxy_protocol); its client address replaces "
      "the\n"
      "                         TCP peer; read before TLS, within "
      "--frame-timeout\n"
      "\n"
      "Limits:\n"
      "      --max-frame BYTES  largest frame (default 1M); bigger closes\n"
      "                         that connection\n"
      "      --max-conns N      open connections (default 10000); more are\n"
      "                         accepted and closed at once\n"
      "      --max-queue BYTES  output queued per connection before reading\n"
      "                         from it pauses (default 1M)\n"
      "      --idle-timeout S   close connections silent this long (default\n"
      "                         300; 0 = never)\n"
      "      --frame-timeout S  close a connection whose frame is not "
      "complete\n"
      "                         this long after it began (default 30; 0 =\n"
      "                         never; not for raw, but it bounds a PROXY\n"
      "                         header too)\n"
      "      --grace S          on SIGINT/SIGTERM, time given to finish\n"
      "                         (default 5)\n"
      "      --udp-rate N       UDP replies per second to one source address\n"
      "                         (default 1000; 0 = no limit, and forward\n"
      "                         then lifts the byte budget too)\n"
      "      --udp-burst N      UDP replies one source may get at once\n"
      "                         (default 100); a source is never sent more\n"
      "                         bytes than it sent, plus 2 KiB\n"
      "\n"
      "Output:\n"
      "  -q, --quiet            log errors only\n"
      "  -v, --verbose          log debug messages too, and a line per "
      "message\n"
      "                         (by default: one line per connection "
      "opened\n"
      "                         and one per connection closed)\n"
      "      --log-format FMT   text (default) or json (one object per "
      "line)\n"
      "      --log-file PATH    append the log to PATH instead of stderr\n"
      "                         (reopened on SIGHUP)\n"
      "      --metrics ADDR     serve Prometheus metrics on "
      "http://ADDR/metrics\n"
      "                         (e.g. 127.0.0.1:9100; port 0 = any)\n"
      "      --check            check the options (and certificates, root)\n"
      "                         and exit without listening\n"
      "  -h, --help             show this help\n"
      "  -V, --version          show the version\n"
      "\n"
      "Modes:\n");
  /* From the table; the transports are named when UDP is one of them. */
  for (size_t i = 0; i < nmodes; i++) {
    char t[64];
    mode_transports(modes[i], t, sizeof(t));
    printf("  %-9s %s%s%s%s\n", modes[i]->name, modes[i]->summary,
           (modes[i]->transports & MODE_UDP) ? " (" : "",
           (modes[i]->transports & MODE_UDP) ? t : "",
           (modes[i]->transports & MODE_UDP) ? ")" : "");
  }
  printf("\nSizes take K, M, G suffixes; times are seconds (\"0.5\", "
         "\"250ms\").\n"
         "When every listener is bound, one line containing \"listening on\"\n"
         "and each address is printed on stderr. See sockit-server(1).\n");
}

/* Only text with a letter in its host part can be a name; "300.1.1.1:80"
 * is a bad address, not something to ask DNS about. */
static int looks_like_name(const char *text) {
  const char *colon = strrchr(text, ':');
  for (const char *p = text; *p != '\0' && p != colon; p++)
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
      return text[0] != '[';
  return 0;
}

static int parse_endpoint(const char *text, int socktype, sk_endpoint *ep) {
  int rc = sk_endpoint_parse(ep, text);
  if (rc == SK_EBADADDR && looks_like_name(text)) {
    /* Not a numeric address: try it as a host name ("localhost:0"). */
    sk_endpoint eps[1];
    int n = sk_endpoint_resolve(text, AF_UNSPEC, socktype, eps, 1);
    if (n >= 1) {
      *ep = eps[0];
      return 0;
    }
  }
  return rc;
}

/* -l ADDR: "HOST:PORT" (TCP, or UDP with --udp), "tcp://HOST:PORT",
 * "udp://HOST:PORT", "unix:/path", "unix:@name", "unix:///path". */
static void parse_listen(struct listen_spec *sp, const char *text, int udp) {
  const char *rest = text;
  int kind = udp ? LISTEN_UDP : LISTEN_TCP;
  int explicit_kind = 0;
  int rc;

  memset(sp, 0, sizeof(*sp));
  sp->text = text;
  if (strncmp(text, "tcp://", 6) == 0) {
    kind = LISTEN_TCP;
    rest = text + 6;
    explicit_kind = 1;
  } else if (strncmp(text, "udp://", 6) == 0) {
    kind = LISTEN_UDP;
    rest = text + 6;
    explicit_kind = 1;
  }
  if (strncmp(rest, "unix:", 5) == 0) {
    char path[sizeof(sp->ep.u.un.sun_path) + 8];
    if (explicit_kind || udp)
      cli_usage_error(PROG,
                      "%s: Unix listeners are stream sockets only (no "
                      "tcp://, udp:// or --udp)",
                      text);
    /* unix:///path is the form the readiness line prints. */
    snprintf(path, sizeof(path), "unix:%s",
             strncmp(rest, "unix://", 7) == 0 ? rest + 7 : rest + 5);
    rc = sk_endpoint_parse(&sp->ep, path);
    kind = LISTEN_UNIX;
  } else {
    rc = parse_endpoint(rest, kind == LISTEN_UDP ? SOCK_DGRAM : SOCK_STREAM,
                        &sp->ep);
  }
  if (rc < 0)
    cli_usage_error(PROG, "bad listen address '%s': %s", text, sk_strerror(rc));
  sp->kind = kind;
}

static void parse_size_opt(const char *opt, const char *arg, uint64_t min,
                           uint64_t max, uint64_t *out) {
  if (cli_parse_size(arg, min, max, out) < 0)
    cli_usage_error(PROG, "%s: '%s' is not a size in %llu..%llu bytes", opt,
                    arg, (unsigned long long)min, (unsigned long long)max);
}

static void parse_secs_opt(const char *opt, const char *arg, uint64_t max_ms,
                           uint64_t *out) {
  if (cli_parse_duration_ms(arg, 0, max_ms, out) < 0)
    cli_usage_error(PROG, "%s: '%s' is not a time in seconds (0..%llu)", opt,
                    arg, (unsigned long long)(max_ms / 1000));
}

/* --cert and --key may be repeated (SNI): the i-th --key goes with the i-th
 * --cert. They live for the whole run, since SIGHUP reloads from them. */
static const char *cert_args[SK_TLS_MAX_CERTS], *key_args[SK_TLS_MAX_CERTS];
static size_t ncert_args, nkey_args;
static sk_tls_cert_file sni_certs[SK_TLS_MAX_CERTS];

/* The TLS options must make sense together, and TLS needs streams. */
static void check_tls_options(const struct server_config *cfg, int tls,
                              const char *cert, const char *key,
                              const char *client_ca, int self_signed,
                              int hs_given) {
  if (!tls) {
    if (cert != NULL || key != NULL || client_ca != NULL || self_signed ||
        hs_given)
      cli_usage_error(PROG, "--cert, --key, --client-ca, --self-signed and "
                            "--handshake-timeout need --tls");
    return;
  }
  if (self_signed && (cert != NULL || key != NULL))
    cli_usage_error(PROG, "--self-signed makes its own certificate; it "
                          "excludes --cert and --key");
  if (!self_signed && cert == NULL)
    cli_usage_error(PROG, "--tls needs --cert FILE (and --key FILE), or "
                          "--self-signed");
  if (key != NULL && cert == NULL)
    cli_usage_error(PROG, "--key needs --cert");
  if (nkey_args > 0 && nkey_args != ncert_args)
    cli_usage_error(PROG,
                    "%zu --cert and %zu --key: give one --key per "
                    "--cert (paired in order), or none when the keys "
                    "are in the --cert files",
                    ncert_args, nkey_args);
  /* DTLS is another protocol; a UDP listener would silently stay plain
   * next to TLS ones, so it is refused instead. */
  for (size_t i = 0; i < cfg->nspecs; i++)
    if (cfg->specs[i].kind == LISTEN_UDP)
      cli_usage_error(PROG,
                      "--tls works over TCP and Unix streams; %s is a UDP "
                      "listener",
                      cfg->specs[i].text);
}

/* An expired certificate (or one not valid yet) still loads, since a server
 * may have no other; clients will refuse it, so say so. */
static void warn_cert_dates(const sk_tls_ctx *ctx, size_t n) {
  time_t now = time(NULL);
  for (size_t i = 0; i < n; i++) {
    sk_tls_cert c;
    char when[32];
    struct tm tm;
    if (sk_tls_ctx_cert(ctx, i, &c) != 0)
      continue;
    if (c.not_after < now || c.not_before > now) {
      time_t t = c.not_after < now ? c.not_after : c.not_before;
      strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
      log_warn("TLS certificate %s (%s) %s %s: clients will refuse it",
               cert_args[i], c.subject,
               c.not_after < now ? "expired on" : "is not valid before", when);
    }
    sk_tls_cert_free(&c);
  }
}

/* Loads the certificates (or makes the self-signed one) once, before
 * anything listens: a bad file is an error at start, not at the first
 * client. A self-signed certificate's fingerprint is printed whatever the
 * log level, before the readiness line, since clients need it to --pin. */
static void make_tls_context(struct server *srv, const char *cert,
                             const char *key, const char *client_ca,
                             int self_signed) {
  struct server_config *cfg = &srv->cfg;
  sk_tls_options to;
  char fp[SK_TLS_FINGERPRINT_LEN];
  int rc;
  /* A file that cannot be opened is named with the reason before the
   * library reports it in its own words. */
  const char *files[][2] = {{cert, "certificate"},
                            {key, "private key"},
                            {client_ca, "CA certificates"}};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
    if (files[i][0] != NULL && (rc = cli_check_readable(files[i][0])) < 0)
      cli_fatal(PROG, 1, "TLS: cannot load %s: cannot read %s: %s", files[i][1],
                files[i][0], sk_strerror(rc));

  memset(&to, 0, sizeof(to));
  to.server = 1;
  to.cert_file = cert;
  to.key_file = key;
  /* More pairs: chosen by the name a client asks for (SNI). */
  for (size_t i = 1; i < ncert_args; i++) {
    sni_certs[i - 1].cert_file = cert_args[i];
    sni_certs[i - 1].key_file = nkey_args > 0 ? key_args[i] : NULL;
  }
  to.more_certs = sni_certs;
  to.more_certs_count = ncert_args > 1 ? ncert_args - 1 : 0;
  to.ca_file = client_ca;
  to.require_client_cert = client_ca != NULL;
  to.self_signed = self_signed;
  /* The library reads 0 as its default and a negative value as never. */
  to.handshake_timeout_ms = cfg->hs_ms == 0 ? -1 : (int)cfg->hs_ms;
  rc = sk_tls_ctx_new(&cfg->tls, &to);
  if (rc < 0)
    cli_fatal(PROG, 1, "TLS: %s",
              sk_tls_last_error()[0] != '\0' ? sk_tls_last_error()
                                             : sk_strerror(rc));
  if (sk_tls_ctx_fingerprint(cfg->tls, fp, sizeof(fp)) == 0) {
    if (self_signed)
      fprintf(stderr, "%s: TLS certificate SHA-256 fingerprint %s\n", PROG, fp);
    else
      log_info("TLS certificate SHA-256 fingerprint %s", fp);
  }
  warn_cert_dates(cfg->tls, ncert_args);
  srv->tls_opts = to; /* SIGHUP makes a new context from them */
}

/* Raises the soft descriptor limit to the hard one and keeps --max-conns
 * below what the process can actually open. */
static void fit_max_conns(struct server_config *cfg, int conns_given) {
  struct rlimit rl;
  uint64_t room, per_conn;
  int has[2] = {0, 0}; /* a stream listener, a UDP listener */
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return;
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
      rl.rlim_cur = old;
  }
  if (rl.rlim_cur == RLIM_INFINITY)
    return;
  /* Descriptors one connection may hold at once (the mode says), counted
   * only with a stream listener; plus, for forward with a UDP listener,
   * those of a UDP session, capped at the same number apart. */
  per_conn = 0;
  for (size_t i = 0; i < cfg->nspecs; i++)
    has[cfg->specs[i].kind == LISTEN_UDP] = 1;
  if (has[0])
    per_conn += cfg->mode->fds_per_conn > 0 ? cfg->mode->fds_per_conn : 1;
  if (has[1] && cfg->mode == &mode_forward)
    per_conn += FORWARD_FDS_PER_SESSION;
  if (per_conn == 0)
    per_conn = 1;
  room = (uint64_t)rl.rlim_cur;
  room = room > FD_MARGIN + (uint64_t)cfg->workers * (cfg->nspecs + 4)
             ? room - FD_MARGIN - (uint64_t)cfg->workers * (cfg->nspecs + 4)
             : 1;
  room /= per_conn;
  if (room < 1)
    room = 1;
  if (cfg->max_conns > room) {
    if (conns_given)
      log_warn("--max-conns lowered from %llu to %llu (open file limit %llu)",
               (unsigned long long)cfg->max_conns, (unsigned long long)room,
               (unsigned long long)rl.rlim_cur);
    cfg->max_conns = room;
  }
}

/* What the mode's table row allows: transports, frames, one worker (its
 * own options: apply_mode_options). */
static void check_mode(struct server_config *cfg, int frame_given,
                       int workers_given, int tls) {
  const struct mode *m = cfg->mode;
  static const char *kinds[] = {"TCP", "Unix sockets", "UDP"};
  static const unsigned bits[] = {MODE_TCP, MODE_UNIX, MODE_UDP};
  for (size_t i = 0; i < cfg->nspecs; i++)
    if (!(m->transports & bits[cfg->specs[i].kind]))
      cli_usage_error(PROG, "--mode %s does not work over %s (%s)", m->name,
                      kinds[cfg->specs[i].kind], cfg->specs[i].text);
  if (tls && !(m->transports & MODE_TLS))
    cli_usage_error(PROG, "--mode %s does not work over TLS", m->name);
  if (mode_unframed(m)) {
    if (frame_given)
      cli_usage_error(PROG, "--frame does not apply to --mode %s", m->name);
  } else if (!(m->frames & MODE_FRAME(cfg->frame))) {
    /* A mode with one frame (chat: lines) takes it without being told. */
    sk_frame_mode only = SK_FRAME_RAW;
    while (!(m->frames & MODE_FRAME(only)))
      only++;
    if (frame_given)
      cli_usage_error(PROG, "--mode %s is %s-based; --frame %s does not apply",
                      m->name, sk_frame_mode_name(only),
                      sk_frame_mode_name(cfg->frame));
    cfg->frame = only;
  }
  if (cfg->max_frame > sk_frame_mode_limit(cfg->frame))
    cfg->max_frame = sk_frame_mode_limit(cfg->frame);
  if (m->one_worker) {
    if (workers_given && cfg->workers > 1)
      log_warn("--mode %s runs on one worker; --workers %u ignored", m->name,
               cfg->workers);
    cfg->workers = 1;
  }
}

/* At exit: what is still buffered is written, unless stderr stays blocked
 * for 2 s (an exit must not hang on a reader that went away). */
static void flush_log(void) {
  log_stop(2000);
}

int main(int argc, char **argv) {
  static struct server srv;
  struct server_config *cfg = &srv.cfg;
  struct listen_spec specs[MAX_LISTENERS];
  const char *listen_text[MAX_LISTENERS];
  size_t nlisten = 0;
  int udp = 0, level = LOG_INFO, frame_given = 0, workers_given = 0;
  int conns_given = 0, opt;
  int tls = 0, self_signed = 0, hs_given = 0, check_only = 0;
  const char *cert = NULL, *key = NULL, *client_ca = NULL;
  const char *log_file = NULL, *metrics_addr = NULL;
  static struct mode_opt_use mode_opt_given[MAX_MODE_OPTION_USES];
  size_t nmode_given = 0;
  const struct option *options = all_options();
  int log_format = LOG_FORMAT_TEXT;
  uint64_t v;

  signal(SIGPIPE, SIG_IGN);
  /* Fresh state on every call: the CLI fuzzer runs main() many times (the
   * --cert/--key lists once kept an earlier run's freed arguments). */
  memset(&srv, 0, sizeof(srv));
  ncert_args = nkey_args = 0;

  cfg->mode = &mode_echo;
  cfg->frame = SK_FRAME_RAW;
  cfg->max_frame = SK_FRAME_MAX_DEFAULT;
  cfg->max_queue = 1024 * 1024;
  cfg->max_conns = 10000;
  cfg->idle_ms = 300 * 1000;
  cfg->frame_ms = 30 * 1000;
  cfg->grace_ms = 5 * 1000;
  cfg->hs_ms = SK_TLS_HANDSHAKE_TIMEOUT_MS;
  cfg->udp_rate = 1000;
  cfg->udp_burst = 100;
  {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
  }

  opterr = 0; /* errors are reported as one line by cli_usage_error */
  while ((opt = getopt_long(argc, argv, ":l:um:f:w:qvhV", options, NULL)) !=
         -1) {
    switch (opt) {
    case 'l':
      if (nlisten == MAX_LISTENERS)
        cli_usage_error(PROG, "too many -l options (at most %d)",
                        MAX_LISTENERS);
      listen_text[nlisten++] = optarg;
      break;
    case 'u':
      udp = 1;
      break;
    case 'm':
      cfg->mode = mode_find(optarg);
      if (cfg->mode == NULL) {
        char names[256];
        mode_names(names, sizeof(names), "");
        cli_usage_error(PROG, "--mode: unknown mode '%s' (%s)", optarg, names);
      }
      break;
    case 'f':
      if (sk_frame_mode_parse(optarg, &cfg->frame) < 0)
        cli_usage_error(PROG,
                        "--frame: unknown frame '%s' (raw, line, len16, "
                        "len32, ascii4)",
                        optarg);
      frame_given = 1;
      break;
    case 'w':
      if (cli_parse_u64(optarg, 1, MAX_WORKERS, &v) < 0)
        cli_usage_error(PROG, "--workers: '%s' is not a number in 1..%d",
                        optarg, MAX_WORKERS);
      cfg->workers = (unsigned)v;
      workers_given = 1;
      break;
    case OPT_MAX_FRAME:
      parse_size_opt("--max-frame", optarg, 0, UINT32_MAX, &v);
      cfg->max_frame = (size_t)v;
      break;
    case OPT_MAX_CONNS:
      if (cli_parse_u64(optarg, 1, 100000000, &v) < 0)
        cli_usage_error(PROG, "--max-conns: '%s' is not a number in 1..%d",
                        optarg, 100000000);
      cfg->max_conns = v;
      conns_given = 1;
      break;
    case OPT_MAX_QUEUE:
      parse_size_opt("--max-queue", optarg, 1, (uint64_t)1 << 40, &v);
      cfg->max_queue = (size_t)v;
      break;
    case OPT_IDLE:
      parse_secs_opt("--idle-timeout", optarg, 100ull * 24 * 3600 * 1000,
                     &cfg->idle_ms);
      break;
    case OPT_FRAME_TIMEOUT:
      parse_secs_opt("--frame-timeout", optarg, 100ull * 24 * 3600 * 1000,
                     &cfg->frame_ms);
      break;
    case OPT_GRACE:
      parse_secs_opt("--grace", optarg, 24ull * 3600 * 1000, &cfg->grace_ms);
      break;
    case OPT_TLS:
      tls = 1;
      break;
    case OPT_CERT:
      if (ncert_args == SK_TLS_MAX_CERTS)
        cli_usage_error(PROG, "--cert: at most %d certificates",
                        SK_TLS_MAX_CERTS);
      cert_args[ncert_args++] = optarg;
      cert = cert_args[0];
      break;
    case OPT_KEY:
      if (nkey_args == SK_TLS_MAX_CERTS)
        cli_usage_error(PROG, "--key: at most %d keys", SK_TLS_MAX_CERTS);
      key_args[nkey_args++] = optarg;
      key = key_args[0];
      break;
    case OPT_CLIENT_CA:
      client_ca = optarg;
      break;
    case OPT_SELF_SIGNED:
      self_signed = 1;
      break;
    case OPT_HS_TIMEOUT:
      parse_secs_opt("--handshake-timeout", optarg, 24ull * 3600 * 1000,
                     &cfg->hs_ms);
      hs_given = 1;
      break;
    case OPT_UDP_RATE:
      if (cli_parse_u64(optarg, 0, 10000000, &v) < 0)
        cli_usage_error(PROG, "--udp-rate: '%s' is not a number in 0..%d",
                        optarg, 10000000);
      cfg->udp_rate = (uint32_t)v;
      break;
    case OPT_UDP_BURST:
      if (cli_parse_u64(optarg, 1, 1000000, &v) < 0)
        cli_usage_error(PROG, "--udp-burst: '%s' is not a number in 1..%d",
                        optarg, 1000000);
      cfg->udp_burst = (uint32_t)v;
      break;
    case OPT_LOG_FORMAT:
      if (strcmp(optarg, "text") == 0)
        log_format = LOG_FORMAT_TEXT;
      else if (strcmp(optarg, "json") == 0)
        log_format = LOG_FORMAT_JSON;
      else
        cli_usage_error(PROG, "--log-format: unknown format '%s' (text, json)",
                        optarg);
      break;
    case OPT_LOG_FILE:
      log_file = optarg;
      break;
    case OPT_METRICS:
      metrics_addr = optarg;
      break;
    case OPT_PROXY_PROTOCOL:
      cfg->proxy_protocol = 1;
      break;
    case 'q':
      level = LOG_ERROR;
      break;
    case 'v':
      level = LOG_DEBUG;
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
      if (opt >= OPT_MODE_FIRST && opt < OPT_MODE_FIRST + (int)nmode_opts) {
        if (nmode_given == MAX_MODE_OPTION_USES)
          cli_usage_error(PROG, "too many mode options (at most %d)",
                          MAX_MODE_OPTION_USES);
        mode_opt_given[nmode_given++] = (struct mode_opt_use){
            (size_t)(opt - OPT_MODE_FIRST), optarg != NULL ? optarg : "1"};
        break;
      }
      if (optopt != 0)
        cli_usage_error(PROG, "unknown option '-%c'", optopt);
      cli_usage_error(PROG, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    cli_usage_error(PROG, "unexpected argument '%s' (use -l to listen)",
                    argv[optind]);
  log_init(PROG, level);
  if (log_configure(log_format, log_file, 1) < 0)
    cli_fatal(PROG, 1, "--log-file %s: %s", log_file, strerror(errno));

  /* Listeners: the -l ones, then any systemd passed (socket activation);
   * the default address only when there is neither. */
  for (size_t i = 0; i < nlisten; i++)
    parse_listen(&specs[i], listen_text[i], udp);
  if (systemd_listeners(specs, &nlisten, MAX_LISTENERS) == 0 && nlisten == 0)
    parse_listen(&specs[nlisten++], DEFAULT_ADDR, udp);
  cfg->specs = specs;
  cfg->nspecs = nlisten;

  check_mode(cfg, frame_given, workers_given, tls);
  apply_mode_options(cfg->mode, mode_opt_given, nmode_given);
  check_tls_options(cfg, tls, cert, key, client_ca, self_signed, hs_given);
  /* A datagram carries no PROXY header: refused rather than ignored. */
  for (size_t i = 0; cfg->proxy_protocol && i < cfg->nspecs; i++)
    if (cfg->specs[i].kind == LISTEN_UDP)
      cli_usage_error(PROG,
                      "--proxy-protocol works on TCP and Unix streams; %s is "
                      "a UDP listener",
                      cfg->specs[i].text);
  fit_max_conns(cfg, conns_given);

  if (tls)
    make_tls_context(&srv, cert, key, client_ca, self_signed);
  if (cfg->mode->setup != NULL && cfg->mode->setup(cfg) < 0)
    return 1;
  if (check_only) {
    /* Like nginx -t: the options, certificates and root were checked;
     * nothing is bound. */
    log_info("configuration OK");
    return 0;
  }

  /* Signals are taken by the main thread alone, through its control loop
   * (signals.c); the workers inherit the blocked mask and never see them. */
  signals_block();
  /* From here on no loop ever blocks on stderr (see log.h). */
  if (log_start() == 0)
    atexit(flush_log);

  if (metrics_addr != NULL)
    metrics_bind(&srv, metrics_addr);
  server_start(&srv);
  metrics_start(&srv);
  log_debug("%u worker%s, max %llu connections, idle timeout %llu ms, "
            "grace %llu ms",
            cfg->workers, cfg->workers == 1 ? "" : "s",
            (unsigned long long)cfg->max_conns,
            (unsigned long long)cfg->idle_ms,
            (unsigned long long)cfg->grace_ms);
  systemd_ready(&srv);
  signals_run(&srv);
  metrics_stop(&srv);
  if (server_wait(&srv) != 0)
    return 1;
  log_info("stopped");
  return 0;
}
