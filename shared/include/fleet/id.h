/* id.h: job ids. A ULID: 48 bits of milliseconds then 80 random bits, written as 26
 * Crockford base32 characters, so ids sort by creation time as plain strings (the job
 * index relies on that; see docs/redis.md). */
#ifndef FLEET_ID_H
#define FLEET_ID_H

#include <stdint.h>

/* Writes a new id and its terminating NUL into out. Returns 0, or -1 if no randomness. */
int fleet_id_new(char out[27]);
/* Writes the id for time ms with the given random bytes (tests use fixed ones). */
void fleet_id_format(char out[27], uint64_t ms, const uint8_t rnd[10]);
/* The 10-character time prefix of every id created at ms (for range trims). */
void fleet_id_time_prefix(char out[11], uint64_t ms);
/* Milliseconds since the epoch on the wall clock. */
uint64_t fleet_now_ms(void);

#endif
