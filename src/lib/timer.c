/* Timers: a binary min-heap of deadlines ordered by (due, seq). Start, stop
 * and move are O(log n), so one timer per connection (idle timeouts for
 * 100k connections) stays cheap. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static int node_less(const struct sk__tnode *a, const struct sk__tnode *b) {
  if (a->due != b->due)
    return a->due < b->due;
  return a->seq < b->seq;
}

static void heap_set(sk_loop *loop, uint32_t i, struct sk__tnode *n) {
  loop->heap[i] = n;
  n->heap = i;
}

static void sift_up(sk_loop *loop, uint32_t i) {
  struct sk__tnode *n = loop->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!node_less(n, loop->heap[parent]))
      break;
    heap_set(loop, i, loop->heap[parent]);
    i = parent;
  }
  heap_set(loop, i, n);
}

static void sift_down(sk_loop *loop, uint32_t i) {
  struct sk__tnode *n = loop->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= loop->heap_len)
      break;
    if (c + 1 < loop->heap_len && node_less(loop->heap[c + 1], loop->heap[c]))
      c++;
    if (!node_less(loop->heap[c], n))
      break;
    heap_set(loop, i, loop->heap[c]);
    i = c;
  }
  heap_set(loop, i, n);
}

void sk__tnode_init(struct sk__tnode *n, void (*cb)(struct sk__tnode *n)) {
  n->due = 0;
  n->seq = 0;
  n->heap = UINT32_MAX;
  n->cb = cb;
}

void sk__tnode_stop(sk_loop *loop, struct sk__tnode *n) {
  uint32_t i = n->heap;
  if (i == UINT32_MAX)
    return;
  n->heap = UINT32_MAX;
  loop->heap_len--;
  if (i == loop->heap_len)
    return;
  heap_set(loop, i, loop->heap[loop->heap_len]);
  if (i > 0 && node_less(loop->heap[i], loop->heap[(i - 1) / 2]))
    sift_up(loop, i);
  else
    sift_down(loop, i);
}

/* The heap array only grows; a failed allocation is the one error a timer
 * start can have, and it is reported by the public wrapper. */
static int heap_reserve(sk_loop *loop) {
  if (loop->heap_len < loop->heap_cap)
    return 0;
  uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
  struct sk__tnode **h = realloc(loop->heap, cap * sizeof(*h));
  if (h == NULL)
    return -ENOMEM;
  loop->heap = h;
  loop->heap_cap = cap;
  return 0;
}

static int tnode_start(sk_loop *loop, struct sk__tnode *n, uint64_t due) {
  sk__tnode_stop(loop, n);
  if (heap_reserve(loop) != 0)
    return -ENOMEM;
  n->due = due;
  n->seq = loop->timer_seq++;
  heap_set(loop, loop->heap_len++, n);
  sift_up(loop, n->heap);
  return 0;
}

void sk__tnode_start(sk_loop *loop, struct sk__tnode *n, uint64_t due) {
  /* Internal deadlines are started where failure cannot be reported
   * sensibly; heap_reserve only fails when memory is exhausted, and then
   * the deadline is simply not armed. */
  (void)tnode_start(loop, n, due);
}

int sk__timers_next(const sk_loop *loop) {
  if (loop->heap_len == 0)
    return -1;
  uint64_t due = loop->heap[0]->due;
  if (due <= loop->now)
    return 0;
  uint64_t d = due - loop->now;
  return d > INT32_MAX ? INT32_MAX : (int)d;
}

void sk__timers_run(sk_loop *loop) {
  /* Only deadlines that existed when this pass began may fire, so a timer
   * restarted with timeout 0 from its own callback waits for the next
   * iteration instead of spinning here. */
  uint64_t seq_limit = loop->timer_seq;
  while (loop->heap_len > 0) {
    struct sk__tnode *n = loop->heap[0];
    if (n->due > loop->now || n->seq >= seq_limit)
      break;
    sk__tnode_stop(loop, n);
    n->cb(n);
  }
}

/* ---- the public timer handle ---- */

static void timer_fire(struct sk__tnode *n) {
  sk_timer *t = sk__container_of(n, sk_timer, node);
  if (t->repeat > 0)
    sk__tnode_start(t->h.loop, &t->node, t->h.loop->now + t->repeat);
  else
    sk__handle_stop(&t->h);
  t->cb(t);
}

int sk_timer_init(sk_loop *loop, sk_timer *t) {
  memset(t, 0, sizeof(*t));
  sk__handle_init(loop, &t->h, SK_HANDLE_TIMER);
  sk__tnode_init(&t->node, timer_fire);
  return 0;
}

int sk_timer_start(sk_timer *t, sk_timer_cb cb, uint64_t timeout_ms,
                   uint64_t repeat_ms) {
  int rc;
  if (sk_is_closing(&t->h) || cb == NULL)
    return -EINVAL;
  t->cb = cb;
  t->repeat = repeat_ms;
  rc = tnode_start(t->h.loop, &t->node, t->h.loop->now + timeout_ms);
  if (rc != 0)
    return rc;
  sk__handle_start(&t->h);
  return 0;
}

int sk_timer_stop(sk_timer *t) {
  sk__tnode_stop(t->h.loop, &t->node);
  sk__handle_stop(&t->h);
  return 0;
}

int sk_timer_active(const sk_timer *t) {
  return sk__tnode_active(&t->node);
}
