/* TLS with OpenSSL 3, shared by its two users: contexts (certificates,
 * trust, SNI, the client session cache), naming failures, and creating one
 * SSL per connection. tls_stream.c is the async transport, tls_socket.c the
 * sync session; both see the pieces declared in tls_internal.h.
 */
#include "tls_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

/* ---- errors ---- */

_Thread_local char sk__tls_errbuf[256];

const char *sk_tls_last_error(void) {
  return sk__tls_errbuf;
}

void sk__tls_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sk__tls_errbuf, sizeof(sk__tls_errbuf), fmt, ap);
  va_end(ap);
}

/* The SSL ex_data index of struct sk__tls_conn, made once with the BIO methods
 * (see methods_init()). */
int sk__tls_conn_idx = -1;

/* Sets the error text to what + OpenSSL's oldest queued reason, and clears
 * the queue. For failures outside a connection (loading files, setup). */
void sk__tls_set_error_queue(const char *what) {
  unsigned long e = ERR_peek_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  if (r != NULL)
    sk__tls_set_error("%s: %s", what, r);
  else
    sk__tls_set_error("%s", what);
  ERR_clear_error();
}

static int reason_is_not_tls(int reason) {
  switch (reason) {
  case SSL_R_WRONG_VERSION_NUMBER:
  case SSL_R_HTTP_REQUEST:
  case SSL_R_HTTPS_PROXY_REQUEST:
  case SSL_R_PACKET_LENGTH_TOO_LONG:
  case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
  case SSL_R_UNKNOWN_PROTOCOL:
    return 1;
  default:
    return 0;
  }
}

/* The peer told us, with an alert, that it rejected our certificate. */
static int reason_is_peer_rejects_cert(int reason) {
  switch (reason) {
  case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
  case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
  case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
  case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    return 1;
  default:
    return 0;
  }
}

/* Names the failure of an SSL call that returned sslerr (SSL_get_error):
 * returns the sockit code and sets the thread's error text. Clears
 * OpenSSL's error queue, so the next call starts clean. */
int sk__tls_classify(SSL *ssl, int sslerr, const struct sk__tls_fail *fi) {
  unsigned long e = ERR_peek_error();
  int reason = e != 0 ? ERR_GET_REASON(e) : 0;
  int ssl_lib = e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL;
  const char *rs = e != 0 ? ERR_reason_error_string(e) : NULL;
  int code = SK_ETLS;

  if (rs == NULL)
    rs = "TLS error";
  if (sslerr == SSL_ERROR_SYSCALL && fi->io_err != 0) {
    code = fi->io_err;
    sk__tls_set_error("connection failed: %s", sk_strerror(code));
  } else if (ssl_lib && reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    long v = SSL_get_verify_result(ssl);
    const struct sk__tls_conn *c = SSL_get_ex_data(ssl, sk__tls_conn_idx);
    code = SK_ETLSVERIFY;
    if (c != NULL && c->reason[0] != '\0')
      sk__tls_set_error("certificate rejected: %s", c->reason);
    else if (v == X509_V_ERR_APPLICATION_VERIFICATION && fi->ctx->has_pin)
      sk__tls_set_error(
          "certificate verify failed: the certificate does not match "
          "the pinned SHA-256 fingerprint");
    else
      sk__tls_set_error("certificate verify failed: %s",
                        X509_verify_cert_error_string(v));
  } else if (ssl_lib && reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    code = SK_ETLSVERIFY;
    sk__tls_set_error(
        "certificate verify failed: the peer sent no certificate and "
        "one is required");
  } else if (ssl_lib && reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED) {
    code = SK_ETLSVERIFY;
    sk__tls_set_error("the peer requires a client certificate: %s", rs);
  } else if (ssl_lib && reason_is_peer_rejects_cert(reason)) {
    code = SK_ETLSVERIFY;
    sk__tls_set_error("the peer rejected our certificate: %s", rs);
  } else if (ssl_lib && reason_is_not_tls(reason) && fi->handshaking) {
    code = SK_ETLSNOTLS;
    sk__tls_set_error("peer does not speak TLS: %s", rs);
  } else if (ssl_lib && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    if (fi->handshaking && !fi->got_bytes) {
      code = SK_ETLSNOTLS;
      sk__tls_set_error(
          "peer does not speak TLS: it closed the connection without "
          "answering the handshake");
    } else if (fi->handshaking) {
      sk__tls_set_error(
          "unexpected EOF: the peer closed the connection during the "
          "TLS handshake");
    } else {
      /* After a complete handshake this is how many peers end a session
       * (.NET's SslStream without ShutdownAsync, many HTTP servers): a
       * result of its own, so that the application decides whether what
       * it received is complete. */
      code = SK_ETLSTRUNCATED;
      sk__tls_set_error(
          "unexpected EOF: the peer closed the connection without "
          "close_notify");
    }
  } else if (e != 0) {
    sk__tls_set_error("%s", rs);
  } else if (sslerr == SSL_ERROR_SYSCALL) {
    if (!fi->handshaking)
      code = SK_ETLSTRUNCATED;
    sk__tls_set_error("unexpected EOF: the connection ended %s",
                      fi->handshaking ? "during the TLS handshake"
                                      : "without close_notify");
  } else {
    sk__tls_set_error("TLS error (SSL_get_error %d)", sslerr);
  }
  ERR_clear_error();
  return code;
}

static pthread_once_t conn_once = PTHREAD_ONCE_INIT;
static void conn_init(void) {
  sk__tls_conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- helpers ---- */

/* "AB:CD:...": SHA-256 of a certificate. */
int sk__tls_fingerprint(X509 *x, char *buf, size_t len) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  static const char hex[] = "0123456789ABCDEF";

  if (x == NULL)
    return -ENOENT;
  if (buf == NULL || len < SK_TLS_FINGERPRINT_LEN)
    return -ENOSPC;
  if (!X509_digest(x, EVP_sha256(), md, &n) || n != 32) {
    ERR_clear_error();
    return SK_ETLS;
  }
  for (unsigned i = 0; i < n; i++) {
    buf[3 * i] = hex[md[i] >> 4];
    buf[3 * i + 1] = hex[md[i] & 15];
    buf[3 * i + 2] = (i + 1 < n) ? ':' : '\0';
  }
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* 64 hex digits, colons allowed between pairs. */
static int parse_pin(const char *s, unsigned char out[32]) {
  size_t n = 0;
  while (*s != '\0') {
    if (*s == ':') {
      s++;
      continue;
    }
    int hi = hexval(s[0]);
    int lo = hi < 0 ? -1 : hexval(s[1]);
    if (lo < 0 || n == 32)
      return -EINVAL;
    out[n++] = (unsigned char)(hi << 4 | lo);
    s += 2;
  }
  return n == 32 ? 0 : -EINVAL;
}

/* "h2,http/1.1" to the wire format (length-prefixed names). */
static int parse_alpn(const char *s, unsigned char *out, size_t cap,
                      size_t *outlen) {
  size_t n = 0;
  while (*s != '\0') {
    const char *end = strchr(s, ',');
    size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
    if (len == 0 || len > 255 || n + 1 + len > cap)
      return -EINVAL;
    out[n++] = (unsigned char)len;
    memcpy(out + n, s, len);
    n += len;
    s += len;
    if (*s == ',')
      s++;
  }
  if (n == 0)
    return -EINVAL;
  *outlen = n;
  return 0;
}

void sk__tls_ctx_hold(sk_tls_ctx *ctx) {
  __atomic_fetch_add(&ctx->refs, 1, __ATOMIC_RELAXED);
}

sk_tls_ctx *sk_tls_ctx_ref(sk_tls_ctx *ctx) {
  if (ctx != NULL)
    sk__tls_ctx_hold(ctx);
  return ctx;
}

void sk_tls_ctx_free(sk_tls_ctx *ctx) {
  if (ctx == NULL)
    return;
  if (__atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  for (size_t i = 1; i < ctx->ncerts; i++)
    SSL_CTX_free(ctx->certs[i]);
  free(ctx->certs);
  if (ctx->cache != NULL) {
    for (size_t i = 0; i < SK_TLS_SESSION_CACHE; i++)
      SSL_SESSION_free(ctx->cache[i].sess);
    free(ctx->cache);
    pthread_mutex_destroy(&ctx->cache_mu);
  }
  SSL_CTX_free(ctx->ssl);
  free(ctx);
}

/* ---- certificates, decoded ---- */

/* A malloc'ed copy of n bytes a peer controls, printable ASCII only: other
 * bytes (and the backslash) become \xHH. */
static char *dup_printable(const unsigned char *p, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  char *out = malloc(4 * n + 1), *o = out;
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
      *o++ = (char)p[i];
    } else {
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hex[p[i] >> 4];
      *o++ = hex[p[i] & 15];
    }
  }
  *o = '\0';
  return out;
}

/* What a memory BIO holds, as a malloc'ed string; frees the BIO. */
static char *bio_string(BIO *b, int ok) {
  char *data = NULL, *out = NULL;
  long n = b != NULL ? BIO_get_mem_data(b, &data) : -1;
  if (ok && n >= 0 && (out = malloc((size_t)n + 1)) != NULL) {
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
  }
  BIO_free(b);
  return out;
}

/* A name on one line, RFC 2253 (which escapes control and non-ASCII
 * bytes). */
static char *name_text(const X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  return bio_string(
      b, b != NULL && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0);
}

static int asn1_time(const ASN1_TIME *t, time_t *out) {
  struct tm tm;
  if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
    return -1;
  *out = timegm(&tm);
  return 0;
}

/* Appends a malloc'ed string to a growing array. */
static int push_str(char ***v, size_t *n, char *str) {
  char **p;
  if (str == NULL)
    return -ENOMEM;
  p = realloc(*v, (*n + 1) * sizeof(**v));
  if (p == NULL) {
    free(str);
    return -ENOMEM;
  }
  p[(*n)++] = str;
  *v = p;
  return 0;
}

static int sans_of(X509 *x, sk_tls_cert *out) {
  GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int rc = 0;
  for (int i = 0; rc == 0 && i < sk_GENERAL_NAME_num(g); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, i);
    char ip[INET6_ADDRSTRLEN];
    if (gn->type == GEN_DNS) {
      const ASN1_IA5STRING *d = gn->d.dNSName;
      rc = push_str(&out->dns_names, &out->dns_count,
                    dup_printable(ASN1_STRING_get0_data(d),
                                  (size_t)ASN1_STRING_length(d)));
    } else if (gn->type == GEN_IPADD) {
      const ASN1_OCTET_STRING *a = gn->d.iPAddress;
      int len = ASN1_STRING_length(a);
      int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (af != 0 &&
          inet_ntop(af, ASN1_STRING_get0_data(a), ip, sizeof(ip)) != NULL)
        rc = push_str(&out->ip_addrs, &out->ip_count, strdup(ip));
    }
  }
  GENERAL_NAMES_free(g);
  ERR_clear_error();
  return rc;
}

/* Fills *out from x (NULL: -ENOENT). On failure *out is left zeroed. */
int sk__tls_cert_decode(X509 *x, sk_tls_cert *out) {
  unsigned char *der = NULL;
  int n, rc = -ENOMEM;
  BIO *b;

  if (out == NULL)
    return -EINVAL;
  memset(out, 0, sizeof(*out));
  if (x == NULL)
    return -ENOENT;
  n = i2d_X509(x, &der);
  if (n > 0 && (out->der = malloc((size_t)n)) != NULL) {
    memcpy(out->der, der, (size_t)n);
    out->der_len = (size_t)n;
  }
  OPENSSL_free(der);
  b = BIO_new(BIO_s_mem());
  out->pem = bio_string(b, b != NULL && PEM_write_bio_X509(b, x) == 1);
  out->subject = name_text(X509_get_subject_name(x));
  out->issuer = name_text(X509_get_issuer_name(x));
  if (out->der == NULL || out->pem == NULL || out->subject == NULL ||
      out->issuer == NULL || sans_of(x, out) != 0)
    goto fail;
  rc = SK_ETLS;
  if (asn1_time(X509_get0_notBefore(x), &out->not_before) != 0 ||
      asn1_time(X509_get0_notAfter(x), &out->not_after) != 0 ||
      sk__tls_fingerprint(x, out->fingerprint, sizeof(out->fingerprint)) != 0)
    goto fail;
  return 0;
fail:
  ERR_clear_error();
  sk_tls_cert_free(out);
  return rc;
}

void sk_tls_cert_free(sk_tls_cert *c) {
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->dns_count; i++)
    free(c->dns_names[i]);
  for (size_t i = 0; i < c->ip_count; i++)
    free(c->ip_addrs[i]);
  free(c->dns_names);
  free(c->ip_addrs);
  free(c->der);
  free(c->pem);
  free(c->subject);
  free(c->issuer);
  memset(c, 0, sizeof(*c));
}

int sk_tls_cert_from_der(sk_tls_cert *out, const void *der, size_t len) {
  const unsigned char *p = der;
  X509 *x;
  int rc;
  if (out == NULL || der == NULL || len == 0 || len > 0x7fffffff) {
    if (out != NULL)
      memset(out, 0, sizeof(*out));
    return -EINVAL;
  }
  x = d2i_X509(NULL, &p, (long)len);
  if (x == NULL) {
    memset(out, 0, sizeof(*out));
    sk__tls_set_error_queue("not a DER certificate");
    return SK_ETLS;
  }
  rc = sk__tls_cert_decode(x, out);
  X509_free(x);
  return rc;
}

int sk_tls_ctx_cert(const sk_tls_ctx *ctx, size_t index, sk_tls_cert *out) {
  SSL_CTX *sc;
  if (ctx == NULL || out == NULL) {
    if (out != NULL)
      memset(out, 0, sizeof(*out));
    return -EINVAL;
  }
  sc = index == 0 ? ctx->ssl : index < ctx->ncerts ? ctx->certs[index] : NULL;
  if (sc == NULL) {
    memset(out, 0, sizeof(*out));
    return -ENOENT;
  }
  return sk__tls_cert_decode(SSL_CTX_get0_certificate(sc), out);
}

/* ---- contexts ---- */

/* Replaces chain verification on a pinning client: the leaf's SHA-256 must
 * equal the pin, nothing else counts. */
static int pin_verify(X509_STORE_CTX *xs, void *arg) {
  const sk_tls_ctx *ctx = arg;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  X509 *leaf = X509_STORE_CTX_get0_cert(xs);

  if (leaf != NULL && X509_digest(leaf, EVP_sha256(), md, &n) && n == 32 &&
      CRYPTO_memcmp(md, ctx->pin, 32) == 0) {
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
  }
  X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

/* With a verification callback: OpenSSL (or the pin) gives its verdict,
 * and the callback decides. */
static int app_verify(X509_STORE_CTX *xs, void *arg) {
  const sk_tls_ctx *ctx = arg;
  SSL *ssl =
      X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
  struct sk__tls_conn *c =
      ssl != NULL ? SSL_get_ex_data(ssl, sk__tls_conn_idx) : NULL;
  STACK_OF(X509) *sk = X509_STORE_CTX_get0_untrusted(xs);
  X509 *leaf = X509_STORE_CTX_get0_cert(xs);
  int ok = ctx->has_pin ? pin_verify(xs, arg) : X509_verify_cert(xs);
  int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(xs);
  size_t n = sk != NULL ? (size_t)sk_X509_num(sk) : 0, cnt = 0;
  unsigned char **der;
  size_t *lens;
  sk_tls_verify_info info;
  char reason[sizeof(c->reason)] = "";

  ERR_clear_error();
  if (n == 0)
    n = 1; /* the leaf alone */
  der = calloc(n, sizeof(*der));
  lens = calloc(n, sizeof(*lens));
  if (der == NULL || lens == NULL || c == NULL || leaf == NULL) {
    free(der);
    free(lens);
    X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    X509 *x =
        sk != NULL && sk_X509_num(sk) > 0 ? sk_X509_value(sk, (int)i) : leaf;
    int len = i2d_X509(x, &der[cnt]);
    if (len > 0)
      lens[cnt++] = (size_t)len;
  }
  memset(&info, 0, sizeof(info));
  info.chain_count = cnt;
  info.chain_der = (const unsigned char *const *)der;
  info.chain_len = lens;
  info.error = err;
  info.error_text =
      err == X509_V_ERR_APPLICATION_VERIFICATION && ctx->has_pin
          ? "the certificate does not match the pinned SHA-256 fingerprint"
          : X509_verify_cert_error_string(err);
  info.server = ctx->server;
  info.servername = ctx->server
                        ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)
                        : (c->host[0] != '\0' ? c->host : NULL);
  ok = ctx->verify_cb(ctx->verify_arg, &info, reason, sizeof(reason));
  if (!ok) {
    reason[sizeof(reason) - 1] = '\0';
    snprintf(c->reason, sizeof(c->reason), "%s",
             reason[0] != '\0' ? reason : info.error_text);
  }
  for (size_t i = 0; i < cnt; i++)
    OPENSSL_free(der[i]);
  free(der);
  free(lens);
  /* "certificate rejected": the peer gets a bad_certificate alert. */
  X509_STORE_CTX_set_error(xs, ok ? X509_V_OK : X509_V_ERR_CERT_REJECTED);
  return ok ? 1 : 0;
}

/* The first of the context's certificates that holds name, exactly (pass
 * 0) or by a wildcard (pass 1), or 0 (the default). */
static size_t cert_for_name(const sk_tls_ctx *ctx, const char *name) {
  const unsigned flags[2] = {X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                                 X509_CHECK_FLAG_NO_WILDCARDS,
                             X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                                 X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS};
  if (name == NULL)
    return 0;
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < ctx->ncerts; i++)
      if (X509_check_host(SSL_CTX_get0_certificate(ctx->certs[i]), name, 0,
                          flags[pass], NULL) == 1)
        return i;
  return 0;
}

/* Server: picks the certificate for this client once its ClientHello (and
 * the name it asked for) is known. */
static int select_cert(SSL *ssl, void *arg) {
  const sk_tls_ctx *ctx = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  long i = -1;
  SSL_CTX *sc;
  STACK_OF(X509) *chain = NULL;

  if (ctx->select_cb != NULL)
    i = ctx->select_cb(ctx->select_arg, name, ctx->ncerts);
  if (i == -1)
    i = (long)cert_for_name(ctx, name);
  if (i < 0 || (size_t)i >= ctx->ncerts)
    return 0; /* refused: the handshake fails */
  if (i == 0)
    return 1; /* the SSL has the default already */
  sc = ctx->certs[i];
  SSL_CTX_get0_chain_certs(sc, &chain);
  SSL_certs_clear(ssl);
  return SSL_use_cert_and_key(ssl, SSL_CTX_get0_certificate(sc),
                              SSL_CTX_get0_privatekey(sc), chain, 1) == 1;
}

/* Client: a new session (with TLS 1.3 it arrives after the handshake) is
 * remembered for the connection's server name. A copy is kept: OpenSSL
 * marks the connection's own object unusable when the connection ends
 * without close_notify. Returns 0: OpenSSL keeps its reference. */
static int session_new(SSL *ssl, SSL_SESSION *sess) {
  const struct sk__tls_conn *c = SSL_get_ex_data(ssl, sk__tls_conn_idx);
  sk_tls_ctx *ctx = c != NULL ? c->ctx : NULL;
  struct sess_entry *e = NULL;
  SSL_SESSION *copy;

  if (ctx == NULL || ctx->cache == NULL || c->host[0] == '\0' ||
      (copy = SSL_SESSION_dup(sess)) == NULL)
    return 0;
  pthread_mutex_lock(&ctx->cache_mu);
  for (size_t i = 0; i < SK_TLS_SESSION_CACHE; i++) {
    struct sess_entry *x = &ctx->cache[i];
    if (x->sess != NULL && strcmp(x->name, c->host) == 0) {
      e = x;
      break;
    }
    if (e == NULL ||
        (e->sess != NULL && (x->sess == NULL || x->used < e->used)))
      e = x;
  }
  SSL_SESSION_free(e->sess);
  e->sess = copy;
  snprintf(e->name, sizeof(e->name), "%s", c->host);
  e->used = ++ctx->cache_tick;
  pthread_mutex_unlock(&ctx->cache_mu);
  return 0;
}

/* Client: offers the session remembered for host, if any. */
static void session_offer(sk_tls_ctx *ctx, SSL *ssl, const char *host) {
  if (ctx->cache == NULL || host[0] == '\0')
    return;
  pthread_mutex_lock(&ctx->cache_mu);
  for (size_t i = 0; i < SK_TLS_SESSION_CACHE; i++) {
    struct sess_entry *e = &ctx->cache[i];
    if (e->sess != NULL && strcmp(e->name, host) == 0) {
      /* A copy: OpenSSL marks the session a connection used as not
       * resumable when that connection ends without close_notify (an
       * abort), which would cost every other handshake its resumption. */
      SSL_SESSION *copy =
          SSL_SESSION_is_resumable(e->sess) ? SSL_SESSION_dup(e->sess) : NULL;
      if (copy != NULL && SSL_set_session(ssl, copy) == 1)
        e->used = ++ctx->cache_tick;
      SSL_SESSION_free(copy); /* SSL_set_session took its own reference */
      break;
    }
  }
  pthread_mutex_unlock(&ctx->cache_mu);
  ERR_clear_error();
}

static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  const sk_tls_ctx *ctx = arg;
  unsigned char *sel = NULL;
  SK__UNUSED(ssl);
  /* The server's list goes first: its preference order wins. */
  if (SSL_select_next_proto(&sel, outlen, ctx->alpn,
                            (unsigned int)ctx->alpn_len, in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static int add_ext(X509 *x, X509V3_CTX *v, int nid, const char *value) {
  X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, v, nid, value);
  int ok = ex != NULL && X509_add_ext(x, ex, -1);
  X509_EXTENSION_free(ex);
  return ok;
}

/* An ephemeral P-256 key and a self-signed certificate for it, in memory. */
static int make_self_signed(SSL_CTX *sc) {
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  BIGNUM *bn = NULL;
  unsigned char serial[16];
  X509V3_CTX v;
  X509_NAME *name;
  int ok = 0;

  if (pk == NULL || x == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
    goto done;
  serial[0] &= 0x7f; /* a positive serial number */
  bn = BN_bin2bn(serial, sizeof(serial), NULL);
  if (bn == NULL || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
      !X509_set_version(x, X509_VERSION_3))
    goto done;
  /* A few minutes of slack for clocks that are slightly behind. */
  if (!X509_gmtime_adj(X509_getm_notBefore(x), -300) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), 86400) || !X509_set_pubkey(x, pk))
    goto done;
  name = X509_get_subject_name(x);
  if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                  (const unsigned char *)"localhost", -1, -1,
                                  0) ||
      !X509_set_issuer_name(x, name))
    goto done;
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, x, x, NULL, NULL, 0);
  if (!add_ext(x, &v, NID_subject_alt_name,
               "DNS:localhost,IP:127.0.0.1,IP:::1") ||
      !add_ext(x, &v, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(x, &v, NID_key_usage, "critical,digitalSignature") ||
      !add_ext(x, &v, NID_ext_key_usage, "serverAuth") ||
      !add_ext(x, &v, NID_subject_key_identifier, "hash"))
    goto done;
  if (X509_sign(x, pk, EVP_sha256()) <= 0)
    goto done;
  ok = SSL_CTX_use_certificate(sc, x) == 1 &&
       SSL_CTX_use_PrivateKey(sc, pk) == 1;
done:
  if (!ok)
    sk__tls_set_error_queue("cannot make a self-signed certificate");
  BN_free(bn);
  X509_free(x);
  EVP_PKEY_free(pk);
  return ok ? 0 : SK_ETLS;
}

static int check_options(const sk_tls_options *o) {
  if (o->server) {
    if (o->self_signed && (o->cert_file != NULL || o->key_file != NULL)) {
      sk__tls_set_error("self_signed excludes cert_file and key_file");
      return -EINVAL;
    }
    if (!o->self_signed && o->cert_file == NULL) {
      sk__tls_set_error(
          "a server needs cert_file (and key_file) or self_signed");
      return -EINVAL;
    }
    if (o->require_client_cert && o->ca_file == NULL && o->ca_dir == NULL) {
      sk__tls_set_error("require_client_cert needs ca_file or ca_dir");
      return -EINVAL;
    }
    if (o->insecure_no_verify || o->pin_sha256 != NULL) {
      sk__tls_set_error("insecure_no_verify and pin_sha256 are client options");
      return -EINVAL;
    }
    if (o->more_certs_count > 0 && o->more_certs == NULL) {
      sk__tls_set_error("more_certs_count without more_certs");
      return -EINVAL;
    }
    if (o->more_certs_count >= SK_TLS_MAX_CERTS) {
      sk__tls_set_error("more than %d certificates", SK_TLS_MAX_CERTS);
      return -EINVAL;
    }
    for (size_t i = 0; i < o->more_certs_count; i++)
      if (o->more_certs[i].cert_file == NULL) {
        sk__tls_set_error("more_certs[%zu] has no cert_file", i);
        return -EINVAL;
      }
    if (o->ticket_lifetime_s < 0) {
      sk__tls_set_error("ticket_lifetime_s must not be negative");
      return -EINVAL;
    }
  } else {
    if (o->self_signed || o->require_client_cert) {
      sk__tls_set_error(
          "self_signed and require_client_cert are server options");
      return -EINVAL;
    }
    if (o->insecure_no_verify && o->pin_sha256 != NULL) {
      sk__tls_set_error("insecure_no_verify and pin_sha256 exclude each other");
      return -EINVAL;
    }
    if (o->more_certs_count > 0 || o->select_cb != NULL ||
        o->ticket_lifetime_s != 0) {
      sk__tls_set_error(
          "more_certs, select_cb and ticket_lifetime_s are server "
          "options");
      return -EINVAL;
    }
    if (o->insecure_no_verify && o->verify_cb != NULL) {
      sk__tls_set_error("insecure_no_verify and verify_cb exclude each other");
      return -EINVAL;
    }
  }
  if (o->key_file != NULL && o->cert_file == NULL) {
    sk__tls_set_error("key_file without cert_file");
    return -EINVAL;
  }
  return 0;
}

/* Names why file (a "certificate", "private key", "CA file") could not be
 * loaded: errno's text when it cannot be read, else OpenSSL's reason from
 * the queue, which is cleared. Returns SK_ETLS. */
static int load_error(const char *what, const char *path) {
  FILE *f = fopen(path, "r");
  const char *why = NULL, *first = NULL;
  unsigned long e;
  char buf[1];

  if (f == NULL) {
    why = strerror(errno);
  } else {
    /* fopen() opens a directory; reading it fails. */
    if (fread(buf, 1, 1, f) == 0 && ferror(f))
      why = strerror(errno);
    fclose(f);
  }
  while (why == NULL && (e = ERR_get_error()) != 0) {
    int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
    if (first == NULL)
      first = ERR_reason_error_string(e);
    if (lib == ERR_LIB_PEM && reason == PEM_R_NO_START_LINE)
      why = "no PEM data found";
    else if (lib == ERR_LIB_OSSL_DECODER)
      why = "no PEM private key found";
    else if (lib == ERR_LIB_PEM && (reason == PEM_R_BAD_PASSWORD_READ ||
                                    reason == PEM_R_PROBLEMS_GETTING_PASSWORD))
      why = "the key is encrypted (sockit reads unencrypted keys only)";
    else if (lib == ERR_LIB_SSL && reason == SSL_R_EE_KEY_TOO_SMALL)
      why = "the key is too small for OpenSSL's security level";
    else if (lib == ERR_LIB_SSL && reason == SSL_R_CA_MD_TOO_WEAK)
      why = "the certificate's signature is too weak for OpenSSL's security "
            "level";
  }
  ERR_clear_error();
  if (why == NULL)
    why = first != NULL ? first : "not a usable PEM file";
  sk__tls_set_error("cannot load %s %s: %s", what, path, why);
  return SK_ETLS;
}

/* Never asks for a password (OpenSSL's default prompts on the terminal): an
 * encrypted key fails to load instead. */
static int no_password(char *buf, int size, int rwflag, void *arg) {
  SK__UNUSED(buf);
  SK__UNUSED(size);
  SK__UNUSED(rwflag);
  SK__UNUSED(arg);
  return -1;
}

/* Loads one certificate chain and its key into sc, naming the file and the
 * reason on failure. */
static int load_pair(SSL_CTX *sc, const char *cert, const char *key) {
  if (key == NULL)
    key = cert;
  SSL_CTX_set_default_passwd_cb(sc, no_password);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(sc, cert) != 1)
    return load_error("certificate", cert);
  if (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1) {
    unsigned long e = ERR_peek_last_error();
    /* OpenSSL compares the key with the certificate while loading it. */
    if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
        ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
      sk__tls_set_error("private key %s does not match the certificate in %s",
                        key, cert);
      ERR_clear_error();
      return SK_ETLS;
    }
    return load_error("private key", key);
  }
  if (SSL_CTX_check_private_key(sc) != 1) {
    sk__tls_set_error("private key %s does not match the certificate in %s",
                      key, cert);
    ERR_clear_error();
    return SK_ETLS;
  }
  return 0;
}

static int load_identity(SSL_CTX *sc, const sk_tls_options *o) {
  if (o->self_signed)
    return make_self_signed(sc);
  if (o->cert_file == NULL)
    return 0;
  return load_pair(sc, o->cert_file, o->key_file);
}

/* Server: the more_certs pairs, each in an SSL_CTX of its own, and the
 * callback that chooses among them. */
static int load_more_certs(sk_tls_ctx *ctx, const sk_tls_options *o) {
  size_t n = 1 + o->more_certs_count;
  int need_cb = o->more_certs_count > 0 || o->select_cb != NULL;

  ctx->certs = calloc(n, sizeof(*ctx->certs));
  if (ctx->certs == NULL)
    return -ENOMEM;
  ctx->certs[0] = ctx->ssl;
  ctx->ncerts = 1;
  for (size_t i = 0; i < o->more_certs_count; i++) {
    SSL_CTX *sc = SSL_CTX_new(TLS_method());
    int rc;
    if (sc == NULL) {
      sk__tls_set_error_queue("cannot create an SSL context");
      return -ENOMEM;
    }
    ctx->certs[ctx->ncerts++] = sc;
    rc = load_pair(sc, o->more_certs[i].cert_file, o->more_certs[i].key_file);
    if (rc != 0)
      return rc;
  }
  ctx->select_cb = o->select_cb;
  ctx->select_arg = o->select_arg;
  if (need_cb)
    SSL_CTX_set_cert_cb(ctx->ssl, select_cert, ctx);
  return 0;
}

/* A CA directory is read lazily by OpenSSL (a missing one loads fine and
 * trusts nothing): check that it can be listed. */
static int check_ca_dir(const char *path) {
  DIR *d = path != NULL ? opendir(path) : NULL;
  if (path != NULL && d == NULL) {
    sk__tls_set_error("cannot load CA directory %s: %s", path, strerror(errno));
    return SK_ETLS;
  }
  if (d != NULL)
    closedir(d);
  return 0;
}

static int load_trust(sk_tls_ctx *ctx, const sk_tls_options *o) {
  SSL_CTX *sc = ctx->ssl;
  int have_ca = o->ca_file != NULL || o->ca_dir != NULL;

  ctx->verify_cb = o->verify_cb;
  ctx->verify_arg = o->verify_arg;
  ERR_clear_error();
  if (check_ca_dir(o->ca_dir) != 0)
    return SK_ETLS;
  if (have_ca && SSL_CTX_load_verify_locations(sc, o->ca_file, o->ca_dir) != 1)
    return load_error(o->ca_file != NULL ? "CA file" : "CA directory",
                      o->ca_file != NULL ? o->ca_file : o->ca_dir);
  if (o->server) {
    if (!have_ca && o->verify_cb == NULL) {
      SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
      return 0;
    }
    if (o->verify_cb != NULL)
      SSL_CTX_set_cert_verify_callback(sc, app_verify, ctx);
    /* Tell clients which CAs are accepted, so they pick the right cert. */
    if (o->ca_file != NULL) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
      if (names != NULL)
        SSL_CTX_set_client_CA_list(sc, names);
      ERR_clear_error();
    }
    SSL_CTX_set_verify(
        sc,
        SSL_VERIFY_PEER |
            (o->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
    return 0;
  }
  if (o->insecure_no_verify) {
    SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
    return 0;
  }
  if (o->pin_sha256 != NULL) {
    if (parse_pin(o->pin_sha256, ctx->pin) != 0) {
      sk__tls_set_error("pin_sha256: expected 64 hex digits (colons allowed)");
      return -EINVAL;
    }
    ctx->has_pin = 1;
    SSL_CTX_set_cert_verify_callback(
        sc, o->verify_cb != NULL ? app_verify : pin_verify, ctx);
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
    return 0;
  }
  if (!have_ca && SSL_CTX_set_default_verify_paths(sc) != 1) {
    sk__tls_set_error_queue("cannot load the system trust store");
    return SK_ETLS;
  }
  ctx->verify_host = 1;
  if (o->verify_cb != NULL)
    SSL_CTX_set_cert_verify_callback(sc, app_verify, ctx);
  SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
  return 0;
}

int sk_tls_ctx_new(sk_tls_ctx **out, const sk_tls_options *opt) {
  sk_tls_ctx *ctx;
  SSL_CTX *sc;
  int rc;

  if (out == NULL || opt == NULL) {
    sk__tls_set_error("no context or options given");
    return -EINVAL;
  }
  *out = NULL;
  rc = check_options(opt);
  if (rc != 0)
    return rc;
  ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL)
    return -ENOMEM;
  ERR_clear_error();
  sc = SSL_CTX_new(TLS_method());
  if (sc == NULL) {
    sk__tls_set_error_queue("cannot create an SSL context");
    free(ctx);
    return -ENOMEM;
  }
  ctx->ssl = sc;
  ctx->refs = 1;
  ctx->server = opt->server != 0;
  ctx->timeout_ms = opt->handshake_timeout_ms == 0 ? SK_TLS_HANDSHAKE_TIMEOUT_MS
                                                   : opt->handshake_timeout_ms;
  SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
  SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
  /* Resumption is by tickets only: a server keeps no session cache (the
   * ticket carries the session, encrypted with the keys OpenSSL makes at
   * random for this SSL_CTX); a client keeps its own small cache (see
   * session_new()), not OpenSSL's. */
  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
  if (opt->no_resumption) {
    SSL_CTX_set_options(sc, SSL_OP_NO_TICKET);
    if (ctx->server)
      SSL_CTX_set_num_tickets(sc, 0);
  } else if (ctx->server) {
    static const unsigned char sid_ctx[] = "sockit";
    SSL_CTX_set_num_tickets(sc, 2);
    SSL_CTX_set_timeout(sc, opt->ticket_lifetime_s > 0
                                ? opt->ticket_lifetime_s
                                : SK_TLS_TICKET_LIFETIME_S);
    /* Needed to resume a session whose client certificate was checked. */
    SSL_CTX_set_session_id_context(sc, sid_ctx, sizeof(sid_ctx) - 1);
  } else {
    ctx->cache = calloc(SK_TLS_SESSION_CACHE, sizeof(*ctx->cache));
    if (ctx->cache == NULL || pthread_mutex_init(&ctx->cache_mu, NULL) != 0) {
      free(ctx->cache);
      ctx->cache = NULL;
      sk_tls_ctx_free(ctx);
      return -ENOMEM;
    }
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT |
                                           SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(sc, session_new);
  }
  rc = load_identity(sc, opt);
  if (rc == 0 && ctx->server)
    rc = load_more_certs(ctx, opt);
  if (rc == 0)
    rc = load_trust(ctx, opt);
  if (rc == 0 && opt->alpn != NULL) {
    if (parse_alpn(opt->alpn, ctx->alpn, sizeof(ctx->alpn), &ctx->alpn_len) !=
        0) {
      sk__tls_set_error(
          "alpn: expected a comma-separated list of names of 1-255 "
          "bytes");
      rc = -EINVAL;
    } else if (ctx->server) {
      SSL_CTX_set_alpn_select_cb(sc, alpn_select, ctx);
    } else if (SSL_CTX_set_alpn_protos(sc, ctx->alpn,
                                       (unsigned int)ctx->alpn_len) != 0) {
      sk__tls_set_error_queue("cannot set ALPN");
      rc = -ENOMEM;
    }
  }
  if (rc != 0) {
    sk_tls_ctx_free(ctx);
    return rc;
  }
  *out = ctx;
  return 0;
}

int sk_tls_ctx_fingerprint(const sk_tls_ctx *ctx, char *buf, size_t len) {
  if (ctx == NULL)
    return -EINVAL;
  return sk__tls_fingerprint(SSL_CTX_get0_certificate(ctx->ssl), buf, len);
}

/* A new SSL for one connection: side, SNI, the name to verify, the session
 * to offer; conn (which must live as long as the SSL) is what its
 * callbacks see. */
int sk__tls_ssl_new(sk_tls_ctx *ctx, const char *servername,
                    struct sk__tls_conn *conn, SSL **out) {
  char *host = conn->host;
  unsigned char addr[16];
  int is_ip = 0;
  SSL *ssl;

  *out = NULL;
  conn->ctx = ctx;
  conn->host[0] = conn->reason[0] = '\0';
  pthread_once(&conn_once, conn_init);
  if (sk__tls_conn_idx < 0) {
    sk__tls_set_error("out of memory");
    return -ENOMEM;
  }
  if (!ctx->server && servername != NULL) {
    size_t n = strlen(servername);
    /* Accept "[::1]" as well as "::1". */
    if (n >= 2 && servername[0] == '[' && servername[n - 1] == ']') {
      servername++;
      n -= 2;
    }
    if (n == 0 || n >= sizeof(conn->host)) {
      sk__tls_set_error("servername: empty or too long");
      return -EINVAL;
    }
    memcpy(host, servername, n);
    host[n] = '\0';
    is_ip = inet_pton(AF_INET, host, addr) == 1 ||
            inet_pton(AF_INET6, host, addr) == 1;
  } else if (!ctx->server && ctx->verify_host) {
    sk__tls_set_error(
        "servername is required to verify the server's certificate");
    return -EINVAL;
  }
  ERR_clear_error();
  ssl = SSL_new(ctx->ssl);
  if (ssl == NULL) {
    sk__tls_set_error_queue("cannot create an SSL session");
    return -ENOMEM;
  }
  SSL_set_ex_data(ssl, sk__tls_conn_idx, conn);
  if (ctx->server) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
    session_offer(ctx, ssl, host);
    if (servername != NULL) {
      int ok = 1;
      /* SNI carries host names only, never address literals (RFC 6066). */
      if (!is_ip)
        ok = SSL_set_tlsext_host_name(ssl, host) == 1;
      if (ok && ctx->verify_host) {
        X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(p,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(p, host) == 1
                   : SSL_set1_host(ssl, host) == 1;
      }
      if (!ok) {
        sk__tls_set_error_queue("servername");
        SSL_free(ssl);
        return -EINVAL;
      }
    }
  }
  *out = ssl;
  return 0;
}

const char *sk__tls_alpn_of(SSL *ssl, char *buf) {
  const unsigned char *p = NULL;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl, &p, &n);
  if (p == NULL || n == 0)
    return NULL;
  memcpy(buf, p, n); /* n <= 255, buf has 256 bytes */
  buf[n] = '\0';
  return buf;
}

/* ---- one SSL per connection ---- */

BIO_METHOD *sk__tls_bio_method(const char *name, int (*rd)(BIO *, char *, int),
                               int (*wr)(BIO *, const char *, int),
                               long (*ctrl)(BIO *, int, long, void *)) {
  BIO_METHOD *m =
      BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, name);
  if (m == NULL)
    return NULL;
  if (!BIO_meth_set_read(m, rd) || !BIO_meth_set_write(m, wr) ||
      !BIO_meth_set_ctrl(m, ctrl)) {
    BIO_meth_free(m);
    return NULL;
  }
  return m;
}

int sk__tls_ssl_with_bio(sk_tls_ctx *ctx, const char *servername,
                         struct sk__tls_conn *conn, BIO_METHOD *m, void *arg,
                         SSL **out) {
  int rc = sk__tls_ssl_new(ctx, servername, conn, out);
  BIO *b = NULL;
  if (rc == 0 && (m == NULL || (b = BIO_new(m)) == NULL)) {
    sk__tls_set_error("out of memory");
    rc = -ENOMEM;
  }
  if (rc != 0) {
    SSL_free(*out);
    *out = NULL;
    return rc;
  }
  BIO_set_data(b, arg);
  BIO_set_init(b, 1);
  SSL_set_bio(*out, b, b);
  return 0;
}
