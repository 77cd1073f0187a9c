/* cnn_weights.c: the classify network's weights from a safetensors file (cnn.h). */
#include <stdio.h>
#include <string.h>

#include "cnn.h"
#include "fleet/err.h"
#include "safetensors.h"

const char *const cnn_labels[CNN_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

typedef struct tensor_spec {
    const char *name;
    int ndim;
    int64_t shape[4];
    size_t offset; /* of its floats in cnn_weights */
    size_t count;
} tensor_spec;

#define SPEC(field, nm, nd, ...)                                                                \
    {                                                                                           \
        .name = nm, .ndim = nd, .shape = {__VA_ARGS__}, .offset = offsetof(cnn_weights, field), \
        .count = sizeof(((cnn_weights *)0)->field) / sizeof(float)                              \
    }

static const tensor_spec specs[] = {
    SPEC(conv1_w, "conv1.weight", 4, CNN_C1, 1, 3, 3),      SPEC(conv1_b, "conv1.bias", 1, CNN_C1),
    SPEC(conv2_w, "conv2.weight", 4, CNN_C2, CNN_C1, 3, 3), SPEC(conv2_b, "conv2.bias", 1, CNN_C2),
    SPEC(fc_w, "fc.weight", 2, CNN_CLASSES, CNN_FEATURES),  SPEC(fc_b, "fc.bias", 1, CNN_CLASSES),
};
#define NSPECS (sizeof specs / sizeof specs[0])

static void shape_text(const int64_t *shape, int ndim, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < len; i++) {
        int k = snprintf(buf + used, len - used, "%s%lld", i ? ", " : "[", (long long)shape[i]);
        if (k < 0) return;
        used += (size_t)k;
    }
    if (used < len) snprintf(buf + used, len - used, "%s", ndim ? "]" : "[]");
}

int cnn_weights_load(const char *path, cnn_weights *w, char *err, size_t errlen) {
    st_file *st = NULL;
    char e[512];
    if (st_open(path, &st, e, sizeof e) != 0)
        return fleet_err(err, errlen, "classify weights %s: %s", path, e);
    int rc = -1;
    if (st_count(st) != NSPECS) {
        fleet_err(err, errlen, "classify weights %s: %zu tensors, expected the %zu of cnn.h", path,
                  st_count(st), NSPECS);
        goto out;
    }
    for (size_t i = 0; i < NSPECS; i++) {
        const tensor_spec *sp = &specs[i];
        const st_tensor *t = st_find(st, sp->name);
        if (!t) {
            fleet_err(err, errlen, "classify weights %s: tensor %s missing", path, sp->name);
            goto out;
        }
        int same = t->ndim == sp->ndim;
        for (int d = 0; same && d < sp->ndim; d++) same = t->shape[d] == sp->shape[d];
        if (!same) {
            char got[96], want[96];
            shape_text(t->shape, t->ndim, got, sizeof got);
            shape_text(sp->shape, sp->ndim, want, sizeof want);
            fleet_err(err, errlen, "classify weights %s: %s has shape %s, expected %s", path,
                      sp->name, got, want);
            goto out;
        }
        if (t->dtype == ST_I64 || t->nbytes / st_dtype_size(t->dtype) != sp->count) {
            fleet_err(err, errlen, "classify weights %s: %s is %s, expected F32, F16 or BF16", path,
                      sp->name, st_dtype_name(t->dtype));
            goto out;
        }
        if (st_read_f32(t, (float *)((char *)w + sp->offset), e, sizeof e) != 0) {
            fleet_err(err, errlen, "classify weights %s: %s", path, e);
            goto out;
        }
    }
    rc = 0;
out:
    st_close(st);
    return rc;
}
