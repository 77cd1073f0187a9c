/* cnn_cuda.c: the classify network on a CUDA GPU; see cnn_cuda.h. Host code in C: cuDNN
 * for the convolutions, biases, ReLUs, pooling and softmax, cuBLAS for the dense layer,
 * cnn_cuda_kernels.cu for the pixels' bytes to floats. */
#include "cnn_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn_cpu.h"
#include "cnn_cuda_kernels.h"
#include "cuda_util.h"
#include "fleet/err.h"

#define BLAS_WORKSPACE (32u << 20) /* cuBLAS's workspace, ours: NVIDIA's size for Hopper */
#define SELF_CHECK_TOL 1e-5        /* float32: absolute, on each probability */
#define SELF_CHECK_TOL_TF32 1e-2   /* tf32: 10-bit mantissas in the products (cnn_cuda.h) */
#define SELF_CHECK_IMAGES 32
#define ALIGN_FLOATS 64 /* sub-buffers start 256 bytes apart at least */

/* How the convolutions and the dense layer multiply (FLEET_CLASSIFY_MATH). */
typedef enum math_mode {
    MATH_FP32, /* FMA units only: cuDNN's FMA math, cuBLAS's default (no TF32) */
    MATH_TF32, /* tensor cores with TF32 inputs, opt-in */
} math_mode;

/* One convolution with its bias and ReLU. */
typedef struct conv_layer {
    const char *name;      /* "conv1", "conv2" */
    int in_c, out_c, side; /* channels in and out; the side, the same in and out */
    const float *w, *b;    /* device: [out_c][in_c][3][3], [out_c] */
    const float *in;       /* device: its input, [B][in_c][side][side] (x or p1) */
    float *out;            /* device: its output with bias and ReLU (c1 or c2) */
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t desc;
    cudnnTensorDescriptor_t bias_desc;         /* 1 x out_c x 1 x 1 */
    cudnnTensorDescriptor_t in_desc, out_desc; /* set per call: n x c x side x side */
    cudnnConvolutionFwdAlgo_t algo;
    cudnnMathType_t algo_math;
    size_t ws_need; /* the most workspace algo needs for any batch size */
} conv_layer;

typedef struct cnn_cuda {
    math_mode math;
    int fused, poison;
    int max_batch;

    cudaStream_t stream;
    cudnnHandle_t dnn;
    cublasHandle_t blas;

    conv_layer conv[2];
    cudnnTensorDescriptor_t p1_desc, p2_desc;          /* the pools' outputs, per call */
    cudnnTensorDescriptor_t logits_desc, fc_bias_desc; /* n x 10 x 1 x 1, 1 x 10 x 1 x 1 */
    cudnnActivationDescriptor_t relu;
    cudnnPoolingDescriptor_t pool;

    float *weights;           /* one device allocation; the layers' pointers point into it */
    const float *fc_w, *fc_b; /* [10][1568], [10] */

    void *blas_ws; /* cuBLAS's workspace (BLAS_WORKSPACE bytes), so it allocates nothing */
    void *conv_ws; /* the convolutions' workspace, conv_ws_size bytes (may be NULL) */
    size_t conv_ws_size;
    float *work; /* one allocation for the buffers below, poisoned as one */
    size_t work_floats;
    float *x;            /* [B][1][28][28] the pixels scaled to [0, 1] */
    float *c1, *p1;      /* [B][16][28][28] conv1 + bias + ReLU; [B][16][14][14] pooled */
    float *c2, *p2;      /* [B][32][14][14]; [B][32][7][7], i.e. the features [B][1568] */
    float *logits;       /* [B][10] */
    float *probs;        /* [B][10] */
    float *zero;         /* fused: the z input (alpha2 = 0), c1-sized zeros, never poisoned */
    unsigned char *dpix; /* device [B][784] */
    unsigned char *hpix; /* pinned [B][784] */
    float *hprobs;       /* pinned [B][10] */
} cnn_cuda;

/* ------------------------------------------------------------ errors ------------- */

int cnn_cuda_present(void) { return cuda_gpu_present(); }

static const char *algo_name(cudnnConvolutionFwdAlgo_t a) {
    switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
    }
}

static const char *math_name(cudnnMathType_t t) {
    switch (t) {
    case CUDNN_DEFAULT_MATH: return "default";
    case CUDNN_TENSOR_OP_MATH: return "tensor-op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor-op-conversion";
    case CUDNN_FMA_MATH: return "fma";
    default: return "?";
    }
}

/* ------------------------------------------------------------ the layers' shapes -- */

static int set4d(cudnnTensorDescriptor_t d, int n, int c, int side, char *err, size_t errlen) {
    return dnn_check(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, side,
                                                side),
                     "set a tensor descriptor", err, errlen);
}

/* Sets the per-call tensor descriptors for a batch of n images. Host-side calls only. */
static int set_batch(cnn_cuda *m, int n, char *err, size_t errlen) {
    const conv_layer *c1 = &m->conv[0], *c2 = &m->conv[1];
    if (set4d(c1->in_desc, n, 1, CNN_SIDE, err, errlen) != 0 ||
        set4d(c1->out_desc, n, CNN_C1, CNN_SIDE, err, errlen) != 0 ||
        set4d(m->p1_desc, n, CNN_C1, CNN_SIDE / 2, err, errlen) != 0 ||
        set4d(c2->in_desc, n, CNN_C1, CNN_SIDE / 2, err, errlen) != 0 ||
        set4d(c2->out_desc, n, CNN_C2, CNN_SIDE / 2, err, errlen) != 0 ||
        set4d(m->p2_desc, n, CNN_C2, CNN_POOLED, err, errlen) != 0 ||
        set4d(m->logits_desc, n, CNN_CLASSES, 1, err, errlen) != 0)
        return -1;
    return 0;
}

/* Makes the descriptors (no device needed) and checks that cuDNN sees the shapes
 * cnn.h describes: each convolution keeps its side (3x3, pad 1), each pool halves it. */
static int make_descriptors(cnn_cuda *m, char *err, size_t errlen) {
    static const struct {
        const char *name;
        int in_c, out_c, side;
    } shape[2] = {{"conv1", 1, CNN_C1, CNN_SIDE}, {"conv2", CNN_C1, CNN_C2, CNN_SIDE / 2}};
    for (int i = 0; i < 2; i++) {
        conv_layer *c = &m->conv[i];
        c->name = shape[i].name;
        c->in_c = shape[i].in_c;
        c->out_c = shape[i].out_c;
        c->side = shape[i].side;
        if (dnn_check(cudnnCreateFilterDescriptor(&c->w_desc), "create a filter descriptor", err,
                      errlen) != 0 ||
            dnn_check(cudnnSetFilter4dDescriptor(c->w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                                 c->out_c, c->in_c, 3, 3),
                      "set a filter descriptor", err, errlen) != 0 ||
            dnn_check(cudnnCreateConvolutionDescriptor(&c->desc), "create a convolution descriptor",
                      err, errlen) != 0 ||
            /* PyTorch's Conv2d is a cross-correlation (the kernel is not flipped) */
            dnn_check(cudnnSetConvolution2dDescriptor(c->desc, 1, 1, 1, 1, 1, 1,
                                                      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                      "set a convolution descriptor", err, errlen) != 0 ||
            /* fp32: FMA kernels only (CUDNN_DEFAULT_MATH lets cuDNN use TF32 from Ampere
             * on); tf32: whatever the chosen algorithm runs with (choose_algorithms) */
            dnn_check(cudnnSetConvolutionMathType(c->desc, m->math == MATH_FP32
                                                               ? CUDNN_FMA_MATH
                                                               : CUDNN_DEFAULT_MATH),
                      "set the convolution math type", err, errlen) != 0 ||
            dnn_check(cudnnCreateTensorDescriptor(&c->bias_desc), "create a tensor descriptor", err,
                      errlen) != 0 ||
            set4d(c->bias_desc, 1, c->out_c, 1, err, errlen) != 0 ||
            dnn_check(cudnnCreateTensorDescriptor(&c->in_desc), "create a tensor descriptor", err,
                      errlen) != 0 ||
            dnn_check(cudnnCreateTensorDescriptor(&c->out_desc), "create a tensor descriptor", err,
                      errlen) != 0)
            return -1;
    }
    if (dnn_check(cudnnCreateTensorDescriptor(&m->p1_desc), "create a tensor descriptor", err,
                  errlen) != 0 ||
        dnn_check(cudnnCreateTensorDescriptor(&m->p2_desc), "create a tensor descriptor", err,
                  errlen) != 0 ||
        dnn_check(cudnnCreateTensorDescriptor(&m->logits_desc), "create a tensor descriptor", err,
                  errlen) != 0 ||
        dnn_check(cudnnCreateTensorDescriptor(&m->fc_bias_desc), "create a tensor descriptor", err,
                  errlen) != 0 ||
        set4d(m->fc_bias_desc, 1, CNN_CLASSES, 1, err, errlen) != 0 ||
        dnn_check(cudnnCreateActivationDescriptor(&m->relu), "create an activation descriptor", err,
                  errlen) != 0 ||
        /* NaN propagates through ReLU and the pools, so a poisoned element that no layer
         * overwrote reaches the probabilities (FLEET_CLASSIFY_POISON) */
        dnn_check(cudnnSetActivationDescriptor(m->relu, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN,
                                               0.0),
                  "set the ReLU descriptor", err, errlen) != 0 ||
        dnn_check(cudnnCreatePoolingDescriptor(&m->pool), "create a pooling descriptor", err,
                  errlen) != 0 ||
        dnn_check(cudnnSetPooling2dDescriptor(m->pool, CUDNN_POOLING_MAX, CUDNN_PROPAGATE_NAN, 2, 2,
                                              0, 0, 2, 2),
                  "set the pooling descriptor", err, errlen) != 0 ||
        set_batch(m, m->max_batch, err, errlen) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        const conv_layer *c = &m->conv[i];
        int n, ch, h, w;
        if (dnn_check(cudnnGetConvolution2dForwardOutputDim(c->desc, c->in_desc, c->w_desc, &n, &ch,
                                                            &h, &w),
                      "convolution output shape", err, errlen) != 0)
            return -1;
        if (n != m->max_batch || ch != c->out_c || h != c->side || w != c->side)
            return fleet_err(err, errlen,
                             "cuda: cuDNN gives %s an output of %dx%dx%dx%d, not %dx%dx%dx%d",
                             c->name, n, ch, h, w, m->max_batch, c->out_c, c->side, c->side);
        if (dnn_check(cudnnGetPooling2dForwardOutputDim(m->pool, c->out_desc, &n, &ch, &h, &w),
                      "pooling output shape", err, errlen) != 0)
            return -1;
        if (n != m->max_batch || ch != c->out_c || h != c->side / 2 || w != c->side / 2)
            return fleet_err(err, errlen,
                             "cuda: cuDNN gives the pool after %s an output of %dx%dx%dx%d, not "
                             "%dx%dx%dx%d",
                             c->name, n, ch, h, w, m->max_batch, c->out_c, c->side / 2,
                             c->side / 2);
    }
    return 0;
}

/* ------------------------------------------------------------ loading ------------ */

static size_t round_up(size_t floats) {
    return (floats + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

/* Uploads the weights into one device allocation, each tensor 256-byte aligned. */
static int upload_weights(cnn_cuda *m, const cnn_weights *w, char *err, size_t errlen) {
    const struct {
        const float *src;
        size_t count;
    } t[6] = {
        {w->conv1_w, sizeof w->conv1_w / sizeof(float)},
        {w->conv1_b, sizeof w->conv1_b / sizeof(float)},
        {w->conv2_w, sizeof w->conv2_w / sizeof(float)},
        {w->conv2_b, sizeof w->conv2_b / sizeof(float)},
        {w->fc_w, sizeof w->fc_w / sizeof(float)},
        {w->fc_b, sizeof w->fc_b / sizeof(float)},
    };
    size_t off[6], total = 0;
    for (int i = 0; i < 6; i++) {
        off[i] = total;
        total += round_up(t[i].count);
    }
    float *host = calloc(total, sizeof *host);
    if (!host) return fleet_err(err, errlen, "classify: out of memory");
    for (int i = 0; i < 6; i++) memcpy(host + off[i], t[i].src, t[i].count * sizeof(float));
    int rc = cuda_check(cudaMalloc((void **)&m->weights, total * sizeof(float)),
                        "allocating the weights", err, errlen);
    if (rc == 0)
        rc = cuda_check(cudaMemcpy(m->weights, host, total * sizeof(float), cudaMemcpyHostToDevice),
                        "copying the weights to the GPU", err, errlen);
    free(host);
    if (rc != 0) return -1;
    m->conv[0].w = m->weights + off[0];
    m->conv[0].b = m->weights + off[1];
    m->conv[1].w = m->weights + off[2];
    m->conv[1].b = m->weights + off[3];
    m->fc_w = m->weights + off[4];
    m->fc_b = m->weights + off[5];
    return 0;
}

/* Allocates the work buffers for max_batch images, the pinned host buffers and (fused)
 * the zeros. */
static int alloc_work(cnn_cuda *m, char *err, size_t errlen) {
    const size_t B = (size_t)m->max_batch;
    const size_t c1_floats = B * CNN_C1 * CNN_PIXELS;
    const size_t sizes[] = {
        B * CNN_PIXELS,                /* x */
        c1_floats,                     /* c1 */
        B * CNN_C1 * (CNN_PIXELS / 4), /* p1 */
        B * CNN_C2 * (CNN_PIXELS / 4), /* c2 */
        B * CNN_FEATURES,              /* p2 */
        B * CNN_CLASSES,               /* logits */
        B * CNN_CLASSES,               /* probs */
    };
    float **dst[] = {&m->x, &m->c1, &m->p1, &m->c2, &m->p2, &m->logits, &m->probs};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += round_up(sizes[i]);
    if (cuda_check(cudaMalloc((void **)&m->work, total * sizeof(float)),
                   "allocating the work buffers", err, errlen) != 0)
        return -1;
    m->work_floats = total;
    float *p = m->work;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *dst[i] = p;
        p += round_up(sizes[i]);
    }
    m->conv[0].in = m->x;
    m->conv[0].out = m->c1;
    m->conv[1].in = m->p1;
    m->conv[1].out = m->c2;
    if (cuda_check(cudaMalloc((void **)&m->dpix, B * CNN_PIXELS), "allocating the pixel buffer",
                   err, errlen) != 0 ||
        cuda_check(cudaMallocHost((void **)&m->hpix, B * CNN_PIXELS),
                   "allocating pinned host memory", err, errlen) != 0 ||
        cuda_check(cudaMallocHost((void **)&m->hprobs, B * CNN_CLASSES * sizeof(float)),
                   "allocating pinned host memory", err, errlen) != 0)
        return -1;
    /* z of cudnnConvolutionBiasActivationForward is scaled by alpha2 = 0; it is a buffer
     * of zeros of its own, never poisoned, so the result does not depend on whether cuDNN
     * reads z when alpha2 is 0 (0 * NaN would be NaN). conv1's output is the larger. */
    if (m->fused && (cuda_check(cudaMalloc((void **)&m->zero, c1_floats * sizeof(float)),
                                "allocating the fused convolutions' zeros", err, errlen) != 0 ||
                     cuda_check(cudaMemset(m->zero, 0, c1_floats * sizeof(float)),
                                "clearing the fused convolutions' zeros", err, errlen) != 0))
        return -1;
    return 0;
}

/* Whether algorithm algo (run with math type math) takes conv at every batch size a call
 * may bring, and the most workspace any of them needs (in *ws): host-side queries, a few
 * milliseconds in all. */
static int fits_every_batch(cnn_cuda *m, conv_layer *c, cudnnConvolutionFwdAlgo_t algo,
                            cudnnMathType_t math, size_t *ws, char *err, size_t errlen) {
    *ws = 0;
    if (dnn_check(cudnnSetConvolutionMathType(c->desc, math), "set the convolution math type", err,
                  errlen) != 0)
        return -1;
    for (int n = 1; n <= m->max_batch; n++) {
        size_t need = 0;
        if (set_batch(m, n, err, errlen) != 0) return -1;
        cudnnStatus_t s = cudnnGetConvolutionForwardWorkspaceSize(m->dnn, c->in_desc, c->w_desc,
                                                                  c->desc, c->out_desc, algo,
                                                                  &need);
        if (s != CUDNN_STATUS_SUCCESS)
            return fleet_err(err, errlen, "cuda: cuDNN: %s's algorithm %s at %d images: %s",
                             c->name, algo_name(algo), n, cudnnGetErrorString(s));
        if (need > CNN_CUDA_WORKSPACE_LIMIT)
            return fleet_err(err, errlen,
                             "cuda: cuDNN: %s's algorithm %s needs %zu bytes of workspace at %d "
                             "images; at most %zu",
                             c->name, algo_name(algo), need, n, CNN_CUDA_WORKSPACE_LIMIT);
        if (need > *ws) *ws = need;
    }
    return 0;
}

/* Makes the convolutions' workspace at least size bytes (what it held is not kept). */
static int grow_workspace(cnn_cuda *m, size_t size, char *err, size_t errlen) {
    if (size <= m->conv_ws_size) return 0;
    if (m->conv_ws) cudaFree(m->conv_ws);
    m->conv_ws = NULL;
    m->conv_ws_size = 0;
    if (cuda_check(cudaMalloc(&m->conv_ws, size), "allocating the convolutions' workspace", err,
                   errlen) != 0)
        return -1;
    m->conv_ws_size = size;
    return 0;
}

static int conv_bias_relu(cnn_cuda *m, const conv_layer *c, char *err, size_t errlen);

/* Picks conv's algorithm: cuDNN's heuristic order for max_batch images
 * (cudnnGetConvolutionForwardAlgorithm_v7), keeping the first that cuDNN supports here,
 * is neither FFT-based nor the non-fused Winograd (their transforms round more coarsely
 * than the 1e-5 check allows for), runs in float32 unless TF32 was asked for, takes every
 * batch size 1..max_batch within CNN_CUDA_WORKSPACE_LIMIT bytes of workspace, and runs:
 * one trial at max_batch and at one image, as classify will call it (fused or not), for
 * cuDNN may refuse a combination only when it is called (the fused call supports fewer
 * than the plain convolution). The trials' output is overwritten by every call. */
static int choose_algorithm(cnn_cuda *m, conv_layer *c, char *err, size_t errlen) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    if (set_batch(m, m->max_batch, err, errlen) != 0 ||
        dnn_check(cudnnGetConvolutionForwardAlgorithm_v7(m->dnn, c->in_desc, c->w_desc, c->desc,
                                                         c->out_desc,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                                         perf),
                  "choosing a convolution algorithm", err, errlen) != 0)
        return -1;
    char why[256] = "";
    for (int i = 0; i < got; i++) {
        const cudnnConvolutionFwdAlgoPerf_t *p = &perf[i];
        if (p->status != CUDNN_STATUS_SUCCESS || p->memory > CNN_CUDA_WORKSPACE_LIMIT) continue;
        if (p->algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT ||
            p->algo == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
            p->algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED)
            continue;
        if (m->math == MATH_FP32 && (p->mathType == CUDNN_TENSOR_OP_MATH ||
                                     p->mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
            continue;
        /* fp32 keeps the FMA-only math the descriptor was made with; tf32 runs the
         * algorithm with the math type cuDNN rated it for */
        cudnnMathType_t math = m->math == MATH_FP32 ? CUDNN_FMA_MATH : p->mathType;
        size_t ws;
        if (fits_every_batch(m, c, p->algo, math, &ws, why, sizeof why) != 0) continue;
        if (grow_workspace(m, ws, err, errlen) != 0) return -1;
        c->algo = p->algo;
        c->algo_math = math;
        c->ws_need = ws;
        if (set_batch(m, m->max_batch, err, errlen) != 0) return -1;
        int refused = conv_bias_relu(m, c, why, sizeof why) != 0;
        if (!refused) {
            if (set_batch(m, 1, err, errlen) != 0) return -1;
            refused = conv_bias_relu(m, c, why, sizeof why) != 0;
        }
        /* what cuDNN queued must finish: an error there is no refusal but a failure */
        if (cuda_check(cudaStreamSynchronize(m->stream), "trying a convolution algorithm", err,
                       errlen) != 0)
            return -1;
        if (!refused) return 0;
    }
    return fleet_err(
        err, errlen,
        "cuda: cuDNN offers no usable algorithm for %s (math %s, conv %s, %d rated%s%s)", c->name,
        m->math == MATH_FP32 ? "fp32" : "tf32", m->fused ? "fused" : "separate", got,
        why[0] ? "; the last refusal: " : "", why);
}

/* Both convolutions' algorithms, then the workspace: exactly what the larger needs. */
static int choose_algorithms(cnn_cuda *m, char *err, size_t errlen) {
    if (choose_algorithm(m, &m->conv[0], err, errlen) != 0 ||
        choose_algorithm(m, &m->conv[1], err, errlen) != 0)
        return -1;
    size_t need = m->conv[0].ws_need > m->conv[1].ws_need ? m->conv[0].ws_need : m->conv[1].ws_need;
    if (need == m->conv_ws_size) return 0;
    if (m->conv_ws) cudaFree(m->conv_ws);
    m->conv_ws = NULL;
    m->conv_ws_size = 0;
    return grow_workspace(m, need, err, errlen);
}

static void ops_free(void *model) {
    cnn_cuda *m = model;
    if (!m) return;
    for (int i = 0; i < 2; i++) {
        conv_layer *c = &m->conv[i];
        if (c->w_desc) cudnnDestroyFilterDescriptor(c->w_desc);
        if (c->desc) cudnnDestroyConvolutionDescriptor(c->desc);
        if (c->bias_desc) cudnnDestroyTensorDescriptor(c->bias_desc);
        if (c->in_desc) cudnnDestroyTensorDescriptor(c->in_desc);
        if (c->out_desc) cudnnDestroyTensorDescriptor(c->out_desc);
    }
    cudnnTensorDescriptor_t tensors[] = {m->p1_desc, m->p2_desc, m->logits_desc, m->fc_bias_desc};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        if (tensors[i]) cudnnDestroyTensorDescriptor(tensors[i]);
    if (m->relu) cudnnDestroyActivationDescriptor(m->relu);
    if (m->pool) cudnnDestroyPoolingDescriptor(m->pool);
    if (m->dnn) cudnnDestroy(m->dnn);
    if (m->blas) cublasDestroy(m->blas);
    if (m->stream) cudaStreamDestroy(m->stream);
    /* Only what was made: a model refused before any CUDA call needs no context. */
    void *dev[] = {m->weights, m->work, m->zero, m->dpix, m->blas_ws, m->conv_ws};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) cudaFree(dev[i]);
    if (m->hpix) cudaFreeHost(m->hpix);
    if (m->hprobs) cudaFreeHost(m->hprobs);
    free(m);
}

static int ops_classify(void *model, const unsigned char *pixels, size_t n, float *probs, char *err,
                        size_t errlen);

/* ------------------------------------------------------------ the self-check ----- */

/* Fills images[count][784] with fixed pseudo-random images of several kinds: all black,
 * all white, then in turn uniform noise, a lit ellipse on black (as garments are), and a
 * smooth gradient. */
static void self_check_images(unsigned char *images, int count) {
    uint32_t seed = 20240917u;
#define NEXT() (seed = seed * 1664525u + 1013904223u, seed >> 8)
    for (int i = 0; i < count; i++) {
        unsigned char *im = images + (size_t)i * CNN_PIXELS;
        if (i == 0 || i == 1) {
            memset(im, i == 0 ? 0 : 255, CNN_PIXELS);
            continue;
        }
        int kind = i % 3;
        double cx = 6 + NEXT() % 16, cy = 6 + NEXT() % 16, rx = 3 + NEXT() % 10,
               ry = 3 + NEXT() % 10;
        int lo = (int)(NEXT() % 128), hi = 128 + (int)(NEXT() % 128);
        for (int y = 0; y < CNN_SIDE; y++)
            for (int x = 0; x < CNN_SIDE; x++) {
                int v;
                if (kind == 0) {
                    v = (int)(NEXT() % 256);
                } else if (kind == 1) {
                    double dx = (x - cx) / rx, dy = (y - cy) / ry;
                    v = dx * dx + dy * dy <= 1.0 ? hi - (int)(NEXT() % 32) : 0;
                } else {
                    v = lo + (hi - lo) * (x + y) / (2 * (CNN_SIDE - 1));
                }
                im[y * CNN_SIDE + x] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    }
#undef NEXT
}

static int argmax(const float *p) {
    int best = 0;
    for (int k = 1; k < CNN_CLASSES; k++)
        if (p[k] > p[best]) best = k;
    return best;
}

/* The largest probability of ref less its second largest. */
static float top_gap(const float *ref) {
    int best = argmax(ref);
    float second = -1.0f;
    for (int k = 0; k < CNN_CLASSES; k++)
        if (k != best && ref[k] > second) second = ref[k];
    return ref[best] - second;
}

/* Classifies fixed images with this model and with the CPU backend on the same weights
 * and compares them: a NaN, a probability further than the tolerance, or another most
 * likely class (where the CPU's two best are further apart than the tolerance; closer,
 * either is right at this precision) refuses the load. */
static int self_check(cnn_cuda *m, const cnn_weights *w, char *err, size_t errlen) {
    enum { N = SELF_CHECK_IMAGES };
    unsigned char *images = malloc((size_t)N * CNN_PIXELS);
    float *gpu = malloc((size_t)N * CNN_CLASSES * sizeof *gpu);
    float *cpu = malloc((size_t)N * CNN_CLASSES * sizeof *cpu);
    void *ref = NULL;
    int rc = -1;
    char e[256];
    if (!images || !gpu || !cpu) {
        fleet_err(err, errlen, "classify: out of memory");
        goto out;
    }
    self_check_images(images, N);
    if (ops_classify(m, images, N, gpu, err, errlen) != 0) goto out;
    if (cnn_cpu_ops.load(w, &ref, e, sizeof e) != 0) {
        fleet_err(err, errlen, "cuda self-check: the CPU backend did not load: %s", e);
        goto out;
    }
    if (cnn_cpu_ops.classify(ref, images, N, cpu, e, sizeof e) != 0) {
        fleet_err(err, errlen, "cuda self-check: the CPU backend failed: %s", e);
        goto out;
    }
    const double tol = m->math == MATH_TF32 ? SELF_CHECK_TOL_TF32 : SELF_CHECK_TOL;
    for (int i = 0; i < N; i++) {
        const float *g = gpu + (size_t)i * CNN_CLASSES, *c = cpu + (size_t)i * CNN_CLASSES;
        for (int k = 0; k < CNN_CLASSES; k++) {
            if (isnan(g[k]) || isnan(c[k])) {
                fleet_err(err, errlen,
                          "cuda self-check: image %d of %d: class %d's probability is NaN on the "
                          "%s; refusing to serve wrong numbers",
                          i, N, k, isnan(g[k]) ? "GPU" : "CPU");
                goto out;
            }
            if (fabs((double)g[k] - c[k]) > tol) {
                fleet_err(err, errlen,
                          "cuda self-check: image %d of %d: class %d's probability is %.9g on "
                          "the GPU, %.9g on the CPU (limit %g); refusing to serve wrong numbers",
                          i, N, k, g[k], c[k], tol);
                goto out;
            }
        }
        if (argmax(g) != argmax(c) && top_gap(c) > tol) {
            fleet_err(err, errlen,
                      "cuda self-check: image %d of %d: class %d on the GPU, %d on the CPU; "
                      "refusing to serve wrong classes",
                      i, N, argmax(g), argmax(c));
            goto out;
        }
    }
    rc = 0;
out:
    cnn_cpu_ops.free(ref);
    free(images);
    free(gpu);
    free(cpu);
    return rc;
}

static int ops_load(const cnn_weights *w, void **model, char *err, size_t errlen) {
    *model = NULL;
    cnn_cuda *m = calloc(1, sizeof *m);
    if (!m) return fleet_err(err, errlen, "classify: out of memory");
    m->max_batch = CNN_CUDA_MAX_BATCH;

    /* maths in math_mode's order; the first of each list is the default */
    static const char *const maths[] = {"fp32", "tf32"}, *const convs[] = {"fused", "separate"};
    int math, conv;
    if (cuda_setting("FLEET_CLASSIFY_MATH", maths, 2, &math, err, errlen) != 0 ||
        cuda_setting("FLEET_CLASSIFY_CONV", convs, 2, &conv, err, errlen) != 0)
        goto fail;
    m->math = (math_mode)math;
    m->fused = conv == 0;
    m->poison = cuda_flag("FLEET_CLASSIFY_POISON");

    /* The descriptors need no device: made first, their shapes are checked everywhere. */
    if (make_descriptors(m, err, errlen) != 0) goto fail;

    if (cuda_need_gpu(err, errlen) != 0 ||
        cuda_stream_blas_new(&m->stream, &m->blas, &m->blas_ws, BLAS_WORKSPACE, err, errlen) != 0 ||
        dnn_check(cudnnCreate(&m->dnn), "create", err, errlen) != 0 ||
        dnn_check(cudnnSetStream(m->dnn, m->stream), "set stream", err, errlen) != 0 ||
        /* CUBLAS_DEFAULT_MATH keeps sgemm in float32; TF32 only when asked for */
        blas_check(cublasSetMathMode(m->blas, m->math == MATH_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                   : CUBLAS_DEFAULT_MATH),
                   "set math mode", err, errlen) != 0)
        goto fail;
    /* cudaMemcpy and cudaMemset run on the legacy stream, which m->stream (non-blocking)
     * does not wait for: synchronise before the stream uses what they wrote. */
    if (upload_weights(m, w, err, errlen) != 0 || alloc_work(m, err, errlen) != 0 ||
        cuda_check(cudaDeviceSynchronize(), "uploading the weights", err, errlen) != 0 ||
        choose_algorithms(m, err, errlen) != 0)
        goto fail;
    if (self_check(m, w, err, errlen) != 0) goto fail;
    *model = m;
    return 0;
fail:
    ops_free(m);
    return -1;
}

/* ------------------------------------------------------------ the forward pass --- */

/* conv's convolution, bias and ReLU from its input to its output (descriptors already set
 * for the call's batch). */
static int conv_bias_relu(cnn_cuda *m, const conv_layer *c, char *err, size_t errlen) {
    const float one = 1.0f, zero = 0.0f;
    if (m->fused)
        return dnn_check(cudnnConvolutionBiasActivationForward(m->dnn, &one, c->in_desc, c->in,
                                                               c->w_desc, c->w, c->desc, c->algo,
                                                               m->conv_ws, m->conv_ws_size, &zero,
                                                               c->out_desc, m->zero, c->bias_desc,
                                                               c->b, m->relu, c->out_desc, c->out),
                         c->name, err, errlen);
    /* beta = 0: out is written, not read (its poison does not leak in) */
    if (dnn_check(cudnnConvolutionForward(m->dnn, &one, c->in_desc, c->in, c->w_desc, c->w, c->desc,
                                          c->algo, m->conv_ws, m->conv_ws_size, &zero, c->out_desc,
                                          c->out),
                  c->name, err, errlen) != 0 ||
        dnn_check(cudnnAddTensor(m->dnn, &one, c->bias_desc, c->b, &one, c->out_desc, c->out),
                  "adding a convolution's bias", err, errlen) != 0 ||
        dnn_check(cudnnActivationForward(m->dnn, m->relu, &one, c->out_desc, c->out, &zero,
                                         c->out_desc, c->out),
                  "ReLU", err, errlen) != 0)
        return -1;
    return 0;
}

/* The forward pass proper; ops_classify wraps it. */
static int forward(cnn_cuda *m, const unsigned char *pixels, size_t n, float *probs, char *err,
                   size_t errlen) {
    const float one = 1.0f, zero = 0.0f;
    const int ni = (int)n;
    memcpy(m->hpix, pixels, n * CNN_PIXELS);
    if (m->poison) memset(m->hprobs, 0xff, n * CNN_CLASSES * sizeof(float));
    if (set_batch(m, ni, err, errlen) != 0) return -1;
    /* All bits set is a NaN in float32. */
    if (m->poison &&
        cuda_check(cudaMemsetAsync(m->work, 0xff, m->work_floats * sizeof(float), m->stream),
                   "poisoning the work buffers", err, errlen) != 0)
        return -1;
    if (cuda_check(cudaMemcpyAsync(m->dpix, m->hpix, n * CNN_PIXELS, cudaMemcpyHostToDevice,
                                   m->stream),
                   "copying the pixels to the GPU", err, errlen) != 0 ||
        cuda_check((cudaError_t)cnk_bytes_to_unit(m->dpix, (long)(n * CNN_PIXELS), m->x, m->stream),
                   "pixels to floats", err, errlen) != 0 ||
        conv_bias_relu(m, &m->conv[0], err, errlen) != 0 ||
        dnn_check(cudnnPoolingForward(m->dnn, m->pool, &one, m->conv[0].out_desc, m->c1, &zero,
                                      m->p1_desc, m->p1),
                  "pooling after conv1", err, errlen) != 0 ||
        conv_bias_relu(m, &m->conv[1], err, errlen) != 0 ||
        dnn_check(cudnnPoolingForward(m->dnn, m->pool, &one, m->conv[1].out_desc, m->c2, &zero,
                                      m->p2_desc, m->p2),
                  "pooling after conv2", err, errlen) != 0)
        return -1;
    /* logits [n][10] = features [n][1568] x fc_w^T. cuBLAS is column-major: there the
     * logits are [10][n] (ld 10) = fc_w's buffer read as [1568][10], transposed, times
     * the features' buffer read as [1568][n]. */
    if (blas_check(cublasSgemm(m->blas, CUBLAS_OP_T, CUBLAS_OP_N, CNN_CLASSES, ni, CNN_FEATURES,
                               &one, m->fc_w, CNN_FEATURES, m->p2, CNN_FEATURES, &zero, m->logits,
                               CNN_CLASSES),
                   "dense layer", err, errlen) != 0 ||
        dnn_check(cudnnAddTensor(m->dnn, &one, m->fc_bias_desc, m->fc_b, &one, m->logits_desc,
                                 m->logits),
                  "adding the dense layer's bias", err, errlen) != 0 ||
        dnn_check(cudnnSoftmaxForward(m->dnn, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE,
                                      &one, m->logits_desc, m->logits, &zero, m->logits_desc,
                                      m->probs),
                  "softmax", err, errlen) != 0 ||
        cuda_check(cudaMemcpyAsync(m->hprobs, m->probs, n * CNN_CLASSES * sizeof(float),
                                   cudaMemcpyDeviceToHost, m->stream),
                   "copying the probabilities from the GPU", err, errlen) != 0 ||
        cuda_check(cudaStreamSynchronize(m->stream), "running the batch", err, errlen) != 0)
        return -1;
    memcpy(probs, m->hprobs, n * CNN_CLASSES * sizeof(float));
    return 0;
}

static int ops_classify(void *model, const unsigned char *pixels, size_t n, float *probs, char *err,
                        size_t errlen) {
    cnn_cuda *m = model;
    if (n < 1 || n > (size_t)m->max_batch)
        return fleet_err(err, errlen, "classify: %zu images in one call; 1 to %d", n, m->max_batch);
    if (forward(m, pixels, n, probs, err, errlen) == 0) return 0;
    /* Let whatever was queued finish before the next call reuses the pinned buffers. */
    cudaStreamSynchronize(m->stream);
    return -1;
}

/* ------------------------------------------------------------ the backend table -- */

static size_t ops_max_batch(const void *model) {
    return (size_t)((const cnn_cuda *)model)->max_batch;
}

void cnn_cuda_describe(const void *model, char *buf, size_t len) {
    const cnn_cuda *m = model;
    snprintf(buf, len,
             "math %s, conv %s, conv1 %s (%s math, %zu B of workspace), conv2 %s (%s math, %zu B "
             "of workspace), at most %d images a call",
             m->math == MATH_TF32 ? "tf32" : "fp32", m->fused ? "fused" : "separate",
             algo_name(m->conv[0].algo), math_name(m->conv[0].algo_math), m->conv[0].ws_need,
             algo_name(m->conv[1].algo), math_name(m->conv[1].algo_math), m->conv[1].ws_need,
             m->max_batch);
}

const cnn_ops cnn_cuda_ops = {
    .name = "cuda",
    .load = ops_load,
    .max_batch = ops_max_batch,
    .classify = ops_classify,
    .free = ops_free,
};
