/* tl_classify.h: running a classify model (worker/classify/cnn.h) in the test's own
 * process, as the tests' reference. Header-only (static inline): only the tests that
 * include it link a classify backend (fleet_classify_cpu); the harness library does not. */
#ifndef TL_CLASSIFY_H
#define TL_CLASSIFY_H

#include <stddef.h>

#include "cnn.h"
#include "testlib.h"

/* The probabilities of images px[0..n) from model m of backend ops, n * CNN_CLASSES floats
 * that the harness frees when the case ends, in calls of at most the backend's
 * max_batch; the case fails, with the backend's message, when a call fails. */
static inline float *tl_classify(const cnn_ops *ops, void *m, const unsigned char *px, size_t n) {
    char err[512];
    float *probs = tl_alloc(n * CNN_CLASSES * sizeof *probs);
    size_t chunk = ops->max_batch(m);
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        int rc = ops->classify(m, px + i * CNN_PIXELS, k, probs + i * CNN_CLASSES, err, sizeof err);
        if (rc != 0) tl_log("classify: %s", err);
        ASSERT_EQ_INT(rc, 0);
    }
    return probs;
}

/* The most likely class of one image's probabilities p (the first of equal ones). */
static inline int tl_classify_argmax(const float *p) {
    int best = 0;
    for (int k = 1; k < CNN_CLASSES; k++)
        if (p[k] > p[best]) best = k;
    return best;
}

#endif
