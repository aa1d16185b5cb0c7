/* sockit-server: the main thread's control loop. Once the workers run, the
 * main thread runs a loop of its own that takes the signals (sk_signal),
 * sends systemd its STATUS= updates and watchdog pings, and ends when the
 * last worker has ended:
 *
 *  - SIGINT, SIGTERM: graceful stop (STOPPING=1 to systemd); a second one
 *    closes every connection at once;
 *  - SIGHUP: reloads the TLS certificate, key and CA files (new handshakes
 *    use them; established connections keep theirs; a file that does not
 *    load leaves the old context in use and says why) and reopens the log
 *    file;
 *  - SIGUSR1: one line with the counters.
 *
 * The workers never see a signal: every one of these is blocked before the
 * first thread starts (signals_block()), and threads inherit the mask. */
#include "server.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "log.h"

/* STATUS= updates: cheap (one datagram), often enough for systemctl. */
#define STATUS_EVERY_MS 2000

static const int handled[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
#define NHANDLED (sizeof(handled) / sizeof(handled[0]))

struct control {
  sk_loop loop;
  struct server *srv;
  sk_signal sig[NHANDLED];
  sk_timer status, watchdog;
  sk_poll done;
  int stops;
  uint64_t wd_ms;
};

void signals_block(void) {
  for (size_t i = 0; i < NHANDLED; i++)
    if (sk_signal_block(handled[i]) < 0)
      cli_fatal(SK_PROG_NAME, 1, "cannot block signal %d", handled[i]);
}

/* SIGHUP: a new context from the same options. A self-signed certificate
 * is not remade: clients pinned its fingerprint. */
static void reload_tls(struct server *srv) {
  sk_tls_ctx *ctx = NULL;
  char fp[SK_TLS_FINGERPRINT_LEN];
  int rc;

  if (srv->cfg.tls == NULL)
    return;
  if (srv->tls_opts.self_signed) {
    log_info("SIGHUP: --self-signed: the certificate is kept");
    return;
  }
  rc = sk_tls_ctx_new(&ctx, &srv->tls_opts);
  if (rc < 0) {
    log_error("SIGHUP: TLS files not reloaded, the previous ones stay in "
              "use: %s",
              sk_tls_last_error()[0] != '\0' ? sk_tls_last_error()
                                             : sk_strerror(rc));
    return;
  }
  int have_fp = sk_tls_ctx_fingerprint(ctx, fp, sizeof(fp)) == 0;
  /* Swap first: once the line is out, every new handshake uses the new
   * files (a script, or a test, may act on the line). */
  server_tls_swap(srv, ctx);
  if (have_fp)
    log_info("SIGHUP: TLS files reloaded; certificate SHA-256 fingerprint %s",
             fp);
  else
    log_info("SIGHUP: TLS files reloaded");
}

/* SIGUSR1: the counters there are, on one line. */
static void log_summary(const struct server *srv) {
  unsigned long long open = atomic_load(&srv->nconns);
  log_msg(LOG_INFO,
          "SIGUSR1: %llu connection%s open, %llu refused over --max-conns, "
          "%u worker%s, mode %s",
          open, open == 1 ? "" : "s",
          (unsigned long long)atomic_load(&srv->refused), srv->nworkers,
          srv->nworkers == 1 ? "" : "s", srv->cfg.mode->name);
}

static void on_signal(sk_signal *s, int signum) {
  struct control *ctl = s->h.data;
  struct server *srv = ctl->srv;

  switch (signum) {
  case SIGHUP:
    /* The log file first, so that what the reload says goes to the new
     * one. */
    log_reopen();
    log_info("SIGHUP: reloading");
    reload_tls(srv);
    break;
  case SIGUSR1:
    log_summary(srv);
    break;
  default:
    if (++ctl->stops == 1) {
      log_info("%s: stopping (grace period %llu ms)",
               signum == SIGINT ? "SIGINT" : "SIGTERM",
               (unsigned long long)srv->cfg.grace_ms);
      systemd_stopping();
      server_stop(srv, 0);
    } else if (ctl->stops == 2) {
      log_warn("second signal: closing every connection now");
      server_stop(srv, 1);
    }
  }
}

static void status_cb(sk_timer *t) {
  struct control *ctl = t->h.data;
  if (ctl->stops == 0)
    systemd_status(ctl->srv);
}

static void wd_seen(sk_post *p) {
  struct worker *w = p->data;
  atomic_store(&w->wd_pending, 0);
}

/* WATCHDOG=1 at half the period systemd asked for, but only while every
 * worker's loop runs: each tick posts a no-op to every loop, and a loop
 * that has not run it by the next tick is stuck, so the ping is withheld
 * and systemd restarts the service. While stopping, pings go on
 * unconditionally (the loops end one by one). */
static void watchdog_cb(sk_timer *t) {
  struct control *ctl = t->h.data;
  struct server *srv = ctl->srv;

  if (ctl->stops == 0) {
    for (unsigned i = 0; i < srv->nworkers; i++) {
      if (atomic_load(&srv->workers[i].wd_pending)) {
        log_warn("worker %u has not run its loop for %llu ms: watchdog "
                 "ping withheld",
                 i, (unsigned long long)(ctl->wd_ms / 2));
        return;
      }
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
      struct worker *w = &srv->workers[i];
      atomic_store(&w->wd_pending, 1);
      if (sk_loop_post(&w->loop, &w->wd_post, wd_seen, w) < 0)
        atomic_store(&w->wd_pending, 0);
    }
  }
  systemd_watchdog_ping();
}

/* The last worker ended: the control loop ends too. */
static void done_cb(sk_poll *p, int status, int events) {
  struct control *ctl = p->h.data;
  (void)status;
  (void)events;
  sk_close(&ctl->done.h, NULL);
  for (size_t i = 0; i < NHANDLED; i++)
    sk_close(&ctl->sig[i].h, NULL);
  sk_close(&ctl->status.h, NULL);
  sk_close(&ctl->watchdog.h, NULL);
}

void signals_run(struct server *srv) {
  static struct control ctl;
  int rc;

  memset(&ctl, 0, sizeof(ctl));
  ctl.srv = srv;
  rc = sk_loop_init(&ctl.loop);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "cannot create the main loop: %s",
              sk_strerror(rc));
  for (size_t i = 0; i < NHANDLED; i++) {
    sk_signal_init(&ctl.loop, &ctl.sig[i]);
    ctl.sig[i].h.data = &ctl;
    rc = sk_signal_start(&ctl.sig[i], on_signal, handled[i]);
    if (rc < 0)
      cli_fatal(SK_PROG_NAME, 1, "cannot watch signal %d: %s", handled[i],
                sk_strerror(rc));
  }
  sk_poll_init(&ctl.loop, &ctl.done, srv->done_fd);
  ctl.done.h.data = &ctl;
  rc = sk_poll_start(&ctl.done, SK_POLLH_READABLE, done_cb);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "cannot watch the workers: %s", sk_strerror(rc));
  sk_timer_init(&ctl.loop, &ctl.status);
  ctl.status.h.data = &ctl;
  sk_timer_init(&ctl.loop, &ctl.watchdog);
  ctl.watchdog.h.data = &ctl;
  if (systemd_notifying())
    sk_timer_start(&ctl.status, status_cb, STATUS_EVERY_MS, STATUS_EVERY_MS);
  ctl.wd_ms = systemd_watchdog_ms();
  if (ctl.wd_ms > 0) {
    uint64_t half = ctl.wd_ms / 2 > 0 ? ctl.wd_ms / 2 : 1;
    systemd_watchdog_ping();
    sk_timer_start(&ctl.watchdog, watchdog_cb, half, half);
    log_debug("systemd watchdog: %llu ms, pinged every %llu ms",
              (unsigned long long)ctl.wd_ms, (unsigned long long)half);
  }
  rc = sk_loop_run(&ctl.loop, SK_RUN_DEFAULT);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "main loop: %s", sk_strerror(rc));
  (void)sk_loop_free(&ctl.loop);
}
