/* --mode forward: what forward.c (streams: the mode row, its options, the
 * upstream list) and forward_udp.c (datagram sessions) share. */
#ifndef SOCKIT_SERVER_FORWARD_H
#define SOCKIT_SERVER_FORWARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

/* An upstream skipped after a failure for this long (ms). */
#define FORWARD_DOWN_MS 5000

struct upstream {
  const char *text; /* as given to --to, for log lines */
  sk_endpoint ep;   /* resolved at setup */
  /* Monotonic ms (sk_now_ms-like clock) until which the upstream is
   * skipped; 0 = up. Shared by every worker. */
  atomic_uint_fast64_t down_until;
};

/* forward.c */
/* The next upstream in round-robin order (one counter for all workers),
 * skipping those marked down (if every one is down, the next one
 * anyway). now is the loop's clock in ms. Never NULL after setup. */
struct upstream *forward_pick(uint64_t now);
/* Marks u down for FORWARD_DOWN_MS from now; logs one line when it goes
 * from up to down. */
void forward_down(struct upstream *u, uint64_t now, const char *why);
/* --connect-timeout in ms. */
uint64_t forward_connect_timeout_ms(void);

/* forward_udp.c: datagram sessions (the mode row's dgram and udp_close). */
void forward_dgram(struct udp_listener *u, const unsigned char *buf, size_t len,
                   const sk_endpoint *from);
void forward_udp_close(struct udp_listener *u);

#endif
