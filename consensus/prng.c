/*
 * prng.c — the core's only source of randomness: splitmix64 seeded by the
 * caller (cfg.seed) and mixed with the node id, so that nodes given the
 * same seed still draw different election timeouts, and a seed replays.
 */
#include "consensus/raft_impl.h"

/* Seeds p from (seed, id). */
void raft_prng_seed(struct raft_prng *p, uint64_t seed, raft_id id)
{
	p->s = seed ^ (id * 0xD1B54A32D192ED03ULL) ^ 0x5EEDF00DCAFEULL;
}

/* Next 64 random bits (splitmix64). */
uint64_t raft_prng_next(struct raft_prng *p)
{
	uint64_t z = (p->s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* Uniform value in [lo, hi). */
uint32_t raft_prng_range(struct raft_prng *p, uint32_t lo, uint32_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + (uint32_t)(raft_prng_next(p) % (uint64_t)(hi - lo));
}
