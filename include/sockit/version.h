/* Version numbers and the export macro shared by every public header. */
#ifndef SOCKIT_VERSION_H
#define SOCKIT_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define SK_VERSION_MAJOR  0
#define SK_VERSION_MINOR  1
#define SK_VERSION_PATCH  0
#define SK_VERSION_STRING "0.1.0"

/* Public symbols are exported explicitly; the library is built with
 * -fvisibility=hidden so everything else stays internal. */
#if defined(__GNUC__) || defined(__clang__)
#define SK_EXTERN __attribute__((visibility("default")))
#else
#define SK_EXTERN
#endif

/* Returns SK_VERSION_STRING of the library actually linked. */
SK_EXTERN const char *sk_version(void);

#ifdef __cplusplus
}
#endif

#endif
