/* id.c: ULID job ids (time-ordered, 128 bits) and the wall clock. */
#include "fleet/id.h"

#include <stdio.h>
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

int fleet_id_new(char out[27]) {
    uint8_t rnd[10];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
        if (n < 0) return -1;
        got += (size_t)n;
    }
    fleet_id_format(out, fleet_now_ms(), rnd);
    return 0;
}
