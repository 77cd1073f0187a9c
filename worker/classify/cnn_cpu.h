/* cnn_cpu.h: the classify network (cnn.h) on the CPU: direct 3x3 convolutions for the
 * first layer, im2col and OpenBLAS's sgemm for the second, the dense layer as one sgemm
 * over the batch. The reference the CUDA backend checks itself against at load.
 *
 * Threads: a call splits its images into slices run side by side on the backend's own
 * threads, each slice with OpenBLAS on one thread. FLEET_CPU_THREADS (read at load) sets
 * how many; default: the online CPUs. */
#ifndef CLASSIFY_CNN_CPU_H
#define CLASSIFY_CNN_CPU_H

#include "cnn.h"

#define CNN_CPU_MAX_BATCH 256

extern const cnn_ops cnn_cpu_ops;

#endif
