/* Per-interval series summed in the kernel (httpflow, dnsflow): the value
 * every series has, and the switch between the two maps that take turns.
 * src/aggregate/series.ts reads them. */
#ifndef DATAKIT_EBPF_SERIES_H
#define DATAKIT_EBPF_SERIES_H

/* Latency histogram, log-linear: one bucket below 2^HIST_MIN_SHIFT ns, then
 * HIST_SUB buckets per power of two up to 2^(HIST_MIN_SHIFT + HIST_OCTAVES),
 * then one for everything longer. A bucket is 1/16 of its power of two wide,
 * so its midpoint is within 3.2% of any value in it. */
#define HIST_MIN_SHIFT 10 /* 1 µs */
#define HIST_SUB_BITS 4
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_OCTAVES 27   /* up to 2^37 ns: 137 s */
#define HIST_BUCKETS (HIST_OCTAVES * HIST_SUB + 2)

struct latency_series {
	__u64 count;
	__u64 latency_sum; /* ns */
	__u64 latency_max;
	__u32 hist[HIST_BUCKETS];
};

/* Written by user space while the programs run. */
struct series_control {
	__u32 active;          /* which series map the programs add to: 0 or 1 */
	__u32 _pad;
	__u64 series_made[2];  /* series made in each map this interval (reset at each switch) */
};

#ifdef __BPF__
/* The histogram bucket of a latency. */
static __always_inline __u32 hist_bucket(__u64 ns)
{
	if (ns < (1ULL << HIST_MIN_SHIFT))
		return 0;
	__u64 v = ns;
	__u32 msb = 0;
	if (v >> 32) { v >>= 32; msb += 32; }
	if (v >> 16) { v >>= 16; msb += 16; }
	if (v >> 8) { v >>= 8; msb += 8; }
	if (v >> 4) { v >>= 4; msb += 4; }
	if (v >> 2) { v >>= 2; msb += 2; }
	if (v >> 1) msb += 1;
	if (msb >= HIST_MIN_SHIFT + HIST_OCTAVES)
		return HIST_BUCKETS - 1;
	__u32 sub = (ns >> (msb - HIST_SUB_BITS)) & (HIST_SUB - 1);
	return 1 + (msb - HIST_MIN_SHIFT) * HIST_SUB + sub;
}

/* Adds one latency to a series; atomic but for the maximum, which may lose a
 * race with another CPU's. */
static __always_inline void series_add(struct latency_series *v, __u64 latency)
{
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->latency_sum, latency);
	if (latency > v->latency_max)
		v->latency_max = latency;
	__u64 b = hist_bucket(latency);
	/* masked in asm so the bound check below stays, for older verifiers */
	asm volatile("%0 &= 511" : "+r"(b));
	if (b < HIST_BUCKETS)
		__sync_fetch_and_add(&v->hist[b], 1);
}

/* The count of series made in the active map, for the active map's index: the
 * index went to the stack as a lookup key; bound it again in the register that
 * indexes, or older verifiers see any value. */
static __always_inline __u64 *series_made(struct series_control *ctl, __u32 active)
{
	__u32 slot = active;
	asm volatile("%0 &= 1" : "+r"(slot));
	return &ctl->series_made[slot];
}
#endif

#endif
