/* Write requests: the only per-send allocation, and only for what the
 * kernel did not take at once (or to carry a completion callback). Small
 * requests are recycled through a per-loop cache so a busy connection does
 * not hit malloc on every send. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Requests with at most this many data bytes come from (and return to) the
 * cache; bigger ones are allocated to size and freed. */
#define WREQ_SMALL     4096
#define WREQ_CACHE_MAX 256

struct sk__wreq *sk__wreq_new(sk_loop *loop, size_t len) {
  struct sk__wreq *r;
  size_t cap = len <= WREQ_SMALL ? WREQ_SMALL : len;

  if (cap == WREQ_SMALL && loop->free_wreqs != NULL) {
    r = loop->free_wreqs;
    loop->free_wreqs = r->next;
    loop->nfree_wreqs--;
  } else {
    if (len > SIZE_MAX - sizeof(*r))
      return NULL;
    r = malloc(sizeof(*r) + cap);
    if (r == NULL)
      return NULL;
  }
  memset(r, 0, offsetof(struct sk__wreq, data));
  r->cap = cap;
  r->file_fd = -1;
  return r;
}

void sk__wreq_free(sk_loop *loop, struct sk__wreq *r) {
  if (r->cap == WREQ_SMALL && loop->nfree_wreqs < WREQ_CACHE_MAX) {
    r->next = loop->free_wreqs;
    loop->free_wreqs = r;
    loop->nfree_wreqs++;
    return;
  }
  free(r);
}

void sk__wreq_cache_free(sk_loop *loop) {
  while (loop->free_wreqs != NULL) {
    struct sk__wreq *r = loop->free_wreqs;
    loop->free_wreqs = r->next;
    free(r);
  }
  loop->nfree_wreqs = 0;
}

/* ---- the queue ---- */

void sk__wq_push(struct sk__wq *q, struct sk__wreq *r) {
  r->next = NULL;
  if (q->tail != NULL)
    q->tail->next = r;
  else
    q->head = r;
  q->tail = r;
  q->bytes += r->len;
  q->mem += sk__wreq_mem(r);
  q->held += sk__wreq_held_kind(r->kind);
}

struct sk__wreq **sk__wq_insert(struct sk__wq *q, struct sk__wreq **at,
                                struct sk__wreq *r) {
  r->next = *at;
  *at = r;
  if (r->next == NULL)
    q->tail = r;
  q->bytes += r->len;
  q->mem += sk__wreq_mem(r);
  q->held += sk__wreq_held_kind(r->kind);
  return &r->next;
}

struct sk__wreq *sk__wq_pop(struct sk__wq *q) {
  struct sk__wreq *r = q->head;
  q->head = r->next;
  if (q->head == NULL)
    q->tail = NULL;
  q->mem -= sk__wreq_mem(r);
  q->held -= sk__wreq_held_kind(r->kind);
  return r;
}

void sk__wq_remove(struct sk__wq *q, struct sk__wreq *prev,
                   struct sk__wreq *r) {
  if (prev == NULL)
    q->head = r->next;
  else
    prev->next = r->next;
  if (q->tail == r)
    q->tail = prev;
  q->bytes -= r->len;
  q->mem -= sk__wreq_mem(r);
  q->held -= sk__wreq_held_kind(r->kind);
}

static void wreq_done_cb(struct sk__pending *p) {
  struct sk__wreq *r = sk__container_of(p, struct sk__wreq, pend);
  sk_handle *h = r->handle;
  union sk__wreq_cb cb = r->cb;
  int status = r->status;
  void *arg = r->arg;
  sk__wreq_free(h->loop, r);
  if (h->type == SK_HANDLE_STREAM)
    cb.stream(sk__container_of(h, sk_stream, h), status, arg);
  else
    cb.udp(sk__container_of(h, sk_udp, h), status, arg);
}

void sk__wq_complete(sk_handle *h, struct sk__wreq *r, int status) {
  if (!sk__wreq_has_cb(r)) {
    sk__wreq_free(h->loop, r);
    return;
  }
  r->status = status;
  r->handle = h;
  sk__pending_add(h->loop, &r->pend, wreq_done_cb);
}

void sk__wq_fail(sk_handle *h, struct sk__wq *q, int err) {
  while (q->head != NULL)
    sk__wq_complete(h, sk__wq_pop(q), err);
  q->bytes = 0;
  q->mem = 0;
  q->held = 0;
}

/* ---- gathering ---- */

/* Copies iov[], skipping the first skip bytes, into dst: at most n bytes. */
void sk__iov_copy_n(unsigned char *dst, const struct iovec *iov, int iovcnt,
                    size_t skip, size_t n) {
  for (int i = 0; i < iovcnt && n > 0; i++) {
    size_t l = iov[i].iov_len;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    size_t k = l - skip < n ? l - skip : n;
    memcpy(dst, (const char *)iov[i].iov_base + skip, k);
    dst += k;
    n -= k;
    skip = 0;
  }
}

void sk__iov_copy(unsigned char *dst, const struct iovec *iov, int iovcnt,
                  size_t skip) {
  sk__iov_copy_n(dst, iov, iovcnt, skip, SIZE_MAX);
}
