/* tl_internal.h: what the harness's own files share; tests include testlib.h only. */
#ifndef TL_INTERNAL_H
#define TL_INTERNAL_H

#include <stdarg.h>

#include "testlib.h"

void *tl_xmalloc(size_t n);
void *tl_xrealloc(void *p, size_t n);
char *tl_xstrdup(const char *s);
char *tl_vprintf_raw(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
char *tl_read_file_raw(const char *path, size_t *len);
void tl_sleep_ms(int ms);
/* Ends the case as failed after the caller printed the "FAIL file:line" message. */
void tl_fail_printed(void) __attribute__((noreturn));
void tl_write_str(const char *s);                           /* async-signal-safe */
void tl_print_tail_raw(const char *path, size_t max_bytes); /* async-signal-safe */

/* tl_proc.c */
bool tl_procs_stop_all(void); /* stops all, newest first; false if a checked one failed */
void tl_procs_print_tails(void);
void tl_procs_forget(void);              /* after a case: the registry is empty again */
void tl_procs_emergency(void);           /* async-signal-safe: SIGKILL all, print tails */
const char *tl_procs_dead_summary(void); /* "fleet-gateway: killed by signal 11; " or "" */

/* tl_http.c: for polling loops, a response the caller frees at once (not deferred). */
tl_resp *tl_http_poll(const tl_req *req, char *err, size_t errlen);
void tl_http_poll_free(tl_resp *r);

#endif
