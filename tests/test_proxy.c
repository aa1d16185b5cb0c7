/* The PROXY protocol (src/lib/proxy.c): the parser on every valid and
 * malformed form, every prefix of a valid header, format -> parse round
 * trips, and the stream step that reads a header off a connection (one
 * write, byte by byte, 60 KiB of TLVs in bounded memory, then TLS, EOF,
 * garbage, close while waiting, bytes kept until the user reads).
 * SK_TEST_ASYNC: registered once per backend. */
#include "sk_test.h"
#include "tls_certs.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- allocation accounting (the test links with --wrap for these) ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

static size_t alloc_bytes; /* requested by the library since reset */
static int fail_mallocs;   /* the next this many malloc() calls fail */

void *__wrap_malloc(size_t n) {
  if (fail_mallocs > 0) {
    fail_mallocs--;
    return NULL;
  }
  alloc_bytes += n;
  return __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n) {
  alloc_bytes += k * n;
  return __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n) {
  alloc_bytes += n;
  return __real_realloc(p, n);
}

/* ---- the parser ---- */

#define S(x) x, sizeof(x) - 1
#define SIG  "\r\n\r\n\0\r\nQUIT\n"
#define V2_INET4                                                               \
  SIG "\x21\x11\x00\x0c"                                                       \
      "\x7f\x00\x00\x01"                                                       \
      "\x0a\x00\x00\x02"                                                       \
      "\x30\x39\x01\xbb"
#define V6_A  "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
#define V6_LO "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"

struct pcase {
  const char *name;
  const char *data;
  size_t len;
  ssize_t want; /* the return value */
  int version, local, socktype;
  const char *src, *dst; /* formatted, when not local */
  size_t length;         /* h->length when it differs from want */
};

static const struct pcase valid[] = {
    {"v1 tcp4", S("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), 47, 1,
     0, SOCK_STREAM, "192.168.0.1:56324", "192.168.0.11:443", 0},
    {"v1 tcp6", S("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"), 36, 1, 0,
     SOCK_STREAM, "[2001:db8::1]:65535", "[::1]:0", 0},
    {"v1 tcp6 mapped", S("PROXY TCP6 ::ffff:10.1.2.3 ::1 7 8\r\n"), 36, 1, 0,
     SOCK_STREAM, "10.1.2.3:7", "[::1]:8", 0},
    {"v1 tcp6 longest",
     S("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
     104, 1, 0, SOCK_STREAM, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
     "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", 0},
    {"v1 unknown", S("PROXY UNKNOWN\r\n"), 15, 1, 1, 0, NULL, NULL, 0},
    {"v1 unknown with addresses", S("PROXY UNKNOWN ffff:: ::1 1 2\r\n"), 30, 1,
     1, 0, NULL, NULL, 0},
    {"v1 unknown 107 bytes",
     S("PROXY UNKNOWN "
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxxxxxxxxxxxx\r\n"),
     107, 1, 1, 0, NULL, NULL, 0},
    {"v2 inet", S(V2_INET4), 28, 2, 0, SOCK_STREAM, "127.0.0.1:12345",
     "10.0.0.2:443", 0},
    {"v2 inet dgram",
     S(SIG "\x21\x12\x00\x0c"
           "\x7f\x00\x00\x01"
           "\x0a\x00\x00\x02"
           "\x30\x39\x01\xbb"),
     28, 2, 0, SOCK_DGRAM, "127.0.0.1:12345", "10.0.0.2:443", 0},
    {"v2 inet6", S(SIG "\x21\x21\x00\x24" V6_A V6_LO "\x04\xd2\x00\x50"), 52, 2,
     0, SOCK_STREAM, "[2001:db8::1]:1234", "[::1]:80", 0},
    {"v2 inet with tlvs",
     S(SIG "\x21\x11\x00\x13"
           "\x7f\x00\x00\x01"
           "\x0a\x00\x00\x02"
           "\x30\x39\x01\xbb"
           "\x04\x00\x04"
           "abcd"),
     35, 2, 0, SOCK_STREAM, "127.0.0.1:12345", "10.0.0.2:443", 0},
    {"v2 local", S(SIG "\x20\x00\x00\x00"), 16, 2, 1, 0, NULL, NULL, 0},
    {"v2 local ignores family", S(SIG "\x20\xff\x00\x03xyz"), 19, 2, 1, 0, NULL,
     NULL, 0},
    {"v2 proxy unspec", S(SIG "\x21\x00\x00\x00"), 16, 2, 1, 0, NULL, NULL, 0},
};

static const struct pcase malformed[] = {
    {"blank line then text", S("\r\nGET"), -EPROTO, 0, 0, 0, NULL, NULL, 0},
    {"http", S("GET / HTTP/1.1\r\n"), -EPROTO, 0, 0, 0, NULL, NULL, 0},
    {"leading garbage", S("xPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), -EPROTO, 0, 0,
     0, NULL, NULL, 0},
    {"lower case", S("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), -EPROTO, 0, 0, 0,
     NULL, NULL, 0},
    {"v1 LF only", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), -EPROTO, 0, 0, 0,
     NULL, NULL, 0},
    {"v1 CR not LF", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx"), -EPROTO, 0, 0, 0,
     NULL, NULL, 0},
    {"v1 108 bytes",
     S("PROXY UNKNOWN "
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxxxxxxxxxxxxx\r\n"),
     -EPROTO, 0, 0, 0, NULL, NULL, 0},
    {"v1 no CRLF in 107",
     S("PROXY UNKNOWN "
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxxxxxxxxxxxxxx"),
     -EPROTO, 0, 0, 0, NULL, NULL, 0},
    {"v1 bad proto", S("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), -EPROTO, 0, 0, 0,
     NULL, NULL, 0},
    {"v1 bad address", S("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), -EPROTO, 0, 0,
     0, NULL, NULL, 0},
    {"v1 v6 address in tcp4", S("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), -EPROTO, 0,
     0, 0, NULL, NULL, 0},
    {"v1 v4 address in tcp6", S("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), -EPROTO, 0,
     0, 0, NULL, NULL, 0},
    {"v1 port 65536", S("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), -EPROTO, 0,
     0, 0, NULL, NULL, 0},
    {"v1 port leading zero", S("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), -EPROTO,
     0, 0, 0, NULL, NULL, 0},
    {"v1 port sign", S("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), -EPROTO, 0, 0, 0,
     NULL, NULL, 0},
    {"v1 double space", S("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), -EPROTO, 0, 0,
     0, NULL, NULL, 0},
    {"v1 trailing space", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), -EPROTO, 0,
     0, 0, NULL, NULL, 0},
    {"v1 too many", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), -EPROTO, 0, 0, 0,
     NULL, NULL, 0},
    {"v1 too few", S("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), -EPROTO, 0, 0, 0,
     NULL, NULL, 0},
    {"v1 no addresses", S("PROXY TCP4\r\n"), -EPROTO, 0, 0, 0, NULL, NULL, 0},
    {"v2 bad signature", S("\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c"), -EPROTO, 0,
     0, 0, NULL, NULL, 0},
    {"v2 version 1", S(SIG "\x11\x11\x00\x0c"), -EPROTO, 0, 0, 0, NULL, NULL,
     0},
    {"v2 version 3", S(SIG "\x31\x11\x00\x0c"), -EPROTO, 0, 0, 0, NULL, NULL,
     0},
    {"v2 command 3", S(SIG "\x23\x11\x00\x0c"), -EPROTO, 0, 0, 0, NULL, NULL,
     0},
    {"v2 family 4", S(SIG "\x21\x41\x00\x0c"), -EPROTO, 0, 0, 0, NULL, NULL, 0},
    {"v2 transport 3", S(SIG "\x21\x13\x00\x0c"), -EPROTO, 0, 0, 0, NULL, NULL,
     0},
    {"v2 inet length 11", S(SIG "\x21\x11\x00\x0b"), -EPROTO, 0, 0, 0, NULL,
     NULL, 0},
    {"v2 inet6 length 35", S(SIG "\x21\x21\x00\x23"), -EPROTO, 0, 0, 0, NULL,
     NULL, 0},
    {"v2 unix length 215", S(SIG "\x21\x31\x00\xd7"), -EPROTO, 0, 0, 0, NULL,
     NULL, 0},
    {"v2 cut short is not an error", S(SIG "\x21\x11\x00\x0c\x7f"), 0, 0, 0, 0,
     NULL, NULL, 0},
    {"v1 prefix", S("PROX"), 0, 0, 0, 0, NULL, NULL, 0},
};

static void check_case(const struct pcase *c) {
  sk_proxy_header h;
  char text[SK_ENDPOINT_STRLEN];
  ssize_t rc = sk_proxy_parse(c->data, c->len, &h);
  if (rc != c->want)
    fail_msg("%s: returned %zd, want %zd", c->name, rc, c->want);
  if (rc <= 0)
    return;
  assert_int_equal(h.version, c->version);
  assert_int_equal(h.local, c->local);
  assert_int_equal(h.socktype, c->socktype);
  assert_int_equal(h.length, c->length ? c->length : (size_t)c->want);
  if (c->local) {
    assert_int_equal(h.src.len, 0);
    assert_int_equal(h.dst.len, 0);
    return;
  }
  assert_true(sk_endpoint_format(&h.src, text, sizeof(text)) > 0);
  if (strcmp(text, c->src) != 0)
    fail_msg("%s: src %s, want %s", c->name, text, c->src);
  assert_true(sk_endpoint_format(&h.dst, text, sizeof(text)) > 0);
  if (strcmp(text, c->dst) != 0)
    fail_msg("%s: dst %s, want %s", c->name, text, c->dst);
}

static void test_parse_valid(void **state) {
  SK__UNUSED(state);
  for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
    check_case(&valid[i]);
}

static void test_parse_malformed(void **state) {
  SK__UNUSED(state);
  for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
    check_case(&malformed[i]);
}

/* Every proper prefix of a valid header asks for more (except a v2 header
 * whose address block is in but not all its TLVs: that returns what it
 * has), and the header followed by more bytes still returns its length. */
static void test_parse_prefixes(void **state) {
  char buf[256];
  sk_proxy_header h;
  SK__UNUSED(state);
  for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
    const struct pcase *c = &valid[i];
    for (size_t n = 0; n < c->len; n++) {
      ssize_t rc = sk_proxy_parse(c->data, n, &h);
      if (rc < 0 || (rc > 0 && (c->version != 2 || (size_t)rc != n)))
        fail_msg("%s: prefix of %zu returned %zd", c->name, n, rc);
    }
    memcpy(buf, c->data, c->len);
    memcpy(buf + c->len, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(sk_proxy_parse(buf, c->len + 16, &h), c->want);
  }
  /* A plain client fails at its first byte. */
  assert_int_equal(sk_proxy_parse("G", 1, &h), -EPROTO);
  assert_int_equal(sk_proxy_parse("\x16\x03\x01", 3, &h), -EPROTO);
  assert_int_equal(sk_proxy_parse("PROXY TCP4 1.2.3.x", 18, &h), -EPROTO);
}

/* The parser never reads past len: each prefix is copied to the end of an
 * exactly sized heap block (ASan catches a read beyond). */
static void test_parse_reads_only_len(void **state) {
  SK__UNUSED(state);
  for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
    for (size_t n = 1; n <= valid[i].len; n++) {
      sk_proxy_header h;
      char *p = malloc(n);
      assert_non_null(p);
      memcpy(p, valid[i].data, n);
      assert_true(sk_proxy_parse(p, n, &h) >= 0);
      free(p);
    }
  }
}

/* A v2 Unix header from two 108-byte fields. */
static size_t v2_unix(unsigned char *out, const char *src, size_t sn,
                      const char *dst, size_t dn) {
  memcpy(out, SIG "\x21\x31\x00\xd8", 16);
  memset(out + 16, 0, 216);
  memcpy(out + 16, src, sn);
  memcpy(out + 16 + 108, dst, dn);
  return 232;
}

/* Every family/transport byte: PROXY takes the specification's seven
 * (UNSPEC with UNSPEC, or INET, INET6, UNIX with STREAM or DGRAM) and
 * rejects the rest; LOCAL ignores the byte. */
static void test_parse_v2_families(void **state) {
  static const unsigned ok[] = {0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
  unsigned char p[16 + 216];
  sk_proxy_header h;
  SK__UNUSED(state);
  for (unsigned cmd = 0x20; cmd <= 0x21; cmd++)
    for (unsigned fam = 0; fam < 256; fam++) {
      int want = cmd == 0x20;
      for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        want |= fam == ok[i];
      memset(p, 0, sizeof(p));
      memcpy(p, SIG, 12);
      p[12] = (unsigned char)cmd;
      p[13] = (unsigned char)fam;
      p[15] = 216; /* room for any address block (Unix is the largest) */
      ssize_t rc = sk_proxy_parse(p, sizeof(p), &h);
      if (rc != (want ? (ssize_t)sizeof(p) : -EPROTO))
        fail_msg("ver_cmd 0x%02x fam 0x%02x: returned %zd", cmd, fam, rc);
    }
}

static void test_parse_unix(void **state) {
  unsigned char buf[232], path[108];
  char text[SK_ENDPOINT_STRLEN];
  sk_proxy_header h;
  SK__UNUSED(state);
  /* A path, and an unnamed client (all NULs). */
  v2_unix(buf, "", 0, "/run/app.sock", 13);
  assert_int_equal(sk_proxy_parse(buf, sizeof(buf), &h), 232);
  assert_int_equal(h.local, 0);
  assert_int_equal(sk_endpoint_family(&h.src), AF_UNIX);
  assert_int_equal(sk_endpoint_format(&h.src, text, sizeof(text)), 5);
  assert_string_equal(text, "unix:");
  sk_endpoint_format(&h.dst, text, sizeof(text));
  assert_string_equal(text, "unix:/run/app.sock");
  /* An abstract name. */
  v2_unix(buf, "\0name", 5, "x", 1);
  assert_int_equal(sk_proxy_parse(buf, sizeof(buf), &h), 232);
  sk_endpoint_format(&h.src, text, sizeof(text));
  assert_string_equal(text, "unix:@name");
  /* A path that fills the field without its NUL. */
  memset(path, 'a', sizeof(path));
  v2_unix(buf, (const char *)path, sizeof(path), "x", 1);
  assert_int_equal(sk_proxy_parse(buf, sizeof(buf), &h), -EPROTO);
  /* 107 bytes and the NUL fit. */
  v2_unix(buf, (const char *)path, sizeof(path) - 1, "x", 1);
  assert_int_equal(sk_proxy_parse(buf, sizeof(buf), &h), 232);
}

/* ---- the formatter ---- */

static void round_trip(int version, const char *src, const char *dst,
                       int want_local) {
  unsigned char buf[SK_PROXY_MAX_FORMAT];
  sk_endpoint s, d;
  sk_proxy_header h;
  ssize_t n;
  SK_ASSERT_OK(sk_endpoint_parse(&s, src));
  SK_ASSERT_OK(sk_endpoint_parse(&d, dst));
  n = sk_proxy_format(buf, sizeof(buf), version, &s, &d);
  assert_true(n > 0);
  assert_int_equal(sk_proxy_parse(buf, (size_t)n, &h), n);
  assert_int_equal(h.version, version);
  assert_int_equal(h.length, (size_t)n);
  assert_int_equal(h.local, want_local);
  if (want_local)
    return;
  assert_int_equal(h.socktype, SOCK_STREAM);
  assert_true(sk_endpoint_equal(&h.src, &s));
  assert_true(sk_endpoint_equal(&h.dst, &d));
  /* Too small a buffer. */
  assert_int_equal(sk_proxy_format(buf, (size_t)n - 1, version, &s, &d),
                   -ENOSPC);
}

static void test_format_round_trip(void **state) {
  SK__UNUSED(state);
  for (int v = 1; v <= 2; v++) {
    round_trip(v, "192.0.2.7:40000", "10.0.0.1:443", 0);
    round_trip(v, "[2001:db8::7]:1", "[::1]:65535", 0);
    round_trip(v, "[::ffff:192.0.2.7]:9", "10.0.0.1:0", 0); /* normalised */
    round_trip(v, "192.0.2.7:1", "[::1]:2", 0); /* mixed: IPv4 mapped */
  }
  round_trip(1, "unix:/tmp/a", "unix:/tmp/b", 1); /* v1 has no Unix */
  round_trip(2, "unix:/tmp/a", "unix:/run/some/longer/path.sock", 0);
  round_trip(2, "unix:@abstract", "unix:/tmp/b", 0);
}

static void test_format_local_and_errors(void **state) {
  unsigned char buf[SK_PROXY_MAX_FORMAT];
  sk_endpoint d;
  sk_proxy_header h;
  SK__UNUSED(state);
  SK_ASSERT_OK(sk_endpoint_parse(&d, "10.0.0.1:443"));
  assert_int_equal(sk_proxy_format(buf, sizeof(buf), 1, NULL, &d), 15);
  assert_memory_equal(buf, "PROXY UNKNOWN\r\n", 15);
  assert_int_equal(sk_proxy_format(buf, sizeof(buf), 2, NULL, NULL), 16);
  assert_int_equal(sk_proxy_parse(buf, 16, &h), 16);
  assert_int_equal(h.local, 1);
  assert_int_equal(buf[12], 0x20); /* v2 LOCAL */
  assert_int_equal(sk_proxy_format(buf, sizeof(buf), 3, NULL, NULL), -EINVAL);
  assert_int_equal(sk_proxy_format(buf, sizeof(buf), 0, NULL, NULL), -EINVAL);
  assert_int_equal(sk_proxy_format(buf, 15, 2, NULL, NULL), -ENOSPC);
}

/* An IPv4 client reaching an IPv6 listener (or the reverse) is written as
 * IPv6 with the IPv4 side mapped, not as UNKNOWN/LOCAL (which an upstream
 * takes for a health check); the parser reads the mapped side back as
 * IPv4. */
static void test_format_mixed_families(void **state) {
  unsigned char buf[SK_PROXY_MAX_FORMAT];
  static const char v1[] =
      "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1111 443\r\n";
  sk_endpoint s, d, want;
  sk_proxy_header h;
  ssize_t n;
  SK__UNUSED(state);
  SK_ASSERT_OK(sk_endpoint_parse(&s, "192.0.2.1:1111"));
  SK_ASSERT_OK(sk_endpoint_parse(&d, "[2001:db8::2]:443"));
  n = sk_proxy_format(buf, sizeof(buf), 1, &s, &d);
  assert_int_equal(n, (ssize_t)strlen(v1));
  assert_memory_equal(buf, v1, strlen(v1));
  n = sk_proxy_format(buf, sizeof(buf), 2, &d, &s); /* the reverse */
  assert_int_equal(n, 16 + 36);
  assert_int_equal(buf[13], 0x21); /* INET6, STREAM */
  assert_int_equal(sk_proxy_parse(buf, (size_t)n, &h), n);
  assert_int_equal(h.local, 0);
  assert_true(sk_endpoint_equal(&h.src, &d));
  SK_ASSERT_OK(sk_endpoint_parse(&want, "192.0.2.1:1111"));
  assert_true(sk_endpoint_equal(&h.dst, &want));
}

/* ---- the stream step ---- */

static sk_loop loop;
static sk_stream b; /* reads the header */
static int peer;    /* the raw other end */

static struct {
  int calls, status;
  sk_proxy_header h;
  int recv_in_cb; /* start receiving from the callback */
  char got[128];
  size_t got_len;
  int eof;
} rd;

static void closed_cb(sk_handle *h) {
  SK__UNUSED(h);
}

static void rd_recv(sk_stream *s, ssize_t n, const void *buf) {
  if (n < 0) {
    rd.eof = 1;
    sk_close(&s->h, closed_cb);
    return;
  }
  assert_true(rd.got_len + (size_t)n <= sizeof(rd.got));
  memcpy(rd.got + rd.got_len, buf, (size_t)n);
  rd.got_len += (size_t)n;
}

static void rd_cb(sk_stream *s, int status, const sk_proxy_header *h) {
  rd.calls++;
  rd.status = status;
  if (status != 0) {
    assert_null(h);
    sk_close(&s->h, closed_cb);
    return;
  }
  rd.h = *h;
  if (rd.recv_in_cb)
    SK_ASSERT_OK(sk_stream_recv_start(s, rd_recv));
}

static void pair_open(void) {
  int sv[2];
  memset(&rd, 0, sizeof(rd));
  rd.recv_in_cb = 1;
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_stream_init(&loop, &b));
  SK_ASSERT_OK(sk_stream_open(&b, sv[1]));
  peer = sv[0];
}

static void pair_done(void) {
  if (peer >= 0)
    close(peer);
  peer = -1;
  if (!sk_is_closing(&b.h))
    sk_close(&b.h, closed_cb);
  sk_test_run(&loop, 10000);
  sk_test_loop_done(&loop);
}

static void put(const void *p, size_t n) {
  assert_int_equal(write(peer, p, n), (ssize_t)n);
}

/* The peer sends, then ends its side: the reader sees the payload, then
 * EOF, and closes. */
static void run_to_eof(void) {
  shutdown(peer, SHUT_WR);
  sk_test_run(&loop, 10000);
}

static void test_stream_header_and_payload(void **state) {
  static const char v1[] = "PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nhello";
  SK__UNUSED(state);
  for (int v = 1; v <= 2; v++) {
    pair_open();
    SK_ASSERT_OK(sk_stream_proxy_accept(&b, rd_cb));
    if (v == 1) {
      put(v1, sizeof(v1) - 1);
    } else {
      put(V2_INET4, 28);
      put("hello", 5);
    }
    run_to_eof();
    assert_int_equal(rd.calls, 1);
    assert_int_equal(rd.status, 0);
    assert_int_equal(rd.h.version, v);
    assert_int_equal(sk_endpoint_port(&rd.h.src), v == 1 ? 1000 : 12345);
    assert_int_equal(rd.got_len, 5);
    assert_memory_equal(rd.got, "hello", 5);
    assert_int_equal(rd.eof, 1);
    pair_done();
  }
}

/* Each byte is its own read: the loop runs once per byte written. */
static void test_stream_trickle(void **state) {
  static const char hdr[] = "PROXY TCP6 2001:db8::5 ::1 4242 80\r\n";
  SK__UNUSED(state);
  pair_open();
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, rd_cb));
  for (size_t i = 0; i < sizeof(hdr) - 1; i++) {
    assert_int_equal(rd.calls, 0);
    put(hdr + i, 1);
    sk_loop_run(&loop, SK_RUN_ONCE);
  }
  assert_int_equal(rd.calls, 1);
  assert_int_equal(rd.status, 0);
  assert_int_equal(sk_endpoint_port(&rd.h.src), 4242);
  put("after", 5);
  run_to_eof();
  assert_int_equal(rd.got_len, 5);
  assert_memory_equal(rd.got, "after", 5);
  pair_done();
}

/* 60 KiB of TLVs go through without the library allocating more than the
 * reader's fixed state (under 4 KiB in all), and the bytes after them
 * are intact. */
static void test_stream_big_tlvs_bounded(void **state) {
  size_t tlv = 60 * 1024, total = 28 + tlv;
  unsigned char *p = calloc(1, total);
  SK__UNUSED(state);
  assert_non_null(p);
  memcpy(p, V2_INET4, 28);
  p[14] = (unsigned char)((12 + tlv) >> 8);
  p[15] = (unsigned char)((12 + tlv) & 0xFF);
  sk_test_fill_random(p + 28, tlv, 7);
  pair_open();
  int sz = 256 * 1024;
  setsockopt(peer, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
  alloc_bytes = 0;
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, rd_cb));
  for (size_t off = 0; off < total;) { /* in pieces, as they come */
    size_t k = total - off < 7000 ? total - off : 7000;
    put(p + off, k);
    off += k;
    sk_loop_run(&loop, SK_RUN_ONCE);
  }
  put("tail!", 5);
  run_to_eof();
  assert_int_equal(rd.calls, 1);
  assert_int_equal(rd.status, 0);
  assert_int_equal(rd.h.length, total);
  assert_int_equal(rd.got_len, 5);
  assert_memory_equal(rd.got, "tail!", 5);
  if (alloc_bytes >= 4096) /* fixed state, nothing per TLV byte */
    fail_msg("allocated %zu bytes", alloc_bytes);
  free(p);
  pair_done();
}

static void test_stream_eof_mid_header(void **state) {
  SK__UNUSED(state);
  pair_open();
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, rd_cb));
  put("PROXY TCP4 1.2", 14);
  run_to_eof();
  assert_int_equal(rd.calls, 1);
  assert_int_equal(rd.status, SK_EOF);
  pair_done();
}

/* Garbage fails at once, without waiting for more bytes or the end. */
static void test_stream_garbage(void **state) {
  SK__UNUSED(state);
  pair_open();
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, rd_cb));
  put("GET / HTTP/1.1\r\n", 16);
  while (rd.calls == 0)
    sk_loop_run(&loop, SK_RUN_ONCE); /* the peer stays open */
  assert_int_equal(rd.status, -EPROTO);
  pair_done();
}

static void never_cb(sk_stream *s, int status, const sk_proxy_header *h) {
  SK__UNUSED(s);
  SK__UNUSED(h);
  fail_msg("callback after close (status %d)", status);
}

static void test_stream_close_while_waiting(void **state) {
  SK__UNUSED(state);
  pair_open();
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, never_cb));
  put("\r\n\r\n\0\r\n", 7);
  sk_loop_run(&loop, SK_RUN_ONCE);
  sk_close(&b.h, closed_cb);
  pair_done(); /* ASan reports the state if it leaked */
}

/* The callback does not read: the bytes after the header wait until the
 * user starts receiving, and come before later ones. */
static void start_later(sk_timer *t) {
  SK_ASSERT_OK(sk_stream_recv_start(&b, rd_recv));
  put(" world", 6);
  shutdown(peer, SHUT_WR);
  sk_close(&t->h, NULL);
}

static void test_stream_bytes_kept_until_recv(void **state) {
  sk_timer t;
  SK__UNUSED(state);
  pair_open();
  rd.recv_in_cb = 0;
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, rd_cb));
  put("PROXY UNKNOWN\r\nhello", 20);
  while (rd.calls == 0)
    sk_loop_run(&loop, SK_RUN_ONCE);
  assert_int_equal(rd.status, 0);
  assert_int_equal(rd.h.local, 1);
  SK_ASSERT_OK(sk_timer_init(&loop, &t));
  SK_ASSERT_OK(sk_timer_start(&t, start_later, 1, 0));
  sk_test_run(&loop, 10000);
  assert_int_equal(rd.got_len, 11);
  assert_memory_equal(rd.got, "hello world", 11);
  assert_int_equal(rd.eof, 1);
  pair_done();
}

static void test_stream_accept_refused(void **state) {
  sk_stream u;
  SK__UNUSED(state);
  pair_open();
  SK_ASSERT_OK(sk_stream_recv_start(&b, rd_recv));
  assert_int_equal(sk_stream_proxy_accept(&b, rd_cb), -EBUSY);
  SK_ASSERT_OK(sk_stream_recv_stop(&b));
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, rd_cb));
  assert_int_equal(sk_stream_proxy_accept(&b, rd_cb), -EBUSY);
  assert_int_equal(sk_stream_proxy_accept(&b, NULL), -EINVAL);
  SK_ASSERT_OK(sk_stream_init(&loop, &u));
  assert_int_equal(sk_stream_proxy_accept(&u, rd_cb), -ENOTCONN);
  sk_close(&u.h, closed_cb);
  pair_done();
}

/* Out of memory for the bytes after the header (the user does not read
 * yet): the stream fails, never skips them (they used to be dropped, and
 * the reader got the next bytes as if they had followed the header). */
static void fail_alloc_cb(sk_stream *s, int status, const sk_proxy_header *h) {
  rd_cb(s, status, h);
  fail_mallocs = 1; /* the hold's, right after this callback */
}

static void err_recv(sk_stream *s, ssize_t n, const void *buf) {
  SK__UNUSED(buf);
  if (n > 0) {
    rd.got_len += (size_t)n;
    return;
  }
  rd.status = (int)n;
  sk_close(&s->h, closed_cb);
}

static void test_stream_hold_no_memory(void **state) {
  SK__UNUSED(state);
  pair_open();
  rd.recv_in_cb = 0;
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, fail_alloc_cb));
  put("PROXY UNKNOWN\r\nhello", 20);
  while (rd.calls == 0)
    sk_loop_run(&loop, SK_RUN_ONCE);
  fail_mallocs = 0;
  assert_int_equal(rd.status, 0);
  assert_int_equal(sk_stream_send(&b, "x", 1, NULL, NULL), -ENOMEM);
  shutdown(peer, SHUT_WR);
  SK_ASSERT_OK(sk_stream_recv_start(&b, err_recv));
  sk_test_run(&loop, 10000);
  assert_int_equal(rd.got_len, 0); /* nothing after a gap */
  assert_int_equal(rd.status, -ENOMEM);
  pair_done();
}

/* ---- a relay after the header: the bytes that came with it go first,
 * and the relay still splices ---- */

static sk_stream c; /* the relay's other stream */
static int c_peer;  /* its raw other end */
static sk_relay rel;
static int rel_done, rel_status, relay_in_cb;

static void rel_cb(sk_relay *r, int status) {
  SK__UNUSED(r);
  rel_done = 1;
  rel_status = status;
  sk_close(&b.h, closed_cb);
  sk_close(&c.h, closed_cb);
}

static void rel_proxy_cb(sk_stream *s, int status, const sk_proxy_header *h) {
  SK__UNUSED(h);
  rd.calls++;
  rd.status = status;
  if (relay_in_cb)
    SK_ASSERT_OK(sk_relay_start(&rel, s, &c, NULL, rel_cb));
}

static void relay_after_header(int in_cb) {
  static const char hdr[] = "PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nHELLO";
  int sv[2];
  char got[32];
  size_t got_len = 0;
  pair_open();
  rel_done = rel_status = 0;
  relay_in_cb = in_cb;
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  SK_ASSERT_OK(sk_stream_init(&loop, &c));
  SK_ASSERT_OK(sk_stream_open(&c, sv[1]));
  c_peer = sv[0];
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, rel_proxy_cb));
  put(hdr, sizeof(hdr) - 1); /* one read: the header and HELLO */
  while (rd.calls == 0)
    sk_loop_run(&loop, SK_RUN_ONCE);
  assert_int_equal(rd.status, 0);
  if (!in_cb) {
    assert_ptr_not_equal(b.tp, &sk__transport_plain); /* HELLO is held */
    SK_ASSERT_OK(sk_relay_start(&rel, &b, &c, NULL, rel_cb));
  }
  assert_int_equal(rel.spliced, 1);
  assert_ptr_equal(b.tp, &sk__transport_plain);
  put("WORLD", 5);
  shutdown(peer, SHUT_WR);
  shutdown(c_peer, SHUT_WR);
  sk_test_run(&loop, 10000);
  assert_int_equal(rel_done, 1);
  assert_int_equal(rel_status, 0);
  assert_int_equal(rel.a_to_b.bytes, 10);
  for (;;) {
    ssize_t n = read(c_peer, got + got_len, sizeof(got) - got_len);
    assert_true(n >= 0);
    if (n == 0)
      break;
    got_len += (size_t)n;
  }
  assert_int_equal(got_len, 10);
  assert_memory_equal(got, "HELLOWORLD", 10);
  close(c_peer);
  pair_done();
}

static void test_stream_relay_in_cb(void **state) {
  SK__UNUSED(state);
  relay_after_header(1);
}

static void test_stream_relay_later(void **state) {
  SK__UNUSED(state);
  relay_after_header(0);
}

/* ---- then TLS on the same stream ---- */

static struct pair good;
static sk_stream a; /* the TLS client, writing the header first */
static struct {
  int hs_a, hs_b, echoed;
  sk_tls_ctx *sctx;
} tl;

static void tl_close_all(void) {
  if (!sk_is_closing(&a.h))
    sk_close(&a.h, closed_cb);
  if (!sk_is_closing(&b.h))
    sk_close(&b.h, closed_cb);
}

static void tl_b_echo(sk_stream *s, ssize_t n, const void *buf) {
  if (n > 0)
    SK_ASSERT_OK(sk_stream_send(s, buf, (size_t)n, NULL, NULL));
}

static void tl_b_hs(sk_stream *s, int status) {
  tl.hs_b = status == 0 ? 1 : status;
  if (status != 0)
    tl_close_all();
  else
    SK_ASSERT_OK(sk_stream_recv_start(s, tl_b_echo));
}

static void tl_a_recv(sk_stream *s, ssize_t n, const void *buf) {
  SK__UNUSED(s);
  tl.echoed = n == 4 && memcmp(buf, "ping", 4) == 0;
  tl_close_all();
}

static void tl_a_hs(sk_stream *s, int status) {
  tl.hs_a = status == 0 ? 1 : status;
  if (status != 0) {
    tl_close_all();
    return;
  }
  SK_ASSERT_OK(sk_stream_recv_start(s, tl_a_recv));
  SK_ASSERT_OK(sk_stream_send(s, "ping", 4, NULL, NULL));
}

static void tl_proxy_cb(sk_stream *s, int status, const sk_proxy_header *h) {
  rd.calls++;
  rd.status = status;
  if (status != 0) {
    tl_close_all();
    return;
  }
  rd.h = *h;
  SK_ASSERT_OK(sk_stream_tls_start(s, tl.sctx, NULL, tl_b_hs));
}

static void test_stream_then_tls(void **state) {
  int sv[2];
  sk_tls_ctx *cctx;
  sk_tls_options o = {0};
  SK__UNUSED(state);
  (void)cli_field;
  if (!tls_built())
    skip();
  if (certs_begin("/tmp/sk-px-XXXXXX"))
    make_leaf(&good, "localhost", "localhost", "ca",
              "subjectAltName=DNS:localhost\n"
              "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
              2);
  memset(&rd, 0, sizeof(rd));
  memset(&tl, 0, sizeof(tl));
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  SK_ASSERT_OK(sk_loop_init(&loop));
  SK_ASSERT_OK(sk_stream_init(&loop, &a));
  SK_ASSERT_OK(sk_stream_init(&loop, &b));
  SK_ASSERT_OK(sk_stream_open(&a, sv[0]));
  SK_ASSERT_OK(sk_stream_open(&b, sv[1]));
  o.ca_file = ca_pem;
  cctx = ctx_new(&o);
  tl.sctx = server_ctx(&good);
  SK_ASSERT_OK(sk_stream_proxy_accept(&b, tl_proxy_cb));
  /* The header and the ClientHello reach the kernel before b reads: they
   * arrive in one read. */
  SK_ASSERT_OK(sk_stream_send(&a, V2_INET4, 28, NULL, NULL));
  SK_ASSERT_OK(sk_stream_tls_start(&a, cctx, "localhost", tl_a_hs));
  sk_test_run(&loop, 20000);
  assert_int_equal(rd.calls, 1);
  assert_int_equal(rd.status, 0);
  assert_int_equal(sk_endpoint_port(&rd.h.src), 12345);
  assert_int_equal(tl.hs_a, 1);
  assert_int_equal(tl.hs_b, 1);
  assert_int_equal(tl.echoed, 1);
  sk_tls_ctx_free(cctx);
  sk_tls_ctx_free(tl.sctx);
  tl_close_all();
  sk_test_run(&loop, 10000);
  sk_test_loop_done(&loop);
}

SK_TEST_MAIN(cmocka_unit_test(test_parse_valid),
             cmocka_unit_test(test_parse_malformed),
             cmocka_unit_test(test_parse_prefixes),
             cmocka_unit_test(test_parse_reads_only_len),
             cmocka_unit_test(test_parse_unix),
             cmocka_unit_test(test_parse_v2_families),
             cmocka_unit_test(test_format_round_trip),
             cmocka_unit_test(test_format_local_and_errors),
             cmocka_unit_test(test_format_mixed_families),
             cmocka_unit_test(test_stream_header_and_payload),
             cmocka_unit_test(test_stream_trickle),
             cmocka_unit_test(test_stream_big_tlvs_bounded),
             cmocka_unit_test(test_stream_eof_mid_header),
             cmocka_unit_test(test_stream_garbage),
             cmocka_unit_test(test_stream_close_while_waiting),
             cmocka_unit_test(test_stream_bytes_kept_until_recv),
             cmocka_unit_test(test_stream_accept_refused),
             cmocka_unit_test(test_stream_hold_no_memory),
             cmocka_unit_test(test_stream_relay_in_cb),
             cmocka_unit_test(test_stream_relay_later),
             cmocka_unit_test(test_stream_then_tls))
