/* Per-source limits for UDP replies: a token bucket of replies and a byte
 * budget, kept per source address (the port does not matter) in a table
 * of fixed size.
 *
 * The table is RL_SETS sets of RL_WAYS entries, the set chosen by a keyed
 * hash of the address: nothing is allocated per source, and a lookup costs
 * at most RL_WAYS comparisons. A new source takes a free entry of its set,
 * or else the one heard from least recently. A source that takes the
 * entry of another still active (heard from within RL_IDLE_MS) starts
 * with empty buckets, so spraying forged addresses to push a victim out
 * of the table gives nobody a fresh allowance.
 *
 * Replies: up to `burst` at once, refilled at `rate` per second (rate 0 =
 * no limit). Bytes: a source may be sent no more bytes than it sent, plus
 * RL_BYTE_BURST; both sides are counted as whole IP packets (payload plus
 * the IP and UDP headers: 28 bytes over IPv4, 48 over IPv6). A source
 * silent for RL_IDLE_MS starts afresh. */
#ifndef SOCKIT_RATELIMIT_H
#define SOCKIT_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "sockit.h"

#define RL_WAYS       4
#define RL_SETS       256
#define RL_BYTE_BURST 2048
#define RL_IDLE_MS    60000

/* A 64-bit mixer (splitmix64's finaliser) for keyed hashes of addresses:
 * the rate table's sets and forward's UDP session table. */
static inline uint64_t rl_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

struct rl_entry {
  uint64_t seen_ms;   /* loop time it was last heard from */
  uint64_t logged_ms; /* loop time a drop was last logged for it */
  uint32_t tokens;    /* replies it may still get, in thousandths */
  uint32_t credit;    /* bytes it may still be sent */
  unsigned char addr[16];
  unsigned char family; /* 0 = free entry */
  unsigned char logged; /* logged_ms is set */
};

struct rl_table {
  struct rl_entry e[RL_SETS * RL_WAYS];
  uint64_t key[2];    /* hash key, random per table */
  uint64_t logged_ms; /* last drop logged for any source */
};

/* Size of the IP and UDP headers of a datagram of family af. */
static inline size_t rl_header(int af) {
  return af == AF_INET6 ? 48 : 28;
}

void rl_init(struct rl_table *t);
/* The entry of from's address, made if needed, with its reply tokens
 * refilled for time now (ms) at rate/s up to burst, and wire bytes (a
 * whole received packet) added to its byte credit. Never NULL. */
struct rl_entry *rl_lookup(struct rl_table *t, const sk_endpoint *from,
                           uint64_t now, uint32_t rate, uint32_t burst,
                           size_t wire);
/* 1 if e may be sent one more reply now (always when rate is 0). */
int rl_may_reply(const struct rl_entry *e, uint32_t rate);
/* Payload bytes e may be sent in one datagram of family af. */
size_t rl_room(const struct rl_entry *e, int af);
/* Counts one reply of len payload bytes (it fits in rl_room()). */
void rl_spend(struct rl_entry *e, uint32_t rate, int af, size_t len);
/* Ends the handling of a datagram: the credit left over is capped, so
 * bytes cannot be saved up beyond RL_BYTE_BURST. */
void rl_done(struct rl_entry *e);
/* 1 if a drop for e should be logged now: at most once per RL_IDLE_MS per
 * source, and at most once a second for the whole table. */
int rl_should_log(struct rl_table *t, struct rl_entry *e, uint64_t now);

#endif
