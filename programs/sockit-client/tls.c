/* TLS for sockit-client: the context every mode shares, and how TLS
 * failures are told (the connection itself is conn.c). */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "log.h"

/* ---- shared ---- */

static int is_tls_error(int err) {
  return err == SK_ETLS || err == SK_ETLSVERIFY || err == SK_ETLSNOTLS ||
         err == SK_ETLSTRUNCATED;
}

int client_tls_truncation_ok(const struct client_opts *o, int err,
                             uint64_t received) {
  return err == SK_ETLSTRUNCATED && !o->tls_strict_close && received > 0;
}

void client_tls_truncation_warn(const struct client_opts *o) {
  log_warn("%s ended the TLS session without close_notify; taking it as "
           "the end of its replies (--tls-strict-close makes this an error)",
           o->addr);
}

const char *client_err_text(int err) {
  const char *why = sk_tls_last_error();
  if (is_tls_error(err) && why[0] != '\0')
    return why;
  return sk_strerror(err);
}

void client_check_file(const char *path, const char *what) {
  int rc = path != NULL ? cli_check_readable(path) : 0;
  if (rc < 0)
    client_fail("TLS: cannot load %s: cannot read %s: %s", what, path,
                sk_strerror(rc));
}

sk_tls_ctx *client_tls_ctx(const struct client_opts *o,
                           const char **servername) {
  static char host[256];
  sk_tls_options to;
  sk_tls_ctx *ctx = NULL;
  uint16_t port;

  /* A file that cannot be opened is named with the reason before the
   * library gets to report it in its own words. */
  client_check_file(o->ca, "CA certificates");
  client_check_file(o->cert, "certificate");
  client_check_file(o->key, "private key");

  memset(&to, 0, sizeof to);
  to.ca_file = o->ca;
  to.cert_file = o->cert;
  to.key_file = o->key;
  to.pin_sha256 = o->pin;
  to.insecure_no_verify = o->insecure;
  /* 0 would mean the library's default; --timeout 0 is "no limit". */
  to.handshake_timeout_ms = o->timeout_ms < 0 ? -1 : o->timeout_ms;
  int rc = sk_tls_ctx_new(&ctx, &to);
  if (rc < 0)
    client_fail("TLS: %s", sk_tls_last_error()[0] != '\0' ? sk_tls_last_error()
                                                          : sk_strerror(rc));
  if (o->insecure)
    log_warn("--insecure: the server's certificate is not checked; anyone "
             "on the path can read and change this connection");
  *servername = NULL;
  if (o->servername != NULL)
    *servername = o->servername;
  else if (strncmp(o->addr, "unix:", 5) != 0 &&
           sk_endpoint_split(o->addr, host, sizeof host, &port) == 0)
    *servername = host;
  return ctx;
}

void client_fail_handshake(const struct client_opts *o, int err) {
  const char *why = client_err_text(err);
  if (err == -ETIMEDOUT)
    client_fail("TLS handshake with %s timed out (after %s)", o->addr,
                client_timeout_text(o->timeout_ms));
  /* A plain echo server answers our ClientHello with itself, which TLS
   * names "unexpected message" rather than "not TLS": say what it most
   * likely means. */
  if (err == SK_ETLS && strcmp(why, "unexpected message") == 0)
    client_fail("TLS handshake with %s failed: unexpected message: the peer "
                "probably does not speak TLS (a plain echo server sends our "
                "ClientHello back)",
                o->addr);
  client_fail("TLS handshake with %s failed: %s", o->addr, why);
}

void client_fail_tls(const struct client_opts *o, int err) {
  /* A verification failure or a peer that is not TLS at all can only
   * come from the handshake, even when it shows up at the first read. */
  if (err == SK_ETLSVERIFY || err == SK_ETLSNOTLS)
    client_fail_handshake(o, err);
}
