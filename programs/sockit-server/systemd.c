/* sockit-server under systemd: socket activation (the sockets systemd
 * passes become listeners) and sd_notify (readiness, status, stopping, the
 * watchdog), through libsystemd. Built without libsystemd (no pkg-config
 * libsystemd at configure time), notifications are no-ops and a server
 * handed sockets refuses to start rather than ignore them.
 *
 * Passed sockets are served as they are, in the configured mode, TLS
 * included: a listening stream socket (TCP or Unix, ListenStream=) or a
 * datagram socket (ListenDatagram=). What a socket is comes from the kernel
 * (SO_TYPE, SO_DOMAIN, SO_ACCEPTCONN), its name from LISTEN_FDNAMES
 * (FileDescriptorName=). Accept=yes (one connected socket per instance) is
 * not supported. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

#ifdef SK_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* The name of a passed socket for messages: "systemd:NAME#FD", the name
 * cut to what fits a message, kept in the spec itself. */
static const char *passed_text(struct listen_spec *sp, const char *name,
                               int fd) {
  snprintf(sp->text_buf, sizeof(sp->text_buf), "systemd:%.64s#%d",
           name != NULL && name[0] != '\0' ? name : "socket", fd);
  return sp->text_buf;
}

#ifdef SK_HAVE_SYSTEMD

static int sockopt_int(int fd, int opt) {
  int v = -1;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0)
    return -1;
  return v;
}

/* What a passed socket is, as a listen spec kind; exits on one the server
 * cannot serve. */
static int passed_kind(int fd, const char *text) {
  int type = sockopt_int(fd, SO_TYPE);
  int family = sockopt_int(fd, SO_DOMAIN);

  if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
    cli_fatal(SK_PROG_NAME, 1,
              "%s: not an IPv4, IPv6 or Unix socket (family %d); only "
              "ListenStream= and ListenDatagram= sockets are served",
              text, family);
  if (type == SOCK_STREAM) {
    if (sockopt_int(fd, SO_ACCEPTCONN) != 1)
      cli_fatal(SK_PROG_NAME, 1,
                "%s: a stream socket that is not listening (Accept=yes is "
                "not supported; use Accept=no)",
                text);
    return family == AF_UNIX ? LISTEN_UNIX : LISTEN_TCP;
  }
  if (type == SOCK_DGRAM && family != AF_UNIX)
    return LISTEN_UDP;
  cli_fatal(SK_PROG_NAME, 1,
            "%s: unsupported socket type %d (TCP, UDP and Unix stream "
            "sockets are served)",
            text, type);
  return -1;
}

size_t systemd_listeners(struct listen_spec *specs, size_t *n, size_t max) {
  char **names = NULL;
  /* 1: LISTEN_* are removed from the environment, so nothing this process
   * starts believes the sockets are its own. */
  int count = sd_listen_fds_with_names(1, &names);
  size_t taken = 0;

  if (count < 0)
    cli_fatal(SK_PROG_NAME, 1, "socket activation: %s", strerror(-count));
  for (int i = 0; i < count; i++) {
    int fd = SD_LISTEN_FDS_START + i;
    const char *name = names != NULL ? names[i] : NULL;
    struct listen_spec *sp;

    if (*n == max)
      cli_fatal(SK_PROG_NAME, 1,
                "socket activation: more than %zu listeners in all", max);
    sp = &specs[(*n)++];
    memset(sp, 0, sizeof(*sp));
    sp->sd_fd = fd;
    sp->text = passed_text(sp, name, fd);
    sp->kind = passed_kind(fd, sp->text);
    taken++;
  }
  if (names != NULL) {
    for (int i = 0; i < count; i++)
      free(names[i]);
    free(names);
  }
  return taken;
}

int systemd_notifying(void) {
  const char *e = getenv("NOTIFY_SOCKET");
  return e != NULL && e[0] != '\0';
}

/* "STATUS=..." with the counters; the caller adds what else it sends. */
static void status_text(const struct server *srv, char *buf, size_t len) {
  unsigned long long open = atomic_load(&srv->nconns);
  unsigned long long refused = atomic_load(&srv->refused);
  snprintf(buf, len, "STATUS=%llu connection%s open, %llu refused (%s)", open,
           open == 1 ? "" : "s", refused, srv->cfg.mode->name);
}

void systemd_ready(const struct server *srv) {
  char status[160];
  int rc;
  if (!systemd_notifying())
    return;
  status_text(srv, status, sizeof(status));
  rc = sd_notifyf(0, "READY=1\nMAINPID=%ld\n%s", (long)getpid(), status);
  if (rc < 0)
    log_warn("sd_notify: %s", strerror(-rc));
}

void systemd_status(const struct server *srv) {
  char status[160];
  if (!systemd_notifying())
    return;
  status_text(srv, status, sizeof(status));
  (void)sd_notify(0, status);
}

void systemd_stopping(void) {
  if (systemd_notifying())
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void systemd_watchdog_ping(void) {
  (void)sd_notify(0, "WATCHDOG=1");
}

uint64_t systemd_watchdog_ms(void) {
  uint64_t usec = 0;
  /* > 0 only when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is us). */
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
    return 0;
  return usec / 1000 > 0 ? usec / 1000 : 1;
}

#else /* !SK_HAVE_SYSTEMD */

size_t systemd_listeners(struct listen_spec *specs, size_t *n, size_t max) {
  const char *pid = getenv("LISTEN_PID");
  (void)specs;
  (void)n;
  (void)max;
  (void)passed_text;
  if (pid != NULL && strtol(pid, NULL, 10) == (long)getpid())
    cli_fatal(SK_PROG_NAME, 1,
              "systemd passed sockets (LISTEN_FDS), but this %s was built "
              "without libsystemd",
              SK_PROG_NAME);
  return 0;
}

int systemd_notifying(void) {
  return 0;
}
void systemd_ready(const struct server *srv) {
  (void)srv;
}
void systemd_status(const struct server *srv) {
  (void)srv;
}
void systemd_stopping(void) {}
void systemd_watchdog_ping(void) {}
uint64_t systemd_watchdog_ms(void) {
  return 0;
}

#endif
