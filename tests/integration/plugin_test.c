/* plugin_test.c: a user's model loaded with --model-plugin (worker/model.h, dlopen): the
 * example plug-in in examples/plugin/ serves jobs through the gateway, and broken plug-ins
 * are refused with a message. */
#include <stdio.h>
#include <string.h>

#include "testlib.h"

static const char *plugin_path(void) {
    return tl_printf("%s/../lib/libfleet_model_bytes.so", tl_bin_dir());
}

TL_TEST(example_plugin_serves_jobs) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MODELS=echo,bytes"}});
    const char *path = tl_bin_path("fleet-worker");
    const char *argv[] = {path, "--model-plugin", plugin_path(), NULL};
    const char *env[] = {tl_printf("FLEET_REDIS_URL=%s", f->redis->url),
                         tl_printf("FLEET_PREFIX=%s", f->prefix), "FLEET_MAX_DELAY_MS=0", NULL};
    tl_spawn(&(tl_spawn_opts){
        .name = "worker-bytes", .path = path, .argv = argv, .env = env, .checked = true});
    const char *id = tl_job_submit(f, "bytes", "{\"text\": \"hello\"}");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    tl_resp *r = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(r, 200);
    /* {"text": "hello"} is 12 bytes of msgpack: fixmap, fixstr "text", fixstr "hello". */
    ASSERT_EQ_INT(tl_jint(r->json, "bytes"), 12);
    tl_resp *m = tl_get(f, "/v1/models");
    ASSERT_STR_CONTAINS(m->body, "\"name\":\"bytes\"");
}

TL_TEST(broken_plugins_are_refused) {
    const char *path = tl_bin_path("fleet-worker");
    /* Not a shared object at all. */
    const char *bogus = tl_printf("%s/bogus.so", tl_tmpdir());
    FILE *fp = fopen(bogus, "w");
    ASSERT_NOT_NULL(fp);
    fputs("not an ELF file\n", fp);
    fclose(fp);
    const char *a1[] = {path, "--model-plugin", bogus, NULL};
    tl_cmd_result r1 = tl_run_cmd("worker-bogus", path, a1, NULL, TL_WAIT_MS);
    ASSERT_EQ_INT(r1.exit_code, 2); /* a setting that cannot work */
    ASSERT_STR_CONTAINS(tl_printf("%s%s", r1.out, r1.err), "cannot load model plugin");
    /* A model name that is not the plug-in's. */
    const char *a2[] = {path, "--model-plugin", plugin_path(), "--model", "echo", NULL};
    tl_cmd_result r2 = tl_run_cmd("worker-mismatch", path, a2, NULL, TL_WAIT_MS);
    ASSERT_EQ_INT(r2.exit_code, 2);
    ASSERT_STR_CONTAINS(tl_printf("%s%s", r2.out, r2.err), "plug-in's model is bytes");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(example_plugin_serves_jobs),
        TL_CASE(broken_plugins_are_refused),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
