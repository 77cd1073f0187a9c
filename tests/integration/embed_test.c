/* embed_test.c: the built-in embed model (worker/models/embed.c) serving jobs through the
 * gateway on the tiny generated BERT of tests/lib/tl_tiny_bert.c: vectors of the model's
 * size, normalised, the same for a text alone or in a list; bad inputs and a worker
 * without a model directory are refused with a message. The CUDA backend is a module
 * (fleet-embed-cuda.so), the CPU backend another (fleet-embed-cpu.so), each opened only
 * when the embed model loads on it: fleet-worker links neither OpenBLAS nor a CUDA
 * library, an echo worker maps neither, a CPU worker no CUDA library, and a missing CUDA
 * module leaves auto on the CPU with a warning that says why. */
#include <elf.h>
#include <math.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"
#include "tl_tiny_bert.h"

/* A fleet whose gateway accepts embed, and one embed worker on a fresh tiny model, on
 * --backend backend (NULL: the default), with one more environment entry (or NULL); the
 * worker is f->workers[0]. */
static tl_fleet *start_embed_fleet_on(const char *backend, const char *extra_env) {
    const char *dir = tl_tiny_bert_write("model", false, "");
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MODELS=echo,embed"}});
    const char *path = tl_bin_path("fleet-worker");
    const char *argv[] = {path, "--model", "embed", "--model-args", dir, NULL, NULL, NULL};
    if (backend) {
        argv[5] = "--backend";
        argv[6] = backend;
    }
    const char *env[] = {tl_printf("FLEET_REDIS_URL=%s", f->redis->url),
                         tl_printf("FLEET_PREFIX=%s", f->prefix), "FLEET_MAX_DELAY_MS=0", extra_env,
                         NULL};
    f->workers[f->nworkers++] = tl_spawn(&(tl_spawn_opts){
        .name = "worker-embed", .path = path, .argv = argv, .env = env, .checked = true});
    return f;
}

static tl_fleet *start_embed_fleet(void) { return start_embed_fleet_on(NULL, NULL); }

/* POST /v1/jobs with Prefer: wait=30; asserts 200 and returns the job. */
static json_t *submit_wait(tl_fleet *f, const char *input_json) {
    tl_req req = {.method = "POST",
                  .body = tl_printf("{\"model\": \"embed\", \"input\": %s}", input_json),
                  .timeout_ms = 40000};
    req.headers[0] = "Prefer: wait=30";
    tl_resp *r = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_NOT_NULL(r->json);
    return r->json;
}

/* The embeddings of a succeeded job's result, checked for shape; n vectors of dim. */
static json_t *embeddings_of(const json_t *job, size_t n) {
    if (strcmp(tl_jstr(job, "status") ? tl_jstr(job, "status") : "", "succeeded") != 0)
        FAILF("job did not succeed: %s", tl_json_text(job));
    ASSERT_EQ_STR(tl_jstr(job, "result.model"), "embed");
    ASSERT_EQ_INT(tl_jint(job, "result.dim"), TL_TINY_HIDDEN);
    ASSERT_GT_INT(tl_jint(job, "result.tokens"), 0);
    json_t *e = tl_jget(job, "result.embeddings");
    ASSERT_TRUE(json_is_array(e));
    ASSERT_EQ_INT(json_array_size(e), n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(e, i);
        ASSERT_TRUE(json_is_array(v));
        ASSERT_EQ_INT(json_array_size(v), TL_TINY_HIDDEN);
        double norm = 0;
        for (size_t d = 0; d < TL_TINY_HIDDEN; d++) {
            json_t *x = json_array_get(v, d);
            ASSERT_TRUE(json_is_number(x));
            norm += json_number_value(x) * json_number_value(x);
        }
        if (fabs(sqrt(norm) - 1.0) >= 1e-3)
            FAILF("embedding %zu: L2 norm %.7f, not 1", i, sqrt(norm));
        worst = fmax(worst, fabs(sqrt(norm) - 1.0));
    }
    tl_log("%zu embeddings, L2 norms within %.2g of 1", n, worst);
    return e;
}

static double max_abs_diff(const json_t *a, const json_t *b) {
    double m = 0;
    for (size_t d = 0; d < TL_TINY_HIDDEN; d++)
        m = fmax(m, fabs(json_number_value(json_array_get(a, d)) -
                         json_number_value(json_array_get(b, d))));
    return m;
}

TL_TEST(embeds_texts_in_input_order) {
    tl_fleet *f = start_embed_fleet();
    json_t *job = submit_wait(f, "{\"texts\": [\"hello world\", \"a b c\"]}");
    json_t *both = embeddings_of(job, 2);
    /* Progress counts texts. */
    ASSERT_EQ_INT(tl_jint(job, "progress.done"), 2);
    ASSERT_EQ_INT(tl_jint(job, "progress.total"), 2);
    /* [CLS] hello world [SEP] and [CLS] a b c [SEP]. */
    ASSERT_EQ_INT(tl_jint(submit_wait(f, "{\"texts\": [\"hello world\", \"a b c\"]}"),
                          "result.tokens"),
                  9);
    json_t *hello = embeddings_of(submit_wait(f, "{\"text\": \"hello world\"}"), 1);
    json_t *abc = embeddings_of(submit_wait(f, "{\"texts\": [\"a b c\"]}"), 1);
    double d0 = max_abs_diff(json_array_get(both, 0), json_array_get(hello, 0));
    double d1 = max_abs_diff(json_array_get(both, 1), json_array_get(abc, 0));
    tl_log("alone vs in a list: %.3g, %.3g", d0, d1);
    ASSERT_TRUE(d0 <= 1e-5);
    ASSERT_TRUE(d1 <= 1e-5);
    /* Different texts give different vectors; the uppercase text is lowercased. */
    ASSERT_TRUE(max_abs_diff(json_array_get(both, 0), json_array_get(both, 1)) > 1e-3);
    json_t *upper = embeddings_of(submit_wait(f, "{\"text\": \"HELLO World\"}"), 1);
    ASSERT_TRUE(max_abs_diff(json_array_get(upper, 0), json_array_get(hello, 0)) <= 1e-5);

    /* More texts than one chunk (32), of mixed lengths, come back in input order. */
    char *many = tl_printf("[");
    for (int i = 0; i < 40; i++)
        many = tl_printf("%s%s\"%s\"", many, i ? ", " : "",
                         i % 3 == 0   ? "hello world"
                         : i % 3 == 1 ? "a b c"
                                      : "the quick brown fox");
    json_t *e = embeddings_of(submit_wait(f, tl_printf("{\"texts\": %s]}", many)), 40);
    for (size_t i = 0; i < 40; i++) {
        const json_t *want = i % 3 == 0   ? json_array_get(hello, 0)
                             : i % 3 == 1 ? json_array_get(abc, 0)
                                          : json_array_get(e, 2);
        if (max_abs_diff(json_array_get(e, i), want) > 1e-5)
            FAILF("embedding %zu of 40 is not its text's vector", i);
    }
    tl_resp *m = tl_get(f, "/v1/models");
    ASSERT_STR_CONTAINS(m->body, "\"name\":\"embed\"");
}

/* A float32 from 4 little-endian bytes. */
static float f32_le(const char *b) {
    const unsigned char *u = (const unsigned char *)b;
    uint32_t x = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* The model stores each embedding as one float32 array (msgpack ext type 1); a msgpack
 * client gets it as a bin of dim*4 little-endian bytes, a JSON client as numbers, and the
 * two hold the same floats. */
TL_TEST(msgpack_result_holds_float32_bins) {
    tl_fleet *f = start_embed_fleet();
    json_t *job = submit_wait(f,
                              "{\"texts\": [\"hello world\", \"a b c\", \"the quick brown fox\"]}");
    json_t *waited = embeddings_of(job, 3);
    const char *id = tl_jstr(job, "id");
    /* GET .../result: the same shape, every float32 at full precision. (The job object of
     * Prefer: wait prints its reals with 6 significant digits, result included: compared
     * below within that.) */
    tl_resp *js = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(js, 200);
    json_t *e = embeddings_of(tl_json_own(json_pack("{s:s, s:O}", "status", "succeeded", "result",
                                                    js->json)),
                              3);

    tl_req want = {.headers = {"Accept: application/msgpack"}};
    tl_resp *mp = tl_request(f, tl_printf("/v1/jobs/%s/result", id), want);
    ASSERT_HTTP_STATUS(mp, 200);
    ASSERT_STR_CONTAINS(mp->content_type, "application/msgpack");
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    ASSERT_EQ_INT(msgpack_unpack_next(&up, mp->body, mp->body_len, &off), MSGPACK_UNPACK_SUCCESS);
    ASSERT_EQ_INT(off, mp->body_len);
    ASSERT_EQ_INT(up.data.type, MSGPACK_OBJECT_MAP);
    const msgpack_object *emb = NULL;
    for (uint32_t i = 0; i < up.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &up.data.via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 10 &&
            memcmp(kv->key.via.str.ptr, "embeddings", 10) == 0)
            emb = &kv->val;
    }
    ASSERT_NOT_NULL(emb);
    ASSERT_EQ_INT(emb->type, MSGPACK_OBJECT_ARRAY);
    ASSERT_EQ_INT(emb->via.array.size, 3);
    for (uint32_t i = 0; i < 3; i++) {
        const msgpack_object *v = &emb->via.array.ptr[i];
        if (v->type != MSGPACK_OBJECT_BIN)
            FAILF("embedding %u is msgpack type %d, not bin", i, (int)v->type);
        ASSERT_EQ_INT(v->via.bin.size, TL_TINY_HIDDEN * 4);
        const json_t *row = json_array_get(e, i);
        for (size_t d = 0; d < TL_TINY_HIDDEN; d++) {
            float x = f32_le(v->via.bin.ptr + 4 * d);
            double want_d = json_number_value(json_array_get(row, d));
            if ((double)x != want_d) /* the JSON number is the float32 widened, exactly */
                FAILF("embedding %u[%zu]: bin %.9g, JSON %.17g", i, d, (double)x, want_d);
            double w = json_number_value(json_array_get(json_array_get(waited, i), d));
            if (w != (double)x)
                FAILF("embedding %u[%zu]: bin %.9g, Prefer: wait %.17g", i, d, (double)x, w);
        }
    }
    msgpack_unpacked_destroy(&up);
    /* Stored as ext-1: dim*4 bytes plus a small header per vector, not 5 bytes a float. */
    tl_log("msgpack result %zu bytes, JSON result %zu bytes", mp->body_len, js->body_len);
    ASSERT_TRUE(mp->body_len < 3 * (TL_TINY_HIDDEN * 4 + 8) + 64);
}

TL_TEST(bad_inputs_fail_with_a_message) {
    tl_fleet *f = start_embed_fleet();
    static const struct {
        const char *input, *error;
    } cases[] = {
        {"{\"txt\": 1}", "input must be {\"text\": ...} or {\"texts\": [...]}"},
        {"{\"text\": 1}", "input must be {\"text\": ...} or {\"texts\": [...]}"},
        {"{\"text\": \"a\", \"texts\": [\"b\"]}",
         "input must be {\"text\": ...} or {\"texts\": [...]}"},
        {"{\"texts\": []}", "input.texts must hold 1 to 1024 strings, got 0"},
        {"{\"texts\": [\"a\", 2]}", "input.texts[1] must be a string"},
    };
    for (size_t i = 0; i < TL_COUNT(cases); i++) {
        json_t *job = submit_wait(f, cases[i].input);
        ASSERT_EQ_STR(tl_jstr(job, "status"), "failed");
        ASSERT_EQ_STR(tl_jstr(job, "error"), cases[i].error);
        ASSERT_NULL(tl_jget(job, "result"));
    }
    /* A text over 100,000 bytes. */
    char *big = tl_alloc(100002);
    memset(big, 'a', 100001);
    json_t *job = submit_wait(f, tl_printf("{\"text\": \"%s\"}", big));
    ASSERT_EQ_STR(tl_jstr(job, "status"), "failed");
    ASSERT_EQ_STR(tl_jstr(job, "error"), "input.text is 100001 bytes; at most 100000");
    /* The worker still serves after refusing. */
    embeddings_of(submit_wait(f, "{\"text\": \"hello\"}"), 1);
}

TL_TEST(worker_without_a_model_directory_is_refused) {
    const char *path = tl_bin_path("fleet-worker");
    const char *a1[] = {path, "--model", "embed", NULL};
    tl_cmd_result r1 = tl_run_cmd("worker-noargs", path, a1, NULL, TL_WAIT_MS);
    /* load() failing is a start-up failure of the worker (worker/main.c: exit status 1). */
    ASSERT_EQ_INT(r1.exit_code, 1);
    ASSERT_STR_CONTAINS(tl_printf("%s%s", r1.out, r1.err),
                        "embed needs the model directory in --model-args");
    tl_log("without --model-args: exit %d", r1.exit_code);
    /* A directory without a model names what is missing. */
    const char *a2[] = {path, "--model", "embed", "--model-args", tl_tmpdir(), NULL};
    tl_cmd_result r2 = tl_run_cmd("worker-nomodel", path, a2, NULL, TL_WAIT_MS);
    ASSERT_EQ_INT(r2.exit_code, 1);
    ASSERT_STR_CONTAINS(tl_printf("%s%s", r2.out, r2.err), "vocab.txt");
}

/* --backend: an unknown one is a settings error (exit 2); cuda without its module (a build
 * without the CUDA toolkit, or FLEET_CUDA_MODULE naming no file) fails the load (exit 1)
 * with dlopen's reason, and with the module but no visible GPU (CUDA_VISIBLE_DEVICES
 * empty) it fails saying so; echo has no cuda backend at all. */
TL_TEST(backend_choice_is_checked) {
    const char *dir = tl_tiny_bert_write("model", false, "");
    const char *path = tl_bin_path("fleet-worker");
    const char *a1[] = {path, "--model", "embed", "--backend", "gpu", "--model-args", dir, NULL};
    tl_cmd_result r1 = tl_run_cmd("worker-gpu", path, a1, NULL, TL_WAIT_MS);
    ASSERT_EQ_INT(r1.exit_code, 2);
    ASSERT_STR_CONTAINS(tl_printf("%s%s", r1.out, r1.err), "model 'embed' has no backend 'gpu'");

    const char *a2[] = {path, "--model", "embed", "--backend", "cuda", "--model-args", dir, NULL};
    const char *env[] = {"CUDA_VISIBLE_DEVICES=", NULL};
    tl_cmd_result r2 = tl_run_cmd("worker-cuda", path, a2, env, TL_WAIT_MS);
    const char *said = tl_printf("%s%s", r2.out, r2.err);
    ASSERT_EQ_INT(r2.exit_code, 1);
    if (tl_bin_exists("fleet-embed-cuda.so")) {
        ASSERT_STR_CONTAINS(said, "cuda: no GPU available");
        tl_log("CUDA module built, no visible GPU: --backend cuda fails its load");
    } else {
        ASSERT_STR_CONTAINS(said, "embed (cuda): cannot load the CUDA backend module: ");
        ASSERT_STR_CONTAINS(said, "fleet-embed-cuda.so: cannot open shared object file");
        tl_log("no CUDA module in this build: --backend cuda fails its load");
    }

    const char *missing = tl_printf("%s/nowhere/fleet-embed-cuda.so", tl_tmpdir());
    const char *env4[] = {tl_printf("FLEET_CUDA_MODULE=%s", missing), NULL};
    tl_cmd_result r4 = tl_run_cmd("worker-cuda-missing", path, a2, env4, TL_WAIT_MS);
    ASSERT_EQ_INT(r4.exit_code, 1);
    ASSERT_STR_CONTAINS(tl_printf("%s%s", r4.out, r4.err),
                        tl_printf("embed (cuda): cannot load the CUDA backend module: %s: "
                                  "cannot open shared object file",
                                  missing));

    const char *a3[] = {path, "--model", "echo", "--backend", "cuda", NULL};
    tl_cmd_result r3 = tl_run_cmd("worker-echo-cuda", path, a3, NULL, TL_WAIT_MS);
    ASSERT_EQ_INT(r3.exit_code, 2);
    ASSERT_STR_CONTAINS(tl_printf("%s%s", r3.out, r3.err),
                        "model 'echo' has no backend 'cuda' in this build (it has: cpu)");
}

/* elf_needed returns the DT_NEEDED entries of the ELF file at path, each followed by '\n'
 * (read from its .dynamic section and the string table that section links to). */
static const char *elf_needed(const char *path) {
    size_t len = 0;
    const char *buf = tl_read_file(path, &len);
    if (!buf) FAILF("cannot read %s", path);
    Elf64_Ehdr eh;
    if (len < sizeof eh) FAILF("%s: too short for an ELF header", path);
    memcpy(&eh, buf, sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
        FAILF("%s is not a 64-bit ELF file", path);
    if (eh.e_shoff == 0 || eh.e_shoff + (size_t)eh.e_shnum * sizeof(Elf64_Shdr) > len)
        FAILF("%s: section headers out of the file", path);
    const char *out = "";
    int dynamic = 0;
    for (size_t i = 0; i < eh.e_shnum; i++) {
        Elf64_Shdr sh, str;
        memcpy(&sh, buf + eh.e_shoff + i * sizeof sh, sizeof sh);
        if (sh.sh_type != SHT_DYNAMIC) continue;
        dynamic = 1;
        if (sh.sh_link >= eh.e_shnum) FAILF("%s: .dynamic links to no section", path);
        memcpy(&str, buf + eh.e_shoff + sh.sh_link * sizeof str, sizeof str);
        if (sh.sh_offset + sh.sh_size > len || str.sh_offset + str.sh_size > len)
            FAILF("%s: .dynamic or its strings out of the file", path);
        for (size_t k = 0; k + sizeof(Elf64_Dyn) <= sh.sh_size; k += sizeof(Elf64_Dyn)) {
            Elf64_Dyn d;
            memcpy(&d, buf + sh.sh_offset + k, sizeof d);
            if (d.d_tag == DT_NULL) break;
            if (d.d_tag != DT_NEEDED) continue;
            if (d.d_un.d_val >= str.sh_size)
                FAILF("%s: a DT_NEEDED name out of its string table", path);
            out = tl_printf("%s%.*s\n", out, (int)(str.sh_size - d.d_un.d_val),
                            buf + str.sh_offset + d.d_un.d_val);
        }
    }
    if (!dynamic) FAILF("%s has no .dynamic section", path);
    return out;
}

/* The CUDA libraries' names as the dynamic loader sees them (libcudart.so.13, ...). */
static const char *const cuda_libs[] = {"libcudart", "libcublas", "libcudnn", "libcuda.so"};
/* OpenBLAS: libopenblas.so.0, mapped as libopenblasp-r0.3.21.so and the like. */
static const char *const blas_libs[] = {"libopenblas", "fleet-embed-cpu.so"};

/* Fails when text (a NEEDED list or /proc/PID/maps) names one of libs. */
static void assert_none_of(const char *what, const char *text, const char *const *libs, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strstr(text, libs[i])) FAILF("%s names %s:\n%s", what, libs[i], text);
}

static void assert_no_cuda(const char *what, const char *text) {
    assert_none_of(what, text, cuda_libs, TL_COUNT(cuda_libs));
}

static void assert_no_blas(const char *what, const char *text) {
    assert_none_of(what, text, blas_libs, TL_COUNT(blas_libs));
}

/* The libraries a running process has mapped. */
static const char *maps_of(const tl_proc *p) {
    const char *m = tl_read_file(tl_printf("/proc/%ld/maps", (long)p->pid), NULL);
    if (!m) FAILF("cannot read /proc/%ld/maps", (long)p->pid);
    return m;
}

/* fleet-worker links neither OpenBLAS nor a CUDA library (the embed model's backends are
 * fleet-embed-cpu.so and fleet-embed-cuda.so, which link them); an echo worker that served
 * a job has neither mapped, and a CPU embed worker has OpenBLAS but no CUDA library. */
TL_TEST(worker_links_and_loads_no_model_library) {
    const char *needed = elf_needed(tl_bin_path("fleet-worker"));
    tl_log("fleet-worker NEEDED: %s", needed);
    assert_no_cuda("fleet-worker's NEEDED entries", needed);
    assert_no_blas("fleet-worker's NEEDED entries", needed);
    ASSERT_STR_CONTAINS(elf_needed(tl_bin_path("fleet-embed-cpu.so")), "libopenblas");
    if (tl_bin_exists("fleet-embed-cuda.so"))
        ASSERT_STR_CONTAINS(elf_needed(tl_bin_path("fleet-embed-cuda.so")), "libcudart");

    tl_fleet *f = start_embed_fleet_on("cpu", NULL);
    tl_proc *echo = tl_fleet_add_worker(f, "echo");
    tl_job_wait_status(f, tl_job_submit(f, "echo", "{\"x\": 1}"), "succeeded", TL_WAIT_MS);
    embeddings_of(submit_wait(f, "{\"text\": \"hello\"}"), 1);
    assert_no_cuda("the echo worker's /proc/PID/maps", maps_of(echo));
    assert_no_blas("the echo worker's /proc/PID/maps", maps_of(echo));
    const char *cpu_maps = maps_of(f->workers[0]);
    assert_no_cuda("the CPU embed worker's /proc/PID/maps", cpu_maps);
    ASSERT_STR_CONTAINS(cpu_maps, "fleet-embed-cpu.so");
}

static bool log_says_no_driver(void *arg) {
    const tl_proc *p = arg;
    const char *log = tl_read_file(p->log_path, NULL);
    return log && strstr(log, "no NVIDIA driver on this machine; the embed model runs on the "
                              "CPU without loading the CUDA module");
}

/* On a machine without an NVIDIA driver, --backend auto does not open the CUDA module just
 * to find no GPU there (it would map libcudart, cuBLAS and cuDNN until exit): it says why
 * and serves from the CPU. */
TL_TEST(auto_without_an_nvidia_driver_does_not_open_the_cuda_module) {
    if (access("/proc/driver/nvidia/version", F_OK) == 0 || access("/dev/nvidiactl", F_OK) == 0 ||
        access("/dev/dxg", F_OK) == 0)
        TL_SKIP("skipped: this machine has an NVIDIA driver");
    if (!tl_bin_exists("fleet-embed-cuda.so")) TL_SKIP("skipped: this build has no CUDA module");
    tl_fleet *f = start_embed_fleet_on("auto", NULL);
    embeddings_of(submit_wait(f, "{\"text\": \"hello world\"}"), 1);
    ASSERT_WAIT_FOR(log_says_no_driver, f->workers[0], TL_WAIT_MS);
    assert_no_cuda("the auto embed worker's /proc/PID/maps", maps_of(f->workers[0]));
}

static bool log_has_reason(void *arg) {
    const tl_proc *p = arg;
    const char *log = tl_read_file(p->log_path, NULL);
    return log && strstr(log, "no CUDA backend; the embed model runs on the CPU") &&
           strstr(log, "nowhere/fleet-embed-cuda.so: cannot open shared object file");
}

/* --backend auto with FLEET_CUDA_MODULE naming a file that is not there (as on a machine
 * without the module, or without libcudart for it) serves from the CPU and logs why. */
TL_TEST(auto_without_the_cuda_module_serves_from_the_cpu) {
    const char *missing = tl_printf("FLEET_CUDA_MODULE=%s/nowhere/fleet-embed-cuda.so",
                                    tl_tmpdir());
    tl_fleet *f = start_embed_fleet_on("auto", missing);
    embeddings_of(submit_wait(f, "{\"text\": \"hello world\"}"), 1);
    ASSERT_WAIT_FOR(log_has_reason, f->workers[0], TL_WAIT_MS);
    const char *log = tl_read_file(f->workers[0]->log_path, NULL);
    ASSERT_STR_CONTAINS(log, "\"backend\":\"cpu\"");
    assert_no_cuda("the auto embed worker's /proc/PID/maps", maps_of(f->workers[0]));
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(embeds_texts_in_input_order),
        TL_CASE(msgpack_result_holds_float32_bins),
        TL_CASE(bad_inputs_fail_with_a_message),
        TL_CASE(worker_without_a_model_directory_is_refused),
        TL_CASE(backend_choice_is_checked),
        TL_CASE(worker_links_and_loads_no_model_library),
        TL_CASE(auto_without_the_cuda_module_serves_from_the_cpu),
        TL_CASE(auto_without_an_nvidia_driver_does_not_open_the_cuda_module),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
