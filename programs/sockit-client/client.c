/* What every mode of sockit-client shares: the one-line failure, and
 * connecting with error messages a user can act on. */
#include "client.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static struct output *g_output;

void client_set_output(struct output *o) {
  g_output = o;
}

void client_fail(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* What was received before the failure belongs on stdout before the
   * error is reported; a failure to write it changes nothing now. */
  if (g_output != NULL)
    (void)output_flush(g_output, STDOUT_FILENO);
  fflush(stdout);
  progress_interrupt();
  fprintf(stderr, "%s: %s\n", SK_PROG_NAME, msg);
  exit(1);
}

void client_stdout_failed(int err) {
  if (err != -EPIPE) {
    client_set_output(NULL);
    client_fail("write to stdout: %s", sk_strerror(err));
  }
  /* The reader is gone, which is how `| head` says "enough": end as cat
   * does, by SIGPIPE with its default action, so the shell sees 141 and
   * prints nothing. main() ignores SIGPIPE (a closed socket must be an
   * error we report), so the default comes back first. */
  progress_interrupt();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  signal(SIGPIPE, SIG_DFL);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(SIGPIPE);
  _exit(128 + SIGPIPE); /* not reached */
}

const char *client_timeout_text(int timeout_ms) {
  static char text[32];
  if (timeout_ms < 0)
    return "no limit";
  snprintf(text, sizeof text, "%g s", timeout_ms / 1000.0);
  return text;
}

static int is_resolver_error(int err) {
  return err == SK_ENOTFOUND || err == SK_EDNSAGAIN || err == SK_EDNS;
}

/* A Unix datagram socket that is not bound has no address the server
 * could answer to. Binding it with nothing but the family asks Linux to
 * pick a unique abstract name ("autobind"), which needs no file and
 * leaves nothing behind. */
static int autobind_unix(sk_socket *s) {
  struct sockaddr_un un;
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  if (bind(s->fd, (struct sockaddr *)&un, sizeof(sa_family_t)) < 0)
    return -errno;
  return 0;
}

void client_connect(sk_socket *s, const struct client_opts *o, int type) {
  log_debug("connecting to %s (%s, timeout %s)", o->addr,
            type == SOCK_DGRAM ? "datagram" : "stream",
            client_timeout_text(o->timeout_ms));
  int rc = sk_socket_connect_text(s, o->addr, type, o->timeout_ms);
  if (rc < 0) {
    if (is_resolver_error(rc)) {
      char host[256];
      uint16_t port;
      if (sk_endpoint_split(o->addr, host, sizeof host, &port) < 0)
        snprintf(host, sizeof host, "%s", o->addr);
      client_fail("cannot resolve %s: %s", host, sk_strerror(rc));
    }
    if (rc == -ETIMEDOUT)
      client_fail("connect to %s: %s (after %s)", o->addr, sk_strerror(rc),
                  client_timeout_text(o->timeout_ms));
    client_fail("connect to %s: %s", o->addr, sk_strerror(rc));
  }
  if (type == SOCK_DGRAM && s->family == AF_UNIX) {
    rc = autobind_unix(s);
    if (rc < 0)
      client_fail("bind a reply address for %s: %s", o->addr, sk_strerror(rc));
  }
  if (log_level() >= LOG_INFO) {
    sk_endpoint local, remote;
    char l[SK_ENDPOINT_STRLEN] = "?", r[SK_ENDPOINT_STRLEN] = "?";
    if (sk_socket_local(s, &local) == 0)
      sk_endpoint_format(&local, l, sizeof l);
    if (sk_socket_remote(s, &remote) == 0)
      sk_endpoint_format(&remote, r, sizeof r);
    log_info("%s %s (from %s)",
             type == SOCK_DGRAM ? "sending datagrams to" : "connected to", r,
             l[0] != '\0' && strcmp(l, "unix:") != 0 ? l : "an unnamed socket");
  }
}
