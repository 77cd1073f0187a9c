/* classify_test: the built-in classify model (worker/models/classify.c) serving jobs
 * through a live gateway, on the committed weights found where the build puts them
 * (bin/../share/fleet/models/classify/):
 *   - accuracy: the first 1,000 of Fashion-MNIST's test images (Debian's
 *     dataset-fashion-mnist), sent as base64 in JSON (PNG and raw 784 bytes alternately),
 *     classified by the fleet at least 90% right, each answer the same as the CPU backend's
 *     in this process (the output's class, label and 10 scores);
 *   - the other ways in: a multipart file part, a msgpack bin, a data: URL, a PNG at twice
 *     the size in RGB (scaled back down: the same pixels, the same scores);
 *   - bad images and bad inputs fail their own job at once (no retry) with a message that
 *     says what is wrong, and the worker goes on serving. */
#include <math.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "cnn_cpu.h"
#include "testlib.h"
#include "tl_classify.h"
#include "tl_fashion.h"
#include "tl_png.h"

#define SUBSET 1000

static tl_fleet *start_classify_fleet(void) {
    return tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MODELS=echo,classify"},
                                           .workers = {"classify"},
                                           .worker_env = {"FLEET_MAX_BATCH=64"}});
}

/* ------------------------------------------------------------ encoders ------------ */

static const char *b64(const unsigned char *data, size_t len) {
    char *out = tl_alloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* A multipart form with the model, an "input" field when input_json is not NULL, and one
 * file part per (data, len). */
static tl_resp *submit_multipart(tl_fleet *f, const char *input_json,
                                 const unsigned char *const *data, const size_t *len, int nfiles) {
    size_t cap = 4096 + (input_json ? strlen(input_json) : 0);
    for (int i = 0; i < nfiles; i++) cap += len[i];
    char *body = tl_alloc(cap);
    size_t n = (size_t)snprintf(body, cap,
                                "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
                                "classify\r\n");
    if (input_json)
        n += (size_t)snprintf(body + n, cap - n,
                              "--XyZ\r\nContent-Disposition: form-data; name=\"input\"\r\n\r\n"
                              "%s\r\n",
                              input_json);
    for (int i = 0; i < nfiles; i++) {
        n += (size_t)snprintf(body + n, cap - n,
                              "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                              "filename=\"x%d.png\"\r\nContent-Type: image/png\r\n\r\n",
                              i);
        memcpy(body + n, data[i], len[i]);
        n += len[i];
        n += (size_t)snprintf(body + n, cap - n, "\r\n");
    }
    n += (size_t)snprintf(body + n, cap - n, "--XyZ--\r\n");
    tl_req req = {.method = "POST",
                  .body = body,
                  .body_len = n,
                  .content_type = "multipart/form-data; boundary=XyZ",
                  .timeout_ms = 40000};
    req.headers[0] = "Prefer: wait=30";
    return tl_request(f, "/v1/jobs", req);
}

static json_t *submit_wait_json(tl_fleet *f, const char *input_json) {
    tl_req req = {.method = "POST",
                  .body = tl_printf("{\"model\": \"classify\", \"input\": %s}", input_json),
                  .timeout_ms = 40000};
    req.headers[0] = "Prefer: wait=30";
    tl_resp *r = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(r, 200);
    return r->json;
}

/* ------------------------------------------------------------ the reference ------- */

static void model_free(void *m) { cnn_cpu_ops.free(m); }

/* The CPU backend in this process, on the same weights the worker reads. */
static float *local_probs(const unsigned char *px, size_t n) {
    static cnn_weights w;
    char err[512];
    ASSERT_EQ_INT(cnn_weights_load(TEST_SOURCE_DIR "/models/classify/model.safetensors", &w, err,
                                   sizeof err),
                  0);
    void *m = NULL;
    ASSERT_EQ_INT(cnn_cpu_ops.load(&w, &m, err, sizeof err), 0);
    tl_defer(model_free, m);
    return tl_classify(&cnn_cpu_ops, m, px, n);
}

/* Checks a succeeded job's result (a job object with "result", or the result itself when
 * job is NULL) against probabilities p; returns its class. */
static int check_result(const json_t *job, const json_t *result, const float *p) {
    if (job) {
        if (strcmp(tl_jstr(job, "status") ? tl_jstr(job, "status") : "", "succeeded") != 0)
            FAILF("job did not succeed: %s", tl_json_text(job));
        result = tl_jget(job, "result");
    }
    ASSERT_NOT_NULL(result);
    int cls = (int)tl_jint(result, "class");
    ASSERT_EQ_INT(cls, tl_classify_argmax(p));
    ASSERT_EQ_STR(tl_jstr(result, "label"), cnn_labels[cls]);
    json_t *scores = tl_jget(result, "scores");
    ASSERT_EQ_INT((long long)json_array_size(scores), CNN_CLASSES);
    double sum = 0;
    for (int k = 0; k < CNN_CLASSES; k++) {
        double s = json_number_value(json_array_get(scores, (size_t)k));
        if (fabs(s - p[k]) > 1e-5)
            FAILF("score %d is %.9g, the CPU backend here says %.9g", k, s, (double)p[k]);
        sum += s;
    }
    ASSERT_TRUE(fabs(sum - 1.0) < 1e-4);
    return cls;
}

/* ------------------------------------------------------------ cases --------------- */

TL_TEST(accuracy_on_a_thousand_test_images_through_the_gateway) {
    unsigned char *images, *labels;
    size_t n;
    char err[256];
    tl_fashion_require(tl_fashion_test_set(&images, &labels, &n, err, sizeof err) == 0, err);
    float *want = local_probs(images, SUBSET);
    tl_fleet *f = start_classify_fleet();
    const char **ids = tl_alloc(SUBSET * sizeof *ids);
    for (size_t i = 0; i < SUBSET; i++) {
        const unsigned char *px = images + i * CNN_PIXELS;
        const char *data;
        if (i % 2) {
            size_t len;
            const unsigned char *p = tl_png_gray8(px, CNN_SIDE, CNN_SIDE, 1, &len);
            data = b64(p, len);
        } else {
            data = b64(px, CNN_PIXELS);
        }
        ids[i] = tl_job_submit(f, "classify", tl_printf("{\"image\": \"%s\"}", data));
    }
    size_t right = 0;
    for (size_t i = 0; i < SUBSET; i++) {
        tl_job_wait_status(f, ids[i], "succeeded", 60000);
        tl_resp *r = tl_request(f, tl_printf("/v1/jobs/%s/result", ids[i]), (tl_req){0});
        ASSERT_HTTP_STATUS(r, 200);
        right += check_result(NULL, r->json, want + i * CNN_CLASSES) == labels[i];
    }
    tl_log("the fleet classified %zu of %d test images right (%.1f%%)", right, SUBSET,
           100.0 * (double)right / SUBSET);
    ASSERT_GE_INT(right, SUBSET * 9 / 10);
}

TL_TEST(multipart_msgpack_data_urls_and_larger_pngs) {
    unsigned char *images, *labels;
    size_t n;
    char err[256];
    tl_fashion_require(tl_fashion_test_set(&images, &labels, &n, err, sizeof err) == 0, err);
    const unsigned char *px = images + 7 * CNN_PIXELS;
    float *want = local_probs(px, 1);
    tl_fleet *f = start_classify_fleet();

    /* multipart, one file part */
    size_t len;
    const unsigned char *p = tl_png_gray8(px, CNN_SIDE, CNN_SIDE, 1, &len);
    tl_resp *r = submit_multipart(f, NULL, &p, &len, 1);
    ASSERT_HTTP_STATUS(r, 200);
    check_result(r->json, NULL, want);

    /* a form with no file part, the image in its input field */
    r = submit_multipart(f, tl_printf("{\"image\": \"%s\"}", b64(p, len)), NULL, NULL, 0);
    ASSERT_HTTP_STATUS(r, 200);
    check_result(r->json, NULL, want);

    /* a 56x56 RGB PNG of the same image (each pixel 2x2): scaled down, the same pixels */
    unsigned char *big = tl_alloc(56 * 56);
    for (int y = 0; y < 56; y++)
        for (int x = 0; x < 56; x++) big[y * 56 + x] = px[(y / 2) * CNN_SIDE + x / 2];
    const unsigned char *pb = tl_png_gray8(big, 56, 56, 3, &len);
    check_result(submit_wait_json(f, tl_printf("{\"image\": \"%s\"}", b64(pb, len))), NULL, want);

    /* a data: URL with line breaks, as a browser's FileReader or `base64` writes it */
    const char *b = b64(px, CNN_PIXELS);
    char *wrapped = tl_alloc(strlen(b) * 2 + 64);
    size_t w = (size_t)sprintf(wrapped, "data:application/octet-stream;base64,");
    for (size_t i = 0; b[i]; i++) {
        wrapped[w++] = b[i];
        if (i % 76 == 75) wrapped[w++] = '\\', wrapped[w++] = 'n';
    }
    wrapped[w] = '\0';
    check_result(submit_wait_json(f, tl_printf("{\"image\": \"%s\"}", wrapped)), NULL, want);

    /* msgpack, the image as bin */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "model", 5);
    msgpack_pack_str_with_body(&pk, "classify", 8);
    msgpack_pack_str_with_body(&pk, "input", 5);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "image", 5);
    msgpack_pack_bin(&pk, CNN_PIXELS);
    msgpack_pack_bin_body(&pk, px, CNN_PIXELS);
    char *body = tl_alloc(sb.size);
    memcpy(body, sb.data, sb.size);
    size_t body_len = sb.size;
    msgpack_sbuffer_destroy(&sb);
    tl_req req = {.method = "POST",
                  .body = body,
                  .body_len = body_len,
                  .content_type = "application/msgpack",
                  .timeout_ms = 40000};
    req.headers[0] = "Prefer: wait=30";
    r = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(r, 200);
    check_result(r->json, NULL, want);
}

/* Each bad input fails its own job, permanently, with its message; a good job after them
 * still succeeds. */
TL_TEST(bad_images_fail_their_job_with_a_clear_message) {
    tl_fleet *f = start_classify_fleet();
    unsigned char small[10 * 10] = {0}, px[CNN_PIXELS] = {0};
    size_t len, good_len;
    const unsigned char *tiny = tl_png_gray8(small, 10, 10, 1, &len);
    const unsigned char *good = tl_png_gray8(px, CNN_SIDE, CNN_SIDE, 1, &good_len);
    unsigned char *bad_crc = tl_alloc(good_len);
    memcpy(bad_crc, good, good_len);
    bad_crc[8 + 8 + 13] ^= 1; /* IHDR's CRC */
    static const struct {
        const char *input, *error;
    } cases[] = {
        {NULL, "783 bytes is neither a PNG nor 784 raw pixels"}, /* the first four: data[] */
        {NULL, "at least 28 pixels on each side"},
        {NULL, "bad CRC in chunk IHDR"},
        {NULL, "truncated"},
        {"{\"image\": \"not base64!\"}", "not base64"},
        {"{\"image\": 42}", "input.image must be a base64 string"},
        {"{\"picture\": \"AAAA\"}", "unknown field 'picture'"},
        {"[1, 2]", "input must be {\"image\""},
    };
    const char *data[] = {b64(px, CNN_PIXELS - 1), b64(tiny, len), b64(bad_crc, good_len),
                          b64(good, good_len / 2)};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *input = i < 4 ? tl_printf("{\"image\": \"%s\"}", data[i]) : cases[i].input;
        json_t *job = submit_wait_json(f, input);
        ASSERT_EQ_STR(tl_jstr(job, "status"), "failed");
        ASSERT_EQ_INT(tl_jint(job, "attempts"), 1);
        const char *e = tl_jstr(job, "error");
        if (!e || !strstr(e, cases[i].error))
            FAILF("case %zu: error %s, expected it to hold \"%s\"", i, e ? e : "(none)",
                  cases[i].error);
    }
    /* two file parts in one job */
    const unsigned char *two[] = {good, good};
    size_t lens[] = {good_len, good_len};
    tl_resp *r = submit_multipart(f, NULL, two, lens, 2);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "status"), "failed");
    ASSERT_STR_CONTAINS(tl_jstr(r->json, "error"), "one image per job");
    /* and the worker still serves */
    json_t *ok = submit_wait_json(f, tl_printf("{\"image\": \"%s\"}", b64(good, good_len)));
    ASSERT_EQ_STR(tl_jstr(ok, "status"), "succeeded");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(accuracy_on_a_thousand_test_images_through_the_gateway),
        TL_CASE(multipart_msgpack_data_urls_and_larger_pngs),
        TL_CASE(bad_images_fail_their_job_with_a_clear_message),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
