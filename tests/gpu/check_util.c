/* check_util.c: the GPU checks' command line and random stream; see check_util.h. */
#include "check_util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

int check_parse_args(int argc, char **argv, check_args *a) {
    const struct option opts[] = {
        {a->model_opt, required_argument, NULL, 'm'},
        {"rounds", required_argument, NULL, 'r'},
        {"seed", required_argument, NULL, 's'},
        {"dump", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': a->model = optarg; break;
        case 'r': a->rounds = atoi(optarg); break;
        case 's': a->seed = strtoull(optarg, NULL, 10); break;
        case 'd': a->dump = optarg; break;
        case 'h': fputs(a->help, stdout); return 0;
        default: return 2;
        }
    }
    if (a->rounds < a->min_rounds) {
        fprintf(stderr, "%s: --rounds must be %s\n", a->prog, a->rounds_rule);
        return 2;
    }
    return -1;
}

static uint64_t rng_state;

void check_rnd_seed(uint64_t seed) { rng_state = seed; }

uint32_t check_rnd(uint32_t n) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (uint32_t)(z % n);
}
