/* tl_fashion.h: Fashion-MNIST's test images for the classify model's tests, read from
 * Debian's dataset-fashion-mnist package (deploy/install-deps.sh installs it). */
#ifndef TL_FASHION_H
#define TL_FASHION_H

#include <stddef.h>

#define TL_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* Reads the 10,000 test images (784 bytes each, row by row) and their labels (0..9) from
 * TL_FASHION_DIR (gzipped IDX files, or plain ones). Returns 0 with malloc'd arrays the
 * harness frees when the case ends, or -1 with a reason in err when the files are not
 * there or not what they should be. */
int tl_fashion_test_set(unsigned char **images, unsigned char **labels, size_t *n, char *err,
                        size_t errlen);

/* TL_SKIP when the dataset is missing, except under CI (CI set), where the test command
 * installed it and a missing dataset is a failure. */
void tl_fashion_require(int ok, const char *why);

#endif
