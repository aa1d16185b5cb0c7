/* ev_echo: a small, idiomatic libevent TCP echo (or discard) server, used as
 * a benchmark peer for sockit (bench/run.py). Not part of sockit itself.
 *
 *   ev_echo [echo|discard] PORT
 *
 * Listens on 127.0.0.1:PORT (0: the kernel chooses), one thread, one event
 * base. Prints `listening on 127.0.0.1:PORT` on stderr once bound; exits 0 on
 * SIGINT/SIGTERM.
 *
 * Each connection is a bufferevent; echo moves the input evbuffer into the
 * output evbuffer (evbuffer_add_buffer, no copy of the bytes). Back-pressure
 * uses watermarks: the input buffer never grows past the read high-water
 * mark, and when the output passes HIGH_WATER reads are disabled until the
 * output drains to the write low-water mark. */

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define HIGH_WATER    (1024 * 1024)
#define LOW_WATER     (256 * 1024)
#define BACKLOG       4096
#define MAX_SINGLE_IO (256 * 1024)

static int echo_mode = 1;

static void on_read(struct bufferevent *bev, void *arg) {
  (void)arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  if (!echo_mode) {
    evbuffer_drain(in, evbuffer_get_length(in));
    return;
  }
  struct evbuffer *out = bufferevent_get_output(bev);
  evbuffer_add_buffer(out, in);
  if (evbuffer_get_length(out) >= HIGH_WATER)
    bufferevent_disable(bev, EV_READ); /* the write callback re-enables */
}

/* Called when the output drained to the write low-water mark. */
static void on_write(struct bufferevent *bev, void *arg) {
  int closing = arg != NULL;
  if (closing) {
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
      bufferevent_free(bev);
    return;
  }
  if (!(bufferevent_get_enabled(bev) & EV_READ))
    bufferevent_enable(bev, EV_READ);
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  (void)arg;
  if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
      evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
    /* The peer finished sending: flush what is queued, then close. */
    bufferevent_disable(bev, EV_READ);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_setcb(bev, NULL, on_write, on_event, bev);
    return;
  }
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
    bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd,
                      struct sockaddr *sa, int socklen, void *arg) {
  (void)sa;
  (void)socklen;
  (void)arg;
  struct event_base *base = evconnlistener_get_base(listener);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct bufferevent *bev =
      bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (bev == NULL) {
    evutil_closesocket(fd);
    return;
  }
  /* libevent moves at most 16 KiB per read/write call by default; bulk
   * transfers go much faster with larger calls, so raise both limits. */
  bufferevent_set_max_single_read(bev, MAX_SINGLE_IO);
  bufferevent_set_max_single_write(bev, MAX_SINGLE_IO);
  bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
  bufferevent_setwatermark(bev, EV_READ, 0, HIGH_WATER);
  bufferevent_setwatermark(bev, EV_WRITE, LOW_WATER, 0);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig;
  (void)what;
  event_base_loopbreak(arg);
}

static int usage(void) {
  fprintf(stderr, "usage: ev_echo [echo|discard] PORT\n");
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
  struct event_base *base = event_base_new();
  if (base == NULL) {
    fprintf(stderr, "ev_echo: event_base_new failed\n");
    return 1;
  }
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct evconnlistener *listener = evconnlistener_new_bind(
      base, on_accept, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, BACKLOG,
      (struct sockaddr *)&addr, sizeof(addr));
  if (listener == NULL) {
    fprintf(stderr, "ev_echo: 127.0.0.1:%ld: cannot listen\n", port);
    return 1;
  }
  struct sockaddr_in bound;
  socklen_t len = sizeof(bound);
  getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&bound, &len);

  struct event *sig_int = evsignal_new(base, SIGINT, on_signal, base);
  struct event *sig_term = evsignal_new(base, SIGTERM, on_signal, base);
  event_add(sig_int, NULL);
  event_add(sig_term, NULL);

  fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));
  event_base_dispatch(base);

  event_free(sig_int);
  event_free(sig_term);
  evconnlistener_free(listener);
  event_base_free(base);
  return 0;
}
