/* submit.c: the submit body's rules (submit.h, docs/api.md). */
#include "submit.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fleet/codec.h"

static int refuse(gw_problem *p, int status, const char *slug, const char *title,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int refuse(gw_problem *p, int status, const char *slug, const char *title,
                  const char *fmt, ...) {
    p->status = status;
    p->slug = slug;
    p->title = title;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof p->detail, fmt, ap);
    va_end(ap);
    return -1;
}

#define BAD(p, ...) refuse(p, 400, "invalid-body", "Invalid request body", __VA_ARGS__)
#define INVALID(p, ...) refuse(p, 422, "invalid-job", "Not a valid job", __VA_ARGS__)

static const char *json_type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

static bool content_type_is_json(const char *ct) {
    if (!ct) return true; /* no header: read it as JSON */
    while (*ct == ' ') ct++;
    size_t n = strcspn(ct, "; ");
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0);
}

/* Reads an optional integer field in [min, max]. */
static int int_field(json_t *o, const char *name, long min, long max, long *out, gw_problem *p) {
    json_t *v = json_object_get(o, name);
    if (!v) return 0;
    if (!json_is_integer(v))
        return BAD(p, "field '%s' must be an integer, got %s", name, json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return INVALID(p, "field '%s' must be between %ld and %ld, got %lld", name, min, max,
                       (long long)x);
    *out = (long)x;
    return 0;
}

/* Reads "webhook" (a URL string) and "webhook_events" (a subset of running, progress,
 * completed; default ["completed"]). */
static int webhook_fields(json_t *root, gw_job_request *out, gw_problem *p) {
    static const char *const kinds[] = {"running", "progress", "completed"};
    json_t *url = json_object_get(root, "webhook");
    json_t *events = json_object_get(root, "webhook_events");
    if (events && !url)
        return BAD(p, "field 'webhook_events' needs a 'webhook' URL to deliver them to");
    if (!url) return 0;
    if (!json_is_string(url))
        return BAD(p, "field 'webhook' must be a string (an http:// or https:// URL), got %s",
                   json_type_name(url));
    bool want[3] = {false, false, true};
    if (events) {
        if (!json_is_array(events) || json_array_size(events) == 0)
            return BAD(p, "field 'webhook_events' must be a non-empty array of running, "
                          "progress, completed");
        want[2] = false;
        size_t i;
        json_t *e;
        json_array_foreach(events, i, e) {
            bool ok = false;
            for (size_t k = 0; json_is_string(e) && k < 3; k++)
                if (strcmp(json_string_value(e), kinds[k]) == 0) want[k] = ok = true;
            if (!ok)
                return INVALID(p, "webhook_events[%zu] must be one of running, progress, "
                                  "completed", i);
        }
    }
    out->webhook_events[0] = '\0';
    for (size_t k = 0; k < 3; k++) {
        if (!want[k]) continue;
        if (out->webhook_events[0]) strcat(out->webhook_events, ",");
        strcat(out->webhook_events, kinds[k]);
    }
    out->webhook = strdup(json_string_value(url));
    if (!out->webhook) return INVALID(p, "out of memory");
    return 0;
}

int gw_submit_parse(const char *body, size_t len, const char *content_type, long default_ttl_s,
                    gw_job_request *out, gw_problem *p) {
    static const char *const known[] = {"model",    "input",    "priority",      "timeout_s",
                                        "ttl_s",    "metadata", "webhook",       "webhook_events"};
    memset(out, 0, sizeof *out);
    out->priority = FLEET_PRIORITY_NORMAL;
    out->ttl_s = default_ttl_s;
    if (!content_type_is_json(content_type))
        return refuse(p, 415, "unsupported-media-type", "Unsupported content type",
                      "content type '%.100s' is not accepted; send Content-Type: application/json",
                      content_type);
    if (len == 0)
        return BAD(p, "body is empty; send a JSON object with 'model' and 'input'");
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return refuse(p, 400, "invalid-json", "Body is not valid JSON",
                      "body is not valid JSON: line %d, column %d: %s", jerr.line, jerr.column,
                      jerr.text);
    int rc = -1;
    if (!json_is_object(root)) {
        BAD(p, "body must be a JSON object with 'model' and 'input', got %s",
            json_type_name(root));
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok |= strcmp(key, known[i]) == 0;
        if (!ok) {
            BAD(p, "unknown field '%.64s'; accepted fields are model, input, priority, "
                   "timeout_s, ttl_s, metadata, webhook, webhook_events", key);
            goto done;
        }
    }
    json_t *model = json_object_get(root, "model");
    if (!model) {
        BAD(p, "field 'model' is required (a model name such as \"echo\")");
        goto done;
    }
    if (!json_is_string(model)) {
        BAD(p, "field 'model' must be a string, got %s", json_type_name(model));
        goto done;
    }
    if (!fleet_model_name_valid(json_string_value(model))) {
        INVALID(p, "model '%.64s' is not a valid model name (1-64 characters of a-z, 0-9, _ -)",
                json_string_value(model));
        goto done;
    }
    snprintf(out->model, sizeof out->model, "%s", json_string_value(model));

    json_t *input = json_object_get(root, "input");
    if (!input) {
        BAD(p, "field 'input' is required (any JSON value; the model's input)");
        goto done;
    }
    json_t *prio = json_object_get(root, "priority");
    if (prio) {
        if (!json_is_string(prio)) {
            BAD(p, "field 'priority' must be a string, got %s", json_type_name(prio));
            goto done;
        }
        out->priority = fleet_priority_from_string(json_string_value(prio));
        if (out->priority == FLEET_PRIORITY_INVALID) {
            INVALID(p, "priority '%.32s' is not one of high, normal, low",
                    json_string_value(prio));
            goto done;
        }
    }
    if (int_field(root, "timeout_s", 0, GW_TIMEOUT_MAX, &out->timeout_s, p) < 0) goto done;
    if (int_field(root, "ttl_s", GW_TTL_MIN, GW_TTL_MAX, &out->ttl_s, p) < 0) goto done;
    json_t *meta = json_object_get(root, "metadata");
    if (meta) {
        if (!json_is_object(meta)) {
            BAD(p, "field 'metadata' must be an object, got %s", json_type_name(meta));
            goto done;
        }
        out->metadata_json = json_dumps(meta, JSON_COMPACT);
        if (!out->metadata_json || strlen(out->metadata_json) > GW_METADATA_MAX) {
            INVALID(p, "field 'metadata' must be at most %d bytes once encoded", GW_METADATA_MAX);
            goto done;
        }
    }
    if (webhook_fields(root, out, p) < 0) goto done;
    char cerr[128];
    if (fleet_json_to_msgpack(input, &out->input, &out->input_len, cerr, sizeof cerr) < 0) {
        INVALID(p, "field 'input' cannot be stored: %s", cerr);
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    if (rc < 0) gw_job_request_free(out);
    return rc;
}

void gw_job_request_free(gw_job_request *r) {
    free(r->input);
    free(r->metadata_json);
    free(r->webhook);
    r->input = NULL;
    r->metadata_json = NULL;
    r->webhook = NULL;
}
