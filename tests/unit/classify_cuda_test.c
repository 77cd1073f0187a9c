/* classify_cuda_test: the classify model's CUDA module (fleet-classify-cuda.so, built when
 * fleet was configured with the CUDA toolkit and cuDNN), opened as the worker opens it
 * (cnn_module_open), on the committed weights (models/classify/model.safetensors):
 *   - the module opens, its table is the CUDA backend's, and with no GPU visible
 *     (CUDA_VISIBLE_DEVICES empty, so on any machine) present() says 0 and load fails
 *     with a message that says so, leaving no model, no leak and no crash;
 *   - its settings are checked before anything else: a math mode or a convolution mode
 *     it does not know is refused by name;
 *   - on a machine with a GPU (tests/gpu/, never CI), the loaded backend classifies a
 *     batch within 1e-5 of the CPU backend, and refuses 0 or too many images.
 * tests/gpu/classify_check.c checks the CUDA backend much further on a GPU machine. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "cnn_cpu.h"
#include "testlib.h"

#define WEIGHTS TEST_SOURCE_DIR "/models/classify/model.safetensors"

static const cnn_weights *weights(void) {
    static cnn_weights w;
    char err[512];
    if (cnn_weights_load(WEIGHTS, &w, err, sizeof err) != 0) FAILF("%s", err);
    return &w;
}

/* The module the build wrote next to the fleet binaries. */
static const cnn_module *cuda_module(void) {
    char err[512];
    cnn_module_use("cuda", TL_BIN_DIR "/fleet-classify-cuda.so");
    const cnn_module *m = cnn_module_open("cuda", err, sizeof err);
    if (!m) FAILF("cnn_module_open(\"cuda\"): %s", err);
    ASSERT_EQ_STR(m->ops->name, "cuda");
    return m;
}

/* Hides every GPU from the CUDA runtime of this case's process (each case runs in its
 * own): read when the runtime starts, so before any CUDA call. */
static void hide_gpus(void) { setenv("CUDA_VISIBLE_DEVICES", "", 1); }

TL_TEST(without_a_gpu_load_fails_saying_so) {
    hide_gpus();
    const cnn_module *m = cuda_module();
    ASSERT_EQ_INT(m->present(), 0);
    void *model = (void *)1;
    char err[512] = "";
    ASSERT_EQ_INT(m->ops->load(weights(), &model, err, sizeof err), -1);
    ASSERT_NULL(model);
    ASSERT_STR_CONTAINS(err, "cuda: no GPU available (");
    ASSERT_STR_CONTAINS(err, "); use --backend cpu");
    tl_log("load without a GPU: %s", err);
    m->ops->free(NULL); /* accepts NULL */
}

TL_TEST(unknown_settings_are_refused_by_name) {
    hide_gpus();
    const cnn_module *m = cuda_module();
    void *model = NULL;
    char err[512];
    setenv("FLEET_CLASSIFY_MATH", "fp16", 1);
    ASSERT_EQ_INT(m->ops->load(weights(), &model, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "FLEET_CLASSIFY_MATH is 'fp16', not fp32|tf32");
    ASSERT_NULL(model);
    setenv("FLEET_CLASSIFY_MATH", "tf32", 1);
    setenv("FLEET_CLASSIFY_CONV", "winograd", 1);
    ASSERT_EQ_INT(m->ops->load(weights(), &model, err, sizeof err), -1);
    ASSERT_EQ_STR(err, "FLEET_CLASSIFY_CONV is 'winograd', not fused|separate");
    ASSERT_NULL(model);
    /* known values pass the settings and stop at the missing GPU */
    setenv("FLEET_CLASSIFY_CONV", "separate", 1);
    ASSERT_EQ_INT(m->ops->load(weights(), &model, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "cuda: no GPU available");
    unsetenv("FLEET_CLASSIFY_MATH");
    unsetenv("FLEET_CLASSIFY_CONV");
}

static void model_free(void *arg) {
    const cnn_module *m = cuda_module();
    m->ops->free(arg);
}

TL_TEST(on_a_gpu_matches_the_cpu) {
    const cnn_module *m = cuda_module();
    if (!m->present()) TL_SKIP("skipped: no GPU visible to the CUDA runtime");
    char err[512];
    void *gpu = NULL, *cpu = NULL;
    int rc = m->ops->load(weights(), &gpu, err, sizeof err);
    if (rc != 0) tl_log("CUDA load: %s", err);
    ASSERT_EQ_INT(rc, 0);
    tl_defer(model_free, gpu);
    ASSERT_EQ_INT(cnn_cpu_ops.load(weights(), &cpu, err, sizeof err), 0);
    enum { N = 100 };
    unsigned char *px = tl_alloc((size_t)N * CNN_PIXELS);
    uint32_t s = 7;
    for (size_t i = 0; i < (size_t)N * CNN_PIXELS; i++) {
        s = s * 1664525u + 1013904223u;
        px[i] = (unsigned char)(s >> 24);
    }
    float *g = tl_alloc((size_t)N * CNN_CLASSES * sizeof *g);
    float *c = tl_alloc((size_t)N * CNN_CLASSES * sizeof *c);
    ASSERT_EQ_INT(m->ops->classify(gpu, px, N, g, err, sizeof err), 0);
    ASSERT_EQ_INT(cnn_cpu_ops.classify(cpu, px, N, c, err, sizeof err), 0);
    cnn_cpu_ops.free(cpu);
    double worst = 0;
    for (size_t i = 0; i < (size_t)N * CNN_CLASSES; i++) {
        ASSERT_FALSE(isnan(g[i]));
        double d = fabs((double)g[i] - c[i]);
        if (d > worst) worst = d;
    }
    tl_log("%d images: CUDA against CPU at most %.3g apart", N, worst);
    ASSERT_TRUE(worst <= 1e-5);
    size_t max = m->ops->max_batch(gpu);
    ASSERT_EQ_INT(m->ops->classify(gpu, px, 0, g, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "0 images in one call");
    ASSERT_EQ_INT(m->ops->classify(gpu, px, max + 1, g, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, tl_printf("%zu images in one call", max + 1));
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(without_a_gpu_load_fails_saying_so),
        TL_CASE(unknown_settings_are_refused_by_name),
        TL_CASE(on_a_gpu_matches_the_cpu),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
