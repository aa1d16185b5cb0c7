/* Error messages and names, and the library version.
 *
 * sockit's own codes come from the SK_ERRNO_MAP X-macro in sockit/error.h, so
 * the enum, the messages and the names can never drift apart. Negated errno
 * values are described by the C library. Every string returned here is
 * static, so both functions are safe to call from any thread.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* The errno range the kernel uses; anything between this and SK_EOF is
 * neither an errno value nor one of ours. */
#define SK__ERRNO_MAX 4095

/* glibc 2.32 added strerrordesc_np() and strerrorname_np(), which return
 * static strings without touching the locale or a shared buffer, unlike
 * strerror(). Elsewhere we fall back to a table of the usual names and to
 * strerror(), whose strings are static on musl and the BSDs for every known
 * code. */
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#define SK__HAVE_STRERRORNAME_NP 1
#endif

#ifndef SK__HAVE_STRERRORNAME_NP
/* The errno values a socket library is likely to return. Each entry is
 * guarded because not every system defines every name. */
static const char *errno_name_fallback(int e) {
  switch (e) {
#define SK__ERRNO_CASE(n)                                                      \
  case n:                                                                      \
    return #n;
    SK__ERRNO_CASE(EPERM)
    SK__ERRNO_CASE(ENOENT)
    SK__ERRNO_CASE(EINTR)
    SK__ERRNO_CASE(EIO)
    SK__ERRNO_CASE(EBADF)
    SK__ERRNO_CASE(EAGAIN)
#if defined(EWOULDBLOCK) && EWOULDBLOCK != EAGAIN
    SK__ERRNO_CASE(EWOULDBLOCK)
#endif
    SK__ERRNO_CASE(ENOMEM)
    SK__ERRNO_CASE(EACCES)
    SK__ERRNO_CASE(EFAULT)
    SK__ERRNO_CASE(EBUSY)
    SK__ERRNO_CASE(EEXIST)
    SK__ERRNO_CASE(ENODEV)
    SK__ERRNO_CASE(ENOTDIR)
    SK__ERRNO_CASE(EISDIR)
    SK__ERRNO_CASE(EINVAL)
    SK__ERRNO_CASE(ENFILE)
    SK__ERRNO_CASE(EMFILE)
    SK__ERRNO_CASE(EFBIG)
    SK__ERRNO_CASE(ENOSPC)
    SK__ERRNO_CASE(EPIPE)
    SK__ERRNO_CASE(ERANGE)
    SK__ERRNO_CASE(ENAMETOOLONG)
    SK__ERRNO_CASE(ENOSYS)
    SK__ERRNO_CASE(ENOTSOCK)
    SK__ERRNO_CASE(EDESTADDRREQ)
    SK__ERRNO_CASE(EMSGSIZE)
    SK__ERRNO_CASE(EPROTOTYPE)
    SK__ERRNO_CASE(ENOPROTOOPT)
    SK__ERRNO_CASE(EPROTONOSUPPORT)
    SK__ERRNO_CASE(EOPNOTSUPP)
    SK__ERRNO_CASE(EAFNOSUPPORT)
    SK__ERRNO_CASE(EADDRINUSE)
    SK__ERRNO_CASE(EADDRNOTAVAIL)
    SK__ERRNO_CASE(ENETDOWN)
    SK__ERRNO_CASE(ENETUNREACH)
    SK__ERRNO_CASE(ECONNABORTED)
    SK__ERRNO_CASE(ECONNRESET)
    SK__ERRNO_CASE(ENOBUFS)
    SK__ERRNO_CASE(EISCONN)
    SK__ERRNO_CASE(ENOTCONN)
    SK__ERRNO_CASE(ETIMEDOUT)
    SK__ERRNO_CASE(ECONNREFUSED)
    SK__ERRNO_CASE(EHOSTUNREACH)
    SK__ERRNO_CASE(EALREADY)
    SK__ERRNO_CASE(EINPROGRESS)
#ifdef ECANCELED
    SK__ERRNO_CASE(ECANCELED)
#endif
#ifdef EPROTO
    SK__ERRNO_CASE(EPROTO)
#endif
#undef SK__ERRNO_CASE
  default:
    return NULL;
  }
}
#endif

const char *sk_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define SK__ERR_MSG(name, value, msg)                                          \
  case SK_##name:                                                              \
    return msg;
    SK_ERRNO_MAP(SK__ERR_MSG)
#undef SK__ERR_MSG
  default:
    break;
  }
  /* Only negated errno values are described; the bound also keeps -err from
   * overflowing for INT_MIN. */
  if (err < 0 && err >= -SK__ERRNO_MAX) {
    const char *s;
#ifdef SK__HAVE_STRERRORNAME_NP
    s = strerrordesc_np(-err);
#else
    s = errno_name_fallback(-err) ? strerror(-err) : NULL;
#endif
    if (s != NULL)
      return s;
  }
  return "unknown error";
}

const char *sk_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
#define SK__ERR_NAME(name, value, msg)                                         \
  case SK_##name:                                                              \
    return "SK_" #name;
    SK_ERRNO_MAP(SK__ERR_NAME)
#undef SK__ERR_NAME
  default:
    break;
  }
  if (err < 0 && err >= -SK__ERRNO_MAX) {
    const char *s;
#ifdef SK__HAVE_STRERRORNAME_NP
    s = strerrorname_np(-err);
#else
    s = errno_name_fallback(-err);
#endif
    if (s != NULL)
      return s;
  }
  return "UNKNOWN";
}

int sk_err_is_resource(int err) {
  return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

const char *sk_version(void) {
  return SK_VERSION_STRING;
}
