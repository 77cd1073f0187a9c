/* redis_target.h: where fleet's Redis is and how to log in to it.
 *
 * Every fleet process reads the same three settings:
 *
 *   FLEET_REDIS_URL              redis://[user:password@]host[:port][/db]
 *                                (":password@" alone: the default user, as requirepass)
 *   FLEET_REDIS_SENTINELS        host:port,host:port,...   (optional)
 *   FLEET_REDIS_SENTINEL_MASTER  the name the sentinels monitor (with the above)
 *   FLEET_REDIS_SENTINEL_PASSWORD the sentinels' own password (requirepass), if any
 *   FLEET_REDIS_CLUSTER          host:port,host:port,...   (optional: seed nodes of a
 *                                Redis Cluster; the URL's host is then unused, its
 *                                credentials are sent to every node, its db must be 0)
 *
 * FLEET_REDIS_OPTIONS is their rows in a program's option table (config.h), so the three
 * programs spell and document them once.
 *
 * With sentinels, the primary's address is asked of them (SENTINEL
 * get-master-addr-by-name, one sentinel after the other) at every connect, and the
 * address they give must answer ROLE "master" before it is used: a sentinel that has not
 * yet seen a failover names the old primary, which may be back as a replica. The URL's
 * host and port are then not used; its credentials and database are.
 *
 * The password is never logged: fleet_redis_target_describe writes the target without it.
 */
#ifndef FLEET_REDIS_TARGET_H
#define FLEET_REDIS_TARGET_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "fleet/config.h"

#define FLEET_SENTINELS_MAX 9
#define FLEET_CLUSTER_SEEDS_MAX 16
#define FLEET_REDIS_HOST_MAX 256
/* A lookup asks each sentinel for at most this long (connect and answer). */
#define FLEET_SENTINEL_TIMEOUT_MS 1000

/* The settings as given (strings point into argv, the environment or the defaults). */
typedef struct fleet_redis_settings {
    const char *url;
    const char *sentinels; /* "" or "host:port,..." */
    const char *master;
    const char *sentinel_password;
    const char *cluster; /* "" or "host:port,..." */
} fleet_redis_settings;

/* The option-table rows of a fleet_redis_settings *s. */
#define FLEET_REDIS_OPTIONS(s)                                                              \
    {"redis-url",                                                                           \
     "FLEET_REDIS_URL",                                                                     \
     FLEET_OPT_STR,                                                                         \
     "redis://127.0.0.1:6379",                                                              \
     "Redis server: redis://[user:password@]host[:port][/db]",                              \
     &(s)->url,                                                                             \
     0,                                                                                     \
     0},                                                                                    \
        {"redis-sentinels",                                                                 \
         "FLEET_REDIS_SENTINELS",                                                           \
         FLEET_OPT_STR,                                                                     \
         "",                                                                                \
         "Sentinels to ask for the primary (host:port,...; the URL's host is then unused)", \
         &(s)->sentinels,                                                                   \
         0,                                                                                 \
         0},                                                                                \
        {"redis-sentinel-master",                                                           \
         "FLEET_REDIS_SENTINEL_MASTER",                                                     \
         FLEET_OPT_STR,                                                                     \
         "",                                                                                \
         "the master name the sentinels monitor",                                           \
         &(s)->master,                                                                      \
         0,                                                                                 \
         0},                                                                                \
        {"redis-sentinel-password",                                                         \
         "FLEET_REDIS_SENTINEL_PASSWORD",                                                   \
         FLEET_OPT_STR,                                                                     \
         "",                                                                                \
         "the sentinels' password (their requirepass), if they have one",                   \
         &(s)->sentinel_password,                                                           \
         0,                                                                                 \
         0},                                                                                \
    {                                                                                       \
        "redis-cluster", "FLEET_REDIS_CLUSTER", FLEET_OPT_STR, "",                          \
            "seed nodes of a Redis Cluster (host:port,...; the URL's host is then unused)", \
            &(s)->cluster, 0, 0                                                             \
    }

typedef struct fleet_redis_addr {
    char host[FLEET_REDIS_HOST_MAX];
    int port;
} fleet_redis_addr;

typedef struct fleet_redis_target {
    fleet_redis_addr addr; /* the URL's host and port (not used with sentinels) */
    int db;
    char user[128];     /* "" with a password: the default user */
    char password[256]; /* percent-decoded */
    bool auth;          /* the URL carries credentials: AUTH on every connection */
    size_t nsentinels;
    fleet_redis_addr sentinels[FLEET_SENTINELS_MAX];
    char master[128];
    char sentinel_password[256]; /* "" : the sentinels need no AUTH */
    size_t nseeds;               /* > 0: a Redis Cluster, found through these nodes */
    fleet_redis_addr seeds[FLEET_CLUSTER_SEEDS_MAX];
} fleet_redis_target;

/* Fills t from the settings (sentinels and master may be NULL or ""; both or neither).
 * Returns 0, or -1 with the reason in err. */
int fleet_redis_target_parse(fleet_redis_target *t, const fleet_redis_settings *s, char *err,
                             size_t errlen);

/* "redis://user:***@host:port/db", "sentinel master NAME via h:p,h:p (db N, user U)" or
 * "cluster via h:p,h:p (user U)". */
void fleet_redis_target_describe(const fleet_redis_target *t, char *buf, size_t len);

/* The AUTH command for t in argv/lens (2 or 3 words); 0 when t has no credentials. */
int fleet_redis_auth_argv(const fleet_redis_target *t, const char *argv[3], size_t lens[3]);

/* Reads a SENTINEL get-master-addr-by-name reply into a. Returns 0, or -1 with why. */
int fleet_sentinel_reply_addr(const redisReply *rep, fleet_redis_addr *a, char *why, size_t whylen);
/* Reads a ROLE reply: 0 for "master", -1 with why otherwise. */
int fleet_role_reply_master(const redisReply *rep, char *why, size_t whylen);

/* Blocking: asks the sentinels in turn (each for at most FLEET_SENTINEL_TIMEOUT_MS) for
 * the primary's address. With no sentinels, the URL's. Returns 0, or -1 with why. */
int fleet_redis_primary_sync(const fleet_redis_target *t, fleet_redis_addr *a, char *why,
                             size_t whylen);

/* Blocking: finds the primary, connects (connect_ms), sets the socket timeout io_ms, turns
 * TCP keepalive on, sends AUTH, SELECT and (with sentinels) checks ROLE. Returns the
 * context and writes "host:port" into where (when not NULL), or NULL with why (which
 * names the step and Redis' answer: "AUTH: WRONGPASS ..."); *refused (when not NULL) then
 * says whether Redis refused the login (AUTH or SELECT: a configuration error, not an
 * outage). */
redisContext *fleet_redis_connect_sync(const fleet_redis_target *t, long connect_ms, long io_ms,
                                       char *where, size_t wherelen, bool *refused, char *why,
                                       size_t whylen);

#endif
