/* shards_test.c: the shard table (shared/src/shards.c): its text, ids that carry their
 * shard, the order of ids across shards, the shares of a limit and tags picked per master. */
#include <string.h>

#include "fleet/cluster.h"
#include "fleet/id.h"
#include "fleet/job.h"
#include "fleet/shards.h"
#include "testlib.h"

static char why[200];

TL_TEST(no_table_is_one_shard_on_the_control_tag) {
    fleet_shards s;
    ASSERT_EQ_INT(fleet_shards_init(&s, "fleet"), 0);
    ASSERT_EQ_INT(fleet_shards_parse(&s, NULL, why, sizeof why), 0);
    ASSERT_EQ_INT((int)s.n, 1);
    ASSERT_EQ_INT((int)s.n_active, 1);
    ASSERT_EQ_STR(s.shard[0].keys.tag, "{fleet}");
    ASSERT_EQ_STR(s.control.tag, "{fleet}");
    ASSERT_EQ_STR(fleet_key_job(&s.shard[0].keys, "01ABC").s, "{fleet}:job:01ABC");
    /* Every id made before shards existed starts with '0': shard 0. */
    char id[27];
    ASSERT_EQ_INT(fleet_id_new(id), 0);
    ASSERT_EQ_INT(fleet_shards_of_id(&s, id), 0);
    ASSERT_TRUE(fleet_shards_keys_of_id(&s, id) == &s.shard[0].keys);
    id[0] = '3';
    ASSERT_EQ_INT(fleet_shards_of_id(&s, id), -1); /* names a shard this fleet lacks */
    ASSERT_TRUE(fleet_shards_keys_of_id(&s, id) == NULL);
}

TL_TEST(table_text_round_trips) {
    fleet_shards s;
    fleet_shards_init(&s, "fleet");
    ASSERT_EQ_INT(fleet_shards_parse(&s, "0:-:active 1:5:active  2:9:draining", why, sizeof why),
                  0);
    ASSERT_EQ_INT((int)s.n, 3);
    ASSERT_EQ_INT((int)s.n_active, 2);
    ASSERT_EQ_INT(s.active[0], 0);
    ASSERT_EQ_INT(s.active[1], 1);
    ASSERT_EQ_STR(s.shard[1].keys.tag, "{fleet:5}");
    ASSERT_EQ_STR(s.shard[2].keys.tag, "{fleet:9}");
    ASSERT_TRUE(s.shard[2].draining);
    /* A shard's builder names its own keys on its tag and the fleet's global ones on the
     * control tag. */
    const fleet_keys *k = &s.shard[1].keys;
    ASSERT_EQ_STR(fleet_key_job(k, "1X").s, "{fleet:5}:job:1X");
    ASSERT_EQ_STR(fleet_key_stream(k, "m").s, "{fleet:5}:stream:m");
    ASSERT_EQ_STR(fleet_key_index(k, "acme").s, "{fleet:5}:tenant:acme:submits");
    ASSERT_EQ_STR(fleet_key_index_prefix(k).s, "{fleet:5}:tenant:");
    ASSERT_EQ_STR(fleet_key_tenant_bucket(k, "acme").s, "{fleet:5}:tenant:acme:bucket");
    ASSERT_EQ_STR(fleet_key_webhooks(k).s, "{fleet:5}:webhooks");
    ASSERT_EQ_STR(fleet_key_events(k).s, "{fleet}:events");
    ASSERT_EQ_STR(fleet_key_models(k).s, "{fleet}:models");
    ASSERT_EQ_STR(fleet_key_tenant(k, "acme").s, "{fleet}:tenant:acme");
    ASSERT_EQ_STR(fleet_key_tenant_prefix(k).s, "{fleet}:tenant:");
    ASSERT_EQ_STR(fleet_key_apikey(k, "ab").s, "{fleet}:apikey:ab");
    ASSERT_EQ_STR(fleet_key_workers(k).s, "{fleet}:workers");
    ASSERT_EQ_STR(fleet_key_control(k, "w1").s, "{fleet}:control:w1");
    ASSERT_EQ_STR(fleet_key_metrics(k, "m").s, "{fleet}:metrics:m");
    ASSERT_EQ_STR(fleet_key_shards(k).s, "{fleet}:shards");
    char text[FLEET_SHARDS_TEXT_MAX];
    ASSERT_TRUE(fleet_shards_format(&s, text, sizeof text) > 0);
    ASSERT_EQ_STR(text, "0:-:active 1:5:active 2:9:draining");
    /* Without shard 0: its ids name no shard. */
    ASSERT_EQ_INT(fleet_shards_parse(&s, "1:5:active 2:9:active", why, sizeof why), 0);
    ASSERT_TRUE(!s.shard[0].used);
    ASSERT_EQ_INT(fleet_shards_of_id(&s, "01ARZ3NDEKTSV4RRFFQ69G5FAV"), -1);
    ASSERT_EQ_INT(fleet_shards_of_id(&s, "21ARZ3NDEKTSV4RRFFQ69G5FAV"), 2);
    ASSERT_EQ_INT(fleet_shards_add(&s, 3, 11), 0);
    ASSERT_EQ_INT(fleet_shards_add(&s, 3, 12), -1); /* taken */
    ASSERT_EQ_INT(fleet_shards_add(&s, 4, 11), -1); /* tag taken */
    ASSERT_EQ_INT(fleet_shards_set_draining(&s, 1, true), 0);
    ASSERT_EQ_INT(fleet_shards_set_draining(&s, 2, true), 0);
    ASSERT_EQ_INT(fleet_shards_set_draining(&s, 3, true), -1); /* the last active one */
    ASSERT_EQ_INT((int)s.n_active, 1);
    ASSERT_TRUE(fleet_shards_format(&s, text, sizeof text) > 0);
    ASSERT_EQ_STR(text, "1:5:draining 2:9:draining 3:11:active");
}

TL_TEST(bad_tables_are_refused_and_change_nothing) {
    static const char *bad[] = {
        "0:-:active 0:-:active",
        "1:5:active 2:5:active",
        "8:1:active",
        "x:1:active",
        "1:-:active",
        "0:3:active",
        "1:5:paused",
        "1:5",
        "1:5:draining",
        "1::active",
        "-1:2:active",
    };
    fleet_shards s;
    fleet_shards_init(&s, "fleet");
    ASSERT_EQ_INT(fleet_shards_parse(&s, "0:-:active 1:7:active", why, sizeof why), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why[0] = '\0';
        ASSERT_EQ_INT(fleet_shards_parse(&s, bad[i], why, sizeof why), -1);
        ASSERT_TRUE(why[0] != '\0');
        ASSERT_EQ_INT((int)s.n, 2);
        ASSERT_EQ_STR(s.shard[1].keys.tag, "{fleet:7}");
    }
}

TL_TEST(ids_carry_their_shard_and_sort_by_time_across_shards) {
    fleet_shards s;
    fleet_shards_init(&s, "fleet");
    ASSERT_EQ_INT(fleet_shards_parse(&s, "0:-:active 1:4:active 7:40:active", why, sizeof why), 0);
    uint8_t rnd[10] = {0};
    char a[27], b[27];
    fleet_id_format(a, 1000, rnd);
    fleet_id_format(b, 2000, rnd);
    fleet_id_set_shard(a, 7);
    fleet_id_set_shard(b, 1);
    ASSERT_EQ_INT(a[0], '7');
    ASSERT_EQ_INT(b[0], '1');
    ASSERT_EQ_INT(fleet_shards_of_id(&s, a), 7);
    ASSERT_TRUE(fleet_job_id_valid(a));
    ASSERT_EQ_INT(fleet_shards_of_id(&s, b), 1);
    ASSERT_EQ_STR(fleet_shards_keys_of_id(&s, a)->tag, "{fleet:40}");
    ASSERT_TRUE(strcmp(a, b) > 0);            /* as plain strings the shard decides */
    ASSERT_TRUE(fleet_id_cmp_time(a, b) < 0); /* by time: a was made first */
    ASSERT_TRUE(fleet_id_cmp_time(b, a) > 0);
    ASSERT_EQ_INT(fleet_id_cmp_time(a, a), 0);
    ASSERT_EQ_INT(fleet_shards_of_id(&s, "I1ARZ3NDEKTSV4RRFFQ69G5FAV"), -1); /* not Crockford */
    ASSERT_EQ_INT(fleet_shards_of_id(&s, "Z1ARZ3NDEKTSV4RRFFQ69G5FAV"), -1); /* past shard 7 */
}

TL_TEST(shares_add_up_to_the_limit) {
    for (long long total = 0; total <= 40; total++)
        for (size_t n = 1; n <= 7; n++)
            for (uint32_t salt = 0; salt < 9; salt++) {
                long long sum = 0, lo = total, hi = 0;
                for (size_t i = 0; i < n; i++) {
                    long long v = fleet_shard_share(total, n, i, salt);
                    sum += v;
                    if (v < lo) lo = v;
                    if (v > hi) hi = v;
                }
                ASSERT_EQ_INT((int)sum, (int)total);
                ASSERT_TRUE(hi - lo <= 1);
            }
    /* A limit of 1 over three shards lands on a shard that the salt picks. */
    int seen[3] = {0};
    for (uint32_t salt = 0; salt < 3; salt++)
        for (size_t i = 0; i < 3; i++) seen[i] += (int)fleet_shard_share(1, 3, i, salt);
    ASSERT_EQ_INT(seen[0], 1);
    ASSERT_EQ_INT(seen[1], 1);
    ASSERT_EQ_INT(seen[2], 1);
}

/* Three masters with even ranges, as redis-cli --cluster create makes them. */
static int even_master(int slot, void *arg) {
    (void)arg;
    return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2;
}

TL_TEST(free_tags_skip_the_used_ones_and_land_on_their_master) {
    fleet_shards s;
    fleet_shards_init(&s, "fleet");
    ASSERT_EQ_INT(fleet_shards_parse(&s, "0:-:active 1:1:active 2:2:active", why, sizeof why), 0);
    ASSERT_EQ_INT((int)fleet_shards_free_tag(&s, 1, NULL, NULL, 0), 3);
    ASSERT_EQ_INT((int)fleet_shards_free_tag(&s, 5, NULL, NULL, 0), 5);
    for (int m = 0; m < 3; m++) {
        long tag = fleet_shards_free_tag(&s, 1, even_master, NULL, m);
        ASSERT_TRUE(tag >= 3);
        char key[40];
        int len = snprintf(key, sizeof key, "{fleet:%ld}", tag);
        ASSERT_EQ_INT(even_master(fleet_key_slot(key, (size_t)len), NULL), m);
        for (long t = 3; t < tag; t++) { /* the smallest such tag */
            len = snprintf(key, sizeof key, "{fleet:%ld}", t);
            ASSERT_TRUE(even_master(fleet_key_slot(key, (size_t)len), NULL) != m);
        }
    }
    ASSERT_EQ_INT((int)fleet_shards_free_tag(&s, 1, even_master, NULL, 7), -1); /* no master 7 */
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(no_table_is_one_shard_on_the_control_tag),
        TL_CASE(table_text_round_trips),
        TL_CASE(bad_tables_are_refused_and_change_nothing),
        TL_CASE(ids_carry_their_shard_and_sort_by_time_across_shards),
        TL_CASE(shares_add_up_to_the_limit),
        TL_CASE(free_tags_skip_the_used_ones_and_land_on_their_master),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
