/* classify.c: the "classify" model: one 28x28 grayscale image to one of Fashion-MNIST's 10
 * classes, with a small CNN (worker/classify/cnn.h) on the CPU or a CUDA GPU (cuDNN).
 *
 *   fleet-worker --model classify [--backend cpu|cuda|auto] [--model-args WEIGHTS]
 *
 * WEIGHTS is a safetensors file (or a directory holding model.safetensors); by default the
 * project's own, models/classify/model.safetensors, which the build copies and
 * `cmake --install` installs to share/fleet/models/classify/ beside the worker's bin/.
 *
 * There is one fleet_model table per backend (wk_model_classify for "cpu",
 * wk_model_classify_cuda for "cuda"); they differ only in the cnn_ops they load with,
 * which come from the modules fleet-classify-cpu.so and fleet-classify-cuda.so, opened
 * the first time the model considers that backend: no other model loads them.
 *
 * Input, one image per job: {"image": <bin or base64>} or a multipart form's one file part
 * (worker/classify/input.h reads it; image.h says which images and how they are scaled).
 * Output: {"class": 0..9, "label": "T-shirt/top"..., "scores": [10 probabilities]}
 *
 * A batch decodes every job's image (a bad one fails that job alone, permanently, with
 * the decoder's reason) and classifies the good ones together, in calls of at most the
 * backend's max_batch images.
 */
#include <limits.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnn.h"
#include "image.h"
#include "input.h"
#include "models.h"
#include "module_file.h"

_Static_assert(CLS_PIXELS == CNN_PIXELS, "the decoder and the network agree on the image size");

typedef struct classify_state {
    const cnn_ops *ops;
    void *model;
    size_t chunk; /* most images per ops->classify call */
} classify_state;

/* ---------------------------------------------------------------- load ------------- */

static void classify_unload(void *state) {
    classify_state *s = state;
    if (!s) return;
    if (s->ops) s->ops->free(s->model);
    free(s);
}

/* The weights' path: args (a file, or a directory holding model.safetensors), else the
 * installed copy beside the worker's bin/. */
static int weights_path(const char *args, char *buf, size_t len, char *err, size_t errlen) {
    char dir[PATH_MAX];
    struct stat st;
    if (args && args[0]) {
        int dir_given = stat(args, &st) == 0 && S_ISDIR(st.st_mode);
        if ((size_t)snprintf(buf, len, "%s%s", args, dir_given ? "/model.safetensors" : "") >=
            len) {
            snprintf(err, errlen, "classify: --model-args path is too long");
            return -1;
        }
        return 0;
    }
    if (module_exe_dir(dir, sizeof dir) != 0 ||
        (size_t)snprintf(buf, len, "%s/../share/fleet/models/classify/model.safetensors", dir) >=
            len) {
        snprintf(err, errlen,
                 "classify: cannot tell where fleet-worker is installed; give the weights' path "
                 "in --model-args");
        return -1;
    }
    return 0;
}

static int classify_load_with(const cnn_ops *ops, const char *args, void **state, char *err,
                              size_t errlen) {
    char e[FLEET_MODEL_ERROR_MAX], path[PATH_MAX + 64];
    *state = NULL;
    if (weights_path(args, path, sizeof path, err, errlen) != 0) return -1;
    cnn_weights *w = malloc(sizeof *w);
    classify_state *s = calloc(1, sizeof *s);
    if (!w || !s) {
        free(w);
        free(s);
        snprintf(err, errlen, "classify: out of memory");
        return -1;
    }
    int rc = cnn_weights_load(path, w, e, sizeof e);
    if (rc == 0 && ops->load(w, &s->model, e, sizeof e) != 0) rc = -1;
    free(w);
    if (rc != 0) {
        snprintf(err, errlen, "classify (%s): %s", ops->name, e);
        free(s);
        return -1;
    }
    s->ops = ops;
    s->chunk = ops->max_batch(s->model);
    if (s->chunk < 1) s->chunk = 1;
    *state = s;
    return 0;
}

/* ---------------------------------------------------------------- output ----------- */

static int pack_output(const float *probs, char **out, size_t *len) {
    int best = 0;
    for (int k = 1; k < CNN_CLASSES; k++)
        if (probs[k] > probs[best]) best = k;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int bad = 0;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bad |= msgpack_pack_map(&pk, 3);
    bad |= msgpack_pack_str_with_body(&pk, "class", 5);
    bad |= msgpack_pack_int64(&pk, best);
    bad |= msgpack_pack_str_with_body(&pk, "label", 5);
    bad |= msgpack_pack_str_with_body(&pk, cnn_labels[best], strlen(cnn_labels[best]));
    bad |= msgpack_pack_str_with_body(&pk, "scores", 6);
    bad |= msgpack_pack_array(&pk, CNN_CLASSES);
    for (int k = 0; k < CNN_CLASSES; k++) bad |= msgpack_pack_float(&pk, probs[k]);
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    *len = sb.size;
    *out = msgpack_sbuffer_release(&sb); /* malloc'd: the worker free()s it */
    return *out ? 0 : -1;
}

/* ---------------------------------------------------------------- batch ------------ */

static void classify_run_batch(void *state, fleet_model_job *jobs, size_t n,
                               const fleet_model_ctx *ctx) {
    classify_state *s = state;
    unsigned char *pixels = malloc(n * CNN_PIXELS);
    float *probs = malloc(n * CNN_CLASSES * sizeof *probs);
    size_t *which = malloc(n * sizeof *which); /* the jobs whose images decoded */
    char err[FLEET_MODEL_ERROR_MAX];
    size_t good = 0;
    if (!pixels || !probs || !which) {
        for (size_t i = 0; i < n; i++)
            fleet_model_job_fail(&jobs[i], 1, "out of memory starting the batch");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (ctx->cancelled(ctx, i)) {
            jobs[i].outcome = FLEET_MODEL_STOPPED;
            continue;
        }
        if (cls_input_decode((const unsigned char *)jobs[i].input, jobs[i].input_len,
                             pixels + good * CNN_PIXELS, err, sizeof err) != 0) {
            fleet_model_job_fail(&jobs[i], 0, "%s", err);
            continue;
        }
        which[good++] = i;
    }
    for (size_t first = 0; first < good; first += s->chunk) {
        size_t m = good - first < s->chunk ? good - first : s->chunk;
        if (s->ops->classify(s->model, pixels + first * CNN_PIXELS, m, probs + first * CNN_CLASSES,
                             err, sizeof err) != 0) {
            /* The images decoded, so this is the device or memory failing: another attempt
             * may succeed. */
            for (size_t k = first; k < first + m; k++)
                fleet_model_job_fail(&jobs[which[k]], 1, "%s", err);
            continue;
        }
        for (size_t k = first; k < first + m; k++) {
            fleet_model_job *j = &jobs[which[k]];
            if (pack_output(probs + k * CNN_CLASSES, &j->output, &j->output_len) < 0)
                fleet_model_job_fail(j, 1, "out of memory packing the output");
            else j->outcome = FLEET_MODEL_OK;
        }
    }
out:
    free(pixels);
    free(probs);
    free(which);
}

/* Each backend is opened from its module only here, when the classify model loads on it
 * (or, for cuda, when --backend auto asks whether a GPU is there). */
static int classify_load_on(const char *backend, const char *args, void **state, char *err,
                            size_t errlen) {
    char e[FLEET_MODEL_ERROR_MAX];
    const cnn_module *m = cnn_module_open(backend, e, sizeof e);
    if (!m) {
        *state = NULL;
        snprintf(err, errlen, "classify (%s): %s", backend, e);
        return -1;
    }
    return classify_load_with(m->ops, args, state, err, errlen);
}

static int classify_load_cpu(const char *args, void **state, char *err, size_t errlen) {
    return classify_load_on("cpu", args, state, err, errlen);
}

const fleet_model wk_model_classify = {
    .abi_version = FLEET_MODEL_ABI_VERSION,
    .name = "classify",
    .backend = "cpu",
    .max_batch = 256,
    .load = classify_load_cpu,
    .run_batch = classify_run_batch,
    .unload = classify_unload,
};

static int classify_cuda_open_present(char *err, size_t errlen) {
    const cnn_module *m = cnn_module_open("cuda", err, errlen);
    return m ? m->present() : -1;
}

/* --backend auto asks this, as it asks embed (wk_cuda_backend_present). */
int wk_classify_cuda_present(void) {
    char path[PATH_MAX + 64];
    cnn_module_path("cuda", path, sizeof path);
    return wk_cuda_backend_present("classify", path, classify_cuda_open_present);
}

static int classify_load_cuda(const char *args, void **state, char *err, size_t errlen) {
    return classify_load_on("cuda", args, state, err, errlen);
}

const fleet_model wk_model_classify_cuda = {
    .abi_version = FLEET_MODEL_ABI_VERSION,
    .name = "classify",
    .backend = "cuda",
    .max_batch = 1024,
    .load = classify_load_cuda,
    .run_batch = classify_run_batch,
    .unload = classify_unload,
};
