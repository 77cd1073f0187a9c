/* fuzz_submit_json: libFuzzer target for the submit body parser (gateway/job_body.c) with
 * Content-Type application/json. Whatever the bytes, gw_submit_parse must not crash, leak
 * or hit undefined behaviour (the sanitizers check that), and:
 *   - a refusal is a 4xx with a slug, a title and a terminated detail;
 *   - an accepted body is JSON text, which never holds a NUL byte (jansson skips one
 *     after a number or a literal: {"a":1<NUL>} loads);
 *   - an accepted job has a valid model name and an input whose stored msgpack reads
 *     back (fleet_msgpack_to_json) as the very "input" value that was sent: a job the
 *     gateway accepts is a job a worker can read.
 * A broken rule aborts, which libFuzzer reports as a crash. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/codec.h"
#include "fleet/job.h"
#include "job_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *rule, const char *detail) {
    if (ok) return;
    fprintf(stderr, "fuzz_submit_json: broken rule: %s (%s)\n", rule, detail ? detail : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    gw_job_request req;
    gw_problem p;
    memset(&p, 0, sizeof p);
    if (gw_submit_parse(body, size, "application/json", 86400, &req, &p) < 0) {
        require(p.status >= 400 && p.status <= 499, "a refusal is a 4xx", p.slug);
        require(p.slug && *p.slug && p.title && *p.title, "a refusal has a slug and a title", NULL);
        require(memchr(p.detail, '\0', sizeof p.detail) != NULL, "the detail is terminated", NULL);
        return 0;
    }
    require(!memchr(body, '\0', size), "an accepted body holds no NUL byte", NULL);
    require(fleet_model_name_valid(req.model), "an accepted job has a valid model", req.model);
    require(req.input && req.input_len > 0, "an accepted job has an input", NULL);

    char err[128] = "";
    json_t *stored = fleet_msgpack_to_json(req.input, req.input_len, err, sizeof err);
    require(stored != NULL, "the stored input reads back", err);
    json_t *root = json_loadb(body, size, JSON_DECODE_ANY, NULL);
    require(root && json_equal(stored, json_object_get(root, "input")),
            "the stored input is the input sent", NULL);
    json_decref(root);
    json_decref(stored);
    gw_job_request_free(&req);
    return 0;
}
