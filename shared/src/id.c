/* id.c: ULID job ids (time-ordered, 128 bits) and the wall clock. */
#include "fleet/id.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

uint64_t fleet_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void fleet_id_time_prefix(char out[11], uint64_t ms) {
    ms &= (UINT64_C(1) << 48) - 1;
    for (int i = 9; i >= 0; i--) {
        out[i] = crockford[ms & 31];
        ms >>= 5;
    }
    out[10] = '\0';
}

void fleet_id_format(char out[27], uint64_t ms, const uint8_t rnd[10]) {
    fleet_id_time_prefix(out, ms);
    /* 80 random bits as 16 characters of 5 bits, most significant first. */
    int bit = 0;
    for (int i = 0; i < 16; i++) {
        int v = 0;
        for (int b = 0; b < 5; b++, bit++) v = (v << 1) | ((rnd[bit / 8] >> (7 - bit % 8)) & 1);
        out[10 + i] = crockford[v];
    }
    out[26] = '\0';
}

/* Random bytes from the kernel, fetched FILL bytes at a time: one getrandom per id was
 * about 3% of the gateway's CPU per submit (it makes two ids a request: the job's and
 * the request's). Each thread keeps its own buffer; a forked child empties the one it
 * inherited (the only thread a child has is the one that forked), so it never hands out
 * bytes its parent also used. */
#define FILL 1280
static _Thread_local struct {
    uint8_t bytes[FILL];
    size_t left;
} pool;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_forked(void) {
    memset(pool.bytes, 0, sizeof pool.bytes);
    pool.left = 0;
}

static void pool_init(void) { pthread_atfork(NULL, NULL, pool_forked); }

static int random_bytes(uint8_t *dst, size_t n) {
    pthread_once(&pool_once, pool_init);
    if (pool.left < n) {
        size_t got = 0;
        while (got < sizeof pool.bytes) {
            ssize_t r = getrandom(pool.bytes + got, sizeof pool.bytes - got, 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                return -1;
            }
            got += (size_t)r;
        }
        pool.left = sizeof pool.bytes;
    }
    /* Handed out from the end, and wiped: no byte serves twice. */
    pool.left -= n;
    memcpy(dst, pool.bytes + pool.left, n);
    memset(pool.bytes + pool.left, 0, n);
    return 0;
}

int fleet_id_new(char out[27]) {
    uint8_t rnd[10];
    if (random_bytes(rnd, sizeof rnd) < 0) return -1;
    fleet_id_format(out, fleet_now_ms(), rnd);
    return 0;
}
