// A C++17 program that uses libsockit through <sockit.h>, as a C++ user
// would: it proves the headers compile as C++ (-Wall -Wextra -Werror
// -pedantic) and link with C names (extern "C"), and that the sync and
// async APIs work from C++. Exit status 0 only if every check held.
#include <sockit.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

int failures = 0;

void check(bool ok, const char *what, int rc = 0) {
  if (!ok) {
    std::fprintf(stderr, "cpp_smoke: FAILED: %s (%d: %s)\n", what, rc,
                 sk_strerror(rc));
    failures++;
  }
}

const int kTimeoutMs = 10000;

// Sync API: listen on a kernel-chosen loopback port, connect, send, accept,
// receive, echo back, half-close and read the end of stream.
void sync_echo() {
  sk_socket srv = SK_SOCKET_INIT, cli = SK_SOCKET_INIT, conn = SK_SOCKET_INIT;
  sk_endpoint ep;
  char name[SK_ENDPOINT_STRLEN];
  int rc = sk_socket_listen_text(&srv, "127.0.0.1:0", 0);
  check(rc == 0, "sk_socket_listen_text", rc);
  rc = sk_socket_local(&srv, &ep);
  check(rc == 0, "sk_socket_local", rc);
  rc = sk_endpoint_format(&ep, name, sizeof(name));
  check(rc >= 0, "sk_endpoint_format", rc);
  rc = sk_socket_connect_text(&cli, name, SOCK_STREAM, kTimeoutMs);
  check(rc == 0, "sk_socket_connect_text", rc);
  rc = sk_socket_accept(&srv, &conn, nullptr, kTimeoutMs);
  check(rc == 0, "sk_socket_accept", rc);

  const std::string msg = "hello from C++";
  rc = sk_socket_send(&cli, msg.data(), msg.size(), kTimeoutMs);
  check(rc == 0, "sk_socket_send", rc);
  std::string got(msg.size(), '\0');
  ssize_t n =
      sk_socket_recv_all(&conn, &got[0], got.size(), nullptr, kTimeoutMs);
  check(n == static_cast<ssize_t>(msg.size()) && got == msg,
        "sync: server received the message", static_cast<int>(n));
  rc = sk_socket_send(&conn, got.data(), got.size(), kTimeoutMs);
  check(rc == 0, "sk_socket_send (echo)", rc);
  rc = sk_socket_shutdown(&conn, SK_SHUT_WR);
  check(rc == 0, "sk_socket_shutdown", rc);

  std::string back(msg.size(), '\0');
  n = sk_socket_recv_all(&cli, &back[0], back.size(), nullptr, kTimeoutMs);
  check(n == static_cast<ssize_t>(msg.size()) && back == msg,
        "sync: client received the echo", static_cast<int>(n));
  char extra;
  n = sk_socket_recv(&cli, &extra, 1, kTimeoutMs);
  check(n == 0, "sync: end of stream after the echo", static_cast<int>(n));

  // The client first: it has read the server's FIN, so neither close
  // waits for the other side.
  sk_socket_close(&cli, 1000);
  sk_socket_close(&conn, 1000);
  sk_socket_close(&srv, 1000);
}

// Async API: one loop, a listener that echoes and, at the client's FIN,
// shuts down and closes in the shutdown callback; a client that connects,
// sends, half-closes and collects the echo until end of stream. A timer
// bounds the whole exchange.
struct Async {
  sk_loop loop;
  sk_stream listener, server_conn, client;
  sk_timer watchdog;
  std::string sent, received;
  bool client_eof = false, timed_out = false;
  int closed = 0;
} A;

void on_closed(sk_handle *) {
  A.closed++;
}

void on_server_shutdown(sk_stream *s, int status, void *) {
  check(status == 0, "async: server shutdown", status);
  sk_close(&s->h, on_closed);
}

void on_server_recv(sk_stream *s, ssize_t n, const void *buf) {
  if (n > 0) {
    int rc = sk_stream_send(s, buf, static_cast<size_t>(n), nullptr, nullptr);
    check(rc == 0, "async: sk_stream_send (echo)", rc);
    return;
  }
  check(n == SK_EOF, "async: server reads the client's FIN",
        static_cast<int>(n));
  int rc = sk_stream_shutdown(s, on_server_shutdown, nullptr);
  if (rc != 0) {
    check(false, "async: sk_stream_shutdown", rc);
    sk_close(&s->h, on_closed);
  }
}

void on_accept(sk_stream *srv, int status, int fd, const sk_endpoint *) {
  if (status == -ECANCELED)
    return;
  check(status == 0, "async: accept", status);
  if (status != 0)
    return;
  int rc = sk_stream_init(srv->h.loop, &A.server_conn);
  if (rc == 0)
    rc = sk_stream_open(&A.server_conn, fd);
  if (rc == 0)
    rc = sk_stream_recv_start(&A.server_conn, on_server_recv);
  check(rc == 0, "async: open the accepted stream", rc);
  sk_close(&srv->h, on_closed); // one connection is all this test takes
}

void on_client_recv(sk_stream *s, ssize_t n, const void *buf) {
  if (n > 0) {
    A.received.append(static_cast<const char *>(buf), static_cast<size_t>(n));
    return;
  }
  check(n == SK_EOF, "async: client reads the server's FIN",
        static_cast<int>(n));
  A.client_eof = true;
  sk_close(&s->h, on_closed);
  sk_close(&A.watchdog.h, on_closed);
}

void on_connect(sk_stream *s, int status) {
  check(status == 0, "async: connect", status);
  if (status != 0) {
    sk_close(&s->h, on_closed);
    return;
  }
  int rc = sk_stream_recv_start(s, on_client_recv);
  check(rc == 0, "async: sk_stream_recv_start", rc);
  rc = sk_stream_send(s, A.sent.data(), A.sent.size(), nullptr, nullptr);
  check(rc == 0, "async: sk_stream_send", rc);
  rc = sk_stream_shutdown(s, nullptr, nullptr);
  check(rc == 0, "async: client shutdown", rc);
}

void on_watchdog(sk_timer *) {
  A.timed_out = true;
  sk_loop_stop(&A.loop);
}

void async_echo() {
  // Large enough that the echo takes several reads and writes.
  for (int i = 0; A.sent.size() < 256 * 1024; i++)
    A.sent += "line " + std::to_string(i) + " of the C++ async echo\n";

  sk_endpoint ep;
  int rc = sk_loop_init(&A.loop);
  check(rc == 0, "sk_loop_init", rc);
  if (rc != 0)
    return;
  rc = sk_endpoint_parse(&ep, "127.0.0.1:0");
  check(rc == 0, "sk_endpoint_parse", rc);
  sk_timer_init(&A.loop, &A.watchdog);
  sk_timer_start(&A.watchdog, on_watchdog, 30000, 0);
  sk_stream_init(&A.loop, &A.listener);
  rc = sk_stream_listen(&A.listener, &ep, 0, 0);
  check(rc == 0, "sk_stream_listen", rc);
  rc = sk_socket_local(&A.listener.sock, &ep);
  check(rc == 0, "sk_socket_local (listener)", rc);
  rc = sk_stream_accept_start(&A.listener, on_accept);
  check(rc == 0, "sk_stream_accept_start", rc);
  sk_stream_init(&A.loop, &A.client);
  rc = sk_stream_connect(&A.client, &ep, 1, kTimeoutMs, on_connect);
  check(rc == 0, "sk_stream_connect", rc);

  rc = sk_loop_run(&A.loop, SK_RUN_DEFAULT);
  check(rc == 0, "sk_loop_run ends with nothing left", rc);
  check(!A.timed_out, "async: finished before the watchdog");
  check(A.client_eof, "async: client saw end of stream");
  check(A.received == A.sent, "async: echo is byte-exact",
        static_cast<int>(A.received.size()));
  check(A.closed == 4, "async: every handle's close callback ran", A.closed);
  rc = sk_loop_free(&A.loop);
  check(rc == 0, "sk_loop_free", rc);
}

} // namespace

int main() {
  check(std::string(sk_version()) == SK_VERSION_STRING, "sk_version");
  sync_echo();
  async_echo();
  if (failures == 0)
    std::printf("cpp_smoke: ok (sync and async echo, %s)\n", sk_version());
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
