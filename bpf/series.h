/* Per-interval series summed in the kernel (httpflow, dnsflow): the value
 * every series has, the switch between the two maps that take turns, and the
 * add both plugins make to them. src/aggregate/series.ts reads them. */
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
#include "in_progress.h"

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

/* Series `k` in the active one of a plugin's two series maps (`maps`, indexed
 * by `control`'s `active`), made from `zero`'s value when new. NULL when it
 * could not be made; then *full says whether that is because `max` series are
 * made this interval, and the caller turns `k` into its overflow key. */
static __always_inline struct latency_series *active_series(void *control, void *maps, void *zero, void *k, __u64 max, bool *full)
{
	__u32 index = 0;
	*full = false;
	struct series_control *ctl = bpf_map_lookup_elem(control, &index);
	if (!ctl)
		return NULL;
	__u32 active = ctl->active & 1;
	void *series = bpf_map_lookup_elem(maps, &active);
	if (!series)
		return NULL;
	struct latency_series *v = bpf_map_lookup_elem(series, k);
	if (v)
		return v;
	__u64 *made = series_made(ctl, active);
	/* a count, not the map's size: concurrent inserts may pass the bound by
	 * a few, which the map's room for overflow series absorbs */
	if (*made >= max) {
		*full = true;
		return NULL;
	}
	struct latency_series *fresh = bpf_map_lookup_elem(zero, &index);
	if (!fresh)
		return NULL;
	if (!bpf_map_update_elem(series, k, fresh, BPF_NOEXIST))
		__sync_fetch_and_add(made, 1);
	return bpf_map_lookup_elem(series, k);
}

enum series_outcome { SERIES_ADDED, SERIES_FULL, SERIES_LOST };

/* Adds one latency to series `k` in the active map, within the plugin's
 * `in_progress` count: user space reads and empties the map it left only once
 * no such add is running. SERIES_FULL when `max` series are made this
 * interval: the caller turns `k` into its overflow key and adds again. */
static __always_inline enum series_outcome add_to_series(void *control, void *maps, void *zero, void *in_progress, void *k, __u64 max, __u64 latency)
{
	__u64 *adding = in_progress_enter(in_progress);
	bool full;
	struct latency_series *v = active_series(control, maps, zero, k, max, &full);
	if (v)
		series_add(v, latency);
	in_progress_leave(adding);
	return v ? SERIES_ADDED : full ? SERIES_FULL : SERIES_LOST;
}
#endif

#endif
