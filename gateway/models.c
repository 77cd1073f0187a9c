/* models.c: the models this gateway accepts jobs for (models.h). */
#include "models.h"

#include <event2/event.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/log.h"
#include "fleet/state.h"
#include "http.h"
#include "redis.h"

struct gw_models {
    gw *g;
    json_t *allow;      /* FLEET_MODELS: name -> true, or NULL: no allowlist */
    json_t *registered; /* name -> record (JSON object) */
    json_t *live;       /* name -> live workers */
    json_t *names;      /* every name of the three: name -> true */
    bool loaded;
    bool reading, again;
    long long read_ms;   /* monotonic ms when the last read was sent (0: never) */
    long retry_ms;       /* the wait before trying a failed read again (backs off) */
    fleet_cmd cmd;       /* the read in flight */
    struct event *timer; /* a failed read's retry */
};

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A read when the last one is older than max_age_ms: what a request does that uses the
 * copy, so that an idle gateway reads nothing (models.h). */
static void read_if_older(gw_models *m, long long max_age_ms) {
    if (m->loaded && !m->reading && mono_ms() - m->read_ms >= max_age_ms) gw_models_refresh(m);
}

/* ------------------------------------------------------------ the copy -------------- */

static void rebuild_names(gw_models *m) {
    json_t *names = json_object();
    const json_t *sets[3] = {m->allow, m->registered, m->live};
    for (int i = 0; i < 3; i++) {
        const char *k;
        json_t *v;
        if (sets[i])
            json_object_foreach((json_t *)sets[i], k, v) json_object_set_new(names, k, json_true());
    }
    json_decref(m->names);
    m->names = names;
}

void gw_models_update(gw_models *m, const redisReply *workers, const redisReply *records) {
    json_t *reg = json_object(), *live = json_object();
    for (size_t i = 0; i + 1 < records->elements; i += 2) {
        const char *name = records->element[i]->str;
        if (!fleet_model_name_valid(name)) continue; /* written by hand: not a model name */
        /* A record that is no JSON object (written by hand) still registers the model. */
        json_t *rec = json_loadb(records->element[i + 1]->str, records->element[i + 1]->len, 0,
                                 NULL);
        if (!json_is_object(rec)) {
            json_decref(rec);
            rec = json_object();
        }
        json_object_set_new(reg, name, rec);
    }
    for (size_t i = 0; i < workers->elements; i++) {
        const char *model = workers->element[i]->element[1]->str;
        if (!fleet_model_name_valid(model)) continue;
        json_t *n = json_object_get(live, model);
        json_object_set_new(live, model, json_integer(n ? json_integer_value(n) + 1 : 1));
    }
    json_decref(m->registered);
    json_decref(m->live);
    m->registered = reg;
    m->live = live;
    m->loaded = true;
    rebuild_names(m);
}

bool gw_models_loaded(const gw_models *m) { return m->loaded; }
bool gw_models_allowlist(const gw_models *m) { return m->allow != NULL; }

bool gw_models_accepts(const gw_models *m, const char *name) {
    if (m->allow) return json_object_get(m->allow, name) != NULL;
    return json_object_get(m->registered, name) || json_object_get(m->live, name);
}

const json_t *gw_models_record(const gw_models *m, const char *name) {
    return json_object_get(m->registered, name);
}

int gw_models_live_workers(const gw_models *m, const char *name) {
    return (int)json_integer_value(json_object_get(m->live, name));
}

const json_t *gw_models_names(const gw_models *m) { return m->names; }

/* Appends the accepted models' names to buf, comma-separated, as far as they fit. */
static void accepted_list(const gw_models *m, char *buf, size_t len) {
    size_t n = 0;
    buf[0] = '\0';
    const char *k;
    json_t *v;
    json_object_foreach(m->names, k, v) {
        if (!gw_models_accepts(m, k)) continue;
        size_t kl = strlen(k);
        if (n + kl + 5 >= len) {
            snprintf(buf + n, len - n, "%s...", n ? "," : "");
            return;
        }
        n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "", k);
    }
}

int gw_models_check(gw_models *m, const char *name, gw_problem *p) {
    if (gw_models_accepts(m, name)) {
        read_if_older(m, GW_MODELS_REFRESH_MS);
        return 0;
    }
    /* A model this copy does not know may have come since (a worker of the previous
     * release, which announces nothing): read again, for the next submit. */
    read_if_older(m, GW_MODELS_MISS_MS);
    *p = (gw_problem){.status = 422, .slug = "unknown-model", .title = "Unknown model"};
    char list[384];
    accepted_list(m, list, sizeof list);
    if (list[0])
        snprintf(p->detail, sizeof p->detail, "model '%s' is not served here; models: %s", name,
                 list);
    else
        snprintf(p->detail, sizeof p->detail,
                 "model '%s' is not served here; no model is registered yet (fleetctl model "
                 "add, or start a worker of the model)",
                 name);
    return -1;
}

void gw_models_note(gw_req *r, const char *name, json_t *body) {
    if (gw_models_live_workers(r->g->models, name) > 0) return;
    gw_add_header(r, "Fleet-No-Worker", "true");
    if (!body) return;
    json_object_set_new(body, "no_worker", json_true());
    json_object_set_new(body, "notice",
                        json_sprintf("no worker serves model '%s' yet: the job waits in its "
                                     "queue until one starts",
                                     name));
}

/* ------------------------------------------------------------ reading --------------- */

/* A read that could not be sent (Redis not ready) or got no usable answer is tried again
 * after retry_ms, from GW_MODELS_RETRY_MS doubling up to GW_MODELS_REFRESH_MS: before the
 * first read the gateway is not ready, and after it a wake-up said that something changed.
 * No timer runs while reads succeed: reads are made by wake-ups and requests only. */
static void retry_later(gw_models *m) {
    long ms = m->retry_ms;
    m->retry_ms = ms * 2 > GW_MODELS_REFRESH_MS ? GW_MODELS_REFRESH_MS : ms * 2;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(m->timer, &tv);
}

static void on_read(redisReply *rep, void *arg) {
    gw_models *m = arg;
    m->reading = false;
    const redisReply *workers, *stats, *records;
    if (!rep || fleet_state_models_reply(rep, &workers, &stats, &records) < 0) {
        /* Keep what we had. No reply: Redis went (or the gateway is stopping: the timer
         * is freed before it could fire). Another answer: logged once per run of them. */
        if (rep && m->retry_ms == GW_MODELS_RETRY_MS)
            fleet_log(FLEET_LOG_WARN,
                      "models: unexpected answer to the models script; trying again", "reply",
                      rep->type == REDIS_REPLY_ERROR ? rep->str : "not the models reply", NULL);
        retry_later(m);
        return;
    }
    gw_models_update(m, workers, records);
    m->retry_ms = GW_MODELS_RETRY_MS;
    if (m->again) {
        m->again = false;
        gw_models_refresh(m);
    }
}

void gw_models_refresh(gw_models *m) {
    if (m->reading) {
        m->again = true;
        return;
    }
    fleet_state_models(&m->g->keys, false, &m->cmd);
    if (gw_redis_script(m->g->redis, &m->cmd, on_read, m) < 0) {
        retry_later(m); /* Redis not ready */
        return;
    }
    m->reading = true;
    m->read_ms = mono_ms();
}

void gw_models_wake(void *arg) { gw_models_refresh(arg); }

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gw_models_refresh(arg);
}

/* ------------------------------------------------------------ life ------------------ */

gw_models *gw_models_new(gw *g, const char *allowlist, char *err, size_t errlen) {
    gw_models *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->g = g;
    m->registered = json_object();
    m->live = json_object();
    m->names = json_object();
    m->timer = evtimer_new(g->base, on_tick, m);
    if (!m->registered || !m->live || !m->names || !m->timer) goto oom;
    for (const char *p = allowlist; *p;) {
        size_t n = strcspn(p, ",");
        if (n > 0) {
            char name[FLEET_MODEL_MAX + 1];
            if (n > FLEET_MODEL_MAX) {
                snprintf(err, errlen, "FLEET_MODELS: a name is longer than %d characters",
                         FLEET_MODEL_MAX);
                goto err;
            }
            memcpy(name, p, n);
            name[n] = '\0';
            if (!fleet_model_name_valid(name)) {
                snprintf(err, errlen,
                         "FLEET_MODELS: '%s' is not a valid model name (1-64 of a-z 0-9 _ -)",
                         name);
                goto err;
            }
            if (!m->allow && !(m->allow = json_object())) goto oom;
            json_object_set_new(m->allow, name, json_true());
        }
        p += n;
        if (*p == ',') p++;
    }
    rebuild_names(m);
    m->retry_ms = GW_MODELS_RETRY_MS;
    retry_later(m); /* the first read, once Redis is ready */
    return m;
oom:
    snprintf(err, errlen, "out of memory");
err:
    gw_models_free(m);
    return NULL;
}

void gw_models_free(gw_models *m) {
    if (!m) return;
    if (m->timer) event_free(m->timer);
    json_decref(m->allow);
    json_decref(m->registered);
    json_decref(m->live);
    json_decref(m->names);
    free(m);
}
