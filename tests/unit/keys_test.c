/* keys_test: key names, ids and job state names (shared/src/keys.c, id.c, job.c). */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fleet/id.h"
#include "fleet/job.h"
#include "fleet/keys.h"
#include "testlib.h"

TL_TEST(key_names_share_one_hash_tag) {
    fleet_keys k;
    ASSERT_EQ_INT(fleet_keys_init(&k, "fleet"), 0);
    const char *id = "01JDQ7ZK5W3V8X9Y0A1B2C3D4E";
    ASSERT_EQ_STR(fleet_key_job(&k, id).s, "{fleet}:job:01JDQ7ZK5W3V8X9Y0A1B2C3D4E");
    ASSERT_EQ_STR(fleet_key_result(&k, id).s, "{fleet}:job:01JDQ7ZK5W3V8X9Y0A1B2C3D4E:result");
    ASSERT_EQ_STR(fleet_key_job_prefix(&k).s, "{fleet}:job:");
    ASSERT_EQ_STR(fleet_key_stream(&k, "echo").s, "{fleet}:stream:echo");
    ASSERT_EQ_STR(fleet_key_queues(&k).s, "{fleet}:queues");
    ASSERT_EQ_STR(fleet_key_stats(&k).s, "{fleet}:stats");
    ASSERT_EQ_STR(fleet_key_index(&k, "default").s, "{fleet}:tenant:default:submits");
    ASSERT_EQ_STR(fleet_key_workers(&k).s, "{fleet}:workers");
    ASSERT_EQ_STR(fleet_key_worker(&k, "w1").s, "{fleet}:worker:w1");
    ASSERT_EQ_STR(fleet_key_worker_prefix(&k).s, "{fleet}:worker:");
    ASSERT_EQ_STR(fleet_key_events(&k).s, "{fleet}:events");
    ASSERT_EQ_STR(fleet_key_entries(&k, "embed").s, "{fleet}:entries:embed");
    ASSERT_EQ_STR(fleet_key_delayed(&k, "embed").s, "{fleet}:delayed:embed");
    ASSERT_EQ_STR(fleet_key_dlq(&k).s, "{fleet}:dlq");
    ASSERT_EQ_STR(fleet_key_control(&k, "w-1").s, "{fleet}:control:w-1");
    ASSERT_EQ_STR(fleet_key_control_prefix(&k).s, "{fleet}:control:");
    ASSERT_EQ_STR(fleet_key_webhooks(&k).s, "{fleet}:webhooks");
    ASSERT_EQ_STR(fleet_key_delivery(&k, "msg_1").s, "{fleet}:delivery:msg_1");
    ASSERT_EQ_STR(fleet_key_delivery_prefix(&k).s, "{fleet}:delivery:");
    ASSERT_EQ_STR(fleet_key_webhook_retry(&k).s, "{fleet}:webhook_retry");
    ASSERT_EQ_STR(fleet_key_webhook_dlq(&k).s, "{fleet}:webhook_dlq");
    ASSERT_EQ_STR(fleet_key_tenant(&k, "acme").s, "{fleet}:tenant:acme");
    ASSERT_EQ_STR(fleet_key_tenant_prefix(&k).s, "{fleet}:tenant:");
    ASSERT_EQ_STR(fleet_key_tenant_keys(&k, "acme").s, "{fleet}:tenant:acme:keys");
    ASSERT_EQ_STR(fleet_key_tenant_bucket(&k, "acme").s, "{fleet}:tenant:acme:bucket");
    /* The scripts append a tenant's name to these prefixes: the two must agree. */
    ASSERT_EQ_STR(fleet_key_tenant_active(&k, "acme").s, "{fleet}:active:acme");
    ASSERT_EQ_STR(fleet_key_active_prefix(&k).s, "{fleet}:active:");
    ASSERT_EQ_STR(fleet_key_apikey(&k, "ab12").s, "{fleet}:apikey:ab12");
    ASSERT_EQ_STR(fleet_key_idempotency(&k, "acme", "ff").s, "{fleet}:idem:acme:ff");
    ASSERT_EQ_STR(fleet_key_waiting(&k, "echo").s, "{fleet}:waiting:echo");
    ASSERT_EQ_STR(fleet_key_wait(&k, "echo", "acme", 0).s, "{fleet}:wait:echo:acme:0");
    ASSERT_EQ_STR(fleet_key_wait(&k, "echo", "acme", 2).s, "{fleet}:wait:echo:acme:2");
    ASSERT_EQ_STR(fleet_key_wait_prefix(&k).s, "{fleet}:wait:");
}

TL_TEST(prefix_is_validated) {
    fleet_keys k;
    ASSERT_EQ_INT(fleet_keys_init(&k, "team-a.prod_1"), 0);
    ASSERT_EQ_STR(fleet_key_stats(&k).s, "{team-a.prod_1}:stats");
    ASSERT_EQ_INT(fleet_keys_init(&k, ""), -1);
    ASSERT_EQ_INT(fleet_keys_init(&k, "a}b"), -1);
    ASSERT_EQ_INT(fleet_keys_init(&k, "a b"), -1);
    ASSERT_EQ_INT(fleet_keys_init(&k, "123456789012345678901234567890123"), -1);
    ASSERT_EQ_INT(fleet_keys_init(&k, NULL), -1);
}

TL_TEST(ids_sort_by_time_and_validate) {
    uint8_t r0[10] = {0}, r1[10];
    memset(r1, 0xff, sizeof r1);
    char a[27], b[27], c[27];
    fleet_id_format(a, 1000, r1);
    fleet_id_format(b, 1001, r0);
    ASSERT_LT_INT(strcmp(a, b), 0);
    ASSERT_TRUE(fleet_job_id_valid(a));
    ASSERT_TRUE(fleet_job_id_valid(b));
    ASSERT_EQ_STR(b, "00000000Z90000000000000000");
    char prefix[11];
    fleet_id_time_prefix(prefix, 1001);
    ASSERT_EQ_INT(strncmp(prefix, b, 10), 0);
    ASSERT_EQ_INT(fleet_id_new(c), 0);
    ASSERT_TRUE(fleet_job_id_valid(c));
    ASSERT_FALSE(fleet_job_id_valid("01JDQ7ZK5W3V8X9Y0A1B2C3D4"));  /* 25 chars */
    ASSERT_FALSE(fleet_job_id_valid("01JDQ7ZK5W3V8X9Y0A1B2C3D4I")); /* I is not Crockford */
    ASSERT_FALSE(fleet_job_id_valid("81JDQ7ZK5W3V8X9Y0A1B2C3D4E")); /* time overflow */
    ASSERT_FALSE(fleet_job_id_valid("01jdq7zk5w3v8x9y0a1b2c3d4e")); /* lower case */
    ASSERT_FALSE(fleet_job_id_valid("../../etc/passwd"));
    ASSERT_FALSE(fleet_job_id_valid(NULL));
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

/* fleet_id_new takes its random bits from a per-thread buffer filled by getrandom: ids
 * made across several fills are all different, and a forked child does not hand out the
 * bytes its parent goes on to use. */
TL_TEST(ids_stay_unique_across_buffer_fills_and_fork) {
    enum { N = 2000 }; /* 20,000 random bytes: many fills */
    char(*ids)[27] = tl_alloc(sizeof *ids * N);
    for (int i = 0; i < N; i++) ASSERT_EQ_INT(fleet_id_new(ids[i]), 0);
    /* The same millisecond gives the same time prefix: compare the random part. */
    for (int i = 0; i < N; i++) memmove(ids[i], ids[i] + 10, 17);
    qsort(ids, N, sizeof *ids, cmp_id);
    for (int i = 1; i < N; i++) ASSERT_TRUE(strcmp(ids[i - 1], ids[i]) != 0);

    int fd[2];
    ASSERT_EQ_INT(pipe(fd), 0);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        char child[27];
        if (fleet_id_new(child) < 0 || write(fd[1], child, 26) != 26) _exit(1);
        _exit(0);
    }
    close(fd[1]);
    char parent[27], child[27] = {0};
    ASSERT_EQ_INT(fleet_id_new(parent), 0);
    ASSERT_EQ_INT((int)read(fd[0], child, 26), 26);
    close(fd[0]);
    int st;
    ASSERT_EQ_INT(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_TRUE(strcmp(parent + 10, child + 10) != 0);
}

TL_TEST(status_and_priority_names) {
    for (int s = FLEET_STATUS_QUEUED; s <= FLEET_STATUS_CANCELLED; s++)
        ASSERT_EQ_INT(fleet_status_from_string(fleet_status_to_string((fleet_status)s)), s);
    ASSERT_EQ_INT(fleet_status_from_string("done"), FLEET_STATUS_UNKNOWN);
    ASSERT_EQ_INT(fleet_status_from_string("unknown"), FLEET_STATUS_UNKNOWN);
    ASSERT_TRUE(fleet_status_is_final(FLEET_STATUS_CANCELLED));
    ASSERT_FALSE(fleet_status_is_final(FLEET_STATUS_RUNNING));
    ASSERT_EQ_INT(fleet_priority_from_string("high"), FLEET_PRIORITY_HIGH);
    ASSERT_EQ_INT(fleet_priority_from_string("urgent"), FLEET_PRIORITY_INVALID);
    ASSERT_EQ_STR(fleet_priority_to_string(FLEET_PRIORITY_LOW), "low");
    ASSERT_TRUE(fleet_model_name_valid("embed-v2_small"));
    ASSERT_FALSE(fleet_model_name_valid("Embed"));
    ASSERT_FALSE(fleet_model_name_valid("a:b"));
    ASSERT_FALSE(fleet_model_name_valid(""));
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(key_names_share_one_hash_tag),
        TL_CASE(prefix_is_validated),
        TL_CASE(ids_sort_by_time_and_validate),
        TL_CASE(ids_stay_unique_across_buffer_fills_and_fork),
        TL_CASE(status_and_priority_names),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
