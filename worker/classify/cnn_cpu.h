/* cnn_cpu.h: the classify network (cnn.h) on the CPU: every layer computed directly,
 * vectorized across output channels (cnn_cpu.c says how); no BLAS. The reference the
 * CUDA backend checks itself against at load.
 *
 * Threads: a call's images run side by side on the backend's own threads (cpu_pool), one
 * image a task, so an image's probabilities are the same bytes alone, in any batch and on
 * any number of threads. FLEET_CPU_THREADS (read at load) sets how many; default:
 * cpu_pool_default_threads(). */
#ifndef CLASSIFY_CNN_CPU_H
#define CLASSIFY_CNN_CPU_H

#include "cnn.h"

#define CNN_CPU_MAX_BATCH 256

extern const cnn_ops cnn_cpu_ops;

#endif
