/* Error codes.
 *
 * Every sockit function that can fail returns a negative code. System
 * failures are negated errno values (-ECONNREFUSED, -ETIMEDOUT, ...); use the
 * errno names directly. Failures that have no errno equivalent use the SK_E*
 * codes below, which lie far outside the errno range (below -10000), so the
 * two sets never collide.
 */
#ifndef SOCKIT_ERROR_H
#define SOCKIT_ERROR_H

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X-macro list: name, value, message. sk_strerror() and sk_err_name() are
 * generated from this one list. */
#define SK_ERRNO_MAP(XX)                                                       \
  XX(EOF, -10001, "end of stream")                                             \
  XX(EBADADDR, -10002, "malformed address")                                    \
  XX(EBADPORT, -10003, "missing or invalid port (expected 0-65535)")           \
  XX(EBRACKET, -10004, "unbalanced brackets in address")                       \
  XX(ENOTFOUND, -10005, "host name not found")                                 \
  XX(EDNSAGAIN, -10006, "temporary failure in name resolution")                \
  XX(EDNS, -10007, "name resolution failed")                                   \
  XX(EFRAMETOOBIG, -10008, "frame larger than the maximum frame size")         \
  XX(EFRAMEBAD, -10009, "malformed frame header")                              \
  XX(ETLS, -10010, "TLS error")                                                \
  XX(ETLSVERIFY, -10011, "TLS certificate verification failed")                \
  XX(ETLSNOTLS, -10012, "peer does not speak TLS")                             \
  XX(ENOTLS, -10013, "TLS support not built in")                               \
  XX(EBACKEND, -10014, "unknown or unavailable event loop backend")            \
  XX(ETLSTRUNCATED, -10015,                                                    \
     "TLS session truncated: the peer closed without close_notify")

enum {
#define SK__ERR_ENUM(name, value, msg) SK_##name = (value),
  SK_ERRNO_MAP(SK__ERR_ENUM)
#undef SK__ERR_ENUM
};

/* Returns a human-readable message for any code this library returns: a
 * negated errno value, an SK_E* code, or 0 ("success"). Never NULL; the
 * string is static and safe to use from any thread. */
SK_EXTERN const char *sk_strerror(int err);

/* Returns the symbolic name of a code: "ECONNREFUSED", "SK_EOF", ... */
SK_EXTERN const char *sk_err_name(int err);

/* Returns 1 if err says the process or the system ran out of descriptors
 * or memory (-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM), else 0. An accept that
 * fails so leaves the listener accepting (the connection is shed, see
 * sk_stream_accept_start()); a server logs it as load, not as a fault. */
SK_EXTERN int sk_err_is_resource(int err);

#ifdef __cplusplus
}
#endif

#endif
