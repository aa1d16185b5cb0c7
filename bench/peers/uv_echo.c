/* uv_echo: a small, idiomatic libuv TCP echo (or discard) server, used as a
 * benchmark peer for sockit (bench/run.py). Not part of sockit itself.
 *
 *   uv_echo [echo|discard] PORT
 *
 * Listens on 127.0.0.1:PORT (0: the kernel chooses), one thread, one loop.
 * Prints `listening on 127.0.0.1:PORT` on stderr once bound; exits 0 on
 * SIGINT/SIGTERM.
 *
 * Reads go into one shared buffer per loop (the loop is single-threaded and
 * libuv hands the buffer back in the read callback before the next
 * allocation); echoed bytes are copied into the write request and freed in
 * the write callback. When a connection's write queue grows past HIGH_WATER
 * bytes its reads stop, and restart once the queue drains below LOW_WATER. */

#include <uv.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF_SIZE (64 * 1024)
#define HIGH_WATER    (1024 * 1024)
#define LOW_WATER     (256 * 1024)
#define BACKLOG       4096

typedef struct {
  uv_tcp_t tcp;
  int reading; /* 1 while uv_read_start is in effect */
  int closing;
} conn_t;

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
  char data[]; /* the echoed bytes */
} write_req_t;

static int echo_mode = 1;
static char read_buf[READ_BUF_SIZE];
static uv_tcp_t server;
static uv_signal_t sig_int, sig_term;

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void on_close(uv_handle_t *handle) {
  free(handle->data);
}

static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  conn_close(req->handle->data);
  free(req);
}

static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->handle->data;
  free(req);
  if (status < 0) {
    conn_close(c);
    return;
  }
  /* Back-pressure release: the peer caught up, read again. */
  if (!c->reading && !c->closing &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < LOW_WATER) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
      c->reading = 1;
  }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)handle;
  (void)suggested;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void echo(conn_t *c, const char *data, size_t len) {
  write_req_t *w = malloc(sizeof(*w) + len);
  if (w == NULL) {
    conn_close(c);
    return;
  }
  memcpy(w->data, data, len);
  w->buf = uv_buf_init(w->data, (unsigned int)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_write) < 0) {
    free(w);
    conn_close(c);
    return;
  }
  /* Back-pressure: stop reading while the kernel does not take our output. */
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > HIGH_WATER) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread > 0) {
    if (echo_mode)
      echo(c, buf->base, (size_t)nread);
    return;
  }
  if (nread == 0) /* EAGAIN */
    return;
  uv_read_stop(stream);
  c->reading = 0;
  if (nread == UV_EOF) {
    /* Flush what is queued, then close. */
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req != NULL && uv_shutdown(req, stream, on_shutdown) == 0)
      return;
    free(req);
  }
  conn_close(c);
}

static void on_connection(uv_stream_t *listener, int status) {
  if (status < 0)
    return;
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  uv_tcp_init(listener->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
    c->reading = 1;
  else
    conn_close(c);
}

static void close_any(uv_handle_t *handle, void *arg) {
  (void)arg;
  if (uv_is_closing(handle))
    return;
  if (handle->type == UV_TCP && handle != (uv_handle_t *)&server) {
    conn_close(handle->data);
    return;
  }
  uv_close(handle, NULL);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  uv_walk(sig->loop, close_any, NULL);
}

static int usage(void) {
  fprintf(stderr, "usage: uv_echo [echo|discard] PORT\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc != 3)
    return usage();
  if (strcmp(argv[1], "echo") == 0)
    echo_mode = 1;
  else if (strcmp(argv[1], "discard") == 0)
    echo_mode = 0;
  else
    return usage();
  char *end;
  long port = strtol(argv[2], &end, 10);
  if (*argv[2] == '\0' || *end != '\0' || port < 0 || port > 65535)
    return usage();

  signal(SIGPIPE, SIG_IGN);
  uv_loop_t *loop = uv_default_loop();
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", (int)port, &addr);
  uv_tcp_init(loop, &server);
  int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&server, BACKLOG, on_connection);
  if (rc != 0) {
    fprintf(stderr, "uv_echo: 127.0.0.1:%ld: %s\n", port, uv_strerror(rc));
    return 1;
  }
  struct sockaddr_in bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);

  uv_signal_init(loop, &sig_int);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_signal_init(loop, &sig_term);
  uv_signal_start(&sig_term, on_signal, SIGTERM);

  fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}
