/* What a mode is: one file that fills in a struct mode, and one row in the
 * table in modes.c. Everything the server knows about a mode is here: its
 * name and help text, the transports and frames it works with, how many
 * descriptors a connection may hold, the options only it takes, and the
 * callbacks through which it sees connections and datagrams. State a mode
 * keeps lives in its own file (per connection in conn->mode_data).
 *
 * --help, the --mode error message and the option checks are made from the
 * table; tests/e2e/test_modes.py checks the man page's MODES list and the
 * shell completions against it. */
#ifndef SOCKIT_SERVER_MODE_H
#define SOCKIT_SERVER_MODE_H

#include <stddef.h>
#include <stdint.h>

#include "sockit.h"

struct server_config;
struct conn;
struct udp_listener;

/* Transports (struct mode.transports): the listener kinds, and TLS. */
enum {
  MODE_TCP = 1u << 0,
  MODE_UNIX = 1u << 1,
  MODE_UDP = 1u << 2,
  MODE_TLS = 1u << 3,
  MODE_STREAMS = MODE_TCP | MODE_UNIX | MODE_TLS,
};

/* Frames (struct mode.frames): one bit per sk_frame_mode. */
#define MODE_FRAME(f) (1u << (f))
#define MODE_ALL_FRAMES                                                        \
  (MODE_FRAME(SK_FRAME_RAW) | MODE_FRAME(SK_FRAME_LINE) |                      \
   MODE_FRAME(SK_FRAME_LEN16) | MODE_FRAME(SK_FRAME_LEN32) |                   \
   MODE_FRAME(SK_FRAME_ASCII4))

/* An option of a mode alone, declared by its row: main.c offers it to
 * getopt, lists it under --help, refuses it with any other mode, and hands
 * its value to parse(), which keeps it in the mode's own state. */
struct mode_option {
  const char *name; /* "--root" */
  const char *arg;  /* what the value is, for --help: "DIR" */
  const char *help; /* one line for --help: "directory to serve" */
  const char *def;  /* the default, parsed before any value given: "." */
  /* Stores value; returns NULL, or what is wrong with it ("is not a size
   * in 0..N bytes"), which main.c reports as "--opt: 'value' <reason>". */
  const char *(*parse)(const char *value);
};

struct mode {
  const char *name;
  const char *summary; /* one line for --help */
  unsigned transports; /* MODE_TCP, MODE_UNIX, MODE_UDP, MODE_TLS */
  /* The --frame values it takes (a mode that takes one, chat's line, uses
   * it without being told); 0: it parses its own protocol (data, not
   * piece). */
  unsigned frames;
  /* Descriptors one connection may hold at once (--max-conns is capped by
   * RLIMIT_NOFILE divided by this). */
  unsigned fds_per_conn;
  /* Connections share state: the mode runs on one worker thread. */
  int one_worker;
  /* The mode reads the connection itself (forward: the relay does): the
   * server starts no reading and sets no drain callback, so bytes wait in
   * the kernel until the mode takes them; piece and data are never
   * called. */
  int owns_stream;
  /* Options that only this mode takes, ended by one with name NULL; given
   * with another mode, they are an error. May be NULL. */
  const struct mode_option *options;
  /* Called before the options are parsed: drops what an earlier run of
   * main() left (a repeatable option appends; the CLI fuzzer runs main()
   * many times). May be NULL. */
  void (*reset_options)(void);
  /* Once, before anything listens (files: open the root). Returns 0, or
   * prints one line and returns -1. May be NULL. */
  int (*setup)(const struct server_config *cfg);
  void (*teardown)(void);
  /* A connection was accepted and is ready (may send at once). */
  void (*open)(struct conn *c);
  /* One piece of a decoded frame (framed modes). Bytes are valid only
   * during the call. */
  void (*piece)(struct conn *c, const sk_frame_piece *p);
  /* Raw bytes (modes with frames == 0). */
  void (*data)(struct conn *c, const unsigned char *buf, size_t len);
  /* The server is stopping: finish what is in flight, then call
   * conn_finish(). NULL = finish at the next frame boundary. */
  void (*stop)(struct conn *c);
  /* The connection is going away (any reason). Free mode state here. */
  void (*close)(struct conn *c);
  /* Bytes the mode moved on c so far, both ways (owns_stream modes): the
   * idle sweep counts a change as activity. May be NULL. */
  uint64_t (*progress)(struct conn *c);
  /* A datagram arrived on a UDP listener (modes with MODE_UDP). */
  void (*dgram)(struct udp_listener *u, const unsigned char *buf, size_t len,
                const sk_endpoint *from);
  /* A UDP listener is closing (the server stops): release what the mode
   * keeps for it (forward: its sessions). May be NULL. */
  void (*udp_close)(struct udp_listener *u);
};

/* 1 if the mode parses its own protocol (no --frame). */
static inline int mode_unframed(const struct mode *m) {
  return m->frames == 0;
}

/* ---- modes.c: the table ---- */

extern const struct mode *const modes[];
extern const size_t nmodes;

const struct mode *mode_find(const char *name);
/* "echo, discard, ...": the names in table order, the first followed by
 * first_note (e.g. " (default)", or ""). */
void mode_names(char *buf, size_t size, const char *first_note);
/* m's mode-only option named opt ("--root"), or NULL if m takes none. */
const struct mode_option *mode_option(const struct mode *m, const char *opt);
/* The names of the modes that take opt, as mode_names() writes them. */
void mode_names_taking(char *buf, size_t size, const char *opt);
/* "TCP, Unix, UDP": the transports of m other than TLS. */
void mode_transports(const struct mode *m, char *buf, size_t size);

extern const struct mode mode_echo;
extern const struct mode mode_discard;
extern const struct mode mode_chargen;
extern const struct mode mode_chat;
extern const struct mode mode_files;
extern const struct mode mode_sockperf;
extern const struct mode mode_forward;

#endif
