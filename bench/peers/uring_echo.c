/* uring_echo: a completion-based io_uring TCP echo (or discard) server, used
 * as a benchmark peer for sockit (bench/run.py). Not part of sockit itself.
 *
 *   uring_echo [echo|discard] PORT
 *
 * It is the design issue 5 proposes for sockit's io_uring backend, with
 * nothing else around it, so it shows what that design can gain on this
 * machine before the library takes on its complexity:
 * - one multishot accept for the listener;
 * - one multishot recv per connection, landing in a ring of provided
 *   buffers (no read system call, no per-connection buffer);
 * - echoed bytes are sent from the very buffer they arrived in (no copy),
 *   with one send in flight per connection (later buffers wait their turn,
 *   so the byte order holds); the buffer returns to the ring when its send
 *   completes;
 * - every send and re-arm of one iteration goes to the kernel in the same
 *   io_uring_enter that waits for the next completions.
 *
 * Needs Linux 6.0+ (multishot recv) and liburing 2.2+ (buffer rings).
 * Listens on 127.0.0.1:PORT (0: the kernel chooses), one thread. Prints
 * `listening on 127.0.0.1:PORT` on stderr once bound; exits 0 on SIGINT or
 * SIGTERM. A connection holding more than MAX_HELD buffers stops receiving
 * until its sends drain (back-pressure); a recv that finds the ring empty
 * (-ENOBUFS) is re-armed once a buffer comes back. */
#define _GNU_SOURCE
#include <liburing.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NBUF     1024 /* provided buffers (a power of two) */
#define BUF_SIZE 16384
#define BGID     7
#define MAX_HELD 32 /* queued buffers that stop a connection's recv */
#define MAX_FD   65536

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND };

struct conn {
  int open, recv_armed, recv_stopping, closing;
  int eof; /* the peer half-closed: close once the echo is sent */
  /* Buffers waiting to be sent, in order: a list through buf_next. A
   * multishot recv can fill many buffers before a cancellation stops it,
   * but never more than the ring has, so the list cannot overflow. */
  int qhead, qtail, qn;
  uint32_t sent; /* bytes of the head buffer already sent */
  int sending;
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static unsigned char *bufs;
static struct conn *conns;
static int buf_next[NBUF];
static uint32_t buf_len[NBUF];
static int echo_mode = 1;
static volatile sig_atomic_t stop;
/* Connections whose recv ended for want of buffers, re-armed as buffers
 * come back. */
static int starved[MAX_FD], nstarved;

static uint64_t ud(int op, int fd) {
  return (uint64_t)op << 32 | (uint32_t)fd;
}

static struct io_uring_sqe *sqe(void) {
  struct io_uring_sqe *s = io_uring_get_sqe(&ring);
  if (s == NULL) {
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  return s;
}

static void buf_return(int bid) {
  io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE,
                        (unsigned short)bid, io_uring_buf_ring_mask(NBUF), 0);
  io_uring_buf_ring_advance(br, 1);
}

static void arm_recv(int fd) {
  struct io_uring_sqe *s = sqe();
  io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = BGID;
  io_uring_sqe_set_data64(s, ud(OP_RECV, fd));
  conns[fd].recv_armed = 1;
}

static void send_head(int fd) {
  struct conn *c = &conns[fd];
  int bid = c->qhead;
  struct io_uring_sqe *s = sqe();
  io_uring_prep_send(s, fd, bufs + (size_t)bid * BUF_SIZE + c->sent,
                     buf_len[bid] - c->sent, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, ud(OP_SEND, fd));
  c->sending = 1;
}

static void conn_close(int fd) {
  struct conn *c = &conns[fd];
  if (c->recv_armed || c->sending) {
    /* Wait for the kernel to let go of the socket's requests. */
    if (!c->closing) {
      struct io_uring_sqe *s = sqe();
      io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(s, 0);
      c->closing = 1;
    }
    return;
  }
  while (c->qn > 0) {
    int bid = c->qhead;
    c->qhead = buf_next[bid];
    buf_return(bid);
    c->qn--;
  }
  memset(c, 0, sizeof(*c));
  close(fd);
}

static void rearm_starved(void) {
  while (nstarved > 0) {
    int fd = starved[--nstarved];
    if (conns[fd].open && !conns[fd].closing && !conns[fd].recv_armed &&
        conns[fd].qn < MAX_HELD)
      arm_recv(fd);
  }
}

static void on_recv(int fd, const struct io_uring_cqe *cqe) {
  struct conn *c = &conns[fd];
  int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (!more)
    c->recv_armed = c->recv_stopping = 0;
  if (cqe->res > 0) {
    int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (!echo_mode || c->closing) {
      buf_return(bid);
    } else {
      buf_len[bid] = (uint32_t)cqe->res;
      buf_next[bid] = -1;
      if (c->qn++ == 0)
        c->qhead = bid;
      else
        buf_next[c->qtail] = bid;
      c->qtail = bid;
      if (!c->sending)
        send_head(fd);
      if (c->qn >= MAX_HELD && more && !c->recv_stopping) {
        /* Stop receiving until the sends catch up. */
        struct io_uring_sqe *s = sqe();
        io_uring_prep_cancel64(s, ud(OP_RECV, fd), 0);
        io_uring_sqe_set_data64(s, 0);
        c->recv_stopping = 1;
      }
    }
    if (c->closing)
      conn_close(fd);
    else if (!more && c->qn < MAX_HELD)
      arm_recv(fd);
    return;
  }
  if (cqe->res == -ENOBUFS) {
    if (nstarved < MAX_FD)
      starved[nstarved++] = fd;
    return;
  }
  if (cqe->res == -ECANCELED && !c->closing) {
    /* Stopped for back-pressure: re-armed when the sends drain (or now,
     * if they drained before the cancellation arrived). */
    if (c->qn < MAX_HELD)
      arm_recv(fd);
    return;
  }
  if (cqe->res == 0 && !c->closing) {
    c->eof = 1;
    if (c->qn > 0)
      return; /* the echo still owed goes out first */
  }
  conn_close(fd); /* EOF, error, or the cancel of a closing connection */
}

static void on_send(int fd, const struct io_uring_cqe *cqe) {
  struct conn *c = &conns[fd];
  c->sending = 0;
  if (cqe->res < 0 || c->closing) {
    conn_close(fd);
    return;
  }
  c->sent += (uint32_t)cqe->res;
  if (c->sent == buf_len[c->qhead]) {
    int bid = c->qhead;
    c->qhead = buf_next[bid];
    buf_return(bid);
    c->qn--;
    c->sent = 0;
  }
  if (c->qn > 0)
    send_head(fd);
  else if (c->eof)
    conn_close(fd);
  else if (!c->recv_armed)
    arm_recv(fd);
}

static void on_accept(int lfd, const struct io_uring_cqe *cqe) {
  int one = 1, fd = cqe->res;
  if (!(cqe->flags & IORING_CQE_F_MORE)) {
    struct io_uring_sqe *s = sqe();
    io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, ud(OP_ACCEPT, lfd));
  }
  if (fd < 0)
    return;
  if (fd >= MAX_FD) {
    close(fd);
    return;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  memset(&conns[fd], 0, sizeof(conns[fd]));
  conns[fd].open = 1;
  arm_recv(fd);
}

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

int main(int argc, char **argv) {
  struct io_uring_params p;
  struct sockaddr_in a;
  socklen_t alen = sizeof(a);
  int lfd, one = 1, rc;

  if (argc != 3 || (strcmp(argv[1], "echo") && strcmp(argv[1], "discard"))) {
    fprintf(stderr, "usage: uring_echo echo|discard PORT\n");
    return 2;
  }
  echo_mode = strcmp(argv[1], "echo") == 0;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  memset(&p, 0, sizeof(p));
  p.flags =
      IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = 16384;
  if ((rc = io_uring_queue_init_params(4096, &ring, &p)) < 0) {
    fprintf(stderr, "uring_echo: io_uring: %s\n", strerror(-rc));
    return 1;
  }
  br = aligned_alloc(4096, NBUF * sizeof(struct io_uring_buf));
  bufs = malloc((size_t)NBUF * BUF_SIZE);
  conns = calloc(MAX_FD, sizeof(*conns));
  if (br == NULL || bufs == NULL || conns == NULL) {
    fprintf(stderr, "uring_echo: out of memory\n");
    return 1;
  }
  io_uring_buf_ring_init(br);
  struct io_uring_buf_reg reg = {
      .ring_addr = (unsigned long)br, .ring_entries = NBUF, .bgid = BGID};
  if ((rc = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) {
    fprintf(stderr, "uring_echo: buffer ring: %s\n", strerror(-rc));
    return 1;
  }
  for (int i = 0; i < NBUF; i++)
    io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE,
                          (unsigned short)i, io_uring_buf_ring_mask(NBUF), i);
  io_uring_buf_ring_advance(br, NBUF);

  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(argv[2]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
      listen(lfd, 4096) < 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &alen) < 0) {
    fprintf(stderr, "uring_echo: listen: %s\n", strerror(errno));
    return 1;
  }
  struct io_uring_sqe *s = sqe();
  io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, ud(OP_ACCEPT, lfd));
  fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(a.sin_port));

  while (!stop) {
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      fprintf(stderr, "uring_echo: wait: %s\n", strerror(-rc));
      return 1;
    }
    io_uring_for_each_cqe(&ring, head, cqe) {
      uint64_t u = cqe->user_data;
      int fd = (int)(uint32_t)u;
      seen++;
      switch ((int)(u >> 32)) {
      case OP_ACCEPT:
        on_accept(fd, cqe);
        break;
      case OP_RECV:
        on_recv(fd, cqe);
        break;
      case OP_SEND:
        on_send(fd, cqe);
        break;
      default: /* cancellations */
        break;
      }
    }
    io_uring_cq_advance(&ring, seen);
    rearm_starved();
  }
  io_uring_queue_exit(&ring);
  return 0;
}
