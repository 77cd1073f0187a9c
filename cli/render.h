/* render.h: how fleetctl shows jobs to a person. Pure formatting of the gateway's JSON
 * job object (docs/api.md); no I/O other than the FILE given. */
#ifndef CTL_RENDER_H
#define CTL_RENDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#define CTL_BAR_WIDTH 24

/* Writes "[#########---------]  40%" for percent (clamped to 0..100) into out. */
void ctl_render_bar(char *out, size_t outlen, double percent);

/* Writes a one-line description of the job's progress: "running  [###---]  40%  step 2 of
 * 5 (2/5)", or "queued (position 3)" — what `wait` prints when something changes. */
void ctl_render_progress_line(char *out, size_t outlen, const json_t *job);

/* Prints the multi-line summary of `fleetctl status`. */
void ctl_render_job(FILE *f, const json_t *job);

/* The list table: a header, then one row per job. */
void ctl_render_table_header(FILE *f);
void ctl_render_table_row(FILE *f, const json_t *job);

/* Prints v pretty (2-space indent) and a newline; scalars are allowed. */
void ctl_render_json(FILE *f, const json_t *v);

#endif
