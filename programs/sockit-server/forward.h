/* --mode forward: what forward.c (streams: the mode row, its options, the
 * upstream list) and forward_udp.c (datagram sessions) share. */
#ifndef SOCKIT_SERVER_FORWARD_H
#define SOCKIT_SERVER_FORWARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

/* Addresses kept per --to name. */
#define FORWARD_MAX_ADDRS 4

/* An upstream skipped after a failure for this long (ms). */
#define FORWARD_DOWN_MS 5000

struct upstream {
  const char *text; /* as given to --to, for log lines */
  sk_endpoint ep;   /* resolved at setup: eps[0] */
  /* Every address a name resolved to (at most FORWARD_MAX_ADDRS), tried
   * in turn by a stream connect. */
  sk_endpoint eps[FORWARD_MAX_ADDRS];
  size_t neps;
  /* Monotonic ms (sk_now_ms-like clock) until which the upstream is
   * skipped; 0 = up. Shared by every worker. */
  atomic_uint_fast64_t down_until;
  /* --upstream-tls: the name sent as SNI and checked in its certificate
   * (--upstream-servername, else the host of --to); "" for none. */
  char servername[256];
};

/* Most --to options. */
#define FORWARD_MAX_UPSTREAMS 64

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

/* forward_udp.c: datagram sessions (the mode row's dgram and udp_close).
 * Sessions are capped at --max-conns apart from the connections, and each
 * holds this many descriptors (main.c's descriptor budget counts them). */
#define FORWARD_FDS_PER_SESSION 1
void forward_dgram(struct udp_listener *u, const unsigned char *buf, size_t len,
                   const sk_endpoint *from);
void forward_udp_close(struct udp_listener *u);
/* forward_udp.c (added by HU), for forward_setup() to call once the
 * upstreams are resolved: with a UDP listener among cfg's, every upstream
 * must be an IP address (a Unix one could not answer an unbound datagram
 * socket), and stream_only (--upstream-tls or --send-proxy given) is
 * refused: datagrams carry neither. Returns 0, or logs one line and
 * returns -1. Without a UDP listener: 0. */
int forward_udp_check(const struct server_config *cfg,
                      const struct upstream *ups, size_t nups, int stream_only);

/* udp.c, for forward_udp.c (added by HU): replies that come later than
 * the datagram they answer, under the same limits as udp_reply(). */
/* In the dgram callback: takes the bytes the datagram being handled (len
 * payload bytes, family af) added to its sender's byte budget back out of
 * the address's shared budget and returns them (as whole packets:
 * ratelimit.h), for the caller to keep in a budget of its own. */
uint32_t udp_claim_credit(struct udp_listener *u, int af, size_t len);
/* Sends len bytes to `to` from the listener's socket if the reply rate of
 * to's address allows one more reply and the bytes fit in *credit (spent
 * first) plus the address's shared allowance; with --udp-rate 0, always.
 * Returns 0 if sent, -1 if dropped (logged as udp_reply() logs it). */
int udp_reply_later(struct udp_listener *u, const void *buf, size_t len,
                    const sk_endpoint *to, uint32_t *credit);

#endif
