/* Tests for endpoints (src/lib/endpoint.c): every text form, good and bad,
 * formatting, round trips, normalisation, Unix names and resolution. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sk_test.h"

#define SUN_OFF      offsetof(struct sockaddr_un, sun_path)
#define SUN_MAX      sizeof(((struct sockaddr_un *)0)->sun_path)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct bad_case {
  const char *text;
  int err;
};

/* Index of the loopback interface; the scope tests are skipped on a system
 * without one rather than failing for a reason unrelated to sockit. */
static unsigned lo_index(void) {
  unsigned idx = if_nametoindex("lo");
  if (idx == 0)
    skip();
  return idx;
}

/* Builds a string of n copies of c after a prefix, in buf. */
static const char *repeat(char *buf, size_t buflen, const char *prefix, char c,
                          size_t n) {
  size_t p = strlen(prefix);
  assert_true(p + n < buflen);
  memcpy(buf, prefix, p);
  memset(buf + p, c, n);
  buf[p + n] = '\0';
  return buf;
}

static void expect_parse_error(const struct bad_case *cases, size_t n) {
  for (size_t i = 0; i < n; i++) {
    sk_endpoint ep;
    int rc = sk_endpoint_parse(&ep, cases[i].text);
    if (rc != cases[i].err)
      fail_msg("parse(\"%s\") returned %d (%s), expected %s", cases[i].text, rc,
               sk_err_name(rc), sk_err_name(cases[i].err));
    /* A failed parse leaves an empty endpoint, never half of one. */
    assert_int_equal(sk_endpoint_family(&ep), AF_UNSPEC);
    assert_int_equal(ep.len, 0);
  }
}

static void test_parse_ipv4(void **state) {
  (void)state;
  static const struct {
    const char *text;
    const char *addr;
    uint16_t port;
  } good[] = {
      {"127.0.0.1:8888", "127.0.0.1", 8888},
      {"0.0.0.0:0", "0.0.0.0", 0},
      {"255.255.255.255:65535", "255.255.255.255", 65535},
      {"10.1.2.3:00080", "10.1.2.3", 80},
      {"192.168.0.1:1", "192.168.0.1", 1},
  };
  for (size_t i = 0; i < ARRAY_LEN(good); i++) {
    sk_endpoint ep;
    struct in_addr want;
    SK_ASSERT_OK(sk_endpoint_parse(&ep, good[i].text));
    assert_int_equal(sk_endpoint_family(&ep), AF_INET);
    assert_int_equal(ep.len, sizeof(struct sockaddr_in));
    assert_int_equal(sk_endpoint_port(&ep), good[i].port);
    assert_int_equal(inet_pton(AF_INET, good[i].addr, &want), 1);
    assert_int_equal(ep.u.in4.sin_addr.s_addr, want.s_addr);
  }
}

static void test_parse_ipv6(void **state) {
  (void)state;
  static const struct {
    const char *text;
    const char *addr;
    uint16_t port;
  } good[] = {
      {"[::1]:8888", "::1", 8888},
      {"[::]:0", "::", 0},
      {"[2001:db8::1]:443", "2001:db8::1", 443},
      {"[2001:db8:0:0:1:0:0:1]:65535", "2001:db8::1:0:0:1", 65535},
      {"[fe80::1]:80", "fe80::1", 80},
      {"[::ffff:10.0.0.1]:5", "::ffff:10.0.0.1", 5},
  };
  for (size_t i = 0; i < ARRAY_LEN(good); i++) {
    sk_endpoint ep;
    struct in6_addr want;
    SK_ASSERT_OK(sk_endpoint_parse(&ep, good[i].text));
    /* Parsing keeps what was written; only reporting normalises. */
    assert_int_equal(sk_endpoint_family(&ep), AF_INET6);
    assert_int_equal(ep.len, sizeof(struct sockaddr_in6));
    assert_int_equal(sk_endpoint_port(&ep), good[i].port);
    assert_int_equal(ep.u.in6.sin6_scope_id, 0);
    assert_int_equal(inet_pton(AF_INET6, good[i].addr, &want), 1);
    assert_memory_equal(&ep.u.in6.sin6_addr, &want, sizeof(want));
  }
}

static void test_parse_ipv6_scope_name(void **state) {
  (void)state;
  unsigned lo = lo_index();
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "[fe80::1%lo]:80"));
  assert_int_equal(sk_endpoint_family(&ep), AF_INET6);
  assert_int_equal(ep.u.in6.sin6_scope_id, lo);
  assert_int_equal(sk_endpoint_port(&ep), 80);
}

static void test_parse_ipv6_scope_number(void **state) {
  (void)state;
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "[fe80::1%7]:80"));
  assert_int_equal(ep.u.in6.sin6_scope_id, 7);
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "[fe80::1%4294967295]:80"));
  assert_int_equal(ep.u.in6.sin6_scope_id, 4294967295u);
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "[fe80::1%0]:80"));
  assert_int_equal(ep.u.in6.sin6_scope_id, 0);
}

static void test_parse_ipv6_scope_errors(void **state) {
  (void)state;
  static const struct bad_case bad[] = {
      {"[fe80::1%]:80", SK_EBADADDR},
      {"[fe80::1%4294967296]:80", SK_EBADADDR},
      {"[fe80::1%99999999999999999999]:80", SK_EBADADDR},
      {"[%lo]:80", SK_EBADADDR},
      {"[fe80::1%sk-no-such-if]:80", -ENODEV},
      {"[fe80::1%an-interface-name-too-long-for-ifnamsiz]:80", -ENODEV},
      {"[fe80::1%lo%lo]:80", -ENODEV},
  };
  expect_parse_error(bad, ARRAY_LEN(bad));
}

static void test_parse_unix_path(void **state) {
  (void)state;
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "unix:/tmp/sockit.sock"));
  assert_int_equal(sk_endpoint_family(&ep), AF_UNIX);
  assert_string_equal(ep.u.un.sun_path, "/tmp/sockit.sock");
  assert_int_equal(ep.len, SUN_OFF + strlen("/tmp/sockit.sock") + 1);
  assert_int_equal(sk_endpoint_port(&ep), 0);

  /* A relative path and a path with colons are still just paths. */
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "unix:rel/a:b"));
  assert_string_equal(ep.u.un.sun_path, "rel/a:b");
}

static void test_parse_unix_abstract(void **state) {
  (void)state;
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "unix:@sockit-test"));
  assert_int_equal(sk_endpoint_family(&ep), AF_UNIX);
  assert_int_equal(ep.u.un.sun_path[0], '\0');
  assert_memory_equal(ep.u.un.sun_path + 1, "sockit-test", 11);
  assert_int_equal(ep.len, SUN_OFF + 1 + strlen("sockit-test"));
}

static void test_parse_unix_length_limits(void **state) {
  (void)state;
  char text[256];
  sk_endpoint ep;

  /* A path keeps one byte of sun_path for its NUL; an abstract name has no
   * NUL but spends one byte on the leading zero. */
  SK_ASSERT_OK(sk_endpoint_parse(
      &ep, repeat(text, sizeof(text), "unix:/", 'p', SUN_MAX - 2)));
  assert_int_equal(ep.len, SUN_OFF + SUN_MAX);
  assert_int_equal(sk_endpoint_parse(&ep, repeat(text, sizeof(text), "unix:/",
                                                 'p', SUN_MAX - 1)),
                   -ENAMETOOLONG);
  SK_ASSERT_OK(sk_endpoint_parse(
      &ep, repeat(text, sizeof(text), "unix:@", 'a', SUN_MAX - 1)));
  assert_int_equal(ep.len, sizeof(struct sockaddr_un));
  assert_int_equal(sk_endpoint_parse(
                       &ep, repeat(text, sizeof(text), "unix:@", 'a', SUN_MAX)),
                   -ENAMETOOLONG);
  assert_int_equal(sk_endpoint_family(&ep), AF_UNSPEC);
}

static void test_parse_unix_errors(void **state) {
  (void)state;
  static const struct bad_case bad[] = {
      {"unix:", SK_EBADADDR},
      {"unix:@", SK_EBADADDR},
  };
  expect_parse_error(bad, ARRAY_LEN(bad));
}

static void test_parse_bad_port(void **state) {
  (void)state;
  static const struct bad_case bad[] = {
      {"127.0.0.1", SK_EBADPORT},
      {"127.0.0.1:", SK_EBADPORT},
      {"127.0.0.1:65536", SK_EBADPORT},
      {"127.0.0.1:99999", SK_EBADPORT},
      {"127.0.0.1:18446744073709551617", SK_EBADPORT},
      {"127.0.0.1:+80", SK_EBADPORT},
      {"127.0.0.1:-1", SK_EBADPORT},
      {"127.0.0.1: 80", SK_EBADPORT},
      {"127.0.0.1:80 ", SK_EBADPORT},
      {"127.0.0.1:8a", SK_EBADPORT},
      {"127.0.0.1:0x50", SK_EBADPORT},
      {"127.0.0.1:http", SK_EBADPORT},
      {"[::1]", SK_EBADPORT},
      {"[::1]:", SK_EBADPORT},
      {"[::1]:+1", SK_EBADPORT},
      {"[::1]:65536", SK_EBADPORT},
  };
  expect_parse_error(bad, ARRAY_LEN(bad));
}

static void test_parse_bad_brackets(void **state) {
  (void)state;
  static const struct bad_case bad[] = {
      {"[::1:80", SK_EBRACKET},     {"[", SK_EBRACKET},
      {"]", SK_EBRACKET},           {"::1]:80", SK_EBRACKET},
      {"[::1]]:80", SK_EBRACKET},   {"[[::1]]:80", SK_EBRACKET},
      {"[::1]:80]", SK_EBRACKET},   {"[::1]:[80", SK_EBRACKET},
      {"1.2.3.4]:80", SK_EBRACKET},
  };
  expect_parse_error(bad, ARRAY_LEN(bad));
}

static void test_parse_bad_address(void **state) {
  (void)state;
  static const struct bad_case bad[] = {
      {"", SK_EBADADDR},
      {"::1:80", SK_EBADADDR},
      {"::1", SK_EBADADDR},
      {"fe80::1%lo:80", SK_EBADADDR},
      {":80", SK_EBADADDR},
      {"[]:80", SK_EBADADDR},
      {"localhost:80", SK_EBADADDR},
      {"127.1:80", SK_EBADADDR},
      {"256.0.0.1:80", SK_EBADADDR},
      {"1.2.3.4.5:80", SK_EBADADDR},
      {" 127.0.0.1:80", SK_EBADADDR},
      {"127.0.0.1 :80", SK_EBADADDR},
      {"[127.0.0.1]:80", SK_EBADADDR},
      {"[::g]:80", SK_EBADADDR},
      {"[ ::1]:80", SK_EBADADDR},
      {"[::1]x80", SK_EBADADDR},
      {"[::1]80", SK_EBADADDR},
      {"x[::1]:80", SK_EBADADDR},
      {"tcp://127.0.0.1:80", SK_EBADADDR},
  };
  sk_endpoint ep;
  expect_parse_error(bad, ARRAY_LEN(bad));
  assert_int_equal(sk_endpoint_parse(&ep, NULL), SK_EBADADDR);
  assert_int_equal(sk_endpoint_family(&ep), AF_UNSPEC);
}

static void test_split(void **state) {
  (void)state;
  static const struct {
    const char *text;
    const char *host;
    uint16_t port;
  } good[] = {
      {"localhost:80", "localhost", 80},
      {"example.com:0", "example.com", 0},
      {"127.0.0.1:65535", "127.0.0.1", 65535},
      {"[::1]:443", "::1", 443},
      {"[fe80::1%7]:22", "fe80::1%7", 22},
  };
  for (size_t i = 0; i < ARRAY_LEN(good); i++) {
    char host[64];
    uint16_t port = 1234;
    SK_ASSERT_OK(sk_endpoint_split(good[i].text, host, sizeof(host), &port));
    assert_string_equal(host, good[i].host);
    assert_int_equal(port, good[i].port);
  }
}

static void test_split_errors(void **state) {
  (void)state;
  static const struct bad_case bad[] = {
      {"", SK_EBADADDR},
      {"localhost", SK_EBADPORT},
      {"localhost:", SK_EBADPORT},
      {"localhost:65536", SK_EBADPORT},
      {"localhost:-1", SK_EBADPORT},
      {":80", SK_EBADADDR},
      {"::1:80", SK_EBADADDR},
      {"[::1:80", SK_EBRACKET},
      {"::1]:80", SK_EBRACKET},
      {"[localhost]:80", SK_EBADADDR},
      {"[]:80", SK_EBADADDR},
      {"unix:/tmp/x", SK_EBADADDR},
      {"[fe80::1%sk-no-such-if]:80", -ENODEV},
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    char host[64] = "unchanged";
    uint16_t port = 0;
    int rc = sk_endpoint_split(bad[i].text, host, sizeof(host), &port);
    if (rc != bad[i].err)
      fail_msg("split(\"%s\") returned %d (%s), expected %s", bad[i].text, rc,
               sk_err_name(rc), sk_err_name(bad[i].err));
    assert_string_equal(host, "");
  }
  assert_int_equal(sk_endpoint_split(NULL, NULL, 0, NULL), SK_EBADADDR);
}

static void test_split_host_too_long(void **state) {
  (void)state;
  char host[10];
  uint16_t port;
  /* "localhost" needs exactly 10 bytes with its NUL. */
  SK_ASSERT_OK(sk_endpoint_split("localhost:1", host, sizeof(host), &port));
  assert_string_equal(host, "localhost");
  assert_int_equal(sk_endpoint_split("localhost1:1", host, sizeof(host), &port),
                   -ENAMETOOLONG);
  assert_int_equal(sk_endpoint_split("[::1]:1", host, 3, &port), -ENAMETOOLONG);
}

static void test_format_ipv4(void **state) {
  (void)state;
  char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_loopback(&ep, AF_INET, 8888));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)), 14);
  assert_string_equal(buf, "127.0.0.1:8888");
  SK_ASSERT_OK(sk_endpoint_any(&ep, AF_INET, 0));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)), 9);
  assert_string_equal(buf, "0.0.0.0:0");
}

static void test_format_ipv6(void **state) {
  (void)state;
  char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_loopback(&ep, AF_INET6, 8888));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)), 10);
  assert_string_equal(buf, "[::1]:8888");
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "[2001:0db8:0000:0000:0000:0000:0:1]:1"));
  sk_endpoint_format(&ep, buf, sizeof(buf));
  assert_string_equal(buf, "[2001:db8::1]:1");
}

static void test_format_scope(void **state) {
  (void)state;
  unsigned lo = lo_index();
  char buf[SK_ENDPOINT_STRLEN], text[64];
  unsigned missing = 4000000000u;
  sk_endpoint ep;

  /* A scope given by number prints as the interface's name. */
  snprintf(text, sizeof(text), "[fe80::1%%%u]:80", lo);
  SK_ASSERT_OK(sk_endpoint_parse(&ep, text));
  assert_true(sk_endpoint_format(&ep, buf, sizeof(buf)) > 0);
  assert_string_equal(buf, "[fe80::1%lo]:80");

  /* An index with no interface behind it prints as the number. */
  char name[IF_NAMESIZE];
  while (if_indextoname(missing, name) != NULL)
    missing++;
  snprintf(text, sizeof(text), "[fe80::1%%%u]:80", missing);
  SK_ASSERT_OK(sk_endpoint_parse(&ep, text));
  assert_true(sk_endpoint_format(&ep, buf, sizeof(buf)) > 0);
  assert_string_equal(buf, text);
}

static void test_format_unix(void **state) {
  (void)state;
  char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep;
  SK_ASSERT_OK(sk_endpoint_unix(&ep, "/run/sockit.sock"));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)),
                   strlen("unix:/run/sockit.sock"));
  assert_string_equal(buf, "unix:/run/sockit.sock");
  SK_ASSERT_OK(sk_endpoint_unix(&ep, "@abstract"));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)),
                   strlen("unix:@abstract"));
  assert_string_equal(buf, "unix:@abstract");
}

static void test_format_buffer_size(void **state) {
  (void)state;
  char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep;

  SK_ASSERT_OK(sk_endpoint_parse(&ep, "127.0.0.1:8888"));
  memset(buf, 'x', sizeof(buf));
  assert_int_equal(sk_endpoint_format(&ep, buf, 15), 14);
  assert_string_equal(buf, "127.0.0.1:8888");
  assert_int_equal(sk_endpoint_format(&ep, buf, 14), -ENOSPC);
  assert_int_equal(sk_endpoint_format(&ep, buf, 1), -ENOSPC);
  assert_int_equal(sk_endpoint_format(&ep, NULL, 0), -ENOSPC);

  /* The longest forms still fit SK_ENDPOINT_STRLEN. */
  char text[256];
  SK_ASSERT_OK(sk_endpoint_parse(
      &ep, repeat(text, sizeof(text), "unix:/", 'p', SUN_MAX - 2)));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)), strlen(text));
  SK_ASSERT_OK(sk_endpoint_parse(
      &ep, repeat(text, sizeof(text), "unix:@", 'a', SUN_MAX - 1)));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)), strlen(text));
  SK_ASSERT_OK(sk_endpoint_parse(
      &ep, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"));
  assert_true(sk_endpoint_format(&ep, buf, sizeof(buf)) > 0);
}

static void test_format_empty_and_unknown(void **state) {
  (void)state;
  char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep;
  memset(&ep, 0, sizeof(ep));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)), -EAFNOSUPPORT);
  ep.u.sa.sa_family = AF_APPLETALK;
  ep.len = sizeof(struct sockaddr);
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)), -EAFNOSUPPORT);
}

/* Canonical texts come back unchanged, and parsing the output gives an equal
 * endpoint. */
static void test_round_trip_canonical(void **state) {
  (void)state;
  static const char *texts[] = {
      "127.0.0.1:8888",
      "0.0.0.0:0",
      "255.255.255.255:65535",
      "[::1]:8888",
      "[::]:0",
      "[2001:db8::1:0:0:1]:443",
      "[fe80::1%lo]:80",
      "unix:/tmp/a.sock",
      "unix:relative",
      "unix:@name",
      "unix:@with space:x",
      "unix:/a]b[c",
  };
  lo_index();
  for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
    char buf[SK_ENDPOINT_STRLEN];
    sk_endpoint a, b;
    SK_ASSERT_OK(sk_endpoint_parse(&a, texts[i]));
    assert_int_equal(sk_endpoint_format(&a, buf, sizeof(buf)),
                     strlen(texts[i]));
    assert_string_equal(buf, texts[i]);
    SK_ASSERT_OK(sk_endpoint_parse(&b, buf));
    assert_true(sk_endpoint_equal(&a, &b));
  }
}

/* Other spellings format to the canonical one and still compare equal. */
static void test_round_trip_non_canonical(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"127.0.0.1:0080", "127.0.0.1:80"},
      {"[0:0:0:0:0:0:0:1]:80", "[::1]:80"},
      {"[2001:DB8::A]:1", "[2001:db8::a]:1"},
      {"[::ffff:127.0.0.1]:80", "127.0.0.1:80"},
      {"[fe80::1%0]:80", "[fe80::1]:80"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char buf[SK_ENDPOINT_STRLEN];
    sk_endpoint a, b;
    SK_ASSERT_OK(sk_endpoint_parse(&a, cases[i].in));
    assert_true(sk_endpoint_format(&a, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, cases[i].out);
    SK_ASSERT_OK(sk_endpoint_parse(&b, buf));
    assert_true(sk_endpoint_equal(&a, &b));
  }
}

static void test_normalize_mapped(void **state) {
  (void)state;
  sk_endpoint ep, v4;
  SK_ASSERT_OK(sk_endpoint_parse(&ep, "[::ffff:192.0.2.7]:4242"));
  assert_int_equal(sk_endpoint_family(&ep), AF_INET6);
  sk_endpoint_normalize(&ep);
  assert_int_equal(sk_endpoint_family(&ep), AF_INET);
  assert_int_equal(ep.len, sizeof(struct sockaddr_in));
  assert_int_equal(sk_endpoint_port(&ep), 4242);
  SK_ASSERT_OK(sk_endpoint_parse(&v4, "192.0.2.7:4242"));
  assert_memory_equal(&ep.u.in4, &v4.u.in4, sizeof(v4.u.in4));
}

static void test_normalize_leaves_others(void **state) {
  (void)state;
  static const char *texts[] = {
      "[::1]:1",              /* loopback */
      "[::127.0.0.1]:1",      /* IPv4-compatible, not mapped */
      "[::ffff:0:1.2.3.4]:1", /* IPv4-translated, not mapped */
      "[64:ff9b::1.2.3.4]:1", /* NAT64, not mapped */
      "10.0.0.1:1",
      "unix:/x",
      "unix:@x",
  };
  for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
    sk_endpoint ep, before;
    SK_ASSERT_OK(sk_endpoint_parse(&ep, texts[i]));
    before = ep;
    sk_endpoint_normalize(&ep);
    assert_int_equal(ep.len, before.len);
    assert_memory_equal(&ep.u, &before.u, sizeof(ep.u));
  }
  sk_endpoint empty;
  memset(&empty, 0, sizeof(empty));
  sk_endpoint_normalize(&empty);
  assert_int_equal(sk_endpoint_family(&empty), AF_UNSPEC);
}

static void test_from_sockaddr_ip(void **state) {
  (void)state;
  struct sockaddr_storage ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep;

  memset(&ss, 0, sizeof(ss));
  s4->sin_family = AF_INET;
  s4->sin_port = htons(7);
  s4->sin_addr.s_addr = htonl(0x7f000001);
  SK_ASSERT_OK(
      sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&ss, sizeof(*s4)));
  sk_endpoint_format(&ep, buf, sizeof(buf));
  assert_string_equal(buf, "127.0.0.1:7");

  /* What a dual-stack listener's accept() returns for an IPv4 peer. */
  memset(&ss, 0, sizeof(ss));
  s6->sin6_family = AF_INET6;
  s6->sin6_port = htons(9);
  assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &s6->sin6_addr), 1);
  SK_ASSERT_OK(
      sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&ss, sizeof(*s6)));
  assert_int_equal(sk_endpoint_family(&ep), AF_INET);
  assert_int_equal(sk_endpoint_port(&ep), 9);
  assert_int_equal(ep.u.in4.sin_addr.s_addr, htonl(0x7f000001));

  /* Short or foreign addresses are refused. */
  assert_int_equal(
      sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&ss, sizeof(*s6) - 1),
      -EINVAL);
  assert_int_equal(sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&ss, 0),
                   -EINVAL);
  s4->sin_family = AF_INET;
  assert_int_equal(
      sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&ss, sizeof(*s4) - 1),
      -EINVAL);
  ss.ss_family = AF_APPLETALK;
  assert_int_equal(
      sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&ss, sizeof(ss)),
      -EAFNOSUPPORT);
  assert_int_equal(sk_endpoint_family(&ep), AF_UNSPEC);
  assert_int_equal(sk_endpoint_from_sockaddr(&ep, NULL, 16), -EINVAL);
}

static void test_from_sockaddr_unix(void **state) {
  (void)state;
  struct sockaddr_un un;
  char buf[SK_ENDPOINT_STRLEN];
  sk_endpoint ep, want;

  /* A path with and without its NUL counted names the same socket. */
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, "/tmp/s");
  SK_ASSERT_OK(sk_endpoint_unix(&want, "/tmp/s"));
  SK_ASSERT_OK(sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&un,
                                         (socklen_t)(SUN_OFF + 7)));
  assert_true(sk_endpoint_equal(&ep, &want));
  SK_ASSERT_OK(sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&un,
                                         (socklen_t)(SUN_OFF + 6)));
  assert_true(sk_endpoint_equal(&ep, &want));
  assert_int_equal(sk_endpoint_format(&ep, buf, sizeof(buf)), 11);
  assert_string_equal(buf, "unix:/tmp/s");

  /* An abstract name is exactly as long as the length says. */
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, "\0abc", 4);
  SK_ASSERT_OK(sk_endpoint_unix(&want, "@abc"));
  SK_ASSERT_OK(sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&un,
                                         (socklen_t)(SUN_OFF + 4)));
  assert_true(sk_endpoint_equal(&ep, &want));
  SK_ASSERT_OK(sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&un,
                                         (socklen_t)(SUN_OFF + 5)));
  assert_false(sk_endpoint_equal(&ep, &want));
}

/* The kernel reports Unix names back the way sockit builds them. */
static void test_unix_kernel_round_trip(void **state) {
  (void)state;
  char dir[] = "/tmp/sockit-ep-XXXXXX";
  char text[SK_ENDPOINT_STRLEN], path[64], buf[SK_ENDPOINT_STRLEN];
  struct sockaddr_storage ss;
  socklen_t sl;
  sk_endpoint ep, got;
  int fd;

  snprintf(text, sizeof(text), "unix:@sockit-test-%ld", (long)getpid());
  SK_ASSERT_OK(sk_endpoint_parse(&ep, text));
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, &ep.u.sa, ep.len), 0);
  sl = sizeof(ss);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
  close(fd);
  SK_ASSERT_OK(sk_endpoint_from_sockaddr(&got, (struct sockaddr *)&ss, sl));
  assert_int_equal(got.len, ep.len);
  assert_true(sk_endpoint_equal(&got, &ep));

  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/s", dir);
  SK_ASSERT_OK(sk_endpoint_unix(&ep, path));
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, &ep.u.sa, ep.len), 0);
  sl = sizeof(ss);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
  close(fd);
  unlink(path);
  rmdir(dir);
  SK_ASSERT_OK(sk_endpoint_from_sockaddr(&got, (struct sockaddr *)&ss, sl));
  assert_true(sk_endpoint_equal(&got, &ep));
  snprintf(text, sizeof(text), "unix:%s", path);
  assert_true(sk_endpoint_format(&got, buf, sizeof(buf)) > 0);
  assert_string_equal(buf, text);
}

/* A real bound socket's name comes back through from_sockaddr. */
static void test_from_sockaddr_bound_socket(void **state) {
  (void)state;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  sk_endpoint ep;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  SK_ASSERT_OK(sk_endpoint_loopback(&ep, AF_INET, 0));
  assert_int_equal(bind(fd, &ep.u.sa, ep.len), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
  close(fd);
  SK_ASSERT_OK(sk_endpoint_from_sockaddr(&ep, (struct sockaddr *)&ss, sl));
  assert_int_equal(sk_endpoint_family(&ep), AF_INET);
  assert_int_not_equal(sk_endpoint_port(&ep), 0);
  assert_int_equal(ep.u.in4.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
}

static void test_any_and_loopback(void **state) {
  (void)state;
  static const struct {
    int family, loopback;
    const char *text;
  } cases[] = {
      {AF_INET, 0, "0.0.0.0:5"},
      {AF_INET, 1, "127.0.0.1:5"},
      {AF_INET6, 0, "[::]:5"},
      {AF_INET6, 1, "[::1]:5"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char buf[SK_ENDPOINT_STRLEN];
    sk_endpoint ep, want;
    if (cases[i].loopback)
      SK_ASSERT_OK(sk_endpoint_loopback(&ep, cases[i].family, 5));
    else
      SK_ASSERT_OK(sk_endpoint_any(&ep, cases[i].family, 5));
    assert_int_equal(sk_endpoint_family(&ep), cases[i].family);
    sk_endpoint_format(&ep, buf, sizeof(buf));
    assert_string_equal(buf, cases[i].text);
    SK_ASSERT_OK(sk_endpoint_parse(&want, cases[i].text));
    assert_memory_equal(&ep, &want, sizeof(ep));
  }
  sk_endpoint ep;
  assert_int_equal(sk_endpoint_any(&ep, AF_UNIX, 5), -EAFNOSUPPORT);
  assert_int_equal(sk_endpoint_loopback(&ep, AF_UNSPEC, 5), -EAFNOSUPPORT);
  assert_int_equal(sk_endpoint_family(&ep), AF_UNSPEC);
}

static void test_unix_builder(void **state) {
  (void)state;
  sk_endpoint ep, parsed;
  SK_ASSERT_OK(sk_endpoint_unix(&ep, "@n"));
  SK_ASSERT_OK(sk_endpoint_parse(&parsed, "unix:@n"));
  assert_memory_equal(&ep, &parsed, sizeof(ep));
  SK_ASSERT_OK(sk_endpoint_unix(&ep, "/p"));
  SK_ASSERT_OK(sk_endpoint_parse(&parsed, "unix:/p"));
  assert_memory_equal(&ep, &parsed, sizeof(ep));
  assert_int_equal(sk_endpoint_unix(&ep, ""), SK_EBADADDR);
  assert_int_equal(sk_endpoint_unix(&ep, "@"), SK_EBADADDR);
  assert_int_equal(sk_endpoint_unix(&ep, NULL), -EINVAL);
  assert_int_equal(sk_endpoint_family(&ep), AF_UNSPEC);
}

static void test_family_and_port(void **state) {
  (void)state;
  sk_endpoint ep;
  memset(&ep, 0, sizeof(ep));
  assert_int_equal(sk_endpoint_family(&ep), AF_UNSPEC);
  assert_int_equal(sk_endpoint_port(&ep), 0);
  assert_int_equal(sk_endpoint_set_port(&ep, 1), -EAFNOSUPPORT);

  SK_ASSERT_OK(sk_endpoint_parse(&ep, "1.2.3.4:5"));
  SK_ASSERT_OK(sk_endpoint_set_port(&ep, 65535));
  assert_int_equal(sk_endpoint_port(&ep), 65535);
  assert_int_equal(ep.u.in4.sin_port, htons(65535));

  SK_ASSERT_OK(sk_endpoint_parse(&ep, "[::1]:5"));
  SK_ASSERT_OK(sk_endpoint_set_port(&ep, 443));
  assert_int_equal(sk_endpoint_port(&ep), 443);
  assert_int_equal(ep.u.in6.sin6_port, htons(443));

  SK_ASSERT_OK(sk_endpoint_parse(&ep, "unix:/x"));
  assert_int_equal(sk_endpoint_family(&ep), AF_UNIX);
  assert_int_equal(sk_endpoint_port(&ep), 0);
  assert_int_equal(sk_endpoint_set_port(&ep, 80), -EAFNOSUPPORT);
}

static void test_equal(void **state) {
  (void)state;
  static const struct {
    const char *a, *b;
    int equal;
  } cases[] = {
      {"127.0.0.1:80", "127.0.0.1:80", 1},
      {"127.0.0.1:80", "127.0.0.1:81", 0},
      {"127.0.0.1:80", "127.0.0.2:80", 0},
      {"127.0.0.1:80", "[::ffff:127.0.0.1]:80", 1},
      {"127.0.0.1:80", "[::ffff:127.0.0.1]:81", 0},
      {"127.0.0.1:80", "[::1]:80", 0},
      {"[::1]:80", "[0::1]:80", 1},
      {"[fe80::1%1]:80", "[fe80::1%2]:80", 0},
      {"[fe80::1]:80", "[fe80::1%0]:80", 1},
      {"unix:/a", "unix:/a", 1},
      {"unix:/a", "unix:/b", 0},
      {"unix:/a", "unix:@/a", 0},
      {"unix:@a", "unix:@a", 1},
      {"unix:@a", "unix:@ab", 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    sk_endpoint a, b;
    SK_ASSERT_OK(sk_endpoint_parse(&a, cases[i].a));
    SK_ASSERT_OK(sk_endpoint_parse(&b, cases[i].b));
    if (sk_endpoint_equal(&a, &b) != cases[i].equal ||
        sk_endpoint_equal(&b, &a) != cases[i].equal)
      fail_msg("equal(%s, %s) != %d", cases[i].a, cases[i].b, cases[i].equal);
  }

  /* Flow labels are not part of the address. */
  sk_endpoint a, b, empty;
  SK_ASSERT_OK(sk_endpoint_parse(&a, "[::1]:80"));
  b = a;
  b.u.in6.sin6_flowinfo = htonl(0x12345);
  assert_true(sk_endpoint_equal(&a, &b));

  memset(&empty, 0, sizeof(empty));
  assert_true(sk_endpoint_equal(&empty, &empty));
  assert_false(sk_endpoint_equal(&empty, &a));
}

static void test_resolve_numeric(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int family;
  } cases[] = {
      {"127.0.0.1:80", AF_INET},     {"[::1]:80", AF_INET6},
      {"[fe80::1%lo]:80", AF_INET6}, {"unix:/tmp/x", AF_UNIX},
      {"unix:@x", AF_UNIX},
  };
  lo_index();
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    sk_endpoint out[4], want;
    assert_int_equal(
        sk_endpoint_resolve(cases[i].text, AF_UNSPEC, SOCK_STREAM, out, 4), 1);
    SK_ASSERT_OK(sk_endpoint_parse(&want, cases[i].text));
    assert_int_equal(sk_endpoint_family(&out[0]), cases[i].family);
    assert_true(sk_endpoint_equal(&out[0], &want));
  }

  /* A literal of the wrong family has no address of the family asked for. */
  sk_endpoint out[1];
  assert_int_equal(sk_endpoint_resolve("127.0.0.1:80", AF_INET6, 0, out, 1),
                   SK_ENOTFOUND);
  assert_int_equal(sk_endpoint_resolve("[::1]:80", AF_INET, 0, out, 1),
                   SK_ENOTFOUND);
  assert_int_equal(sk_endpoint_resolve("127.0.0.1:80", AF_INET, 0, out, 1), 1);
}

static int is_loopback(const sk_endpoint *ep) {
  if (sk_endpoint_family(ep) == AF_INET)
    return (ntohl(ep->u.in4.sin_addr.s_addr) >> 24) == 127;
  if (sk_endpoint_family(ep) == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&ep->u.in6.sin6_addr);
  return 0;
}

static void test_resolve_localhost(void **state) {
  (void)state;
  sk_endpoint out[16];
  int n = sk_endpoint_resolve("localhost:0", AF_UNSPEC, 0, out, 16);
  if (n < 1)
    fail_msg("resolve(localhost:0) returned %d (%s)", n, sk_err_name(n));
  for (int i = 0; i < n; i++) {
    assert_true(is_loopback(&out[i]));
    assert_int_equal(sk_endpoint_port(&out[i]), 0);
    /* socktype 0 would list each address once per socket type without
     * the de-duplication. */
    for (int j = i + 1; j < n; j++)
      assert_false(sk_endpoint_equal(&out[i], &out[j]));
  }

  n = sk_endpoint_resolve("localhost:8080", AF_INET, SOCK_DGRAM, out, 16);
  assert_true(n >= 1);
  for (int i = 0; i < n; i++) {
    assert_int_equal(sk_endpoint_family(&out[i]), AF_INET);
    assert_int_equal(sk_endpoint_port(&out[i]), 8080);
  }
}

static void test_resolve_max(void **state) {
  (void)state;
  sk_endpoint out[2];
  /* The entry past max must stay untouched. */
  memset(out, 0xa5, sizeof(out));
  assert_int_equal(sk_endpoint_resolve("localhost:1", AF_UNSPEC, 0, out, 1), 1);
  assert_true(is_loopback(&out[0]));
  for (size_t i = 0; i < sizeof(out[1]); i++)
    assert_int_equal(((unsigned char *)&out[1])[i], 0xa5);
  assert_int_equal(sk_endpoint_resolve("localhost:1", AF_UNSPEC, 0, out, 0),
                   -EINVAL);
  assert_int_equal(sk_endpoint_resolve("localhost:1", AF_UNSPEC, 0, NULL, 1),
                   -EINVAL);
}

/* RFC 6761 reserves ".invalid": no such name can exist. The first label is
 * longer than the 63 bytes DNS allows, so glibc refuses to build a query and
 * the lookup fails from /etc/hosts alone, without depending on a network or
 * a resolver's answer. */
static void test_resolve_not_found(void **state) {
  (void)state;
  char text[128];
  struct timespec t0, t1;
  sk_endpoint out[4];

  repeat(text, sizeof(text), "", 'x', 70);
  strcat(text, ".sockit.invalid:80");
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = sk_endpoint_resolve(text, AF_UNSPEC, SOCK_STREAM, out, 4);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_int_equal(rc, SK_ENOTFOUND);
  /* Failing must not mean waiting for a resolver timeout. */
  assert_true(t1.tv_sec - t0.tv_sec < 5);
}

static void test_resolve_errors(void **state) {
  (void)state;
  static const struct bad_case bad[] = {
      {"localhost", SK_EBADPORT},
      {"localhost:65536", SK_EBADPORT},
      {"localhost:+1", SK_EBADPORT},
      {":80", SK_EBADADDR},
      {"", SK_EBADADDR},
      {"::1:80", SK_EBADADDR},
      {"[::1:80", SK_EBRACKET},
      {"[127.0.0.1]:80", SK_EBADADDR},
      {"unix:", SK_EBADADDR},
      {"[fe80::1%sk-no-such-if]:1", -ENODEV},
  };
  sk_endpoint out[2];
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    int rc = sk_endpoint_resolve(bad[i].text, AF_UNSPEC, 0, out, 2);
    if (rc != bad[i].err)
      fail_msg("resolve(\"%s\") returned %d (%s), expected %s", bad[i].text, rc,
               sk_err_name(rc), sk_err_name(bad[i].err));
  }
  assert_int_equal(sk_endpoint_resolve("localhost:1", AF_UNIX, 0, out, 2),
                   -EAFNOSUPPORT);
  assert_int_equal(
      sk_endpoint_resolve("localhost:1", AF_UNSPEC, SOCK_RAW, out, 2), -EINVAL);
  assert_int_equal(sk_endpoint_resolve(NULL, AF_UNSPEC, 0, out, 2), -EINVAL);
}

/* One test per line: tests/CMakeLists.txt registers each line it finds. */
/* clang-format off */
SK_TEST_MAIN(cmocka_unit_test(test_parse_ipv4),
             cmocka_unit_test(test_parse_ipv6),
             cmocka_unit_test(test_parse_ipv6_scope_name),
             cmocka_unit_test(test_parse_ipv6_scope_number),
             cmocka_unit_test(test_parse_ipv6_scope_errors),
             cmocka_unit_test(test_parse_unix_path),
             cmocka_unit_test(test_parse_unix_abstract),
             cmocka_unit_test(test_parse_unix_length_limits),
             cmocka_unit_test(test_parse_unix_errors),
             cmocka_unit_test(test_parse_bad_port),
             cmocka_unit_test(test_parse_bad_brackets),
             cmocka_unit_test(test_parse_bad_address),
             cmocka_unit_test(test_split),
             cmocka_unit_test(test_split_errors),
             cmocka_unit_test(test_split_host_too_long),
             cmocka_unit_test(test_format_ipv4),
             cmocka_unit_test(test_format_ipv6),
             cmocka_unit_test(test_format_scope),
             cmocka_unit_test(test_format_unix),
             cmocka_unit_test(test_format_buffer_size),
             cmocka_unit_test(test_format_empty_and_unknown),
             cmocka_unit_test(test_round_trip_canonical),
             cmocka_unit_test(test_round_trip_non_canonical),
             cmocka_unit_test(test_normalize_mapped),
             cmocka_unit_test(test_normalize_leaves_others),
             cmocka_unit_test(test_from_sockaddr_ip),
             cmocka_unit_test(test_from_sockaddr_unix),
             cmocka_unit_test(test_unix_kernel_round_trip),
             cmocka_unit_test(test_from_sockaddr_bound_socket),
             cmocka_unit_test(test_any_and_loopback),
             cmocka_unit_test(test_unix_builder),
             cmocka_unit_test(test_family_and_port),
             cmocka_unit_test(test_equal),
             cmocka_unit_test(test_resolve_numeric),
             cmocka_unit_test(test_resolve_localhost),
             cmocka_unit_test(test_resolve_max),
             cmocka_unit_test(test_resolve_not_found),
             cmocka_unit_test(test_resolve_errors))
/* clang-format on */
