/* bert_cuda.c: the BERT encoder on a CUDA GPU; see bert_cuda.h. Host code in C: cuBLAS
 * for the GEMMs, bert_kernels.cu for everything between them. */
#include "bert_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef EMBED_HAVE_CUDNN
#include <cudnn.h>
#endif

#include "bert_kernels.h"
#include "cuda_util.h"
#include "fleet/err.h"
#include "safetensors.h"

#define BLAS_WORKSPACE (32u << 20) /* cuBLAS's workspace, ours: NVIDIA's size for Hopper */
#define SELF_CHECK_TOL 1e-3        /* float32 and 3xtf32 GEMMs */
#define SELF_CHECK_TOL_TF32 1e-2   /* tf32: 10-bit mantissas in the products */

/* How the linear layers multiply (FLEET_EMBED_GEMM). */
typedef enum gemm_mode {
    GEMM_FP32,   /* cuBLAS float32 (no tensor cores) */
    GEMM_TF32,   /* one TF32 tensor-core product: fastest, about 1e-3 less exact */
    GEMM_3XTF32, /* hi*hi + hi*lo + lo*hi in TF32: float32 accuracy on tensor cores */
} gemm_mode;

typedef struct encoder_layer {
    const float *qkv_w, *qkv_b; /* [3H, H], [3H]: query, key, value rows in that order */
    const float *ao_w, *ao_b;   /* attention output dense [H, H], [H] */
    const float *ln1_g, *ln1_b; /* attention output LayerNorm */
    const float *in_w, *in_b;   /* intermediate dense [I, H], [I] */
    const float *out_w, *out_b; /* output dense [H, I], [H] */
    const float *ln2_g, *ln2_b; /* output LayerNorm */
} encoder_layer;

typedef struct bert_cuda {
    bert_config cfg;
    int H, I, heads, d, max_len, max_seqs;
    long max_tokens; /* max_seqs * max_len */
    int softmax_cudnn, poison;
    gemm_mode gemm;

    cudaStream_t stream;
    cublasHandle_t blas;
#ifdef EMBED_HAVE_CUDNN
    cudnnHandle_t dnn;
    cudnnTensorDescriptor_t scores_desc;
#endif

    float *weights;                 /* one allocation; the pointers below point into it */
    float *weights_hi, *weights_lo; /* GEMM_3XTF32: TF32(weights) and the rest, same
                                     * layout as weights (used by the GEMMs only) */
    long weight_floats;
    const float *word, *position, *type0, *emb_g, *emb_b;
    encoder_layer *layers;

    void *blas_ws; /* cuBLAS's workspace (BLAS_WORKSPACE bytes), so it allocates nothing */
    float *work;   /* one allocation for the buffers below */
    float *x, *y, *qkv, *q, *k, *v, *scores, *inter, *pooled;
    float *act_hi, *act_lo; /* GEMM_3XTF32: a linear layer's input split, [T, max(H, I)] */
    long work_floats;
    int32_t *dint; /* per call: ids, tok_pos, tok_seq [T]; start, len [n] (room for
                     * max_tokens and max_seqs) */
    int32_t *hint; /* pinned mirror of dint */
    float *hout;   /* pinned [max_seqs, H] */
} bert_cuda;

/* ------------------------------------------------------------ errors ------------- */

static int kernel_check(int e, const char *what, char *err, size_t errlen) {
    return cuda_check((cudaError_t)e, what, err, errlen);
}

int bert_cuda_present(void) { return cuda_gpu_present(); }

int bert_cuda_has_cudnn(void) {
#ifdef EMBED_HAVE_CUDNN
    return 1;
#else
    return 0;
#endif
}

/* ------------------------------------------------------------ loading ------------ */

/* Converts tensor prefix+name to float32 in host (stage floats) and copies its first
 * count floats to dst (device). */
static int upload(const st_file *st, const char *prefix, const char *name, float *dst, size_t count,
                  float *host, size_t stage, char *err, size_t errlen) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const st_tensor *t = st_find(st, full);
    if (!t) return fleet_err(err, errlen, "weights: tensor %s missing", full);
    size_t n = t->nbytes / st_dtype_size(t->dtype);
    if (n < count)
        return fleet_err(err, errlen, "weights: tensor %s has %zu values, need %zu", full, n,
                         count);
    if (n > stage)
        return fleet_err(err, errlen,
                         "weights: tensor %s has %zu values, more than the "
                         "largest the config allows (%zu)",
                         full, n, stage);
    if (st_read_f32(t, host, err, errlen) != 0) return -1;
    return cuda_check(cudaMemcpy(dst, host, count * sizeof *dst, cudaMemcpyHostToDevice),
                      "copying the weights to the GPU", err, errlen);
}

/* Lays the weights out in m->weights (device) and uploads them. */
static int load_weights(bert_cuda *m, const st_file *st, char *err, size_t errlen) {
    const bert_config *c = &m->cfg;
    const size_t H = (size_t)m->H, I = (size_t)m->I, L = (size_t)c->num_hidden_layers;
    const size_t per_layer = 3 * H * H + 3 * H + H * H + H + 2 * H + I * H + I + H * I + H + 2 * H;
    const size_t total = (size_t)c->vocab_size * H + (size_t)c->max_position_embeddings * H + H +
                         2 * H + L * per_layer;
    /* The largest single tensor bounds the host staging buffer. */
    size_t stage = (size_t)c->vocab_size * H;
    if ((size_t)c->max_position_embeddings * H > stage)
        stage = (size_t)c->max_position_embeddings * H;
    if ((size_t)c->type_vocab_size * H > stage) stage = (size_t)c->type_vocab_size * H;
    if (I * H > stage) stage = I * H;
    if (H * H > stage) stage = H * H;

    if (cuda_check(cudaMalloc((void **)&m->weights, total * sizeof(float)),
                   "allocating the weights", err, errlen) != 0)
        return -1;
    m->weight_floats = (long)total;
    m->layers = calloc(L, sizeof *m->layers);
    float *host = malloc(stage * sizeof *host);
    int rc = -1;
    if (!m->layers || !host) {
        fleet_err(err, errlen, "embed: out of memory");
        goto out;
    }
    const char *prefix = bert_tensor_prefix(st);
    float *p = m->weights;
#define TAKE(var, n) ((var) = p, p += (n))
    float *word, *pos, *type0, *eg, *eb;
    TAKE(word, (size_t)c->vocab_size * H);
    TAKE(pos, (size_t)c->max_position_embeddings * H);
    TAKE(type0, H);
    TAKE(eg, H);
    TAKE(eb, H);
    m->word = word;
    m->position = pos;
    m->type0 = type0;
    m->emb_g = eg;
    m->emb_b = eb;
    if (upload(st, prefix, "embeddings.word_embeddings.weight", word, (size_t)c->vocab_size * H,
               host, stage, err, errlen) != 0 ||
        upload(st, prefix, "embeddings.position_embeddings.weight", pos,
               (size_t)c->max_position_embeddings * H, host, stage, err, errlen) != 0 ||
        upload(st, prefix, "embeddings.token_type_embeddings.weight", type0, H, host, stage, err,
               errlen) != 0 ||
        upload(st, prefix, "embeddings.LayerNorm.weight", eg, H, host, stage, err, errlen) != 0 ||
        upload(st, prefix, "embeddings.LayerNorm.bias", eb, H, host, stage, err, errlen) != 0)
        goto out;
    for (size_t l = 0; l < L; l++) {
        encoder_layer *ly = &m->layers[l];
        float *qkv_w, *qkv_b, *ao_w, *ao_b, *g1, *b1, *in_w, *in_b, *out_w, *out_b, *g2, *b2;
        TAKE(qkv_w, 3 * H * H);
        TAKE(qkv_b, 3 * H);
        TAKE(ao_w, H * H);
        TAKE(ao_b, H);
        TAKE(g1, H);
        TAKE(b1, H);
        TAKE(in_w, I * H);
        TAKE(in_b, I);
        TAKE(out_w, H * I);
        TAKE(out_b, H);
        TAKE(g2, H);
        TAKE(b2, H);
        *ly = (encoder_layer){qkv_w, qkv_b, ao_w, ao_b, g1, b1, in_w, in_b, out_w, out_b, g2, b2};
        static const char *const qkv_names[3] = {"query", "key", "value"};
        char name[160];
        for (int s = 0; s < 3; s++) {
            snprintf(name, sizeof name, "encoder.layer.%zu.attention.self.%s.weight", l,
                     qkv_names[s]);
            if (upload(st, prefix, name, qkv_w + (size_t)s * H * H, H * H, host, stage, err,
                       errlen) != 0)
                goto out;
            snprintf(name, sizeof name, "encoder.layer.%zu.attention.self.%s.bias", l,
                     qkv_names[s]);
            if (upload(st, prefix, name, qkv_b + (size_t)s * H, H, host, stage, err, errlen) != 0)
                goto out;
        }
        const struct {
            const char *fmt;
            float *dst;
            size_t count;
        } rest[] = {
            {"encoder.layer.%zu.attention.output.dense.weight", ao_w, H * H},
            {"encoder.layer.%zu.attention.output.dense.bias", ao_b, H},
            {"encoder.layer.%zu.attention.output.LayerNorm.weight", g1, H},
            {"encoder.layer.%zu.attention.output.LayerNorm.bias", b1, H},
            {"encoder.layer.%zu.intermediate.dense.weight", in_w, I * H},
            {"encoder.layer.%zu.intermediate.dense.bias", in_b, I},
            {"encoder.layer.%zu.output.dense.weight", out_w, H * I},
            {"encoder.layer.%zu.output.dense.bias", out_b, H},
            {"encoder.layer.%zu.output.LayerNorm.weight", g2, H},
            {"encoder.layer.%zu.output.LayerNorm.bias", b2, H},
        };
        for (size_t r = 0; r < sizeof rest / sizeof rest[0]; r++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            snprintf(name, sizeof name, rest[r].fmt, l);
#pragma GCC diagnostic pop
            if (upload(st, prefix, name, rest[r].dst, rest[r].count, host, stage, err, errlen) != 0)
                goto out;
        }
    }
#undef TAKE
    rc = 0;
out:
    free(host);
    return rc;
}

/* Allocates the work buffers for max_seqs sequences of max_len tokens. */
static int alloc_work(bert_cuda *m, char *err, size_t errlen) {
    const long T = m->max_tokens, H = m->H, I = m->I, S = m->max_seqs, L = m->max_len;
    const long sizes[] = {
        T * H,     /* x */
        T * H,     /* y */
        T * 3 * H, /* qkv */
        T * H,
        T * H,
        T * H,                /* q, k, v (padded: S * heads * L * d = T * H) */
        S * m->heads * L * L, /* scores */
        T * I,                /* inter */
        S * H,                /* pooled */
        m->gemm == GEMM_3XTF32 ? T * (I > H ? I : H) : 0, /* act_hi */
        m->gemm == GEMM_3XTF32 ? T * (I > H ? I : H) : 0, /* act_lo */
    };
    float **dst[] = {&m->x,      &m->y,     &m->qkv,    &m->q,      &m->k,     &m->v,
                     &m->scores, &m->inter, &m->pooled, &m->act_hi, &m->act_lo};
    long total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += (sizes[i] + 63) / 64 * 64; /* 256-byte aligned starts */
    if (cuda_check(cudaMalloc((void **)&m->work, (size_t)total * sizeof(float)),
                   "allocating the work buffers", err, errlen) != 0)
        return -1;
    m->work_floats = total;
    float *p = m->work;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *dst[i] = p;
        p += (sizes[i] + 63) / 64 * 64;
    }
    const size_t nint = (size_t)(3 * T + 2 * S);
    if (cuda_check(cudaMalloc((void **)&m->dint, nint * sizeof(int32_t)),
                   "allocating the token buffer", err, errlen) != 0 ||
        cuda_check(cudaMallocHost((void **)&m->hint, nint * sizeof(int32_t)),
                   "allocating pinned host memory", err, errlen) != 0 ||
        cuda_check(cudaMallocHost((void **)&m->hout, (size_t)(S * H) * sizeof(float)),
                   "allocating pinned host memory", err, errlen) != 0)
        return -1;
    return 0;
}

static void ops_free(void *model) {
    bert_cuda *m = model;
    if (!m) return;
#ifdef EMBED_HAVE_CUDNN
    if (m->scores_desc) cudnnDestroyTensorDescriptor(m->scores_desc);
    if (m->dnn) cudnnDestroy(m->dnn);
#endif
    if (m->blas) cublasDestroy(m->blas);
    if (m->stream) cudaStreamDestroy(m->stream);
    /* Only what was made: a model refused before any CUDA call needs no context. */
    void *dev[] = {m->weights, m->weights_hi, m->weights_lo, m->work, m->blas_ws};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) cudaFree(dev[i]);
    if (m->dint) cudaFree(m->dint);
    if (m->hint) cudaFreeHost(m->hint);
    if (m->hout) cudaFreeHost(m->hout);
    free(m->layers);
    free(m);
}

static int ops_embed(void *model, const int32_t *const *ids, const size_t *lens, size_t n,
                     float *out, char *err, size_t errlen);

/* Embeds a few fixed pseudo-random sequences with this model and with the CPU backend
 * and compares them: the load fails on a NaN or a difference over SELF_CHECK_TOL. */
static int self_check(bert_cuda *m, const char *dir, char *err, size_t errlen) {
    enum { NSEQ = 4 };
    size_t lens[NSEQ] = {1, 7, 33, (size_t)m->max_len};
    int32_t *ids[NSEQ] = {0};
    float *gpu = malloc(NSEQ * (size_t)m->H * sizeof *gpu);
    float *cpu = malloc(NSEQ * (size_t)m->H * sizeof *cpu);
    void *ref = NULL;
    int rc = -1;
    if (!gpu || !cpu) {
        fleet_err(err, errlen, "embed: out of memory");
        goto out;
    }
    uint32_t seed = 12345;
    for (int s = 0; s < NSEQ; s++) {
        if (lens[s] > (size_t)m->max_len) lens[s] = (size_t)m->max_len;
        if (!(ids[s] = malloc(lens[s] * sizeof *ids[s]))) {
            fleet_err(err, errlen, "embed: out of memory");
            goto out;
        }
        for (size_t i = 0; i < lens[s]; i++) {
            seed = seed * 1664525u + 1013904223u;
            ids[s][i] = (int32_t)((seed >> 8) % (uint32_t)m->cfg.vocab_size);
        }
    }
    if (ops_embed(m, (const int32_t *const *)ids, lens, NSEQ, gpu, err, errlen) != 0) goto out;
    char e[256];
    if (bert_cpu_ops.load(dir, &ref, e, sizeof e) != 0) {
        fleet_err(err, errlen, "self-check: the CPU backend did not load: %s", e);
        goto out;
    }
    if (bert_cpu_ops.embed(ref, (const int32_t *const *)ids, lens, NSEQ, cpu, e, sizeof e) != 0) {
        fleet_err(err, errlen, "self-check: the CPU backend failed: %s", e);
        goto out;
    }
    for (int s = 0; s < NSEQ; s++) {
        const float *g = gpu + (size_t)s * (size_t)m->H, *c = cpu + (size_t)s * (size_t)m->H;
        double scale = 1e-6, diff = 0;
        for (int j = 0; j < m->H; j++) {
            if (isnan(g[j]) || isnan(c[j])) {
                fleet_err(err, errlen,
                          "cuda self-check: sequence of %zu tokens gives NaN "
                          "at %d (%s); refusing to serve wrong numbers",
                          lens[s], j, isnan(g[j]) ? "GPU" : "CPU");
                goto out;
            }
            if (fabs(c[j]) > scale) scale = fabs(c[j]);
            if (fabs((double)g[j] - c[j]) > diff) diff = fabs((double)g[j] - c[j]);
        }
        const double tol = m->gemm == GEMM_TF32 ? SELF_CHECK_TOL_TF32 : SELF_CHECK_TOL;
        if (diff / scale > tol) {
            fleet_err(err, errlen,
                      "cuda self-check: a sequence of %zu tokens differs from "
                      "the CPU backend by %.2g relative (limit %g); refusing to serve "
                      "wrong numbers",
                      lens[s], diff / scale, tol);
            goto out;
        }
    }
    rc = 0;
out:
    bert_cpu_ops.free(ref);
    for (int s = 0; s < NSEQ; s++) free(ids[s]);
    free(gpu);
    free(cpu);
    return rc;
}

static int ops_load(const char *dir, void **model, char *err, size_t errlen) {
    *model = NULL;
    st_file *st = NULL;
    bert_cuda *m = calloc(1, sizeof *m);
    if (!m) return fleet_err(err, errlen, "embed: out of memory");
    if (bert_config_load(dir, &m->cfg, err, errlen) != 0) goto fail;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.safetensors", dir) >= sizeof path) {
        fleet_err(err, errlen, "model.safetensors: path too long");
        goto fail;
    }
    if (st_open(path, &st, err, errlen) != 0 || bert_check_tensors(&m->cfg, st, err, errlen) != 0)
        goto fail;

    const bert_config *c = &m->cfg;
    m->H = c->hidden_size;
    m->I = c->intermediate_size;
    m->heads = c->num_attention_heads;
    m->d = c->head_dim;
    m->max_len = c->max_seq_length < c->max_position_embeddings ? c->max_seq_length
                                                                : c->max_position_embeddings;
    m->max_seqs = BERT_CUDA_MAX_SEQS;
    m->max_tokens = (long)m->max_seqs * m->max_len;
    const char *sm = getenv("FLEET_EMBED_SOFTMAX");
    if (sm && strcmp(sm, "cudnn") == 0) {
#ifdef EMBED_HAVE_CUDNN
        m->softmax_cudnn = 1;
#else
        fleet_err(err, errlen, "FLEET_EMBED_SOFTMAX=cudnn, but this build has no cuDNN");
        goto fail;
#endif
    } else if (sm && sm[0] && strcmp(sm, "own") != 0) {
        fleet_err(err, errlen, "FLEET_EMBED_SOFTMAX is '%s', not own|cudnn", sm);
        goto fail;
    }
    static const char *const gemms[] = {"fp32", "tf32", "3xtf32"}; /* gemm_mode's order */
    int gemm;
    if (cuda_setting("FLEET_EMBED_GEMM", gemms, 3, &gemm, err, errlen) != 0) goto fail;
    m->gemm = (gemm_mode)gemm;
    m->poison = cuda_flag("FLEET_EMBED_POISON");

    if (cuda_need_gpu(err, errlen) != 0 ||
        cuda_stream_blas_new(&m->stream, &m->blas, &m->blas_ws, BLAS_WORKSPACE, err, errlen) != 0)
        goto fail;
#ifdef EMBED_HAVE_CUDNN
    if (m->softmax_cudnn &&
        (dnn_check(cudnnCreate(&m->dnn), "create", err, errlen) != 0 ||
         dnn_check(cudnnSetStream(m->dnn, m->stream), "set stream", err, errlen) != 0 ||
         dnn_check(cudnnCreateTensorDescriptor(&m->scores_desc), "create a descriptor", err,
                   errlen) != 0))
        goto fail;
#endif
    /* cudaMemcpy from pageable memory may return before the device has the bytes, and
     * m->stream does not wait for the legacy stream: synchronise before using them. */
    if (load_weights(m, st, err, errlen) != 0 ||
        cuda_check(cudaDeviceSynchronize(), "uploading the weights", err, errlen) != 0 ||
        alloc_work(m, err, errlen) != 0)
        goto fail;
    if (m->gemm == GEMM_3XTF32 &&
        (cuda_check(cudaMalloc((void **)&m->weights_hi, (size_t)m->weight_floats * sizeof(float)),
                    "allocating the weights' TF32 parts", err, errlen) != 0 ||
         cuda_check(cudaMalloc((void **)&m->weights_lo, (size_t)m->weight_floats * sizeof(float)),
                    "allocating the weights' TF32 parts", err, errlen) != 0 ||
         kernel_check(fbk_split_tf32(m->weights, m->weight_floats, m->weights_hi, m->weights_lo,
                                     m->stream),
                      "splitting the weights", err, errlen) != 0 ||
         cuda_check(cudaStreamSynchronize(m->stream), "splitting the weights", err, errlen) != 0))
        goto fail;
    st_close(st);
    st = NULL;
    if (self_check(m, dir, err, errlen) != 0) goto fail;
    *model = m;
    return 0;
fail:
    st_close(st);
    ops_free(m);
    return -1;
}

/* ------------------------------------------------------------ the forward pass --- */

/* Y[T, out] = X[T, in] W^T, W row-major [out, in] as the checkpoint stores it. cuBLAS is
 * column-major: there Y is Y^T [out, T] = W [out, in] . X^T [in, T], W being the
 * transpose of the column-major view of its buffer. */
static int gemm_one(bert_cuda *m, const float *X, int T, int in, const float *W, int out, float *Y,
                    float beta, cublasComputeType_t compute, const char *what, char *err,
                    size_t errlen) {
    const float one = 1.0f;
    return blas_check(cublasGemmEx(m->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, &one, W,
                                   CUDA_R_32F, in, X, CUDA_R_32F, in, &beta, Y, CUDA_R_32F, out,
                                   compute, CUBLAS_GEMM_DEFAULT),
                      what, err, errlen);
}

static int linear(bert_cuda *m, const float *X, int T, int in, const float *W, int out, float *Y,
                  const char *what, char *err, size_t errlen) {
    switch (m->gemm) {
    case GEMM_FP32:
        return gemm_one(m, X, T, in, W, out, Y, 0.0f, CUBLAS_COMPUTE_32F, what, err, errlen);
    case GEMM_TF32:
        return gemm_one(m, X, T, in, W, out, Y, 0.0f, CUBLAS_COMPUTE_32F_FAST_TF32, what, err,
                        errlen);
    case GEMM_3XTF32: {
        /* W's parts sit at the same offset in weights_hi and weights_lo. */
        const float *Whi = m->weights_hi + (W - m->weights);
        const float *Wlo = m->weights_lo + (W - m->weights);
        const cublasComputeType_t tf = CUBLAS_COMPUTE_32F_FAST_TF32;
        if (kernel_check(fbk_split_tf32(X, (long)T * in, m->act_hi, m->act_lo, m->stream),
                         "splitting an activation", err, errlen) != 0)
            return -1;
        /* Small products first, so the large one is added to them last. */
        return gemm_one(m, m->act_lo, T, in, Whi, out, Y, 0.0f, tf, what, err, errlen) ||
                       gemm_one(m, m->act_hi, T, in, Wlo, out, Y, 1.0f, tf, what, err, errlen) ||
                       gemm_one(m, m->act_hi, T, in, Whi, out, Y, 1.0f, tf, what, err, errlen)
                   ? -1
                   : 0;
    }
    }
    return fleet_err(err, errlen, "embed: unknown GEMM mode");
}

/* scores[bh] = q[bh] k[bh]^T ([L, d] x [d, L]); then ctx[bh] = p[bh] v[bh] into q. */
static int attention(bert_cuda *m, int B, int L, const int32_t *dlen, char *err, size_t errlen) {
    const float one = 1.0f, zero = 0.0f;
    const int d = m->d, batch = B * m->heads;
    /* The attention products are a few percent of the work: float32 unless plain TF32
     * was asked for. */
    const cublasComputeType_t compute = m->gemm == GEMM_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                             : CUBLAS_COMPUTE_32F;
    /* Row-major S [L, L] is column-major S^T = K Q^T: A = K's buffer (column-major
     * [d, L], transposed), B = Q's buffer (column-major [d, L]). */
    if (blas_check(cublasGemmStridedBatchedEx(m->blas, CUBLAS_OP_T, CUBLAS_OP_N, L, L, d, &one,
                                              m->k, CUDA_R_32F, d, (long long)L * d, m->q,
                                              CUDA_R_32F, d, (long long)L * d, &zero, m->scores,
                                              CUDA_R_32F, L, (long long)L * L, batch, compute,
                                              CUBLAS_GEMM_DEFAULT),
                   "attention scores", err, errlen) != 0)
        return -1;
    if (!m->softmax_cudnn) {
        if (kernel_check(fbk_masked_softmax(m->scores, dlen, B, m->heads, L, m->stream),
                         "masked softmax", err, errlen) != 0)
            return -1;
    } else {
#ifdef EMBED_HAVE_CUDNN
        if (kernel_check(fbk_mask_scores(m->scores, dlen, B, m->heads, L, m->stream), "mask scores",
                         err, errlen) != 0 ||
            dnn_check(cudnnSetTensor4dDescriptor(m->scores_desc, CUDNN_TENSOR_NCHW,
                                                 CUDNN_DATA_FLOAT, batch * L, L, 1, 1),
                      "set the scores descriptor", err, errlen) != 0 ||
            dnn_check(cudnnSoftmaxForward(m->dnn, CUDNN_SOFTMAX_ACCURATE,
                                          CUDNN_SOFTMAX_MODE_CHANNEL, &one, m->scores_desc,
                                          m->scores, &zero, m->scores_desc, m->scores),
                      "softmax", err, errlen) != 0)
            return -1;
#endif
    }
    /* Row-major ctx [L, d] is column-major ctx^T = V^T P^T: A = V's buffer (column-major
     * [d, L]), B = P's buffer (column-major [L, L] = P^T). */
    return blas_check(cublasGemmStridedBatchedEx(m->blas, CUBLAS_OP_N, CUBLAS_OP_N, d, L, L, &one,
                                                 m->v, CUDA_R_32F, d, (long long)L * d, m->scores,
                                                 CUDA_R_32F, L, (long long)L * L, &zero, m->q,
                                                 CUDA_R_32F, d, (long long)L * d, batch, compute,
                                                 CUBLAS_GEMM_DEFAULT),
                      "attention context", err, errlen);
}

/* The forward pass proper; ops_embed wraps it. */
static int forward(bert_cuda *m, const int32_t *const *ids, const size_t *lens, size_t n,
                   float *out, char *err, size_t errlen) {
    const bert_config *c = &m->cfg;
    if (n == 0) return 0;
    if (n > (size_t)m->max_seqs)
        return fleet_err(err, errlen, "embed: %zu sequences in one call; at most %d", n,
                         m->max_seqs);
    const int H = m->H, B = (int)n;
    size_t T = 0, L = 0;
    for (size_t s = 0; s < n; s++) {
        if (lens[s] == 0 || lens[s] > (size_t)m->max_len)
            return fleet_err(err, errlen, "embed: sequence %zu: length %zu, must be in [1, %d]", s,
                             lens[s], m->max_len);
        for (size_t i = 0; i < lens[s]; i++)
            if (ids[s][i] < 0 || ids[s][i] >= c->vocab_size)
                return fleet_err(err, errlen,
                                 "embed: sequence %zu: id %ld outside the vocabulary (%d)", s,
                                 (long)ids[s][i], c->vocab_size);
        T += lens[s];
        if (lens[s] > L) L = lens[s];
    }
    /* Token ids and offsets: one pinned buffer [ids T][pos T][seq T][start n][len n],
     * one copy of what this call uses, the same offsets on the device. */
    int32_t *h_ids = m->hint, *h_pos = m->hint + T, *h_seq = m->hint + 2 * T;
    int32_t *h_start = m->hint + 3 * T, *h_len = h_start + n;
    size_t row = 0;
    for (size_t s = 0; s < n; s++) {
        h_start[s] = (int32_t)row;
        h_len[s] = (int32_t)lens[s];
        for (size_t i = 0; i < lens[s]; i++, row++) {
            h_ids[row] = ids[s][i];
            h_pos[row] = (int32_t)i;
            h_seq[row] = (int32_t)s;
        }
    }
    const int32_t *d_ids = m->dint, *d_pos = m->dint + T, *d_seq = m->dint + 2 * T;
    const int32_t *d_start = m->dint + 3 * T, *d_len = d_start + n;
    const int Ti = (int)T, Li = (int)L;
    const float eps = (float)c->layer_norm_eps;

    if (m->poison &&
        kernel_check(fbk_poison(m->work, m->work_floats, m->stream), "poison", err, errlen) != 0)
        return -1;
    if (cuda_check(cudaMemcpyAsync(m->dint, m->hint, (3 * T + 2 * n) * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, m->stream),
                   "copying token ids to the GPU", err, errlen) != 0 ||
        kernel_check(fbk_embed_layernorm(d_ids, d_pos, Ti, H, m->word, m->position, m->type0,
                                         m->emb_g, m->emb_b, eps, m->x, m->stream),
                     "embeddings", err, errlen) != 0)
        return -1;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const encoder_layer *ly = &m->layers[l];
        if (linear(m, m->x, Ti, H, ly->qkv_w, 3 * H, m->qkv, "QKV projection", err, errlen) != 0 ||
            kernel_check(fbk_split_heads(m->qkv, ly->qkv_b, d_start, d_len, B, Li, m->heads, m->d,
                                         1.0f / sqrtf((float)m->d), m->q, m->k, m->v, m->stream),
                         "split heads", err, errlen) != 0 ||
            attention(m, B, Li, d_len, err, errlen) != 0 ||
            kernel_check(fbk_merge_heads(m->q, d_seq, d_pos, Ti, Li, m->heads, m->d, m->y,
                                         m->stream),
                         "merge heads", err, errlen) != 0 ||
            /* qkv is free again: it takes the attention output projection */
            linear(m, m->y, Ti, H, ly->ao_w, H, m->qkv, "attention output", err, errlen) != 0 ||
            kernel_check(fbk_bias_residual_layernorm(m->x, m->qkv, ly->ao_b, Ti, H, ly->ln1_g,
                                                     ly->ln1_b, eps, m->stream),
                         "attention LayerNorm", err, errlen) != 0 ||
            linear(m, m->x, Ti, H, ly->in_w, m->I, m->inter, "intermediate", err, errlen) != 0 ||
            kernel_check(fbk_bias_gelu(m->inter, ly->in_b, Ti, m->I, m->stream), "GELU", err,
                         errlen) != 0 ||
            linear(m, m->inter, Ti, m->I, ly->out_w, H, m->y, "output", err, errlen) != 0 ||
            kernel_check(fbk_bias_residual_layernorm(m->x, m->y, ly->out_b, Ti, H, ly->ln2_g,
                                                     ly->ln2_b, eps, m->stream),
                         "output LayerNorm", err, errlen) != 0)
            return -1;
    }
    if (kernel_check(fbk_mean_pool(m->x, d_start, d_len, B, H, c->normalize ? 1 : 0, m->pooled,
                                   m->stream),
                     "mean pool", err, errlen) != 0 ||
        cuda_check(cudaMemcpyAsync(m->hout, m->pooled, n * (size_t)H * sizeof(float),
                                   cudaMemcpyDeviceToHost, m->stream),
                   "copying embeddings from the GPU", err, errlen) != 0 ||
        cuda_check(cudaStreamSynchronize(m->stream), "running the batch", err, errlen) != 0)
        return -1;
    memcpy(out, m->hout, n * (size_t)H * sizeof(float));
    return 0;
}

static int ops_embed(void *model, const int32_t *const *ids, const size_t *lens, size_t n,
                     float *out, char *err, size_t errlen) {
    bert_cuda *m = model;
    if (forward(m, ids, lens, n, out, err, errlen) == 0) return 0;
    /* Let whatever was queued finish before the next call reuses the pinned buffers. */
    cudaStreamSynchronize(m->stream);
    return -1;
}

/* ------------------------------------------------------------ the backend table -- */

static const bert_config *ops_config(const void *model) { return &((const bert_cuda *)model)->cfg; }

static size_t ops_max_seqs(const void *model) {
    return (size_t)((const bert_cuda *)model)->max_seqs;
}

const bert_ops bert_cuda_ops = {
    .name = "cuda",
    .load = ops_load,
    .config = ops_config,
    .max_seqs = ops_max_seqs,
    .embed = ops_embed,
    .free = ops_free,
};
