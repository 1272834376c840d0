/* Per-CPU event and loss counters, read and summed by user space. */
#ifndef DATAKIT_EBPF_COUNTERS_H
#define DATAKIT_EBPF_COUNTERS_H

/* `map` is a BPF_MAP_TYPE_PERCPU_ARRAY of __u64: no atomics needed per CPU. */
static __always_inline void counter_inc(void *map, __u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(map, &slot);
	if (v)
		*v += 1;
}

static __always_inline void counter_add(void *map, __u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &slot);
	if (v)
		*v += n;
}

#endif
