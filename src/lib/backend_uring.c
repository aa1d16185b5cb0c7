/* The io_uring backend (Linux 5.5+ with liburing; developed and tested on
 * 6.x, where it uses the newer ring flags too). It keeps the contract of
 * the epoll backend: readiness is level-triggered and reported through the
 * watcher callbacks. What it changes is the cost of interest changes: every
 * poll request and every cancellation is an SQE, submitted together with the
 * wait of the next iteration, so starting, stopping and modifying watchers
 * cost no system call of their own.
 *
 * Why one-shot polls and not multishot ones: a multishot IORING_OP_POLL_ADD
 * is edge-triggered (it posts a completion when the file's wait queue is
 * woken, not while the condition holds), and IORING_POLL_ADD_LEVEL is
 * rejected with -EINVAL by POLL_ADD on current kernels. The stream code
 * relies on level-triggered readiness: after a bounded read it returns to
 * the loop and expects to be told again if data remains. A one-shot poll
 * checks readiness when it is armed and completes at once if the condition
 * holds, so re-arming it after every completion gives exactly level-triggered
 * behaviour, at the price of one SQE (not one system call) per event.
 *
 * Book-keeping: each watcher owns a slot in a table (its index is kept in
 * w->slot). A slot counts the poll requests made for it (gen); a request's
 * user_data is (gen << 32 | slot), so the completion of a request that was
 * removed or replaced since (its gen is not the slot's current one) is
 * recognised and dropped. */
#include "internal.h"

#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#define SQ_ENTRIES 256
/* Every armed watcher can have one completion outstanding. Past this many,
 * the kernel keeps the extra completions on its overflow list (we require
 * IORING_FEAT_NODROP) and hands them over at the next wait. */
#define CQ_ENTRIES 4096
/* Completions taken per poll(); the rest wait for the next iteration. */
#define MAX_READY 1024

/* user_data of requests whose completion means nothing to us (cancels,
 * neutralised SQEs); also liburing's own timeout marker. */
#define UD_IGNORE UINT64_MAX

struct uring_slot {
  struct sk__io *w; /* NULL while the slot is free */
  uint32_t gen;     /* id of the newest poll request made for the slot */
  unsigned armed;   /* SK__IO_* of that request while it is live, else 0 */
  /* The request's SQE while it is still in the submission queue: changes
   * before submission rewrite it instead of queueing more work. Valid only
   * while sqe_epoch equals the state's epoch. */
  struct io_uring_sqe *sqe;
  uint32_t sqe_epoch;
  /* The epoch in which a cancellation of an earlier request was queued
   * (valid while cancel_queued): until submitted, that request still pins
   * the file. */
  uint32_t cancel_epoch;
  int cancel_queued;
  int next_free;
};

struct uring_ready {
  uint32_t slot, gen;
  unsigned revents;
};

struct uring_state {
  struct io_uring ring;
  struct uring_slot *slots;
  int nslots, cap;
  int free_head;
  /* Bumped whenever the submission queue is handed to the kernel, which
   * invalidates every SQE pointer kept in a slot. */
  uint32_t epoch;
  unsigned skip_flag;        /* IOSQE_CQE_SKIP_SUCCESS when supported */
  unsigned dropped_seen;     /* last value of the kernel's dropped-CQE count */
  struct uring_ready *ready; /* scratch for one poll(): MAX_READY entries */
  /* A re-arm failed for want of an SQE: look for unarmed watchers before
   * the next wait rather than leave one deaf. */
  int sweep;
};

static uint64_t make_ud(uint32_t slot, uint32_t gen) {
  return ((uint64_t)gen << 32) | slot;
}

static unsigned to_poll(unsigned events) {
  unsigned m = 0;
  if (events & SK__IO_READ)
    m |= POLLIN;
  if (events & SK__IO_WRITE)
    m |= POLLOUT;
  return m;
}

static int sqe_pending(const struct uring_state *st,
                       const struct uring_slot *s) {
  return s->sqe != NULL && s->sqe_epoch == st->epoch;
}

/* Hands the queued SQEs to the kernel without waiting. Asking for events
 * too makes the kernel run the task work that completes cancelled polls
 * before it returns, so their file references are gone by then. */
static int submit_now(struct uring_state *st) {
  int rc;
  do
    rc = io_uring_submit_and_get_events(&st->ring);
  while (rc == -EINTR);
  st->epoch++;
  return rc < 0 ? rc : 0;
}

/* Makes sure n SQEs can be taken without failing half-way through an
 * update. A full queue (more changes in one iteration than SQ_ENTRIES) is
 * submitted early; that is the only case where changes cost a call. */
static int reserve_sqes(struct uring_state *st, unsigned n) {
  if (io_uring_sq_space_left(&st->ring) >= n)
    return 0;
  submit_now(st);
  return io_uring_sq_space_left(&st->ring) >= n ? 0 : -EBUSY;
}

static void queue_ignored(struct uring_state *st, struct io_uring_sqe *sqe) {
  io_uring_sqe_set_data64(sqe, UD_IGNORE);
  sqe->flags |= (uint8_t)st->skip_flag;
}

/* Queues a one-shot poll for the slot's watcher. Needs one reserved SQE. */
static void arm(struct uring_state *st, int idx, unsigned events) {
  struct uring_slot *s = &st->slots[idx];
  struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
  s->gen++;
  io_uring_prep_poll_add(sqe, *s->w->fd, to_poll(events));
  io_uring_sqe_set_data64(sqe, make_ud((uint32_t)idx, s->gen));
  s->armed = events;
  s->sqe = sqe;
  s->sqe_epoch = st->epoch;
}

/* Queues the cancellation of the slot's live request. Needs one reserved
 * SQE. Its completion (and the -ECANCELED one of the poll) is dropped: by
 * the time either arrives, the slot has been released or has a newer
 * request. */
static void cancel(struct uring_state *st, int idx) {
  struct uring_slot *s = &st->slots[idx];
  struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
  io_uring_prep_poll_remove(sqe, make_ud((uint32_t)idx, s->gen));
  queue_ignored(st, sqe);
  s->armed = 0;
  s->cancel_queued = 1;
  s->cancel_epoch = st->epoch;
}

static int slot_alloc(struct uring_state *st) {
  int idx;
  if (st->free_head >= 0) {
    idx = st->free_head;
    st->free_head = st->slots[idx].next_free;
    return idx;
  }
  if (st->nslots == st->cap) {
    int cap = st->cap ? st->cap * 2 : 64;
    struct uring_slot *slots;
    if (st->cap > INT_MAX / 2)
      return -ENOMEM;
    slots = realloc(st->slots, (size_t)cap * sizeof(*slots));
    if (slots == NULL)
      return -ENOMEM;
    st->slots = slots;
    st->cap = cap;
  }
  idx = st->nslots++;
  memset(&st->slots[idx], 0, sizeof(st->slots[idx]));
  return idx;
}

static void slot_release(struct uring_state *st, int idx) {
  struct uring_slot *s = &st->slots[idx];
  s->w = NULL;
  s->armed = 0;
  s->sqe = NULL;
  s->cancel_queued = 0;
  /* gen is kept: the slot's next owner continues the count, so requests of
   * the previous owner can never be mistaken for its own. */
  s->next_free = st->free_head;
  st->free_head = idx;
}

/* Ring set-up flags, best first; older kernels reject newer flags with
 * EINVAL and get the next set.
 * - COOP_TASKRUN: a poll that fires while the loop runs callbacks does not
 *   interrupt it with an IPI; the completion is posted at its next kernel
 *   exit. With it, echo costs about as much CPU per message as with epoll;
 *   without it, measurably more. TASKRUN_FLAG tells us when such completions
 *   are pending, for waits of 0 ms (5.19).
 * - SUBMIT_ALL: one bad SQE (say, a poll on a descriptor closed behind the
 *   loop's back) must not hold back the ones queued after it (5.18).
 * DEFER_TASKRUN would save more but ties the ring to the thread that creates
 * it, and a loop may be created on one thread and run on another. */
static const unsigned setup_flags[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
        IORING_SETUP_TASKRUN_FLAG,
    IORING_SETUP_SUBMIT_ALL,
    0,
};

static int ur_init(sk_loop *loop) {
  struct io_uring_params p;
  struct uring_state *st = calloc(1, sizeof(*st));
  int rc;

  if (st == NULL)
    return -ENOMEM;
  st->ready = malloc(MAX_READY * sizeof(*st->ready));
  if (st->ready == NULL) {
    free(st);
    return -ENOMEM;
  }
  st->free_head = -1;
  rc = -EINVAL;
  for (size_t i = 0;
       rc == -EINVAL && i < sizeof(setup_flags) / sizeof(setup_flags[0]); i++) {
    memset(&p, 0, sizeof(p));
    p.flags = setup_flags[i] | IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    rc = io_uring_queue_init_params(SQ_ENTRIES, &st->ring, &p);
  }
  if (rc == 0 && !(p.features & IORING_FEAT_NODROP)) {
    /* A lost completion would leave its watcher unarmed for good. */
    io_uring_queue_exit(&st->ring);
    rc = -EOPNOTSUPP;
  }
  if (rc < 0) {
    free(st->ready);
    free(st);
    /* io_uring missing, disabled by sysctl (kernel.io_uring_disabled) or
     * filtered by seccomp: the backend is unavailable, which is not the
     * same as the system being out of resources. */
    if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -EINVAL ||
        rc == -EOPNOTSUPP)
      return SK_EBACKEND;
    return rc;
  }
  if (p.features & IORING_FEAT_CQE_SKIP)
    st->skip_flag = IOSQE_CQE_SKIP_SUCCESS;
  st->dropped_seen = *st->ring.cq.koverflow;
  loop->backend_state = st;
  return 0;
}

static void ur_free(sk_loop *loop) {
  struct uring_state *st = loop->backend_state;
  /* Cancels whatever is still armed and waits for it. */
  io_uring_queue_exit(&st->ring);
  free(st->slots);
  free(st->ready);
  free(st);
  loop->backend_state = NULL;
}

static int ur_update(sk_loop *loop, struct sk__io *w, unsigned events) {
  struct uring_state *st = loop->backend_state;
  struct uring_slot *s;
  int idx, rc;

  if (events == 0) {
    int flush = 0;
    if (w->slot < 0)
      return 0;
    idx = w->slot;
    s = &st->slots[idx];
    /* A cancellation queued by an interest change since the last wait has
     * not reached the kernel either. */
    flush = s->cancel_queued && s->cancel_epoch == st->epoch;
    if (sqe_pending(st, s)) {
      /* Never seen by the kernel: turning the SQE into a no-op is enough. */
      io_uring_prep_nop(s->sqe);
      queue_ignored(st, s->sqe);
    } else if (s->armed != 0) {
      rc = reserve_sqes(st, 1);
      if (rc != 0)
        return rc;
      cancel(st, idx);
      flush = 1;
    }
    slot_release(st, idx);
    w->slot = -1;
    /* An armed poll holds a reference to the file: the caller is about to
     * close the descriptor, and until the cancellation reaches the kernel
     * the socket would stay open (no FIN, the port still bound). So a
     * removal that has to cancel a live request is submitted now. It is the
     * one change that costs a call, and the common one is free: a watcher
     * stopped from its own callback has no live request. */
    if (flush)
      submit_now(st);
    return 0;
  }

  if (w->slot < 0) {
    idx = slot_alloc(st);
    if (idx < 0)
      return idx;
    st->slots[idx].w = w;
    w->slot = idx;
  }
  idx = w->slot;
  s = &st->slots[idx];
  if (sqe_pending(st, s)) {
    /* Still in the submission queue: rewrite the request in place. */
    io_uring_prep_poll_add(s->sqe, *w->fd, to_poll(events));
    io_uring_sqe_set_data64(s->sqe, make_ud((uint32_t)idx, s->gen));
    s->armed = events;
    return 0;
  }
  rc = reserve_sqes(st, s->armed != 0 ? 2 : 1);
  if (rc != 0) {
    if (w->kevents == 0) {
      slot_release(st, idx);
      w->slot = -1;
    }
    return rc;
  }
  if (s->armed != 0)
    cancel(st, idx);
  arm(st, idx, events);
  return 0;
}

/* Submits what is queued and waits up to timeout_ms for a completion. */
static int ur_wait(struct uring_state *st, int timeout_ms) {
  struct io_uring_cqe *cqe;
  struct __kernel_timespec ts;
  int rc;

  if (timeout_ms == 0) {
    /* Enter the kernel only if there is something to submit or completions
     * are waiting to be posted (COOP_TASKRUN defers them to a kernel
     * entry). */
    unsigned flags = IO_URING_READ_ONCE(*st->ring.sq.kflags);
    rc = 0;
    if (io_uring_sq_ready(&st->ring) > 0 ||
        (flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
      rc = io_uring_submit_and_get_events(&st->ring);
  } else if (timeout_ms < 0) {
    rc = io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, NULL, NULL);
  } else {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
    rc = io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, &ts, NULL);
  }
  st->epoch++;
  /* Timeouts and signals are normal returns; EBUSY/EAGAIN mean the kernel
   * wants the completion queue reaped first, which is what comes next. */
  if (rc >= 0 || rc == -ETIME || rc == -EINTR || rc == -EBUSY || rc == -EAGAIN)
    return 0;
  return rc;
}

/* Takes completions off the ring into st->ready. Completions of requests
 * that are no longer the slot's current one are dropped here. */
static int collect(struct uring_state *st) {
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  int n = 0;

  /* Completions the kernel kept back because the ring was full are only
   * moved to it by a call that asks for events. */
  if (io_uring_cq_has_overflow(&st->ring) && io_uring_cq_ready(&st->ring) == 0)
    io_uring_get_events(&st->ring);

  io_uring_for_each_cqe(&st->ring, head, cqe) {
    uint64_t ud = cqe->user_data;
    uint32_t idx = (uint32_t)ud, gen = (uint32_t)(ud >> 32);
    struct uring_slot *s;
    unsigned rev = 0;
    int res = cqe->res;

    if (n == MAX_READY)
      break;
    seen++;
    if (ud == UD_IGNORE || idx >= (uint32_t)st->nslots)
      continue;
    s = &st->slots[idx];
    if (s->w == NULL || s->gen != gen || s->armed == 0)
      continue; /* removed or replaced since: stale */
    if (cqe->flags & IORING_CQE_F_MORE)
      continue; /* a multishot request is still live; we make none */
    s->armed = 0;
    if (res >= 0) {
      if (res & POLLIN)
        rev |= SK__IO_READ;
      if (res & POLLOUT)
        rev |= SK__IO_WRITE;
      if (res & (POLLERR | POLLHUP | POLLNVAL))
        rev |= SK__IO_READ | SK__IO_WRITE | SK__IO_ERR;
    } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
      /* The poll could not be armed (EBADF: a descriptor closed while
       * still watched). Report it like poll(2) reports POLLNVAL, so the
       * handler's next call fails and it cleans up. */
      rev = SK__IO_READ | SK__IO_WRITE | SK__IO_ERR;
    }
    /* -ECANCELED with our gen: the kernel cancelled the request itself
     * (the submitting thread exited). rev stays 0: it is only re-armed. */
    st->ready[n].slot = idx;
    st->ready[n].gen = gen;
    st->ready[n].revents = rev;
    n++;
  }
  io_uring_cq_advance(&st->ring, seen);
  return n;
}

/* The kernel dropped completions (it could not allocate room for them on
 * its overflow list): any live request may have completed unseen, so every
 * one is replaced. Cheap insurance for a case that should never happen. */
static void resync(struct uring_state *st) {
  for (int i = 0; i < st->nslots; i++) {
    struct uring_slot *s = &st->slots[i];
    if (s->w == NULL || s->armed == 0 || sqe_pending(st, s))
      continue;
    if (reserve_sqes(st, 2) != 0)
      return;
    s = &st->slots[i];
    unsigned ev = s->armed;
    cancel(st, i);
    arm(st, i, ev);
  }
}

/* Arms every watcher that wants events but has no request (after a failed
 * re-arm). */
static void arm_unarmed(struct uring_state *st) {
  st->sweep = 0;
  for (int i = 0; i < st->nslots; i++) {
    struct uring_slot *s = &st->slots[i];
    if (s->w == NULL || s->armed != 0 || s->w->kevents == 0)
      continue;
    if (reserve_sqes(st, 1) != 0) {
      st->sweep = 1;
      return;
    }
    arm(st, i, s->w->kevents);
  }
}

static int ur_poll(sk_loop *loop, int timeout_ms) {
  struct uring_state *st = loop->backend_state;
  int rc, n;

  if (st->sweep)
    arm_unarmed(st);
  rc = ur_wait(st, timeout_ms);
  if (rc < 0)
    return rc;
  /* Callbacks must see the time the wait ended, not when it began. */
  sk_loop_update_time(loop);
  n = collect(st);
  for (int i = 0; i < n; i++) {
    uint32_t idx = st->ready[i].slot, gen = st->ready[i].gen;
    struct uring_slot *s = &st->slots[idx];
    struct sk__io *w = s->w;
    unsigned rev;

    /* An earlier callback of this batch removed the watcher, or changed
     * its interest (which made a new request): the event is stale. */
    if (w == NULL || s->gen != gen)
      continue;
    rev = st->ready[i].revents & (w->kevents | SK__IO_ERR);
    if (w->kevents != 0 && rev != 0)
      w->cb(loop, w, rev);
    /* The request has ended. If the callback left the watcher as it was,
     * re-arm it: the new poll completes at once (in the next wait) if the
     * condition still holds, which is what makes this level-triggered.
     * The table may have moved during the callback: index it again. */
    s = &st->slots[idx];
    if (s->w == w && s->gen == gen && s->armed == 0 && w->kevents != 0) {
      if (reserve_sqes(st, 1) == 0)
        arm(st, (int)idx, w->kevents);
      else
        st->sweep = 1;
    }
  }
  if (*st->ring.cq.koverflow != st->dropped_seen) {
    st->dropped_seen = *st->ring.cq.koverflow;
    resync(st);
  }
  return n;
}

const struct sk__backend sk__backend_uring = {
    "uring", ur_init, ur_free, ur_update, ur_poll,
};
