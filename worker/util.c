/* util.c: small helpers of fleet-worker: the monotonic clock every deadline uses (so a
 * wall-clock step never expires a lease or a grace period), sleeps, lease tokens,
 * rate-limited warnings, backoffs. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "worker.h"

long long wk_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wk_sleep_ms(long ms) {
    if (ms <= 0) return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    /* Not restarted on EINTR on purpose: a SIGTERM should end the wait at once. */
    nanosleep(&ts, NULL);
}

unsigned long wk_random(void) {
    unsigned long v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
        v = (unsigned long)wk_mono_ms() * 2654435761UL; /* jitter only: any spread will do */
    return v;
}

int wk_tokens_new(char (*out)[WK_TOKEN_LEN + 1], size_t n) {
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[32 * (WK_TOKEN_LEN / 2)]; /* 512 bytes: 32 tokens per getrandom */

    for (size_t done = 0; done < n;) {
        size_t k = n - done < 32 ? n - done : 32;
        size_t want = k * (WK_TOKEN_LEN / 2), got = 0;
        while (got < want) {
            ssize_t r = getrandom(rnd + got, want - got, 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                return -1;
            }
            got += (size_t)r;
        }
        for (size_t t = 0; t < k; t++) {
            const unsigned char *b = rnd + t * (WK_TOKEN_LEN / 2);
            for (size_t i = 0; i < WK_TOKEN_LEN / 2; i++) {
                out[done + t][2 * i] = hex[b[i] >> 4];
                out[done + t][2 * i + 1] = hex[b[i] & 15];
            }
            out[done + t][WK_TOKEN_LEN] = '\0';
        }
        done += k;
    }
    return 0;
}

int wk_token_new(char out[WK_TOKEN_LEN + 1]) {
    return wk_tokens_new((char(*)[WK_TOKEN_LEN + 1]) out, 1);
}

bool wk_name_valid(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

bool wk_ratelog_due(wk_ratelog *rl, long every_ms, long *count) {
    long long now = wk_mono_ms();
    rl->count++;
    if (rl->next_mono != 0 && now < rl->next_mono) return false;
    *count = rl->count;
    rl->count = 0;
    rl->next_mono = now + every_ms;
    return true;
}

long wk_backoff_next(long prev_ms, long min_ms, long max_ms) {
    if (prev_ms <= 0) return min_ms;
    return prev_ms > max_ms / 2 ? max_ms : prev_ms * 2;
}
