/* TLS: contexts, and wrapping an async stream or a sync socket.
 *
 * TLS in sockit is a filter between your code and the socket. You make a
 * context once (certificates, trust, policy), then put TLS on connections
 * that are already connected:
 *
 *  - async: sk_stream_tls_start() on a connected sk_stream runs the
 *    handshake on the loop; once its callback reports 0, sk_stream_send(),
 *    sk_stream_recv_start(), sk_stream_shutdown() and sk_close() work
 *    exactly as on a plain stream, with plaintext in and out.
 *  - sync: sk_tls_connect() / sk_tls_accept() on a connected sk_socket,
 *    then sk_tls_send() / sk_tls_recv() / sk_tls_shutdown() /
 *    sk_tls_close(), each with a timeout like the rest of the sync API; or
 *    the step API (sk_tls_send_step(), ...) that never waits, for a poll
 *    loop of your own.
 *
 * Secure by default. TLS 1.2 is the oldest version spoken and TLS 1.3 is
 * preferred. A client verifies the server's certificate chain against the
 * system trust store (or ca_file / ca_dir) AND checks that the certificate
 * names the host it wanted (the servername given when starting TLS: a DNS
 * name, or an IPv4/IPv6 literal, matched against the certificate's subject
 * alternative names). Turning verification off takes an option whose name
 * says what it does (insecure_no_verify). Renegotiation and compression are
 * disabled.
 *
 * Trust hooks: a verification callback (verify_cb) sees the peer's chain,
 * OpenSSL's verdict and the host name, and accepts or rejects; the peer's
 * certificate is readable after the handshake (sk_stream_tls_peer_cert(),
 * sk_tls_peer_cert()); a server holds several certificates and answers each
 * client with the one that names the host it asked for (SNI).
 *
 * Session resumption is on by default on both sides (no_resumption turns it
 * off). A server issues session tickets (stateless: the server keeps
 * nothing per client) encrypted with keys made at random when the context
 * is made, held in memory only and never rotated within a context: making
 * a new context (sockit-server does on SIGHUP) rotates them, and tickets
 * from the old one then get a full handshake. A ticket is honoured for
 * ticket_lifetime_s seconds (default SK_TLS_TICKET_LIFETIME_S, 2 hours). A
 * client context remembers the last session per server name (at most
 * SK_TLS_SESSION_CACHE entries, the least recently used dropped first) and
 * offers it on the next connection to that name; sk_stream_tls_resumed()
 * tells whether a handshake resumed. A resumed handshake sends no
 * certificate: the peer's certificate is the one verified when the session
 * was made, and verify_cb is not called again.
 *
 * Errors: the functions return 0 or a negative code like everything in
 * sockit. TLS failures use three codes of <sockit/error.h>:
 *  - SK_ETLSVERIFY: a certificate was rejected, by this side (expired,
 *    untrusted issuer, wrong host name, pin mismatch, missing client
 *    certificate) or by the peer (it sent an alert about our certificate);
 *  - SK_ETLSNOTLS:  the peer does not speak TLS (it sent something that is
 *    not a TLS record, such as plain text or an HTTP request, or closed the
 *    connection before sending a single byte of handshake);
 *  - SK_ETLS:       any other TLS failure (protocol error, no common
 *    version or cipher, an alert, a connection cut without close_notify).
 * A handshake that takes too long fails with -ETIMEDOUT; a failing socket
 * reports its own errno (-ECONNRESET, ...). sk_tls_last_error() gives the
 * reason in words, e.g. "certificate verify failed: certificate has
 * expired".
 *
 * Threads: a context may be shared by any number of connections and
 * threads. A stream's TLS state belongs to the stream's loop thread; an
 * sk_tls_socket to whichever thread uses it, one at a time.
 *
 * Built without TLS (-DSK_WITH_TLS=OFF), every function here fails with
 * SK_ENOTLS (the accessors return NULL).
 */
#ifndef SOCKIT_TLS_H
#define SOCKIT_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "socket.h"
#include "stream.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for a SHA-256 fingerprint as text: 32 bytes as "AB:CD:...:EF" (95
 * characters) plus the terminating NUL. */
#define SK_TLS_FINGERPRINT_LEN 96

/* Default deadline of an async handshake, in milliseconds. */
#define SK_TLS_HANDSHAKE_TIMEOUT_MS 10000

/* Default lifetime of a session ticket a server issues, in seconds. */
#define SK_TLS_TICKET_LIFETIME_S 7200

/* Sessions a client context remembers (one per server name). */
#define SK_TLS_SESSION_CACHE 64

/* Most certificate/key pairs a server context holds (cert_file and
 * more_certs together). */
#define SK_TLS_MAX_CERTS 64

/* A TLS context: certificates, trust and policy, shared by connections.
 * Opaque; made by sk_tls_ctx_new(). */
typedef struct sk_tls_ctx sk_tls_ctx;

/* A certificate, decoded: what sk_stream_tls_peer_cert(), sk_tls_peer_cert(),
 * sk_tls_ctx_cert() and sk_tls_cert_from_der() fill in. Every pointer is
 * allocated for the caller, who frees them all with sk_tls_cert_free(); the
 * struct does not borrow from the session, so it may outlive it. Text that
 * comes from the certificate is printable ASCII: other bytes appear as
 * \xHH (names) or RFC 2253 escapes (subject, issuer), so it is safe to log.
 */
typedef struct sk_tls_cert {
  unsigned char *der; /* the certificate in DER */
  size_t der_len;
  char *pem;        /* the same in PEM ("-----BEGIN CERTIFICATE-----\n...") */
  char *subject;    /* one line, RFC 2253: "CN=a.test,O=Example" */
  char *issuer;     /* the same for the issuer */
  char **dns_names; /* subjectAltName DNS names, in certificate order */
  size_t dns_count;
  char **ip_addrs; /* subjectAltName IP addresses as text ("::1") */
  size_t ip_count;
  time_t not_before; /* validity, seconds since the epoch (UTC) */
  time_t not_after;
  char fingerprint[SK_TLS_FINGERPRINT_LEN]; /* SHA-256, "AB:CD:...:EF" */
} sk_tls_cert;

/* What a verification callback is told. The chain is the peer's, as it sent
 * it, leaf first: chain_der[i] holds chain_len[i] bytes of DER (decode one
 * with sk_tls_cert_from_der()). All of it is valid during the call only. */
typedef struct sk_tls_verify_info {
  size_t chain_count;
  const unsigned char *const *chain_der;
  const size_t *chain_len;
  /* OpenSSL's verdict on the chain, with the host name check: 0 (it would
   * accept) or an X509_V_ERR_* code, and its text ("ok", "certificate has
   * expired", "hostname mismatch", ...). With pin_sha256 the verdict is the
   * pin's (X509_V_ERR_APPLICATION_VERIFICATION when it does not match). */
  int error;
  const char *error_text;
  /* Client: the host name (or address) being verified, as given to
   * sk_stream_tls_start() / sk_tls_connect(), or NULL. Server (checking a
   * client certificate): the name the client asked for by SNI, or NULL. */
  const char *servername;
  int server; /* 1 when this side is the server */
} sk_tls_verify_info;

/* A verification callback: returns 1 to accept the peer's certificate, 0
 * to reject it. On rejection it may write a reason (NUL-terminated, at most
 * reason_len bytes) into reason; the handshake then fails with
 * SK_ETLSVERIFY and sk_tls_last_error() says "certificate rejected: " and
 * that reason (or OpenSSL's verdict if none was given). It runs during the
 * handshake, on the thread running it (the loop's for streams), once per
 * full handshake; it must not block and must not free the context. */
typedef int (*sk_tls_verify_cb)(void *arg, const sk_tls_verify_info *info,
                                char *reason, size_t reason_len);

/* A certificate selection callback (server): called for each handshake
 * that needs a certificate (not for resumed ones) with the name the client
 * asked for by SNI (NULL if none) and the number of certificates the
 * context holds. Returns the index of the certificate to use (0 for
 * cert_file, i for more_certs[i - 1]), -1 to let the built-in SNI matching
 * choose, or any other value to refuse the client (the handshake fails).
 * Same thread rules as sk_tls_verify_cb. */
typedef int (*sk_tls_select_cb)(void *arg, const char *servername,
                                size_t cert_count);

/* One more certificate for a server: a PEM chain and its key (key_file
 * NULL: the key is in cert_file). */
typedef struct sk_tls_cert_file {
  const char *cert_file;
  const char *key_file;
} sk_tls_cert_file;

/* What a context does. Zero-initialise it ({0}) and set what you need:
 * every field's zero value is the safe default. The strings are read during
 * sk_tls_ctx_new() only; files are loaded then, so a bad path or a key that
 * does not match its certificate fails there, not at the first connection. */
typedef struct sk_tls_options {
  /* 1 for the server side of connections, 0 for the client side. */
  int server;

  /* PEM certificate chain (leaf first, then intermediates) and its private
   * key. Required for a server unless self_signed is set; optional for a
   * client (its certificate for mutual TLS). key_file NULL means the key
   * is in cert_file too. */
  const char *cert_file;
  const char *key_file;

  /* Trust anchors: a PEM file of CA certificates and/or a directory in
   * OpenSSL's hashed format. On a client, both NULL means the system trust
   * store. On a server they are the CAs client certificates must chain to:
   * setting one makes the server ask for a client certificate (and verify
   * it when one is sent). */
  const char *ca_file;
  const char *ca_dir;

  /* Server: refuse clients without a valid certificate (mutual TLS).
   * Needs ca_file or ca_dir. */
  int require_client_cert;

  /* Client: accept ANY server certificate, from anyone, for any name. The
   * connection is encrypted but not authenticated, so anyone on the path
   * can intercept it. For tests and first contact only; prefer pin_sha256
   * for a server with a self-signed certificate. Excludes pin_sha256. */
  int insecure_no_verify;

  /* Client: accept exactly the server certificate whose SHA-256
   * fingerprint is this (64 hex digits, upper or lower case, with or
   * without colons, as printed by sk_tls_ctx_fingerprint() or
   * `openssl x509 -fingerprint -sha256`). Replaces CA and host name
   * verification: the pin alone decides. */
  const char *pin_sha256;

  /* ALPN protocols, most preferred first, comma-separated ("h2,http/1.1").
   * A client offers them; a server picks the first of its own list that
   * the client offered and refuses a client that offered only others (a
   * client that offers none is served without ALPN). NULL = no ALPN. */
  const char *alpn;

  /* Server: make an ephemeral P-256 key and a self-signed certificate in
   * memory (CN=localhost; names localhost, 127.0.0.1 and ::1; valid for one
   * day). Nothing touches the disk. Clients must pin it
   * (sk_tls_ctx_fingerprint() tells the pin) or skip verification. Excludes
   * cert_file and key_file. */
  int self_signed;

  /* Deadline of async handshakes (sk_stream_tls_start()): 0 selects
   * SK_TLS_HANDSHAKE_TIMEOUT_MS, a negative value disables it. The sync
   * calls take their own timeout instead. */
  int handshake_timeout_ms;

  /* Server: more certificates, for clients that ask for other names (SNI,
   * RFC 6066). cert_file stays the default: a client that asks for no name,
   * or for a name none of them holds, gets it. A certificate holds a name
   * when one of its subjectAltName DNS entries matches it, a wildcard
   * standing for the left-most label only (RFC 6125: *.example.com holds
   * a.example.com, not example.com nor a.b.example.com); an exact name is
   * preferred to a wildcard, then the earlier certificate (cert_file first)
   * wins. Each pair is loaded (and checked) like cert_file. The array is
   * read during sk_tls_ctx_new() only; at most SK_TLS_MAX_CERTS - 1. */
  const sk_tls_cert_file *more_certs;
  size_t more_certs_count;

  /* Server: chooses the certificate itself instead of the SNI matching
   * above (which it may still ask for by returning -1). NULL = matching. */
  sk_tls_select_cb select_cb;
  void *select_arg;

  /* Decides whether the peer's certificate is accepted, replacing OpenSSL's
   * verdict (which it is told). Client: called for every full handshake,
   * whether OpenSSL would accept or not; excludes insecure_no_verify.
   * Server: makes the server ask for a client certificate (required only
   * with require_client_cert) and is called when one is sent; without
   * ca_file / ca_dir OpenSSL's verdict is then "unable to get local issuer
   * certificate" and the callback alone decides. NULL = OpenSSL decides. */
  sk_tls_verify_cb verify_cb;
  void *verify_arg;

  /* 1 turns session resumption off: a server issues no tickets, a client
   * neither remembers nor offers sessions. */
  int no_resumption;

  /* Server: seconds a session ticket is honoured; 0 selects
   * SK_TLS_TICKET_LIFETIME_S. */
  int ticket_lifetime_s;
} sk_tls_options;

/* Makes a context. Returns 0 and stores it in *out, or a negative code:
 * -EINVAL for contradictory or missing options (sk_tls_last_error() says
 * which), SK_ETLS when a file cannot be loaded or the key does not match
 * the certificate, -ENOMEM, or SK_ENOTLS when built without TLS.
 *
 * A file that cannot be loaded is named in sk_tls_last_error() with the
 * reason, in these forms:
 *   "cannot load certificate F: No such file or directory" (any errno text)
 *   "cannot load certificate F: no PEM data found"
 *   "cannot load private key K: ..." (the same reasons)
 *   "private key K does not match the certificate in F"
 *   "cannot load CA file F: ..." / "cannot load CA directory D: ..."
 * An expired certificate loads (a server may have no other): check it with
 * sk_tls_ctx_cert() and warn. */
SK_EXTERN int sk_tls_ctx_new(sk_tls_ctx **out, const sk_tls_options *opt);

/* Releases the caller's reference. Contexts are reference-counted: every
 * stream or sk_tls_socket using the context holds its own reference, so
 * the context may be freed right after starting TLS on its connections and
 * lives until the last of them is closed. NULL is a no-op. Thread-safe. */
SK_EXTERN void sk_tls_ctx_free(sk_tls_ctx *ctx);

/* Takes one more reference to ctx (released with sk_tls_ctx_free()) and
 * returns ctx: for code that hands one context to several owners, such as
 * a server that swaps in a reloaded context while connections still use
 * the old one. NULL gives NULL. Thread-safe. */
SK_EXTERN sk_tls_ctx *sk_tls_ctx_ref(sk_tls_ctx *ctx);

/* Writes the SHA-256 fingerprint of the context's own certificate as
 * "AB:CD:...:EF" into buf (at least SK_TLS_FINGERPRINT_LEN bytes). This is
 * the pin a client needs for a self_signed server. Returns 0, -ENOENT if
 * the context has no certificate, or -ENOSPC if buf is too small. */
SK_EXTERN int sk_tls_ctx_fingerprint(const sk_tls_ctx *ctx, char *buf,
                                     size_t len);

/* Decodes certificate number index of the context (0 for cert_file, i for
 * more_certs[i - 1]) into *out, to be freed with sk_tls_cert_free(): e.g.
 * to warn that it expired. Returns 0, -ENOENT if there is no such
 * certificate, -EINVAL, -ENOMEM, or SK_ENOTLS. */
SK_EXTERN int sk_tls_ctx_cert(const sk_tls_ctx *ctx, size_t index,
                              sk_tls_cert *out);

/* Decodes len bytes of DER (as a verification callback gets them) into
 * *out. Returns 0, SK_ETLS if it is not a certificate, -EINVAL, -ENOMEM, or
 * SK_ENOTLS. */
SK_EXTERN int sk_tls_cert_from_der(sk_tls_cert *out, const void *der,
                                   size_t len);

/* Frees what an sk_tls_cert holds and zeroes it. NULL or a zeroed struct
 * is a no-op, so is freeing twice. */
SK_EXTERN void sk_tls_cert_free(sk_tls_cert *cert);

/* The reason for the last TLS failure in the calling thread, in words
 * (OpenSSL's reason with sockit's context, e.g. "hostname mismatch" or
 * "peer does not speak TLS: wrong version number"). Set whenever a TLS
 * function fails, and just before a callback reports a TLS failure, so
 * read it right after the failure. Never NULL; "" if there was none. */
SK_EXTERN const char *sk_tls_last_error(void);

/* ---- async: TLS on a stream ---- */

/* The handshake finished: status 0, or a negative code (SK_ETLSVERIFY,
 * SK_ETLSNOTLS, SK_ETLS, -ETIMEDOUT, a socket's errno, or -ECANCELED when
 * the stream was closed first). On failure, close the stream. */
typedef void (*sk_tls_handshake_cb)(sk_stream *s, int status);

/* Starts TLS on a connected stream, as a client or a server as ctx says,
 * and runs the handshake; cb runs once, from the loop. servername is the
 * host the client means: it is sent as SNI (unless an IP literal) and the
 * server's certificate must name it. A client with CA verification needs
 * it (-EINVAL without); with pin_sha256 or insecure_no_verify it is
 * optional, and a server ignores it. The stream keeps a reference to ctx.
 *
 * The handshake reads the socket by itself, whether or not receiving was
 * started. Sends and shutdown before the handshake succeeded fail with
 * -ENOTCONN (after a failure, with that failure's code); once it has
 * succeeded they are taken, even before cb has run. If receiving was
 * started before or during the handshake, data is delivered only after cb
 * has run. Bytes queued by earlier plain sends, files included, go out as
 * plaintext before the handshake (STARTTLS works): a send's path is fixed
 * when it is made.
 *
 * Afterwards the stream behaves as a plain one, with these differences:
 *  - recv ends with SK_EOF only when the peer sent close_notify; a peer that
 *    just closes the TCP connection after the handshake ends it with
 *    SK_ETLSTRUNCATED, after all the data it sent: many peers end sessions
 *    that way (.NET's SslStream without ShutdownAsync), so the application
 *    decides whether what it has is complete (a length it was told, a whole
 *    frame) or was cut short. That ends only the reading side, like a FIN:
 *    no alert is sent and the stream can still send (a half-closed peer
 *    may be waiting for the answer);
 *  - sk_stream_shutdown() sends close_notify, then the FIN;
 *  - sk_stream_sendfile() works: the kernel cannot encrypt, so the library
 *    reads the file in 16 KiB chunks and encrypts them, one chunk in memory
 *    at a time; sends made meanwhile follow the file;
 *  - with TLS 1.3 a server that rejects the client's certificate does so
 *    after the client's handshake completed: the client learns it from its
 *    first recv, which ends with SK_ETLSVERIFY.
 *  - a send's callback runs once all of its ciphertext has been written.
 *  - sk_stream_write_queue_size() counts ciphertext bytes (plus the
 *    plaintext of sends waiting behind a file).
 *  - a send that cannot be finished once some of its ciphertext was
 *    queued (out of memory) is taken (0) and its callback gets the error;
 *    a record lost that way fails the write side for good: every later
 *    send returns that error (the peer could not decrypt anything after).
 *
 * Returns 0, -ENOTCONN if the stream is not connected, -EALREADY if it
 * already has TLS, -EBUSY while an sk_stream_peek() waits (it would see
 * ciphertext), -EINVAL, -ENOMEM, SK_ETLS, or SK_ENOTLS. */
SK_EXTERN int sk_stream_tls_start(sk_stream *s, sk_tls_ctx *ctx,
                                  const char *servername,
                                  sk_tls_handshake_cb cb);

/* After a successful handshake: the protocol version ("TLSv1.3"), the
 * cipher suite ("TLS_AES_256_GCM_SHA384") and the ALPN protocol agreed on.
 * NULL when the stream has no TLS (or no ALPN was agreed). The strings
 * live as long as the stream's TLS state. */
SK_EXTERN const char *sk_stream_tls_version(const sk_stream *s);
SK_EXTERN const char *sk_stream_tls_cipher(const sk_stream *s);
SK_EXTERN const char *sk_stream_tls_alpn(const sk_stream *s);

/* SHA-256 fingerprint of the peer's certificate ("AB:CD:..."), as for
 * sk_tls_ctx_fingerprint(). Returns 0, -ENOENT when the peer sent none (a
 * client that was not asked for one), -ENOTCONN without a completed
 * handshake, or -ENOSPC. */
SK_EXTERN int sk_stream_tls_peer_fingerprint(const sk_stream *s, char *buf,
                                             size_t len);

/* After a successful handshake: decodes the peer's certificate into *out
 * (the caller frees it with sk_tls_cert_free(); it does not borrow from
 * the stream). Returns 0, -ENOENT when the peer sent none, -ENOTCONN
 * without a completed handshake, -ENOMEM, or SK_ENOTLS. */
SK_EXTERN int sk_stream_tls_peer_cert(const sk_stream *s, sk_tls_cert *out);

/* After a successful handshake: 1 if it resumed an earlier session (no
 * certificate was exchanged), 0 if it was a full handshake; -ENOTCONN
 * without a completed handshake, or SK_ENOTLS. */
SK_EXTERN int sk_stream_tls_resumed(const sk_stream *s);

/* The text of the last TLS failure on this stream (what
 * sk_tls_last_error() said in the callback that reported it, kept per
 * stream so that it can be read later and from any thread that owns the
 * stream), or "" when there was none, the stream has no TLS, or it was
 * closed. Never NULL; valid until the next call on the stream. */
SK_EXTERN const char *sk_stream_tls_error(const sk_stream *s);

/* ---- sync: TLS on a socket ---- */

/* A TLS session on a connected sync socket. Zero-initialise it; the
 * functions below fill it. sock is the socket it runs on (yours; it must
 * outlive the session); priv is the library's state. */
typedef struct sk_tls_socket {
  sk_socket *sock;
  void *priv;
} sk_tls_socket;

/* Runs the client or server handshake on sock within timeout_ms (-1 waits
 * forever). ctx must be a client context for connect and a server context
 * for accept (-EINVAL otherwise); servername as for sk_stream_tls_start().
 * Returns 0, or a negative code: on failure t holds nothing to free and
 * sock is left open for you to close. */
SK_EXTERN int sk_tls_connect(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                             const char *servername, int timeout_ms);
SK_EXTERN int sk_tls_accept(sk_tls_socket *t, sk_socket *sock, sk_tls_ctx *ctx,
                            int timeout_ms);

/* Encrypts and sends all len bytes or fails, within timeout_ms for the
 * whole call. Returns 0 or a negative code (-ETIMEDOUT, -EPIPE, SK_ETLS,
 * ...). After a timeout part of the data may have been sent:
 * sk_tls_send_all() tells how much. */
SK_EXTERN int sk_tls_send(sk_tls_socket *t, const void *buf, size_t len,
                          int timeout_ms);

/* sk_tls_send(), and *sent (when sent is not NULL) is the count of
 * plaintext bytes the session took, on success (len) as on a timeout or an
 * error, as sk_socket_send_all() does. After -ETIMEDOUT the session may
 * hold the next bytes encrypted but not yet sent: resume by sending from
 * buf + *sent again (the same bytes, at least as many), e.g. with another
 * sk_tls_send_all(). */
SK_EXTERN int sk_tls_send_all(sk_tls_socket *t, const void *buf, size_t len,
                              size_t *sent, int timeout_ms);

/* Receives up to len bytes of plaintext, waiting up to timeout_ms for some.
 * Returns the count (> 0); 0 when the peer closed the session cleanly
 * (close_notify); SK_ETLSTRUNCATED when the connection ended without
 * close_notify after the handshake (everything sent before was returned;
 * the data may be truncated); -ETIMEDOUT; -EINVAL for len 0 (as
 * sk_socket_recv()); or another negative code. */
SK_EXTERN ssize_t sk_tls_recv(sk_tls_socket *t, void *buf, size_t len,
                              int timeout_ms);

/* Half-close, as sk_stream_shutdown() on a TLS stream: sends close_notify
 * within timeout_ms, then shuts down the socket's write side (FIN). The
 * session stays readable: sk_tls_recv() goes on returning the peer's data
 * until its close_notify (0) or the end of the connection. Sending fails
 * with -EPIPE afterwards. Returns 0 (also when already done), -ETIMEDOUT
 * when close_notify could not leave in time (the session keeps it: call
 * again, e.g. once the socket is writable; timeout 0 never waits), SK_ETLS
 * after a failed session, -EINVAL before the handshake is complete, or a
 * negative errno. sk_tls_close() does not send close_notify twice. */
SK_EXTERN int sk_tls_shutdown(sk_tls_socket *t, int timeout_ms);

/* ---- sync, without waiting: the step API ----
 *
 * For your own poll loop, in the style of libtls: each call does what it
 * can at once and never waits. When it cannot go on, it returns -EAGAIN
 * and sets *events (may be NULL) to what to wait for on t->sock before
 * calling again: SK_POLL_READ or SK_POLL_WRITE. Which one is the session's
 * business, not the direction of the call (a receive may have to write, a
 * send may have to read). After -EAGAIN from a send, call it again with the
 * same bytes (the buffer may move; at least as many bytes). Other failures
 * are those of the waiting calls. sk_tls_pending() tells when a receive
 * has data without the socket becoming readable. */

/* Starts a session on sock like sk_tls_connect() / sk_tls_accept(), without
 * running the handshake: sk_tls_handshake_step() runs it. Returns 0 or a
 * negative code (then t holds nothing to free). */
SK_EXTERN int sk_tls_connect_start(sk_tls_socket *t, sk_socket *sock,
                                   sk_tls_ctx *ctx, const char *servername);
SK_EXTERN int sk_tls_accept_start(sk_tls_socket *t, sk_socket *sock,
                                  sk_tls_ctx *ctx);

/* Advances the handshake. Returns 0 once it is complete (and for every
 * call after), -EAGAIN with *events, or a failure code as sk_tls_connect()
 * (then t holds nothing to free; the socket stays open). Bound its length
 * yourself: nothing here times out. */
SK_EXTERN int sk_tls_handshake_step(sk_tls_socket *t, int *events);

/* Encrypts and sends what the socket takes now: returns the count of
 * plaintext bytes taken (> 0; 0 for len 0), -EAGAIN with *events, or a
 * negative code as sk_tls_send(). -EINVAL before the handshake is
 * complete. */
SK_EXTERN ssize_t sk_tls_send_step(sk_tls_socket *t, const void *buf,
                                   size_t len, int *events);

/* Receives plaintext that is there now: returns the count (> 0), 0 on the
 * peer's close_notify, -EAGAIN with *events, or a negative code as
 * sk_tls_recv() (-EINVAL for len 0). */
SK_EXTERN ssize_t sk_tls_recv_step(sk_tls_socket *t, void *buf, size_t len,
                                   int *events);

/* Plaintext bytes already decrypted and buffered in the session: a receive
 * returns them at once although the socket may not show readable. 0
 * without a session. */
SK_EXTERN size_t sk_tls_pending(const sk_tls_socket *t);

/* sk_tls_shutdown() without waiting: sends what of close_notify the socket
 * takes now, then the FIN. Returns 0 once both are out (also when already
 * done), -EAGAIN with *events while close_notify waits in the session
 * (call again), or a code as sk_tls_shutdown(). Finish a send that
 * returned -EAGAIN before: its record is still in the session, and
 * close_notify cannot go out behind it. */
SK_EXTERN int sk_tls_shutdown_step(sk_tls_socket *t, int *events);

/* Ends the session: sends close_notify (if the session is healthy and
 * sk_tls_shutdown() did not already), then closes the socket gracefully
 * with sk_socket_close(), all within timeout_ms, and frees the TLS state.
 * Returns what sk_socket_close() returned, or a negative code if close_notify
 * could not be sent (the socket is closed and the state freed either way). */
SK_EXTERN int sk_tls_close(sk_tls_socket *t, int timeout_ms);

/* Frees the TLS state without touching the socket (you close it as you
 * like, e.g. with sk_socket_abort()). Safe on a zeroed or already freed
 * sk_tls_socket. */
SK_EXTERN void sk_tls_free(sk_tls_socket *t);

/* The same accessors as for streams; NULL / -ENOTCONN without a session. */
SK_EXTERN const char *sk_tls_version(const sk_tls_socket *t);
SK_EXTERN const char *sk_tls_cipher(const sk_tls_socket *t);
SK_EXTERN const char *sk_tls_alpn(const sk_tls_socket *t);
SK_EXTERN int sk_tls_peer_fingerprint(const sk_tls_socket *t, char *buf,
                                      size_t len);
SK_EXTERN int sk_tls_peer_cert(const sk_tls_socket *t, sk_tls_cert *out);
SK_EXTERN int sk_tls_resumed(const sk_tls_socket *t);

#ifdef __cplusplus
}
#endif

#endif
