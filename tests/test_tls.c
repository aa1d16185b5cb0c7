/* TLS: async streams and sync sockets over TLS, against each other and
 * against peers nobody here wrote (openssl s_server / s_client, Python's ssl
 * module). Certificates are made at run time with the openssl command-line
 * tool in a private temporary directory, removed at exit; no key is ever
 * committed. SK_TEST_ASYNC: registered once per backend.
 *
 * Built without TLS, every test checks that the API says SK_ENOTLS and is
 * skipped. */
#include "sk_test.h"
#include "tls_certs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- certificates, made with the openssl tool (tls_certs.h) ---- */

static struct pair good;      /* localhost, 127.0.0.1, ::1, by the test CA */
static struct pair expired;   /* same names, expired yesterday */
static struct pair wronghost; /* only for wrong.example.invalid */
static struct pair untrusted; /* localhost, by a CA nobody trusts */
static struct pair client;    /* client certificate by the test CA */

#define SERVER_EXT                                                             \
  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"                         \
  "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"

static void certs(void) {
  if (!certs_begin("/tmp/sk-tls-XXXXXX"))
    return;
  make_ca("otherca");
  make_leaf(&good, "localhost", "localhost", "ca", SERVER_EXT, 2);
  make_leaf(&expired, "expired", "expired", "ca", SERVER_EXT, -1);
  make_leaf(&wronghost, "wronghost", "wronghost", "ca",
            "subjectAltName=DNS:wrong.example.invalid\n"
            "extendedKeyUsage=serverAuth\n",
            2);
  make_leaf(&untrusted, "untrusted", "untrusted", "otherca", SERVER_EXT, 2);
  make_leaf(&client, "client", "client", "ca",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n", 2);
}

/* SHA-256 fingerprint of a certificate file as the openssl tool prints it. */
static void cli_fingerprint(const char *cert, char *out, size_t len) {
  cli_field(cert, "-fingerprint -sha256", out, len);
}

/* Skips the test when the library was built without TLS (after checking
 * that it says so properly), and makes the certificates otherwise. */
static void need_tls(void) {
  if (!tls_built())
    skip();
  certs();
}

static sk_tls_ctx *client_ctx(void) {
  sk_tls_options o = {0};
  o.ca_file = ca_pem;
  return ctx_new(&o);
}

/* ---- an async echo server (TLS or plain) ---- */

#define CHUNK     (64 * 1024)
#define QUEUE_CAP (256 * 1024)

enum { PLAIN_NONE, PLAIN_GREET, PLAIN_CLOSE, PLAIN_SILENT };

struct server {
  sk_stream l;
  sk_endpoint ep;
  sk_tls_ctx *ctx;
  int plain; /* PLAIN_*: no TLS, for testing clients against non-TLS */
  const char *greeting;
  int max_conns, accepted, closed;
  size_t close_after; /* TLS: shut down after echoing this many bytes */
  int cut;            /* TLS: send "bye", then close without close_notify */
  int hs_ok, hs_fail, hs_status;
  char hs_err[256];
  int end_status; /* last recv end other than SK_EOF, or 0 */
  char end_err[256];
  char alpn[32];
  char peer_fp[SK_TLS_FINGERPRINT_LEN];
  int peer_fp_rc;
};

struct sconn {
  sk_stream s;
  struct server *srv;
  size_t received;
  int ended, shut_started, shut_done, paused;
};

static void sconn_closed(sk_handle *h) {
  struct sconn *c = h->data;
  c->srv->closed++;
  free(c);
}

static void sconn_close(struct sconn *c) {
  if (!sk_is_closing(&c->s.h))
    sk_close(&c->s.h, sconn_closed);
}

static void sconn_maybe_close(struct sconn *c) {
  if (c->ended && c->shut_done)
    sconn_close(c);
}

static void sconn_shut_cb(sk_stream *s, int status, void *arg) {
  struct sconn *c = arg;
  (void)s;
  (void)status;
  c->shut_done = 1;
  sconn_maybe_close(c);
}

static void sconn_shutdown(struct sconn *c) {
  c->shut_started = 1;
  if (sk_stream_shutdown(&c->s, sconn_shut_cb, c) != 0)
    sconn_close(c);
}

static void sconn_drain(sk_stream *s) {
  struct sconn *c = s->h.data;
  if (c->paused) {
    c->paused = 0;
    sk_stream_recv_resume(s);
  }
}

static void sconn_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct sconn *c = s->h.data;
  struct server *srv = c->srv;
  if (n > 0) {
    if (sk_stream_send(s, buf, (size_t)n, NULL, NULL) != 0) {
      sconn_close(c);
      return;
    }
    c->received += (size_t)n;
    /* Back-pressure: stop reading while the peer is slow to take the
     * echo; TLS keeps the rest inside, undecrypted. */
    if (sk_stream_write_queue_size(s) > QUEUE_CAP) {
      c->paused = 1;
      sk_stream_recv_pause(s);
    }
    if (srv->close_after > 0 && c->received >= srv->close_after &&
        !c->shut_started)
      sconn_shutdown(c);
    return;
  }
  c->ended = 1;
  if (n != SK_EOF) {
    srv->end_status = (int)n;
    snprintf(srv->end_err, sizeof(srv->end_err), "%s", sk_tls_last_error());
    sconn_close(c);
    return;
  }
  if (!c->shut_started)
    sconn_shutdown(c);
  sconn_maybe_close(c);
}

static void plain_done(sk_stream *s, int status, void *arg);

static void sconn_hs(sk_stream *s, int status) {
  struct sconn *c = s->h.data;
  struct server *srv = c->srv;
  if (status != 0) {
    srv->hs_fail++;
    srv->hs_status = status;
    snprintf(srv->hs_err, sizeof(srv->hs_err), "%s", sk_tls_last_error());
    sconn_close(c);
    return;
  }
  srv->hs_ok++;
  const char *a = sk_stream_tls_alpn(s);
  snprintf(srv->alpn, sizeof(srv->alpn), "%s", a != NULL ? a : "");
  srv->peer_fp_rc =
      sk_stream_tls_peer_fingerprint(s, srv->peer_fp, sizeof(srv->peer_fp));
  if (srv->cut) {
    SK_ASSERT_OK(sk_stream_send(s, "bye", 3, plain_done, c));
    return;
  }
  sk_stream_on_drain(s, sconn_drain);
  SK_ASSERT_OK(sk_stream_recv_start(s, sconn_recv));
}

static void plain_done(sk_stream *s, int status, void *arg) {
  (void)status;
  sconn_close(arg);
  (void)s;
}

static void plain_silent_recv(sk_stream *s, ssize_t n, const void *buf) {
  (void)buf;
  if (n < 0)
    sconn_close(s->h.data);
}

static void server_accept(sk_stream *l, int status, int fd,
                          const sk_endpoint *peer) {
  struct server *srv = l->h.data;
  (void)peer;
  assert_int_equal(status, 0);
  struct sconn *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->srv = srv;
  SK_ASSERT_OK(sk_stream_init(l->h.loop, &c->s));
  c->s.h.data = c;
  SK_ASSERT_OK(sk_stream_open(&c->s, fd));
  if (++srv->accepted == srv->max_conns)
    sk_close(&l->h, NULL);
  switch (srv->plain) {
  case PLAIN_GREET:
    SK_ASSERT_OK(sk_stream_send(&c->s, srv->greeting, strlen(srv->greeting),
                                plain_done, c));
    break;
  case PLAIN_CLOSE:
    sconn_close(c);
    break;
  case PLAIN_SILENT:
    SK_ASSERT_OK(sk_stream_recv_start(&c->s, plain_silent_recv));
    break;
  default:
    SK_ASSERT_OK(sk_stream_tls_start(&c->s, srv->ctx, NULL, sconn_hs));
  }
}

static void server_start(sk_loop *loop, struct server *srv, int max_conns) {
  srv->max_conns = max_conns;
  SK_ASSERT_OK(sk_stream_init(loop, &srv->l));
  srv->l.h.data = srv;
  SK_ASSERT_OK(sk_endpoint_loopback(&srv->ep, AF_INET, 0));
  SK_ASSERT_OK(sk_stream_listen(&srv->l, &srv->ep, 0, 0));
  SK_ASSERT_OK(sk_socket_local(&srv->l.sock, &srv->ep));
  SK_ASSERT_OK(sk_stream_accept_start(&srv->l, server_accept));
}

/* ---- an async client ---- */

struct gen {
  uint64_t x;
};
static unsigned char gen_byte(struct gen *g) {
  g->x ^= g->x << 13;
  g->x ^= g->x >> 7;
  g->x ^= g->x << 17;
  return (unsigned char)g->x;
}

struct client {
  sk_stream s;
  sk_tls_ctx *ctx;
  const char *servername;
  int plain;             /* no TLS: just send plain_msg, then read */
  const char *plain_msg; /* plain: what to send */
  const char *line;      /* TLS: send this line, read until expect */
  const char *expect;
  int collect; /* keep what arrives in got, until the end */
  char got[256];
  size_t gotlen;
  size_t total, sent, received, mismatches;
  struct gen tx, rx;
  int no_shutdown, shut_started;
  int pause_reads; /* pause for a moment every 256 KiB received */
  sk_timer pause_timer;
  int hs_status; /* 1 until the handshake callback ran */
  char hs_err[256];
  int end_status; /* 1 until receiving ended */
  char end_err[256];
  char version[32], alpn[32];
  char peer_fp[SK_TLS_FINGERPRINT_LEN];
  int send_before_hs; /* what a send before the handshake returned */
  int sendfile_rc;
  int closed;
  char tls_err[256]; /* sk_stream_tls_error() in the handshake callback */
  /* Send file_fd's first file_len bytes with sk_stream_sendfile first. */
  int use_file, file_fd, file_status;
  size_t file_len;
  size_t max_wq_mem; /* most write queue memory seen while receiving */
};

static void client_closed(sk_handle *h) {
  struct client *c = h->data;
  c->closed = 1;
  if (c->pause_reads)
    sk_close(&c->pause_timer.h, NULL);
}

static void client_close(struct client *c) {
  if (!sk_is_closing(&c->s.h))
    sk_close(&c->s.h, client_closed);
}

static void client_shut_cb(sk_stream *s, int status, void *arg) {
  (void)s;
  (void)status;
  (void)arg;
}

static void client_file_sent(sk_stream *s, int status, void *arg) {
  (void)s;
  ((struct client *)arg)->file_status = status;
}

static void client_pump(struct client *c) {
  unsigned char buf[CHUNK];
  if (sk_is_closing(&c->s.h))
    return;
  if (c->use_file && c->sent == 0) {
    c->file_status = 1;
    SK_ASSERT_OK(sk_stream_sendfile(&c->s, c->file_fd, 0, c->file_len,
                                    client_file_sent, c));
    c->sent = c->file_len;
    /* What follows goes at once, while the file is still queued. */
    while (c->sent < c->total) {
      size_t n = c->total - c->sent < CHUNK ? c->total - c->sent : CHUNK;
      for (size_t i = 0; i < n; i++)
        buf[i] = gen_byte(&c->tx);
      SK_ASSERT_OK(sk_stream_send(&c->s, buf, n, NULL, NULL));
      c->sent += n;
    }
  }
  while (c->sent < c->total && sk_stream_write_queue_size(&c->s) < QUEUE_CAP) {
    size_t n = c->total - c->sent < CHUNK ? c->total - c->sent : CHUNK;
    for (size_t i = 0; i < n; i++)
      buf[i] = gen_byte(&c->tx);
    if (sk_stream_send(&c->s, buf, n, NULL, NULL) != 0)
      return;
    c->sent += n;
  }
  if (c->sent == c->total && !c->no_shutdown && !c->shut_started) {
    c->shut_started = 1;
    sk_stream_shutdown(&c->s, client_shut_cb, c);
  }
}

static void client_drain(sk_stream *s) {
  client_pump(s->h.data);
}

static void client_unpause(sk_timer *t) {
  struct client *c = t->h.data;
  if (!sk_is_closing(&c->s.h))
    sk_stream_recv_resume(&c->s);
}

static void client_end(struct client *c, ssize_t n) {
  c->end_status = (int)n;
  if (n != SK_EOF)
    snprintf(c->end_err, sizeof(c->end_err), "%s", sk_tls_last_error());
  client_close(c);
}

static void client_recv(sk_stream *s, ssize_t n, const void *buf) {
  struct client *c = s->h.data;
  const unsigned char *b = buf;
  if (n < 0) {
    client_end(c, n);
    return;
  }
  if (c->expect != NULL || c->collect) {
    size_t room = sizeof(c->got) - 1 - c->gotlen;
    size_t k = (size_t)n < room ? (size_t)n : room;
    memcpy(c->got + c->gotlen, buf, k);
    c->gotlen += k;
    c->got[c->gotlen] = '\0';
    if (c->expect != NULL && c->gotlen >= strlen(c->expect))
      client_close(c);
    return;
  }
  for (ssize_t i = 0; i < n; i++)
    if (b[i] != gen_byte(&c->rx))
      c->mismatches++;
  size_t before = c->received;
  c->received += (size_t)n;
  if (sk_stream_write_queue_memory(s) > c->max_wq_mem)
    c->max_wq_mem = sk_stream_write_queue_memory(s);
  if (c->pause_reads && before / (256 * 1024) != c->received / (256 * 1024)) {
    /* Resuming later must deliver what TLS holds already decrypted or
     * still encrypted, without new bytes from the socket to trigger it. */
    sk_stream_recv_pause(s);
    SK_ASSERT_OK(sk_timer_start(&c->pause_timer, client_unpause, 5, 0));
  }
}

static void client_hs(sk_stream *s, int status) {
  struct client *c = s->h.data;
  c->hs_status = status;
  snprintf(c->tls_err, sizeof(c->tls_err), "%s", sk_stream_tls_error(s));
  if (status != 0) {
    snprintf(c->hs_err, sizeof(c->hs_err), "%s", sk_tls_last_error());
    client_close(c);
    return;
  }
  const char *v = sk_stream_tls_version(s);
  const char *a = sk_stream_tls_alpn(s);
  assert_non_null(v);
  assert_non_null(sk_stream_tls_cipher(s));
  snprintf(c->version, sizeof(c->version), "%s", v);
  snprintf(c->alpn, sizeof(c->alpn), "%s", a != NULL ? a : "");
  SK_ASSERT_OK(
      sk_stream_tls_peer_fingerprint(s, c->peer_fp, sizeof(c->peer_fp)));
  /* Files go over TLS too (test_transport.c sends them); a bad descriptor
   * is refused at once, before the stream or the session is touched. */
  c->sendfile_rc = sk_stream_sendfile(s, -1, 0, 1, NULL, NULL);
  sk_stream_on_drain(s, client_drain);
  SK_ASSERT_OK(sk_stream_recv_start(s, client_recv));
  if (c->line != NULL)
    SK_ASSERT_OK(sk_stream_send(s, c->line, strlen(c->line), NULL, NULL));
  else
    client_pump(c);
}

static void client_plain_recv(sk_stream *s, ssize_t n, const void *buf) {
  (void)buf;
  if (n < 0)
    client_end(s->h.data, n);
}

static void client_connected(sk_stream *s, int status) {
  struct client *c = s->h.data;
  assert_int_equal(status, 0);
  if (c->plain) {
    if (c->plain_msg != NULL)
      SK_ASSERT_OK(
          sk_stream_send(s, c->plain_msg, strlen(c->plain_msg), NULL, NULL));
    SK_ASSERT_OK(sk_stream_recv_start(s, client_plain_recv));
    return;
  }
  SK_ASSERT_OK(sk_stream_tls_start(s, c->ctx, c->servername, client_hs));
  c->send_before_hs = sk_stream_send(s, "x", 1, NULL, NULL);
}

static void client_start(sk_loop *loop, struct client *c,
                         const sk_endpoint *ep) {
  c->hs_status = 1;
  c->end_status = 1;
  SK_ASSERT_OK(sk_stream_init(loop, &c->s));
  c->s.h.data = c;
  if (c->pause_reads) {
    SK_ASSERT_OK(sk_timer_init(loop, &c->pause_timer));
    c->pause_timer.h.data = c;
  }
  SK_ASSERT_OK(sk_stream_connect(&c->s, ep, 1, 5000, client_connected));
}

/* Runs one client against one server until both are done. */
static void run_pair(struct server *srv, struct client *c) {
  sk_loop loop;
  SK_ASSERT_OK(sk_loop_init(&loop));
  server_start(&loop, srv, 1);
  client_start(&loop, c, &srv->ep);
  sk_test_run(&loop, 20000);
  assert_true(c->closed);
  sk_test_loop_done(&loop);
}

static void expect_client_fails(struct client *c, int code, const char *words) {
  assert_int_equal(c->hs_status, code);
  /* The stream keeps the text the callback's sk_tls_last_error() gave. */
  assert_string_equal(c->tls_err, c->hs_err);
  if (strstr(c->hs_err, words) == NULL)
    fail_msg("client error \"%s\" does not mention \"%s\"", c->hs_err, words);
}

/* ---- async: successful sessions ---- */

#define MIB (1024u * 1024)

static void echo_check(struct client *c, size_t total) {
  assert_int_equal(c->hs_status, 0);
  assert_string_equal(c->tls_err, ""); /* no failure, no text */
  assert_int_equal(c->received, total);
  assert_int_equal(c->mismatches, 0);
  assert_int_equal(c->end_status, SK_EOF); /* close_notify, then FIN */
}

static void test_async_echo_1mib(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  struct client c = {0};
  srv.ctx = server_ctx(&good);
  c.ctx = client_ctx();
  c.servername = "localhost";
  c.total = MIB;
  c.tx.x = c.rx.x = 0x1234567;
  c.pause_reads = 1;
  run_pair(&srv, &c);
  echo_check(&c, MIB);
  assert_string_equal(c.version, "TLSv1.3");
  assert_int_equal(c.send_before_hs, -ENOTCONN);
  assert_int_equal(c.sendfile_rc, -EINVAL);
  assert_int_equal(srv.hs_ok, 1);
  assert_int_equal(srv.end_status, 0);
  assert_int_equal(srv.peer_fp_rc, -ENOENT); /* no client certificate */
  char fp[SK_TLS_FINGERPRINT_LEN];
  cli_fingerprint(good.cert, fp, sizeof(fp));
  assert_string_equal(c.peer_fp, fp);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
}

/* sk_stream_sendfile over TLS: the library reads the file in chunks and
 * encrypts them, in order with the sends and the shutdown made after it
 * (while the file is still queued), holding one chunk at a time however
 * large the file. */
static void test_async_sendfile_8mib(void **state) {
  (void)state;
  need_tls();
  enum { SIZE = 8 * 1024 * 1024, AFTER = 300 * 1000 };
  char path[] = "/tmp/sockit-tls-sendfile-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  struct gen g = {0x2545F491};
  unsigned char *buf = malloc(CHUNK);
  assert_non_null(buf);
  for (size_t off = 0; off < SIZE; off += CHUNK) {
    for (size_t i = 0; i < CHUNK; i++)
      buf[i] = gen_byte(&g);
    assert_int_equal(write(fd, buf, CHUNK), CHUNK);
  }
  free(buf);
  struct server srv = {0};
  struct client c = {0};
  srv.ctx = server_ctx(&good);
  c.ctx = client_ctx();
  c.servername = "localhost";
  c.total = SIZE + AFTER;
  c.use_file = 1;
  c.file_fd = fd;
  c.file_len = SIZE;
  c.tx = g; /* the sends after the file go on with the same sequence */
  c.rx.x = 0x2545F491;
  run_pair(&srv, &c);
  echo_check(&c, SIZE + AFTER);
  assert_int_equal(c.file_status, 0);
  /* The sends held behind the file and one chunk of ciphertext at a time
   * are queued, never the file. */
  assert_true(c.max_wq_mem < AFTER + 256 * 1024);
  assert_int_equal(srv.end_status, 0);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
  close(fd);
}

static void test_async_verify_ip_literal(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  struct client c = {0};
  srv.ctx = server_ctx(&good);
  c.ctx = client_ctx();
  c.servername = "127.0.0.1"; /* matched against the IP SAN, no SNI */
  c.total = 1000;
  c.tx.x = c.rx.x = 42;
  run_pair(&srv, &c);
  echo_check(&c, 1000);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
}

static void test_async_hundred_clients(void **state) {
  (void)state;
  need_tls();
  enum { N = 100 };
  /* 100 MiB each way through two TLS stacks in one thread took 27 s under
   * TSan; the test is about 100 concurrent sessions, not volume. */
  const size_t each = SK_TEST_SANITIZED ? MIB / 8 : MIB;
  struct server srv = {0};
  struct client *cs = calloc(N, sizeof(*cs));
  sk_loop loop;
  struct timespec t0, t1;
  assert_non_null(cs);
  srv.ctx = server_ctx(&good);
  sk_tls_ctx *cctx = client_ctx();
  clock_gettime(CLOCK_MONOTONIC, &t0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  server_start(&loop, &srv, N);
  for (int i = 0; i < N; i++) {
    cs[i].ctx = cctx;
    cs[i].servername = "localhost";
    cs[i].total = each;
    cs[i].tx.x = cs[i].rx.x = 1000 + (uint64_t)i;
    client_start(&loop, &cs[i], &srv.ep);
  }
  sk_test_run(&loop, 60000);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  for (int i = 0; i < N; i++)
    echo_check(&cs[i], each);
  assert_int_equal(srv.hs_ok, N);
  assert_int_equal(srv.closed, N);
  print_message(
      "100 TLS clients x %zu KiB echoed in %.2f s (%s)\n", each / 1024,
      (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
      sk_loop_backend(&loop));
  sk_test_loop_done(&loop);
  sk_tls_ctx_free(cctx);
  sk_tls_ctx_free(srv.ctx);
  free(cs);
}

static void test_async_mutual_tls(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  struct client c = {0};
  sk_tls_options so = {0}, co = {0};
  so.server = 1;
  so.cert_file = good.cert;
  so.key_file = good.key;
  so.ca_file = ca_pem;
  so.require_client_cert = 1;
  co.ca_file = ca_pem;
  co.cert_file = client.cert;
  co.key_file = client.key;
  srv.ctx = ctx_new(&so);
  c.ctx = ctx_new(&co);
  c.servername = "localhost";
  c.total = 100000;
  c.tx.x = c.rx.x = 7;
  run_pair(&srv, &c);
  echo_check(&c, 100000);
  char fp[SK_TLS_FINGERPRINT_LEN];
  cli_fingerprint(client.cert, fp, sizeof(fp));
  assert_int_equal(srv.peer_fp_rc, 0);
  assert_string_equal(srv.peer_fp, fp);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
}

static void test_async_alpn(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  struct client c = {0};
  sk_tls_options so = {0}, co = {0};
  so.server = 1;
  so.cert_file = good.cert;
  so.key_file = good.key;
  so.alpn = "sockit/1,h2";
  co.ca_file = ca_pem;
  co.alpn = "h2,sockit/1";
  srv.ctx = ctx_new(&so);
  c.ctx = ctx_new(&co);
  c.servername = "localhost";
  c.total = 10;
  run_pair(&srv, &c);
  echo_check(&c, 10);
  /* The server's preference wins. */
  assert_string_equal(c.alpn, "sockit/1");
  assert_string_equal(srv.alpn, "sockit/1");
  sk_tls_ctx_free(c.ctx);

  /* A client offering only protocols the server does not speak is
   * refused. */
  struct server srv2 = {0};
  struct client c2 = {0};
  co.alpn = "http/1.1";
  srv2.ctx = srv.ctx;
  c2.ctx = ctx_new(&co);
  c2.servername = "localhost";
  run_pair(&srv2, &c2);
  assert_true(c2.hs_status < 0);
  assert_true(srv2.hs_status < 0);
  sk_tls_ctx_free(c2.ctx);
  sk_tls_ctx_free(srv.ctx);
}

static void test_async_insecure_accepts_untrusted(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  struct client c = {0};
  sk_tls_options co = {0};
  co.insecure_no_verify = 1;
  srv.ctx = server_ctx(&untrusted);
  c.ctx = ctx_new(&co);
  c.servername = "localhost";
  c.total = 5000;
  run_pair(&srv, &c);
  echo_check(&c, 5000);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
}

/* Lower case without colons: a form the pin must accept too. */
static void pin_plain_lower(const char *fp, char *out) {
  size_t n = 0;
  for (const char *p = fp; *p != '\0'; p++)
    if (*p != ':')
      out[n++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
  out[n] = '\0';
}

static void test_async_pin(void **state) {
  (void)state;
  need_tls();
  char fp[SK_TLS_FINGERPRINT_LEN], plain[80];
  cli_fingerprint(untrusted.cert, fp, sizeof(fp));
  pin_plain_lower(fp, plain);
  const char *pins[] = {fp, plain};
  for (int i = 0; i < 2; i++) {
    struct server srv = {0};
    struct client c = {0};
    sk_tls_options co = {0};
    co.pin_sha256 = pins[i];
    srv.ctx = server_ctx(&untrusted);
    c.ctx = ctx_new(&co);
    c.total = 3000; /* no servername: the pin alone decides */
    run_pair(&srv, &c);
    echo_check(&c, 3000);
    sk_tls_ctx_free(srv.ctx);
    sk_tls_ctx_free(c.ctx);
  }
  /* The right CA-signed certificate, but not the pinned one. */
  struct server srv = {0};
  struct client c = {0};
  sk_tls_options co = {0};
  co.pin_sha256 = fp;
  srv.ctx = server_ctx(&good);
  c.ctx = ctx_new(&co);
  c.servername = "localhost";
  run_pair(&srv, &c);
  expect_client_fails(&c, SK_ETLSVERIFY, "pinned");
  assert_true(srv.hs_status < 0);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
}

static void test_async_self_signed_pin(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  struct client c = {0};
  sk_tls_options so = {0}, co = {0};
  char fp[SK_TLS_FINGERPRINT_LEN];
  so.server = 1;
  so.self_signed = 1;
  srv.ctx = ctx_new(&so);
  SK_ASSERT_OK(sk_tls_ctx_fingerprint(srv.ctx, fp, sizeof(fp)));
  assert_int_equal(strlen(fp), SK_TLS_FINGERPRINT_LEN - 1);
  assert_int_equal(sk_tls_ctx_fingerprint(srv.ctx, fp, 10), -ENOSPC);
  co.pin_sha256 = fp;
  c.ctx = ctx_new(&co);
  c.servername = "localhost";
  c.total = 20000;
  run_pair(&srv, &c);
  echo_check(&c, 20000);
  assert_string_equal(c.peer_fp, fp);
  sk_tls_ctx_free(c.ctx);

  /* Ordinary verification refuses it: nobody vouches for it. */
  struct server srv2 = {0};
  struct client c2 = {0};
  srv2.ctx = srv.ctx;
  c2.ctx = client_ctx();
  c2.servername = "localhost";
  run_pair(&srv2, &c2);
  expect_client_fails(&c2, SK_ETLSVERIFY, "self-signed");
  sk_tls_ctx_free(c2.ctx);
  sk_tls_ctx_free(srv.ctx);
}

/* ---- async: refused sessions ---- */

/* A client verifying with the test CA against a server using p. */
static void refused(const struct pair *p, const char *servername,
                    const char *words) {
  struct server srv = {0};
  struct client c = {0};
  srv.ctx = server_ctx(p);
  c.ctx = client_ctx();
  c.servername = servername;
  run_pair(&srv, &c);
  expect_client_fails(&c, SK_ETLSVERIFY, words);
  /* The server hears about it through the client's alert. */
  assert_int_equal(srv.hs_ok, 0);
  assert_true(srv.hs_status == SK_ETLSVERIFY || srv.hs_status == SK_ETLS);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
}

static void test_async_reject_expired(void **state) {
  (void)state;
  need_tls();
  refused(&expired, "localhost", "certificate has expired");
}

static void test_async_reject_wrong_host(void **state) {
  (void)state;
  need_tls();
  refused(&wronghost, "localhost", "hostname mismatch");
  /* And the right certificate for another name than the one asked. */
  refused(&good, "example.com", "hostname mismatch");
  refused(&good, "127.0.0.2", "IP address mismatch");
}

static void test_async_reject_untrusted_ca(void **state) {
  (void)state;
  need_tls();
  refused(&untrusted, "localhost", "unable to get local issuer certificate");
}

static void test_async_reject_missing_client_cert(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  struct client c = {0};
  sk_tls_options so = {0};
  so.server = 1;
  so.cert_file = good.cert;
  so.key_file = good.key;
  so.ca_file = ca_pem;
  so.require_client_cert = 1;
  srv.ctx = ctx_new(&so);
  c.ctx = client_ctx();
  c.servername = "localhost";
  c.no_shutdown = 1; /* wait for the server's verdict */
  run_pair(&srv, &c);
  assert_int_equal(srv.hs_status, SK_ETLSVERIFY);
  if (strstr(srv.hs_err, "no certificate") == NULL)
    fail_msg("server error: %s", srv.hs_err);
  /* With TLS 1.3 the client's handshake completes before the server has
   * judged its (missing) certificate: the refusal ends its first recv. */
  const char *err = c.hs_status != 0 ? c.hs_err : c.end_err;
  int code = c.hs_status != 0 ? c.hs_status : c.end_status;
  assert_true(code == SK_ETLSVERIFY || code == SK_ETLS);
  if (strstr(err, "certificate required") == NULL)
    fail_msg("client error: %s", err);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
}

static void test_async_plain_client_on_tls_server(void **state) {
  (void)state;
  need_tls();
  const char *msgs[] = {"hello there, plain text here\r\n",
                        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"};
  for (int i = 0; i < 2; i++) {
    struct server srv = {0};
    struct client c = {0};
    srv.ctx = server_ctx(&good);
    c.plain = 1;
    c.plain_msg = msgs[i];
    run_pair(&srv, &c);
    assert_int_equal(srv.hs_status, SK_ETLSNOTLS);
    if (strstr(srv.hs_err, "does not speak TLS") == NULL)
      fail_msg("server error: %s", srv.hs_err);
    sk_tls_ctx_free(srv.ctx);
  }
}

static void test_async_tls_client_on_plain_server(void **state) {
  (void)state;
  need_tls();
  /* A server that greets in plain text, as SMTP or FTP do. */
  struct server srv = {0};
  struct client c = {0};
  srv.plain = PLAIN_GREET;
  srv.greeting = "220 mail.example.com ESMTP ready\r\n";
  c.ctx = client_ctx();
  c.servername = "localhost";
  run_pair(&srv, &c);
  expect_client_fails(&c, SK_ETLSNOTLS, "does not speak TLS");
  sk_tls_ctx_free(c.ctx);

  /* A server that hangs up at once. */
  struct server srv2 = {0};
  struct client c2 = {0};
  srv2.plain = PLAIN_CLOSE;
  c2.ctx = client_ctx();
  c2.servername = "localhost";
  run_pair(&srv2, &c2);
  expect_client_fails(&c2, SK_ETLSNOTLS, "closed the connection");
  sk_tls_ctx_free(c2.ctx);
}

static void test_async_handshake_timeout(void **state) {
  (void)state;
  need_tls();
  /* The client's handshake, against a server that never answers. */
  struct server srv = {0};
  struct client c = {0};
  sk_tls_options co = {0};
  co.ca_file = ca_pem;
  co.handshake_timeout_ms = 200;
  srv.plain = PLAIN_SILENT;
  c.ctx = ctx_new(&co);
  c.servername = "localhost";
  run_pair(&srv, &c);
  expect_client_fails(&c, -ETIMEDOUT, "timed out");
  sk_tls_ctx_free(c.ctx);

  /* The server's, against a client that never says hello. */
  struct server srv2 = {0};
  struct client c2 = {0};
  sk_tls_options so = {0};
  so.server = 1;
  so.cert_file = good.cert;
  so.key_file = good.key;
  so.handshake_timeout_ms = 200;
  srv2.ctx = ctx_new(&so);
  c2.plain = 1;
  run_pair(&srv2, &c2);
  assert_int_equal(srv2.hs_status, -ETIMEDOUT);
  sk_tls_ctx_free(srv2.ctx);
}

/* A peer that closes the TCP connection without close_notify may have cut
 * the data short: receiving ends with SK_ETLS, not SK_EOF. */
static void test_async_eof_without_close_notify(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  struct client c = {0};
  srv.ctx = server_ctx(&good);
  srv.cut = 1;
  c.ctx = client_ctx();
  c.servername = "localhost";
  c.collect = 1;
  c.no_shutdown = 1;
  run_pair(&srv, &c);
  assert_int_equal(c.hs_status, 0);
  assert_string_equal(c.got, "bye");
  assert_int_equal(c.end_status, SK_ETLSTRUNCATED);
  if (strstr(c.end_err, "unexpected EOF") == NULL)
    fail_msg("client error: %s", c.end_err);
  sk_tls_ctx_free(srv.ctx);
  sk_tls_ctx_free(c.ctx);
}

/* Closing during the handshake: the handshake callback runs with
 * -ECANCELED, before the close callback. */
static int order[4], norder;
static void cancel_hs(sk_stream *s, int status) {
  (void)s;
  assert_int_equal(status, -ECANCELED);
  order[norder++] = 1;
}
static void cancel_closed(sk_handle *h) {
  (void)h;
  order[norder++] = 2;
}
static void cancel_connected(sk_stream *s, int status) {
  assert_int_equal(status, 0);
  SK_ASSERT_OK(sk_stream_tls_start(s, s->h.data, "localhost", cancel_hs));
  assert_int_equal(sk_stream_tls_start(s, s->h.data, "localhost", cancel_hs),
                   -EALREADY);
  sk_close(&s->h, cancel_closed);
}

static void test_async_close_during_handshake(void **state) {
  (void)state;
  need_tls();
  struct server srv = {0};
  sk_loop loop;
  sk_stream s;
  sk_tls_ctx *cctx = client_ctx();
  srv.plain = PLAIN_SILENT;
  norder = 0;
  SK_ASSERT_OK(sk_loop_init(&loop));
  server_start(&loop, &srv, 1);
  SK_ASSERT_OK(sk_stream_init(&loop, &s));
  s.h.data = cctx;
  SK_ASSERT_OK(sk_stream_connect(&s, &srv.ep, 1, 5000, cancel_connected));
  sk_test_run(&loop, 10000);
  assert_int_equal(norder, 2);
  assert_int_equal(order[0], 1);
  assert_int_equal(order[1], 2);
  sk_test_loop_done(&loop);
  sk_tls_ctx_free(cctx); /* the last reference: the stream's is gone */
}

/* ---- contexts ---- */

static void test_ctx_options(void **state) {
  (void)state;
  need_tls();
  sk_tls_ctx *ctx = NULL;
  sk_tls_options o = {0};
  char fp[SK_TLS_FINGERPRINT_LEN];

  o.pin_sha256 = "AB:CD";
  assert_int_equal(sk_tls_ctx_new(&ctx, &o), -EINVAL);
  assert_non_null(strstr(sk_tls_last_error(), "64 hex digits"));
  assert_null(ctx);
  o.pin_sha256 = NULL;
  o.alpn = "h2,,x";
  assert_int_equal(sk_tls_ctx_new(&ctx, &o), -EINVAL);
  o.alpn = NULL;
  o.insecure_no_verify = 1;
  o.pin_sha256 =
      "0000000000000000000000000000000000000000000000000000000000000000";
  assert_int_equal(sk_tls_ctx_new(&ctx, &o), -EINVAL);

  memset(&o, 0, sizeof(o));
  o.server = 1;
  assert_int_equal(sk_tls_ctx_new(&ctx, &o), -EINVAL); /* no certificate */
  o.cert_file = "/nonexistent/cert.pem";
  assert_int_equal(sk_tls_ctx_new(&ctx, &o), SK_ETLS);
  assert_non_null(strstr(sk_tls_last_error(), "/nonexistent/cert.pem"));
  o.cert_file = good.cert;
  o.key_file = client.key;
  assert_int_equal(sk_tls_ctx_new(&ctx, &o), SK_ETLS);
  assert_non_null(strstr(sk_tls_last_error(), "does not match"));
  o.key_file = good.key;
  o.require_client_cert = 1;
  assert_int_equal(sk_tls_ctx_new(&ctx, &o), -EINVAL); /* no CA */
  o.require_client_cert = 0;
  ctx = ctx_new(&o);
  SK_ASSERT_OK(sk_tls_ctx_fingerprint(ctx, fp, sizeof(fp)));
  char want[SK_TLS_FINGERPRINT_LEN];
  cli_fingerprint(good.cert, want, sizeof(want));
  assert_string_equal(fp, want);
  sk_tls_ctx_free(ctx);

  /* A client without a certificate has no fingerprint. */
  ctx = client_ctx();
  assert_int_equal(sk_tls_ctx_fingerprint(ctx, fp, sizeof(fp)), -ENOENT);
  sk_tls_ctx_free(ctx);
  sk_tls_ctx_free(NULL);
}

/* ---- sync sessions ---- */

struct sync_server {
  sk_socket l;
  sk_tls_ctx *ctx;
  int cut; /* end without close_notify after sending "bye" */
  int rc;
  size_t echoed;
  char alpn[32];
};

static void *sync_server_main(void *arg) {
  struct sync_server *ss = arg;
  sk_socket c = SK_SOCKET_INIT;
  sk_tls_socket t = {0};
  unsigned char buf[16384];
  ss->rc = sk_socket_accept(&ss->l, &c, NULL, 5000);
  if (ss->rc != 0)
    return NULL;
  ss->rc = sk_tls_accept(&t, &c, ss->ctx, 5000);
  if (ss->rc != 0) {
    sk_socket_close(&c, 0);
    return NULL;
  }
  if (ss->cut) {
    ss->rc = sk_tls_send(&t, "bye", 3, 5000);
    sk_tls_free(&t);
    sk_socket_close(&c, 2000); /* a FIN but no close_notify */
    return NULL;
  }
  for (;;) {
    ssize_t n = sk_tls_recv(&t, buf, sizeof(buf), 5000);
    if (n == 0)
      break;
    if (n < 0) {
      ss->rc = (int)n;
      break;
    }
    ss->rc = sk_tls_send(&t, buf, (size_t)n, 5000);
    if (ss->rc != 0)
      break;
    ss->echoed += (size_t)n;
  }
  int crc = sk_tls_close(&t, 2000);
  if (ss->rc == 0)
    ss->rc = crc;
  return NULL;
}

static void sync_server_start(struct sync_server *ss, pthread_t *th, char *addr,
                              size_t addrlen) {
  sk_endpoint ep;
  SK_ASSERT_OK(sk_socket_listen_text(&ss->l, "127.0.0.1:0", 0));
  SK_ASSERT_OK(sk_socket_local(&ss->l, &ep));
  snprintf(addr, addrlen, "127.0.0.1:%u", sk_endpoint_port(&ep));
  assert_int_equal(pthread_create(th, NULL, sync_server_main, ss), 0);
}

/* Receives exactly len bytes. */
static void tls_recv_all(sk_tls_socket *t, unsigned char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = sk_tls_recv(t, buf + got, len - got, 5000);
    if (n <= 0)
      fail_msg("sk_tls_recv: %zd (%s)", n, sk_tls_last_error());
    got += (size_t)n;
  }
}

static void test_sync_round_trip(void **state) {
  (void)state;
  need_tls();
  struct sync_server ss = {.l = SK_SOCKET_INIT};
  pthread_t th;
  char addr[64];
  sk_socket s = SK_SOCKET_INIT;
  sk_tls_socket t = {0};
  enum { TOTAL = 256 * 1024, PIECE = 16 * 1024 };
  unsigned char *out = malloc(TOTAL), *in = malloc(TOTAL);
  assert_non_null(out);
  assert_non_null(in);
  sk_test_fill_random(out, TOTAL, 99);

  ss.ctx = server_ctx(&good);
  sync_server_start(&ss, &th, addr, sizeof(addr));
  sk_tls_ctx *cctx = client_ctx();
  SK_ASSERT_OK(sk_socket_connect_text(&s, addr, SOCK_STREAM, 5000));
  /* A verifying client must say whom it wants. */
  assert_int_equal(sk_tls_connect(&t, &s, cctx, NULL, 5000), -EINVAL);
  assert_int_equal(sk_tls_accept(&t, &s, cctx, 5000), -EINVAL);
  SK_ASSERT_OK(sk_tls_connect(&t, &s, cctx, "localhost", 5000));
  assert_string_equal(sk_tls_version(&t), "TLSv1.3");
  assert_non_null(sk_tls_cipher(&t));
  assert_null(sk_tls_alpn(&t));
  char fp[SK_TLS_FINGERPRINT_LEN], want[SK_TLS_FINGERPRINT_LEN];
  SK_ASSERT_OK(sk_tls_peer_fingerprint(&t, fp, sizeof(fp)));
  cli_fingerprint(good.cert, want, sizeof(want));
  assert_string_equal(fp, want);
  for (size_t off = 0; off < TOTAL; off += PIECE) {
    SK_ASSERT_OK(sk_tls_send(&t, out + off, PIECE, 5000));
    tls_recv_all(&t, in + off, PIECE);
  }
  assert_memory_equal(in, out, TOTAL);
  /* Nothing more comes: a short timeout says so. */
  assert_int_equal(sk_tls_recv(&t, in, 10, 50), -ETIMEDOUT);
  SK_ASSERT_OK(sk_tls_close(&t, 2000));
  assert_int_equal(sk_tls_send(&t, "x", 1, 100), -ENOTCONN);
  pthread_join(th, NULL);
  assert_int_equal(ss.rc, 0);
  assert_int_equal(ss.echoed, TOTAL);
  sk_socket_close(&ss.l, 0);
  sk_tls_ctx_free(cctx);
  sk_tls_ctx_free(ss.ctx);
  free(out);
  free(in);
}

/* A sync client session with a sync server that sends "bye" and then cuts
 * the connection (FIN, no close_notify); cut_open reads the "bye" into buf
 * (3 bytes). */
struct cut_session {
  struct sync_server ss;
  pthread_t th;
  sk_socket s;
  sk_tls_socket t;
  sk_tls_ctx *cctx;
};

static void cut_open(struct cut_session *cs, char *buf) {
  char addr[64];
  cs->ss = (struct sync_server){.l = SK_SOCKET_INIT, .cut = 1};
  cs->s = (sk_socket)SK_SOCKET_INIT;
  memset(&cs->t, 0, sizeof(cs->t));
  cs->ss.ctx = server_ctx(&good);
  sync_server_start(&cs->ss, &cs->th, addr, sizeof(addr));
  cs->cctx = client_ctx();
  SK_ASSERT_OK(sk_socket_connect_text(&cs->s, addr, SOCK_STREAM, 5000));
  SK_ASSERT_OK(sk_tls_connect(&cs->t, &cs->s, cs->cctx, "localhost", 5000));
  tls_recv_all(&cs->t, (unsigned char *)buf, 3);
}

/* Frees the session, and checks that the server's side went well. */
static void cut_close(struct cut_session *cs) {
  sk_tls_free(&cs->t);
  sk_socket_close(&cs->s, 0);
  pthread_join(cs->th, NULL);
  assert_int_equal(cs->ss.rc, 0);
  sk_socket_close(&cs->ss.l, 0);
  sk_tls_ctx_free(cs->cctx);
  sk_tls_ctx_free(cs->ss.ctx);
}

static void test_sync_eof_without_close_notify(void **state) {
  (void)state;
  need_tls();
  struct cut_session cs;
  char buf[16];
  cut_open(&cs, buf);
  assert_memory_equal(buf, "bye", 3);
  assert_int_equal(sk_tls_recv(&cs.t, buf, sizeof(buf), 5000),
                   SK_ETLSTRUNCATED);
  assert_non_null(strstr(sk_tls_last_error(), "unexpected EOF"));
  sk_tls_free(&cs.t);
  cut_close(&cs); /* frees it again: twice is harmless */
}

static void test_sync_verify_failure(void **state) {
  (void)state;
  need_tls();
  struct sync_server ss = {.l = SK_SOCKET_INIT};
  pthread_t th;
  char addr[64];
  sk_socket s = SK_SOCKET_INIT;
  sk_tls_socket t = {0};
  ss.ctx = server_ctx(&expired);
  sync_server_start(&ss, &th, addr, sizeof(addr));
  sk_tls_ctx *cctx = client_ctx();
  SK_ASSERT_OK(sk_socket_connect_text(&s, addr, SOCK_STREAM, 5000));
  assert_int_equal(sk_tls_connect(&t, &s, cctx, "localhost", 5000),
                   SK_ETLSVERIFY);
  assert_non_null(strstr(sk_tls_last_error(), "certificate has expired"));
  assert_null(t.priv);
  sk_socket_close(&s, 1000);
  pthread_join(th, NULL);
  assert_true(ss.rc == SK_ETLSVERIFY || ss.rc == SK_ETLS);
  sk_socket_close(&ss.l, 0);
  sk_tls_ctx_free(cctx);
  sk_tls_ctx_free(ss.ctx);
}

/* ---- real peers: openssl s_server / s_client, Python's ssl ---- */

static pid_t spawn(char *const argv[], const char *in, const char *out) {
  posix_spawn_file_actions_t fa;
  pid_t pid;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, in != NULL ? in : "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out != NULL ? out : "/dev/null",
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    fail_msg("cannot run %s: %s", argv[0], strerror(rc));
  return pid;
}

/* Waits for a child to exit within timeout_ms; kills it if it does not.
 * Returns its exit status, or -1 if it was killed. */
static int reap(pid_t pid, int timeout_ms) {
  int st;
  for (int waited = 0;; waited += 10) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (waited >= timeout_ms) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    poll(NULL, 0, 10);
  }
}

/* A port that was free a moment ago. */
static unsigned free_port(void) {
  sk_socket s = SK_SOCKET_INIT;
  sk_endpoint ep;
  SK_ASSERT_OK(sk_socket_listen_text(&s, "127.0.0.1:0", 1));
  SK_ASSERT_OK(sk_socket_local(&s, &ep));
  unsigned port = sk_endpoint_port(&ep);
  sk_socket_close(&s, 0);
  return port;
}

/* Starts `openssl s_server -rev` (answers each line reversed) and waits
 * until it accepts connections. Retries with another port if the one
 * picked was taken in between. */
static pid_t start_s_server(char *addr, size_t addrlen) {
  for (int attempt = 0; attempt < 5; attempt++) {
    char port[16];
    snprintf(port, sizeof(port), "%u", free_port());
    char *argv[] = {"openssl", "s_server", "-accept", port,
                    "-cert",   good.cert,  "-key",    good.key,
                    "-rev",    "-quiet",   NULL};
    pid_t pid = spawn(argv, NULL, NULL);
    snprintf(addr, addrlen, "127.0.0.1:%s", port);
    for (int waited = 0; waited < 5000; waited += 20) {
      sk_socket s = SK_SOCKET_INIT;
      int st;
      if (sk_socket_connect_text(&s, addr, SOCK_STREAM, 1000) == 0) {
        sk_socket_close(&s, 0);
        return pid;
      }
      if (waitpid(pid, &st, WNOHANG) == pid)
        break; /* it could not bind: try another port */
      poll(NULL, 0, 20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  fail_msg("openssl s_server did not start");
  return -1;
}

static void stop_s_server(pid_t pid) {
  kill(pid, SIGTERM);
  reap(pid, 5000);
}

static void test_peer_openssl_s_server_sync(void **state) {
  (void)state;
  need_tls();
  char addr[64], buf[64];
  pid_t pid = start_s_server(addr, sizeof(addr));
  sk_socket s = SK_SOCKET_INIT;
  sk_tls_socket t = {0};
  sk_tls_ctx *cctx = client_ctx();
  SK_ASSERT_OK(sk_socket_connect_text(&s, addr, SOCK_STREAM, 5000));
  SK_ASSERT_OK(sk_tls_connect(&t, &s, cctx, "localhost", 5000));
  SK_ASSERT_OK(sk_tls_send(&t, "hello sockit\n", 13, 5000));
  tls_recv_all(&t, (unsigned char *)buf, 13);
  assert_memory_equal(buf, "tikcos olleh\n", 13);
  SK_ASSERT_OK(sk_tls_close(&t, 2000));
  stop_s_server(pid);
  sk_tls_ctx_free(cctx);
}

static void test_peer_openssl_s_server_async(void **state) {
  (void)state;
  need_tls();
  char addr[64];
  pid_t pid = start_s_server(addr, sizeof(addr));
  sk_loop loop;
  sk_endpoint ep;
  struct client c = {0};
  SK_ASSERT_OK(sk_endpoint_parse(&ep, addr));
  c.ctx = client_ctx();
  c.servername = "localhost";
  c.line = "sockit over TLS\n";
  c.expect = "SLT revo tikcos\n";
  SK_ASSERT_OK(sk_loop_init(&loop));
  client_start(&loop, &c, &ep);
  sk_test_run(&loop, 20000);
  assert_int_equal(c.hs_status, 0);
  assert_string_equal(c.got, c.expect);
  sk_test_loop_done(&loop);
  stop_s_server(pid);
  sk_tls_ctx_free(c.ctx);
}

/* Runs a child process as the client of a library echo server; returns
 * its exit status. */
static int serve_child(struct server *srv, char *const argv_tpl[],
                       const char *in, const char *out) {
  sk_loop loop;
  char port[16], *argv[32];
  SK_ASSERT_OK(sk_loop_init(&loop));
  server_start(&loop, srv, 1);
  snprintf(port, sizeof(port), "%u", sk_endpoint_port(&srv->ep));
  /* "PORT" in the template is replaced with the server's port. */
  int i = 0;
  for (; argv_tpl[i] != NULL && i < 31; i++) {
    char *a = argv_tpl[i];
    argv[i] = a;
    if (strcmp(a, "PORT") == 0)
      argv[i] = port;
    else if (strstr(a, "127.0.0.1:PORT") != NULL) {
      static char conn[64];
      snprintf(conn, sizeof(conn), "127.0.0.1:%s", port);
      argv[i] = conn;
    }
  }
  argv[i] = NULL;
  pid_t pid = spawn(argv, in, out);
  sk_test_run(&loop, 20000);
  sk_test_loop_done(&loop);
  return reap(pid, 10000);
}

static void test_peer_openssl_s_client(void **state) {
  (void)state;
  need_tls();
  char in[128], out[128];
  snprintf(in, sizeof(in), "%s/s_client.in", dir);
  snprintf(out, sizeof(out), "%s/s_client.out", dir);
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  size_t total = 0;
  for (int i = 0; i < 2000; i++)
    total += (size_t)fprintf(f, "line %d of the text s_client sends\n", i);
  fclose(f);

  struct server srv = {0};
  srv.ctx = server_ctx(&good);
  srv.close_after = total; /* s_client waits for the server to close */
  char *argv[] = {"openssl",
                  "s_client",
                  "-connect",
                  "127.0.0.1:PORT",
                  "-CAfile",
                  ca_pem,
                  "-verify_return_error",
                  "-verify_hostname",
                  "localhost",
                  "-quiet",
                  NULL};
  int rc = serve_child(&srv, argv, in, out);
  assert_int_equal(srv.hs_ok, 1);
  assert_int_equal(rc, 0);
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "cmp -s %s %s", in, out);
  assert_int_equal(system(cmd), 0);
  sk_tls_ctx_free(srv.ctx);
}

static const char py_client[] =
    "import socket, ssl, sys\n"
    "port, ca = int(sys.argv[1]), sys.argv[2]\n"
    "ctx = ssl.create_default_context(cafile=ca)\n"
    "data = bytes((i * 7 + 3) % 251 for i in range(256 * 1024))\n"
    "got = bytearray()\n"
    "with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:\n"
    "    with ctx.wrap_socket(raw, server_hostname='localhost') as s:\n"
    "        for off in range(0, len(data), 16384):\n"
    "            s.sendall(data[off:off + 16384])\n"
    "            while len(got) < off + 16384:\n"
    "                b = s.recv(65536)\n"
    "                if not b:\n"
    "                    sys.exit('early EOF')\n"
    "                got += b\n"
    "        if bytes(got) != data:\n"
    "            sys.exit('mismatch')\n"
    "        print('OK', s.version())\n"
    "        s.unwrap()\n";

static void test_peer_python_ssl_client(void **state) {
  (void)state;
  need_tls();
  char out[128], line[64] = "";
  snprintf(out, sizeof(out), "%s/python.out", dir);
  struct server srv = {0};
  srv.ctx = server_ctx(&good);
  char *argv[] = {"python3", "-c", (char *)py_client, "PORT", ca_pem, NULL};
  int rc = serve_child(&srv, argv, NULL, out);
  assert_int_equal(rc, 0);
  assert_int_equal(srv.hs_ok, 1);
  assert_int_equal(srv.end_status, 0); /* python sent close_notify */
  FILE *f = fopen(out, "r");
  assert_non_null(f);
  assert_non_null(fgets(line, sizeof(line), f));
  fclose(f);
  assert_string_equal(line, "OK TLSv1.3\n");
  sk_tls_ctx_free(srv.ctx);
}

/* A session cut (FIN, no close_notify) after a finished handshake is named
 * as such: OpenSSL's SSL_is_init_finished() turns false after the fatal
 * error, and once made the library call it "during the TLS handshake". */
static void test_sync_cut_after_handshake_is_named(void **state) {
  (void)state;
  need_tls();
  struct cut_session cs;
  char buf[16];
  cut_open(&cs, buf);
  assert_int_equal(sk_tls_recv(&cs.t, buf, sizeof(buf), 5000),
                   SK_ETLSTRUNCATED);
  const char *why = sk_tls_last_error();
  if (strstr(why, "handshake") != NULL || strstr(why, "close_notify") == NULL)
    fail_msg("a cut after the handshake was named \"%s\"", why);
  cut_close(&cs);
}

SK_TEST_MAIN(cmocka_unit_test(test_async_echo_1mib),
             cmocka_unit_test(test_async_verify_ip_literal),
             cmocka_unit_test(test_async_hundred_clients),
             cmocka_unit_test(test_async_mutual_tls),
             cmocka_unit_test(test_async_alpn),
             cmocka_unit_test(test_async_insecure_accepts_untrusted),
             cmocka_unit_test(test_async_pin),
             cmocka_unit_test(test_async_sendfile_8mib),
             cmocka_unit_test(test_async_self_signed_pin),
             cmocka_unit_test(test_async_reject_expired),
             cmocka_unit_test(test_async_reject_wrong_host),
             cmocka_unit_test(test_async_reject_untrusted_ca),
             cmocka_unit_test(test_async_reject_missing_client_cert),
             cmocka_unit_test(test_async_plain_client_on_tls_server),
             cmocka_unit_test(test_async_tls_client_on_plain_server),
             cmocka_unit_test(test_async_handshake_timeout),
             cmocka_unit_test(test_async_eof_without_close_notify),
             cmocka_unit_test(test_async_close_during_handshake),
             cmocka_unit_test(test_ctx_options),
             cmocka_unit_test(test_sync_round_trip),
             cmocka_unit_test(test_sync_eof_without_close_notify),
             cmocka_unit_test(test_sync_verify_failure),
             cmocka_unit_test(test_peer_openssl_s_server_sync),
             cmocka_unit_test(test_peer_openssl_s_server_async),
             cmocka_unit_test(test_peer_openssl_s_client),
             cmocka_unit_test(test_peer_python_ssl_client),
             cmocka_unit_test(test_sync_cut_after_handshake_is_named))
