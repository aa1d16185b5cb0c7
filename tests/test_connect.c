/* Connecting by name with Happy Eyeballs (sk_stream_connect_host) and the
 * blocking race (sk_socket_connect_list). Names are answered by a tiny DNS
 * responder on loopback UDP that runs on the test's own loop (the connect
 * points c-ares at it with dns_servers). A "black hole" is a listener
 * whose backlog is full: the kernel drops further SYNs silently.
 * SK_TEST_ASYNC: registered once per backend. */
#include "sk_test.h"
#include "internal.h"

#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the DNS responder ---- */

struct rr {
  const char *name;
  int type; /* 1 = A, 28 = AAAA, 0 = never answer */
  unsigned char addr[16];
};

struct dns {
  sk_udp u;
  sk_endpoint ep;
  char servers[64];
  const struct rr *rrs;
  size_t nrrs;
  int answered; /* queries answered */
};

static size_t put16(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
  return 2;
}

static void dns_recv(sk_udp *u, ssize_t n, const void *buf,
                     const sk_endpoint *from, const sk_endpoint *to,
                     unsigned flags) {
  struct dns *d = sk__container_of(u, struct dns, u);
  const unsigned char *q = buf;
  unsigned char out[512];
  char name[256];
  size_t i = 12, nl = 0;
  (void)to;
  (void)flags;
  if (n < 17)
    return;
  /* The question: labels, then type and class. */
  while (i < (size_t)n && q[i] != 0 && nl + q[i] + 1 < sizeof(name)) {
    if (nl > 0)
      name[nl++] = '.';
    memcpy(name + nl, q + i + 1, q[i]);
    nl += q[i];
    i += q[i] + 1u;
  }
  name[nl] = '\0';
  i++;
  if (i + 4 > (size_t)n)
    return;
  unsigned qtype = (unsigned)q[i] << 8 | q[i + 1];
  size_t qend = i + 4, len = qend, an = 0;
  int known = 0;
  memcpy(out, q, qend);
  for (size_t k = 0; k < d->nrrs; k++) {
    const struct rr *r = &d->rrs[k];
    if (strcasecmp(r->name, name) != 0)
      continue;
    if (r->type == 0)
      return; /* silent: the query stays unanswered */
    known = 1;
    if ((unsigned)r->type != qtype)
      continue;
    unsigned rdlen = r->type == 1 ? 4 : 16;
    len += put16(out + len, 0xc00c); /* the name of the question */
    len += put16(out + len, qtype);
    len += put16(out + len, 1);
    len += put16(out + len, 0);
    len += put16(out + len, 60); /* TTL */
    len += put16(out + len, rdlen);
    memcpy(out + len, r->addr, rdlen);
    len += rdlen;
    an++;
  }
  out[2] = 0x84 | (q[2] & 0x01); /* response, authoritative, RD copied */
  out[3] = known ? 0x80 : 0x83;  /* RA; NXDOMAIN for unknown names */
  put16(out + 6, (unsigned)an);
  put16(out + 8, 0);
  put16(out + 10, 0);
  d->answered++;
  assert_int_equal(sk_udp_send(u, out, len, from, NULL, NULL), 0);
}

static void dns_start(sk_loop *loop, struct dns *d, const struct rr *rrs,
                      size_t n) {
  memset(d, 0, sizeof(*d));
  d->rrs = rrs;
  d->nrrs = n;
  SK_ASSERT_OK(sk_udp_init(loop, &d->u));
  SK_ASSERT_OK(sk_endpoint_loopback(&d->ep, AF_INET, 0));
  SK_ASSERT_OK(sk_udp_bind(&d->u, &d->ep, 0));
  SK_ASSERT_OK(sk_socket_local(&d->u.sock, &d->ep));
  snprintf(d->servers, sizeof(d->servers), "127.0.0.1:%u",
           sk_endpoint_port(&d->ep));
  SK_ASSERT_OK(sk_udp_recv_start(&d->u, dns_recv));
}

/* ---- listeners: good ones and black holes ---- */

struct hole {
  sk_socket lis;
  sk_socket fill[64];
  int nfill;
};

/* A listener on family's loopback at port (0 = any). Returns 0, or the
 * bind's error (nothing left open): a port the kernel gave one family may
 * be taken on the other by another test's socket, so tests that want one
 * port on both families try another pair then. */
static int listener_try(sk_socket *lis, int family, uint16_t port,
                        int backlog) {
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_loopback(&ep, family, port));
  SK_ASSERT_OK(sk_socket_open(lis, family, SOCK_STREAM, 0));
  int on = 1;
  if (family == AF_INET6)
    setsockopt(lis->fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
  int rc = sk_socket_bind(lis, &ep);
  if (rc != 0) {
    sk_socket_close(lis, 0);
    return rc;
  }
  SK_ASSERT_OK(sk_socket_listen(lis, backlog));
  return 0;
}

static void listener_open(sk_socket *lis, int family, uint16_t port,
                          int backlog) {
  SK_ASSERT_OK(listener_try(lis, family, port, backlog));
}

static uint16_t local_port(const sk_socket *s) {
  sk_endpoint ep;
  SK_ASSERT_OK(sk_socket_local(s, &ep));
  return sk_endpoint_port(&ep);
}

/* Fills a backlog-1 listener's queue until a connect cannot complete. */
static void hole_open(struct hole *h, int family, uint16_t port) {
  sk_endpoint ep;
  listener_open(&h->lis, family, port, 1);
  SK_ASSERT_OK(sk_socket_local(&h->lis, &ep));
  h->nfill = 0;
  for (int i = 0; i < 64; i++) {
    sk_socket c;
    SK_ASSERT_OK(sk_socket_open(&c, family, SOCK_STREAM, 0));
    int rc = sk_socket_connect(&c, &ep, 200);
    if (rc == -ETIMEDOUT) {
      sk_socket_abort(&c);
      return;
    }
    SK_ASSERT_OK(rc);
    h->fill[h->nfill++] = c;
  }
  fail_msg("the listener's queue never filled");
}

static void hole_close(struct hole *h) {
  for (int i = 0; i < h->nfill; i++)
    sk_socket_abort(&h->fill[i]);
  sk_socket_close(&h->lis, 0);
}

/* ---- one connect by name ---- */

struct conn {
  sk_stream s;
  int calls;
  int status;
  uint64_t t0, elapsed;
  int family; /* of the peer when connected */
};

static void conn_cb(sk_stream *s, int status) {
  struct conn *c = sk__container_of(s, struct conn, s);
  c->calls++;
  c->status = status;
  c->elapsed = sk__now_ms() - c->t0;
  if (status == 0) {
    sk_endpoint ep;
    SK_ASSERT_OK(sk_socket_remote(&s->sock, &ep));
    c->family = sk_endpoint_family(&ep);
  }
  sk_close(&s->h, NULL);
}

static void conn_start(sk_loop *loop, struct conn *c, const char *host,
                       uint16_t port, const sk_connect_opts *o) {
  memset(c, 0, sizeof(*c));
  SK_ASSERT_OK(sk_stream_init(loop, &c->s));
  c->t0 = sk__now_ms();
  SK_ASSERT_OK(sk_stream_connect_host(&c->s, host, port, o, conn_cb));
}

static void set_v4(unsigned char *a) {
  memcpy(a, "\x7f\x00\x00\x01", 4);
}
static void set_v6(unsigned char *a) {
  memset(a, 0, 16);
  a[15] = 1;
}

/* (a) The first address (IPv6) is a black hole: the IPv4 one, tried one
 * attempt delay later, wins long before the overall timeout. */
static void test_black_hole_first(void **state) {
  (void)state;
  sk_loop loop;
  struct dns d;
  struct hole h;
  sk_socket good;
  struct rr rrs[2] = {{"bh.test", 28, {0}}, {"bh.test", 1, {0}}};
  set_v6(rrs[0].addr);
  set_v4(rrs[1].addr);
  SK_ASSERT_OK(sk_loop_init(&loop));
  dns_start(&loop, &d, rrs, 2);
  uint16_t port;
  for (int tries = 0;; tries++) {
    hole_open(&h, AF_INET6, 0);
    port = local_port(&h.lis);
    int rc = listener_try(&good, AF_INET, port, 16);
    if (rc == 0)
      break;
    assert_int_equal(rc, -EADDRINUSE);
    assert_true(tries < 50);
    hole_close(&h);
  }
  int fds = sk_test_open_fds();

  struct conn c;
  sk_connect_opts o = {.timeout_ms = 5000, .dns_servers = d.servers};
  conn_start(&loop, &c, "bh.test", port, &o);
  while (c.calls == 0)
    assert_true(sk_loop_run(&loop, SK_RUN_ONCE) >= 0);
  assert_int_equal(c.calls, 1);
  SK_ASSERT_OK(c.status);
  assert_int_equal(c.family, AF_INET);
  assert_true(c.elapsed < 5000);
  sk_close(&d.u.h, NULL);
  sk_test_run(&loop, 10000);
  assert_int_equal(c.calls, 1);
  /* The black-holed attempt and the resolver's sockets are gone. */
  assert_int_equal(sk_test_open_fds(), fds - 1); /* less the responder's */
  sk_test_loop_done(&loop);
  hole_close(&h);
  sk_socket_close(&good, 0);
}

/* (b) Both families answer and listen: IPv6 is preferred and wins; the
 * "host:port" text form is accepted; nothing is left open. */
static void test_both_families(void **state) {
  (void)state;
  sk_loop loop;
  struct dns d;
  sk_socket l6, l4;
  struct rr rrs[2] = {{"both.test", 1, {0}}, {"both.test", 28, {0}}};
  set_v4(rrs[0].addr);
  set_v6(rrs[1].addr);
  SK_ASSERT_OK(sk_loop_init(&loop));
  dns_start(&loop, &d, rrs, 2);
  uint16_t port;
  for (int tries = 0;; tries++) {
    listener_open(&l6, AF_INET6, 0, 16);
    port = local_port(&l6);
    int rc = listener_try(&l4, AF_INET, port, 16);
    if (rc == 0)
      break;
    assert_int_equal(rc, -EADDRINUSE);
    assert_true(tries < 50);
    sk_socket_close(&l6, 0);
  }
  int fds = sk_test_open_fds();

  char text[64];
  snprintf(text, sizeof(text), "both.test:%u", port);
  struct conn c;
  sk_connect_opts o = {.dns_servers = d.servers};
  conn_start(&loop, &c, text, 0, &o);
  while (c.calls == 0)
    assert_true(sk_loop_run(&loop, SK_RUN_ONCE) >= 0);
  SK_ASSERT_OK(c.status);
  assert_int_equal(c.family, AF_INET6);
  assert_int_equal(d.answered, 2); /* AAAA and A were both asked */
  sk_close(&d.u.h, NULL);
  sk_test_run(&loop, 10000);
  assert_int_equal(sk_test_open_fds(), fds - 1); /* less the responder's */
  sk_test_loop_done(&loop);
  sk_socket_close(&l6, 0);
  sk_socket_close(&l4, 0);
}

/* (c) A name with no address fails with SK_ENOTFOUND; a literal connects
 * without asking DNS. */
static void test_not_found_and_literal(void **state) {
  (void)state;
  sk_loop loop;
  struct dns d;
  sk_socket l4;
  SK_ASSERT_OK(sk_loop_init(&loop));
  dns_start(&loop, &d, NULL, 0);
  listener_open(&l4, AF_INET, 0, 16);

  struct conn c, lit;
  sk_connect_opts o = {.dns_servers = d.servers};
  conn_start(&loop, &c, "nx.test", 80, &o);
  conn_start(&loop, &lit, "127.0.0.1", local_port(&l4), &o);
  while (c.calls == 0 || lit.calls == 0)
    assert_true(sk_loop_run(&loop, SK_RUN_ONCE) >= 0);
  assert_int_equal(c.status, SK_ENOTFOUND);
  SK_ASSERT_OK(lit.status);
  assert_int_equal(d.answered, 2); /* only the name's two queries */
  sk_close(&d.u.h, NULL);
  sk_test_run(&loop, 10000);
  assert_int_equal(c.calls, 1);
  assert_int_equal(lit.calls, 1);
  sk_test_loop_done(&loop);
  sk_socket_close(&l4, 0);
}

/* (d) Ending the operation while the name resolves (the server never
 * answers) or while attempts hang (black hole): the callback runs once
 * with -ECANCELED and nothing leaks. by_close uses sk_close() instead of
 * sk_stream_connect_cancel(). */
struct stopper {
  sk_timer t;
  struct conn *c;
  int by_close;
};

static void stop_cb(sk_timer *t) {
  struct stopper *st = sk__container_of(t, struct stopper, t);
  if (st->by_close)
    sk_close(&st->c->s.h, NULL);
  else
    SK_ASSERT_OK(sk_stream_connect_cancel(&st->c->s));
  sk_close(&t->h, NULL);
}

static void cancel_case(const char *name, int by_close) {
  sk_loop loop;
  struct dns d;
  struct hole h;
  struct rr rrs[2] = {{"silent.test", 0, {0}}, {"hole.test", 28, {0}}};
  set_v6(rrs[1].addr);
  SK_ASSERT_OK(sk_loop_init(&loop));
  dns_start(&loop, &d, rrs, 2);
  hole_open(&h, AF_INET6, 0);
  int fds = sk_test_open_fds();

  struct conn c;
  struct stopper st = {.c = &c, .by_close = by_close};
  sk_connect_opts o = {.timeout_ms = 30000, .dns_servers = d.servers};
  conn_start(&loop, &c, name, local_port(&h.lis), &o);
  /* While it connects, even with no socket yet (the name still resolving),
   * the stream is taken: it can neither listen nor adopt a descriptor. */
  sk_endpoint any;
  SK_ASSERT_OK(sk_endpoint_parse(&any, "127.0.0.1:0"));
  assert_int_equal(sk_stream_listen(&c.s, &any, 0, 0), -EBUSY);
  int spare = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(spare >= 0);
  assert_int_equal(sk_stream_open(&c.s, spare), -EBUSY);
  assert_int_equal(sk_stream_open_accepted(&c.s, spare, AF_INET), -EBUSY);
  close(spare);
  /* Stop once the responder has seen both queries (the attempt to the
   * black hole starts as soon as their answers are read). */
  while (d.answered < 2 && strcmp(name, "hole.test") == 0)
    assert_true(sk_loop_run(&loop, SK_RUN_ONCE) >= 0);
  SK_ASSERT_OK(sk_timer_init(&loop, &st.t));
  SK_ASSERT_OK(sk_timer_start(&st.t, stop_cb, 100, 0));
  while (c.calls == 0)
    assert_true(sk_loop_run(&loop, SK_RUN_ONCE) >= 0);
  assert_int_equal(c.status, -ECANCELED);
  sk_close(&d.u.h, NULL);
  sk_test_run(&loop, 10000);
  assert_int_equal(c.calls, 1);
  assert_int_equal(sk_test_open_fds(), fds - 1); /* less the responder's */
  sk_test_loop_done(&loop);
  hole_close(&h);
}

static void test_cancel_resolving(void **state) {
  (void)state;
  cancel_case("silent.test", 0);
}
static void test_close_resolving(void **state) {
  (void)state;
  cancel_case("silent.test", 1);
}
static void test_cancel_attempting(void **state) {
  (void)state;
  cancel_case("hole.test", 0);
}
static void test_close_attempting(void **state) {
  (void)state;
  cancel_case("hole.test", 1);
}

/* Bad arguments fail at once, without a callback. */
static void test_bad_args(void **state) {
  (void)state;
  sk_loop loop;
  sk_stream s;
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_stream_init(&loop, &s));
  assert_int_equal(sk_stream_connect_host(&s, "x.test", 80, NULL, NULL),
                   -EINVAL);
  assert_int_equal(sk_stream_connect_host(&s, "", 80, NULL, conn_cb),
                   SK_EBADADDR);
  assert_int_equal(sk_stream_connect_host(&s, "x.test", 0, NULL, conn_cb),
                   SK_EBADPORT);
  sk_connect_opts o = {.dns_servers = "not a server"};
  assert_int_equal(sk_stream_connect_host(&s, "x.test", 80, &o, conn_cb),
                   -EINVAL);
  o = (sk_connect_opts){.family = AF_INET6};
  assert_int_equal(sk_stream_connect_host(&s, "127.0.0.1", 80, &o, conn_cb),
                   -EAFNOSUPPORT);
  sk_close(&s.h, NULL);
  sk_test_loop_done(&loop);
}

/* (e) The blocking race: [black hole, good] within 500 ms succeeds, where
 * trying the addresses in turn spends all 500 ms on the first. */
static void test_sync_black_hole_first(void **state) {
  (void)state;
  struct hole h;
  sk_socket good, c;
  sk_endpoint eps[2];
  hole_open(&h, AF_INET6, 0);
  listener_open(&good, AF_INET, 0, 16);
  SK_ASSERT_OK(sk_socket_local(&h.lis, &eps[0]));
  SK_ASSERT_OK(sk_socket_local(&good, &eps[1]));
  int fds = sk_test_open_fds();
  SK_ASSERT_OK(sk_socket_connect_list(&c, eps, 2, 500));
  sk_endpoint peer;
  SK_ASSERT_OK(sk_socket_remote(&c, &peer));
  assert_true(sk_endpoint_equal(&peer, &eps[1]));
  assert_int_equal(sk_test_open_fds(),
                   fds + 1); /* the black-holed try closed */
  sk_socket_close(&c, 0);
  /* Only black holes: the timeout is honoured. */
  assert_int_equal(sk_socket_connect_list(&c, eps, 1, 300), -ETIMEDOUT);
  assert_int_equal(sk_test_open_fds(), fds);
  hole_close(&h);
  sk_socket_close(&good, 0);
}

SK_TEST_MAIN(cmocka_unit_test(test_black_hole_first),
             cmocka_unit_test(test_both_families),
             cmocka_unit_test(test_not_found_and_literal),
             cmocka_unit_test(test_cancel_resolving),
             cmocka_unit_test(test_close_resolving),
             cmocka_unit_test(test_cancel_attempting),
             cmocka_unit_test(test_close_attempting),
             cmocka_unit_test(test_bad_args),
             cmocka_unit_test(test_sync_black_hole_first))
