/* The mode table: adding a mode is one file and one row here. */
#include "mode.h"

#include <stdio.h>
#include <string.h>

const struct mode *const modes[] = {
    &mode_echo,  &mode_discard,  &mode_chargen, &mode_chat,
    &mode_files, &mode_sockperf, &mode_forward,
};
const size_t nmodes = sizeof(modes) / sizeof(modes[0]);

const struct mode *mode_find(const char *name) {
  for (size_t i = 0; i < nmodes; i++)
    if (strcmp(modes[i]->name, name) == 0)
      return modes[i];
  return NULL;
}

const struct mode_option *mode_option(const struct mode *m, const char *opt) {
  for (const struct mode_option *o = m->options; o != NULL && o->name != NULL;
       o++)
    if (strcmp(o->name, opt) == 0)
      return o;
  return NULL;
}

/* The names of the modes (those taking opt, if not NULL), comma-separated. */
static void names(char *buf, size_t size, const char *first_note,
                  const char *opt) {
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < nmodes && o < size; i++) {
    if (opt != NULL && mode_option(modes[i], opt) == NULL)
      continue;
    o += (size_t)snprintf(buf + o, size - o, "%s%s%s", o > 0 ? ", " : "",
                          modes[i]->name, i == 0 ? first_note : "");
  }
}

void mode_names(char *buf, size_t size, const char *first_note) {
  names(buf, size, first_note, NULL);
}

void mode_names_taking(char *buf, size_t size, const char *opt) {
  names(buf, size, "", opt);
}

void mode_transports(const struct mode *m, char *buf, size_t size) {
  static const struct {
    unsigned bit;
    const char *name;
  } t[] = {{MODE_TCP, "TCP"}, {MODE_UNIX, "Unix"}, {MODE_UDP, "UDP"}};
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]) && o < size; i++)
    if (m->transports & t[i].bit)
      o += (size_t)snprintf(buf + o, size - o, "%s%s", o > 0 ? ", " : "",
                            t[i].name);
}
