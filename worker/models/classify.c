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
 * Input, one image per job (worker/classify/image.h says which images and how they are
 * scaled):
 *   {"image": <bin>}                  msgpack: the file's bytes
 *   {"image": "<base64>"}             JSON: the file's bytes in base64 (standard or URL-safe
 *                                     alphabet, padding optional, whitespace ignored, an
 *                                     optional "data:image/png;base64," prefix)
 *   {"files": [{"bytes": <bin>, ...}]} multipart/form-data with one file part (the gateway
 *                                     builds this from `curl -F model=classify -F file=@x.png`)
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
#include <unistd.h>

#include "cnn.h"
#include "fleet/log.h"
#include "image.h"
#include "models.h"
#include "module_file.h"

_Static_assert(CLS_PIXELS == CNN_PIXELS, "the decoder and the network agree on the image size");

#define SHAPE_ERROR                                                                              \
    "input must be {\"image\": \"<base64 of a PNG or of 784 raw bytes>\"} (msgpack: bin), or a " \
    "multipart form with one file part"
#define MAX_IMAGE_BYTES (32u << 20) /* 32 MiB: a 4096x4096 PNG fits; the body limit comes first */

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

/* ---------------------------------------------------------------- input ------------ */

static int key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *name) {
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, name)) return &map->via.map.ptr[i].val;
    return NULL;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes base64 text (see the file's header for what is accepted) into a new buffer.
 * Returns 0, or -1 with a message in err. */
static int b64_decode(const char *text, size_t len, unsigned char **out, size_t *outlen, char *err,
                      size_t errlen) {
    const char *comma = len > 5 && memcmp(text, "data:", 5) == 0 ? memchr(text, ',', len) : NULL;
    size_t start = 0;
    if (comma) {
        size_t head = (size_t)(comma - text);
        if (head < 7 || memcmp(comma - 7, ";base64", 7) != 0) {
            snprintf(err, errlen, "input.image: a data: URL must be base64 (\";base64,\")");
            return -1;
        }
        start = head + 1;
    }
    unsigned char *buf = malloc(len / 4 * 3 + 3);
    if (!buf) {
        snprintf(err, errlen, "out of memory reading the input");
        return -1;
    }
    size_t n = 0, pads = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
        if (c == '=') {
            pads++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pads) {
            if (pads)
                snprintf(err, errlen, "input.image is not base64: data after the '=' padding");
            else if (c > 0x20 && c < 0x7f)
                snprintf(err, errlen,
                         "input.image is not base64: character %zu is '%c' (expected A-Z, a-z, "
                         "0-9, + and /, or - and _)",
                         i, c);
            else snprintf(err, errlen, "input.image is not base64: byte %zu is 0x%02x", i, c);
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Left-over bits: 0 (complete), 2 or 4 (one or two bytes short of a group, fine);
     * 6 means a single character after the last full group, which encodes nothing. */
    if (bits == 6 || pads > 2) {
        snprintf(err, errlen, "input.image is not base64: it ends in the middle of a byte");
        free(buf);
        return -1;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* parse_image finds one job's image bytes and decodes them into pixels. Returns 0, or -1
 * with a message for the user in err. */
static int parse_image(const fleet_model_job *j, unsigned char *pixels, char *err, size_t errlen) {
    msgpack_unpacked up;
    size_t off = 0;
    unsigned char *owned = NULL;
    int rc = -1;
    msgpack_unpacked_init(&up);
    if (!j->input || j->input_len == 0 ||
        msgpack_unpack_next(&up, j->input, j->input_len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != j->input_len || up.data.type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, SHAPE_ERROR);
        goto out;
    }
    const msgpack_object *o = &up.data;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (!key_is(k, "image") && !key_is(k, "files")) {
            if (k->type == MSGPACK_OBJECT_STR)
                snprintf(err, errlen, "input: unknown field '%.*s'; " SHAPE_ERROR,
                         (int)(k->via.str.size > 64 ? 64 : k->via.str.size), k->via.str.ptr);
            else snprintf(err, errlen, SHAPE_ERROR);
            goto out;
        }
    }
    const msgpack_object *image = map_get(o, "image"), *files = map_get(o, "files");
    const unsigned char *bytes = NULL;
    size_t len = 0;
    if (image && files) {
        snprintf(err, errlen, "input: send the image either as input.image or as a file, not both");
        goto out;
    }
    if (files) {
        if (files->type != MSGPACK_OBJECT_ARRAY || files->via.array.size != 1) {
            snprintf(err, errlen, "input: send one image per job (the form has %u file parts)",
                     files->type == MSGPACK_OBJECT_ARRAY ? files->via.array.size : 0);
            goto out;
        }
        const msgpack_object *f = &files->via.array.ptr[0];
        const msgpack_object *b = f->type == MSGPACK_OBJECT_MAP ? map_get(f, "bytes") : NULL;
        if (!b || b->type != MSGPACK_OBJECT_BIN) {
            snprintf(err, errlen, "input.files[0] must be a file part with its bytes");
            goto out;
        }
        bytes = (const unsigned char *)b->via.bin.ptr;
        len = b->via.bin.size;
    } else if (image && image->type == MSGPACK_OBJECT_BIN) {
        bytes = (const unsigned char *)image->via.bin.ptr;
        len = image->via.bin.size;
    } else if (image && image->type == MSGPACK_OBJECT_STR) {
        if (b64_decode(image->via.str.ptr, image->via.str.size, &owned, &len, err, errlen) != 0)
            goto out;
        bytes = owned;
    } else {
        snprintf(err, errlen,
                 image ? "input.image must be a base64 string (or msgpack bin)" : SHAPE_ERROR);
        goto out;
    }
    if (len > MAX_IMAGE_BYTES) {
        snprintf(err, errlen, "image: %zu bytes; at most %u", len, MAX_IMAGE_BYTES);
        goto out;
    }
    rc = cls_image_decode(bytes ? bytes : (const unsigned char *)"", len, pixels, err, errlen);
out:
    free(owned);
    msgpack_unpacked_destroy(&up);
    return rc;
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
        if (parse_image(&jobs[i], pixels + good * CNN_PIXELS, err, sizeof err) != 0) {
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

/* --backend auto asks this: as for embed (wk_embed_cuda_present), the CUDA module (which
 * maps libcudart, cuBLAS and cuDNN) is opened only where an NVIDIA driver is seen. */
int wk_classify_cuda_present(void) {
    char err[FLEET_MODEL_ERROR_MAX], path[PATH_MAX + 64];
    cnn_module_path("cuda", path, sizeof path);
    if (access(path, F_OK) == 0 && !wk_nvidia_driver_seen()) {
        fleet_log(FLEET_LOG_INFO,
                  "no NVIDIA driver on this machine; the classify model runs on the CPU without "
                  "loading the CUDA module",
                  NULL);
        return 0;
    }
    const cnn_module *m = cnn_module_open("cuda", err, sizeof err);
    if (!m) {
        fleet_log(FLEET_LOG_WARN, "no CUDA backend; the classify model runs on the CPU", "error",
                  err, NULL);
        return 0;
    }
    return m->present();
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
