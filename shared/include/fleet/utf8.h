/* utf8.h: UTF-8 checks for text taken from request bodies, models and stored results.
 * Pure. */
#ifndef FLEET_UTF8_H
#define FLEET_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Whether s[0..n) is well-formed UTF-8: no overlong forms, no surrogates, nothing above
 * U+10FFFF (the rule jansson applies to JSON strings, so what passes here reads back as
 * JSON). NUL bytes are allowed; callers that cannot hold them check separately. */
bool fleet_utf8_valid(const char *s, size_t n);

/* Copies s[0..n) into out (outlen bytes, always NUL-terminated) for quoting in an error
 * detail: control characters and bytes that are not UTF-8 become '?', a character is never
 * cut in half, and "..." marks a cut. The detail then stays valid UTF-8 and one line. */
void fleet_utf8_quote(const char *s, size_t n, char *out, size_t outlen);

/* The length of the longest prefix of the NUL-terminated s that is at most max bytes and
 * does not end inside a multi-byte character (a character that an earlier cut left
 * incomplete at the end is dropped too): text that must be bounded is cut there, since a
 * character cut in half makes the whole text unreadable as JSON. */
size_t fleet_utf8_cut(const char *s, size_t max);

#endif
