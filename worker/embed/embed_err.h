/* embed_err.h: how the embed loaders report a failure: a one-line message in err. */
#ifndef FLEET_EMBED_ERR_H
#define FLEET_EMBED_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Writes the printf-formatted message to err (when given) and returns -1. */
static inline int fleet_embed_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int fleet_embed_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#endif
