/* tl_fashion.c: Fashion-MNIST's test set for tests (tl_fashion.h). */
#include "tl_fashion.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "testlib.h"

/* Reads an IDX file (gzip or plain: gzread passes plain files through) of the expected
 * magic into a harness-owned buffer; count gets the first dimension. */
static unsigned char *read_idx(const char *name, uint32_t magic, size_t item, size_t *count,
                               char *err, size_t errlen) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.gz", TL_FASHION_DIR, name);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(path, sizeof path, "%s/%s", TL_FASHION_DIR, name);
        f = gzopen(path, "rb");
    }
    if (!f) {
        snprintf(err, errlen, "%s/%s(.gz) is not there (Debian's dataset-fashion-mnist)",
                 TL_FASHION_DIR, name);
        return NULL;
    }
    unsigned char head[16];
    size_t hlen = magic == 0x803 ? 16 : 8;
    unsigned char *data = NULL;
    if (gzread(f, head, (unsigned)hlen) != (int)hlen) goto bad;
    uint32_t m = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | head[2] << 8 | head[3];
    uint32_t n = (uint32_t)head[4] << 24 | (uint32_t)head[5] << 16 | head[6] << 8 | head[7];
    if (m != magic || n == 0 || n > 100000) goto bad;
    data = tl_alloc((size_t)n * item);
    if (gzread(f, data, (unsigned)((size_t)n * item)) != (int)((size_t)n * item)) goto bad;
    gzclose(f);
    *count = n;
    return data;
bad:
    gzclose(f);
    snprintf(err, errlen, "%s is not a Fashion-MNIST IDX file", path);
    return NULL;
}

int tl_fashion_test_set(unsigned char **images, unsigned char **labels, size_t *n, char *err,
                        size_t errlen) {
    size_t ni = 0, nl = 0;
    *images = read_idx("t10k-images-idx3-ubyte", 0x803, 784, &ni, err, errlen);
    if (!*images) return -1;
    *labels = read_idx("t10k-labels-idx1-ubyte", 0x801, 1, &nl, err, errlen);
    if (!*labels) return -1;
    if (ni != nl) {
        snprintf(err, errlen, "%zu test images but %zu labels", ni, nl);
        return -1;
    }
    *n = ni;
    return 0;
}

void tl_fashion_require(int ok, const char *why) {
    if (ok) return;
    if (getenv("CI") && *getenv("CI")) {
        tl_log("the dataset is missing under CI: %s", why);
        ASSERT_TRUE(!"Fashion-MNIST's test set is installed (deploy/install-deps.sh)");
    }
    TL_SKIP("skipped: %s", why);
}
