/* Per-source limits for UDP replies; see ratelimit.h. */
#include "ratelimit.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>

void rl_init(struct rl_table *t) {
  memset(t, 0, sizeof(*t));
  if (getrandom(t->key, sizeof(t->key), GRND_NONBLOCK) !=
      (ssize_t)sizeof(t->key)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t->key[0] = rl_mix64((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)t);
    t->key[1] = rl_mix64(t->key[0] ^ (uint64_t)ts.tv_sec);
  }
}

/* The address of from as 16 bytes (IPv4 in the first 4) and its family. */
static int addr_key(const sk_endpoint *from, unsigned char out[16]) {
  memset(out, 0, 16);
  if (from->u.sa.sa_family == AF_INET6) {
    memcpy(out, &from->u.in6.sin6_addr, 16);
    return AF_INET6;
  }
  memcpy(out, &from->u.in4.sin_addr, 4);
  return AF_INET;
}

static void refill(struct rl_entry *e, uint64_t now, uint32_t rate,
                   uint32_t burst) {
  uint64_t cap = (uint64_t)burst * 1000, add;
  uint64_t elapsed = now > e->seen_ms ? now - e->seen_ms : 0;
  if (elapsed >= RL_IDLE_MS && e->credit < RL_BYTE_BURST)
    e->credit = RL_BYTE_BURST; /* silent long enough: starts afresh */
  /* elapsed ms at rate/s adds elapsed * rate thousandths of a reply. */
  add = elapsed >= cap ? cap : elapsed * rate;
  e->tokens = (uint32_t)(e->tokens + add >= cap ? cap : e->tokens + add);
  e->seen_ms = now;
}

struct rl_entry *rl_lookup(struct rl_table *t, const sk_endpoint *from,
                           uint64_t now, uint32_t rate, uint32_t burst,
                           size_t wire) {
  unsigned char addr[16];
  uint64_t a, b, h;
  int af = addr_key(from, addr);
  struct rl_entry *set, *e = NULL;

  memcpy(&a, addr, 8);
  memcpy(&b, addr + 8, 8);
  h = rl_mix64(rl_mix64(t->key[0] ^ a ^ (uint64_t)af) ^ b ^ t->key[1]);
  set = &t->e[(h % RL_SETS) * RL_WAYS];
  for (int i = 0; i < RL_WAYS; i++) {
    if (set[i].family == af && memcmp(set[i].addr, addr, 16) == 0) {
      e = &set[i];
      refill(e, now, rate, burst);
      break;
    }
  }
  if (e == NULL) {
    /* A free entry, or the one heard from least recently. */
    e = &set[0];
    for (int i = 0; i < RL_WAYS && e->family != 0; i++)
      if (set[i].family == 0 || set[i].seen_ms < e->seen_ms)
        e = &set[i];
    if (e->family != 0 && now - e->seen_ms < RL_IDLE_MS) {
      /* Pushing out an active source earns nothing: one reply, and
       * only the bytes it sends. */
      e->tokens = 1000;
      e->credit = 0;
    } else {
      e->tokens = burst * 1000u;
      e->credit = RL_BYTE_BURST;
    }
    memcpy(e->addr, addr, 16);
    e->family = (unsigned char)af;
    e->logged = 0;
    e->seen_ms = now;
  }
  e->credit =
      wire >= UINT32_MAX - e->credit ? UINT32_MAX : e->credit + (uint32_t)wire;
  return e;
}

int rl_may_reply(const struct rl_entry *e, uint32_t rate) {
  return rate == 0 || e->tokens >= 1000;
}

size_t rl_room(const struct rl_entry *e, int af) {
  size_t hdr = rl_header(af);
  return e->credit > hdr ? e->credit - hdr : 0;
}

void rl_spend(struct rl_entry *e, uint32_t rate, int af, size_t len) {
  size_t wire = len + rl_header(af);
  e->credit = wire >= e->credit ? 0 : e->credit - (uint32_t)wire;
  if (rate != 0 && e->tokens >= 1000)
    e->tokens -= 1000;
}

void rl_done(struct rl_entry *e) {
  if (e->credit > RL_BYTE_BURST)
    e->credit = RL_BYTE_BURST;
}

int rl_should_log(struct rl_table *t, struct rl_entry *e, uint64_t now) {
  if (e->logged && now - e->logged_ms < RL_IDLE_MS)
    return 0;
  if (t->logged_ms != 0 && now - t->logged_ms < 1000)
    return 0;
  e->logged = 1;
  e->logged_ms = now;
  t->logged_ms = now == 0 ? 1 : now;
  return 1;
}
