/* Test certificates for the TLS unit tests (test_tls.c, test_tls_trust.c),
 * made at run time with the openssl command-line tool in a private
 * temporary directory removed at exit (SK_TEST_KEEP=1 keeps it for a look
 * after a failure); no key is ever committed. Also the context helpers both
 * files use. Include after sk_test.h. */
#ifndef SK_TLS_CERTS_H
#define SK_TLS_CERTS_H

#include <dirent.h>
#include <unistd.h>

static char dir[64];     /* the temporary directory, "" until made */
static char ca_pem[128]; /* dir/ca.pem, the test CA */

struct pair {
  char cert[128], key[128];
};

static void rm_dir(void) {
  DIR *d;
  struct dirent *e;
  char p[512];
  if (dir[0] == '\0' || getenv("SK_TEST_KEEP") != NULL ||
      (d = opendir(dir)) == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
  dir[0] = '\0';
}

static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  /* Quiet: openssl chats on stderr even when all goes well. */
  strncat(cmd, " >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
  if (system(cmd) != 0)
    fail_msg("command failed: %s", cmd);
}

/* A CA: dir/name.key and the self-signed dir/name.pem. */
static void make_ca(const char *name) {
  sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
     "-keyout %s/%s.key -out %s/%s.pem -days 2 -subj /CN=%s "
     "-addext basicConstraints=critical,CA:TRUE",
     dir, name, dir, name, name);
}

/* Makes the directory from tmpl ("/tmp/x-XXXXXX"), its removal at exit and
 * the CA "ca" (ca_pem). Returns 0 when that was done already. */
static int certs_begin(const char *tmpl) {
  if (dir[0] != '\0')
    return 0;
  snprintf(dir, sizeof(dir), "%s", tmpl);
  assert_non_null(mkdtemp(dir));
  atexit(rm_dir);
  make_ca("ca");
  snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
  return 1;
}

/* dir/file.key and a CSR for CN=cn, then dir/file.pem signed by the CA ca
 * with the given extensions and lifetime (days < 0 makes one that expired
 * already). */
static void make_leaf(struct pair *p, const char *file, const char *cn,
                      const char *ca, const char *ext, int days) {
  snprintf(p->cert, sizeof(p->cert), "%s/%s.pem", dir, file);
  snprintf(p->key, sizeof(p->key), "%s/%s.key", dir, file);
  char extpath[128];
  snprintf(extpath, sizeof(extpath), "%s/%s.ext", dir, file);
  FILE *f = fopen(extpath, "w");
  assert_non_null(f);
  fputs(ext, f);
  fclose(f);
  sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
     "-keyout %s -out %s/%s.csr -subj /CN=%s",
     p->key, dir, file, cn);
  sh("openssl x509 -req -in %s/%s.csr -CA %s/%s.pem -CAkey %s/%s.key "
     "-CAcreateserial -days %d -extfile %s -out %s",
     dir, file, dir, ca, dir, ca, days, extpath, p->cert);
}

/* What the openssl tool prints for a certificate file: the line of
 * `openssl x509 -noout <flag>` after its '=' (with "-fingerprint -sha256":
 * "AB:CD:...", an independent check of sockit's own). */
static void cli_field(const char *cert, const char *flag, char *out,
                      size_t len) {
  char cmd[512], line[512];
  snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -noout %s 2>/dev/null", cert,
           flag);
  FILE *f = popen(cmd, "r");
  assert_non_null(f);
  assert_non_null(fgets(line, sizeof(line), f));
  pclose(f);
  char *eq = strchr(line, '=');
  assert_non_null(eq);
  snprintf(out, len, "%s", eq + 1);
  out[strcspn(out, "\r\n")] = '\0';
}

/* 1 when the library was built with TLS; 0 (after checking that it says
 * so properly) when not. */
static int tls_built(void) {
  sk_tls_ctx *ctx = NULL;
  sk_tls_options o = {0};
  o.server = 1;
  o.self_signed = 1;
  int rc = sk_tls_ctx_new(&ctx, &o);
  if (rc == SK_ENOTLS) {
    assert_null(ctx);
    return 0;
  }
  SK_ASSERT_OK(rc);
  sk_tls_ctx_free(ctx);
  return 1;
}

static sk_tls_ctx *ctx_new(const sk_tls_options *o) {
  sk_tls_ctx *ctx = NULL;
  int rc = sk_tls_ctx_new(&ctx, o);
  if (rc != 0)
    fail_msg("sk_tls_ctx_new: %s (%s)", sk_strerror(rc), sk_tls_last_error());
  return ctx;
}

static sk_tls_ctx *server_ctx(const struct pair *p) {
  sk_tls_options o = {0};
  o.server = 1;
  o.cert_file = p->cert;
  o.key_file = p->key;
  return ctx_new(&o);
}

#endif
