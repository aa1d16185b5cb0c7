/* An echo server for many clients at once: the async API. */
#include <sockit.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void on_close(sk_handle *h) {
  free(h);
}

static void on_shutdown(sk_stream *c, int status, void *arg) {
  sk_close(&c->h, on_close); /* every echoed byte is out (or failed) */
}

static void on_recv(sk_stream *c, ssize_t n, const void *buf) {
  if (n > 0) /* written at once; only what the kernel refuses is copied */
    sk_stream_send(c, buf, (size_t)n, NULL, NULL);
  else if (n != SK_EOF || sk_stream_shutdown(c, on_shutdown, NULL) != 0)
    sk_close(&c->h, on_close); /* an error: closing cancels what is queued */
  /* on SK_EOF: FIN once the queued echo is written, then close */
}

static void on_accept(sk_stream *srv, int status, int fd,
                      const sk_endpoint *peer) {
  if (status != 0) /* e.g. -EMFILE: sockit shed that connection already */
    return;
  sk_stream *c = malloc(sizeof(*c));
  if (c == NULL) {
    close(fd);
    return;
  }
  sk_stream_init(srv->h.loop, c);
  if (sk_stream_open(c, fd) != 0 || sk_stream_recv_start(c, on_recv) != 0)
    sk_close(&c->h, on_close);
}

int main(int argc, char **argv) {
  sk_loop loop;
  sk_stream srv;
  sk_endpoint ep;
  char name[SK_ENDPOINT_STRLEN];
  int rc = sk_endpoint_parse(&ep, argc > 1 ? argv[1] : "127.0.0.1:8888");
  if (rc == 0 && (rc = sk_loop_init(&loop)) == 0 &&
      (rc = sk_stream_init(&loop, &srv)) == 0 &&
      (rc = sk_stream_listen(&srv, &ep, 0, 0)) == 0 &&
      (rc = sk_socket_local(&srv.sock, &ep)) == 0 &&
      (rc = sk_stream_accept_start(&srv, on_accept)) == 0) {
    sk_endpoint_format(&ep, name, sizeof(name));
    fprintf(stderr, "listening on %s\n", name);
    return sk_loop_run(&loop, SK_RUN_DEFAULT) < 0;
  }
  fprintf(stderr, "echo: %s\n", sk_strerror(rc));
  return 1;
}
