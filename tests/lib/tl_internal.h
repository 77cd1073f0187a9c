/* tl_internal.h: what the harness's own files share; tests include testlib.h only. */
#ifndef TL_INTERNAL_H
#define TL_INTERNAL_H

#include <stdarg.h>

#include "testlib.h"

void *tl__xmalloc(size_t n);
void *tl__xrealloc(void *p, size_t n);
char *tl__xstrdup(const char *s);
char *tl__vprintf_raw(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
char *tl__read_file_raw(const char *path, size_t *len);
void tl__sleep_ms(int ms);
/* Ends the case as failed after the caller printed the "FAIL file:line" message. */
void tl__fail_printed(void) __attribute__((noreturn));
void tl__write_str(const char *s);               /* async-signal-safe */
void tl__print_tail_raw(const char *path, size_t max_bytes); /* async-signal-safe */

/* tl_proc.c */
bool tl__procs_stop_all(void);     /* stops all, newest first; false if a checked one failed */
void tl__procs_print_tails(void);
void tl__procs_forget(void);       /* after a case: the registry is empty again */
void tl__procs_emergency(void);    /* async-signal-safe: SIGKILL all, print tails */
const char *tl__procs_dead_summary(void); /* "fleet-gateway: killed by signal 11; " or "" */

/* tl_http.c: for polling loops, a response the caller frees at once (not deferred). */
tl_resp *tl__http_poll(const tl_req *req, char *err, size_t errlen);
void tl__http_poll_free(tl_resp *r);

#endif
