/* classify_cpu_test: the classify network's CPU backend (worker/classify/cnn_cpu.c) and
 * its weights reader (cnn_weights.c), on the committed weights
 * (models/classify/model.safetensors):
 *   - against a reference written here straight from the network's definition (cnn.h):
 *     direct convolutions, pooling and the dense layer in double precision, no im2col, no
 *     BLAS: the probabilities agree within 1e-5 and the classes are the same;
 *   - a batch gives each image the same bytes it gives alone, and so does any thread count;
 *   - the accuracy on Fashion-MNIST's 10,000 test images (Debian's dataset-fashion-mnist)
 *     is at least 90% (the trainer measured 91.32%);
 *   - weights of the wrong shape, a missing tensor, a file that is not safetensors, and
 *     calls of 0 or too many images are refused with messages naming the problem. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "cnn_cpu.h"
#include "testlib.h"
#include "tl_classify.h"
#include "tl_fashion.h"
#include "tl_tiny_bert.h" /* tl_write_file */

#define WEIGHTS TEST_SOURCE_DIR "/models/classify/model.safetensors"

static cnn_weights *weights(void) {
    static cnn_weights w;
    static int loaded;
    char err[512];
    if (!loaded) {
        if (cnn_weights_load(WEIGHTS, &w, err, sizeof err) != 0) tl_log("%s", err);
        ASSERT_EQ_INT(cnn_weights_load(WEIGHTS, &w, err, sizeof err), 0);
        loaded = 1;
    }
    return &w;
}

static void model_free(void *m) { cnn_cpu_ops.free(m); }

static void *model_with_threads(const char *threads) {
    char err[512];
    void *m = NULL;
    if (threads) setenv("FLEET_CPU_THREADS", threads, 1);
    else unsetenv("FLEET_CPU_THREADS");
    int rc = cnn_cpu_ops.load(weights(), &m, err, sizeof err);
    unsetenv("FLEET_CPU_THREADS");
    if (rc != 0) tl_log("load: %s", err);
    ASSERT_EQ_INT(rc, 0);
    tl_defer(model_free, m);
    return m;
}

static float *classify(void *m, const unsigned char *px, size_t n) {
    return tl_classify(&cnn_cpu_ops, m, px, n);
}

/* Images: pseudo-random ones (of every kind of pixel statistics: noise, blocks, all
 * black, all white) and, when the dataset is there, real ones. */
static unsigned char *test_images(size_t n, int real) {
    unsigned char *px = tl_alloc(n * CNN_PIXELS), *images, *labels;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    size_t have = 0;
    char err[256];
    if (real && tl_fashion_test_set(&images, &labels, &have, err, sizeof err) != 0) have = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = px + i * CNN_PIXELS;
        if (i == 0) memset(p, 0, CNN_PIXELS);
        else if (i == 1) memset(p, 255, CNN_PIXELS);
        else if (have && i % 2 == 0) memcpy(p, images + (i * 37 % have) * CNN_PIXELS, CNN_PIXELS);
        else
            for (size_t k = 0; k < CNN_PIXELS; k++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                p[k] = i % 3 ? (unsigned char)(s >> 24) : (unsigned char)((k / 97 + i) % 2 * 200);
            }
    }
    return px;
}

/* ------------------------------------------------------------ the reference ------- */

/* The network as cnn.h defines it, term by term, in double. */
static void reference(const cnn_weights *w, const unsigned char *px, double *probs) {
    static double x[28][28], a1[16][28][28], p1[16][14][14], a2[32][14][14], p2[32][7][7];
    for (int y = 0; y < 28; y++)
        for (int i = 0; i < 28; i++) x[y][i] = px[y * 28 + i] / 255.0;
    for (int c = 0; c < 16; c++)
        for (int y = 0; y < 28; y++)
            for (int i = 0; i < 28; i++) {
                double s = w->conv1_b[c];
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int sy = y + ky - 1, sx = i + kx - 1;
                        if (sy >= 0 && sy < 28 && sx >= 0 && sx < 28)
                            s += (double)w->conv1_w[c * 9 + ky * 3 + kx] * x[sy][sx];
                    }
                a1[c][y][i] = s > 0 ? s : 0;
            }
    for (int c = 0; c < 16; c++)
        for (int y = 0; y < 14; y++)
            for (int i = 0; i < 14; i++)
                p1[c][y][i] = fmax(fmax(a1[c][2 * y][2 * i], a1[c][2 * y][2 * i + 1]),
                                   fmax(a1[c][2 * y + 1][2 * i], a1[c][2 * y + 1][2 * i + 1]));
    for (int c = 0; c < 32; c++)
        for (int y = 0; y < 14; y++)
            for (int i = 0; i < 14; i++) {
                double s = w->conv2_b[c];
                for (int ci = 0; ci < 16; ci++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int sy = y + ky - 1, sx = i + kx - 1;
                            if (sy >= 0 && sy < 14 && sx >= 0 && sx < 14)
                                s += (double)w->conv2_w[((c * 16 + ci) * 3 + ky) * 3 + kx] *
                                     p1[ci][sy][sx];
                        }
                a2[c][y][i] = s > 0 ? s : 0;
            }
    for (int c = 0; c < 32; c++)
        for (int y = 0; y < 7; y++)
            for (int i = 0; i < 7; i++)
                p2[c][y][i] = fmax(fmax(a2[c][2 * y][2 * i], a2[c][2 * y][2 * i + 1]),
                                   fmax(a2[c][2 * y + 1][2 * i], a2[c][2 * y + 1][2 * i + 1]));
    double z[10], max = -INFINITY, sum = 0;
    for (int k = 0; k < 10; k++) {
        z[k] = w->fc_b[k];
        for (int c = 0; c < 32; c++)
            for (int y = 0; y < 7; y++)
                for (int i = 0; i < 7; i++)
                    z[k] += (double)w->fc_w[k * 1568 + c * 49 + y * 7 + i] * p2[c][y][i];
        max = fmax(max, z[k]);
    }
    for (int k = 0; k < 10; k++) sum += (probs[k] = exp(z[k] - max));
    for (int k = 0; k < 10; k++) probs[k] /= sum;
}

/* ------------------------------------------------------------ cases --------------- */

TL_TEST(matches_the_reference) {
    enum { N = 40 };
    unsigned char *px = test_images(N, 1);
    float *probs = classify(model_with_threads(NULL), px, N);
    double worst = 0, ref[10];
    for (size_t i = 0; i < N; i++) {
        reference(weights(), px + i * CNN_PIXELS, ref);
        double sum = 0;
        int best = 0;
        for (int k = 0; k < 10; k++) {
            const float *p = probs + i * CNN_CLASSES;
            worst = fmax(worst, fabs(p[k] - ref[k]));
            sum += p[k];
            if (ref[k] > ref[best]) best = k;
        }
        ASSERT_TRUE(fabs(sum - 1.0) < 1e-5);
        ASSERT_EQ_INT(tl_classify_argmax(probs + i * CNN_CLASSES), best);
    }
    tl_log("%d images: largest difference from the double-precision reference %.3g", N, worst);
    ASSERT_TRUE(worst < 1e-5);
}

TL_TEST(a_batch_gives_each_image_what_it_gives_alone) {
    enum { N = 301 }; /* more than one call (256), slices of 8 and a ragged end */
    unsigned char *px = test_images(N, 1);
    void *m = model_with_threads(NULL);
    float *all = classify(m, px, N);
    double worst = 0;
    for (size_t i = 0; i < N; i += 7) {
        float *one = classify(m, px + i * CNN_PIXELS, 1);
        for (int k = 0; k < 10; k++) worst = fmax(worst, fabs(one[k] - all[i * CNN_CLASSES + k]));
    }
    tl_log("alone against in a batch: largest difference %.3g", worst);
    ASSERT_TRUE(worst == 0); /* one image a task: the same computation, the same bytes */
}

TL_TEST(thread_counts_give_the_same_bytes) {
    enum { N = 200 };
    unsigned char *px = test_images(N, 1);
    float *one = classify(model_with_threads("1"), px, N);
    float *two = classify(model_with_threads("2"), px, N);
    float *five = classify(model_with_threads("5"), px, N);
    ASSERT_TRUE(memcmp(one, two, N * CNN_CLASSES * sizeof *one) == 0);
    ASSERT_TRUE(memcmp(one, five, N * CNN_CLASSES * sizeof *one) == 0);
}

TL_TEST(test_set_accuracy_is_at_least_90_percent) {
    unsigned char *images = NULL, *labels = NULL;
    size_t n = 0;
    char err[256];
    tl_fashion_require(tl_fashion_test_set(&images, &labels, &n, err, sizeof err) == 0, err);
    float *probs = classify(model_with_threads(NULL), images, n);
    size_t right = 0, per[10] = {0};
    for (size_t i = 0; i < n; i++)
        if (tl_classify_argmax(probs + i * CNN_CLASSES) == labels[i]) right++, per[labels[i]]++;
    tl_log("test accuracy %.2f%% (%zu of %zu); per class: %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu",
           100.0 * (double)right / (double)n, right, n, per[0], per[1], per[2], per[3], per[4],
           per[5], per[6], per[7], per[8], per[9]);
    ASSERT_EQ_INT(n, 10000);
    ASSERT_GE_INT(right, 9000);
}

/* Writes a safetensors file of the six tensors, with one of them changed. */
static const char *write_weights(const char *name, const char *bad_tensor, const char *bad_shape) {
    static const struct {
        const char *name, *shape;
        size_t count;
    } t[] = {
        {"conv1.weight", "[16,1,3,3]", 144},   {"conv1.bias", "[16]", 16},
        {"conv2.weight", "[32,16,3,3]", 4608}, {"conv2.bias", "[32]", 32},
        {"fc.weight", "[10,1568]", 15680},     {"fc.bias", "[10]", 10},
    };
    char header[2048];
    size_t used = 0, off = 0;
    used += (size_t)snprintf(header + used, sizeof header - used, "{");
    for (size_t i = 0; i < 6; i++) {
        int bad = bad_tensor && strcmp(t[i].name, bad_tensor) == 0;
        if (bad && !bad_shape) continue; /* missing */
        size_t count = t[i].count;
        if (bad) { /* the product of bad_shape's dimensions */
            count = 1;
            for (const char *p = bad_shape; *p; p++)
                if (*p >= '0' && *p <= '9') {
                    count *= strtoul(p, (char **)&p, 10);
                    p--;
                }
        }
        used +=
            (size_t)snprintf(header + used, sizeof header - used,
                             "%s\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                             used > 1 ? "," : "", t[i].name, bad ? bad_shape : t[i].shape, off,
                             off + count * 4);
        off += count * 4;
    }
    used += (size_t)snprintf(header + used, sizeof header - used, "}");
    while (used % 8) header[used++] = ' ';
    size_t total = 8 + used + off;
    unsigned char *buf = tl_alloc(total);
    memset(buf, 0, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)used >> (8 * i));
    memcpy(buf + 8, header, used);
    tl_write_file(tl_tmpdir(), name, (const char *)buf, total);
    return tl_printf("%s/%s", tl_tmpdir(), name);
}

TL_TEST(bad_weights_are_refused_by_name) {
    cnn_weights *w = tl_alloc(sizeof *w);
    char err[512];
    ASSERT_EQ_INT(cnn_weights_load(write_weights("ok.safetensors", NULL, NULL), w, err, sizeof err),
                  0);
    ASSERT_EQ_INT(cnn_weights_load(write_weights("shape.safetensors", "conv2.weight",
                                                 "[32,16,5,5]"),
                                   w, err, sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "conv2.weight has shape [32, 16, 5, 5], expected [32, 16, 3, 3]");
    ASSERT_EQ_INT(cnn_weights_load(write_weights("missing.safetensors", "fc.bias", NULL), w, err,
                                   sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "5 tensors, expected the 6");
    tl_write_file(tl_tmpdir(), "junk.safetensors", "not a model", 11);
    ASSERT_EQ_INT(cnn_weights_load(tl_printf("%s/junk.safetensors", tl_tmpdir()), w, err,
                                   sizeof err),
                  -1);
    ASSERT_STR_CONTAINS(err, "junk.safetensors");
    ASSERT_EQ_INT(cnn_weights_load("/nonexistent/model.safetensors", w, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "/nonexistent/model.safetensors");
}

TL_TEST(calls_of_no_or_too_many_images_are_refused) {
    void *m = model_with_threads(NULL);
    char err[512];
    size_t max = cnn_cpu_ops.max_batch(m);
    unsigned char *px = tl_alloc((max + 1) * CNN_PIXELS);
    float *probs = tl_alloc((max + 1) * CNN_CLASSES * sizeof *probs);
    memset(px, 0, (max + 1) * CNN_PIXELS);
    ASSERT_EQ_INT(cnn_cpu_ops.classify(m, px, 0, probs, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "0 images");
    ASSERT_EQ_INT(cnn_cpu_ops.classify(m, px, max + 1, probs, err, sizeof err), -1);
    ASSERT_EQ_INT(cnn_cpu_ops.classify(m, px, max, probs, err, sizeof err), 0);
    setenv("FLEET_CPU_THREADS", "zero", 1);
    void *bad = NULL;
    ASSERT_EQ_INT(cnn_cpu_ops.load(weights(), &bad, err, sizeof err), -1);
    unsetenv("FLEET_CPU_THREADS");
    ASSERT_NULL(bad);
    ASSERT_STR_CONTAINS(err, "FLEET_CPU_THREADS=zero");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(matches_the_reference),
        TL_CASE(a_batch_gives_each_image_what_it_gives_alone),
        TL_CASE(thread_counts_give_the_same_bytes),
        TL_CASE(test_set_accuracy_is_at_least_90_percent),
        TL_CASE(bad_weights_are_refused_by_name),
        TL_CASE(calls_of_no_or_too_many_images_are_refused),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
