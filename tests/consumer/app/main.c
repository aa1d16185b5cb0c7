/* A program outside the sockit tree, built against an installed sockit
 * (pkg-config or find_package) or against the source tree (add_subdirectory,
 * FetchContent). With an address it echoes one line through the server
 * there (e.g. an installed sockit-server); without, it runs a loopback echo
 * of its own on a kernel-chosen port. Prints "consumer: ok" on success. */
#include <sockit.h>
#include <stdio.h>
#include <string.h>

static const char msg[] = "hello from a sockit consumer\n";

/* Sends msg on c, half-closes, and reads the echo until end of stream. */
static int echo_through(sk_socket *c, int (*serve)(void *), void *arg) {
  char buf[sizeof(msg)];
  size_t got = 0;
  int rc = sk_socket_send(c, msg, strlen(msg), 5000);
  if (rc == 0)
    rc = sk_socket_shutdown(c, SK_SHUT_WR);
  if (rc == 0 && serve != NULL)
    rc = serve(arg);
  while (rc == 0) {
    ssize_t n = sk_socket_recv(c, buf + got, sizeof(buf) - got, 5000);
    if (n < 0)
      rc = (int)n;
    else if (n == 0)
      break;
    else if ((got += (size_t)n) == sizeof(buf))
      rc = SK_EFRAMETOOBIG; /* more than was sent */
  }
  if (rc == 0 && (got != strlen(msg) || memcmp(buf, msg, got) != 0))
    rc = SK_EFRAMEBAD;
  return rc;
}

/* The loopback server's side: accept, read the line, send it back, FIN. */
static int serve_once(void *arg) {
  sk_socket *srv = arg, conn = SK_SOCKET_INIT;
  char buf[sizeof(msg)];
  size_t len = strlen(msg);
  int rc = sk_socket_accept(srv, &conn, NULL, 5000);
  if (rc == 0) {
    ssize_t n = sk_socket_recv_all(&conn, buf, len, NULL, 5000);
    rc = n < 0 ? (int)n : sk_socket_send(&conn, buf, len, 5000);
  }
  if (rc == 0)
    rc = sk_socket_shutdown(&conn, SK_SHUT_WR);
  sk_socket_close(&conn, 1000);
  return rc;
}

int main(int argc, char **argv) {
  sk_socket srv = SK_SOCKET_INIT, c = SK_SOCKET_INIT;
  sk_endpoint ep;
  char addr[SK_ENDPOINT_STRLEN];
  int rc = 0;
  if (strcmp(sk_version(), SK_VERSION_STRING) != 0) {
    fprintf(stderr, "consumer: header %s, library %s\n", SK_VERSION_STRING,
            sk_version());
    return 1;
  }
  if (argc > 1) {
    snprintf(addr, sizeof(addr), "%s", argv[1]);
  } else if ((rc = sk_socket_listen_text(&srv, "127.0.0.1:0", 0)) == 0 &&
             (rc = sk_socket_local(&srv, &ep)) == 0) {
    rc = sk_endpoint_format(&ep, addr, sizeof(addr));
    rc = rc < 0 ? rc : 0;
  }
  if (rc == 0)
    rc = sk_socket_connect_text(&c, addr, SOCK_STREAM, 5000);
  if (rc == 0)
    rc = echo_through(&c, argc > 1 ? NULL : serve_once, &srv);
  sk_socket_close(&c, 1000);
  sk_socket_close(&srv, 1000);
  if (rc != 0) {
    fprintf(stderr, "consumer: %s: %s\n", addr, sk_strerror(rc));
    return 1;
  }
  printf("consumer: ok (sockit %s, echo through %s)\n", sk_version(), addr);
  return 0;
}
