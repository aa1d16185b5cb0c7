/* libFuzzer target for the endpoint parser.
 *
 * Every input is parsed as endpoint text. Whatever parses must format, and
 * the formatted text must parse back to an equal endpoint: parse and format
 * are documented to agree on the text forms, so any difference is a bug.
 * The splitter is fed the same text and must agree with the parser about
 * which texts have a valid host:port shape.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char text[512];
  char buf[SK_ENDPOINT_STRLEN];
  char host[256];
  sk_endpoint a, b;
  uint16_t port;
  int rc, src, len;

  /* The parser takes C strings; longer inputs add nothing but time. */
  if (size >= sizeof(text))
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';

  /* The splitter must not read or write out of bounds either. */
  src = sk_endpoint_split(text, host, sizeof(host), &port);

  rc = sk_endpoint_parse(&a, text);
  if (rc != 0) {
    /* A failure is an error code and leaves the endpoint empty. */
    if (rc > 0 || sk_endpoint_family(&a) != AF_UNSPEC)
      abort();
    return 0;
  }

  /* Every IP text the parser accepts is a host:port the splitter accepts,
   * with the same port. */
  if (sk_endpoint_family(&a) != AF_UNIX &&
      (src != 0 || port != sk_endpoint_port(&a)))
    abort();

  len = sk_endpoint_format(&a, buf, sizeof(buf));
  if (len <= 0 || (size_t)len != strlen(buf))
    abort();
  if (sk_endpoint_parse(&b, buf) != 0)
    abort();
  if (!sk_endpoint_equal(&a, &b) || !sk_endpoint_equal(&b, &a))
    abort();
  /* Formatting is a fixed point after one round. */
  {
    char again[SK_ENDPOINT_STRLEN];
    if (sk_endpoint_format(&b, again, sizeof(again)) != len ||
        strcmp(again, buf) != 0)
      abort();
  }
  return 0;
}
