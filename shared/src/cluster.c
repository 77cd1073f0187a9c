/* cluster.c: Redis Cluster routing (cluster.h). */
#include "fleet/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/err.h"

/* CRC16-XMODEM, bit by bit: fleet computes one per key it routes, a table would save
 * nothing measurable next to the network round trip. */
uint16_t fleet_crc16(const char *buf, size_t len) {
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int fleet_key_slot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t after = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - after);
        if (close && close > open + 1) key = open + 1, len = (size_t)(close - open - 1);
    }
    return fleet_crc16(key, len) & (FLEET_CLUSTER_SLOTS - 1);
}

void fleet_slot_map_free(fleet_slot_map *m) {
    free(m->ranges);
    m->ranges = NULL;
    m->n = 0;
}

static int cmp_range(const void *a, const void *b) {
    const fleet_slot_range *x = a, *y = b;
    return (x->first > y->first) - (x->first < y->first);
}

static int node_addr(const redisReply *node, const char *seed_host, fleet_redis_addr *a) {
    if (node->type != REDIS_REPLY_ARRAY || node->elements < 2 ||
        node->element[0]->type != REDIS_REPLY_STRING ||
        node->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    const char *host = node->element[0]->str;
    if (!host[0] || strcmp(host, "?") == 0) host = seed_host ? seed_host : "";
    long long port = node->element[1]->integer;
    if (!host[0] || strlen(host) >= sizeof a->host || port < 1 || port > 65535) return -1;
    snprintf(a->host, sizeof a->host, "%s", host);
    a->port = (int)port;
    return 0;
}

int fleet_slot_map_parse(const redisReply *rep, const char *seed_host, fleet_slot_map *m, char *why,
                         size_t whylen) {
    fleet_slot_map_free(m);
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return fleet_err(why, whylen, "CLUSTER SLOTS: %s",
                         rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "not an array");
    if (rep->elements == 0) return 0;
    fleet_slot_range *r = calloc(rep->elements, sizeof *r);
    if (!r) return fleet_err(why, whylen, "out of memory");
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            node_addr(e->element[2], seed_host, &r[i].master) < 0) {
            free(r);
            return fleet_err(why, whylen, "CLUSTER SLOTS: range %zu is not [first, last, node]", i);
        }
        long long first = e->element[0]->integer, last = e->element[1]->integer;
        if (first < 0 || last < first || last >= FLEET_CLUSTER_SLOTS) {
            free(r);
            return fleet_err(why, whylen, "CLUSTER SLOTS: range %lld-%lld is out of 0..16383",
                             first, last);
        }
        r[i].first = (int)first;
        r[i].last = (int)last;
    }
    qsort(r, rep->elements, sizeof *r, cmp_range);
    for (size_t i = 1; i < rep->elements; i++) {
        if (r[i].first <= r[i - 1].last) {
            int at = r[i].first;
            free(r);
            return fleet_err(why, whylen, "CLUSTER SLOTS: ranges overlap at slot %d", at);
        }
    }
    m->ranges = r;
    m->n = rep->elements;
    return 0;
}

const fleet_redis_addr *fleet_slot_map_master(const fleet_slot_map *m, int slot) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) { /* the last range whose first slot is <= slot */
        size_t mid = lo + (hi - lo) / 2;
        if (m->ranges[mid].first <= slot) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return NULL;
    const fleet_slot_range *r = &m->ranges[lo - 1];
    return slot <= r->last ? &r->master : NULL;
}

bool fleet_slot_map_complete(const fleet_slot_map *m) {
    int next = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->ranges[i].first != next) return false;
        next = m->ranges[i].last + 1;
    }
    return next == FLEET_CLUSTER_SLOTS;
}

fleet_redirect fleet_redirect_of(const redisReply *rep, int *slot, fleet_redis_addr *to) {
    if (!rep || rep->type != REDIS_REPLY_ERROR || !rep->str) return FLEET_REDIRECT_NONE;
    fleet_redirect kind;
    const char *p;
    if (strncmp(rep->str, "MOVED ", 6) == 0) kind = FLEET_REDIRECT_MOVED, p = rep->str + 6;
    else if (strncmp(rep->str, "ASK ", 4) == 0) kind = FLEET_REDIRECT_ASK, p = rep->str + 4;
    else return FLEET_REDIRECT_NONE;
    char *end;
    long s = strtol(p, &end, 10);
    if (end == p || *end != ' ' || s < 0 || s >= FLEET_CLUSTER_SLOTS) return FLEET_REDIRECT_NONE;
    const char *addr = end + 1;
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof to->host)
        return FLEET_REDIRECT_NONE;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 1 || port > 65535) return FLEET_REDIRECT_NONE;
    memcpy(to->host, addr, (size_t)(colon - addr));
    to->host[colon - addr] = '\0';
    to->port = (int)port;
    *slot = (int)s;
    return kind;
}
