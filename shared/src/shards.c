/* shards.c: the shard table, shard ids and limit shares (see shards.h, docs/scaling.md). */
#include "fleet/shards.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/cluster.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The value of a Crockford digit as fleet ids spell them (upper case), or -1. */
static int digit_of(char c) {
    const char *p = c ? strchr(crockford, c) : NULL;
    return p ? (int)(p - crockford) : -1;
}

static void reindex(fleet_shards *s) {
    s->n = s->n_active = 0;
    for (int k = 0; k < FLEET_SHARDS_MAX; k++) {
        if (!s->shard[k].used) continue;
        s->all[s->n++] = k;
        if (!s->shard[k].draining) s->active[s->n_active++] = k;
    }
}

static int set_shard(fleet_shards *s, int k, long tag, bool draining) {
    fleet_shard *sh = &s->shard[k];
    if (fleet_keys_init_tag(&sh->keys, s->prefix, k == 0 ? -1 : tag) < 0) return -1;
    sh->used = true;
    sh->draining = draining;
    sh->tag = k == 0 ? -1 : tag;
    return 0;
}

int fleet_shards_init(fleet_shards *s, const char *prefix) {
    memset(s, 0, sizeof *s);
    if (fleet_keys_init(&s->control, prefix) < 0) return -1;
    snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
    set_shard(s, 0, -1, false);
    reindex(s);
    return 0;
}

int fleet_shards_parse(fleet_shards *s, const char *text, char *why, size_t whylen) {
    fleet_shards t;
    fleet_shards_init(&t, s->prefix);
    if (!text || !*text) {
        *s = t;
        return 0;
    }
    t.shard[0].used = false; /* the table names shard 0 itself when it has it */
    const char *p = text;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char ent[48];
        if (len >= sizeof ent) {
            snprintf(why, whylen, "shard entry too long: %.20s...", p);
            return -1;
        }
        memcpy(ent, p, len);
        ent[len] = '\0';
        p += len;
        /* "k:N:state" */
        char *c1 = strchr(ent, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) {
            snprintf(why, whylen, "shard entry \"%s\" is not k:N:state", ent);
            return -1;
        }
        *c1 = *c2 = '\0';
        char *e;
        errno = 0;
        long k = strtol(ent, &e, 10);
        if (*ent == '\0' || *e || k < 0 || k >= FLEET_SHARDS_MAX) {
            snprintf(why, whylen, "shard number \"%s\" is not 0..%d", ent, FLEET_SHARDS_MAX - 1);
            return -1;
        }
        long tag = -1;
        if (k == 0) {
            if (strcmp(c1 + 1, "-") != 0) {
                snprintf(why, whylen, "shard 0 has tag \"-\" (the control tag), not \"%s\"",
                         c1 + 1);
                return -1;
            }
        } else {
            errno = 0;
            tag = strtol(c1 + 1, &e, 10);
            if (c1[1] == '\0' || *e || tag < 0 || tag > 999999 || errno) {
                snprintf(why, whylen, "shard %ld's tag \"%s\" is not a number 0..999999", k,
                         c1 + 1);
                return -1;
            }
        }
        bool draining;
        if (strcmp(c2 + 1, "active") == 0) draining = false;
        else if (strcmp(c2 + 1, "draining") == 0) draining = true;
        else {
            snprintf(why, whylen, "shard %ld's state \"%s\" is not active or draining", k, c2 + 1);
            return -1;
        }
        if (t.shard[k].used) {
            snprintf(why, whylen, "shard %ld is named twice", k);
            return -1;
        }
        for (int j = 1; j < FLEET_SHARDS_MAX; j++)
            if (k > 0 && t.shard[j].used && t.shard[j].tag == tag) {
                snprintf(why, whylen, "shards %d and %ld share tag %ld", j, k, tag);
                return -1;
            }
        set_shard(&t, (int)k, tag, draining);
    }
    reindex(&t);
    if (t.n_active == 0) {
        snprintf(why, whylen, "no shard is active");
        return -1;
    }
    *s = t;
    return 0;
}

int fleet_shards_format(const fleet_shards *s, char *out, size_t outlen) {
    size_t n = 0;
    if (outlen) out[0] = '\0';
    for (size_t i = 0; i < s->n; i++) {
        int k = s->all[i];
        const fleet_shard *sh = &s->shard[k];
        char tag[24];
        if (k == 0) snprintf(tag, sizeof tag, "-");
        else snprintf(tag, sizeof tag, "%ld", sh->tag);
        int w = snprintf(out + n, outlen - n, "%s%d:%s:%s", n ? " " : "", k, tag,
                         sh->draining ? "draining" : "active");
        if (w < 0 || (size_t)w >= outlen - n) return -1;
        n += (size_t)w;
    }
    return (int)n;
}

int fleet_shards_add(fleet_shards *s, int k, long tag) {
    if (k < 0 || k >= FLEET_SHARDS_MAX || s->shard[k].used) return -1;
    if (k > 0 && tag < 0) return -1;
    for (int j = 1; j < FLEET_SHARDS_MAX; j++)
        if (k > 0 && s->shard[j].used && s->shard[j].tag == tag) return -1;
    if (set_shard(s, k, tag, false) < 0) return -1;
    reindex(s);
    return 0;
}

int fleet_shards_set_draining(fleet_shards *s, int k, bool draining) {
    if (k < 0 || k >= FLEET_SHARDS_MAX || !s->shard[k].used) return -1;
    if (draining && !s->shard[k].draining && s->n_active == 1) return -1;
    s->shard[k].draining = draining;
    reindex(s);
    return 0;
}

int fleet_shards_of_id(const fleet_shards *s, const char *id) {
    int k = id ? digit_of(id[0]) : -1;
    return k >= 0 && k < FLEET_SHARDS_MAX && s->shard[k].used ? k : -1;
}

const fleet_keys *fleet_shards_keys_of_id(const fleet_shards *s, const char *id) {
    int k = fleet_shards_of_id(s, id);
    return k < 0 ? NULL : &s->shard[k].keys;
}

void fleet_id_set_shard(char id[27], int k) {
    if (k >= 0 && k < FLEET_SHARDS_MAX) id[0] = crockford[k];
}

int fleet_id_cmp_time(const char *a, const char *b) {
    int c = strcmp(a[0] ? a + 1 : a, b[0] ? b + 1 : b);
    return c ? c : strcmp(a, b);
}

long long fleet_shard_share(long long total, size_t n, size_t i, uint32_t salt) {
    if (total <= 0 || n == 0) return 0;
    long long nn = (long long)n;
    long long base = total / nn, extra = total % nn;
    /* Shard i gets one of the `extra` units when its place counted from the salt's shard
     * is below extra. */
    long long place = ((long long)i + nn - (long long)(salt % (uint32_t)n)) % nn;
    return base + (place < extra ? 1 : 0);
}

long fleet_shards_free_tag(const fleet_shards *s, long from, int (*master_of)(int slot, void *arg),
                           void *arg, int master) {
    for (long tag = from < 1 ? 1 : from; tag <= FLEET_SHARD_TAG_MAX; tag++) {
        bool used = false;
        for (size_t i = 0; i < s->n && !used; i++)
            used = s->all[i] > 0 && s->shard[s->all[i]].tag == tag;
        if (used) continue;
        if (!master_of) return tag;
        fleet_keys k;
        if (fleet_keys_init_tag(&k, s->prefix, tag) < 0) return -1;
        if (master_of(fleet_key_slot(k.tag, strlen(k.tag)), arg) == master) return tag;
    }
    return -1;
}
