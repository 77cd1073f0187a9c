/* keys.c: the one place that spells Redis key names (see keys.h and docs/redis.md). */
#include "fleet/keys.h"

#include <stdio.h>
#include <string.h>

int fleet_keys_init(fleet_keys *k, const char *prefix) {
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || n > FLEET_PREFIX_MAX) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = prefix[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok) return -1;
    }
    snprintf(k->tag, sizeof k->tag, "{%s}", prefix);
    snprintf(k->control, sizeof k->control, "{%s}", prefix);
    return 0;
}

int fleet_keys_init_tag(fleet_keys *k, const char *prefix, long tag) {
    if (fleet_keys_init(k, prefix) < 0) return -1;
    if (tag >= 0) snprintf(k->tag, sizeof k->tag, "{%s:%ld}", prefix, tag);
    return 0;
}

/* Appends s to out at *n, as far as it fits (the caller's names keep keys below
 * FLEET_KEY_MAX). Plain copies: a gateway spells about a dozen keys per submit, and
 * snprintf's format parsing showed in its profile. */
static void key_add(fleet_key *out, size_t *n, const char *s) {
    size_t len = strlen(s);
    if (len > sizeof out->s - 1 - *n) len = sizeof out->s - 1 - *n;
    memcpy(out->s + *n, s, len);
    *n += len;
}

static fleet_key key_in(const char *tag, const char *a, const char *b, const char *c) {
    fleet_key out;
    size_t n = 0;
    key_add(&out, &n, tag);
    key_add(&out, &n, ":");
    key_add(&out, &n, a);
    if (b) {
        key_add(&out, &n, ":");
        key_add(&out, &n, b);
    }
    if (c) {
        key_add(&out, &n, ":");
        key_add(&out, &n, c);
    }
    out.s[n] = '\0';
    return out;
}

/* A key of the builder's shard, and one of the fleet's control keys (keys.h). */
static fleet_key key2(const fleet_keys *k, const char *a, const char *b, const char *c) {
    return key_in(k->tag, a, b, c);
}
static fleet_key keyc(const fleet_keys *k, const char *a, const char *b, const char *c) {
    return key_in(k->control, a, b, c);
}

fleet_key fleet_key_job(const fleet_keys *k, const char *id) { return key2(k, "job", id, NULL); }
fleet_key fleet_key_job_prefix(const fleet_keys *k) { return key2(k, "job", "", NULL); }
fleet_key fleet_key_gone(const fleet_keys *k, const char *id) {
    /* The bucket of the job's tombstone: the first FLEET_GONE_BUCKET_LEN characters of its
     * id (a ULID's leading characters are its creation time). */
    char bucket[FLEET_GONE_BUCKET_LEN + 1];
    snprintf(bucket, sizeof bucket, "%s", id);
    return key2(k, "gone", bucket, NULL);
}
fleet_key fleet_key_gone_prefix(const fleet_keys *k) { return key2(k, "gone", "", NULL); }
fleet_key fleet_key_kept(const fleet_keys *k, const char *tenant) {
    return key2(k, "kept", tenant, NULL);
}
fleet_key fleet_key_kept_bytes(const fleet_keys *k, const char *tenant) {
    fleet_key out;
    snprintf(out.s, sizeof out.s, "%s:kept:%s" FLEET_KEY_KEPT_BYTES_SUFFIX, k->tag, tenant);
    return out;
}
fleet_key fleet_key_kept_prefix(const fleet_keys *k) { return key2(k, "kept", "", NULL); }
fleet_key fleet_key_result(const fleet_keys *k, const char *id) {
    fleet_key out;
    snprintf(out.s, sizeof out.s, "%s:job:%s" FLEET_KEY_RESULT_SUFFIX, k->tag, id);
    return out;
}
fleet_key fleet_key_outputs(const fleet_keys *k, const char *id) {
    fleet_key out;
    snprintf(out.s, sizeof out.s, "%s:job:%s" FLEET_KEY_OUTPUTS_SUFFIX, k->tag, id);
    return out;
}
fleet_key fleet_key_stream(const fleet_keys *k, const char *model) {
    return key2(k, "stream", model, NULL);
}
fleet_key fleet_key_queues(const fleet_keys *k) { return key2(k, "queues", NULL, NULL); }
fleet_key fleet_key_stats(const fleet_keys *k) { return key2(k, "stats", NULL, NULL); }
fleet_key fleet_key_index(const fleet_keys *k, const char *tenant) {
    return key2(k, "tenant", tenant, "submits");
}
fleet_key fleet_key_workers(const fleet_keys *k) { return keyc(k, "workers", NULL, NULL); }
fleet_key fleet_key_worker(const fleet_keys *k, const char *name) {
    return keyc(k, "worker", name, NULL);
}
fleet_key fleet_key_events(const fleet_keys *k) { return keyc(k, "events", NULL, NULL); }
fleet_key fleet_key_shards(const fleet_keys *k) { return keyc(k, "shards", NULL, NULL); }
fleet_key fleet_key_models(const fleet_keys *k) { return keyc(k, "models", NULL, NULL); }
fleet_key fleet_key_worker_prefix(const fleet_keys *k) { return keyc(k, "worker", "", NULL); }
fleet_key fleet_key_entries(const fleet_keys *k, const char *model) {
    return key2(k, "entries", model, NULL);
}
fleet_key fleet_key_delayed(const fleet_keys *k, const char *model) {
    return key2(k, "delayed", model, NULL);
}
fleet_key fleet_key_dlq(const fleet_keys *k) { return key2(k, "dlq", NULL, NULL); }
fleet_key fleet_key_control(const fleet_keys *k, const char *worker) {
    return keyc(k, "control", worker, NULL);
}
fleet_key fleet_key_control_prefix(const fleet_keys *k) { return keyc(k, "control", "", NULL); }
fleet_key fleet_key_webhooks(const fleet_keys *k) { return key2(k, "webhooks", NULL, NULL); }
fleet_key fleet_key_delivery(const fleet_keys *k, const char *msg) {
    return key2(k, "delivery", msg, NULL);
}
fleet_key fleet_key_delivery_prefix(const fleet_keys *k) { return key2(k, "delivery", "", NULL); }
fleet_key fleet_key_webhook_retry(const fleet_keys *k) {
    return key2(k, "webhook_retry", NULL, NULL);
}
fleet_key fleet_key_webhook_dlq(const fleet_keys *k) { return key2(k, "webhook_dlq", NULL, NULL); }
fleet_key fleet_key_tenants(const fleet_keys *k) { return keyc(k, "tenants", NULL, NULL); }
fleet_key fleet_key_tenant(const fleet_keys *k, const char *t) {
    return keyc(k, "tenant", t, NULL);
}
fleet_key fleet_key_tenant_prefix(const fleet_keys *k) { return keyc(k, "tenant", "", NULL); }
fleet_key fleet_key_index_prefix(const fleet_keys *k) { return key2(k, "tenant", "", NULL); }
fleet_key fleet_key_tenant_keys(const fleet_keys *k, const char *t) {
    return keyc(k, "tenant", t, "keys");
}
fleet_key fleet_key_tenant_active(const fleet_keys *k, const char *t) {
    return key2(k, "active", t, NULL);
}
fleet_key fleet_key_active_prefix(const fleet_keys *k) { return key2(k, "active", "", NULL); }
fleet_key fleet_key_tenant_bucket(const fleet_keys *k, const char *t) {
    return key2(k, "tenant", t, "bucket");
}
fleet_key fleet_key_apikey(const fleet_keys *k, const char *hash) {
    return keyc(k, "apikey", hash, NULL);
}
fleet_key fleet_key_idempotency(const fleet_keys *k, const char *t, const char *hash) {
    return key2(k, "idem", t, hash);
}
fleet_key fleet_key_waiting(const fleet_keys *k, const char *model) {
    return key2(k, "waiting", model, NULL);
}
fleet_key fleet_key_wait(const fleet_keys *k, const char *model, const char *tenant, int rank) {
    fleet_key out = key2(k, "wait", model, tenant);
    size_t n = strlen(out.s);
    if (n + 2 < sizeof out.s) {
        out.s[n] = ':';
        out.s[n + 1] = (char)('0' + (rank >= 0 && rank <= 2 ? rank : 1));
        out.s[n + 2] = '\0';
    }
    return out;
}
fleet_key fleet_key_wait_prefix(const fleet_keys *k) { return key2(k, "wait", "", NULL); }
fleet_key fleet_key_metrics(const fleet_keys *k, const char *model) {
    return keyc(k, "metrics", model, NULL);
}
fleet_key fleet_key_metrics_prefix(const fleet_keys *k) { return keyc(k, "metrics", "", NULL); }
