/* Programs that read an index or a generation from user space's control map
 * and then add to what it names (a series map, a generation's flows) count
 * themselves in and out of a per-CPU count for that span. User space moves
 * the index on, then waits until it has seen every CPU at 0 before it reads
 * and empties what the old index named (src/aggregate/in-progress.ts): a
 * program that read the old index is done by then. A time to wait instead is
 * no bound: a preempted program, or a virtual CPU its host holds back, can
 * take longer than any. */
#ifndef DATAKIT_EBPF_IN_PROGRESS_H
#define DATAKIT_EBPF_IN_PROGRESS_H

/* A count per CPU (BPF_MAP_TYPE_PERCPU_ARRAY of one __u64). */
#define IN_PROGRESS_MAP(name)                            \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
		__uint(max_entries, 1);                  \
		__type(key, __u32);                      \
		__type(value, __u64);                    \
	} name SEC(".maps")

/* Counts the program in, before it reads the control map. Atomic (a preempted
 * program may share its CPU with another, and a softirq may nest in it) and,
 * on x86, a full barrier: the count is visible before the index is read.
 * NULL when the map has no entry, which never happens for an array; callers
 * go on without it. */
static __always_inline __u64 *in_progress_enter(void *map)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(map, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	return n;
}

/* Counts it out, once it is done with what the index named. */
static __always_inline void in_progress_leave(__u64 *n)
{
	if (n)
		__sync_fetch_and_add(n, -1);
}

#endif
