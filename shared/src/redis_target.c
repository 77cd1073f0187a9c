/* redis_target.c: FLEET_REDIS_URL, Sentinel and the blocking connect (redis_target.h). */
#include "fleet/redis_target.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/err.h"

/* Decodes the n bytes at s (%XX escapes) into out. Returns -1 for a bad escape, a NUL
 * byte or no room. */
static int percent_decode(const char *s, size_t n, char *out, size_t outlen) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1])) return -1;
            c = (int)strtol(hex, NULL, 16);
            if (c == 0) return -1;
            i += 2;
        }
        if (o + 1 >= outlen) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* "host[:port]" of n bytes at s; the port defaults to def. Returns 0, or -1. */
static int parse_hostport(const char *s, size_t n, int def, fleet_redis_addr *a) {
    const char *colon = memchr(s, ':', n);
    size_t hlen = colon ? (size_t)(colon - s) : n;
    if (hlen == 0 || hlen >= sizeof a->host) return -1;
    for (size_t i = 0; i < hlen; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_') return -1;
    memcpy(a->host, s, hlen);
    a->host[hlen] = '\0';
    a->port = def;
    if (colon) {
        size_t plen = n - hlen - 1;
        if (plen == 0 || plen > 5) return -1;
        long p = 0;
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)colon[1 + i])) return -1;
            p = p * 10 + (colon[1 + i] - '0');
        }
        if (p < 1 || p > 65535) return -1;
        a->port = (int)p;
    }
    return 0;
}

static int parse_url(fleet_redis_target *t, const char *url, char *err, size_t errlen) {
    static const char shape[] = "is not redis://[user:password@]host[:port][/db]";
    const char *p = url;
    if (strncmp(p, "rediss://", 9) == 0)
        return fleet_err(err, errlen,
                         "redis URL: rediss:// (TLS) is not supported; reach Redis over a "
                         "private network or a TLS tunnel");
    if (strncmp(p, "redis://", 8) == 0) p += 8;
    else if (strstr(p, "://")) return fleet_err(err, errlen, "redis URL %s", shape);
    /* The last '@' ends the credentials: a password may hold a raw '@'. */
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return fleet_err(err, errlen,
                             "redis URL: credentials are user:password@ (or :password@ for "
                             "the default user)");
        if (percent_decode(p, (size_t)(colon - p), t->user, sizeof t->user) < 0 ||
            percent_decode(colon + 1, (size_t)(at - colon - 1), t->password, sizeof t->password) <
                0)
            return fleet_err(err, errlen,
                             "redis URL: bad user or password (a %%XX escape, or too long)");
        if (!t->password[0]) return fleet_err(err, errlen, "redis URL: the password is empty");
        t->auth = true;
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hp = slash ? (size_t)(slash - p) : strlen(p);
    if (parse_hostport(p, hp, 6379, &t->addr) < 0)
        return fleet_err(err, errlen, "redis URL %s", shape);
    t->db = 0;
    if (slash && slash[1]) {
        char *end;
        long d = strtol(slash + 1, &end, 10);
        if (*end != '\0' || !isdigit((unsigned char)slash[1]) || d < 0 || d > 15)
            return fleet_err(err, errlen, "redis URL: the database is a number 0..15");
        t->db = (int)d;
    }
    return 0;
}

/* Reads "host:port,host:port,..." into out[0..max), counting them in *n; `what` names an
 * item in the reasons. */
static int parse_list(const char *s, int default_port, fleet_redis_addr *out, size_t max,
                      size_t *n_out, const char *what, char *err, size_t errlen) {
    size_t count = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        while (n && *s == ' ') s++, n--;
        while (n && s[n - 1] == ' ') n--;
        if (count == max) return fleet_err(err, errlen, "more than %zu %ss", max, what);
        if (parse_hostport(s, n, default_port, &out[count]) < 0)
            return fleet_err(err, errlen, "%s '%.*s' is not host:port", what, (int)n, s);
        count++;
        if (!comma) break;
        s = comma + 1;
    }
    *n_out = count;
    return 0;
}

int fleet_redis_target_parse(fleet_redis_target *t, const fleet_redis_settings *set, char *err,
                             size_t errlen) {
    const char *url = set->url, *sentinels = set->sentinels, *master = set->master;
    memset(t, 0, sizeof *t);
    if (!url || !*url) return fleet_err(err, errlen, "no redis URL");
    if (parse_url(t, url, err, errlen) < 0) return -1;
    bool have_s = sentinels && *sentinels, have_m = master && *master;
    if (have_s != have_m)
        return fleet_err(err, errlen,
                         "FLEET_REDIS_SENTINELS and FLEET_REDIS_SENTINEL_MASTER go together");
    if (set->cluster && *set->cluster) {
        /* A cluster's masters fail over by themselves (their replicas take over): no
         * sentinels; and it has one database. */
        if (have_s)
            return fleet_err(err, errlen,
                             "FLEET_REDIS_CLUSTER and FLEET_REDIS_SENTINELS exclude each other");
        if (t->db != 0)
            return fleet_err(err, errlen, "a Redis Cluster has database 0 only, not %d", t->db);
        if (parse_list(set->cluster, 6379, t->seeds, FLEET_CLUSTER_SEEDS_MAX, &t->nseeds, "seed",
                       err, errlen) < 0)
            return -1;
        return 0;
    }
    if (!have_s) return 0;
    const char *pw = set->sentinel_password ? set->sentinel_password : "";
    if (strlen(pw) >= sizeof t->sentinel_password)
        return fleet_err(err, errlen, "FLEET_REDIS_SENTINEL_PASSWORD is too long");
    strcpy(t->sentinel_password, pw);
    if (parse_list(sentinels, 26379, t->sentinels, FLEET_SENTINELS_MAX, &t->nsentinels, "sentinel",
                   err, errlen) < 0)
        return -1;
    size_t mlen = strlen(master);
    if (mlen >= sizeof t->master || strpbrk(master, " \t\r\n\"'"))
        return fleet_err(err, errlen, "sentinel master name '%s' is not valid", master);
    memcpy(t->master, master, mlen + 1);
    return 0;
}

void fleet_redis_target_describe(const fleet_redis_target *t, char *buf, size_t len) {
    char cred[160] = "";
    if (t->auth) snprintf(cred, sizeof cred, "%s:***@", t->user);
    if (t->nseeds) {
        size_t o = (size_t)snprintf(buf, len, "cluster via ");
        for (size_t i = 0; i < t->nseeds && o < len; i++)
            o += (size_t)snprintf(buf + o, len - o, "%s%s:%d", i ? "," : "", t->seeds[i].host,
                                  t->seeds[i].port);
        if (o < len && t->auth)
            snprintf(buf + o, len - o, " (user %s)", t->user[0] ? t->user : "default");
        return;
    }
    if (!t->nsentinels) {
        snprintf(buf, len, "redis://%s%s:%d/%d", cred, t->addr.host, t->addr.port, t->db);
        return;
    }
    size_t o = (size_t)snprintf(buf, len, "sentinel master %s via ", t->master);
    for (size_t i = 0; i < t->nsentinels && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s:%d", i ? "," : "", t->sentinels[i].host,
                              t->sentinels[i].port);
    if (o < len)
        snprintf(buf + o, len - o, " (db %d%s%s)", t->db, t->auth ? ", user " : "",
                 t->auth ? (t->user[0] ? t->user : "default") : "");
}

int fleet_redis_auth_argv(const fleet_redis_target *t, const char *argv[3], size_t lens[3]) {
    if (!t->auth) return 0;
    int n = 0;
    argv[n++] = "AUTH";
    if (t->user[0]) argv[n++] = t->user;
    argv[n++] = t->password;
    for (int i = 0; i < n; i++) lens[i] = strlen(argv[i]);
    return n;
}

int fleet_sentinel_reply_addr(const redisReply *rep, fleet_redis_addr *a, char *why,
                              size_t whylen) {
    if (!rep) return fleet_err(why, whylen, "no answer");
    if (rep->type == REDIS_REPLY_ERROR) return fleet_err(why, whylen, "%.120s", rep->str);
    if (rep->type == REDIS_REPLY_NIL) return fleet_err(why, whylen, "it does not know the master");
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
        return fleet_err(why, whylen, "an unexpected answer");
    char hp[FLEET_REDIS_HOST_MAX + 8];
    int n = snprintf(hp, sizeof hp, "%s:%s", rep->element[0]->str, rep->element[1]->str);
    if (n < 0 || (size_t)n >= sizeof hp || parse_hostport(hp, (size_t)n, 0, a) < 0)
        return fleet_err(why, whylen, "an address that is not host:port");
    return 0;
}

int fleet_role_reply_master(const redisReply *rep, char *why, size_t whylen) {
    if (!rep) return fleet_err(why, whylen, "ROLE: no answer");
    if (rep->type == REDIS_REPLY_ERROR) return fleet_err(why, whylen, "ROLE: %.120s", rep->str);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return fleet_err(why, whylen, "ROLE: an unexpected answer");
    if (strcmp(rep->element[0]->str, "master") != 0)
        return fleet_err(why, whylen, "ROLE: the server is a %.20s, not the primary",
                         rep->element[0]->str);
    return 0;
}

static struct timeval ms_tv(long ms) { return (struct timeval){ms / 1000, (ms % 1000) * 1000}; }

int fleet_redis_primary_sync(const fleet_redis_target *t, fleet_redis_addr *a, char *why,
                             size_t whylen) {
    if (!t->nsentinels) {
        *a = t->addr;
        return 0;
    }
    char last[200] = "";
    for (size_t i = 0; i < t->nsentinels; i++) {
        const fleet_redis_addr *s = &t->sentinels[i];
        redisContext *c = redisConnectWithTimeout(s->host, s->port,
                                                  ms_tv(FLEET_SENTINEL_TIMEOUT_MS));
        if (!c || c->err) {
            snprintf(last, sizeof last, "sentinel %.60s:%d: %.100s", s->host, s->port,
                     c ? c->errstr : "out of memory");
            redisFree(c);
            continue;
        }
        redisSetTimeout(c, ms_tv(FLEET_SENTINEL_TIMEOUT_MS));
        /* A refused AUTH shows as the NOAUTH answer to the question. */
        if (t->sentinel_password[0]) {
            redisReply *auth = redisCommand(c, "AUTH %s", t->sentinel_password);
            if (auth) freeReplyObject(auth);
        }
        redisReply *rep = redisCommand(c, "SENTINEL get-master-addr-by-name %s", t->master);
        char w[160];
        int rc = fleet_sentinel_reply_addr(rep, a, w, sizeof w);
        if (rc < 0)
            snprintf(last, sizeof last, "sentinel %.60s:%d: %.100s", s->host, s->port,
                     rep ? w : c->errstr);
        if (rep) freeReplyObject(rep);
        redisFree(c);
        if (rc == 0) return 0;
    }
    return fleet_err(why, whylen, "no sentinel named the primary of '%s' (last: %s)", t->master,
                     last);
}

/* Runs one setup command; NULL reply or an error is a failure with the step's name. */
static int setup_cmd(redisContext *c, const char *step, int argc, const char **argv,
                     const size_t *lens, redisReply **out, char *why, size_t whylen) {
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);
    if (!rep) return fleet_err(why, whylen, "%s: %s", step, c->errstr);
    if (rep->type == REDIS_REPLY_ERROR) {
        fleet_err(why, whylen, "%s: %.150s", step, rep->str);
        freeReplyObject(rep);
        return -1;
    }
    if (out) *out = rep;
    else freeReplyObject(rep);
    return 0;
}

redisContext *fleet_redis_connect_sync(const fleet_redis_target *t, long connect_ms, long io_ms,
                                       char *where, size_t wherelen, bool *refused, char *why,
                                       size_t whylen) {
    fleet_redis_addr a;
    if (refused) *refused = false;
    if (fleet_redis_primary_sync(t, &a, why, whylen) < 0) return NULL;
    if (where) snprintf(where, wherelen, "%s:%d", a.host, a.port);
    redisContext *c = redisConnectWithTimeout(a.host, a.port, ms_tv(connect_ms));
    if (!c || c->err) {
        fleet_err(why, whylen, "connect %s:%d: %s", a.host, a.port,
                  c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, ms_tv(io_ms)) != REDIS_OK || redisEnableKeepAlive(c) != REDIS_OK) {
        fleet_err(why, whylen, "%s", c->errstr);
        goto err;
    }
    const char *argv[3];
    size_t lens[3];
    int n = fleet_redis_auth_argv(t, argv, lens);
    if (n && setup_cmd(c, "AUTH", n, argv, lens, NULL, why, whylen) < 0) goto login;
    if (t->db) {
        char db[8];
        snprintf(db, sizeof db, "%d", t->db);
        const char *sel[] = {"SELECT", db};
        if (setup_cmd(c, "SELECT", 2, sel, (size_t[]){6, strlen(db)}, NULL, why, whylen) < 0)
            goto login;
    }
    if (t->nsentinels) {
        redisReply *rep = NULL;
        const char *role[] = {"ROLE"};
        if (setup_cmd(c, "ROLE", 1, role, (size_t[]){4}, &rep, why, whylen) < 0) goto err;
        int rc = fleet_role_reply_master(rep, why, whylen);
        freeReplyObject(rep);
        if (rc < 0) goto err;
    }
    return c;
login:
    /* A refusal is an answer; a lost connection (no answer) is an outage. */
    if (refused && c->err == 0) *refused = true;
err:
    redisFree(c);
    return NULL;
}
