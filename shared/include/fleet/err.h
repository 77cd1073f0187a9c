/* err.h: the one way fleet writes an error message into a caller's buffer.
 *
 * Every function that can fail with a message takes (char *err, size_t errlen) and fills
 * it through fleet_err: printf formatting, nothing written when err is NULL or errlen is
 * 0, always NUL-terminated, and a message too long for the buffer is cut at a UTF-8
 * character boundary (a character cut in half would make a problem+json detail or a log
 * line that quotes the message unreadable). It returns -1, so a failing path reads
 * `return fleet_err(err, errlen, "...", ...);`.
 *
 * Header-only (static inline, no libfleet symbol): the embed model's code, built without
 * libfleet (-DFLEET_EMBED_ONLY=ON, and inside its backend modules), uses it too.
 */
#ifndef FLEET_ERR_H
#define FLEET_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* fleet_verr is fleet_err with a va_list (for wrappers that add their own context). */
static inline int fleet_verr(char *err, size_t errlen, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static inline int fleet_verr(char *err, size_t errlen, const char *fmt, va_list ap) {
    if (!err || !errlen) return -1;
    int n = vsnprintf(err, errlen, fmt, ap);
    if (n < 0) {
        err[0] = '\0';
    } else if ((size_t)n >= errlen) {
        /* cut: drop the last character if vsnprintf left it incomplete */
        size_t end = errlen - 1, start = end;
        while (start > 0 && ((unsigned char)err[start - 1] & 0xc0) == 0x80) start--;
        if (start > 0) {
            unsigned char lead = (unsigned char)err[start - 1];
            size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
            if (lead >= 0xc0 && end - (start - 1) < want) err[start - 1] = '\0';
        }
    }
    return -1;
}

static inline int fleet_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int fleet_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fleet_verr(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

#endif
