/* Sends a message, half-closes, prints the reply: the sync API. */
#include <sockit.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:8888";
  const char *msg = argc > 2 ? argv[2] : "hello, sockit\n";
  sk_socket s = SK_SOCKET_INIT;
  char buf[4096];
  ssize_t n = 0;
  int rc = sk_socket_connect_text(&s, addr, SOCK_STREAM, 5000);
  if (rc == 0)
    rc = sk_socket_send(&s, msg, strlen(msg), 5000);
  if (rc == 0)
    rc = sk_socket_shutdown(&s, SK_SHUT_WR); /* FIN: "that is all" */
  while (rc == 0 && (n = sk_socket_recv(&s, buf, sizeof(buf), 5000)) > 0)
    fwrite(buf, 1, (size_t)n, stdout);
  if (rc == 0 && n < 0)
    rc = (int)n;
  sk_socket_close(&s, 1000);
  if (rc != 0)
    fprintf(stderr, "%s: %s\n", addr, sk_strerror(rc));
  return rc != 0;
}
