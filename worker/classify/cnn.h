/* cnn.h: the classify model's network, whichever backend runs it.
 *
 * A small convolutional network for the 10 classes of Fashion-MNIST (models/classify/
 * README.md; trained by tools/classify):
 *
 *   image 1x28x28, pixel / 255
 *     conv1  3x3, pad 1, 1 -> 16   conv1.weight [16,1,3,3]  conv1.bias [16]   ReLU, maxpool 2
 *     conv2  3x3, pad 1, 16 -> 32  conv2.weight [32,16,3,3] conv2.bias [32]   ReLU, maxpool 2
 *     fc     32*7*7 -> 10          fc.weight [10,1568]      fc.bias [10]      (flattened c, y, x)
 *   softmax over the 10 classes
 *
 * Max pooling is 2x2 with stride 2. A backend is a constant table of four functions over
 * its own model type; every backend computes the same thing from the same weights:
 *
 *   load(weights) --> classify(pixels, n) --> classify(...) --> ... --> free()
 *
 * "cpu" (cnn_cpu.c: OpenBLAS) and "cuda" (cnn_cuda.c: cuDNN and cuBLAS, built when fleet
 * was configured with the CUDA toolkit and cuDNN) live in the modules fleet-classify-cpu.so
 * and fleet-classify-cuda.so, opened the first time they are asked for (cnn_module_open),
 * as the embed model's are (worker/embed/bert_module.h): fleet-worker links neither
 * OpenBLAS nor a CUDA library.
 */
#ifndef CLASSIFY_CNN_H
#define CLASSIFY_CNN_H

#include <stddef.h>

#define CNN_SIDE 28
#define CNN_PIXELS (CNN_SIDE * CNN_SIDE) /* 784 */
#define CNN_C1 16
#define CNN_C2 32
#define CNN_POOLED 7                                   /* side after the second pool */
#define CNN_FEATURES (CNN_C2 * CNN_POOLED * CNN_POOLED) /* 1568 */
#define CNN_CLASSES 10

/* The weights in float32, in PyTorch's layouts (as the file holds them). */
typedef struct cnn_weights {
    float conv1_w[CNN_C1 * 1 * 9]; /* [16][1][3][3] */
    float conv1_b[CNN_C1];
    float conv2_w[CNN_C2 * CNN_C1 * 9]; /* [32][16][3][3] */
    float conv2_b[CNN_C2];
    float fc_w[CNN_CLASSES * CNN_FEATURES]; /* [10][1568] */
    float fc_b[CNN_CLASSES];
} cnn_weights;

/* The classes' names, class k at [k] ("T-shirt/top" .. "Ankle boot"). */
extern const char *const cnn_labels[CNN_CLASSES];

/* Reads a safetensors file with exactly the six tensors above, each of its shape, in
 * F32, F16 or BF16 (converted to float32). Returns 0, or -1 with a one-line reason in err
 * (the file, a missing or extra tensor, a wrong shape or dtype). */
int cnn_weights_load(const char *path, cnn_weights *w, char *err, size_t errlen);

typedef struct cnn_ops {
    const char *name; /* "cpu", "cuda" */
    /* Prepares the model from w (copied: w may be freed after). Returns 0, or -1 with a
     * one-line message in err. */
    int (*load)(const cnn_weights *w, void **model, char *err, size_t errlen);
    /* The most images one classify call takes (callers split larger batches). */
    size_t (*max_batch)(const void *model);
    /* n images (1 <= n <= max_batch), each CNN_PIXELS bytes (0 black .. 255 white, row by
     * row), packed one after the other in pixels; writes n x CNN_CLASSES probabilities
     * (each row sums to 1) to probs. Returns 0, or -1 with a one-line message in err
     * (probs untouched). One call at a time per model. */
    int (*classify)(void *model, const unsigned char *pixels, size_t n, float *probs, char *err,
                    size_t errlen);
    void (*free)(void *model); /* accepts NULL */
} cnn_ops;

/* A backend's module exports one symbol, CNN_MODULE_SYMBOL, a const cnn_module; its
 * abi_version is checked against CNN_MODULE_ABI, its sizes against this header's structs
 * and its ops->name against the backend asked for before anything in it is used. */
#define CNN_MODULE_ABI 1
#define CNN_MODULE_SYMBOL "cnn_module_v1"

typedef struct cnn_module {
    int abi_version; /* CNN_MODULE_ABI of the module's build */
    size_t size;     /* sizeof(cnn_module) of the module's build */
    size_t ops_size; /* sizeof(cnn_ops) of the module's build */
    const cnn_ops *ops;
    /* Nonzero when the backend's device is there (cpu: always; cuda: the CUDA runtime sees
     * a GPU). Never allocates device memory. */
    int (*present)(void);
} cnn_module;

/* Sets the path of backend name's module ("cpu", "cuda") for every later open (NULL or
 * "": the default places: next to the running executable, else ../lib/fleet/ from
 * there). The string must outlive the process's use of it. Unknown names are ignored. */
void cnn_module_use(const char *name, const char *path);

/* Writes the path backend name's module is (or would be) opened from to buf. */
void cnn_module_path(const char *name, char *buf, size_t len);

/* Opens backend name's module once per process and returns its checked table, or NULL
 * with a one-line reason in err. A failure is remembered. A module stays loaded until the
 * process exits. */
const cnn_module *cnn_module_open(const char *name, char *err, size_t errlen);

/* "cpu|cuda". */
const char *cnn_backend_names(void);

#endif
