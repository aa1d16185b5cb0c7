/* Relaying two streams (relay.h). Placeholder until the relay lands. */
#include "internal.h"
#include "sockit/relay.h"

int sk_relay_start(sk_relay *r, sk_stream *a, sk_stream *b,
                   const sk_relay_options *opt, sk_relay_cb cb) {
  SK__UNUSED(r);
  SK__UNUSED(a);
  SK__UNUSED(b);
  SK__UNUSED(opt);
  SK__UNUSED(cb);
  return -ENOSYS;
}

void sk_relay_stop(sk_relay *r) {
  SK__UNUSED(r);
}
