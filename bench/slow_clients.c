/* slow_clients: GET /healthz latency while many slow clients hold connections
 * (docs/security.md, "Connections and framing"). Prints figures; never passes or fails.
 *
 *   cc -O2 -o /tmp/slow_clients bench/slow_clients.c
 *   /tmp/slow_clients PORT [SLOW_CLIENTS=2000] [PROBES=200] [SECONDS=5]
 *
 * Opens SLOW_CLIENTS connections to 127.0.0.1:PORT, each sending a request head one
 * header byte per second and never finishing it (slowloris); then, while they drip for
 * SECONDS, sends PROBES sequential GET /healthz requests, each on a fresh connection,
 * and prints their latency (p50, p99, max) and statuses, and how many slow connections
 * the gateway had closed by the end. Needs a descriptor limit above SLOW_CLIENTS. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int dial(int port, int nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(0x7f000001)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: slow_clients PORT [SLOW_CLIENTS] [PROBES] [SECONDS]\n");
        return 2;
    }
    int port = atoi(argv[1]), nslow = argc > 2 ? atoi(argv[2]) : 2000;
    int probes = argc > 3 ? atoi(argv[3]) : 200, seconds = argc > 4 ? atoi(argv[4]) : 5;
    int *slow = calloc((size_t)nslow, sizeof *slow);
    double *lat = calloc((size_t)probes, sizeof *lat);
    if (!slow || !lat) return 1;
    int opened = 0;
    for (int i = 0; i < nslow; i++) {
        slow[i] = dial(port, 1);
        if (slow[i] >= 0) opened++;
    }
    usleep(200000);
    for (int i = 0; i < nslow; i++)
        if (slow[i] >= 0) send(slow[i], "GET /healthz HTTP/1.1\r\nX-Slow: ", 31, MSG_NOSIGNAL);
    int statuses[600] = {0}, failed = 0;
    double t0 = now_ms(), next_drip = t0 + 1000, spacing = seconds * 1000.0 / probes;
    for (int p = 0; p < probes; p++) {
        while (now_ms() < t0 + p * spacing) usleep(1000);
        if (now_ms() >= next_drip) { /* one more byte from every slow client */
            for (int i = 0; i < nslow; i++)
                if (slow[i] >= 0 && send(slow[i], "a", 1, MSG_NOSIGNAL) < 0) {
                    close(slow[i]);
                    slow[i] = -1;
                }
            next_drip += 1000;
        }
        double s = now_ms();
        int fd = dial(port, 0);
        char buf[512];
        ssize_t n = -1;
        if (fd >= 0) {
            struct timeval tv = {5, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            send(fd, req, sizeof req - 1, MSG_NOSIGNAL);
            n = recv(fd, buf, sizeof buf - 1, 0);
            close(fd);
        }
        lat[p] = now_ms() - s;
        int st = 0;
        if (n > 0) {
            buf[n] = '\0';
            sscanf(buf, "HTTP/1.%*d %d", &st);
        }
        if (st > 0 && st < 600) statuses[st]++;
        else failed++;
    }
    int closed = 0;
    for (int i = 0; i < nslow; i++) {
        if (slow[i] < 0) {
            closed++;
            continue;
        }
        char c;
        if (recv(slow[i], &c, 1, MSG_DONTWAIT) >= 0) closed++; /* an answer or EOF */
        close(slow[i]);
    }
    qsort(lat, (size_t)probes, sizeof *lat, cmp);
    printf("slow clients: %d opened, %d closed by the gateway within %d s\n", opened, closed,
           seconds);
    printf("GET /healthz x%d: p50 %.2f ms, p99 %.2f ms, max %.2f ms; no answer %d", probes,
           lat[probes / 2], lat[(probes * 99) / 100], lat[probes - 1], failed);
    for (int s = 100; s < 600; s++)
        if (statuses[s]) printf("; %d x%d", s, statuses[s]);
    printf("\n");
    return 0;
}
