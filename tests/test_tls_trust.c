/* TLS trust hooks: the verification callback, the peer's certificate,
 * certificates chosen by SNI, session resumption, and the text of load
 * errors. Certificates are made at run time with the openssl tool in a
 * private temporary directory removed at exit (tls_certs.h, shared with
 * test_tls.c). Servers are sync sessions on a thread; clients run
 * sync, and async for the stream accessors.
 *
 * Built without TLS, every test checks that the API says SK_ENOTLS and is
 * skipped. */
#include "sk_test.h"
#include "tls_certs.h"

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- certificates, made with the openssl tool (tls_certs.h) ---- */

static struct pair a_pair;  /* a.test, by the test CA: the default */
static struct pair b_pair;  /* b.test, *.w.test, 10.1.2.3, ::1 */
static struct pair w_pair;  /* *.w.test, exact.w.test */
static struct pair self;    /* localhost, self-signed */
static struct pair expired; /* a.test, expired yesterday */

static void certs(void) {
  if (!certs_begin("/tmp/sk-tlstrust-XXXXXX"))
    return;
  make_leaf(&a_pair, "a", "a.test", "ca",
            "subjectAltName=DNS:a.test\nextendedKeyUsage=serverAuth\n", 2);
  make_leaf(&b_pair, "b", "b.test", "ca",
            "subjectAltName=DNS:b.test,DNS:*.w.test,IP:10.1.2.3,IP:::1\n"
            "extendedKeyUsage=serverAuth\n",
            2);
  make_leaf(&w_pair, "w", "w.test", "ca",
            "subjectAltName=DNS:*.w.test,DNS:exact.w.test\n"
            "extendedKeyUsage=serverAuth\n",
            2);
  make_leaf(&expired, "expired", "a.test", "ca",
            "subjectAltName=DNS:a.test\nextendedKeyUsage=serverAuth\n", -1);
  snprintf(self.cert, sizeof(self.cert), "%s/self.pem", dir);
  snprintf(self.key, sizeof(self.key), "%s/self.key", dir);
  sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
     "-keyout %s -out %s -days 2 -subj /CN=self "
     "-addext subjectAltName=DNS:localhost",
     self.key, self.cert);
}

static void need_tls(void) {
  sk_tls_cert c;
  if (!tls_built()) {
    assert_int_equal(sk_tls_cert_from_der(&c, "x", 1), SK_ENOTLS);
    assert_int_equal(sk_tls_ctx_cert(NULL, 0, &c), SK_ENOTLS);
    assert_int_equal(sk_tls_resumed(NULL), SK_ENOTLS);
    assert_int_equal(sk_stream_tls_resumed(NULL), SK_ENOTLS);
    skip();
  }
  certs();
}

/* ---- a sync TLS server on a thread ---- */

#define MAXC 8

struct tserver {
  sk_socket l;
  sk_tls_ctx *ctx;
  int conns; /* connections to serve, then the thread ends */
  int rc[MAXC];
  int resumed[MAXC];
  int peer_cert_rc[MAXC];
};

/* Each connection: handshake, "hi", then read until the client ends. */
static void *tserver_main(void *arg) {
  struct tserver *ts = arg;
  for (int i = 0; i < ts->conns; i++) {
    sk_socket c = SK_SOCKET_INIT;
    sk_tls_socket t = {0};
    sk_tls_cert pc;
    char buf[64];
    ts->rc[i] = sk_socket_accept(&ts->l, &c, NULL, 20000);
    if (ts->rc[i] != 0)
      return NULL;
    ts->rc[i] = sk_tls_accept(&t, &c, ts->ctx, 20000);
    if (ts->rc[i] != 0) {
      sk_socket_close(&c, 0);
      continue;
    }
    ts->resumed[i] = sk_tls_resumed(&t);
    ts->peer_cert_rc[i] = sk_tls_peer_cert(&t, &pc);
    sk_tls_cert_free(&pc);
    if (sk_tls_send(&t, "hi", 2, 20000) == 0)
      while (sk_tls_recv(&t, buf, sizeof(buf), 20000) > 0)
        ;
    sk_tls_close(&t, 2000);
  }
  return NULL;
}

static void tserver_start(struct tserver *ts, pthread_t *th, char *addr,
                          size_t len) {
  sk_endpoint ep;
  ts->l = (sk_socket)SK_SOCKET_INIT;
  SK_ASSERT_OK(sk_socket_listen_text(&ts->l, "127.0.0.1:0", 16));
  SK_ASSERT_OK(sk_socket_local(&ts->l, &ep));
  assert_true(sk_endpoint_format(&ep, addr, len) > 0);
  assert_int_equal(pthread_create(th, NULL, tserver_main, ts), 0);
}

static void tserver_end(struct tserver *ts, pthread_t th) {
  pthread_join(th, NULL);
  sk_socket_close(&ts->l, 0);
  sk_tls_ctx_free(ts->ctx);
}

/* Connects and runs the client handshake; on success reads the server's
 * "hi" (which, with TLS 1.3, also takes in its session tickets). */
static int client_open(const char *addr, sk_tls_ctx *cctx, const char *name,
                       sk_socket *s, sk_tls_socket *t) {
  char buf[2];
  size_t got = 0;
  *s = (sk_socket)SK_SOCKET_INIT;
  memset(t, 0, sizeof(*t));
  SK_ASSERT_OK(sk_socket_connect_text(s, addr, SOCK_STREAM, 20000));
  int rc = sk_tls_connect(t, s, cctx, name, 20000);
  if (rc != 0) {
    sk_socket_close(s, 0);
    return rc;
  }
  while (got < 2) {
    ssize_t n = sk_tls_recv(t, buf + got, 2 - got, 20000);
    assert_true(n > 0);
    got += (size_t)n;
  }
  assert_memory_equal(buf, "hi", 2);
  return 0;
}

/* The subject of the certificate the server answered name with. */
static void subject_for(const char *addr, sk_tls_ctx *cctx, const char *name,
                        char *out, size_t len) {
  sk_socket s;
  sk_tls_socket t;
  sk_tls_cert c;
  SK_ASSERT_OK(client_open(addr, cctx, name, &s, &t));
  SK_ASSERT_OK(sk_tls_peer_cert(&t, &c));
  snprintf(out, len, "%s", c.subject);
  sk_tls_cert_free(&c);
  SK_ASSERT_OK(sk_tls_close(&t, 2000));
}

/* ---- the verification callback ---- */

struct seen {
  int calls, error, chain_count, server;
  char error_text[128], servername[64], leaf_subject[128];
  int accept;
  const char *reason;
};

static int verify_cb(void *arg, const sk_tls_verify_info *info, char *reason,
                     size_t reason_len) {
  struct seen *v = arg;
  sk_tls_cert c;
  v->calls++;
  v->error = info->error;
  v->server = info->server;
  v->chain_count = (int)info->chain_count;
  snprintf(v->error_text, sizeof(v->error_text), "%s", info->error_text);
  snprintf(v->servername, sizeof(v->servername), "%s",
           info->servername != NULL ? info->servername : "(null)");
  if (info->chain_count > 0 &&
      sk_tls_cert_from_der(&c, info->chain_der[0], info->chain_len[0]) == 0) {
    snprintf(v->leaf_subject, sizeof(v->leaf_subject), "%s", c.subject);
    sk_tls_cert_free(&c);
  }
  if (v->reason != NULL)
    snprintf(reason, reason_len, "%s", v->reason);
  return v->accept;
}

static void test_verify_cb_accepts_self_signed(void **state) {
  (void)state;
  need_tls();
  struct tserver ts = {.conns = 2};
  pthread_t th;
  char addr[64];
  sk_socket s;
  sk_tls_socket t;
  struct seen v = {.accept = 1};
  ts.ctx = server_ctx(&self);
  tserver_start(&ts, &th, addr, sizeof(addr));

  /* Without the callback, the CA the client trusts does not vouch for it. */
  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  sk_tls_ctx *plain = ctx_new(&o);
  assert_int_equal(client_open(addr, plain, "localhost", &s, &t),
                   SK_ETLSVERIFY);
  sk_tls_ctx_free(plain);

  /* The callback is told OpenSSL's "no" and says yes. */
  o.verify_cb = verify_cb;
  o.verify_arg = &v;
  sk_tls_ctx *cctx = ctx_new(&o);
  SK_ASSERT_OK(client_open(addr, cctx, "localhost", &s, &t));
  assert_int_equal(v.calls, 1);
  assert_int_equal(v.error, 18); /* X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT */
  assert_string_equal(v.error_text, "self-signed certificate");
  assert_int_equal(v.chain_count, 1);
  assert_int_equal(v.server, 0);
  assert_string_equal(v.servername, "localhost");
  assert_string_equal(v.leaf_subject, "CN=self");
  SK_ASSERT_OK(sk_tls_close(&t, 2000));
  tserver_end(&ts, th);
  assert_int_equal(ts.rc[0], SK_ETLSVERIFY); /* the client's alert */
  assert_int_equal(ts.rc[1], 0);
  sk_tls_ctx_free(cctx);
}

static void test_verify_cb_rejects_valid(void **state) {
  (void)state;
  need_tls();
  struct tserver ts = {.conns = 2};
  pthread_t th;
  char addr[64];
  sk_socket s;
  sk_tls_socket t;
  struct seen v = {.accept = 0, .reason = "not on my list"};
  ts.ctx = server_ctx(&a_pair);
  tserver_start(&ts, &th, addr, sizeof(addr));

  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  o.verify_cb = verify_cb;
  o.verify_arg = &v;
  sk_tls_ctx *cctx = ctx_new(&o);
  assert_int_equal(client_open(addr, cctx, "a.test", &s, &t), SK_ETLSVERIFY);
  assert_string_equal(sk_tls_last_error(),
                      "certificate rejected: not on my list");
  assert_int_equal(v.calls, 1);
  assert_int_equal(v.error, 0); /* OpenSSL would have accepted */
  assert_string_equal(v.error_text, "ok");
  assert_int_equal(v.chain_count, 1);
  assert_string_equal(v.leaf_subject, "CN=a.test");

  /* No reason given: OpenSSL's verdict is the text ("hostname mismatch",
   * since a's certificate does not name b.test). */
  v.reason = NULL;
  assert_int_equal(client_open(addr, cctx, "b.test", &s, &t), SK_ETLSVERIFY);
  assert_string_equal(sk_tls_last_error(),
                      "certificate rejected: hostname mismatch");
  assert_int_equal(v.calls, 2);
  tserver_end(&ts, th);
  assert_int_equal(ts.rc[0], SK_ETLSVERIFY);
  sk_tls_ctx_free(cctx);

  /* It excludes insecure_no_verify. */
  o.ca_file = NULL;
  o.insecure_no_verify = 1;
  sk_tls_ctx *bad = NULL;
  assert_int_equal(sk_tls_ctx_new(&bad, &o), -EINVAL);
  assert_null(bad);
}

/* A server with a verification callback asks for a client certificate and
 * lets the callback decide. */
static void test_verify_cb_on_server(void **state) {
  (void)state;
  need_tls();
  struct tserver ts = {.conns = 1};
  pthread_t th;
  char addr[64];
  sk_socket s;
  sk_tls_socket t;
  struct seen v = {.accept = 1};
  sk_tls_options so = {0};
  so.server = 1;
  so.cert_file = a_pair.cert;
  so.key_file = a_pair.key;
  so.verify_cb = verify_cb;
  so.verify_arg = &v;
  ts.ctx = ctx_new(&so);
  tserver_start(&ts, &th, addr, sizeof(addr));
  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  o.cert_file = self.cert;
  o.key_file = self.key;
  sk_tls_ctx *cctx = ctx_new(&o);
  SK_ASSERT_OK(client_open(addr, cctx, "a.test", &s, &t));
  SK_ASSERT_OK(sk_tls_close(&t, 2000));
  tserver_end(&ts, th);
  assert_int_equal(ts.rc[0], 0);
  assert_int_equal(ts.peer_cert_rc[0], 0);
  assert_int_equal(v.calls, 1);
  assert_int_equal(v.server, 1);
  assert_string_equal(v.servername, "a.test"); /* what the client asked */
  assert_string_equal(v.leaf_subject, "CN=self");
  assert_int_not_equal(v.error, 0); /* no CA vouches for it */
  sk_tls_ctx_free(cctx);
}

/* ---- the peer's certificate ---- */

static void test_peer_cert_fields(void **state) {
  (void)state;
  need_tls();
  struct tserver ts = {.conns = 1};
  pthread_t th;
  char addr[64], want[128];
  sk_socket s;
  sk_tls_socket t;
  sk_tls_cert c, again;
  ts.ctx = server_ctx(&b_pair);
  tserver_start(&ts, &th, addr, sizeof(addr));
  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  sk_tls_ctx *cctx = ctx_new(&o);
  memset(&t, 0, sizeof(t));
  assert_int_equal(sk_tls_peer_cert(&t, NULL), -EINVAL);
  assert_int_equal(sk_tls_peer_cert(&t, &c), -ENOTCONN);
  SK_ASSERT_OK(client_open(addr, cctx, "10.1.2.3", &s, &t));
  SK_ASSERT_OK(sk_tls_peer_cert(&t, &c));
  SK_ASSERT_OK(sk_tls_close(&t, 2000));
  tserver_end(&ts, th);
  assert_int_equal(ts.peer_cert_rc[0], -ENOENT); /* the client sent none */

  assert_string_equal(c.subject, "CN=b.test");
  assert_string_equal(c.issuer, "CN=ca");
  assert_int_equal(c.dns_count, 2);
  assert_string_equal(c.dns_names[0], "b.test");
  assert_string_equal(c.dns_names[1], "*.w.test");
  assert_int_equal(c.ip_count, 2);
  assert_string_equal(c.ip_addrs[0], "10.1.2.3");
  assert_string_equal(c.ip_addrs[1], "::1");
  cli_field(b_pair.cert, "-fingerprint -sha256", want, sizeof(want));
  assert_string_equal(c.fingerprint, want);
  /* Made for 2 days, just now. */
  time_t now = time(NULL);
  assert_true(c.not_before <= now && now < c.not_after);
  assert_int_equal(c.not_after - c.not_before, 2 * 86400);
  assert_true(now - c.not_before < 3600);
  /* PEM is the file's certificate; DER decodes to the same. */
  FILE *f = fopen(b_pair.cert, "r");
  char file[4096];
  assert_non_null(f);
  size_t n = fread(file, 1, sizeof(file) - 1, f);
  fclose(f);
  file[n] = '\0';
  assert_string_equal(c.pem, file);
  SK_ASSERT_OK(sk_tls_cert_from_der(&again, c.der, c.der_len));
  assert_string_equal(again.fingerprint, c.fingerprint);
  assert_int_equal(again.not_after, c.not_after);
  sk_tls_cert_free(&again);
  assert_int_equal(sk_tls_cert_from_der(&again, "garbage", 7), SK_ETLS);
  assert_null(again.subject);
  sk_tls_cert_free(&c);
  assert_null(c.subject);
  sk_tls_cert_free(&c); /* twice is fine */
  sk_tls_ctx_free(cctx);
}

/* ---- async: peer certificate and resumption on a stream ---- */

struct aclient {
  sk_stream s;
  int hs_status, hs_calls, resumed, cert_rc;
  char subject[128];
  size_t got;
};

static void a_closed(sk_handle *h) {
  (void)h;
}

static void a_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct aclient *c = (struct aclient *)s; /* s is its first member */
  (void)buf;
  if (n > 0)
    c->got += (size_t)n;
  if (n < 0 || c->got >= 2) {
    sk_stream_recv_stop(s);
    sk_stream_shutdown(s, NULL, NULL);
    sk_close(&s->h, a_closed);
  }
}

static void a_handshake(sk_stream *s, int status) {
  struct aclient *c = (struct aclient *)s;
  sk_tls_cert pc;
  c->hs_calls++;
  c->hs_status = status;
  if (status != 0) {
    sk_close(&s->h, a_closed);
    return;
  }
  c->resumed = sk_stream_tls_resumed(s);
  c->cert_rc = sk_stream_tls_peer_cert(s, &pc);
  if (c->cert_rc == 0)
    snprintf(c->subject, sizeof(c->subject), "%s", pc.subject);
  sk_tls_cert_free(&pc);
  SK_ASSERT_OK(sk_stream_recv_start(s, a_recv));
}

static void async_connect(const char *addr, sk_tls_ctx *cctx,
                          struct aclient *c) {
  sk_loop loop;
  sk_socket sock = SK_SOCKET_INIT;
  memset(c, 0, sizeof(*c));
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_socket_connect_text(&sock, addr, SOCK_STREAM, 20000));
  SK_ASSERT_OK(sk_stream_init(&loop, &c->s));
  SK_ASSERT_OK(sk_stream_open(&c->s, sock.fd));
  assert_int_equal(sk_stream_tls_resumed(&c->s), -ENOTCONN);
  SK_ASSERT_OK(sk_stream_tls_start(&c->s, cctx, "a.test", a_handshake));
  sk_test_run(&loop, 30000);
  sk_test_loop_done(&loop);
  assert_int_equal(c->hs_calls, 1);
}

static void test_async_resumption_and_peer_cert(void **state) {
  (void)state;
  need_tls();
  struct tserver ts = {.conns = 2};
  pthread_t th;
  char addr[64];
  struct aclient c;
  ts.ctx = server_ctx(&a_pair);
  tserver_start(&ts, &th, addr, sizeof(addr));
  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  sk_tls_ctx *cctx = ctx_new(&o);
  async_connect(addr, cctx, &c);
  SK_ASSERT_OK(c.hs_status);
  assert_int_equal(c.resumed, 0);
  assert_int_equal(c.cert_rc, 0);
  assert_string_equal(c.subject, "CN=a.test");
  assert_int_equal(c.got, 2);
  async_connect(addr, cctx, &c);
  SK_ASSERT_OK(c.hs_status);
  assert_int_equal(c.resumed, 1);
  /* A resumed session still knows the certificate verified first. */
  assert_int_equal(c.cert_rc, 0);
  assert_string_equal(c.subject, "CN=a.test");
  tserver_end(&ts, th);
  assert_int_equal(ts.resumed[0], 0);
  assert_int_equal(ts.resumed[1], 1);
  sk_tls_ctx_free(cctx);
}

/* ---- certificates chosen by SNI ---- */

static int pick_second(void *arg, const char *name, size_t count) {
  int *calls = arg;
  (*calls)++;
  assert_int_equal(count, 3);
  if (name != NULL && strcmp(name, "refuse.test") == 0)
    return 7;
  if (name != NULL && strcmp(name, "auto.w.test") == 0)
    return -1;
  return 1;
}

static void test_sni_picks_certificate(void **state) {
  (void)state;
  need_tls();
  struct tserver ts = {.conns = 7};
  pthread_t th;
  char addr[64], subj[128];
  sk_tls_cert_file more[2];
  sk_tls_options so = {0};
  more[0].cert_file = b_pair.cert;
  more[0].key_file = b_pair.key;
  more[1].cert_file = w_pair.cert;
  more[1].key_file = w_pair.key;
  so.server = 1;
  so.cert_file = a_pair.cert;
  so.key_file = a_pair.key;
  so.more_certs = more;
  so.more_certs_count = 2;
  ts.ctx = ctx_new(&so);
  sk_tls_cert own;
  SK_ASSERT_OK(sk_tls_ctx_cert(ts.ctx, 2, &own));
  assert_string_equal(own.subject, "CN=w.test");
  sk_tls_cert_free(&own);
  assert_int_equal(sk_tls_ctx_cert(ts.ctx, 3, &own), -ENOENT);
  tserver_start(&ts, &th, addr, sizeof(addr));

  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  sk_tls_ctx *verifying = ctx_new(&o);
  sk_tls_options io = {0};
  io.insecure_no_verify = 1;
  sk_tls_ctx *any = ctx_new(&io);

  /* b.test gets b's certificate, and it verifies for b.test. */
  subject_for(addr, verifying, "b.test", subj, sizeof(subj));
  assert_string_equal(subj, "CN=b.test");
  /* x.w.test is held by the wildcard *.w.test of b and of w: the earlier
   * (b) wins. exact.w.test is held by b's wildcard too, but by name in w:
   * the exact name wins. */
  subject_for(addr, verifying, "x.w.test", subj, sizeof(subj));
  assert_string_equal(subj, "CN=b.test");
  subject_for(addr, verifying, "exact.w.test", subj, sizeof(subj));
  assert_string_equal(subj, "CN=w.test");
  /* A wildcard stands for one label only: a.x.w.test has no certificate
   * and gets the default. */
  subject_for(addr, any, "a.x.w.test", subj, sizeof(subj));
  assert_string_equal(subj, "CN=a.test");
  /* Unknown names and no name at all get the default. */
  subject_for(addr, any, "unknown.test", subj, sizeof(subj));
  assert_string_equal(subj, "CN=a.test");
  subject_for(addr, any, NULL, subj, sizeof(subj));
  assert_string_equal(subj, "CN=a.test");
  subject_for(addr, verifying, "a.test", subj, sizeof(subj));
  assert_string_equal(subj, "CN=a.test");
  tserver_end(&ts, th);
  for (int i = 0; i < 7; i++)
    assert_int_equal(ts.rc[i], 0);

  /* A selection callback decides, may defer to matching, or refuses. */
  int calls = 0;
  so.select_cb = pick_second;
  so.select_arg = &calls;
  struct tserver ts2 = {.conns = 3};
  ts2.ctx = ctx_new(&so);
  tserver_start(&ts2, &th, addr, sizeof(addr));
  subject_for(addr, any, "whatever.test", subj, sizeof(subj));
  assert_string_equal(subj, "CN=b.test");
  subject_for(addr, any, "auto.w.test", subj, sizeof(subj));
  assert_string_equal(subj, "CN=b.test");
  sk_socket s;
  sk_tls_socket t;
  assert_true(client_open(addr, any, "refuse.test", &s, &t) < 0);
  tserver_end(&ts2, th);
  assert_int_equal(calls, 3);
  assert_int_not_equal(ts2.rc[2], 0);
  sk_tls_ctx_free(verifying);
  sk_tls_ctx_free(any);
}

/* ---- session resumption ---- */

/* Two connections with one client context; returns whether the second
 * resumed, as the client and the server saw it. */
static void two_connections(sk_tls_ctx *sctx, sk_tls_ctx *cctx,
                            int *client_resumed, int *server_resumed) {
  struct tserver ts = {.conns = 2, .ctx = sctx};
  pthread_t th;
  char addr[64];
  sk_socket s;
  sk_tls_socket t;
  tserver_start(&ts, &th, addr, sizeof(addr));
  SK_ASSERT_OK(client_open(addr, cctx, "a.test", &s, &t));
  assert_int_equal(sk_tls_resumed(&t), 0);
  SK_ASSERT_OK(sk_tls_close(&t, 2000));
  SK_ASSERT_OK(client_open(addr, cctx, "a.test", &s, &t));
  *client_resumed = sk_tls_resumed(&t);
  SK_ASSERT_OK(sk_tls_close(&t, 2000));
  tserver_end(&ts, th);
  assert_int_equal(ts.rc[0], 0);
  assert_int_equal(ts.rc[1], 0);
  assert_int_equal(ts.resumed[0], 0);
  *server_resumed = ts.resumed[1];
}

/* The same with a new client context for o and a new server context for so:
 * checks that both sides agree whether the second connection resumed. */
static void expect_resumed(const sk_tls_options *o, const sk_tls_options *so,
                           int want) {
  int cr, sr;
  sk_tls_ctx *cctx = ctx_new(o);
  two_connections(ctx_new(so), cctx, &cr, &sr);
  assert_int_equal(cr, want);
  assert_int_equal(sr, want);
  sk_tls_ctx_free(cctx);
}

static void test_resumption(void **state) {
  (void)state;
  need_tls();
  int cr, sr;
  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  sk_tls_options so = {0};
  so.server = 1;
  so.cert_file = a_pair.cert;
  so.key_file = a_pair.key;

  sk_tls_ctx *cctx = ctx_new(&o);
  assert_int_equal(sk_tls_resumed(NULL), -ENOTCONN);
  two_connections(ctx_new(&so), cctx, &cr, &sr);
  assert_int_equal(cr, 1);
  assert_int_equal(sr, 1);
  /* A new server context has new ticket keys: the old session is offered
   * and refused, and a full handshake follows. */
  two_connections(ctx_new(&so), cctx, &cr, &sr);
  assert_int_equal(cr, 1); /* resumed the second connection's session */
  sk_tls_ctx_free(cctx);

  /* Off on the client: nothing remembered, nothing offered. */
  o.no_resumption = 1;
  expect_resumed(&o, &so, 0);

  /* Off on the server: no tickets. */
  o.no_resumption = 0;
  so.no_resumption = 1;
  expect_resumed(&o, &so, 0);

  /* With a lifetime of its own. */
  so.no_resumption = 0;
  so.ticket_lifetime_s = 60;
  expect_resumed(&o, &so, 1);

  /* Server-only options on a client are refused. */
  o.ticket_lifetime_s = 60;
  sk_tls_ctx *bad = NULL;
  assert_int_equal(sk_tls_ctx_new(&bad, &o), -EINVAL);
  so.ticket_lifetime_s = -1;
  assert_int_equal(sk_tls_ctx_new(&bad, &so), -EINVAL);
  assert_null(bad);
}

/* ---- load errors name the file and the reason ---- */

static void expect_load_error(const sk_tls_options *o, const char *want) {
  sk_tls_ctx *ctx = NULL;
  assert_int_equal(sk_tls_ctx_new(&ctx, o), SK_ETLS);
  assert_null(ctx);
  assert_string_equal(sk_tls_last_error(), want);
}

static void test_load_errors(void **state) {
  (void)state;
  need_tls();
  char missing[160], garbage[160], want[512];
  snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
  snprintf(garbage, sizeof(garbage), "%s/garbage.pem", dir);
  FILE *f = fopen(garbage, "w");
  assert_non_null(f);
  fputs("this is not PEM\n", f);
  fclose(f);

  sk_tls_options so = {0};
  so.server = 1;
  so.cert_file = missing;
  so.key_file = a_pair.key;
  snprintf(want, sizeof(want),
           "cannot load certificate %s: No such file or directory", missing);
  expect_load_error(&so, want);

  so.cert_file = garbage;
  snprintf(want, sizeof(want), "cannot load certificate %s: no PEM data found",
           garbage);
  expect_load_error(&so, want);

  so.cert_file = dir;
  snprintf(want, sizeof(want), "cannot load certificate %s: Is a directory",
           dir);
  expect_load_error(&so, want);

  so.cert_file = a_pair.cert;
  so.key_file = missing;
  snprintf(want, sizeof(want),
           "cannot load private key %s: No such file or directory", missing);
  expect_load_error(&so, want);

  so.key_file = garbage;
  snprintf(want, sizeof(want),
           "cannot load private key %s: no PEM private key found", garbage);
  expect_load_error(&so, want);

  so.key_file = b_pair.key;
  snprintf(want, sizeof(want),
           "private key %s does not match the certificate in %s", b_pair.key,
           a_pair.cert);
  expect_load_error(&so, want);

  /* The same for the SNI certificates. */
  sk_tls_cert_file more = {b_pair.cert, a_pair.key};
  so.key_file = a_pair.key;
  so.more_certs = &more;
  so.more_certs_count = 1;
  snprintf(want, sizeof(want),
           "private key %s does not match the certificate in %s", a_pair.key,
           b_pair.cert);
  expect_load_error(&so, want);
  so.more_certs = NULL;
  so.more_certs_count = 0;

  /* CA files, on both sides. */
  sk_tls_options o = {0};
  o.ca_file = missing;
  snprintf(want, sizeof(want),
           "cannot load CA file %s: No such file or directory", missing);
  expect_load_error(&o, want);
  so.ca_file = missing;
  expect_load_error(&so, want);
  o.ca_file = garbage;
  snprintf(want, sizeof(want),
           "cannot load CA file %s: no certificate or crl found", garbage);
  expect_load_error(&o, want);
  o.ca_file = NULL;
  o.ca_dir = missing;
  snprintf(want, sizeof(want),
           "cannot load CA directory %s: No such file or directory", missing);
  expect_load_error(&o, want);

  /* An expired certificate loads; sk_tls_ctx_cert() tells. */
  sk_tls_options eo = {0};
  eo.server = 1;
  eo.cert_file = expired.cert;
  eo.key_file = expired.key;
  sk_tls_ctx *ctx = ctx_new(&eo);
  sk_tls_cert c;
  SK_ASSERT_OK(sk_tls_ctx_cert(ctx, 0, &c));
  assert_true(c.not_after < time(NULL));
  sk_tls_cert_free(&c);
  assert_int_equal(sk_tls_ctx_cert(ctx, 1, &c), -ENOENT);
  sk_tls_ctx_free(ctx);
}

SK_TEST_MAIN(cmocka_unit_test(test_verify_cb_accepts_self_signed),
             cmocka_unit_test(test_verify_cb_rejects_valid),
             cmocka_unit_test(test_verify_cb_on_server),
             cmocka_unit_test(test_peer_cert_fields),
             cmocka_unit_test(test_async_resumption_and_peer_cert),
             cmocka_unit_test(test_sni_picks_certificate),
             cmocka_unit_test(test_resumption),
             cmocka_unit_test(test_load_errors))
