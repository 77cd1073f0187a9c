/* cuda_util.h: what the CUDA backends' host code (bert_cuda.c, worker/classify/cnn_cuda.c)
 * does the same way: turning a CUDA, cuBLAS or cuDNN status into fleet's error message,
 * reading their FLEET_* settings, finding a GPU, and setting up the stream and cuBLAS
 * handle each model runs on.
 *
 * Header-only (static inline): each backend module (fleet-embed-cuda.so,
 * fleet-classify-cuda.so) compiles its own copy and exports none of it. dnn_check is
 * declared only when the includer has included <cudnn.h> first (the embed backend builds
 * without cuDNN).
 *
 * Every function taking (err, errlen) returns 0, or -1 with err set through fleet_err,
 * the message starting "cuda: ".
 */
#ifndef EMBED_CUDA_UTIL_H
#define EMBED_CUDA_UTIL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/err.h"

static inline int cuda_check(cudaError_t e, const char *what, char *err, size_t errlen) {
    if (e == cudaSuccess) return 0;
    return fleet_err(err, errlen, "cuda: %s: %s", what, cudaGetErrorString(e));
}

static inline int blas_check(cublasStatus_t s, const char *what, char *err, size_t errlen) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    return fleet_err(err, errlen, "cuda: cuBLAS %s: %s", what, cublasGetStatusString(s));
}

#ifdef CUDNN_MAJOR
static inline int dnn_check(cudnnStatus_t s, const char *what, char *err, size_t errlen) {
    if (s == CUDNN_STATUS_SUCCESS) return 0;
    return fleet_err(err, errlen, "cuda: cuDNN %s: %s", what, cudnnGetErrorString(s));
}
#endif

/* A setting that names one of n choices ("fp32", "tf32"): *choice is its index, 0 when
 * the variable is unset or empty; -1 with "NAME is 'VALUE', not fp32|tf32" when it names
 * none of them. */
static inline int cuda_setting(const char *name, const char *const *choices, int n, int *choice,
                               char *err, size_t errlen) {
    const char *v = getenv(name);
    *choice = 0;
    if (!v || !v[0]) return 0;
    for (int i = 0; i < n; i++)
        if (strcmp(v, choices[i]) == 0) {
            *choice = i;
            return 0;
        }
    char list[128] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? "|" : "", choices[i]);
    return fleet_err(err, errlen, "%s is '%s', not %s", name, v, list);
}

/* A debugging switch: 1 when the variable is exactly "1", else 0. */
static inline int cuda_flag(const char *name) {
    const char *v = getenv(name);
    return v && strcmp(v, "1") == 0;
}

/* 1 when the CUDA runtime sees at least one GPU, else 0 (no driver, no device). */
static inline int cuda_gpu_present(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

/* 0 when there is a GPU to load onto; else -1 with the reason and the way out
 * ("use --backend cpu"). */
static inline int cuda_need_gpu(char *err, size_t errlen) {
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    if (ce == cudaSuccess && ndev > 0) return 0;
    return fleet_err(err, errlen, "cuda: no GPU available (%s); use --backend cpu",
                     ce != cudaSuccess ? cudaGetErrorString(ce) : "no device");
}

/* Makes the non-blocking stream a model runs on and its cuBLAS handle bound to it, with
 * a workspace of ws_bytes of our own (*ws) so that cuBLAS allocates nothing while it
 * runs. On failure what was made is left in *stream, *blas and *ws for the caller's free
 * path, which destroys whichever is set. */
static inline int cuda_stream_blas_new(cudaStream_t *stream, cublasHandle_t *blas, void **ws,
                                       size_t ws_bytes, char *err, size_t errlen) {
    if (cuda_check(cudaStreamCreateWithFlags(stream, cudaStreamNonBlocking), "creating a stream",
                   err, errlen) != 0 ||
        blas_check(cublasCreate(blas), "create", err, errlen) != 0 ||
        blas_check(cublasSetStream(*blas, *stream), "set stream", err, errlen) != 0 ||
        cuda_check(cudaMalloc(ws, ws_bytes), "allocating cuBLAS's workspace", err, errlen) != 0 ||
        blas_check(cublasSetWorkspace(*blas, *ws, ws_bytes), "set workspace", err, errlen) != 0)
        return -1;
    return 0;
}

#endif
