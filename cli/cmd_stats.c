/* cmd_stats.c: `fleetctl stats` -> GET /v1/stats: the per-model counters as a table.
 *
 * One row per model (sorted by name), one column per counter, and a totals row summed
 * from the rows shown. A counter the gateway did not send (an older gateway) shows 0; one
 * this fleetctl does not know (a newer gateway) is left out of the table, but --json
 * prints the gateway's document as is.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The counters of GET /v1/stats (docs/api.md), in the order of the table's columns. */
static const char *const counters[] = {
    "queued",  "running",     "submitted", "succeeded",     "failed",      "cancelled", "expired",
    "retried", "handed_back", "reclaimed", "dead_lettered", "dlq_retried", "evicted",
};
#define N_COUNTERS (sizeof counters / sizeof counters[0])

typedef struct stats_row {
    const char *model;
    long long n[N_COUNTERS];
} stats_row;

static int row_cmp(const void *a, const void *b) {
    return strcmp(((const stats_row *)a)->model, ((const stats_row *)b)->model);
}

/* Fills a row from one model's object of counters; a missing counter is 0. A negative
 * one is shown as it is: the counters cannot go below 0 (docs/redis.md), and if one
 * does the operator must see it. */
static void fill_row(stats_row *row, const char *model, const json_t *m) {
    row->model = model;
    for (size_t j = 0; j < N_COUNTERS; j++) {
        json_int_t v = json_integer_value(json_object_get(m, counters[j]));
        row->n[j] = (long long)v;
    }
}

static int digits(long long v) {
    int d = 1;
    if (v < 0) {
        d++; /* the minus sign */
        v = v == LLONG_MIN ? LLONG_MAX : -v;
    }
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

static void print_row(const stats_row *row, int model_w, const int *w) {
    printf("%-*s", model_w, row->model);
    for (size_t j = 0; j < N_COUNTERS; j++) printf("  %*lld", w[j], row->n[j]);
    putchar('\n');
}

/* Prints the table of rows (sorted in place) and their totals. */
static void print_table(stats_row *rows, size_t nrows) {
    qsort(rows, nrows, sizeof *rows, row_cmp);
    stats_row total = {.model = "total"};
    int model_w = (int)strlen("model");
    for (size_t i = 0; i < nrows; i++) {
        int len = (int)strlen(rows[i].model);
        if (len > model_w) model_w = len;
        for (size_t j = 0; j < N_COUNTERS; j++) total.n[j] += rows[i].n[j];
    }
    int w[N_COUNTERS];
    for (size_t j = 0; j < N_COUNTERS; j++) {
        w[j] = (int)strlen(counters[j]);
        if (digits(total.n[j]) > w[j]) w[j] = digits(total.n[j]);
    }
    printf("%-*s", model_w, "model");
    for (size_t j = 0; j < N_COUNTERS; j++) printf("  %*s", w[j], counters[j]);
    putchar('\n');
    for (size_t i = 0; i < nrows; i++) print_row(&rows[i], model_w, w);
    print_row(&total, model_w, w);
}

/* Reads the stats document and prints it as a table. Returns the exit code. */
static int render_stats(const ctl_http_response *r) {
    json_t *doc = ctl_http_json(r, "stats");
    json_t *models = json_object_get(doc, "models");
    if (!json_is_object(models)) {
        if (doc)
            ctl_error("stats: the reply has no \"models\" object (request id %s)", r->request_id);
        json_decref(doc);
        return CTL_EXIT_FAIL;
    }
    size_t nrows = json_object_size(models);
    stats_row *rows = calloc(nrows ? nrows : 1, sizeof *rows);
    if (!rows) {
        ctl_error("stats: out of memory");
        json_decref(doc);
        return CTL_EXIT_FAIL;
    }
    size_t i = 0;
    const char *name;
    json_t *m;
    json_object_foreach(models, name, m) fill_row(&rows[i++], name, m);
    print_table(rows, nrows);
    if (nrows == 0) fprintf(stderr, "(no models)\n");
    free(rows);
    json_decref(doc);
    return CTL_EXIT_OK;
}

static int stats_run(const ctl_globals *g, int argc, char **argv) {
    (void)argc;
    (void)argv;
    char err[512];
    ctl_http *h = ctl_http_open(g);
    if (!h) return CTL_EXIT_USAGE;
    ctl_http_response r;
    int rc = CTL_EXIT_FAIL;
    if (ctl_http_request(h, "GET", "/v1/stats", NULL, &r, err, sizeof err) < 0) {
        ctl_error("%s", err);
        ctl_http_free(h);
        return rc;
    }
    if (r.status != 200) {
        ctl_http_print_problem(&r, "stats");
    } else if (g->json) {
        fwrite(r.body, 1, r.len, stdout);
        if (r.len == 0 || r.body[r.len - 1] != '\n') fputc('\n', stdout);
        rc = CTL_EXIT_OK;
    } else {
        rc = render_stats(&r);
    }
    ctl_http_response_free(&r);
    ctl_http_free(h);
    return rc;
}

const ctl_command ctl_cmd_stats = {
    .name = "stats",
    .args = "",
    .summary = "per-model job counters (queued, running, ..., dead_lettered) and totals",
    .opts = NULL,
    .nopts = 0,
    .min_args = 0,
    .max_args = 0,
    .run = stats_run,
};
