/* Private to the OpenSSL implementation: what tls_ctx.c shares with the
 * async transport (tls_stream.c) and the sync session (tls_socket.c). */
#ifndef SOCKIT_TLS_INTERNAL_H
#define SOCKIT_TLS_INTERNAL_H

#include "internal.h"

#include <pthread.h>

#include <openssl/ssl.h>

/* Largest plaintext of one TLS record. */
#define SK__TLS_RECORD_MAX 16384

/* A client's remembered session for one server name. */
struct sess_entry {
  char name[256];
  SSL_SESSION *sess; /* NULL: free slot */
  uint64_t used;     /* for dropping the least recently used */
};

struct sk_tls_ctx {
  SSL_CTX *ssl;
  int server;
  int verify_host; /* client verifying against CAs: servername required */
  int has_pin;
  unsigned char pin[32];
  unsigned char alpn[256]; /* server: wire-format list, preference order */
  size_t alpn_len;
  int timeout_ms; /* async handshake deadline; < 0 = none */
  int refs;       /* atomic */
  /* Server: the certificates to choose from by SNI. certs[0] is ssl itself
   * (cert_file), the others hold one more_certs pair each. */
  SSL_CTX **certs;
  size_t ncerts;
  sk_tls_select_cb select_cb;
  void *select_arg;
  sk_tls_verify_cb verify_cb;
  void *verify_arg;
  /* Client: remembered sessions (NULL when resumption is off). */
  struct sess_entry *cache;
  uint64_t cache_tick;
  pthread_mutex_t cache_mu;
};

/* What the callbacks OpenSSL runs during a handshake need to know about the
 * connection: kept in the SSL's ex_data (index sk__tls_conn_idx), embedded in
 * the async and the sync session state. */
struct sk__tls_conn {
  sk_tls_ctx *ctx;
  char host[256];   /* client: the servername as given ("" if none) */
  char reason[256]; /* why the verification callback rejected, or "" */
};

/* What is known about a connection when one of its SSL calls failed, to
 * name the failure. */
struct sk__tls_fail {
  const sk_tls_ctx *ctx;
  int handshaking; /* the handshake was not complete */
  int got_bytes;   /* the peer sent at least one byte */
  int io_err;      /* negative errno of a failed socket call, or 0 */
};

/* The calling thread's error text, as sk_tls_last_error() returns it. */
extern _Thread_local char sk__tls_errbuf[256];

/* The SSL ex_data index of struct sk__tls_conn. */
extern int sk__tls_conn_idx;

/* The calling thread's error text (sk_tls_last_error()). */
void sk__tls_set_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* what + OpenSSL's oldest queued reason; clears the queue. */
void sk__tls_set_error_queue(const char *what);
/* Names the failure of an SSL call that returned sslerr (SSL_get_error):
 * returns the sockit code and sets the thread's error text. Clears
 * OpenSSL's error queue. */
int sk__tls_classify(SSL *ssl, int sslerr, const struct sk__tls_fail *fi);

void sk__tls_ctx_hold(sk_tls_ctx *ctx);
const char *sk__tls_alpn_of(SSL *ssl, char *buf);
int sk__tls_fingerprint(X509 *x, char *buf, size_t len);
int sk__tls_cert_decode(X509 *x, sk_tls_cert *out);

/* A new SSL session for one connection: side, SNI, the name to verify, the
 * session to offer; conn must live as long as the SSL. */
int sk__tls_ssl_new(sk_tls_ctx *ctx, const char *servername,
                    struct sk__tls_conn *conn, SSL **out);
/* A BIO method of our own (NULL when out of memory). */
BIO_METHOD *sk__tls_bio_method(const char *name, int (*rd)(BIO *, char *, int),
                               int (*wr)(BIO *, const char *, int),
                               long (*ctrl)(BIO *, int, long, void *));
/* sk__tls_ssl_new() with its I/O through a BIO of method m whose data is
 * arg. On failure nothing is left allocated and *out is NULL. */
int sk__tls_ssl_with_bio(sk_tls_ctx *ctx, const char *servername,
                         struct sk__tls_conn *conn, BIO_METHOD *m, void *arg,
                         SSL **out);

#endif
