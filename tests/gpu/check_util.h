/* check_util.h: what the GPU checks (fleet-embed-check, fleet-classify-check) do the same
 * way: their command line and their random stream.
 *
 * Both take --rounds N, --seed S, --dump FILE, --help and one option naming their model
 * (--model-dir DIR or --weights FILE). check_parse_args reads them; it returns -1 when
 * the check should run, else the exit code: 0 after --help (usage printed), 2 on misuse
 * (an unknown option, or fewer rounds than min_rounds: "PROG: --rounds must be RULE").
 */
#ifndef TESTS_GPU_CHECK_UTIL_H
#define TESTS_GPU_CHECK_UTIL_H

#include <stdint.h>

typedef struct check_args {
    /* set by the caller: */
    const char *prog;        /* "fleet-classify-check" */
    const char *model_opt;   /* the option naming the model, without "--": "weights" */
    const char *help;        /* printed by --help */
    int min_rounds;          /* fewer is misuse... */
    const char *rounds_rule; /* ...said as "--rounds must be " rounds_rule */
    /* defaults set by the caller, overwritten by the command line: */
    const char *model, *dump;
    int rounds;
    unsigned long long seed;
} check_args;

int check_parse_args(int argc, char **argv, check_args *a);

/* The splitmix64 stream the checks draw from: seeded once with --seed. */
void check_rnd_seed(uint64_t seed);

/* The stream's next value modulo n, n > 0. */
uint32_t check_rnd(uint32_t n);

#endif
