/* Tests for error messages and names (src/lib/error.c) and sk_version(). */
#include <errno.h>
#include <limits.h>

#include "sk_test.h"

/* Every SK_E* code, generated from the same list the library uses, so a code
 * added to the header is tested without touching this file. */
static const struct {
  int code;
  const char *name;
  const char *msg;
} sk_codes[] = {
#define SK_TEST_ERR_ROW(name, value, msg) {SK_##name, "SK_" #name, msg},
    SK_ERRNO_MAP(SK_TEST_ERR_ROW)
#undef SK_TEST_ERR_ROW
};

#define N_CODES (sizeof(sk_codes) / sizeof(sk_codes[0]))

static void test_strerror_success(void **state) {
  (void)state;
  assert_string_equal(sk_strerror(0), "success");
}

static void test_strerror_sk_codes(void **state) {
  (void)state;
  for (size_t i = 0; i < N_CODES; i++)
    assert_string_equal(sk_strerror(sk_codes[i].code), sk_codes[i].msg);
  /* Spot-check a few against the documented text, in case the generated
   * table and the generated switch agree with each other but not with the
   * header. */
  assert_string_equal(sk_strerror(SK_EOF), "end of stream");
  assert_string_equal(sk_strerror(SK_EBADPORT),
                      "missing or invalid port (expected 0-65535)");
  assert_string_equal(sk_strerror(SK_EBACKEND),
                      "unknown or unavailable event loop backend");
}

static void test_strerror_errno(void **state) {
  (void)state;
  assert_string_equal(sk_strerror(-ECONNREFUSED), "Connection refused");
  assert_string_equal(sk_strerror(-ETIMEDOUT), "Connection timed out");
  assert_string_equal(sk_strerror(-EAGAIN), "Resource temporarily unavailable");
  assert_string_equal(sk_strerror(-ENAMETOOLONG), "File name too long");
}

static void test_strerror_unknown(void **state) {
  (void)state;
  /* Positive values, gaps in the errno range, the space between errno and
   * SK_ codes, just past the SK_ list, and the extremes. */
  const int bad[] = {1,      EINVAL, -4000,   -5000,  -10000,
                     -10016, -20000, INT_MIN, INT_MAX};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *s = sk_strerror(bad[i]);
    assert_non_null(s);
    assert_string_equal(s, "unknown error");
  }
}

static void test_err_name_sk_codes(void **state) {
  (void)state;
  for (size_t i = 0; i < N_CODES; i++)
    assert_string_equal(sk_err_name(sk_codes[i].code), sk_codes[i].name);
  assert_string_equal(sk_err_name(SK_EOF), "SK_EOF");
  assert_string_equal(sk_err_name(SK_ENOTFOUND), "SK_ENOTFOUND");
}

static void test_err_name_errno(void **state) {
  (void)state;
  assert_string_equal(sk_err_name(-ECONNREFUSED), "ECONNREFUSED");
  assert_string_equal(sk_err_name(-EPIPE), "EPIPE");
  assert_string_equal(sk_err_name(-EADDRINUSE), "EADDRINUSE");
  assert_string_equal(sk_err_name(-ENODEV), "ENODEV");
}

static void test_err_name_zero_and_unknown(void **state) {
  (void)state;
  assert_string_equal(sk_err_name(0), "OK");
  assert_string_equal(sk_err_name(-10000), "UNKNOWN");
  assert_string_equal(sk_err_name(-4000), "UNKNOWN");
  assert_string_equal(sk_err_name(INT_MIN), "UNKNOWN");
  assert_string_equal(sk_err_name(ECONNREFUSED), "UNKNOWN");
}

/* SK_ codes must stay clear of the errno range and of each other, or a
 * caller could not tell -errno from a sockit failure. */
static void test_codes_distinct_and_outside_errno(void **state) {
  (void)state;
  for (size_t i = 0; i < N_CODES; i++) {
    assert_true(sk_codes[i].code < -10000);
    for (size_t j = i + 1; j < N_CODES; j++)
      assert_int_not_equal(sk_codes[i].code, sk_codes[j].code);
  }
}

static void test_version(void **state) {
  (void)state;
  char expect[32];
  snprintf(expect, sizeof(expect), "%d.%d.%d", SK_VERSION_MAJOR,
           SK_VERSION_MINOR, SK_VERSION_PATCH);
  assert_string_equal(SK_VERSION_STRING, expect);
  assert_string_equal(sk_version(), expect);
}

/* One test per line: tests/CMakeLists.txt registers each line it finds. */
/* clang-format off */
SK_TEST_MAIN(cmocka_unit_test(test_strerror_success),
             cmocka_unit_test(test_strerror_sk_codes),
             cmocka_unit_test(test_strerror_errno),
             cmocka_unit_test(test_strerror_unknown),
             cmocka_unit_test(test_err_name_sk_codes),
             cmocka_unit_test(test_err_name_errno),
             cmocka_unit_test(test_err_name_zero_and_unknown),
             cmocka_unit_test(test_codes_distinct_and_outside_errno),
             cmocka_unit_test(test_version))
/* clang-format on */
