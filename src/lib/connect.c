/* Connecting by name with Happy Eyeballs v2 (RFC 8305), asynchronously
 * (sk_stream_connect_host) and blocking (sk_socket_connect_list).
 *
 * Both race non-blocking connects: the address list alternates between
 * the families, a new attempt starts every attempt delay or as soon as one
 * fails, the first to connect wins and the others are closed.
 *
 * The asynchronous one resolves with c-ares on the loop: one channel per
 * request (created with the request, destroyed as soon as both queries
 * are answered), its sockets watched through ARES_OPT_SOCK_STATE_CB and
 * its retransmissions driven by a loop timer. AAAA and A are two queries,
 * so an early answer starts connecting without waiting for the other.
 * Nothing here runs inside a c-ares callback except storing the answer:
 * the request advances after c-ares returns, so it may destroy the channel.
 * stream.c owns the operation (callback, overall timeout, cancel, close)
 * and calls sk__connreq_end() whenever it ends. */
#include "internal.h"

#include <ares.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- shared by both: the address list and one attempt ---- */

struct he_addrs {
  sk_endpoint ep[SK_CONNECT_MAX_ADDRS];
  unsigned char tried[SK_CONNECT_MAX_ADDRS];
  size_t n;
  int prefer;      /* family of the first attempt */
  int last_family; /* family of the last attempt, 0 before the first */
};

static void he_addrs_init(struct he_addrs *a, int prefer) {
  a->n = 0;
  a->prefer = prefer;
  a->last_family = 0;
}

static void he_addrs_add(struct he_addrs *a, const sk_endpoint *ep) {
  if (a->n >= SK_CONNECT_MAX_ADDRS)
    return;
  for (size_t i = 0; i < a->n; i++)
    if (sk_endpoint_equal(&a->ep[i], ep))
      return;
  a->ep[a->n] = *ep;
  a->tried[a->n] = 0;
  a->n++;
}

static int he_addrs_left(const struct he_addrs *a) {
  for (size_t i = 0; i < a->n; i++)
    if (!a->tried[i])
      return 1;
  return 0;
}

/* The next address to try: the first untried one of the family not tried
 * last (RFC 8305 section 4, first address family count 1), else the first
 * untried one. NULL when every address was tried. */
static const sk_endpoint *he_addrs_next(struct he_addrs *a) {
  int want = a->last_family == 0          ? a->prefer
             : a->last_family == AF_INET6 ? AF_INET
                                          : AF_INET6;
  size_t pick = a->n;
  for (size_t i = 0; i < a->n; i++) {
    if (a->tried[i])
      continue;
    if (pick == a->n)
      pick = i;
    if (sk_endpoint_family(&a->ep[i]) == want) {
      pick = i;
      break;
    }
  }
  if (pick == a->n)
    return NULL;
  a->tried[pick] = 1;
  a->last_family = sk_endpoint_family(&a->ep[pick]);
  return &a->ep[pick];
}

/* Starts a non-blocking connect to ep. Returns 1 (in progress, *fd set),
 * 0 (connected at once, *fd set) or a negative errno. */
static int attempt_start(const sk_endpoint *ep, int *fd) {
  int s = sk__socket_create(sk_endpoint_family(ep), SOCK_STREAM, 0);
  if (s < 0)
    return s;
  if (connect(s, &ep->u.sa, ep->len) == 0) {
    *fd = s;
    return 0;
  }
  /* A non-blocking connect interrupted by a signal goes on by itself. */
  if (errno == EINPROGRESS || errno == EINTR) {
    *fd = s;
    return 1;
  }
  int err = sk__err();
  sk__close_fd(s);
  return err;
}

/* The outcome of a finished connect: 0 or a negative errno. */
static int attempt_result(int fd) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    return sk__err();
  return -err;
}

static int clamp_delay(int ms) {
  if (ms <= 0)
    return SK_CONNECT_ATTEMPT_DELAY;
  return ms < 10 ? 10 : ms > 2000 ? 2000 : ms;
}

/* ---- blocking ---- */

int sk_socket_connect_list(sk_socket *s, const sk_endpoint *eps, size_t n,
                           int timeout_ms) {
  struct he_addrs a;
  struct pollfd pfd[SK_CONNECT_MAX_ADDRS];
  nfds_t live = 0;
  int rc = -ECONNREFUSED, winner = -1;

  if (s == NULL || eps == NULL || n == 0)
    return -EINVAL;
  *s = (sk_socket)SK_SOCKET_INIT;
  he_addrs_init(&a, sk_endpoint_family(&eps[0]));
  for (size_t i = 0; i < n; i++)
    he_addrs_add(&a, &eps[i]);
  uint64_t now = sk__now_ms();
  uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now + (uint64_t)timeout_ms;
  uint64_t next_start = now;
  const uint64_t delay = SK_CONNECT_ATTEMPT_DELAY;

  int started = 0;
  while (winner < 0) {
    now = sk__now_ms();
    const sk_endpoint *ep;
    if ((live == 0 || now >= next_start) && (now < deadline || !started) &&
        (ep = he_addrs_next(&a)) != NULL) {
      started = 1;
      int fd = -1, st = attempt_start(ep, &fd);
      if (st == 0) {
        winner = fd;
      } else if (st < 0) {
        rc = st;
      } else {
        pfd[live].fd = fd;
        pfd[live].events = POLLOUT;
        pfd[live].revents = 0;
        live++;
        next_start = now + delay;
      }
      continue;
    }
    if (live == 0) {
      /* Every address failed (rc is the last error), or time is up. */
      if (he_addrs_left(&a))
        rc = -ETIMEDOUT;
      break;
    }
    if (now >= deadline) {
      rc = -ETIMEDOUT;
      break;
    }
    uint64_t until = deadline;
    if (he_addrs_left(&a) && next_start < until)
      until = next_start;
    uint64_t wait = until - now;
    int prc = poll(pfd, live, wait > INT32_MAX ? INT32_MAX : (int)wait);
    if (prc < 0 && errno != EINTR) {
      rc = sk__err();
      break;
    }
    for (nfds_t i = 0; prc > 0 && i < live;) {
      if (pfd[i].revents == 0) {
        i++;
        continue;
      }
      int err = attempt_result(pfd[i].fd);
      if (err == 0) {
        winner = pfd[i].fd;
        pfd[i] = pfd[--live];
        break;
      }
      rc = err;
      sk__close_fd(pfd[i].fd);
      pfd[i] = pfd[--live];
      next_start = 0; /* a failure starts the next attempt at once */
    }
  }
  for (nfds_t i = 0; i < live; i++)
    sk__close_fd(pfd[i].fd);
  if (winner < 0)
    return rc;
  rc = sk__socket_from_fd(s, winner);
  if (rc < 0) {
    sk__close_fd(winner);
    *s = (sk_socket)SK_SOCKET_INIT;
  }
  return rc;
}

/* ---- asynchronous ---- */

struct he_attempt {
  struct sk__io io;
  int fd;
  struct sk__connreq *r;
};

/* A socket of the c-ares channel. Nodes are reused, never freed before the
 * request: a watcher must stay valid during the poll that stopped it. */
struct he_sock {
  struct sk__io io;
  int fd; /* -1: a free node */
  struct sk__connreq *r;
  struct he_sock *next;
};

struct he_query {
  struct sk__connreq *r;
  int family;
  int pending;
};

struct sk__connreq {
  sk_stream *s;
  sk_loop *loop;
  ares_channel ch; /* NULL once resolution is over */
  struct he_query q6, q4;
  struct he_sock *socks;
  struct sk__tnode ares_timer; /* c-ares retransmissions */
  struct sk__tnode step;       /* resolution delay, then attempt delay */
  struct sk__pending free_pend;
  int attempt_delay;
  uint16_t port;
  int res_err;    /* most telling resolution error */
  int last_err;   /* error of the last failed attempt */
  int step_over;  /* the delay passed: the next attempt may start */
  int rdelay;     /* the resolution delay was started */
  size_t started; /* attempts started (= slots used in att[]) */
  int live;       /* attempts in flight */
  struct he_addrs addrs;
  struct he_attempt att[SK_CONNECT_MAX_ADDRS];
};

static void he_advance(struct sk__connreq *r);

static int queries_pending(const struct sk__connreq *r) {
  return r->q6.pending || r->q4.pending;
}

static int map_ares_error(int status) {
  switch (status) {
  case ARES_ENOTFOUND:
  case ARES_ENODATA:
  case ARES_ENONAME:
    return SK_ENOTFOUND;
  case ARES_ETIMEOUT:
  case ARES_ECONNREFUSED:
  case ARES_ESERVFAIL:
    return SK_EDNSAGAIN;
  case ARES_ENOMEM:
    return -ENOMEM;
  default:
    return SK_EDNS;
  }
}

static void gai_cb(void *arg, int status, int timeouts,
                   struct ares_addrinfo *res) {
  struct he_query *q = arg;
  struct sk__connreq *r = q->r;
  SK__UNUSED(timeouts);
  q->pending = 0;
  if (status == ARES_SUCCESS && res != NULL) {
    for (struct ares_addrinfo_node *n = res->nodes; n != NULL; n = n->ai_next) {
      sk_endpoint ep;
      if (n->ai_family != q->family ||
          sk_endpoint_from_sockaddr(&ep, n->ai_addr, n->ai_addrlen) != 0)
        continue;
      sk_endpoint_set_port(&ep, r->port);
      he_addrs_add(&r->addrs, &ep);
    }
  } else if (status != ARES_EDESTRUCTION && status != ARES_ECANCELLED) {
    /* "Not found" for one family says less than a failure of the other. */
    int err = map_ares_error(status);
    if (r->res_err == 0 || r->res_err == SK_ENOTFOUND)
      r->res_err = err;
  }
  ares_freeaddrinfo(res);
}

static void sock_io_cb(sk_loop *loop, struct sk__io *w, unsigned rev);

static void sock_state_cb(void *data, ares_socket_t fd, int readable,
                          int writable) {
  struct sk__connreq *r = data;
  struct he_sock *k, *spare = NULL;
  unsigned ev = (readable ? SK__IO_READ : 0u) | (writable ? SK__IO_WRITE : 0u);
  for (k = r->socks; k != NULL; k = k->next) {
    if (k->fd == fd)
      break;
    if (k->fd < 0 && spare == NULL)
      spare = k;
  }
  if (k == NULL && ev == 0)
    return;
  if (k == NULL) {
    k = spare;
    if (k == NULL) {
      k = calloc(1, sizeof(*k));
      if (k == NULL) {
        /* Unwatched, the query ends by its timeout. */
        r->res_err = -ENOMEM;
        return;
      }
      k->r = r;
      k->next = r->socks;
      r->socks = k;
    }
    k->fd = fd;
    sk__io_init(&k->io, &k->fd, sock_io_cb);
  }
  sk__io_set(r->loop, &k->io, ev);
  if (ev == 0)
    k->fd = -1;
}

/* Descriptors c-ares creates are made close-on-exec like sockit's own. */
static int sock_create_cb(ares_socket_t fd, int type, void *data) {
  SK__UNUSED(type);
  SK__UNUSED(data);
  return sk__fd_prepare(fd) == 0 ? ARES_SUCCESS : -1;
}

/* Destroys the channel: ends its queries (gai_cb sees ARES_EDESTRUCTION)
 * and closes its sockets, whose watchers stop here. */
static void channel_close(struct sk__connreq *r) {
  if (r->ch != NULL) {
    ares_destroy(r->ch);
    r->ch = NULL;
  }
  for (struct he_sock *k = r->socks; k != NULL; k = k->next) {
    sk__io_set(r->loop, &k->io, 0);
    k->fd = -1;
  }
}

/* After c-ares ran: drop the channel once both queries are answered, else
 * re-arm its timer; then move the connect on. */
static void after_ares(struct sk__connreq *r) {
  sk__tnode_stop(r->loop, &r->ares_timer);
  if (!queries_pending(r))
    channel_close(r);
  if (r->ch != NULL) {
    struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);
    if (tvp != NULL)
      sk__tnode_start(r->loop, &r->ares_timer,
                      r->loop->now + (uint64_t)tvp->tv_sec * 1000 +
                          (uint64_t)(tvp->tv_usec + 999) / 1000);
  }
  he_advance(r);
}

static void sock_io_cb(sk_loop *loop, struct sk__io *w, unsigned rev) {
  struct he_sock *k = sk__container_of(w, struct he_sock, io);
  SK__UNUSED(loop);
  if (k->r->ch == NULL)
    return;
  ares_process_fd(
      k->r->ch, (rev & (SK__IO_READ | SK__IO_ERR)) ? *w->fd : ARES_SOCKET_BAD,
      (rev & (SK__IO_WRITE | SK__IO_ERR)) ? *w->fd : ARES_SOCKET_BAD);
  after_ares(k->r);
}

static void ares_timer_cb(struct sk__tnode *n) {
  struct sk__connreq *r = sk__container_of(n, struct sk__connreq, ares_timer);
  ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  after_ares(r);
}

static void step_cb(struct sk__tnode *n) {
  struct sk__connreq *r = sk__container_of(n, struct sk__connreq, step);
  r->step_over = 1;
  he_advance(r);
}

static void attempt_io_cb(sk_loop *loop, struct sk__io *w, unsigned rev) {
  struct he_attempt *a = sk__container_of(w, struct he_attempt, io);
  struct sk__connreq *r = a->r;
  int fd = a->fd, err = attempt_result(fd);
  SK__UNUSED(rev);
  sk__io_set(loop, w, 0);
  a->fd = -1;
  r->live--;
  if (err == 0) {
    sk__stream_connect_end(r->s, fd, 0);
    return;
  }
  sk__close_fd(fd);
  r->last_err = err;
  r->step_over = 1; /* a failure starts the next attempt at once */
  he_advance(r);
}

/* Starts whatever attempts are due and ends the operation when nothing is
 * left to wait for. May end the request: callers return right after. */
static void he_advance(struct sk__connreq *r) {
  /* RFC 8305 section 3: with A answered and AAAA not yet, wait a moment
   * for it before the first attempt. */
  if (r->started == 0 && r->q6.pending && r->addrs.n > 0 && !r->step_over) {
    if (!r->rdelay) {
      r->rdelay = 1;
      sk__tnode_start(r->loop, &r->step,
                      r->loop->now + SK_CONNECT_RESOLUTION_DELAY);
    }
    return;
  }
  while (r->live == 0 || r->step_over) {
    const sk_endpoint *ep = he_addrs_next(&r->addrs);
    if (ep == NULL)
      break;
    int fd = -1, st = attempt_start(ep, &fd);
    if (st == 0) {
      sk__stream_connect_end(r->s, fd, 0);
      return;
    }
    if (st < 0) {
      r->last_err = st;
      r->step_over = 1;
      continue;
    }
    struct he_attempt *a = &r->att[r->started++];
    a->r = r;
    a->fd = fd;
    sk__io_init(&a->io, &a->fd, attempt_io_cb);
    int set = sk__io_set(r->loop, &a->io, SK__IO_WRITE);
    if (set < 0) {
      r->last_err = set;
      sk__close_fd(fd);
      a->fd = -1;
      continue;
    }
    r->live++;
    r->step_over = 0;
    sk__tnode_stop(r->loop, &r->step);
    sk__tnode_start(r->loop, &r->step,
                    r->loop->now + (uint64_t)r->attempt_delay);
  }
  if (r->live == 0 && !queries_pending(r) && !he_addrs_left(&r->addrs)) {
    int err = r->last_err;
    if (err == 0)
      err = r->res_err != 0 ? r->res_err : SK_ENOTFOUND;
    sk__stream_connect_end(r->s, -1, err);
  }
}

static void req_free_cb(struct sk__pending *p) {
  struct sk__connreq *r = sk__container_of(p, struct sk__connreq, free_pend);
  while (r->socks != NULL) {
    struct he_sock *k = r->socks;
    r->socks = k->next;
    free(k);
  }
  free(r);
}

void sk__connreq_end(struct sk__connreq *r) {
  sk_loop *loop = r->loop;
  sk__tnode_stop(loop, &r->step);
  sk__tnode_stop(loop, &r->ares_timer);
  for (size_t i = 0; i < r->started; i++) {
    struct he_attempt *a = &r->att[i];
    if (a->fd >= 0) {
      sk__io_set(loop, &a->io, 0);
      sk__close_fd(a->fd);
      a->fd = -1;
    }
  }
  channel_close(r);
  /* The memory outlives the poll phase that may still name its watchers. */
  sk__pending_add(loop, &r->free_pend, req_free_cb);
}

/* Numeric host (IPv4 or IPv6 literal, brackets optional): fills ep. */
static int parse_literal(const char *host, uint16_t port, sk_endpoint *ep) {
  char text[SK_ENDPOINT_STRLEN];
  int n;
  if (host[0] == '[' || strchr(host, ':') == NULL)
    n = snprintf(text, sizeof(text), "%s:%u", host, port);
  else
    n = snprintf(text, sizeof(text), "[%s]:%u", host, port);
  if (n < 0 || (size_t)n >= sizeof(text))
    return SK_EBADADDR;
  return sk_endpoint_parse(ep, text);
}

static int channel_open(struct sk__connreq *r, const sk_connect_opts *o) {
  struct ares_options ao;
  memset(&ao, 0, sizeof(ao));
  ao.sock_state_cb = sock_state_cb;
  ao.sock_state_cb_data = r;
  int rc = ares_init_options(&r->ch, &ao, ARES_OPT_SOCK_STATE_CB);
  if (rc != ARES_SUCCESS) {
    r->ch = NULL;
    return rc == ARES_ENOMEM ? -ENOMEM : SK_EDNS;
  }
  ares_set_socket_callback(r->ch, sock_create_cb, NULL);
  if (o->dns_servers != NULL &&
      ares_set_servers_ports_csv(r->ch, o->dns_servers) != ARES_SUCCESS) {
    ares_destroy(r->ch);
    r->ch = NULL;
    return -EINVAL;
  }
  return 0;
}

static void query_start(struct sk__connreq *r, struct he_query *q,
                        const char *name, int family) {
  struct ares_addrinfo_hints hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  q->r = r;
  q->family = family;
  q->pending = 1;
  /* May answer at once (hosts file): gai_cb only stores the answer. */
  ares_getaddrinfo(r->ch, name, NULL, &hints, gai_cb, q);
}

int sk_stream_connect_host(sk_stream *s, const char *host, uint16_t port,
                           const sk_connect_opts *opts, sk_connect_cb cb) {
  static const sk_connect_opts defaults;
  const sk_connect_opts *o = opts != NULL ? opts : &defaults;
  char name[NI_MAXHOST];
  sk_endpoint ep;
  int numeric = 0, rc;

  if (s == NULL || host == NULL || cb == NULL)
    return -EINVAL;
  if (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6)
    return -EINVAL;
  if (port == 0) {
    /* A whole text address: numeric forms connect directly. */
    if (sk_endpoint_parse(&ep, host) == 0) {
      numeric = 1;
    } else {
      rc = sk_endpoint_split(host, name, sizeof(name), &port);
      if (rc != 0)
        return rc;
      if (parse_literal(name, port, &ep) == 0)
        numeric = 1;
    }
  } else {
    size_t len = strlen(host);
    if (len == 0)
      return SK_EBADADDR;
    if (len >= sizeof(name))
      return -ENAMETOOLONG;
    memcpy(name, host, len + 1);
    if (parse_literal(name, port, &ep) == 0)
      numeric = 1;
  }
  if (numeric && o->family != AF_UNSPEC && sk_endpoint_family(&ep) != AF_UNIX &&
      sk_endpoint_family(&ep) != o->family)
    return -EAFNOSUPPORT;

  struct sk__connreq *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return -ENOMEM;
  r->s = s;
  r->loop = s->h.loop;
  r->port = port;
  r->attempt_delay = clamp_delay(o->attempt_delay_ms);
  sk__tnode_init(&r->ares_timer, ares_timer_cb);
  sk__tnode_init(&r->step, step_cb);
  he_addrs_init(&r->addrs, o->family == AF_INET ? AF_INET : AF_INET6);
  if (!numeric && (rc = channel_open(r, o)) != 0) {
    free(r);
    return rc;
  }
  int timeout = o->timeout_ms == 0 ? SK_CONNECT_TIMEOUT_DEFAULT : o->timeout_ms;
  rc = sk__stream_connect_begin(s, r, timeout, cb);
  if (rc != 0) {
    if (r->ch != NULL)
      ares_destroy(r->ch);
    free(r);
    return rc;
  }
  sk_loop_update_time(r->loop);
  if (numeric) {
    he_addrs_add(&r->addrs, &ep);
    he_advance(r);
    return 0;
  }
  if (o->family != AF_INET)
    query_start(r, &r->q6, name, AF_INET6);
  if (o->family != AF_INET6)
    query_start(r, &r->q4, name, AF_INET);
  after_ares(r);
  return 0;
}
