/* Workers and the stop: one event loop per thread, started once every
 * listener is bound; the graceful stop (listeners drained and closed,
 * every connection finishes what it was asked, within --grace) and the
 * forced one; joining and releasing everything at the end. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

void worker_maybe_finish(struct worker *w) {
  if (!w->stopping || w->nconns > 0 || w->finished)
    return;
  /* The last thing keeping the loop alive: once it is closed,
   * sk_loop_run() returns and the thread ends. */
  w->finished = 1;
  sk_close(&w->grace.h, NULL);
  sk_close(&w->sweep.h, NULL);
  sk_close(&w->gauges.h, NULL);
}

static void close_all(struct worker *w, const char *why) {
  struct conn *c, *next;
  for (c = w->conns; c != NULL; c = next) {
    next = c->next;
    c->close_kind = CLOSE_STOPPING;
    conn_close(c, why);
  }
}

static void grace_cb(sk_timer *t) {
  struct worker *w = t->h.data;
  if (w->nconns > 0)
    log_warn("grace period over: closing %zu connection%s", w->nconns,
             w->nconns == 1 ? "" : "s");
  close_all(w, "grace period over");
}

static void worker_stop_cb(sk_post *p) {
  struct worker *w = p->data;
  const struct server_config *cfg = &w->srv->cfg;
  struct conn *c, *next;

  if (w->stopping)
    return;
  /* First what the kernel accepted already: those clients are served like
   * the others (and stopped with them just below). */
  listeners_close(w);
  w->stopping = 1;
  /* What a mode keeps for its UDP listeners (forward: the sessions, each
   * a socket on this loop) goes with them. */
  for (size_t i = 0; i < cfg->nspecs; i++)
    if (cfg->specs[i].kind == LISTEN_UDP && cfg->mode->udp_close != NULL)
      cfg->mode->udp_close(&w->udp[i]);
  /* conn_stop() may close only the connection it is given, so the saved
   * next pointer stays valid. */
  for (c = w->conns; c != NULL; c = next) {
    next = c->next;
    conn_stop(c);
  }
  sk_close(&w->keepalive.h, NULL);
  if (w->nconns > 0) {
    if (cfg->grace_ms > 0)
      sk_timer_start(&w->grace, grace_cb, cfg->grace_ms, 0);
    else
      close_all(w, "server stopping");
  }
  worker_maybe_finish(w);
}

static void worker_force_cb(sk_post *p) {
  struct worker *w = p->data;
  worker_stop_cb(p);
  close_all(w, "server stopping now");
  worker_maybe_finish(w);
}

static void keepalive_cb(sk_async *a) {
  (void)a;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct server *srv = w->srv;
  int rc;
  /* SK_RUN_DEFAULT one iteration at a time, to count them (--metrics);
   * busy time is the thread's CPU time, read by the metrics thread. */
  while ((rc = sk_loop_run(&w->loop, SK_RUN_ONCE)) > 0)
    stat_add(&w->stats.iterations, 1);
  if (rc < 0) {
    log_error("worker %u: event loop failed: %s", w->id, sk_strerror(rc));
    srv->failed = 1;
  }
  if (atomic_fetch_sub(&srv->running, 1) == 1) {
    uint64_t one = 1;
    ssize_t n;
    do
      n = write(srv->done_fd, &one, sizeof(one));
    while (n < 0 && errno == EINTR);
  }
  return NULL;
}

static void worker_init(struct server *srv, unsigned i) {
  const struct server_config *cfg = &srv->cfg;
  struct worker *w = &srv->workers[i];
  int rc;
  w->id = i;
  w->srv = srv;
  rc = sk_loop_init(&w->loop);
  if (rc < 0)
    cli_fatal(SK_PROG_NAME, 1, "cannot create event loop: %s", sk_strerror(rc));
  w->loop.data = w;
  sk_async_init(&w->loop, &w->keepalive, keepalive_cb);
  sk_timer_init(&w->loop, &w->grace);
  w->grace.h.data = w;
  conn_sweep_start(w);
  conn_gauges_start(w);
  w->tcp = calloc(cfg->nspecs, sizeof(*w->tcp));
  w->udp = calloc(cfg->nspecs, sizeof(*w->udp));
  if (w->tcp == NULL || w->udp == NULL)
    cli_fatal(SK_PROG_NAME, 1, "out of memory");
}

void server_start(struct server *srv) {
  int rc;

  srv->nworkers = srv->cfg.workers;
  srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
  if (srv->workers == NULL)
    cli_fatal(SK_PROG_NAME, 1, "out of memory");
  for (unsigned i = 0; i < srv->nworkers; i++)
    worker_init(srv, i);
  pthread_mutex_init(&srv->tls_lock, NULL);
  srv->tls_cur = sk_tls_ctx_ref(srv->cfg.tls);
  listeners_bind(srv);
  listeners_start(srv);
  srv->done_fd = eventfd(0, EFD_CLOEXEC);
  if (srv->done_fd < 0)
    cli_fatal(SK_PROG_NAME, 1, "eventfd: %s", strerror(errno));
  listeners_print_ready(srv);
  atomic_store(&srv->running, srv->nworkers);
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
      cli_fatal(SK_PROG_NAME, 1, "cannot start worker thread: %s",
                strerror(rc));
    w->started = 1;
  }
}

void server_stop(struct server *srv, int force) {
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    if (force)
      sk_loop_post(&w->loop, &w->force_post, worker_force_cb, w);
    else
      sk_loop_post(&w->loop, &w->stop_post, worker_stop_cb, w);
  }
}

void server_tls_swap(struct server *srv, sk_tls_ctx *ctx) {
  sk_tls_ctx *old;
  pthread_mutex_lock(&srv->tls_lock);
  old = srv->tls_cur;
  srv->tls_cur = ctx;
  pthread_mutex_unlock(&srv->tls_lock);
  sk_tls_ctx_free(old);
}

int server_wait(struct server *srv) {
  const struct server_config *cfg = &srv->cfg;
  for (unsigned i = 0; i < srv->nworkers; i++) {
    struct worker *w = &srv->workers[i];
    if (w->started)
      pthread_join(w->thread, NULL);
    if (sk_loop_free(&w->loop) < 0)
      log_debug("worker %u: handles left open at exit", i);
    free(w->tcp);
    free(w->udp);
  }
  for (size_t i = 0; i < cfg->nspecs; i++) {
    const struct listen_spec *sp = &cfg->specs[i];
    struct stat st;
    /* Only the socket file made at start: not one put in its place since
     * (another server's, or anything else). */
    if (sp->created_path && lstat(sp->ep.u.un.sun_path, &st) == 0 &&
        S_ISSOCK(st.st_mode) && (unsigned long long)st.st_dev == sp->path_dev &&
        (unsigned long long)st.st_ino == sp->path_ino)
      unlink(sp->ep.u.un.sun_path);
  }
  free(srv->workers);
  srv->workers = NULL;
  close(srv->done_fd);
  if (cfg->mode->teardown != NULL)
    cfg->mode->teardown();
  /* Every connection holding a reference is gone with its loop. */
  sk_tls_ctx_free(srv->tls_cur);
  srv->tls_cur = NULL;
  pthread_mutex_destroy(&srv->tls_lock);
  sk_tls_ctx_free(srv->cfg.tls);
  srv->cfg.tls = NULL;
  return srv->failed ? 1 : 0;
}
