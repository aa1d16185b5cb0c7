/* Configure-time probe (tests/CMakeLists.txt): exits 0 when io_uring can be
 * set up on this kernel and a one-shot poll on a readable pipe completes,
 * which is what the uring backend needs. */
#include <liburing.h>
#include <poll.h>
#include <unistd.h>

int main(void) {
  struct io_uring ring;
  struct io_uring_sqe *sqe;
  struct io_uring_cqe *cqe;
  int p[2], ok;

  if (io_uring_queue_init(4, &ring, 0) != 0)
    return 1;
  if (pipe(p) != 0 || write(p[1], "x", 1) != 1)
    return 2;
  sqe = io_uring_get_sqe(&ring);
  io_uring_prep_poll_add(sqe, p[0], POLLIN);
  io_uring_sqe_set_data64(sqe, 1);
  if (io_uring_submit_and_wait(&ring, 1) < 0 ||
      io_uring_peek_cqe(&ring, &cqe) != 0)
    return 3;
  ok = cqe->user_data == 1 && (cqe->res & POLLIN);
  io_uring_queue_exit(&ring);
  return ok ? 0 : 4;
}
