/* sockit: a socket toolkit for C.
 *
 * This umbrella header includes every public header of libsockit. Each
 * concern has its own header under sockit/; include them one by one if you
 * prefer.
 *
 * Conventions that hold across the whole API:
 *  - Functions return 0 (or a count) on success and a negative error code on
 *    failure: a negated errno value (-ECONNREFUSED) or one of sockit's own
 *    SK_E* codes, which lie outside the errno range. sk_strerror() names both.
 *  - Handles are structs the caller owns. The library allocates only where a
 *    size is unknown up front (write queues, TLS state) and frees it itself.
 *  - No function prints anything.
 *  - C++ can include every header as it is: each one declares its names
 *    inside extern "C".
 *  - The process never dies of SIGPIPE because of sockit: every send uses
 *    MSG_NOSIGNAL. Every descriptor sockit creates is close-on-exec.
 */
#ifndef SOCKIT_H
#define SOCKIT_H

#include "sockit/version.h"
#include "sockit/error.h"
#include "sockit/endpoint.h"
#include "sockit/socket.h"
#include "sockit/loop.h"
#include "sockit/stream.h"
#include "sockit/connect.h"
#include "sockit/udp.h"
#include "sockit/frame.h"
#include "sockit/tls.h"
#include "sockit/listen.h"
#include "sockit/proxy.h"
#include "sockit/relay.h"

#endif
